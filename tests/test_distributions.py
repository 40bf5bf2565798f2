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
        repr(zdist) == "<nfkit.MultivariateNormalDiag batch_shape=[] event_shape=[2] dtype=float32>"
    )
    td = nfd.TransformedDistribution(zdist, bijector=nfb.Shift([0.5, 0.25]))
    assert (
        repr(td) == "<nfkit.TransformedDistribution batch_shape=[] event_shape=[2] dtype=float32>"
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
