"""Simulation-based inference: simulations, NPE and NLE against analytic posteriors, slice
sampling, calibration diagnostics, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch

import nfkit.distributions as nfd
from nfkit.sbi import (
    NLE,
    NPE,
    SimulationError,
    Simulations,
    c2st,
    expected_coverage,
    sbc_ranks,
    sbc_uniformity,
    simulate,
    slice_sample,
    support_bijector,
    tasks,
)


def _normal_prior(d=2):
    return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(d), 1.0), 1)


def test_simulate_draws_prior_pairs_reproducibly_and_in_parallel():
    theta, x = simulate(_normal_prior(), lambda t: t * 2.0, 50, seed=1)
    assert theta.shape == x.shape == (50, 2)
    torch.testing.assert_close(x, theta * 2.0)
    again = simulate(_normal_prior(), lambda t: t * 2.0, 50, seed=1, workers=2)
    torch.testing.assert_close(again.theta, theta)
    torch.testing.assert_close(again.x, x)


def test_simulate_drops_and_counts_failures_and_nan():
    def flaky(t):
        if t[0] > 1.0:
            raise RuntimeError("diverged")
        return np.array([np.nan]) if t[1] > 1.0 else t[:1]

    with pytest.warns(RuntimeWarning, match=r"dropped \d+ simulations that raised and \d+"):
        sims = simulate(_normal_prior(), flaky, 400, seed=0)
    assert sims.failed > 20 and sims.nonfinite > 20
    assert len(sims) == 400 - sims.failed - sims.nonfinite
    assert bool((sims.theta[:, 0] <= 1.0).all()) and bool(torch.isfinite(sims.x).all())


def test_a_simulator_that_always_raises_is_a_clear_error():
    def broken(t):
        raise ValueError("bad parameter")

    with pytest.raises(SimulationError, match=r"all 10 simulations failed.*bad parameter"):
        simulate(_normal_prior(), broken, 10)


def test_simulations_save_and_load(tmp_path):
    sims = simulate(_normal_prior(), lambda t: t + 1, 20)
    path = sims.save(tmp_path / "sims.npz")
    back = Simulations.load(path)
    torch.testing.assert_close(back.theta, sims.theta)
    torch.testing.assert_close(back.x, sims.x)


def test_prior_must_be_a_distribution_over_vectors():
    with pytest.raises(ValueError, match="distribution over vectors"):
        simulate(torch.distributions.Normal(0.0, 1.0), lambda t: t, 5)
    with pytest.raises(TypeError, match="nfkit or torch distribution"):
        NPE("normal")


def test_support_bijector_maps_onto_the_box():
    prior = tasks.two_moons().prior
    b = support_bijector(prior)
    theta = b.forward(torch.randn(1000, 2) * 10)
    assert bool((theta.abs() <= 1).all())
    torch.testing.assert_close(b.forward(b.inverse(theta[:5])), theta[:5], atol=1e-5, rtol=0)
    torch_box = torch.distributions.Independent(
        torch.distributions.Uniform(-torch.ones(2), torch.ones(2)), 1
    )
    assert bool(
        (
            support_bijector(nfd.TorchDistribution(torch_box))
            .forward(torch.randn(100, 2) * 10)
            .abs()
            <= 1
        ).all()
    )


def _gaussian_linear_fit(estimator, n=3000, **kw):
    task = tasks.gaussian_linear(dim=2)
    theta, x = simulate(task.prior, task.simulator, n, seed=0, vectorized=True)
    est = estimator(task.prior, layers=2, hidden=[32], epochs=60, seed=0, **kw)
    return task, est.fit(theta, x)


def test_npe_recovers_the_analytic_gaussian_linear_posterior():
    task, npe = _gaussian_linear_fit(NPE, lr=3e-3)
    for seed in (0, 1):
        _, x_o = task.observation(seed)
        exact = task.reference_samples(x_o, 4000)
        # Forward KL(p || q) = E_p[log p - log q]; log p of N(x/2, 0.05 I) in closed form.
        log_p = -0.5 * ((exact - x_o / 2) ** 2).sum(-1) / 0.05 - math.log(2 * math.pi * 0.05)
        kl = float((log_p - npe.log_prob(exact, x=x_o)).mean())
        assert kl < 0.1  # a model that ignored x would pay about 1.1 nats here
        samples = npe.sample(4000, x=x_o)
        torch.testing.assert_close(samples.mean(0), x_o / 2, atol=0.05, rtol=0)
        assert 0.8 < float(samples.std(0).mean() / math.sqrt(0.05)) < 1.2


def test_npe_keeps_a_bounded_posterior_inside_the_prior_box():
    task = tasks.two_moons()
    theta, x = simulate(task.prior, task.simulator, 1000, seed=0, vectorized=True)
    npe = NPE(task.prior, layers=2, hidden=[16], epochs=3).fit(theta, x)
    _, x_o = task.observation(0)
    samples = npe.sample(5000, x=x_o)
    assert bool((samples.abs() < 1).all())
    assert bool(torch.isfinite(npe.log_prob(samples[:10], x=x_o)).all())


def test_npe_batched_observations_give_a_sample_per_observation():
    task, npe = _gaussian_linear_fit(NPE, n=500, lr=3e-3)
    xs = torch.stack([task.observation(s)[1] for s in range(3)])
    assert npe.sample(7, x=xs).shape == (7, 3, 2)
    assert npe.sample(7, x=xs[0].numpy()).shape == (7, 2)


def test_nle_posterior_by_slice_sampling_matches_the_analytic_one():
    task, nle = _gaussian_linear_fit(NLE, lr=3e-3)
    _, x_o = task.observation(0)
    samples = nle.sample(2000, x=x_o, chains=40, warmup=50)
    assert samples.shape == (2000, 2)
    torch.testing.assert_close(samples.mean(0), x_o / 2, atol=0.06, rtol=0)
    assert 0.8 < float(samples.std(0).mean() / math.sqrt(0.05)) < 1.2
    exact = task.reference_samples(x_o, 2000)
    assert c2st(exact, samples) < 0.6


def test_estimators_refuse_bad_input():
    task = tasks.gaussian_linear(dim=2)
    npe = NPE(task.prior)
    with pytest.raises(ValueError, match="one row per simulation: got 10 and 9"):
        npe.fit(torch.zeros(10, 2), torch.zeros(9, 2))
    bad = torch.zeros(10, 2)
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match=r"x has NaN or inf values in 1 row \(index 3\)"):
        npe.fit(torch.zeros(10, 2), bad)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        npe.sample(3, x=torch.zeros(2))
    box = NPE(tasks.two_moons().prior)
    with pytest.raises(ValueError, match="outside the prior's support"):
        box.fit(torch.full((10, 2), 2.0), torch.zeros(10, 2))


def test_slice_sampling_is_exact_on_known_targets():
    torch.manual_seed(0)
    draws = slice_sample(lambda t: -0.5 * (t**2).sum(-1), torch.zeros(400, 2), 40)[10:]
    assert draws.shape == (30, 400, 2)
    assert abs(float(draws.mean())) < 0.05 and abs(float(draws.std()) - 1.0) < 0.05
    box = lambda t: torch.where((t.abs() < 1).all(-1), 0.0, -math.inf)  # noqa: E731
    uniform = slice_sample(box, torch.zeros(400, 1), 30)[5:]
    assert bool((uniform.abs() < 1).all()) and abs(float(uniform.var()) - 1 / 3) < 0.03
    with pytest.raises(ValueError, match="start where log_prob is finite"):
        slice_sample(box, torch.full((3, 1), 2.0), 1)


def _exact_and_overconfident():
    task = tasks.gaussian_linear(dim=2)
    theta, x = simulate(task.prior, task.simulator, 300, seed=3, vectorized=True)

    def exact(n, x_o):
        return task.reference_samples(x_o, n)

    def narrow(n, x_o):
        return x_o / 2 + 0.3 * math.sqrt(0.05) * torch.randn(n, 2)

    return theta, x, exact, narrow


def test_sbc_ranks_pass_for_the_exact_posterior_and_fail_for_an_overconfident_one():
    torch.manual_seed(0)
    theta, x, exact, narrow = _exact_and_overconfident()
    good = sbc_uniformity(sbc_ranks(exact, theta, x, draws=99), 99)
    bad = sbc_uniformity(sbc_ranks(narrow, theta, x, draws=99), 99)
    assert good.min() > 0.01
    assert bad.max() < 1e-6


def test_expected_coverage_is_the_diagonal_only_when_calibrated():
    torch.manual_seed(1)
    theta, x, exact, narrow = _exact_and_overconfident()

    def log_prob(scale):
        def fn(t, x_o):
            return -0.5 * ((t - x_o / 2) ** 2).sum(-1) / (scale**2 * 0.05)

        return fn

    levels, good = expected_coverage(log_prob(1.0), exact, theta, x)
    _, bad = expected_coverage(log_prob(0.3), narrow, theta, x)
    assert np.abs(good - levels).max() < 0.12
    assert (bad[40:70] < levels[40:70] - 0.3).all()  # far below the diagonal


def test_c2st_tells_apart_only_different_samples():
    torch.manual_seed(0)
    a, b = torch.randn(600, 2), torch.randn(600, 2)
    assert 0.4 < c2st(a, b) < 0.6
    assert c2st(a, b * 0.2) > 0.8


def test_tasks_define_prior_simulator_and_shapes():
    shapes = {
        "gaussian_linear": (10, 10),
        "two_moons": (2, 2),
        "gaussian_mixture": (2, 2),
        "slcp": (5, 8),
    }
    for name, make in tasks.TASKS.items():
        task = make()
        theta, x = task.observation(0)
        assert (theta.shape[0], x.shape[0]) == shapes[name]
        assert bool(torch.isfinite(x).all())
    mixture = tasks.gaussian_mixture()
    _, x_o = mixture.observation(2)
    ref = mixture.reference_samples(x_o, 4000)
    assert bool((ref.abs() < 10).all())
    # Half the mass within 0.1 of x_o (the narrow component), half spread with scale 1.
    close = ((ref - x_o).norm(dim=-1) < 0.3).double().mean()
    assert 0.45 < float(close) < 0.6
    warnings.simplefilter("default")
