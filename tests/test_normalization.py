"""ActNorm's data-dependent start, BatchNorm's batch and running statistics, the LU linear map
(the shared bijector properties run in test_bijector_properties)."""

import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd


def test_actnorm_standardizes_the_batch_it_is_initialized_from_once():
    torch.manual_seed(0)
    b = nfb.ActNorm()
    x = torch.randn(400, 3) * torch.tensor([0.1, 2.0, 5.0]) + torch.tensor([3.0, -1.0, 0.0])
    z = nfb.data_init(b, x)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, correction=0), torch.ones(3), atol=1e-4, rtol=0)
    assert bool(b.initialized)
    loc = b.loc.detach().clone()
    b.inverse(x * 10.0)  # later batches leave the parameters alone
    nfb.data_init(b, x * 10.0)  # and so does a second explicit start
    torch.testing.assert_close(b.loc.detach(), loc)


def test_actnorm_start_is_explicit_not_a_side_effect_of_the_first_call():
    x = torch.randn(50, 2) * 3.0 + 4.0
    for b in (nfb.ActNorm(2), nfb.ActNorm(2).train(), nfb.ActNorm(2, data_init=False)):
        z = torch.randn(7, 2)
        torch.testing.assert_close(b.forward(z), z)  # forward, then inverse: no change between
        torch.testing.assert_close(b.inverse(x), x)
        assert not bool(b.initialized) or not b.data_init
    asked_not_to = nfb.ActNorm(2, data_init=False)
    nfb.data_init(asked_not_to, x)
    torch.testing.assert_close(asked_not_to.inverse(x), x)


def test_fit_starts_actnorm_from_its_first_batch():
    torch.manual_seed(0)
    flow = nfb.ActNorm()(nfd.MultivariateNormalDiag(loc=[0.0, 0.0]))
    x = torch.randn(64, 2) * 3.0 + 5.0
    nfkit.fit(flow, x, epochs=1, batch_size=64, lr=1e-9, verbose=0, shuffle=False)
    torch.testing.assert_close(flow.bijector.loc.detach(), x.mean(0), atol=1e-4, rtol=0)


def test_actnorm_on_images_uses_one_pair_per_channel():
    torch.manual_seed(1)
    b = nfb.ActNorm(forward_min_event_ndims=3)
    x = torch.randn(16, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1)
    nfb.data_init(b, x)
    z, log_det = b.inverse_and_log_det(x)
    assert b.loc.shape == (3, 1, 1)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(log_det, -b.log_scale.sum().detach().expand(16) * 16)


def test_actnorm_initialized_state_survives_save_and_load(tmp_path):
    flow = nfb.ActNorm()(nfd.MultivariateNormalDiag(loc=[0.0, 0.0]))
    x = torch.randn(100, 2) * 2.0 + 1.0
    nfkit.fit(flow, x, epochs=1, batch_size=100, lr=1e-3, verbose=0)
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "a.safetensors"))
    assert bool(loaded.bijector.initialized)
    loaded.train()
    torch.testing.assert_close(loaded.log_prob(x * 5.0), flow.log_prob(x * 5.0))


def test_actnorm_start_makes_a_badly_scaled_flow_trainable():
    torch.manual_seed(2)
    x = torch.randn(1000, 2) * 50.0 + 300.0
    flow = nfd.TransformedDistribution(
        nfd.MultivariateNormalDiag(loc=[0.0, 0.0]),
        nfb.Chain([nfb.ActNorm(), nfb.RealNVP(1, hidden_units=[16])]),
    )
    h = nfkit.fit(flow, x, epochs=1, batch_size=100, lr=1e-3, verbose=0, seed=0)
    # The Gaussian with the data's own moments scores 2.84 + 2 log 50 = 10.66 nats.
    assert h.history["loss"][0] < 10.8


