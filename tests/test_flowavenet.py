"""FloWaveNet on sequences: the time squeeze, ActNorm on sequences, the builder, and a short
training run that must learn the correlations between steps (the shared bijector properties of
each layer run in test_bijector_properties)."""

import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
from nfkit.data import damped_oscillations, noise_entropy_per_step


def test_squeeze_time_folds_pairs_of_steps_into_channels():
    x = torch.arange(2 * 6.0).reshape(2, 6)
    y = nfb.SqueezeTime().forward(x)
    assert y.shape == (4, 3)
    for c, i, t in [(0, 0, 0), (0, 1, 2), (1, 0, 1), (1, 1, 2)]:
        assert y[2 * c + i, t] == x[c, 2 * t + i]
    torch.testing.assert_close(nfb.SqueezeTime().inverse(y), x)


def test_actnorm_on_sequences_has_one_pair_per_channel():
    b = nfb.ActNorm(forward_min_event_ndims=2)
    x = torch.randn(32, 3, 10) * torch.tensor([1.0, 2.0, 5.0])[:, None]
    nfb.data_init(b, x)  # the data-dependent start is explicit
    z, log_det = b.inverse_and_log_det(x)
    assert b.loc.shape == (3, 1)
    torch.testing.assert_close(log_det, -b.log_scale.detach().sum().expand(32) * 10)
    torch.testing.assert_close(z.std((0, 2), correction=0), torch.ones(3), atol=1e-4, rtol=0)


def test_flowavenet_builder_shapes_and_errors():
    flow = nfkit.flows.flowavenet((2, 8), blocks=2, flows=2, hidden_channels=8, layers=2)
    assert flow.sample((3,)).shape == (3, 2, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        nfkit.flows.flowavenet((10,), blocks=2)
    with pytest.raises(ValueError, match="sequence_shape"):
        nfkit.flows.flowavenet((1, 2, 8))


def test_flowavenet_learns_the_correlations_of_damped_oscillations(tmp_path):
    train = torch.tensor(damped_oscillations(4000, 32, seed=0), dtype=torch.float32)
    test = torch.tensor(damped_oscillations(2000, 32, seed=1), dtype=torch.float32)
    # A Gaussian per step (no correlations) scores about 0.70 nats per step; the full
    # covariance Gaussian -0.46 (the example trains longer and beats it: README).
    x, y = train.flatten(1).double(), test.flatten(1).double()
    diagonal = torch.distributions.Normal(x.mean(0), x.std(0))
    diagonal_nll = -float(diagonal.log_prob(y).sum(-1).mean()) / 32
    torch.manual_seed(0)
    flow = nfkit.flows.flowavenet((1, 32), blocks=2, flows=2, hidden_channels=16, layers=3)
    nfkit.fit(flow, train, epochs=6, batch_size=64, lr=2e-3, verbose=0, seed=0)
    with torch.no_grad():
        nll = -float(flow.log_prob(test).mean()) / 32
    assert noise_entropy_per_step() < nll < diagonal_nll - 0.8, (nll, diagonal_nll)
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "fwn.safetensors"))
    torch.testing.assert_close(loaded.log_prob(test[:5]), flow.log_prob(test[:5]))
