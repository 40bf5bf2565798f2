"""One conditioner convention for every coupling and autoregressive layer: the call, the shape
contract and its refusals, TFP's function form, the base classes, format-1 model files."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit._config import Configurable
from nfkit.io import read_header
from nfkit.nets import ConvNet, WaveNet

# layer, input shape of one row, the transformed units, the params per unit
LAYERS = {
    "RealNVP": (lambda c=None: nfb.RealNVP(1, conditioner=c), (3,), 2, 2),
    "SplineCoupling": (lambda c=None: nfb.SplineCoupling(1, c, bins=4), (3,), 2, 11),
    "CircularCoupling": (lambda c=None: nfb.CircularCoupling(1, c, bins=4), (3,), 2, 13),
    "MaskedAutoregressiveFlow": (
        lambda c=None: nfb.MaskedAutoregressiveFlow(conditioner=c),
        (3,),
        3,
        2,
    ),
    "MaskedAutoregressiveSpline": (
        lambda c=None: nfb.MaskedAutoregressiveSpline(c, bins=4),
        (3,),
        3,
        11,
    ),
    "GlowCoupling": (lambda c=None: nfb.GlowCoupling(c), (4, 2, 2), 2, 2),
    "WaveNetCoupling": (lambda c=None: nfb.WaveNetCoupling(c), (3, 4), 2, 2),
}


class Recorder(torch.nn.Module):
    """A conditioner that records its calls and returns zeros of the contract's shape."""

    def __init__(self, params, rest=()):
        super().__init__()
        self.params, self.rest, self.calls = params, rest, []

    def forward(self, inputs, units, context=None):
        self.calls.append((tuple(inputs.shape), units, context is not None))
        return inputs.new_zeros(
            *inputs.shape[: inputs.ndim - 1 - len(self.rest)], units, self.params, *self.rest
        )


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_calls_its_conditioner_by_the_one_convention(name):
    make, row, units, params = LAYERS[name]
    rest = row[1:]
    recorder = Recorder(params, rest)
    layer = make(recorder)
    assert layer.conditioner is recorder
    x = torch.rand(5, *row) * 0.5
    layer.inverse(x)
    shape, called_units, with_context = recorder.calls[-1]
    assert called_units == units and not with_context
    assert shape[0] == 5
    # The output contract: the shape check names what it wanted.
    bad = make(lambda inputs, units, context=None: torch.zeros(5, units + 1, params, *rest))
    with pytest.raises(ValueError, match=rf"conditioner must return a tensor \(\*, {units}, "):
        bad.inverse(x)
    tuple_out = make(lambda inputs, units, context=None: (torch.zeros(5, units),) * 2)
    with pytest.raises(ValueError, match="got tuple"):
        tuple_out.inverse(x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_default_conditioners_keep_the_contract(name):
    make, row, units, params = LAYERS[name]
    layer = make() if "Autoregressive" not in name else make(_made(params))
    x = torch.rand(5, *row) * 0.5
    layer.inverse(x)
    out = layer.conditioner(_kept(layer, x), units)
    assert tuple(out.shape) == (5, units, params, *row[1:])


def _made(params):
    return nfb.AutoregressiveNetwork(params, hidden_units=[8])


def _kept(layer, x):
    if isinstance(layer, nfb.AutoregressiveBijector):
        return x
    if x.ndim == 2:
        return x[:, : layer.num_masked]
    return x[:, : x.shape[1] // 2]


def test_networks_that_cannot_use_a_context_refuse_it():
    for layer, x in (
        (nfb.GlowCoupling(hidden_channels=4), torch.randn(3, 4, 2, 2)),
        (nfb.WaveNetCoupling(hidden_channels=4, layers=1), torch.randn(3, 2, 4)),
    ):
        with pytest.raises(ValueError, match="cannot use a context"):
            layer.inverse_and_log_det(x, context=torch.randn(3, 2), event_ndims=x.ndim - 1)
    for net, x in ((ConvNet(4), torch.randn(2, 3, 2, 2)), (WaveNet(4), torch.randn(2, 3, 4))):
        with pytest.raises(ValueError, match="cannot use a context"):
            net(x, 2, context=torch.randn(2, 1))


def test_coupling_network_names_a_context_it_was_not_built_for():
    layer = nfb.RealNVP(1, hidden_units=[8])
    layer.inverse(torch.randn(4, 3))
    with pytest.raises(ValueError, match="context of width 0; got 1, 2 and 2"):
        layer.inverse(torch.randn(4, 3), context=torch.randn(4, 2))
    conditional = nfb.RealNVP(1, hidden_units=[8])
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    z = conditional.inverse(x, context=c)
    assert z.shape == (4, 3)
    with pytest.raises(ValueError, match="context of width 2; got 1, 2 and 0"):
        conditional.inverse(x)


def test_autoregressive_network_refuses_units_other_than_its_width():
    net = nfb.AutoregressiveNetwork(2, hidden_units=[8])
    assert net(torch.randn(4, 3)).shape == (4, 3, 2)  # TFP's call, units left out
    assert net(torch.randn(4, 3), 3).shape == (4, 3, 2)
    with pytest.raises(ValueError, match="units must be 3"):
        net(torch.randn(4, 3), 2)


def test_tfp_shift_and_log_scale_fn_forms_are_adapted():
    x = torch.randn(6, 3)
    maf = nfb.MaskedAutoregressiveFlow(
        shift_and_log_scale_fn=lambda y: (torch.ones_like(y), torch.zeros_like(y)), scale="exp"
    )
    torch.testing.assert_close(maf.inverse(x), x - 1.0)  # x = z e^0 + 1
    nvp = nfb.RealNVP(
        1,
        shift_and_log_scale_fn=lambda x0, units: (x0.new_ones(*x0.shape[:-1], units),) * 2,
        scale="exp",
    )
    z = nvp.inverse(x)
    torch.testing.assert_close(z[:, 1:], (x[:, 1:] - 1.0) / torch.e)
    made = nfb.AutoregressiveNetwork(2, hidden_units=[8])
    assert nfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made).conditioner is made
    assert nfb.MaskedAutoregressiveFlow(made).conditioner is made  # the chapter's call
    positional = nfb.MaskedAutoregressiveFlow(lambda y: (y * 0 + 1, y * 0), scale="exp")
    torch.testing.assert_close(positional.inverse(x), x - 1.0)  # TFP's positional form
    with pytest.raises(ValueError, match="takes one of conditioner=, shift_and_log_scale_fn="):
        nfb.MaskedAutoregressiveFlow(made, conditioner=made)


def test_base_classes_are_not_layers():
    for base in (nfb.CouplingBijector, nfb.AutoregressiveBijector):
        with pytest.raises(TypeError, match="is a base class, not a layer"):
            base(None, None, None) if base is nfb.CouplingBijector else base(None)
    assert not hasattr(nfb, "ChannelCoupling")
    assert "ChannelCoupling" not in nfb.__all__


@nfkit.register
class LowerShiftLogScale(Configurable, nn.Module):
    """A TFP-form network of the format-3 fixture tfp_module (see its .py.txt)."""

    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(2, dim, dim))

    def forward(self, x):
        w = self.w.tril(-1)
        return x @ w[0].T, x @ w[1].T


