"""TFP's documented examples, ported by changing only the imports (issue 16): each asserts what
TFP's docstring states. Our own ports of the examples of TFP's API pages: bijectors Reshape,
Inline, a Bijector subclass written the TFP way, ScaleMatvecLU / TriL / Diag, Exp, Softplus,
Sigmoid, Tanh, Permute, Shift, Scale, Chain, RealNVP (its default template, NICE, masks),
MaskedAutoregressiveFlow (shift only, the default template, bijector_fn), a conditional
AutoregressiveNetwork fed by bijector_kwargs, RationalQuadraticSpline through RealNVP's
bijector_fn, BatchNormalization, Glow, Transpose, JointMap; distributions Categorical,
MixtureSameFamily, Gamma, Bernoulli, Autoregressive, Independent, MultivariateNormalDiag,
Sample and batch shapes through TransformedDistribution."""

import numpy as np
import pytest
import torch

import nfkit.bijectors as tfb
import nfkit.distributions as tfd


def tf_linalg_lu(w):
    """What ``tf.linalg.lu`` returns, from torch's factorization (w = P L U)."""
    p, lower, upper = torch.linalg.lu(w)
    return lower.tril(-1) + upper, p.argmax(0)


def test_reshape_docstring_example():
    r = tfb.Reshape(event_shape_out=[1, -1])
    np.testing.assert_array_equal(r.forward([3.0, 4.0]), [[3.0, 4.0]])  # shape [1, 2]
    np.testing.assert_array_equal(r.forward([[1.0, 2.0], [3.0, 4.0]]), [[[1.0, 2.0]], [[3.0, 4.0]]])
    np.testing.assert_array_equal(r.inverse([[3.0, 4.0]]), [3.0, 4.0])  # shape [2]
    assert float(r.forward_log_det_jacobian([3.0, 4.0])) == 0.0
    assert float(r.inverse_log_det_jacobian([[3.0, 4.0]])) == 0.0
    assert r.forward_min_event_ndims == 1 and r.inverse_min_event_ndims == 2
    with pytest.raises(ValueError, match="cannot reshape 5 numbers"):
        tfb.Reshape([2, -1]).forward(torch.zeros(5))


def test_reshape_expands_the_rank_inside_a_chain_and_a_distribution():
    # The chapter's Glow remark: from a flat vector to an image, and the density follows.
    base = tfd.MultivariateNormalDiag(loc=[0.0] * 12)
    flow = tfd.TransformedDistribution(
        base, tfb.Chain([tfb.Scale(2.0), tfb.Reshape(event_shape_out=[3, 2, 2])])
    )
    assert flow.event_shape == (3, 2, 2)
    x = flow.sample(5)
    assert x.shape == (5, 3, 2, 2)
    expected = base.log_prob((x / 2.0).reshape(5, 12)) - 12 * np.log(2.0)
    torch.testing.assert_close(flow.log_prob(x), expected)
    squeezed = tfb.Chain([tfb.Squeeze(), tfb.Reshape([1, 4, 4])])
    assert squeezed.forward_event_shape([16]) == (4, 2, 2)
    assert squeezed.inverse_event_shape([4, 2, 2]) == (16,)
    assert squeezed.forward_event_shape_tensor([16]).tolist() == [4, 2, 2]
    assert tfb.Invert(squeezed).forward_event_shape([4, 2, 2]) == (16,)


def test_inline_docstring_example():
    exp = tfb.Inline(
        forward_fn=torch.exp,
        inverse_fn=torch.log,
        inverse_log_det_jacobian_fn=(lambda y: -torch.sum(torch.log(y), dim=-1)),
        forward_min_event_ndims=1,
        name="exp",
    )
    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    torch.testing.assert_close(exp.forward(x), torch.exp(x))
    torch.testing.assert_close(exp.forward_log_det_jacobian(x), x.sum(-1))  # derived
    torch.testing.assert_close(exp.inverse(torch.exp(x)), x)
    assert exp.name == "exp"
    with pytest.raises(ValueError, match="log_det_jacobian_fn"):
        tfb.Inline(forward_fn=torch.exp)


class Exp(tfb.Bijector):
    """TFP's Bijector docstring: 'Example Bijector: Exp' (written the TFP way)."""

    def __init__(self, validate_args=False, name="exp"):
        super().__init__(validate_args=validate_args, forward_min_event_ndims=0, name=name)

    def _forward(self, x):
        return torch.exp(x)

    def _inverse(self, y):
        return torch.log(y)

    def _inverse_log_det_jacobian(self, y):
        return -self._forward_log_det_jacobian(self._inverse(y))

    def _forward_log_det_jacobian(self, x):
        return x  # the log-det of exp is x, elementwise


