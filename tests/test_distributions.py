"""Distributions: shapes as the chapter explains them, densities against torch, reprs, bridges."""

import math

import numpy as np
import pytest
import torch

import nfkit.bijectors as nfb
import nfkit.distributions as nfd


def test_chapter_repr_and_shapes():
    zdist = nfd.MultivariateNormalDiag(loc=[0.0] * 2)
    assert (
        repr(zdist) == "<nfkit.distributions.MultivariateNormalDiag 'MultivariateNormalDiag' "
        "batch_shape=[] event_shape=[2] dtype=float32>"
    )
    td = nfd.TransformedDistribution(zdist, bijector=nfb.Shift([0.5, 0.25]))
    assert (
        repr(td) == "<nfkit.distributions.TransformedDistribution 'TransformedDistribution' "
        "batch_shape=[] event_shape=[2] dtype=float32>"
    )
    assert td.sample(10000).shape == (10000, 2)
    assert td.sample((5, 3)).shape == (5, 3, 2)
    assert td.sample().shape == (2,)
    assert td.log_prob(td.sample((5, 3))).shape == (5, 3)


def test_batch_shape_from_loc():
    dist = nfd.MultivariateNormalDiag(loc=torch.zeros(4, 2))
    assert dist.batch_shape == (4,) and dist.event_shape == (2,)
    assert dist.sample(7).shape == (7, 4, 2)
    assert dist.log_prob(torch.zeros(7, 4, 2)).shape == (7, 4)
    td = nfb.Shift(torch.ones(2))(dist)
    assert td.batch_shape == (4,) and td.sample((3,)).shape == (3, 4, 2)


def test_densities_match_torch():
    x = torch.randn(10, 3)
    loc, scale = torch.randn(3), torch.rand(3) + 0.5
    ours = nfd.MultivariateNormalDiag(loc, scale).log_prob(x)
    ref = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1).log_prob(x)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(
        nfd.Normal(loc, scale).log_prob(x), torch.distributions.Normal(loc, scale).log_prob(x)
    )
    indep = nfd.Independent(nfd.Normal(loc, scale), 1)
    assert indep.event_shape == (3,) and indep.batch_shape == ()
    torch.testing.assert_close(indep.log_prob(x), ref)
    u = nfd.Uniform(-1.0, 3.0)
    assert torch.allclose(u.log_prob(torch.tensor([0.0])), torch.tensor([-math.log(4.0)]))
    assert u.log_prob(torch.tensor([5.0])).item() == -math.inf
    s = u.sample(1000)
    assert s.min() >= -1.0 and s.max() < 3.0


