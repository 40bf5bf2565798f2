"""Continuous flows: closed-form log-likelihoods, Hutchinson's estimator, adjoint gradients,
regularization, flow matching (the shared bijector properties run in test_bijector_properties)."""

import itertools
import math

import pytest
import torch
from torch import nn

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.continuous import (
    ContinuousFlow,
    exact_divergence,
    fit_flow_matching,
    hutchinson_divergence,
    ot_pairing,
)
from nfkit.nets import VelocityNetwork


class LinearField(nn.Module):
    """v(x, t) = A x: the flow is x(t) = expm(tA) x(0) and log|det| = t tr(A)."""

    def __init__(self, matrix):
        super().__init__()
        self.matrix = nn.Parameter(matrix)

    def forward(self, x, t, context=None):
        return x @ self.matrix.T


def _normal(d):
    return nfd.MultivariateNormalDiag(loc=[0.0] * d)


@pytest.mark.usefixtures("float64")
def test_linear_field_matches_closed_form():
    torch.manual_seed(0)
    a = torch.randn(3, 3) * 0.7
    flow = ContinuousFlow(LinearField(a), rtol=1e-10, atol=1e-12)(_normal(3))
    x = torch.randn(6, 3) * 2.0
    z = x @ torch.linalg.matrix_exp(-a).T
    expected = _normal(3).log_prob(z) - torch.trace(a)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(flow.bijector.forward(z), x, atol=1e-9, rtol=1e-9)
    _, log_det = flow.bijector.forward_and_log_det(z)
    torch.testing.assert_close(log_det, torch.trace(a).expand(6), atol=1e-9, rtol=1e-9)


@pytest.mark.usefixtures("float64")
def test_fixed_step_rk4_is_close_to_the_closed_form():
    torch.manual_seed(1)
    a = torch.randn(2, 2) * 0.5
    flow = ContinuousFlow(LinearField(a), method="rk4", steps=20)(_normal(2))
    x = torch.randn(5, 2)
    z = x @ torch.linalg.matrix_exp(-a).T
    expected = _normal(2).log_prob(z) - torch.trace(a)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-6, rtol=1e-6)


def _random_field(d, seed=0):
    torch.manual_seed(seed)
    field = VelocityNetwork([32], activation="tanh", features=d)
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return field


@pytest.mark.usefixtures("float64")
def test_hutchinson_estimate_is_unbiased():
    d, draws = 5, 4000
    field = _random_field(d)
    x = torch.randn(3, d).requires_grad_(True)
    v = field(x, torch.tensor(0.3))
    exact, frobenius = exact_divergence(v, x, create_graph=False)
    noise = torch.randint(0, 2, (draws, 3, d)).double() * 2 - 1
    estimates = torch.stack([hutchinson_divergence(v, x, e, create_graph=False)[0] for e in noise])
    mean, se = estimates.mean(0), estimates.std(0) / math.sqrt(draws)
    assert (estimates.std(0) > 0).all()  # a real estimate, not the exact value
    assert ((mean - exact).abs() < 4 * se).all(), (mean, exact, se)
    # The Frobenius estimate E|e^T J|^2 is unbiased too, and the exact one matches autograd.
    jac = torch.stack([torch.autograd.functional.jacobian(lambda u: field(u, 0.3), xi) for xi in x])
    torch.testing.assert_close(exact, jac.diagonal(dim1=-2, dim2=-1).sum(-1))
    torch.testing.assert_close(frobenius, jac.square().sum((-2, -1)))


@pytest.mark.usefixtures("float64")
def test_hutchinson_only_while_training_and_log_likelihood_is_exact_otherwise():
    field = _random_field(4, seed=2)
    exact_flow = ContinuousFlow(field, rtol=1e-8, atol=1e-8)(_normal(4))
    flow = ContinuousFlow(field, divergence="hutchinson", rtol=1e-8, atol=1e-8)(_normal(4))
    x = torch.randn(2, 4)
    exact = exact_flow.log_prob(x)
    flow.eval()
    torch.testing.assert_close(flow.log_prob(x), exact)
    flow.train()
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x), exact)
    # 400 copies of each point in one solve: every row draws its own Rademacher vector.
    draws = flow.log_prob(x.expand(400, 2, 4)).detach()
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert (draws.std(0) > 1e-3).all()
    assert ((draws.mean(0) - exact).abs() < 4 * se).all()


