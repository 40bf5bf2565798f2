"""Sampling from an energy: targets, importance sampling, fit_energy, stochastic layers."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit import flows
from nfkit.stochastic import (
    HMCLayer,
    LangevinLayer,
    MALALayer,
    MetropolisLayer,
    StochasticNormalizingFlow,
)
from nfkit.targets import (
    DataDensity,
    DoubleWell,
    GaussianMixture,
    ManyWell,
    MullerBrown,
    rezende,
)


def _gaussian(loc: list[float], scale: float) -> nfd.Distribution:
    return nfd.MultivariateNormalDiag(loc=loc, scale_diag=[scale] * len(loc))


def _within(estimate: float, exact: float, se: float, k: float = 4.0) -> None:
    assert abs(estimate - exact) < k * se, (estimate, exact, se)


# --- targets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [DoubleWell(), ManyWell(6), rezende("U1"), rezende("U3"), MullerBrown()],
    ids=["double-well", "many-well-6", "U1", "U3", "muller-brown"],
)
def test_log_z_of_targets_matches_importance_sampling_from_a_broad_gaussian(target) -> None:
    torch.manual_seed(0)
    mean = target.sample(20_000, seed=1).double().mean(0)
    proposal = nfd.MultivariateNormalDiag(loc=mean, scale_diag=torch.full_like(mean, 2.5))
    result = nfkit.importance(proposal, target, 400_000)
    _within(result.log_z, target.log_z, result.log_z_se)


@pytest.mark.parametrize(
    "target", [DoubleWell(), rezende("U4"), MullerBrown()], ids=["double-well", "U4", "mb"]
)
def test_exact_samples_agree_with_reweighted_expectations(target) -> None:
    torch.manual_seed(0)
    draws = target.sample(40_000, seed=3).double()
    mean = draws.mean(0)
    proposal = nfd.MultivariateNormalDiag(loc=mean, scale_diag=torch.full_like(mean, 2.5))
    weighted = nfkit.importance(proposal, target, 400_000)
    for f in (lambda x: x[:, 0], lambda x: (x[:, 1] > mean[1]).double()):
        expected, se = weighted.expectation(f)
        values = f(draws)
        total_se = math.hypot(float(se), float(values.std()) / math.sqrt(values.numel()))
        _within(float(values.mean()), float(expected), total_se)


def test_double_well_and_many_well_mode_structure() -> None:
    well = DoubleWell()
    x = well.sample(50_000, seed=0)
    right = (well.modes(x) == 1).float().mean()
    assert 0.8 < float(right) < 0.9  # the tilt makes the right well deeper
    many = ManyWell(8)
    assert many.log_z == pytest.approx(4 * well.log_z)
    labels = many.modes(many.sample(20_000, seed=0))
    assert labels.unique().numel() == 16 and int(labels.max()) == 15


def test_gaussian_mixture_is_normalized_and_labels_its_modes() -> None:
    target = GaussianMixture()
    x = target.sample(8_000, seed=0)
    assert target.modes(x).unique().numel() == 40
    proposal = _gaussian([0.0, 0.0], 30.0)
    result = nfkit.importance(proposal, target, 400_000)
    _within(result.log_z, 0.0, result.log_z_se)


def test_data_density_is_differentiable_and_normalized() -> None:
    target = DataDensity("moons")
    x = torch.randn(5, 2, requires_grad=True)
    target.log_prob(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    draws = target.sample(4000, seed=0)
    assert 0.4 < float(target.modes(draws).float().mean()) < 0.6
    result = nfkit.importance(_gaussian([0.0, 0.0], 1.5), target, 60_000)
    _within(result.log_z, 0.0, result.log_z_se)


def test_targets_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="2-dimensional"):
        DoubleWell().log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="unknown potential"):
        rezende("U9")
    with pytest.raises(ValueError, match="even dimension"):
        ManyWell(5)
    with pytest.raises(ValueError, match="unknown data density"):
        DataDensity("checkerboard")


# --- importance sampling ---------------------------------------------------------------------


def test_ess_is_one_and_log_z_exact_when_the_flow_is_the_target() -> None:
    torch.manual_seed(0)
    flow = nfb.Shift(torch.tensor([1.0, -2.0]))(
        nfb.Scale(torch.tensor([0.5, 3.0]))(_gaussian([0.0, 0.0], 1.0))
    )
    log_z = 1.7
    exact = nfd.MultivariateNormalDiag(loc=[1.0, -2.0], scale_diag=[0.5, 3.0])
    result = nfkit.importance(flow, lambda x: exact.log_prob(x) + log_z, 10_000)
    assert result.ess == pytest.approx(1.0, abs=1e-9)
    assert result.log_z == pytest.approx(log_z, abs=1e-5) and result.log_z_se < 1e-5


def test_importance_expectation_resampling_and_errors() -> None:
    torch.manual_seed(0)
    target = lambda x: -0.5 * ((x - 1.0) / 0.5).square().sum(-1)  # noqa: E731
    result = nfkit.importance(_gaussian([0.0], 1.5), target, 200_000, batch_size=30_000)
    assert result.samples.shape == (200_000, 1) and result.log_weights.dtype == torch.float64
    mean, se = result.expectation(lambda x: x[:, 0])
    _within(float(mean), 1.0, float(se))
    _within(result.log_z, math.log(0.5 * math.sqrt(2 * math.pi)), result.log_z_se)
    resampled = result.resample(20_000, seed=0)
    assert stats.kstest(resampled[:, 0].numpy(), stats.norm(1.0, 0.5).cdf).pvalue > 1e-3
    with pytest.raises(ValueError, match="NaN"):
        nfkit.importance(_gaussian([0.0], 1.0), lambda x: x[:, 0].log(), 100)


# --- stochastic layers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        MetropolisLayer(steps=10, step_size=0.5),
        MALALayer(steps=10, step_size=0.05),
        HMCLayer(steps=3, step_size=0.1, leapfrog=5),
    ],
    ids=["metropolis", "mala", "hmc"],
)
def test_metropolis_type_layers_leave_their_target_invariant(layer) -> None:
    torch.manual_seed(0)
    target = DoubleWell()
    snf = StochasticNormalizingFlow(_gaussian([0.0, 0.0], 1.0), [layer], target)
    start = target.sample(20_000, seed=5)
    with torch.no_grad():
        moved, delta = layer.transition(start.double(), snf._interpolated(1.0))
    assert 0.05 < layer.acceptance < 1.0
    assert not torch.equal(moved, start.double())
    fresh = target.sample(20_000, seed=6)
    for d in range(2):
        assert stats.ks_2samp(moved[:, d].numpy(), fresh[:, d].numpy()).pvalue > 1e-3
    # Detailed balance: the layer's path term is the change of log-density.
    assert torch.allclose(delta, target(start.double()) - target(moved), atol=1e-9)


@pytest.mark.parametrize("kind", ["langevin", "mala", "hmc", "metropolis"])
def test_path_weights_make_annealed_layers_unbiased(kind) -> None:
    """A Gaussian base pushed through an annealing ladder towards the double well: the path
    weights give log Z and the right well's mass within their standard errors, even for the
    biased (unadjusted) Langevin steps."""
    torch.manual_seed(0)
    target = DoubleWell()
    make = {
        "langevin": lambda lam: LangevinLayer(lam, steps=2, step_size=0.02),
        "mala": lambda lam: MALALayer(lam, steps=2, step_size=0.02),
        "hmc": lambda lam: HMCLayer(lam, step_size=0.05, leapfrog=4),
        "metropolis": lambda lam: MetropolisLayer(lam, steps=3, step_size=0.4),
    }[kind]
    base = _gaussian([0.0, 0.0], 2.0)
    snf = StochasticNormalizingFlow(base, [make(k / 8) for k in range(1, 9)], target)
    result = nfkit.importance(snf, target, 60_000)
    _within(result.log_z, target.log_z, result.log_z_se)
    right, se = result.expectation(lambda x: (x[:, 0] > 0).double())
    exact = float((target.sample(200_000, seed=0)[:, 0] > 0).double().mean())
    _within(float(right), exact, math.hypot(float(se), 0.001))


def test_stochastic_flow_has_no_density_and_checks_its_layers() -> None:
    snf = StochasticNormalizingFlow(_gaussian([0.0, 0.0], 1.0), [MALALayer()], DoubleWell())
    assert snf.sample((3, 4)).shape == (3, 4, 2)
    with pytest.raises(NotImplementedError, match="no tractable density"):
        snf.log_prob(torch.zeros(1, 2))
    with pytest.raises(TypeError, match="bijectors or stochastic layers"):
        StochasticNormalizingFlow(_gaussian([0.0], 1.0), [torch.nn.Linear(1, 1)], DoubleWell())
    with pytest.raises(ValueError, match="lam"):
        MALALayer(lam=1.5)


# --- fit_energy ------------------------------------------------------------------------------


def test_fit_energy_learns_a_double_well_and_estimates_log_z() -> None:
    torch.manual_seed(0)
    target = DoubleWell()
    flow = flows.nsf(2, layers=4, hidden=[32, 32], coupling=True, bound=4.0)
    history = nfkit.fit_energy(
        flow,
        target,
        epochs=6,
        steps_per_epoch=60,
        lr=2e-3,
        lr_schedule="cosine",
        seed=0,
        verbose=0,
        validation_data=target.sample(2000, seed=0),
    )
    assert set(history.history) >= {"loss", "ess", "nonfinite", "val_loss"}
    assert history.history["ess"][-1] > 0.8 > history.history["ess"][0]
    # loss + log Z = KL(q || p) >= 0, and small after training
    assert 0 <= history.history["loss"][-1] + target.log_z < 0.1
    result = nfkit.importance(flow, target, 50_000)
    assert result.ess > 0.8
    _within(result.log_z, target.log_z, result.log_z_se)


def test_fit_energy_trains_a_stochastic_flow_through_its_layers() -> None:
    torch.manual_seed(0)
    target = lambda x: -0.5 * ((x - 2.0) / 0.7).square().sum(-1)  # noqa: E731
    shift = nfb.Shift(torch.nn.Parameter(torch.zeros(2)))
    layer = LangevinLayer(steps=2, step_size=0.05, trainable=True)
    snf = StochasticNormalizingFlow(_gaussian([0.0, 0.0], 1.0), [shift, layer], target)
    start = layer.log_step.detach().clone()
    history = nfkit.fit_energy(snf, target, epochs=4, steps_per_epoch=40, lr=0.05, verbose=0)
    assert torch.allclose(shift.shift.detach(), torch.full((2,), 2.0), atol=0.25)
    assert not torch.equal(layer.log_step.detach(), start)
    assert history.history["ess"][-1] > 0.7


def test_fit_energy_temperature_and_data_term() -> None:
    torch.manual_seed(0)
    base = _gaussian([0.0], 1.0)
    scale = nfb.Scale(torch.nn.Parameter(torch.ones(1)))
    flow = scale(base)
    nfkit.fit_energy(
        flow,
        lambda x: -0.5 * x.square().sum(-1),
        temperature=4.0,
        epochs=4,
        steps_per_epoch=50,
        lr=0.05,
        verbose=0,
    )
    assert float(scale.param.detach().abs()) == pytest.approx(2.0, abs=0.15)  # sd = sqrt(T)
    shift = nfb.Shift(torch.nn.Parameter(torch.zeros(1)))
    data = torch.randn(512, 1) + 5.0
    nfkit.fit_energy(
        shift(base),
        lambda x: x.sum(-1) * 0.0,
        data=data,
        kl_weight=0.0,
        epochs=20,
        batch_size=64,
        lr=0.1,
        verbose=0,
    )
    assert float(shift.shift.detach()) == pytest.approx(float(data.mean()), abs=0.2)


def test_fit_energy_is_nan_safe() -> None:
    torch.manual_seed(0)
    flow = nfb.Shift(torch.nn.Parameter(torch.zeros(1)))(_gaussian([0.0], 1.0))

    def broken(x: torch.Tensor) -> torch.Tensor:  # NaN on a quarter of the line
        return torch.where(x[:, 0] > 0.7, torch.nan, -0.5 * (x[:, 0] + 1.0).square())

    history = nfkit.fit_energy(flow, broken, epochs=2, steps_per_epoch=20, lr=0.05, verbose=0)
    assert history.history["nonfinite"][0] > 0
    assert all(math.isfinite(v) for v in history.history["loss"])
    huge = lambda x: -1e30 * x.square().sum(-1) - 1e30  # noqa: E731
    nfkit.fit_energy(flow, huge, max_energy=100.0, epochs=1, steps_per_epoch=5, verbose=0)
    assert torch.isfinite(flow.bijector.shift).all()
    with pytest.raises(nfkit.NonFiniteLossError, match="all 64 samples"):
        nfkit.fit_energy(flow, lambda x: x.sum(-1) * torch.nan, batch_size=64, verbose=0)


def test_fit_without_data_needs_an_energy_objective() -> None:
    with pytest.raises(ValueError, match="maximum likelihood needs data"):
        nfkit.fit(_gaussian([0.0], 1.0), None)


def test_boltzmann_generator_example_recovers_basin_populations() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    from boltzmann_generator import exact_basin_probabilities, reweighted_basins, train

    flow, _ = train(seed=0, epochs=4, steps=50)
    target = MullerBrown()
    result = nfkit.importance(flow, target, 200_000)
    probabilities, se = reweighted_basins(result, target)
    exact = exact_basin_probabilities(target)
    assert exact.min() > 0.05  # three populated basins
    for p, s, e in zip(probabilities.tolist(), se.tolist(), exact.tolist(), strict=True):
        _within(p, e, s, k=5.0)


def test_importance_leaves_the_flow_in_the_mode_it_found() -> None:
    flow = flows.maf(2, layers=1, hidden=[8])
    flow.train()
    nfkit.importance(flow, DoubleWell(), 100)
    assert flow.training