def test_affine_transformed_distribution_is_the_shifted_gaussian():
    # The chapter's x = z * (1, 0.5) + (0.5, 0.25) is N((0.5, 0.25), diag(1, 0.25)).
    zdist = nfd.MultivariateNormalDiag(loc=[0.0] * 2)
    td = nfd.TransformedDistribution(
        zdist, bijector=nfb.Shift([0.5, 0.25])(nfb.ScaleMatvecDiag([1.0, 0.5]))
    )
    grid = np.random.default_rng(0).normal(size=(50, 2))
    expected = nfd.MultivariateNormalDiag([0.5, 0.25], [1.0, 0.5]).log_prob(grid)
    torch.testing.assert_close(td.log_prob(grid), expected)
    x, lp = td.sample_and_log_prob(20000)
    torch.testing.assert_close(lp, td.log_prob(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.mean(0), torch.tensor([0.5, 0.25]), atol=0.03, rtol=0)
    torch.testing.assert_close(x.std(0), torch.tensor([1.0, 0.5]), atol=0.03, rtol=0)


def test_numpy_input_gives_values_numpy_can_use():
    flow = nfb.MaskedAutoregressiveFlow(
        nfb.AutoregressiveNetwork(2, hidden_units=[8], zero_last=False)
    )(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    grid = np.random.default_rng(0).normal(size=(10, 2))  # float64, as in the chapter
    p = np.exp(flow.log_prob(grid))
    assert p.shape == (10,) and np.all(p > 0)
    assert flow.log_prob(torch.zeros(3, 2)).requires_grad  # tensors keep their gradients


def test_bad_inputs_are_named():
    td = nfb.Shift([1.0, 2.0])(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    with pytest.raises(ValueError, match=r"expected trailing shape \(2,\), got \(10, 3\)"):
        td.log_prob(torch.zeros(10, 3))
    with pytest.raises(TypeError, match=r"expected torch\.float32 input, got torch\.float64"):
        td.log_prob(torch.zeros(10, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="Independent"):
        nfd.TransformedDistribution(nfd.Normal(0.0, 1.0), nfb.Permute([1, 0]))
    with pytest.raises(ValueError, match="permutation"):
        nfb.Permute([0, 0])
    with pytest.raises(ValueError, match="low < high"):
        nfd.Uniform(1.0, 0.0)


def test_float64_everywhere():
    td = nfb.RealNVP(1, hidden_units=[8])(nfd.MultivariateNormalDiag(loc=[0.0] * 2)).double()
    x = td.sample(5)
    assert x.dtype == torch.float64 and td.log_prob(x).dtype == torch.float64
    assert "dtype=float64" in repr(td)


def test_torch_distribution_bridges():
    base = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    td = nfd.TransformedDistribution(base, nfb.Shift([1.0, 0.0]))
    torch.testing.assert_close(
        td.log_prob(torch.tensor([[1.0, 0.0]])), base.log_prob(torch.zeros(1, 2))
    )
    as_torch = td.as_torch()
    assert isinstance(as_torch, torch.distributions.Distribution)
    assert as_torch.event_shape == (2,) and as_torch.rsample((4,)).shape == (4, 2)
    other = nfb.Shift([1.0, 0.0])(nfd.MultivariateNormalDiag(loc=[0.0] * 2)).as_torch()
    torch.testing.assert_close(
        as_torch.log_prob(torch.ones(3, 2)), other.log_prob(torch.ones(3, 2))
    )


def test_flow_is_a_module():
    anet = nfb.AutoregressiveNetwork(params=2, event_shape=2, hidden_units=[8])
    td = nfd.TransformedDistribution(
        nfd.MultivariateNormalDiag(loc=[0.0] * 2), nfb.Chain([nfb.MaskedAutoregressiveFlow(anet)])
    )
    n_params = sum(p.numel() for p in td.parameters())
    assert n_params > 0
    state = td.state_dict()
    assert any("mask" in k for k in state) and "distribution.loc" in state
    x = torch.randn(4, 2)
    with torch.no_grad():
        for p in td.parameters():
            p.add_(0.1)
    clone = nfd.TransformedDistribution(
        nfd.MultivariateNormalDiag(loc=[0.0] * 2),
        nfb.Chain(
            [
                nfb.MaskedAutoregressiveFlow(
                    nfb.AutoregressiveNetwork(params=2, event_shape=2, hidden_units=[8])
                )
            ]
        ),
    )
    clone.load_state_dict(td.state_dict())
    torch.testing.assert_close(clone.log_prob(x), td.log_prob(x))


def test_sample_takes_a_seed_and_a_temperature_through_a_flow():
    import nfkit

    flow = nfkit.flows.maf(2, layers=2, hidden=[8])
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b = flow.sample(500, seed=3), flow.sample(500, seed=3)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), before)
    cold = flow.sample(4000, seed=0, temperature=0.5)
    assert 0.4 < float(cold.std() / flow.sample(4000, seed=0).std()) < 0.6  # starts near identity
    with pytest.raises(ValueError, match="needs draws from Gaussian noise; Uniform"):
        nfd.Uniform(0.0, 1.0).sample(3, temperature=0.5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        flow.sample(3, temperature=0.0)


def test_sample_draws_iid_events_with_the_batch_first_as_tfp():
    loc = torch.tensor([-1.0, 0.0, 2.0])
    d = nfd.Sample(nfd.Normal(loc, 1.0), sample_shape=[2])
    assert d.batch_shape == (3,) and d.event_shape == (2,)
    x = d.sample(4000, seed=0)
    assert x.shape == (4000, 3, 2)
    torch.testing.assert_close(x.mean((0, 2)), loc, atol=0.05, rtol=0)
    exact = torch.distributions.Normal(loc[:, None], 1.0).log_prob(x).sum(-1)
    torch.testing.assert_close(d.log_prob(x), exact)
    import nfkit

    made = nfkit.bijectors.AutoregressiveNetwork(params=2, event_shape=[2], hidden_units=[8])
    flow = nfd.TransformedDistribution(
        nfd.Sample(nfd.Normal(0.0, 1.0), sample_shape=[2]),
        nfkit.bijectors.MaskedAutoregressiveFlow(made),
    )
    assert flow.sample(3).shape == (3, 2) and flow.log_prob(torch.zeros(3, 2)).shape == (3,)


def test_bijectors_take_lists_and_arrays_and_answer_arrays():
    out = nfb.Exp()([-1.0, 0.0, 1.0])
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, np.exp([-1.0, 0.0, 1.0]), rtol=1e-6)
    np.testing.assert_allclose(nfb.Exp().inverse(np.array([1.0, np.e])), [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(nfb.Exp().forward_log_det_jacobian([0.5]), [0.5])
    assert isinstance(nfb.Exp()(torch.zeros(2)), torch.Tensor)  # tensors stay tensors
    with pytest.raises(TypeError, match="Exp takes a tensor, an array or numbers, got str"):
        nfb.Exp()("abc")


def test_closed_form_statistics_match_torch():
    td = torch.distributions
    loc, scale = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.3])
    tril = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    pairs = [
        (nfd.Normal(loc, scale), td.Normal(loc, scale)),
        (nfd.MultivariateNormalDiag(loc, scale), td.Independent(td.Normal(loc, scale), 1)),
        (nfd.MultivariateNormalTriL(loc, tril), td.MultivariateNormal(loc, scale_tril=tril)),
        (nfd.Uniform(loc, loc + scale), td.Uniform(loc, loc + scale)),
        (nfd.Independent(nfd.Normal(loc, scale), 1), td.Independent(td.Normal(loc, scale), 1)),
    ]
    for ours, theirs in pairs:
        torch.testing.assert_close(ours.mean(), theirs.mean)
        torch.testing.assert_close(ours.variance(), theirs.variance)
        torch.testing.assert_close(ours.stddev(), theirs.stddev)
        torch.testing.assert_close(ours.entropy(), theirs.entropy())
    torch.testing.assert_close(pairs[2][0].covariance(), pairs[2][1].covariance_matrix)
    torch.testing.assert_close(pairs[1][0].covariance(), torch.diag(scale**2))
    with pytest.raises(NotImplementedError, match="no closed-form mean; estimate it from"):
        nfd.VonMises(0.0, 1.0).mean()


def test_tfp_name_and_validate_args_are_kept_shown_and_saved(tmp_path):
    import nfkit

    d = nfd.Uniform(0.0, 1.0, name="box", validate_args=True)
    assert d.name == "box" and repr(d).startswith("<nfkit.distributions.Uniform 'box' ")
    with pytest.raises(ValueError, match=r"box: 1 value outside the support"):
        d.log_prob(torch.tensor([0.5, 2.0]))
    assert nfd.Uniform(0.0, 1.0).log_prob(torch.tensor([2.0])).isinf().all()  # default: -inf
    back = nfkit.load(nfkit.save(d, tmp_path / "d.safetensors"))
    assert back.name == "box" and back.validate_args
    assert nfb.Exp(name="e").name == "e" and "'e'" in repr(nfb.Exp(name="e"))


def test_blockwise_puts_each_block_in_its_columns_and_refuses_bad_blocks():
    import math

    angles = nfd.Independent(nfd.Uniform(-math.pi * torch.ones(2), math.pi), 1)
    normal = nfd.MultivariateNormalDiag(loc=[10.0])
    base = nfd.Blockwise([angles, normal], [[0, 2], [1]])
    x = base.sample(2000)
    assert x.shape == (2000, 3) and abs(float(x[:, 1].mean()) - 10.0) < 0.2
    assert bool((x[:, [0, 2]].abs() <= math.pi).all())
    expected = angles.log_prob(x[:, [0, 2]]) + normal.log_prob(x[:, [1]])
    torch.testing.assert_close(base.log_prob(x), expected)
    with pytest.raises(ValueError, match="once each"):
        nfd.Blockwise([angles, normal], [[0, 1], [1]])
    with pytest.raises(ValueError, match="event shape"):
        nfd.Blockwise([angles, normal], [[0], [1, 2]])