def test_sample_and_log_prob_agree_with_log_prob_after_a_round_trip():
    torch.manual_seed(3)
    flow = ContinuousFlow(_random_field(2, seed=3), rtol=1e-7, atol=1e-7)(_normal(2))
    x, log_p = flow.sample_and_log_prob((4, 5))
    assert x.shape == (4, 5, 2) and log_p.shape == (4, 5)
    torch.testing.assert_close(flow.log_prob(x), log_p, atol=1e-4, rtol=1e-4)
    z = flow.bijector.inverse(x)
    torch.testing.assert_close(flow.bijector.forward(z), x, atol=1e-4, rtol=1e-4)


@pytest.mark.usefixtures("float64")
def test_adjoint_gradients_equal_backprop_through_the_solver():
    x = torch.randn(8, 3)
    grads = []
    for adjoint in (False, True):
        field = _random_field(3, seed=4)
        flow = ContinuousFlow(field, rtol=1e-10, atol=1e-10, adjoint=adjoint)(_normal(3))
        flow.log_prob(x).sum().backward()
        grads.append([p.grad.clone() for p in field.parameters()])
    for direct, adjoint in zip(*grads, strict=True):
        torch.testing.assert_close(adjoint, direct, atol=1e-6, rtol=1e-6)


def test_kinetic_energy_penalty_is_computed_while_training_and_added_by_fit():
    field = _random_field(2, seed=5)
    cnf = ContinuousFlow(field, kinetic_energy=0.1, jacobian_norm=0.01)
    flow = cnf(_normal(2))
    x = torch.randn(16, 2)
    flow.train()
    flow.log_prob(x)
    penalty = cnf.pop_penalty()
    assert penalty is not None and penalty.item() > 0 and cnf.pop_penalty() is None
    flow.eval()
    flow.log_prob(x)
    assert cnf.pop_penalty() is None
    # fit's reported loss is the NLL plus the penalty of each step.
    seen = []
    original = cnf.pop_penalty

    def spy():
        value = original()
        seen.append(value)
        return value

    cnf.pop_penalty = spy
    nfkit.fit(flow, x, epochs=1, batch_size=16, lr=1e-3, verbose=0)
    assert len(seen) == 1 and seen[0] is not None and seen[0].item() > 0


def test_maximum_likelihood_training_through_fit_learns_a_shifted_gaussian():
    torch.manual_seed(6)
    data = torch.randn(512, 2) * torch.tensor([0.5, 1.5]) + torch.tensor([1.0, -1.0])
    flow = ContinuousFlow(hidden_units=[32], rtol=1e-4, atol=1e-4)(_normal(2))
    h = nfkit.fit(flow, data, epochs=25, batch_size=128, lr=1e-2, verbose=0, seed=0)
    entropy = 0.5 * math.log((2 * math.pi * math.e) ** 2 * 0.25 * 2.25)  # 2.35 nats
    assert h.history["loss"][0] > entropy + 0.8  # N(0, I) starts far off
    test = torch.randn(2000, 2) * torch.tensor([0.5, 1.5]) + torch.tensor([1.0, -1.0])
    with torch.no_grad():
        assert -flow.log_prob(test).mean().item() < entropy + 0.1


def _two_blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, (n, 1), generator=g) * 2.0 - 1.0
    return torch.cat([sign * 2.0, torch.zeros(n, 1)], 1) + 0.3 * torch.randn(n, 2, generator=g)


# Exact entropy of the two-blob mixture (blobs 13 sd apart): H(N(0, 0.3^2 I)) + log 2.
BLOBS_ENTROPY = math.log(2 * math.pi * math.e * 0.09) + math.log(2.0)  # 1.12 nats
# The best single Gaussian scores 0.5 log det(2 pi e Cov) = 2.34 nats: a flow that fails to
# split the mass cannot get near the bound below.


@pytest.mark.parametrize(("coupling", "epochs"), [("independent", 150), ("ot", 60)])
def test_flow_matching_learns_a_bimodal_density(coupling, epochs):
    torch.manual_seed(7)
    flow = ContinuousFlow(hidden_units=[64, 64])(_normal(2))
    h = fit_flow_matching(
        flow,
        _two_blobs(2048, 0),
        coupling=coupling,
        epochs=epochs,
        lr=1e-2,
        lr_schedule="cosine",
        verbose=0,
        seed=0,
    )
    assert len(h.history["loss"]) == epochs
    assert h.history["loss"][-1] < h.history["loss"][0]
    with torch.no_grad():
        nll = -flow.log_prob(_two_blobs(2000, 2)).mean().item()
    assert nll < BLOBS_ENTROPY + 0.25, nll
    samples = flow.sample(2000)
    assert 0.4 < (samples[:, 0] > 0).float().mean() < 0.6
    assert (samples[:, 0].abs() - 2.0).abs().median() < 0.3


