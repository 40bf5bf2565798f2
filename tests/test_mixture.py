"""MixtureSameFamily: density, sampling frequencies, shapes, training as a flow's base."""

import math

import torch
from torch import nn

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd


def _mixture():
    loc = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    return nfd.MixtureSameFamily(
        torch.tensor([0.2, 0.3, 0.5]).log(),
        nfd.MultivariateNormalDiag(loc, torch.full((3, 2), 0.5)),
    )


def test_log_prob_is_the_weighted_sum_of_component_densities():
    mix = _mixture()
    x = torch.randn(6, 2) * 3.0
    comps = torch.stack(
        [
            torch.distributions.Normal(m, 0.5).log_prob(x).sum(-1)
            for m in mix.components_distribution.loc
        ]
    )
    expected = torch.logsumexp(comps + torch.tensor([0.2, 0.3, 0.5]).log()[:, None], 0)
    torch.testing.assert_close(mix.log_prob(x), expected)


def test_samples_pick_components_by_weight():
    torch.manual_seed(0)
    x = _mixture().sample(20_000)
    fractions = torch.stack([(x[:, 0] < -2).float().mean(), (x[:, 1] > 2).float().mean()])
    se = math.sqrt(0.25 / 20_000)
    assert ((fractions - torch.tensor([0.2, 0.3])).abs() < 4 * se).all()


def test_batch_shapes():
    mix = nfd.MixtureSameFamily(torch.zeros(4, 3), nfd.MultivariateNormalDiag(torch.randn(4, 3, 2)))
    assert mix.batch_shape == (4,) and mix.event_shape == (2,)
    x = mix.sample((5,))
    assert x.shape == (5, 4, 2) and mix.log_prob(x).shape == (5, 4)


def test_trained_as_a_base_it_finds_the_weights_and_modes(tmp_path):
    torch.manual_seed(1)
    n = 4000
    pick = torch.rand(n, 1) < 0.3
    data = torch.where(pick, -2.0, 3.0) + 0.5 * torch.randn(n, 1)
    mix = nfd.MixtureSameFamily(
        nn.Parameter(torch.zeros(2)),
        nfd.MultivariateNormalDiag(nn.Parameter(torch.tensor([[-1.0], [1.0]])), [[0.5], [0.5]]),
    )
    flow = nfb.Identity()(mix)
    nfkit.fit(flow, data, epochs=30, batch_size=256, lr=0.05, verbose=0, seed=0)
    weights = mix.logits.softmax(-1).detach()
    torch.testing.assert_close(weights, torch.tensor([0.3, 0.7]), atol=0.03, rtol=0)
    locs = mix.components_distribution.loc.detach().flatten()
    torch.testing.assert_close(locs, torch.tensor([-2.0, 3.0]), atol=0.1, rtol=0)
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "mix.safetensors"))
    torch.testing.assert_close(loaded.log_prob(data[:10]), flow.log_prob(data[:10]))


def test_bad_component_batch_is_named():
    import pytest

    with pytest.raises(ValueError, match="last batch dim must count the 3 components"):
        nfd.MixtureSameFamily(torch.zeros(3), nfd.MultivariateNormalDiag(loc=[0.0, 0.0]))