FIXTURES = sorted(Path(__file__).parent.joinpath("data", "format1").glob("*.safetensors"))
FORMAT_2 = sorted(Path(__file__).parent.joinpath("data", "format2").glob("*.safetensors"))
FORMAT_3 = sorted(Path(__file__).parent.joinpath("data", "format3").glob("*.safetensors"))
OLD_FILES = FIXTURES + FORMAT_2 + FORMAT_3


@pytest.mark.parametrize("path", OLD_FILES, ids=[f"{p.parent.name}-{p.stem}" for p in OLD_FILES])
def test_old_model_files_still_load_with_the_same_densities(path):
    header = read_header(path)
    assert header["format_version"] == path.parent.name.removeprefix("format")
    meta = header["metadata"]
    flow = nfkit.load(path)
    x = torch.tensor(meta["x"])
    context = None if meta["context"] is None else torch.tensor(meta["context"])
    with torch.no_grad():
        log_prob = flow.log_prob(x, context=context)
    # Float32 to a few ulps (the LU fixture's densities reach 287, where one ulp is 3e-5).
    torch.testing.assert_close(log_prob, torch.tensor(meta["log_prob"]), rtol=1e-6, atol=1e-5)
    assert json.loads(json.dumps(meta))  # plain JSON, as written by the old nfkit


def test_format_1_fixtures_cover_every_conditioned_family():
    assert {p.stem for p in FIXTURES} >= {
        "maf",
        "maf_context",
        "iaf",
        "realnvp",
        "nsf_ar",
        "nsf_c",
        "circular",
        "glow",
        "flowavenet",
    }


def test_saved_files_use_the_new_names_and_reload(tmp_path):
    flow = nfkit.flows.realnvp(3, layers=2, hidden=[8])
    flow.log_prob(torch.randn(2, 3))
    path = nfkit.save(flow, tmp_path / "m.safetensors")
    config = json.dumps(read_header(path)["config"])
    assert '"conditioner"' in config and "shift_and_log_scale_fn" not in config
    x = torch.randn(4, 3)
    torch.testing.assert_close(nfkit.load(path).log_prob(x), flow.eval().log_prob(x))
    assert isinstance(flow.distribution, nfd.MultivariateNormalDiag)