def test_flow_matching_reports_exact_validation_nll_and_resumes(tmp_path):
    data, val = _two_blobs(512, 5), _two_blobs(256, 6)
    kwargs = {"epochs": 4, "lr": 1e-2, "verbose": 0, "seed": 3, "validation_data": val}

    def run(**extra):
        torch.manual_seed(0)
        flow = ContinuousFlow(hidden_units=[16])(_normal(2))
        return flow, fit_flow_matching(flow, data, **kwargs, **extra)

    flow, h = run()
    with torch.no_grad():
        assert h.history["val_loss"][-1] == pytest.approx(-flow.log_prob(val).mean().item())
    # Stopped after 2 epochs, then resumed: the same weights as the uninterrupted run.
    ckpt = tmp_path / "fm.ckpt"
    run(checkpoint=ckpt, callbacks=[lambda epoch, logs: epoch == 1])
    resumed, h2 = run(checkpoint=ckpt, resume=True)
    assert h2.history["loss"] == pytest.approx(h.history["loss"])
    torch.testing.assert_close(resumed.log_prob(val), flow.log_prob(val))


def test_flow_matching_trains_through_fixed_outer_bijectors():
    torch.manual_seed(8)
    data = _two_blobs(1024, 3) * 10.0 + 5.0
    outer = nfb.Chain([nfb.Shift(torch.tensor(5.0)), nfb.Scale(torch.tensor(10.0))])
    cnf = ContinuousFlow(hidden_units=[64, 64])
    flow = nfd.TransformedDistribution(_normal(2), nfb.Chain([outer, cnf]))
    fit_flow_matching(flow, data, epochs=150, lr=1e-2, lr_schedule="cosine", verbose=0, seed=0)
    with torch.no_grad():
        nll = -flow.log_prob(_two_blobs(2000, 4) * 10.0 + 5.0).mean().item()
    assert nll < BLOBS_ENTROPY + 2 * math.log(10.0) + 0.3


def test_flow_matching_refuses_flows_it_cannot_train():
    with pytest.raises(TypeError, match="ContinuousFlow"):
        fit_flow_matching(nfkit.flows.maf(2, layers=1, hidden=[8]), torch.randn(64, 2))
    trainable = nfb.Shift(nn.Parameter(torch.zeros(2)))
    flow = nfd.TransformedDistribution(_normal(2), nfb.Chain([trainable, ContinuousFlow()]))
    with pytest.raises(ValueError, match="trainable"):
        fit_flow_matching(flow, torch.randn(64, 2))
    with pytest.raises(ValueError, match="coupling"):
        fit_flow_matching(ContinuousFlow()(_normal(2)), torch.randn(64, 2), coupling="sinkhorn")


def test_bad_solver_arguments_are_named():
    with pytest.raises(ValueError, match="steps="):
        ContinuousFlow(method="rk4")
    with pytest.raises(ValueError, match="divergence"):
        ContinuousFlow(divergence="skilling")
    with pytest.raises(ValueError, match="kinetic_energy"):
        ContinuousFlow(kinetic_energy=-1.0)


def test_ot_pairing_is_the_optimal_permutation():
    torch.manual_seed(9)
    x0, x1 = torch.randn(6, 2), torch.randn(6, 2)
    paired = ot_pairing(x0, x1)
    cost = (paired - x1).square().sum().item()
    best = min((x0[list(p)] - x1).square().sum().item() for p in itertools.permutations(range(6)))
    assert cost == pytest.approx(best, rel=1e-6)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x0.tolist()))


def test_cnf_builder_saves_and_loads(tmp_path):
    flow = nfkit.flows.cnf(3, hidden=[16])
    x = torch.randn(5, 3)
    flow.log_prob(x)
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "cnf.safetensors"))
    assert isinstance(loaded.bijector, ContinuousFlow)
    torch.testing.assert_close(loaded.log_prob(x), flow.log_prob(x))


def test_trajectory_starts_at_the_base_point_and_ends_at_forward():
    cnf = ContinuousFlow(_random_field(2, seed=10), rtol=1e-7, atol=1e-7)
    z = torch.randn(6, 2)
    path = cnf.trajectory(z, 9)
    assert path.shape == (9, 6, 2)
    torch.testing.assert_close(path[0], z)
    torch.testing.assert_close(path[-1], cnf.forward(z), atol=1e-4, rtol=1e-4)