def test_a_bijector_written_the_tfp_way():
    b = Exp()
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    torch.testing.assert_close(b.forward(x), torch.exp(x))
    torch.testing.assert_close(b.inverse_log_det_jacobian(torch.exp(x), event_ndims=1), -x.sum(-1))
    assert b.name == "exp" and Exp(name="e").name == "e"
    flow = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), b)  # the lognormal
    torch.testing.assert_close(
        flow.log_prob(torch.tensor([1.0, 2.0])),
        torch.distributions.LogNormal(0.0, 1.0).log_prob(torch.tensor([1.0, 2.0])),
    )

    class OnlyForward(tfb.Bijector):
        def _forward(self, x):
            return x

    with pytest.raises(NotImplementedError, match="_forward_log_det_jacobian"):
        OnlyForward().forward_log_det_jacobian(torch.zeros(2))
    with pytest.raises(NotImplementedError, match="no analytic inverse"):
        OnlyForward().inverse(torch.zeros(2))


def test_scale_matvec_lu_docstring_example():
    def trainable_lu_factorization(event_size, seed=0):
        torch.manual_seed(seed)
        random_orthonormal = torch.linalg.qr(torch.rand(event_size, event_size))[0]
        lower_upper, permutation = tf_linalg_lu(random_orthonormal)
        return torch.nn.Parameter(lower_upper), permutation, random_orthonormal

    channels = 3
    lower_upper, permutation, w = trainable_lu_factorization(channels)
    conv1x1 = tfb.ScaleMatvecLU(lower_upper, permutation, validate_args=True)
    x = torch.rand(2, 28, 28, channels)
    fwd = conv1x1.forward(x)
    torch.testing.assert_close(conv1x1.inverse(fwd), x, atol=1e-5, rtol=0)  # ==> x
    torch.testing.assert_close(fwd, x @ w.T, atol=1e-5, rtol=0)  # the matrix factorized


def test_transformed_distribution_takes_the_bijectors_batch_shape():
    td = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), tfb.Shift([-1.0, 0.0, 1.0]))
    assert td.batch_shape == (3,) and td.event_shape == ()
    x = td.sample(5)
    assert x.shape == (5, 3)
    torch.testing.assert_close(
        td.log_prob(torch.zeros(3)), tfd.Normal([1.0, 0.0, -1.0], 1.0).log_prob(torch.zeros(3))
    )
    assert td.sample_and_log_prob(4)[1].shape == (4, 3)
    # On vectors the same shift is one bijector: no batch.
    vec = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(loc=[0.0] * 3), tfb.Shift([1.0, 2, 3])
    )
    assert vec.batch_shape == () and vec.event_shape == (3,)
    assert tfb.Scale([[1.0], [2.0]]).experimental_batch_shape(x_event_ndims=1) == (2,)


# --- distributions: Categorical, MixtureSameFamily, Gamma, Bernoulli, Autoregressive ----------


def test_categorical_docstring_examples():
    # "Creates a 3-class distribution with the 2nd class being most likely."
    dist = tfd.Categorical(probs=[0.1, 0.5, 0.4])
    n = 10_000
    empirical = np.bincount(dist.sample(n, seed=0).numpy(), minlength=3) / n
    np.testing.assert_allclose(empirical, [0.1, 0.5, 0.4], atol=0.015)
    # the same, parametrized by logits
    by_logits = tfd.Categorical(logits=np.log([0.1, 0.5, 0.4]))
    np.testing.assert_allclose(by_logits.prob([0, 1, 2]), [0.1, 0.5, 0.4], rtol=1e-6)
    # "The distribution functions compute probabilities for each class."
    dist = tfd.Categorical(probs=[0.1, 0.1, 0.8])
    assert dist.prob(0).shape == ()
    np.testing.assert_allclose(dist.prob([0, 1, 2]), [0.1, 0.1, 0.8], rtol=1e-6)
    assert dist.prob([[0, 1, 2], [2, 1, 0]]).shape == (2, 3)
    assert int(dist.mode()) == 2
    # off the support: -inf, or an error with validate_args
    assert dist.log_prob([3, 0.5, -1]).tolist() == [-np.inf] * 3
    with pytest.raises(ValueError, match="outside the support"):
        tfd.Categorical(probs=[0.5, 0.5], validate_args=True).log_prob([2])


def test_categorical_and_bernoulli_agree_with_torch():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    ours, theirs = tfd.Categorical(logits=logits), torch.distributions.Categorical(logits=logits)
    k = torch.tensor([[0], [4], [2]]).expand(3, 4)
    torch.testing.assert_close(ours.log_prob(k), theirs.log_prob(k))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())
    assert ours.sample((7,)).shape == (7, 4) and ours.batch_shape == (4,)
    p = torch.tensor([0.01, 0.2, 0.9, 0.999])
    for ours, theirs in (
        (tfd.Bernoulli(probs=p), torch.distributions.Bernoulli(probs=p)),
        (tfd.Bernoulli(logits=logits[0, :4]), torch.distributions.Bernoulli(logits=logits[0, :4])),
    ):
        for value in (torch.zeros(4), torch.ones(4)):
            torch.testing.assert_close(ours.log_prob(value), theirs.log_prob(value))
        torch.testing.assert_close(ours.mean(), theirs.mean)
        torch.testing.assert_close(ours.variance(), theirs.variance)
        torch.testing.assert_close(ours.entropy(), theirs.entropy())
    # certain coins are exact (torch clamps the probabilities)
    certain = tfd.Bernoulli(probs=[0.0, 1.0])
    assert certain.log_prob(torch.tensor([0.0, 1.0])).tolist() == [0.0, 0.0]
    assert certain.log_prob(torch.tensor([1.0, 0.0])).tolist() == [-np.inf, -np.inf]
    assert certain.entropy().tolist() == [0.0, 0.0]
    coin = tfd.Bernoulli(probs=0.3)
    draws = coin.sample(20_000, seed=1)
    assert draws.dtype == torch.long and abs(draws.float().mean() - 0.3) < 0.015
    assert float(coin.log_prob(torch.tensor(2.0))) == -np.inf
    with pytest.raises(ValueError, match="exactly one of logits= and probs="):
        tfd.Bernoulli()
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
        tfd.Categorical(probs=[1.5, -0.5])


