"""Simulation-based inference: simulations, NPE and NLE against analytic posteriors, slice
sampling, calibration diagnostics, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.sbi import (
    NLE,
    NPE,
    AtomicLoss,
    SimulationError,
    Simulations,
    c2st,
    expected_coverage,
    posterior_predictive,
    sbc_ranks,
    sbc_uniformity,
    sequential,
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


@pytest.mark.parametrize("support", ["reject", "transform"])
def test_npe_keeps_a_bounded_posterior_inside_the_prior_box_and_normalized(support):
    task = tasks.two_moons()
    theta, x = simulate(task.prior, task.simulator, 1000, seed=0, vectorized=True)
    npe = NPE(task.prior, layers=2, hidden=[16], epochs=3, support=support).fit(theta, x)
    _, x_o = task.observation(0)
    samples = npe.sample(5000, x=x_o)
    assert bool((samples.abs() < 1).all())
    if support == "reject":
        assert 0.0 < npe.acceptance_ <= 1.0
    # The density integrates to 1 over the box (a grid of 300 x 300 cells) and is -inf outside.
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 301)[:-1] + 1 / 300] * 2), -1)
    mass = float(npe.log_prob(grid.reshape(-1, 2), x=x_o).exp().sum()) * (2 / 300) ** 2
    assert abs(mass - 1.0) < 0.03
    assert npe.log_prob(torch.tensor([[1.5, 0.0]]), x=x_o).item() == -math.inf


def test_atomic_loss_is_the_contrast_of_each_row_with_its_atoms():
    task = tasks.gaussian_linear(dim=2)
    torch.manual_seed(0)
    flow = nfkit.flows.maf(2, layers=1, hidden=[8], context=2)
    theta = task.prior.sample(6)
    x = task.simulator(theta)
    loss = AtomicLoss(task.prior, atoms=3)
    value = loss(flow, theta, x, torch.Generator().manual_seed(1))
    # The same contrast written out: the atoms are the row itself and two others.
    index = torch.multinomial(
        torch.ones(6, 6).fill_diagonal_(0.0), 2, generator=torch.Generator().manual_seed(1)
    )
    terms = []
    for i in range(6):
        atoms = torch.cat([theta[i : i + 1], theta[index[i]]])
        logits = flow.log_prob(atoms, context=x[i]) - task.prior.log_prob(atoms)
        terms.append(-(logits[0] - torch.logsumexp(logits, 0)))
    torch.testing.assert_close(value, torch.stack(terms).mean())
    value.backward()
    assert all(p.grad is not None for p in flow.parameters())
    with pytest.raises(ValueError, match="atoms must be at least 2"):
        AtomicLoss(task.prior, atoms=1)


@pytest.mark.parametrize(("estimator", "per_round"), [(NPE, 600), (NLE, 400)])
def test_sequential_rounds_recover_the_analytic_posterior(estimator, per_round):
    task = tasks.gaussian_linear(dim=2)
    _, x_o = task.observation(3)
    est = estimator(task.prior, layers=2, hidden=[32, 32], lr=3e-3, epochs=150, patience=10)
    est = sequential(est, task.simulator, x_o, rounds=2, simulations=per_round, vectorized=True)
    assert [r.simulations for r in est.rounds_] == [per_round, per_round]
    assert all(r.val_loss is not None and math.isfinite(r.val_loss) for r in est.rounds_)
    samples = est.posterior(x_o).sample(1500)
    # The second round's proposal was the first posterior: the atomic loss (NPE) and the
    # proposal-free likelihood (NLE) still give the posterior under the prior, N(x/2, 0.05 I).
    torch.testing.assert_close(samples.mean(0), x_o / 2, atol=0.06, rtol=0)
    assert 0.75 < float(samples.std(0).mean() / math.sqrt(0.05)) < 1.25


def test_estimators_save_and_load_their_posteriors(tmp_path):
    task = tasks.two_moons()
    theta, x = simulate(task.prior, task.simulator, 400, seed=0, vectorized=True)
    _, x_o = task.observation(1)
    for cls, mixing in ((NPE, "lu"), (NLE, "reverse")):
        est = cls(task.prior, layers=2, hidden=[8], epochs=2, mixing=mixing).fit(theta, x)
        back = cls.load(est.save(tmp_path / f"{cls.__name__}.safetensors"))
        mine, theirs = est.posterior(x_o), back.posterior(x_o)
        torch.testing.assert_close(mine.log_prob(theta[:20]), theirs.log_prob(theta[:20]))
        lu = any(isinstance(m, nfb.ScaleMatvecLU) for m in back.model_.modules())
        assert back.mixing == mixing and lu == (mixing == "lu")
    with pytest.raises(ValueError, match="mixing must be one of"):
        NPE(task.prior, mixing="shuffle")
    glm = tasks.bernoulli_glm()  # a torch prior: the file holds the flow only
    theta, x = simulate(glm.prior, glm.simulator, 300, seed=0, vectorized=True)
    path = NPE(glm.prior, layers=1, hidden=[8], epochs=1).fit(theta, x).save(tmp_path / "g")
    with pytest.raises(ValueError, match="torch prior, which a file cannot hold: pass prior="):
        NPE.load(path)
    assert NPE.load(path, prior=glm.prior).sample(3, x=x[0]).shape == (3, 10)
    with pytest.raises(ValueError, match="holds an NPE, not an NLE"):
        NLE.load(path, prior=glm.prior)


def test_npe_batched_observations_give_a_sample_per_observation():
    task, npe = _gaussian_linear_fit(NPE, n=500, lr=3e-3)
    xs = torch.stack([task.observation(s)[1] for s in range(3)])
    assert npe.sample(7, x=xs).shape == (7, 3, 2)
    assert npe.sample(7, x=xs[0].numpy()).shape == (7, 2)


def test_nle_posterior_by_slice_sampling_matches_the_analytic_one():
    task, nle = _gaussian_linear_fit(NLE, lr=3e-3)
    _, x_o = task.observation(0)
    samples = nle.sample(2000, x=x_o, chains=200)
    assert samples.shape == (2000, 2)
    torch.testing.assert_close(samples.mean(0), x_o / 2, atol=0.06, rtol=0)
    assert 0.8 < float(samples.std(0).mean() / math.sqrt(0.05)) < 1.2
    exact = task.reference_samples(x_o, 2000)
    assert c2st(exact[:1000], samples[:1000]) < 0.6


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


def test_posterior_predictive_accepts_the_exact_posterior_and_flags_a_shifted_one():
    task = tasks.gaussian_linear(dim=3)
    _, x_o = task.observation(3)
    exact = nfd.MultivariateNormalDiag(loc=x_o / 2, scale_diag=[math.sqrt(0.05)] * 3)
    good = posterior_predictive(exact, task.simulator, x_o, 2000, vectorized=True)
    assert len(good.simulations) == 2000 and good.simulations.x.shape == (2000, 3)
    assert good.distance_p > 0.05 and good.p_values.min() > 0.01 / 3
    shifted = task.reference_samples(x_o, 2000) + torch.tensor([2.0, 0.0, 0.0])
    bad = posterior_predictive(shifted, task.simulator, x_o, vectorized=True)
    assert bad.distance_p < 0.01 and bad.p_values[0] < 0.01 and bad.p_values[1:].min() > 1e-3


def test_posterior_predictive_counts_failed_simulations_and_checks_the_observation():
    def flaky(t):
        if t[0] > 1.0:
            raise RuntimeError("diverged")
        return t * 2.0

    with pytest.warns(RuntimeWarning, match="dropped"):
        check = posterior_predictive(torch.randn(300, 2), flaky, torch.zeros(2))
    failed = check.simulations.failed
    assert 0 < failed < 100 and len(check.simulations) == 300 - failed
    with pytest.raises(ValueError, match="x_o has 3 values but the simulations have 2"):
        posterior_predictive(torch.randn(50, 2), lambda t: t, torch.zeros(3))


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
        "bernoulli_glm": (10, 10),
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
    # Bernoulli GLM: x = X^T y, so x[0] counts spikes in 100 bins; the log-concave posterior
    # (sampled by slice sampling) concentrates around the parameters that made the data.
    glm = tasks.bernoulli_glm()
    theta_o, x_o = glm.observation(0)
    assert float(x_o[0]) == round(float(x_o[0])) and 0 <= float(x_o[0]) <= 100
    ref = glm.reference_samples(x_o, 300)
    z = (ref.mean(0) - theta_o) / ref.std(0)
    assert ref.shape == (300, 10) and float(z.abs().max()) < 4.0
    assert float(ref.std(0).max()) < float(glm.prior.sample(2000).std(0).min())
    warnings.simplefilter("default")
