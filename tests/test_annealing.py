"""Annealed importance sampling (issue 19): exact when the flow is the target, unbiased log Z on
targets with a known normalizer, better than plain importance sampling from a poor flow."""

import math

import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.annealing import AnnealedImportanceSampler
from nfkit.stochastic import HMCLayer, StochasticNormalizingFlow
from nfkit.targets import DoubleWell, GaussianMixture


def _gaussian_flow(loc, scale):
    base = nfd.MultivariateNormalDiag(loc=[0.0] * len(loc))
    return nfb.Chain([nfb.Shift(torch.tensor(loc)), nfb.Scale(torch.tensor(scale))])(base)


@pytest.mark.parametrize("kernel", ["hmc", "metropolis"])
def test_ais_with_the_flow_equal_to_the_target_is_exact(kernel):
    torch.manual_seed(0)
    flow = _gaussian_flow([1.0, -2.0], [0.5, 2.0])
    log_z = 4.0
    result = nfkit.ais(
        flow, lambda x: flow.log_prob(x) + log_z, 2000, distributions=5, kernel=kernel
    )
    assert result.ess == pytest.approx(1.0, abs=1e-9)
    assert result.log_z == pytest.approx(log_z, abs=1e-5)
    assert result.dropped == 0 and len(result.acceptance) == 5
    assert result.samples.shape == (2000, 2)


def test_ais_log_z_of_the_double_well_within_its_standard_error():
    torch.manual_seed(0)
    target = DoubleWell()
    flow = _gaussian_flow([0.0, 0.0], [2.0, 1.5])  # covers both wells, matches neither
    sampler = AnnealedImportanceSampler(16, step_size=0.3)
    result = sampler.sample(flow, target, 20_000)
    plain = result.proposal_log_weights
    assert abs(result.log_z - target.log_z) < 4 * result.log_z_se
    assert result.log_z_se < 0.02
    # The annealing is what makes the estimate good: its ESS beats the flow's own weights.
    assert result.ess > 2 * nfkit.reweight.kish_ess(plain)
    # Reweighted, the chains give the deep well's exact share of the mass.
    exact = (target.modes(target.sample(200_000, seed=1)) == 1).double().mean()
    share, se = result.expectation(lambda x: (target.modes(x) == 1).double())
    assert abs(float(share - exact)) < 4 * float(se) + 0.003


def test_ais_reaches_the_modes_a_narrow_flow_misses():
    torch.manual_seed(0)
    target = GaussianMixture(components=4, spread=6.0, seed=3)
    flow = _gaussian_flow([0.0, 0.0], [4.0, 4.0])
    result = nfkit.ais(flow, target, 4000, distributions=20, step_size=0.5)
    picked = result.resample(4000, seed=0)
    counts = torch.bincount(target.modes(picked), minlength=4).double() / 4000
    assert torch.all((counts - 0.25).abs() < 0.06), counts
    assert abs(result.log_z) < 4 * result.log_z_se + 0.02


def test_alpha_two_targets_p_squared_over_q():
    # For Gaussians q = N(0, s^2), p = N(0, 1): p^2/q integrates to s^2 / sqrt(2 s^2 - 1).
    torch.manual_seed(0)
    s = 1.5
    flow = _gaussian_flow([0.0], [s])
    p = nfd.MultivariateNormalDiag(loc=[0.0])
    result = nfkit.ais(flow, p.log_prob, 40_000, distributions=4, alpha=2.0, step_size=0.8)
    exact = math.log(s**2 / math.sqrt(2 * s**2 - 1))
    assert abs(result.log_z - exact) < 4 * result.log_z_se + 1e-3


def test_step_sizes_adapt_towards_the_target_acceptance():
    torch.manual_seed(0)
    flow = _gaussian_flow([0.0, 0.0], [1.0, 1.0])
    target = lambda x: -0.5 * (x / 0.2).square().sum(-1)  # noqa: E731  needs small steps
    sampler = AnnealedImportanceSampler(2, kernel="metropolis", step_size=5.0)
    for _ in range(30):
        result = sampler.sample(flow, target, 500)
    assert all(size < 1.0 for size in sampler.step_sizes)
    assert all(0.35 < rate < 0.95 for rate in result.acceptance)
    frozen = sampler.step_sizes
    sampler.eval()  # no adaptation outside training mode
    sampler.sample(flow, target, 500)
    assert sampler.step_sizes == frozen


def test_ais_refuses_what_it_cannot_run():
    flow = _gaussian_flow([0.0], [1.0])
    with pytest.raises(ValueError, match="kernel"):
        AnnealedImportanceSampler(2, kernel="nuts")
    with pytest.raises(ValueError, match="spacing"):
        AnnealedImportanceSampler(2, spacing="cosine")
    with pytest.raises(ValueError, match="positive"):
        nfkit.ais(flow, lambda x: -x.square().sum(-1), 0)
    snf = StochasticNormalizingFlow(flow.distribution, [HMCLayer()], lambda x: -x.sum(-1))
    with pytest.raises(ValueError, match="tractable"):
        nfkit.ais(snf, lambda x: -x.square().sum(-1), 10)
    with pytest.raises(ValueError, match="non-finite"):
        nfkit.ais(flow, lambda x: torch.full(x.shape[:-1], math.nan), 10, distributions=1)


def test_geometric_spacing_follows_fabs_recipe():
    betas = AnnealedImportanceSampler(8, spacing="geometric").betas
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 10
    assert torch.all(betas[1:] > betas[:-1])
    assert betas[3] == pytest.approx(0.01)  # a quarter (2) linear steps below 0.01


def test_importance_anneals_when_asked():
    torch.manual_seed(0)
    target = DoubleWell()
    flow = _gaussian_flow([0.0, 0.0], [2.0, 1.5])
    plain = nfkit.importance(flow, target, 5000)
    annealed = nfkit.importance(flow, target, 5000, ais=16)
    assert annealed.ess > 2 * plain.ess
    assert abs(annealed.log_z - target.log_z) < 4 * annealed.log_z_se