def test_batchnorm_uses_batch_statistics_while_training_and_running_ones_after():
    torch.manual_seed(3)
    b = nfb.BatchNorm(2, momentum=0.5)
    with torch.no_grad():
        b.log_gamma.copy_(torch.tensor([0.3, -0.2]))
    x = torch.randn(256, 2) * torch.tensor([3.0, 0.5]) + 1.0
    z, log_det = b.inverse_and_log_det(x)
    var = x.var(0, correction=0) + b.eps
    torch.testing.assert_close(
        z.std(0, correction=0), torch.tensor([0.3, -0.2]).exp(), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        log_det, (torch.tensor([0.3, -0.2]) - 0.5 * var.log()).sum().expand(256)
    )
    torch.testing.assert_close(b.running_mean, 0.5 * x.mean(0))
    torch.testing.assert_close(b.running_var, 0.5 + 0.5 * x.var(0, correction=0))
    b.eval()
    z2 = b.inverse(x)
    torch.testing.assert_close(b.forward(z2), x, atol=1e-5, rtol=1e-5)  # fixed map in eval
    assert not torch.allclose(z2, z)


def test_maf_with_batchnorm_layers_trains():
    torch.manual_seed(4)
    from sklearn.datasets import make_moons

    x = torch.tensor(make_moons(2000, noise=0.05, random_state=0)[0], dtype=torch.float32)
    layers = []
    for _ in range(3):
        net = nfb.AutoregressiveNetwork(2, hidden_units=[32], activation="relu")
        layers += [nfb.MaskedAutoregressiveFlow(net), nfb.BatchNorm(), nfb.Reverse()]
    flow = nfd.TransformedDistribution(
        nfd.MultivariateNormalDiag(loc=[0.0, 0.0]), nfb.Chain(layers)
    )
    nfkit.fit(flow, x, epochs=15, batch_size=128, lr=3e-3, verbose=0, seed=0)
    test = torch.tensor(make_moons(2000, noise=0.05, random_state=1)[0], dtype=torch.float32)
    with torch.no_grad():
        # The best Gaussian scores 2.00; this MAF without the BatchNorm layers 1.58 (same seed).
        assert -flow.log_prob(test).mean().item() < 1.5


def test_scale_matvec_lu_reads_the_permutation_as_tf_linalg_lu_returns_it():
    torch.manual_seed(5)
    b = nfb.ScaleMatvecLU(torch.randn(3, 3), [1, 2, 0])  # not its own inverse
    lower = b.lower_upper.tril(-1) + torch.eye(3)
    w = torch.empty(3, 3)
    w[[1, 2, 0]] = lower @ b.lower_upper.triu()  # tf.linalg.lu: gather(w, perm) = L U
    z = torch.randn(5, 3)
    torch.testing.assert_close(b.forward(z), z @ w.T)
    torch.testing.assert_close(
        b.forward_log_det_jacobian(z), torch.linalg.slogdet(w).logabsdet.expand(5)
    )
    with pytest.raises(ValueError, match="permutation"):
        nfb.ScaleMatvecLU(torch.randn(3, 3), [0, 0, 1])
    with pytest.raises(ValueError, match="or features"):
        nfb.ScaleMatvecLU()
    assert b.get_config()["permutation"].tolist() == [1, 2, 0]
    # TFP's own recipe: ScaleMatvecLU(*tf.linalg.lu(w)) is w; torch's P L U = w is the same
    # factorization with the permutation P.argmax(0)
    w = torch.randn(4, 4, dtype=torch.float64)
    p, lower, upper = torch.linalg.lu(w)
    tfp_style = nfb.ScaleMatvecLU(lower.tril(-1) + upper, p.argmax(0)).double()
    z = torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(tfp_style.forward(z), z @ w.T)
    torch.testing.assert_close(tfp_style.inverse(z @ w.T), z)
    torch.manual_seed(1)
    rotation = nfb.ScaleMatvecLU(features=4).forward(torch.eye(4)).detach().T  # W
    torch.manual_seed(1)
    drawn = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))[0]  # Glow's start
    torch.testing.assert_close(rotation, drawn.float(), atol=1e-6, rtol=0)
