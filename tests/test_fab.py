"""FAB (issue 19): the loss's gradient is that of the alpha=2 divergence, training reaches both
wells without a sample of the target, the replay buffer samples by weight and resumes exactly."""

import math

import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit import flows
from nfkit.annealing import AnnealedImportanceSampler
from nfkit.stochastic import HMCLayer, StochasticNormalizingFlow
from nfkit.targets import DoubleWell
from nfkit.train.fab import FABObjective, ReplayBuffer


def _log_divergence(mu: float, sigma: float) -> float:
    """log of the integral of p~^2 / q, p~ = e^2 N(1, 0.7^2), q = N(mu, sigma^2) (quadrature)."""
    x = torch.linspace(-20.0, 20.0, 200_001, dtype=torch.float64)
    log_p = 2.0 + torch.distributions.Normal(1.0, 0.7).log_prob(x)
    log_q = torch.distributions.Normal(mu, sigma).log_prob(x)
    return float(torch.logsumexp(2 * log_p - log_q, 0) + math.log(float(x[1] - x[0])))


def test_fab_loss_gradient_matches_a_finite_difference_of_the_alpha_two_divergence():
    torch.manual_seed(0)
    mu, log_sigma = 0.3, math.log(1.4)
    shift = torch.nn.Parameter(torch.tensor([mu]))
    log_scale = torch.nn.Parameter(torch.tensor([log_sigma]))
    base = nfd.MultivariateNormalDiag(loc=[0.0])
    flow = nfb.Chain([nfb.Shift(shift), nfb.Scale(log_scale=log_scale)])(base)

    def log_target(x):
        return 2.0 + torch.distributions.Normal(1.0, 0.7).log_prob(x[..., 0])

    objective = FABObjective(log_target, 200_000, AnnealedImportanceSampler(2), replay=False)
    objective(flow, None, None).backward()
    h = 1e-4
    d_mu = (_log_divergence(mu + h, 1.4) - _log_divergence(mu - h, 1.4)) / (2 * h)
    d_log_sigma = (
        _log_divergence(mu, math.exp(log_sigma + h)) - _log_divergence(mu, math.exp(log_sigma - h))
    ) / (2 * h)
    assert float(shift.grad) == pytest.approx(d_mu, rel=0.03, abs=0.005)
    assert float(log_scale.grad) == pytest.approx(d_log_sigma, rel=0.03, abs=0.005)
    assert abs(d_mu) > 0.2 and abs(d_log_sigma) > 0.2  # a real slope, not a flat spot


def _exact_share(target, n=200_000):
    return float((target.modes(target.sample(n, seed=5)) == 1).double().mean())


@pytest.mark.parametrize("replay", [False, True])
def test_fab_trains_a_flow_onto_both_wells_without_target_samples(replay):
    torch.manual_seed(0)
    target = DoubleWell()
    flow = flows.realnvp(2, layers=4, hidden=[32, 32])
    history = nfkit.fit_energy(
        flow, target, method="fab", replay=replay, epochs=5, steps_per_epoch=50,
        batch_size=128, lr=3e-3, verbose=0, seed=0,
    )  # fmt: skip
    assert set(history.history) >= {"loss", "ess", "ais_ess", "acceptance", "nonfinite"}
    assert 0.4 < history.history["acceptance"][-1] < 0.9  # step sizes adapted
    result = nfkit.importance(flow, target, 20_000)
    assert result.ess > 0.2
    assert abs(result.log_z - target.log_z) < 4 * result.log_z_se + 0.01
    # The flow's own samples hold both wells in about the right proportion (reverse KL from
    # this start leaves none in the shallow well).
    raw = float((target.modes(flow.sample(20_000)) == 1).double().mean())
    assert abs(raw - _exact_share(target)) < 0.12  # 0.04-0.11 over seeds 0-2; reverse KL: 0.16


def test_reverse_kl_from_the_same_start_loses_the_shallow_well():
    # The contrast that makes the test above mean something: same flow, budget and seed.
    torch.manual_seed(0)
    target = DoubleWell()
    flow = flows.realnvp(2, layers=4, hidden=[32, 32])
    nfkit.fit_energy(
        flow, target, epochs=5, steps_per_epoch=50, batch_size=128, lr=3e-3, verbose=0, seed=0
    )
    raw = float((target.modes(flow.sample(20_000)) == 1).double().mean())
    assert raw > _exact_share(target) + 0.1


