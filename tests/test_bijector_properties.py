"""The shared property tests every bijector must pass (DESIGN.md, STYLE.md point 6).

A new bijector is one line in ``BIJECTORS``: round trip, log-det against the autograd Jacobian
(float64, randomized parameters), forward log-det == -inverse log-det, fused == separate methods,
batched call == loop of single calls, and finite gradients.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.continuous import ContinuousFlow

# Every check runs in float64 (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("float64")


def _tril(d: int) -> torch.Tensor:
    m = torch.randn(d, d).tril(-1) * 0.5
    return m + torch.diag(torch.rand(d) + 0.5) * torch.tensor([1.0, -1.0, 1.0][:d])


@dataclass
class Case:
    make: Callable[[], nfb.Bijector]
    size: int = 3
    domain: str = "real"  # where forward's input lives
    context: int = 0  # width of a conditioning input, 0 for none
    # None: parameters replaced by N(0, 0.4^2) draws; a number: built parameters jittered by
    # that much (deep stacks whose fully random weights would be numerically singular).
    jitter: float | None = None
    savable: bool = True  # False: holds Python functions, saving must refuse it clearly


def _sequence(bijector, channels=2, length=None):
    """A sequence bijector on flat rows of ``channels`` x ``length`` (default: 12 values)."""
    return nfb.FlatImage(bijector, [channels, length or 12 // channels])


def _batchnorm_eval():
    b = nfb.BatchNorm(3, momentum=1.0)
    b.inverse(torch.randn(64, 3) * 2.0 + 1.0)  # running statistics from one batch
    return b.eval()


def _made(**kw):
    return nfb.AutoregressiveNetwork(2, hidden_units=[16, 16], activation="tanh", **kw)


@nfkit.register
class TFPStyleSinhArcsinh(nfb.Bijector):
    """A bijector written the TFP way (issue 16): ``_forward``, ``_inverse`` and the forward
    log-det only; nfkit derives the inverse log-det. x = sinh(t asinh(z) - s)."""

    def __init__(self, validate_args: bool = False, name: str = "tfp_style") -> None:
        super().__init__(forward_min_event_ndims=0, validate_args=validate_args, name=name)
        self.skew = torch.nn.Parameter(torch.zeros(3))
        self.log_tail = torch.nn.Parameter(torch.zeros(3))

    def _forward(self, z):
        return torch.sinh(self.log_tail.exp() * torch.asinh(z) - self.skew)

    def _inverse(self, x):
        return torch.sinh((torch.asinh(x) + self.skew) / self.log_tail.exp())

    def _forward_log_det_jacobian(self, z):
        inner = self.log_tail.exp() * torch.asinh(z) - self.skew
        return self.log_tail + torch.log(torch.cosh(inner)) - 0.5 * torch.log1p(z.square())


def _inline_exp():
    return nfb.Inline(
        forward_fn=torch.exp,
        inverse_fn=torch.log,
        inverse_log_det_jacobian_fn=lambda x: -torch.log(x).sum(-1),
        forward_min_event_ndims=1,
    )


def _through_a_matrix():
    """Vectors of 6 reshaped to 2 x 3, a MAF on each row and a scale per entry, reshaped
    back: the Chain follows the event rank 1 -> 2 -> 1 (TFP's Reshape)."""
    inner = [
        nfb.Scale(log_scale=torch.nn.Parameter(torch.zeros(2, 3))),
        nfb.MaskedAutoregressiveFlow(_made()),
    ]
    return nfb.Chain([nfb.Reshape([6], [2, 3]), *inner, nfb.Reshape([2, 3], [6])])


class _SplineFn(torch.nn.Module):
    """TFP's bijector_fn: a spline (TFP's arguments) from a network of the kept units."""

    def __init__(self):
        super().__init__()
        self.net = None  # built for the first call's sizes

    def forward(self, x0, units):
        if self.net is None:
            self.net = torch.nn.Linear(max(x0.shape[-1], 1), units * 14, dtype=x0.dtype)
        inputs = x0 if x0.shape[-1] else x0.new_ones(*x0.shape[:-1], 1)
        raw = self.net(inputs).unflatten(-1, (units, 14))
        width = torch.softmax(raw[..., :5], -1) * 4.0
        height = torch.softmax(raw[..., 5:10], -1) * 4.0
        slopes = torch.nn.functional.softplus(raw[..., 10:]) + 0.1
        return nfb.RationalQuadraticSpline(width, height, slopes, range_min=-2.0)


class _AffineFn(torch.nn.Module):
    """TFP's MAF bijector_fn: Shift and Scale from a MADE of the data side."""

    def __init__(self):
        super().__init__()
        self.made = _made()

    def forward(self, y):
        p = self.made(y)
        return nfb.Shift(p[..., 0])(nfb.Scale(log_scale=p[..., 1]))


def _tfp_glow():
    """TFP's Glow (flat latent of 8 to a 2 x 2 x 2 image, channels last), read back flat; its
    ActNorm layers started from a batch."""
    glow = nfb.Glow(output_shape=(2, 2, 2), num_glow_blocks=1, num_steps_per_block=2,
                    hidden_channels=4)  # fmt: skip
    chain = nfb.Chain([nfb.Reshape([8], [2, 2, 2]), glow])
    nfb.data_init(chain, torch.randn(64, 8))
    return chain


BIJECTORS: dict[str, Case] = {
    "Identity": Case(nfb.Identity),
    "Exp": Case(nfb.Exp),
    "Sigmoid": Case(nfb.Sigmoid),
    "Sigmoid(low, high)": Case(lambda: nfb.Sigmoid(low=[-2.0, 0.0, 1.0], high=[4.0, 0.5, 3.0])),
    "Reciprocal": Case(nfb.Reciprocal, domain="positive"),
    "MixedCoupling": Case(
        lambda: nfb.MixedCoupling(2, angles=[1, 3], bins=4, hidden_units=[8]),
        size=5,
        domain="angle",
    ),
    "MixedCoupling(kept angles only)": Case(
        lambda: nfb.MixedCoupling(2, angles=[0, 1], bins=4, hidden_units=[8]),
        size=4,
        domain="angle",
    ),
    "MixedCoupling(transformed angles only)": Case(
        lambda: nfb.MixedCoupling(1, angles=[1, 2], bins=4, hidden_units=[8]),
        size=3,
        domain="angle",
    ),
    "InternalCoordinates": Case(
        lambda: nfb.InternalCoordinates([[0], [1, 0], [2, 1, 0], [3, 2, 1, 0], [4, 1, 0, 2]]),
        size=15,
        domain="internal",
    ),
    "Invert(Sigmoid(low, high))": Case(
        lambda: nfb.Invert(nfb.Sigmoid(low=0.0, high=1.0)), domain="unit"
    ),
    "Tanh": Case(nfb.Tanh),
    "TFP-style subclass": Case(TFPStyleSinhArcsinh),
    "Inline(exp, inverse log-det only)": Case(_inline_exp, savable=False),
    "Reshape": Case(lambda: nfb.Reshape([-1], [3])),
    "Chain(Reshape, MAF on rows, Reshape)": Case(_through_a_matrix, size=6),
    "Chain(Reshape, Transpose, Reshape)": Case(
        lambda: nfb.Chain([nfb.Reshape([6], [3, 2]), nfb.Transpose([1, 0]), nfb.Reshape([2, 3])]),
        size=6,
    ),
    "Glow (TFP's)": Case(_tfp_glow, size=8, jitter=0.2),
    "RealNVP(bijector_fn spline, num_masked=0)": Case(
        lambda: nfb.RealNVP(0, bijector_fn=_SplineFn()), savable=False
    ),
    "RealNVP(-1, TFP template)": Case(
        lambda: nfb.RealNVP(-1, shift_and_log_scale_fn=nfb.real_nvp_default_template([8]))
    ),
    "MAF(TFP template)": Case(
        lambda: nfb.MaskedAutoregressiveFlow(
            nfb.MaskedAutoregressiveTemplate([16], activation="tanh", event_size=3)
        )
    ),
    "MAF(bijector_fn)": Case(
        lambda: nfb.MaskedAutoregressiveFlow(bijector_fn=_AffineFn()), savable=False
    ),
    "BatchNormalization(training=False)": Case(
        lambda: nfb.BatchNormalization(training=False, features=3)
    ),
    "Softplus": Case(nfb.Softplus),
    "Softplus(hinge_softness, low)": Case(lambda: nfb.Softplus(hinge_softness=0.5, low=-1.0)),
    "OnColumns(Exp)": Case(lambda: nfb.OnColumns(nfb.Exp(), [2, 0])),
    "OnColumns(Invert(Softplus))": Case(
        lambda: nfb.OnColumns(nfb.Invert(nfb.Softplus()), [1]), domain="positive"
    ),
    "Invert(Exp)": Case(lambda: nfb.Invert(nfb.Exp()), domain="positive"),
    "Invert(Sigmoid)": Case(lambda: nfb.Invert(nfb.Sigmoid()), domain="unit"),
    "Invert(Tanh)": Case(lambda: nfb.Invert(nfb.Tanh()), domain="symmetric-unit"),
    "Invert(Softplus)": Case(lambda: nfb.Invert(nfb.Softplus()), domain="positive"),
    "Shift": Case(lambda: nfb.Shift(torch.randn(3))),
    "Scale": Case(lambda: nfb.Scale(torch.randn(3))),
    "Scale(log_scale)": Case(lambda: nfb.Scale(log_scale=torch.randn(3))),
    "ScaleMatvecDiag": Case(lambda: nfb.ScaleMatvecDiag(torch.randn(3))),
    "ScaleMatvecTriL": Case(lambda: nfb.ScaleMatvecTriL(_tril(3))),
    "Permute": Case(lambda: nfb.Permute([2, 0, 1])),
    "ScaleMatvecLU": Case(lambda: nfb.ScaleMatvecLU(features=3)),
    "ScaleMatvecLU(permutation)": Case(
        lambda: nfb.ScaleMatvecLU(torch.nn.Parameter(torch.randn(4, 4)), [2, 0, 3, 1]), size=4
    ),
    "InvertibleConv1x1": Case(lambda: nfb.FlatImage(nfb.InvertibleConv1x1(3), [3, 2, 2]), size=12),
    "ActNorm": Case(lambda: nfb.ActNorm(3, data_init=False)),
    "ActNorm(lazy)": Case(lambda: nfb.ActNorm(data_init=False), size=4),
    "ActNorm(image)": Case(
        lambda: nfb.FlatImage(
            nfb.ActNorm(2, forward_min_event_ndims=3, data_init=False), [2, 3, 2]
        ),
        size=12,
    ),
    "BatchNorm(eval)": Case(_batchnorm_eval),
    # FlatImage needs a shape-preserving image bijector: squeeze, mix channels, unsqueeze.
    "Squeeze, 1x1 conv, unsqueeze": Case(
        lambda: nfb.FlatImage(
            nfb.Chain([nfb.Invert(nfb.Squeeze()), nfb.InvertibleConv1x1(8), nfb.Squeeze()]),
            [2, 2, 4],
        ),
        size=16,
    ),
    "GlowCoupling": Case(
        lambda: nfb.FlatImage(nfb.GlowCoupling(hidden_channels=4), [3, 2, 2]), size=12
    ),
    "GlowCoupling(exp)": Case(
        lambda: nfb.FlatImage(nfb.GlowCoupling(hidden_channels=4, scale="exp"), [2, 2, 1]), size=4
    ),
    "FactorOut": Case(
        lambda: nfb.FlatImage(nfb.FactorOut(nfb.InvertibleConv1x1(2), keep=2), [3, 2, 1]), size=6
    ),
    "ActNorm(sequence)": Case(
        lambda: _sequence(nfb.ActNorm(2, forward_min_event_ndims=2, data_init=False)), size=12
    ),
    "WaveNetCoupling": Case(
        lambda: _sequence(nfb.WaveNetCoupling(hidden_channels=4, layers=2)), size=12
    ),
    "WaveNetCoupling(swap, exp)": Case(
        lambda: _sequence(
            nfb.WaveNetCoupling(hidden_channels=4, layers=2, swap=True, scale="exp"), channels=3
        ),
        size=12,
    ),
    "FloWaveNet block": Case(
        lambda: _sequence(nfkit.flows._flowavenet_block(0, 2, 2, 4, 2).eval(), 1, 8),
        size=8,
        jitter=0.2,
    ),
    "CircularSpline": Case(
        lambda: nfb.CircularSpline(
            torch.nn.Parameter(torch.randn(3, 5)),
            torch.nn.Parameter(torch.randn(3, 5)),
            torch.nn.Parameter(torch.randn(3, 5)),
            torch.nn.Parameter(torch.randn(3)),
        ),
        domain="angle",
    ),
    "CircularCoupling": Case(
        lambda: nfb.CircularCoupling(1, bins=4, hidden_units=[8]), size=3, domain="angle"
    ),
    # A whole Glow level (squeeze, 2 steps, a factored-out inner level), ActNorm in eval mode.
    "Glow level": Case(
        lambda: nfb.FlatImage(nfb.glow_level(1, 0, 2, 2, 4), [1, 4, 4]).eval(),
        size=16,
        jitter=0.2,
    ),
    "Reverse": Case(nfb.Reverse),
    "Shift(Scale)": Case(lambda: nfb.Shift(torch.randn(3))(nfb.Scale(torch.randn(3)))),
    "Chain(vector, elementwise)": Case(
        lambda: nfb.Chain([nfb.ScaleMatvecTriL(_tril(3)), nfb.Tanh(), nfb.Shift(1.0)])
    ),
    "MAF": Case(lambda: nfb.MaskedAutoregressiveFlow(_made())),
    "MAF(right-to-left)": Case(
        lambda: nfb.MaskedAutoregressiveFlow(_made(input_order="right-to-left")), size=4
    ),
    "MAF(random order, bounded)": Case(
        lambda: nfb.MaskedAutoregressiveFlow(
            _made(input_order="random"), scale="exp", log_scale_bound=2.0
        )
    ),
    "MAF(exp)": Case(lambda: nfb.MaskedAutoregressiveFlow(_made(), scale="exp")),
    "MAF(shift only)": Case(
        lambda: nfb.MaskedAutoregressiveFlow(nfb.AutoregressiveNetwork(1, hidden_units=[16]))
    ),
    "MAF(context)": Case(lambda: nfb.MaskedAutoregressiveFlow(_made()), context=2),
    "IAF": Case(lambda: nfb.InverseAutoregressiveFlow(_made())),
    "IAF(exp)": Case(lambda: nfb.InverseAutoregressiveFlow(_made(), scale="exp")),
    "RealNVP(1)": Case(lambda: nfb.RealNVP(1, hidden_units=[16])),
    "RealNVP(exp)": Case(lambda: nfb.RealNVP(1, hidden_units=[16], scale="exp")),
    "RealNVP(fraction)": Case(lambda: nfb.RealNVP(fraction_masked=0.5, hidden_units=[16]), size=4),
    "RealNVP(context)": Case(lambda: nfb.RealNVP(2, hidden_units=[16]), size=4, context=3),
    "RationalQuadraticSpline": Case(
        lambda: nfb.RationalQuadraticSpline(
            raw_widths=torch.nn.Parameter(torch.randn(3, 5)),
            raw_heights=torch.nn.Parameter(torch.randn(3, 5)),
            raw_slopes=torch.nn.Parameter(torch.randn(3, 4)),
            bound=1.5,  # some inputs fall in the identity tails
        )
    ),
    "RationalQuadraticSpline(TFP)": Case(
        lambda: nfb.RationalQuadraticSpline(
            bin_widths=torch.softmax(torch.randn(3, 5), -1) * 1.6,
            bin_heights=torch.softmax(torch.randn(3, 5), -1) * 1.6,  # both sum to 1.6
            knot_slopes=torch.rand(3, 4) + 0.2,
            range_min=-0.9,  # some inputs fall in the identity tails
        )
    ),
    "NSF-AR": Case(
        lambda: nfb.MaskedAutoregressiveSpline(
            nfb.AutoregressiveNetwork(11, hidden_units=[16], activation="tanh"), bins=4, bound=2.0
        )
    ),
    "NSF-AR(context)": Case(
        lambda: nfb.MaskedAutoregressiveSpline(
            nfb.AutoregressiveNetwork(11, hidden_units=[16], activation="tanh"), bins=4
        ),
        context=2,
    ),
    "SplineCoupling": Case(
        lambda: nfb.SplineCoupling(1, bins=5, bound=2.0, hidden_units=[16]), size=3
    ),
    "SplineCoupling(context)": Case(
        lambda: nfb.SplineCoupling(fraction_masked=0.5, bins=3, hidden_units=[16]),
        size=4,
        context=3,
    ),
    # Adaptive solves at tight tolerances: the ODE's error stays far below the checks' 1e-7.
    "ContinuousFlow": Case(
        lambda: ContinuousFlow(hidden_units=[8], activation="tanh", rtol=1e-10, atol=1e-10)
    ),
    "ContinuousFlow(context, adjoint)": Case(
        lambda: ContinuousFlow(
            hidden_units=[8], activation="softplus", rtol=1e-10, atol=1e-10, adjoint=True
        ),
        context=2,
    ),
    # Every builder with a context, whole (issue 15): the context reaches every layer.
    "flows.maf(context)": Case(
        lambda: nfkit.flows.maf(3, layers=2, hidden=[8], context=2).bijector, context=2
    ),
    "flows.iaf(context)": Case(
        lambda: nfkit.flows.iaf(3, layers=2, hidden=[8], context=2).bijector, context=2
    ),
    "flows.realnvp(context)": Case(
        lambda: nfkit.flows.realnvp(3, layers=2, hidden=[8], context=2).bijector, context=2
    ),
    "flows.nsf(context)": Case(
        lambda: nfkit.flows.nsf(3, layers=2, hidden=[8], bins=4, context=2).bijector, context=2
    ),
    "flows.nsf(coupling, context)": Case(
        lambda: nfkit.flows.nsf(4, layers=2, hidden=[8], bins=4, coupling=True, context=3).bijector,
        size=4,
        context=3,
    ),
    "flows.cnf(context)": Case(
        lambda: (
            nfkit.flows.cnf(
                2, hidden=[8], activation="tanh", rtol=1e-10, atol=1e-10, context=2
            ).bijector
        ),
        size=2,
        context=2,
    ),
    "CircularCoupling(context)": Case(
        lambda: nfb.CircularCoupling(1, bins=4, hidden_units=[8]), size=3, domain="angle", context=2
    ),
    "Chain(MAF, Permute, RealNVP)": Case(
        lambda: nfb.Chain(
            [nfb.MaskedAutoregressiveFlow(_made()), nfb.Reverse(), nfb.RealNVP(1, hidden_units=[8])]
        )
    ),
}


def _inputs(case: Case, shape: tuple[int, ...]) -> torch.Tensor:
    u = torch.rand(*shape, case.size) * 0.9 + 0.05
    return {
        "real": torch.randn(*shape, case.size),
        "positive": u * 3.0,
        "unit": u,
        "symmetric-unit": 2.0 * u - 1.0,
        "angle": 6.0 * u - 3.0,  # inside [-pi, pi)
        "internal": 0.3 + 2.5 * u,  # positive bonds, angles in (0, pi), torsions in (-pi, pi)
    }[case.domain]


def _build(name: str, batch: tuple[int, ...] = (7,)):
    """The bijector with randomized parameters, inputs of shape (*batch, D) and a context."""
    torch.manual_seed(sum(map(ord, name)))
    case = BIJECTORS[name]
    bijector = case.make()
    z = _inputs(case, batch)
    context = torch.randn(*batch, case.context) if case.context else None
    bijector.forward(z, context=context)  # builds lazy networks
    with torch.no_grad():
        for p in bijector.parameters():
            if case.jitter is None:
                p.copy_(torch.randn_like(p) * 0.4)
            else:
                p.add_(torch.randn_like(p) * case.jitter)
    return bijector, z, context


NAMES = sorted(BIJECTORS)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name):
    b, z, c = _build(name)
    x = b.forward(z, context=c)
    assert x.shape == z.shape
    torch.testing.assert_close(b.inverse(x, context=c), z, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_log_det_matches_autograd_jacobian(name):
    b, z, c = _build(name, batch=(4,))
    log_det = b.forward_log_det_jacobian(z, context=c, event_ndims=1)
    for i in range(z.shape[0]):
        ci = None if c is None else c[i]
        jac = torch.autograd.functional.jacobian(lambda v: b.forward(v, context=ci), z[i])  # noqa: B023
        expected = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(log_det[i], expected, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_inverse_log_det_is_minus_forward(name):
    b, z, c = _build(name)
    x, fldj = b.forward_and_log_det(z, context=c, event_ndims=1)
    torch.testing.assert_close(b.inverse_log_det_jacobian(x, context=c, event_ndims=1), -fldj)


@pytest.mark.parametrize("name", NAMES)
def test_fused_equals_separate(name):
    b, z, c = _build(name)
    x, fldj = b.forward_and_log_det(z, context=c, event_ndims=1)
    torch.testing.assert_close(b.forward(z, context=c), x)
    torch.testing.assert_close(b.forward_log_det_jacobian(z, context=c, event_ndims=1), fldj)
    back, ildj = b.inverse_and_log_det(x, context=c, event_ndims=1)
    torch.testing.assert_close(b.inverse(x, context=c), back)
    torch.testing.assert_close(b.inverse_log_det_jacobian(x, context=c, event_ndims=1), ildj)


@pytest.mark.parametrize("name", NAMES)
def test_batch_dims_broadcast_like_a_loop(name):
    b, z, c = _build(name, batch=(2, 3))
    x, log_det = b.forward_and_log_det(z, context=c, event_ndims=1)
    assert x.shape == (2, 3, z.shape[-1])
    assert log_det.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            cij = None if c is None else c[i, j]
            xi, ldi = b.forward_and_log_det(z[i, j], context=cij, event_ndims=1)
            torch.testing.assert_close(xi, x[i, j])
            torch.testing.assert_close(ldi, log_det[i, j])


@pytest.mark.parametrize("name", NAMES)
def test_event_ndims_sums_extra_dims(name):
    b, z, c = _build(name, batch=(2, 3))
    per_row = b.forward_log_det_jacobian(z, context=c, event_ndims=1)
    summed = b.forward_log_det_jacobian(z, event_ndims=2, context=c)
    torch.testing.assert_close(summed, per_row.sum(-1))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_and_reach_parameters(name):
    b, z, c = _build(name)
    z = z.clone().requires_grad_(True)
    x, log_det = b.forward_and_log_det(z, context=c, event_ndims=1)
    back, ildj = b.inverse_and_log_det(x.detach(), context=c, event_ndims=1)
    (x.square().sum() + log_det.sum() + back.sum() + ildj.sum()).backward()
    assert torch.isfinite(z.grad).all()
    for p in b.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    b, z, c = _build(name)
    flow = nfd.TransformedDistribution(nfd.MultivariateNormalDiag(loc=[0.0] * z.shape[-1]), b)
    with torch.no_grad():
        x = b.forward(z, context=c)
    if not BIJECTORS[name].savable:
        with pytest.raises(TypeError, match="function"):
            nfkit.save(flow, tmp_path / f"{name}.safetensors")
        return
    path = nfkit.save(flow, tmp_path / f"{name}.safetensors")
    loaded = nfkit.load(path)
    assert loaded.dtype == torch.float64
    torch.testing.assert_close(
        loaded.log_prob(x, context=c), flow.log_prob(x, context=c), atol=1e-12, rtol=1e-12
    )