def test_mixture_same_family_docstring_examples():
    # "Create a mixture of two scalar Gaussians"
    gm = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(probs=[0.3, 0.7]),
        components_distribution=tfd.Normal(loc=[-1.0, 1], scale=[0.1, 0.5]),
    )
    assert float(gm.mean()) == pytest.approx(0.4)
    assert float(gm.variance()) == pytest.approx(1.018, abs=1e-3)
    x = np.linspace(-2.0, 3.0, num=5)
    expected = 0.3 * np.exp(-0.5 * ((x + 1) / 0.1) ** 2) / (0.1 * np.sqrt(2 * np.pi))
    expected += 0.7 * np.exp(-0.5 * ((x - 1) / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(gm.prob(x), expected, rtol=1e-5)
    # "Create a mixture of two Bivariate Gaussians"
    gm = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(probs=[0.3, 0.7]),
        components_distribution=tfd.MultivariateNormalDiag(
            loc=[[-1.0, 1], [1, -1]], scale_diag=[[0.3, 0.3], [0.6, 0.6]]
        ),
    )
    np.testing.assert_allclose(gm.mean(), [0.4, -0.4], atol=1e-6)
    np.testing.assert_allclose(gm.covariance(), [[1.119, -0.84], [-0.84, 1.119]], atol=1e-3)
    draws = gm.sample(50_000, seed=0)
    np.testing.assert_allclose(np.cov(draws.numpy().T), gm.covariance(), atol=0.03)


def test_gamma_docstring_examples_and_reparametrized_samples():
    dist = tfd.Gamma(concentration=3.0, rate=2.0)
    dist2 = tfd.Gamma(concentration=[3.0, 4.0], rate=[2.0, 3.0])
    assert dist.batch_shape == () and dist2.batch_shape == (2,)
    x = torch.tensor([0.5, 1.0, 4.0])
    torch.testing.assert_close(dist.log_prob(x), torch.distributions.Gamma(3.0, 2.0).log_prob(x))
    torch.testing.assert_close(
        dist2.entropy(),
        torch.distributions.Gamma(torch.tensor([3.0, 4.0]), torch.tensor([2.0, 3.0])).entropy(),
    )
    assert float(dist.log_prob(torch.tensor(-1.0))) == -np.inf
    by_log_rate = tfd.Gamma(concentration=3.0, log_rate=np.log(2.0))
    assert float(by_log_rate.mean()) == pytest.approx(1.5)
    # "Compute the gradients of samples w.r.t. the parameters" (implicit reparametrization):
    # E[x^2] = a(a + 1) / b^2, so d/da = (2a + 1) / b^2 and d/db = -2a(a + 1) / b^3.
    a = torch.nn.Parameter(torch.tensor(3.0))
    b = torch.nn.Parameter(torch.tensor(2.0))
    torch.manual_seed(0)
    loss = tfd.Gamma(a, b).rsample(200_000).square().mean()
    loss.backward()
    assert float(a.grad) == pytest.approx(7 / 4, rel=0.03)
    assert float(b.grad) == pytest.approx(-24 / 8, rel=0.03)
    with pytest.raises(ValueError, match="concentration > 0 and rate > 0"):
        tfd.Gamma(concentration=-1.0, rate=1.0)


def test_autoregressive_docstring_example():
    # TFP's example: a Gaussian whose scale at coordinate i is exp(affine(x)_i), with a
    # triangular affine map (strictly lower here, so that coordinate i sees x_<i only).
    torch.manual_seed(0)
    event_size = 4
    tril = 0.25 * torch.randn(event_size, event_size).tril(-1)

    def normal_fn(samples):
        scale = torch.exp(samples @ tril.T)
        return tfd.Independent(tfd.Normal(loc=0.0, scale=scale), reinterpreted_batch_ndims=1)

    batch_and_event_shape = [3, 2, 4]
    sample0 = torch.zeros(batch_and_event_shape)
    ar = tfd.Autoregressive(normal_fn, sample0)
    assert ar.num_steps == 4 and ar.batch_shape == (3, 2) and ar.event_shape == (4,)
    x = ar.sample([6, 5])
    assert x.shape == (6, 5, 3, 2, 4)
    prob_x = ar.prob(x)
    assert prob_x.shape == (6, 5, 3, 2)
    # the density is the chain rule's product of the conditionals
    scale = torch.exp(x @ tril.T)
    expected = torch.distributions.Normal(0.0, scale).log_prob(x).sum(-1)
    torch.testing.assert_close(ar.log_prob(x), expected)


def test_autoregressive_samples_follow_the_chain_rule():
    # x1 ~ N(0, 1), x2 | x1 ~ N(2 x1, 1), x3 | x1, x2 ~ N(x2 - x1, 0.5^2): exact covariance.
    def fn(x):
        loc = torch.stack([0 * x[..., 0], 2 * x[..., 0], x[..., 1] - x[..., 0]], -1)
        return tfd.MultivariateNormalDiag(loc, torch.tensor([1.0, 1.0, 0.5]).expand_as(loc))

    a = torch.tensor([[1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [1.0, 1.0, 0.5]])  # x = A eps
    x = tfd.Autoregressive(fn, sample0=torch.zeros(3)).sample(40_000, seed=0)
    np.testing.assert_allclose(np.cov(x.numpy().T), (a @ a.T).numpy(), atol=0.1)
    with pytest.raises(ValueError, match="num_steps must be at least 1"):
        tfd.Autoregressive(fn, sample0=torch.zeros(3), num_steps=0)


def test_independent_takes_tfps_default():
    # TFP: reinterpreted_batch_ndims defaults to all batch dims but the first.
    ind = tfd.Independent(tfd.Normal(loc=torch.zeros(5, 4, 3), scale=1.0))
    assert ind.batch_shape == (5,) and ind.event_shape == (4, 3)
    assert tfd.Independent(tfd.Normal(loc=torch.zeros(4), scale=1.0)).event_shape == ()
    # the docstring's examples
    ind = tfd.Independent(
        distribution=tfd.Normal(loc=[-1.0, 1], scale=[0.1, 0.5]), reinterpreted_batch_ndims=1
    )
    assert ind.batch_shape == () and ind.event_shape == (2,)
    ind = tfd.Independent(
        distribution=tfd.MultivariateNormalDiag(
            loc=[[-1.0, 1], [1, -1]], scale_diag=[[1.0, 1.0], [0.5, 0.5]]
        ),
        reinterpreted_batch_ndims=1,
    )
    assert ind.batch_shape == () and ind.event_shape == (2, 2)


# --- affine layers given TFP's networks, bijector_fn, NICE, masks ----------------------------


def test_real_nvp_docstring_example_with_the_default_template():
    torch.manual_seed(0)
    nvp = tfd.TransformedDistribution(
        distribution=tfd.MultivariateNormalDiag(loc=[0.0, 0.0, 0.0]),
        bijector=tfb.RealNVP(
            num_masked=2, shift_and_log_scale_fn=tfb.real_nvp_default_template(hidden_layers=[64])
        ),
    )
    x = nvp.sample()
    assert x.shape == (3,) and torch.isfinite(nvp.log_prob(x))
    assert nvp.log_prob(torch.zeros(3)).shape == ()
    # TFP's formula y[d:] = x[d:] * exp(log_scale(x[:d])) + shift(x[:d]), not nfkit's softplus
    layer = nvp.bijector
    assert layer.scale == "exp"
    z = torch.randn(4, 3)
    shift, log_scale = layer.conditioner.fn(z[:, :2], 1)
    y = layer.forward(z)
    torch.testing.assert_close(y[:, :2], z[:, :2])
    torch.testing.assert_close(y[:, 2:], z[:, 2:] * log_scale.exp() + shift)
    torch.testing.assert_close(layer.forward_log_det_jacobian(z), log_scale.sum(-1))


def test_nice_is_real_nvp_with_a_shift_alone():
    # "To use a NICE bijector instead of Real NVP, shift_and_log_scale_fn should return
    # (shift, None), and is_constant_jacobian should be set to True."
    torch.manual_seed(0)
    nice = tfb.RealNVP(
        num_masked=1,
        shift_and_log_scale_fn=tfb.real_nvp_default_template([16], shift_only=True),
        is_constant_jacobian=True,
    )
    z = torch.randn(5, 3)
    x, log_det = nice.forward_and_log_det(z)
    assert nice.is_constant_jacobian and torch.equal(log_det, torch.zeros(5))
    torch.testing.assert_close(nice.inverse(x), z)
    shift, none = nice.conditioner.fn(z[:, :1], 2)
    assert none is None
    torch.testing.assert_close(x[:, 1:], z[:, 1:] + shift)


def test_real_nvp_masks_as_tfp():
    torch.manual_seed(0)
    z = torch.randn(6, 4)
    # a negative num_masked keeps the last |d| units
    last = tfb.RealNVP(num_masked=-1, shift_and_log_scale_fn=tfb.real_nvp_default_template([8]))
    x = last.forward(z)
    torch.testing.assert_close(x[:, 3:], z[:, 3:])
    assert not torch.allclose(x[:, :3], z[:, :3])
    torch.testing.assert_close(last.inverse(x), z)
    # num_masked=0: every unit transformed by parameters that depend on no input
    none = tfb.RealNVP(0, shift_and_log_scale_fn=tfb.real_nvp_default_template([8]))
    x, log_det = none.forward_and_log_det(z)
    assert torch.allclose(log_det, log_det[0]) and not torch.allclose(x, z)
    torch.testing.assert_close(none.inverse(x), z)
    with pytest.raises(ValueError, match=r"\|num_masked\| < D"):
        tfb.RealNVP(4, hidden_units=[8]).forward(z)


def test_rational_quadratic_spline_docstring_example():
    # TFP's: a RealNVP whose bijector_fn returns a spline from a network of the masked units.
    class SplineParams(torch.nn.Module):
        def __init__(self, nbins=32, interval_width=2.0, range_min=-1.0, min_bin_width=1e-3):
            super().__init__()
            self.nbins, self.width, self.range_min = nbins, interval_width, range_min
            self.min_bin_width, self.min_slope, self.layers = min_bin_width, 1e-3, None

        def forward(self, x, nunits):
            if self.layers is None:
                n = x.shape[-1]
                self.layers = torch.nn.ModuleList(
                    [torch.nn.Linear(n, nunits * k) for k in (self.nbins,) * 2 + (self.nbins - 1,)]
                )

            def bin_positions(raw):
                raw = raw.unflatten(-1, (nunits, self.nbins))
                free = self.width - self.nbins * self.min_bin_width
                return torch.softmax(raw, -1) * free + self.min_bin_width

            w, h, s = (layer(x) for layer in self.layers)
            slopes = torch.nn.functional.softplus(s.unflatten(-1, (nunits, -1))) + self.min_slope
            return tfb.RationalQuadraticSpline(
                bin_widths=bin_positions(w),
                bin_heights=bin_positions(h),
                knot_slopes=slopes,
                range_min=self.range_min,
            )

    torch.manual_seed(0)
    xs = torch.randn(1, 15)
    splines = [SplineParams() for _ in range(3)]

    def spline_flow():
        stack = tfb.Identity()
        for i in range(3):
            stack = tfb.RealNVP(5 * i, bijector_fn=splines[i])(stack)
        return stack

    ys = spline_flow().forward(xs)
    ys_inv = spline_flow().inverse(ys)  # ys_inv ~= xs
    torch.testing.assert_close(ys_inv, xs, atol=1e-5, rtol=1e-5)
    inside = xs.abs() < 1
    assert not torch.allclose(ys[inside], xs[inside])  # the splines act on [-1, 1]
    torch.testing.assert_close(ys[~inside], xs[~inside])  # and are the identity outside


def test_masked_autoregressive_flow_docstring_examples():
    torch.manual_seed(0)
    dims = 2
    maf = tfd.TransformedDistribution(
        distribution=tfd.Sample(tfd.Normal(loc=0.0, scale=1.0), sample_shape=[dims]),
        bijector=tfb.MaskedAutoregressiveFlow(
            shift_and_log_scale_fn=tfb.AutoregressiveNetwork(params=2, hidden_units=[32, 32])
        ),
    )
    x = maf.sample()
    assert x.shape == (dims,) and torch.isfinite(maf.log_prob(x))
    assert maf.log_prob(torch.zeros(dims)).shape == ()
    iaf = tfd.TransformedDistribution(
        distribution=tfd.Sample(tfd.Normal(loc=0.0, scale=1.0), sample_shape=[dims]),
        bijector=tfb.Invert(
            tfb.MaskedAutoregressiveFlow(
                shift_and_log_scale_fn=tfb.AutoregressiveNetwork(params=2, hidden_units=[32, 32])
            )
        ),
    )
    x = iaf.sample()
    assert torch.isfinite(iaf.log_prob(x)) and torch.isfinite(iaf.log_prob(torch.zeros(dims)))
    # "a 'shift only' version and with a different number/depth of hidden layers"
    made = tfb.AutoregressiveNetwork(params=1, hidden_units=[32], zero_last=False)
    maf_no_scale_hidden2 = tfd.TransformedDistribution(
        distribution=tfd.Sample(tfd.Normal(loc=0.0, scale=1.0), sample_shape=[dims]),
        bijector=tfb.MaskedAutoregressiveFlow(
            lambda y: (made(y)[..., 0], None), is_constant_jacobian=True
        ),
    )
    x = torch.randn(7, dims)
    base = tfd.Sample(tfd.Normal(loc=0.0, scale=1.0), sample_shape=[dims])
    z = maf_no_scale_hidden2.bijector.inverse(x)
    torch.testing.assert_close(z, x - made(x)[..., 0])  # a shift alone: volume preserving
    torch.testing.assert_close(maf_no_scale_hidden2.log_prob(x), base.log_prob(z))
    assert maf_no_scale_hidden2.bijector.is_constant_jacobian


def test_masked_autoregressive_default_template_and_bijector_fn():
    torch.manual_seed(0)
    template = tfb.masked_autoregressive_default_template(hidden_layers=[16, 16])
    maf = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=template)
    z = torch.randn(5, 4)
    x, log_det = maf.forward_and_log_det(z)
    shift, log_scale = template(x)
    torch.testing.assert_close(x, z * log_scale.exp() + shift)  # TFP's formula
    torch.testing.assert_close(log_det, log_scale.sum(-1))
    assert float(log_scale.detach().min()) >= -5.0 and float(log_scale.detach().max()) <= 3.0
    # autoregressive: output i depends on x_<i only
    jac = torch.autograd.functional.jacobian(lambda v: template(v)[0], torch.randn(4))
    assert torch.equal(jac.triu(), torch.zeros(4, 4))
    # the clip passes the gradient through (log_scale_clip_gradient=False)
    clip = tfb.masked_autoregressive_default_template([8], log_scale_max_clip=-10.0)
    y = torch.randn(3, 4, requires_grad=True)
    clip(y)[1].sum().backward()
    assert float(y.grad.abs().sum()) > 0
    # bijector_fn: the layer is whatever bijector the function returns for the data side
    made = tfb.AutoregressiveNetwork(params=2, hidden_units=[16], zero_last=False)

    def bijector_fn(y):
        params = made(y)
        return tfb.Shift(params[..., 0])(tfb.Scale(log_scale=params[..., 1]))

    layer = tfb.MaskedAutoregressiveFlow(bijector_fn=bijector_fn)
    x, log_det = layer.forward_and_log_det(z)
    params = made(x)
    torch.testing.assert_close(x, z * params[..., 1].exp() + params[..., 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.inverse(x), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_det, params[..., 1].sum(-1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="takes one of conditioner="):
        tfb.MaskedAutoregressiveFlow(made, bijector_fn=bijector_fn)


def test_conditional_autoregressive_network_docstring_example():
    # TFP's conditional MADE: two clusters, at 0 (c = 0) and at 5 (c = 1).
    rng = np.random.default_rng(0)
    n = 2000
    c = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(np.float32)[:, None]
    x = np.r_[rng.standard_normal(n // 2), rng.standard_normal(n // 2) + 5].astype(np.float32)
    torch.manual_seed(0)
    made = tfb.AutoregressiveNetwork(
        params=2,
        hidden_units=[2, 2],
        event_shape=(1,),
        conditional=True,
        kernel_initializer=lambda w: torch.nn.init.normal_(w, std=(0.1 / w.shape[1]) ** 0.5),
        conditional_event_shape=(1,),
    )
    distribution = tfd.TransformedDistribution(
        distribution=tfd.Sample(tfd.Normal(loc=0.0, scale=1.0), sample_shape=[1]),
        bijector=tfb.MaskedAutoregressiveFlow(made),
    )
    optimizer = torch.optim.Adam(distribution.parameters(), lr=0.1)
    data, cond = torch.from_numpy(x)[:, None], torch.from_numpy(c)
    for _ in range(10):
        for batch in torch.randperm(n).split(25):
            loss = -distribution.log_prob(
                data[batch], bijector_kwargs={"conditional_input": cond[batch]}
            ).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    means = []
    for value, mean in ((1, 5.0), (0, 0.0)):
        samples = distribution.sample(
            (1000,), bijector_kwargs={"conditional_input": value * np.ones((1000, 1))}, seed=1
        )
        assert samples.shape == (1000, 1)  # TFP: the conditional input broadcasts
        # 10 noisy epochs at lr 0.1 of a [2, 2] network land within 0.2-0.7 of the cluster
        # (seeds 0-3); a network that ignored the context would put both at 2.5
        assert abs(float(samples.mean()) - mean) < 1.0
        means.append(float(samples.mean()))
    assert means[0] - means[1] > 4.0
    # TFP's name for the context reaches the network as well
    torch.testing.assert_close(
        made(data[:3], conditional_input=cond[:3]), made(data[:3], 1, cond[:3])
    )
    with pytest.raises(ValueError, match="needs conditional_event_shape"):
        tfb.AutoregressiveNetwork(params=2, conditional=True)
    with pytest.raises(ValueError, match="kernel_initializer must be one of"):
        tfb.AutoregressiveNetwork(params=2, kernel_initializer="orthogonal-ish")


def test_bijector_kwargs_by_bijector_name():
    torch.manual_seed(0)
    layers = [
        tfb.MaskedAutoregressiveFlow(
            tfb.AutoregressiveNetwork(2, hidden_units=[8], context_features=2), name=f"maf{i}"
        )
        for i in range(2)
    ]
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc=[0.0] * 3), tfb.Chain(layers))
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    named = {"maf0": {"conditional_input": c}, "maf1": {"conditional_input": c}}
    torch.testing.assert_close(flow.log_prob(x, bijector_kwargs=named), flow.log_prob(x, context=c))
    with pytest.raises(NotImplementedError, match="one context to every layer"):
        flow.log_prob(
            x,
            bijector_kwargs={
                "maf0": {"conditional_input": c},
                "maf1": {"conditional_input": c + 1},
            },
        )
    with pytest.raises(ValueError, match="conditional_input only"):
        flow.log_prob(x, bijector_kwargs={"maf0": {"training": True}})
    with pytest.raises(ValueError, match="not both"):
        flow.log_prob(x, context=c, bijector_kwargs=named)


def test_batch_normalization_takes_keras_defaults():
    torch.manual_seed(0)
    bn = tfb.BatchNormalization()
    assert bn.name == "BatchNormalization" and bn.eps == 1e-3
    y = torch.randn(500, 2) * 3 + 2
    x = bn.inverse(y)
    # Keras: running = 0.99 * running + 0.01 * batch
    torch.testing.assert_close(bn.running_mean, 0.01 * y.mean(0))
    torch.testing.assert_close(bn.running_var, 0.99 + 0.01 * y.var(0, correction=0))
    torch.testing.assert_close(x, (y - y.mean(0)) / (y.var(0, correction=0) + 1e-3).sqrt())
    # training=False: always the running averages, also in training mode
    fixed = tfb.BatchNormalization(training=False, features=2)
    torch.testing.assert_close(fixed.inverse(y), y / (1 + 1e-3) ** 0.5)
    assert not fixed.batch_dependent()
    with pytest.raises(TypeError, match="no Keras layer"):
        tfb.BatchNormalization(batchnorm_layer=object())


def test_glow_docstring_example():
    # TFP's: z_shape from the bijector, a Sample base, the distribution over images.
    torch.manual_seed(0)
    glow = tfb.Glow(
        output_shape=(8, 8, 3), num_glow_blocks=2, num_steps_per_block=2, hidden_channels=16
    )
    z_shape = glow.inverse_event_shape((8, 8, 3))
    assert list(z_shape) == [192]
    pz = tfd.Sample(tfd.Normal(0.0, 1.0), z_shape)
    px = glow(pz)
    images = torch.rand(16, 8, 8, 3)
    tfb.data_init(px, images)  # ActNorm from a batch (fit does it with its first batch)
    im = px.sample(4)
    assert im.shape == (4, 8, 8, 3) and px.event_shape == (8, 8, 3)
    z = glow.inverse(images)
    assert z.shape == (16, 192)
    torch.testing.assert_close(glow.forward(z), images, atol=1e-4, rtol=1e-4)
    # the density is the base's at the latent plus the log-det, and channels are last
    expected = pz.log_prob(z) + glow.inverse_log_det_jacobian(images, event_ndims=3)
    torch.testing.assert_close(px.log_prob(images), expected)
    with pytest.raises(NotImplementedError, match="coupling_bijector_fn"):
        tfb.Glow(coupling_bijector_fn=lambda *a: None)
    with pytest.raises(ValueError, match="divisible by 4"):
        tfb.Glow(output_shape=(6, 6, 3), num_glow_blocks=2)


def test_transpose_and_joint_map():
    t = tfb.Transpose(perm=[1, 0])
    np.testing.assert_array_equal(
        t.forward([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), [[1, 4], [2, 5], [3, 6]]
    )
    assert tfb.Transpose(rightmost_transposed_ndims=3).perm == [2, 1, 0]
    # JointMap: a structure of bijectors on a structure of values
    jm = tfb.JointMap({"rate": tfb.Exp(), "loc": tfb.Shift(1.0)})
    y = jm.forward({"rate": torch.tensor([0.0, 1.0]), "loc": torch.tensor(2.0)})
    torch.testing.assert_close(y["rate"], torch.tensor([1.0, np.e]))
    torch.testing.assert_close(y["loc"], torch.tensor(3.0))
    x = jm.inverse(y)
    torch.testing.assert_close(x["rate"], torch.tensor([0.0, 1.0]))
    ldj = jm.forward_log_det_jacobian(
        {"rate": torch.tensor([0.0, 1.0]), "loc": torch.tensor(2.0)}, {"rate": 1, "loc": 0}
    )
    assert float(ldj) == pytest.approx(1.0)  # sum of the Exp's log-det, the shift's 0
    assert jm.forward_event_shape({"rate": [2], "loc": []}) == {"rate": (2,), "loc": ()}
    with pytest.raises(ValueError, match="dict of values with keys"):
        jm.forward([torch.zeros(2)])


def test_scale_matvec_tril_reports_its_batch_shape():
    tril = torch.eye(2).expand(3, 2, 2) * torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    flow = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(loc=[0.0, 0.0]), tfb.ScaleMatvecTriL(tril)
    )
    assert flow.batch_shape == (3,) and flow.sample(5).shape == (5, 3, 2)
    expected = torch.distributions.MultivariateNormal(torch.zeros(2), scale_tril=tril)
    x = torch.randn(5, 3, 2)
    torch.testing.assert_close(flow.log_prob(x), expected.log_prob(x))


def test_elementwise_and_linear_bijector_docstring_examples():
    e = np.e
    # Exp: "exp.forward(x=[[[0., 1.], [2., 3.]]])  # ==> [[[e^0, e^1], [e^2, e^3]]]"
    exp = tfb.Exp()
    np.testing.assert_allclose(
        exp.forward([[[0.0, 1.0], [2.0, 3.0]]]), np.exp([[[0, 1], [2, 3]]]), rtol=1e-6
    )
    np.testing.assert_allclose(
        exp.inverse([[[1.0, e], [e**2, e**3]]]), [[[0, 1], [2, 3]]], atol=1e-6
    )
    # Softplus: log(1 + exp(x)) == softplus.forward(x); log(exp(x) - 1) == softplus.inverse(x)
    softplus = tfb.Softplus()
    x = np.array([[[1.0, 2], [3, 4]], [[5, 6], [7, 8]]])
    np.testing.assert_allclose(softplus.forward(x), np.log1p(np.exp(x)), rtol=1e-6)
    np.testing.assert_allclose(softplus.inverse(x), np.log(np.expm1(x)), rtol=1e-5)
    hinge = tfb.Softplus(hinge_softness=0.1, low=2.0)
    np.testing.assert_allclose(hinge.forward([-3.0, 3.0]), [2.0, 5.0], atol=1e-6)
    # Sigmoid and Tanh
    np.testing.assert_allclose(tfb.Sigmoid().forward([0.0, np.log(3.0)]), [0.5, 0.75], rtol=1e-6)
    np.testing.assert_allclose(tfb.Sigmoid(low=2.0, high=4.0).forward([0.0]), [3.0], rtol=1e-6)
    np.testing.assert_allclose(tfb.Tanh().inverse([0.5]), [np.arctanh(0.5)], rtol=1e-6)
    # Permute: "reverse.forward([-1., 0., 1.])  # ==> [1., 0., -1]"
    reverse = tfb.Permute(permutation=[2, 1, 0])
    np.testing.assert_array_equal(reverse.forward([-1.0, 0.0, 1.0]), [1.0, 0.0, -1.0])
    np.testing.assert_array_equal(reverse.inverse([1.0, 0.0, -1.0]), [-1.0, 0.0, 1.0])
    assert float(reverse.forward_log_det_jacobian([1.0, 2.0, 3.0])) == 0.0
    assert float(reverse.inverse_log_det_jacobian([1.0, 2.0, 3.0])) == 0.0
    # Shift, Scale, ScaleMatvecDiag, Chain ("applies Softplus, then Exp": one plus exp)
    assert float(tfb.Shift(2.0).forward(3.0)) == 5.0
    assert float(tfb.Scale(2.0).forward(3.0)) == 6.0
    assert float(tfb.Scale(log_scale=np.log(2.0)).forward_log_det_jacobian(1.0)) == pytest.approx(
        np.log(2)
    )
    diag = tfb.ScaleMatvecDiag(scale_diag=[1.0, 2.0])
    np.testing.assert_array_equal(diag.forward([1.0, 1.0]), [1.0, 2.0])
    assert float(diag.forward_log_det_jacobian([1.0, 1.0])) == pytest.approx(np.log(2))
    one_plus_exp = tfb.Chain([tfb.Exp(), tfb.Softplus()], name="one_plus_exp")
    np.testing.assert_allclose(one_plus_exp.forward([0.0, 1.0]), 1 + np.exp([0.0, 1.0]), rtol=1e-6)
    assert one_plus_exp.name == "one_plus_exp"
    affine = tfb.Chain([tfb.Shift(1.0), tfb.Scale(2.0)])  # forward: 2 x + 1
    np.testing.assert_array_equal(affine.forward([0.0, 1.0]), [1.0, 3.0])


def test_multivariate_normal_diag_docstring_example():
    mvn = tfd.MultivariateNormalDiag(loc=[1.0, -1], scale_diag=[1, 2.0])
    np.testing.assert_array_equal(mvn.mean(), [1.0, -1])
    np.testing.assert_array_equal(mvn.stddev(), [1.0, 2])
    np.testing.assert_array_equal(mvn.covariance(), [[1.0, 0], [0, 4]])
    assert float(mvn.prob([1.0, -1])) == pytest.approx(0.0795774, rel=1e-6)
    # "Initialize a 3-batch, 2-variate scaled-identity Gaussian."
    mvn = tfd.MultivariateNormalDiag(
        loc=[1.0, -1], scale_diag=torch.tensor([[1.0], [2.0], [3.0]]).expand(3, 2)
    )
    assert mvn.batch_shape == (3,) and mvn.event_shape == (2,)
    np.testing.assert_array_equal(mvn.stddev(), [[1.0, 1], [2, 2], [3, 3]])


def test_parameters_computed_by_a_network_keep_their_gradient(tmp_path):
    # TFP's pattern tfb.Shift(net(x)): the bijector's parameter stays in the network's graph
    # (nfkit used to copy it into a fixed buffer, cutting the gradient), and still saves.
    import nfkit

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc=[0.0] * 2), tfb.Shift(w * 2))
    log_p = flow.log_prob(torch.zeros(1, 2))
    log_p.sum().backward()
    torch.testing.assert_close(w.grad, -4 * w.detach())  # d/dw of -(2w)^2 / 2
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "shift.safetensors"))
    torch.testing.assert_close(loaded.log_prob(torch.zeros(1, 2)), log_p.detach())
