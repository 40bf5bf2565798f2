"""Conditional flows from every builder: an analytic conditional density recovered, context
shapes and types, the embedding network trained jointly, clear refusals."""

import math

import numpy as np
import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.nets import ContextEmbedding

A = torch.tensor([[1.0, -0.5], [0.3, 0.8]])
B = torch.tensor([0.5, -1.0])
SCALE = torch.tensor([0.3, 0.6])


def linear_gaussian(n, seed):
    """x | t ~ N(A t + b, diag(SCALE^2)), t ~ N(0, I): the exact conditional is known."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, 2, generator=g)
    x = t @ A.T + B + SCALE * torch.randn(n, 2, generator=g)
    return x, t


def exact_log_prob(x, t):
    z = (x - (t @ A.T + B)) / SCALE
    return (-0.5 * z**2 - SCALE.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


@pytest.mark.parametrize(
    "builder",
    [
        lambda: nfkit.flows.maf(2, layers=2, hidden=[32], context=2),
        lambda: nfkit.flows.realnvp(2, layers=4, hidden=[32], context=2),
        lambda: nfkit.flows.nsf(2, layers=2, hidden=[32], context=2),
        lambda: nfkit.flows.nsf(2, layers=2, hidden=[32], coupling=True, context=2),
    ],
    ids=["maf", "realnvp", "nsf", "nsf-coupling"],
)
def test_a_conditional_flow_recovers_the_linear_gaussian_conditional(builder):
    torch.manual_seed(0)
    x, t = linear_gaussian(4000, 0)
    m, s = x.mean(0), x.std(0)  # flows want standardized data (splines act on [-3, 3])
    flow = builder()
    nfkit.fit(flow, (x - m) / s, context=t, epochs=25, batch_size=128, lr=5e-3, seed=0, verbose=0)
    xt, tt = linear_gaussian(2000, 1)
    with torch.no_grad():  # the KL divergence is the same in standardized units
        log_q = flow.log_prob((xt - m) / s, context=tt) - s.log().sum()
        kl = float((exact_log_prob(xt, tt) - log_q).mean())
    # E KL(p(x|t) || q(x|t)); ignoring t costs log-det of the marginal covariance: ~0.9 nats.
    assert kl < 0.2


def test_contexts_give_samples_per_context_and_take_numpy():
    flow = nfkit.flows.maf(3, layers=1, hidden=[8], context=2)
    one, many = torch.zeros(2), torch.randn(4, 2)
    assert flow.sample(5, context=one).shape == (5, 3)
    assert flow.sample(5, context=many).shape == (5, 4, 3)
    assert flow.sample((), context=many).shape == (4, 3)
    x = flow.sample((), context=many)
    numpy_lp = flow.log_prob(x.numpy(), context=many.numpy())
    assert isinstance(numpy_lp, np.ndarray)
    torch.testing.assert_close(torch.as_tensor(numpy_lp), flow.log_prob(x, context=many))
    both = flow.sample_and_log_prob(6, context=many)
    assert both[0].shape == (6, 4, 3) and both[1].shape == (6, 4)


def test_bad_contexts_are_named():
    flow = nfkit.flows.maf(2, layers=1, hidden=[8], context=2)
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match=r"context must have shape \(10, C\)"):
        nfkit.fit(flow, x, context=torch.randn(9, 2), verbose=0)
    bad = torch.randn(10, 2)
    bad[4, 0] = math.nan
    with pytest.raises(ValueError, match=r"context has NaN or inf values in 1 row \(index 4\)"):
        nfkit.fit(flow, x, context=bad, verbose=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        flow.log_prob(x, context=bad)
    with pytest.raises(ValueError, match="context_features"):
        flow.log_prob(x)  # conditional: a context is needed
    with pytest.raises(ValueError, match="context of width 2, got 3"):
        flow.log_prob(x, context=torch.randn(10, 3))


def test_the_embedding_network_trains_with_the_flow():
    torch.manual_seed(0)
    x, t = linear_gaussian(1000, 0)
    series = t[:, None, :].repeat(1, 3, 1)  # a context that is not a vector: (n, 3, 2)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4))
    embedding = ContextEmbedding.of(series, net)
    flow = nfd.Conditional(nfkit.flows.maf(2, layers=2, hidden=[16], context=4), embedding)
    before = net[1].weight.detach().clone()
    h = nfkit.fit(flow, x, context=series, epochs=5, lr=5e-3, verbose=0, seed=0)
    assert not torch.equal(before, net[1].weight.detach())  # gradients reached the embedding
    assert h.history["loss"][-1] < h.history["loss"][0] - 0.3
    assert flow.sample(3, context=series[:2]).shape == (3, 2, 2)


@pytest.mark.parametrize("name", ["maf", "iaf", "realnvp", "nsf", "cnf"])
def test_every_builder_takes_an_embedding_that_gets_gradients(name):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh())
    sizes = {"hidden": [8]} if name == "cnf" else {"layers": 2, "hidden": [8]}
    flow = nfkit.flows.FLOWS[name](2, context=6, embedding=net, **sizes)
    assert isinstance(flow, nfd.Conditional) and flow.embedding is net
    x, c = torch.randn(64, 2), torch.randn(64, 6)
    before = net[0].weight.detach().clone()
    nfkit.fit(flow, x, context=c, epochs=2, batch_size=16, verbose=0, seed=0)
    assert not torch.equal(before, net[0].weight.detach())  # the embedding trained too
    assert flow.sample(3, context=c[:4]).shape == (3, 4, 2)
    with pytest.raises(ValueError, match="embedding= needs context="):
        nfkit.flows.FLOWS[name](2, embedding=net, **sizes)


def test_conditional_flow_matching_and_cnf_take_a_context():
    from nfkit.continuous import fit_flow_matching

    torch.manual_seed(0)
    x, t = linear_gaussian(512, 0)
    flow = nfkit.flows.cnf(2, hidden=[16], context=2)
    h = fit_flow_matching(flow, x, context=t, epochs=3, verbose=0, seed=0)
    assert len(h.epoch) == 3
    assert flow.sample(4, context=t[:3]).shape == (4, 3, 2)


def test_unconditional_layers_refuse_a_context():
    glow = nfkit.flows.glow((1, 4, 4), levels=1, steps=1, hidden_channels=4, flat=True)
    with pytest.raises(ValueError, match="cannot use a context"):
        glow.log_prob(torch.rand(3, 16) * 0.8 + 0.1, context=torch.randn(3, 2))
    assert isinstance(nfb.Chain([]), nfb.Bijector)
