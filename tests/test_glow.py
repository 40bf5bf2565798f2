"""Glow on images: squeeze layout, the builder's shapes and errors, and digits in bits/dim
(the shared bijector properties of each layer run in test_bijector_properties)."""

import math

import numpy as np
import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
from nfkit.data import bits_per_dim, dequantize, digits_images


def test_squeeze_moves_each_2x2_block_into_channels():
    x = torch.arange(2 * 4 * 4.0).reshape(2, 4, 4)
    y = nfb.Squeeze().forward(x)
    assert y.shape == (8, 2, 2)
    # Channel (c, i, j) at (h, w) holds pixel (c, 2h + i, 2w + j).
    for c, i, j, h, w in [(0, 0, 0, 0, 0), (0, 1, 0, 1, 1), (1, 0, 1, 0, 1), (1, 1, 1, 1, 0)]:
        assert y[4 * c + 2 * i + j, h, w] == x[c, 2 * h + i, 2 * w + j]


def test_glow_builder_shapes_and_errors():
    flow = nfkit.flows.glow((2, 8, 4), levels=2, steps=1, hidden_channels=8)
    assert flow.sample((3,)).shape == (3, 2, 8, 4)
    assert flow.log_prob(torch.rand(5, 2, 8, 4)).shape == (5,)
    with pytest.raises(ValueError, match="divisible by 8"):
        nfkit.flows.glow((1, 8, 12), levels=3)
    with pytest.raises(ValueError, match="image_shape"):
        nfkit.flows.glow((64,))
    with pytest.raises(ValueError, match="logit_alpha"):
        nfkit.flows.glow((8, 8), logit_alpha=0.7)


def test_dequantize_and_bits_per_dim():
    x = dequantize(np.array([[0, 3], [16, 8]]), levels=17, seed=0)
    assert ((x * 17).astype(int) == np.array([[0, 3], [16, 8]])).all()
    assert bits_per_dim(0.0, 10, 256) == pytest.approx(8.0)
    with pytest.raises(ValueError, match=r"0\.\.16"):
        dequantize([17], levels=17)


def test_glow_learns_digits_in_bits_per_dim(tmp_path):
    train, test, _, _ = digits_images()
    assert train.shape == (1438, 1, 8, 8) and test.shape == (359, 1, 8, 8)
    x_train = torch.tensor(dequantize(train, 17, seed=0), dtype=torch.float32)
    x_test = torch.tensor(dequantize(test, 17, seed=1), dtype=torch.float32)
    torch.manual_seed(0)
    flow = nfkit.flows.glow((1, 8, 8), levels=2, steps=2, hidden_channels=32)
    with torch.no_grad():
        untrained = bits_per_dim(-float(flow.log_prob(x_test).mean()), 64, 17)
    assert untrained > 3.5  # close to uniform noise (4.09 bits)
    nfkit.fit(flow, x_train, epochs=8, batch_size=64, lr=1e-3, verbose=0, seed=0)
    with torch.no_grad():
        bpd = bits_per_dim(-float(flow.log_prob(x_test).mean()), 64, 17)
    assert bpd < 2.8, bpd
    # ActNorm started from the data and the model file keeps that.
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "glow.safetensors"))
    torch.testing.assert_close(loaded.log_prob(x_test[:8]), flow.log_prob(x_test[:8]))
    assert math.isfinite(float(loaded.sample(4).sum()))
