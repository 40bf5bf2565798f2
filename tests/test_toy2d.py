"""The 2-D test densities: samplers and exact densities agree, and densities integrate to one."""

import math

import numpy as np
import pytest
import torch

from nfkit.data import moons_log_prob
from nfkit.data.toy2d import TOY2D


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_samples_and_normalisation(name):
    toy = TOY2D[name]
    x = toy.sample(20_000, seed=0)
    assert x.shape == (20_000, 2) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, toy.sample(20_000, seed=0))
    if toy.log_prob is None:
        return
    # Riemann sum of p over a box that holds all the mass.
    lim, n = 3.5, 200
    step = 2 * lim / n
    g = torch.arange(n, dtype=torch.float64) * step - lim + step / 2  # cell midpoints
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    p = toy.log_prob(torch.stack([xx.flatten(), yy.flatten()], -1)).exp().reshape(n, n)
    assert float(p.sum() * step**2) == pytest.approx(1.0, abs=0.01)
    # The sampler draws from that density: mass per coarse cell (10 x 10) matches the draws'
    # frequencies within a few standard errors (at most 0.0035 with 20 000 draws).
    mass = (p * step**2).reshape(10, n // 10, 10, n // 10).sum((1, 3)).numpy()
    freq, _, _ = np.histogram2d(x[:, 1], x[:, 0], bins=10, range=[[-lim, lim], [-lim, lim]])
    np.testing.assert_allclose(freq / len(x), mass, atol=0.015)


def test_entropies():
    assert TOY2D["checkerboard"].entropy() == (math.log(8.0), 0.0)
    h, se = TOY2D["moons"].entropy(n=20_000)
    assert h == pytest.approx(0.288, abs=0.02) and se < 0.01
    assert TOY2D["pinwheel"].entropy() is None
    # Centred moons: the same density as scikit-learn's make_moons, shifted.
    x = TOY2D["moons"].sample(100, seed=3)
    torch.testing.assert_close(
        TOY2D["moons"].log_prob(x), moons_log_prob(x + np.array([0.5, 0.25])), atol=1e-3, rtol=0
    )
