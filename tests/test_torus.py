"""Flows on the torus: circular splines close smoothly, the von Mises base, and a short training
run whose KL to the exact torsion density must fall far below the untrained one."""

import math
import sys
from pathlib import Path

import numpy as np
import torch

import nfkit
import nfkit.bijectors as nfb
from nfkit.data import torsion_log_prob, torsion_sample

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
from torus import kl_to_target, torus_flow


def test_circular_spline_is_smooth_across_the_wrap_point():
    torch.manual_seed(0)
    b = nfb.CircularSpline(torch.randn(1, 6), torch.randn(1, 6), torch.randn(1, 6), 0.0)
    ends = torch.tensor([[-math.pi], [math.pi - 1e-6]], dtype=torch.float64)
    b = b.double()
    y, log_det = b.forward_and_log_det(ends)
    # The spline fixes -pi and maps pi to pi: the same point; equal slopes at both ends.
    assert abs(float(y[0, 0]) + math.pi) < 1e-9 and abs(float(y[1, 0]) - math.pi) < 1e-5
    assert abs(float(log_det[0, 0] - log_det[1, 0])) < 1e-4


def test_torsion_density_is_normalized_and_its_samples_follow_it():
    grid = torch.linspace(-math.pi, math.pi, 401)[:-1]
    phi, psi = torch.meshgrid(grid, grid, indexing="xy")
    total = torsion_log_prob(torch.stack([phi, psi], -1)).exp().sum() * (2 * math.pi / 400) ** 2
    assert abs(float(total) - 1.0) < 1e-6
    x = torsion_sample(20_000, seed=0)
    assert ((x >= -math.pi) & (x < math.pi)).all()
    near_alpha = (np.abs(x[:, 0] + 1.1) < 0.5) & (np.abs(x[:, 1] + 0.7) < 0.5)
    assert 0.25 < near_alpha.mean() < 0.40


def test_circular_flow_learns_the_torsion_density(tmp_path):
    data = torch.tensor(torsion_sample(6000, seed=0), dtype=torch.float32)
    torch.manual_seed(0)
    flow = torus_flow(layers=4, bins=6, hidden=(32,))
    before, _ = kl_to_target(flow, n=5000)
    nfkit.fit(flow, data, epochs=10, batch_size=128, lr=3e-3, verbose=0, seed=0)
    after, se = kl_to_target(flow, n=5000)
    assert before > 1.0 and after < 0.1, (before, after, se)
    samples = flow.sample(500)
    assert ((samples >= -math.pi) & (samples < math.pi)).all()
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "torus.safetensors"))
    torch.testing.assert_close(loaded.log_prob(data[:5]), flow.log_prob(data[:5]))