def test_fab_with_its_buffer_resumes_to_the_same_result(tmp_path):
    target = DoubleWell()
    kw = dict(method="fab", epochs=4, steps_per_epoch=6, batch_size=32, lr=3e-3, seed=1)
    kw |= dict(buffer_size=640, verbose=0)

    def run(checkpoint, **extra):
        torch.manual_seed(0)
        flow = flows.realnvp(2, layers=2, hidden=[16])
        history = nfkit.fit_energy(flow, target, checkpoint=checkpoint, **kw, **extra)
        return flow, history

    whole, whole_history = run(tmp_path / "whole.ckpt")

    def interrupt(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut.ckpt", callbacks=[interrupt])
    resumed, resumed_history = run(tmp_path / "cut.ckpt", resume=True)
    assert resumed_history.history == whole_history.history
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_replay_buffer_samples_in_proportion_to_the_weights_and_overwrites_the_oldest():
    torch.manual_seed(0)
    buffer = ReplayBuffer(capacity=4, min_length=2)
    assert not buffer.ready
    x = torch.arange(6.0).reshape(6, 1)
    buffer.add(x[:3], torch.zeros(3), torch.zeros(3))
    buffer.add(x[3:], torch.log(torch.tensor([1.0, 2.0, 3.0])), torch.zeros(3))
    assert buffer.ready and buffer.length == 4
    # Slots 0 and 1 were overwritten by the fifth and sixth points (weights 2 and 3).
    assert buffer.x[:, 0].tolist() == [4.0, 5.0, 2.0, 3.0]
    picks = torch.stack([buffer.sample(1) for _ in range(20_000)]).flatten()
    share = torch.bincount(picks, minlength=4).double() / picks.numel()
    weights = torch.tensor([2.0, 3.0, 1.0, 1.0]) / 7
    torch.testing.assert_close(share, weights.double(), atol=0.015, rtol=0)
    assert buffer.sample(4).sort().values.tolist() == [0, 1, 2, 3]  # without replacement
    buffer.adjust(torch.tensor([1]), torch.tensor([-math.log(3.0)]), torch.tensor([0.5]))
    assert float(buffer.log_w[1]) == pytest.approx(0.0) and float(buffer.log_q[1]) == 0.5


def test_fit_energy_methods_refuse_what_they_cannot_do():
    target = DoubleWell()
    flow = flows.realnvp(2, layers=2, hidden=[8])
    with pytest.raises(ValueError, match="unknown method"):
        nfkit.fit_energy(flow, target, method="fkl", verbose=0)
    with pytest.raises(ValueError, match="needs data"):
        nfkit.fit_energy(flow, target, method="forward_kl", verbose=0)
    with pytest.raises(ValueError, match="draws its own samples"):
        nfkit.fit_energy(flow, target, method="fab", data=torch.zeros(10, 2), verbose=0)
    snf = StochasticNormalizingFlow(flow.distribution, [flow.bijector, HMCLayer()], target)
    with pytest.raises(ValueError, match="tractable"):
        nfkit.fit_energy(snf, target, method="fab", epochs=1, steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match="buffer_size"):
        nfkit.fit_energy(flow, target, method="fab", batch_size=64, buffer_size=100, verbose=0)


def test_forward_kl_is_maximum_likelihood_on_target_samples():
    torch.manual_seed(0)
    target = DoubleWell()
    flow = flows.realnvp(2, layers=4, hidden=[32, 32])
    data = target.sample(4000, seed=0)
    nfkit.fit_energy(
        flow, target, method="forward_kl", data=data, epochs=40, batch_size=256, lr=3e-3,
        verbose=0, seed=0,
    )  # fmt: skip
    held_out = target.sample(4000, seed=1)
    with torch.no_grad():
        nll = -float(flow.log_prob(held_out).mean())
    # The exact NLL is log Z - E[log p~]; a flow that ignored the data stays far above it.
    exact = target.log_z - float(target.log_prob(held_out.double()).mean())
    assert nll < exact + 0.15
