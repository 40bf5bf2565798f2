"""Training by maximum likelihood: real NLL bounds, normalisation, bad input, failure modes."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.plot import density_grid


def chapter_flow(hidden=(64, 64), zero_last=True):
    layers = []
    for _ in range(3):
        anet = nfb.AutoregressiveNetwork(
            2, hidden_units=list(hidden), activation="relu", zero_last=zero_last
        )
        layers += [nfb.MaskedAutoregressiveFlow(anet), nfb.Permute([1, 0])]
    return nfd.TransformedDistribution(nfd.MultivariateNormalDiag(loc=[0.0] * 2), nfb.Chain(layers))


def mass(td, lim=4.0, resolution=500):
    p, xs, ys = density_grid(td, xlim=(-lim, lim), resolution=resolution)
    return p.sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])


def test_maf_learns_moons_and_stays_normalised():
    torch.manual_seed(0)
    x, _ = make_moons(3000, noise=0.05, random_state=0)
    test, _ = make_moons(3000, noise=0.05, random_state=1)
    td = chapter_flow()
    td.log_prob(torch.zeros(1, 2))  # builds the networks
    with torch.no_grad():  # a random start near the identity (the zero last layers jittered)
        for p in td.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert abs(mass(td, lim=12.0, resolution=1000) - 1.0) < 0.01  # before training
    history = nfkit.fit(
        td, x, epochs=40, batch_size=128, lr=5e-3, lr_schedule="cosine", verbose=0, seed=0
    )
    assert len(history.history["loss"]) == 40
    nll = -float(td.log_prob(test).mean())
    # The best Gaussian scores about 1.9 nats here and the data entropy is 0.29; a MAF whose
    # masks or log-dets were wrong cannot get under 1.2 on held-out data while integrating to one.
    gauss = nfd.MultivariateNormalDiag(loc=x.mean(0).tolist(), scale_diag=x.std(0).tolist())
    assert -float(gauss.log_prob(test).mean()) > 1.6
    assert nll < 1.2
    assert abs(mass(td, lim=5.0, resolution=1000) - 1.0) < 0.01


def test_realnvp_and_iaf_train():
    torch.manual_seed(0)
    x, _ = make_moons(2000, noise=0.1, random_state=0)
    for bijector in (
        nfb.Chain(
            [nfb.RealNVP(1, hidden_units=[32]), nfb.Reverse(), nfb.RealNVP(1, hidden_units=[32])]
        ),
        nfb.InverseAutoregressiveFlow(
            nfb.AutoregressiveNetwork(2, hidden_units=[32], activation="relu")
        ),
    ):
        td = bijector(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
        h = nfkit.fit(td, x, epochs=10, batch_size=100, lr=3e-3, verbose=0, seed=0)
        assert h.history["loss"][-1] < h.history["loss"][0] - 0.3


def test_validation_early_stopping_restores_best_weights():
    torch.manual_seed(0)
    x, _ = make_moons(1000, noise=0.05, random_state=0)
    x_val, _ = make_moons(300, noise=0.05, random_state=1)
    td = chapter_flow(hidden=(16,))
    h = nfkit.fit(
        td,
        x,
        epochs=30,
        batch_size=50,
        lr=0.05,
        validation_data=x_val,
        patience=3,
        verbose=0,
        seed=0,
    )
    val = h.history["val_loss"]
    assert h.best_epoch == int(np.argmin(val))
    assert h.stopped_early == (len(val) < 30)
    if h.stopped_early:
        assert len(val) == h.best_epoch + 4
    # the weights left in place are the best epoch's: re-scoring the validation rows agrees
    assert -float(td.log_prob(x_val).mean()) == pytest.approx(min(val), abs=1e-4)


def test_seed_makes_training_reproducible():
    x, _ = make_moons(500, noise=0.05, random_state=0)
    runs = []
    for _ in range(2):
        td = nfb.RealNVP(1, hidden_units=[8])(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
        runs.append(nfkit.fit(td, x, epochs=3, lr=1e-2, verbose=0, seed=7).history["loss"])
    assert runs[0] == runs[1]


def test_dataloader_and_context():
    x = torch.randn(256, 2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=64)
    td = nfb.RealNVP(1, hidden_units=[8])(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    assert len(nfkit.fit(td, loader, epochs=2, verbose=0).history["loss"]) == 2
    # a conditional flow: x ~ N(c, 1) learned through context
    c = torch.randn(2000, 1) * 2
    xc = c + 0.1 * torch.randn(2000, 2)
    flow = nfb.MaskedAutoregressiveFlow(
        nfb.AutoregressiveNetwork(2, hidden_units=[32], activation="relu")
    )
    td = flow(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    nfkit.fit(td, xc, context=c, epochs=15, batch_size=100, lr=1e-2, verbose=0, seed=0)
    with torch.no_grad():
        near = td.log_prob(torch.tensor([[1.0, 1.0]]), context=torch.tensor([[1.0]]))
        far = td.log_prob(torch.tensor([[1.0, 1.0]]), context=torch.tensor([[-2.0]]))
    assert float(near) > float(far) + 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, np.inf]]),
            r"NaN or inf values in 2 rows \(index 1, 2\)",
        ),
        (np.zeros((10, 3)), r"has 3 columns but the distribution has event shape \(2,\)"),
        (np.zeros((0, 2)), "empty"),
        (np.zeros(10), r"1-D array of shape \(10,\)"),
    ],
)
def test_bad_data_is_a_clear_value_error(data, message):
    td = chapter_flow(hidden=(8,))
    with pytest.raises(ValueError, match=message):
        nfkit.fit(td, data, verbose=0)


def test_non_numeric_data_is_a_type_error():
    with pytest.raises(TypeError, match="numeric"):
        nfkit.fit(chapter_flow(hidden=(8,)), np.array([["a", "b"]]), verbose=0)


def test_non_finite_loss_names_epoch_and_step_and_keeps_last_good_weights():
    # A finite row whose squared distance overflows float32: the loss is inf at that batch only.
    def flow():
        return nfb.Shift(torch.nn.Parameter(torch.zeros(2)))(nfd.MultivariateNormalDiag([0.0] * 2))

    data = np.zeros((8, 2))
    data[5] = 1e30
    td = flow()
    with pytest.raises(nfkit.NonFiniteLossError, match=r"loss is inf at epoch 1/3, step 3/4"):
        nfkit.fit(td, data, epochs=3, batch_size=2, lr=0.1, shuffle=False, verbose=0, seed=0)
    good = flow()
    nfkit.fit(good, data[:4], epochs=1, batch_size=2, lr=0.1, shuffle=False, verbose=0, seed=0)
    torch.testing.assert_close(td.bijector.shift, good.bijector.shift)
    assert torch.isfinite(td.bijector.shift).all()


def test_progress_is_silent_when_not_a_terminal(capsys):
    td = nfb.RealNVP(1, hidden_units=[8])(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    nfkit.fit(td, np.random.default_rng(0).normal(size=(64, 2)), epochs=2, verbose=1)
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""
    nfkit.fit(td, np.random.default_rng(0).normal(size=(64, 2)), epochs=2, verbose=2)
    assert capsys.readouterr().out.count("epoch ") == 2


def test_clip_grad_norm_bounds_each_sgd_step():
    # One SGD step moves the parameters by lr * |g|; clipping caps |g| at the given norm.
    torch.manual_seed(0)
    shift = torch.nn.Parameter(torch.zeros(2))
    td = nfb.Shift(shift)(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    x = torch.full((64, 2), 100.0)
    nfkit.fit(
        td, x, epochs=1, batch_size=64, lr=1.0, optimizer="sgd", clip_grad_norm=0.5, verbose=0
    )
    assert float(shift.detach().norm()) == pytest.approx(0.5, rel=1e-5)
    shift.data.zero_()
    nfkit.fit(td, x, epochs=1, batch_size=64, lr=1.0, optimizer="sgd", verbose=0)
    assert float(shift.detach().norm()) == pytest.approx(100.0 * 2**0.5, rel=1e-5)


def test_unknown_optimizer_is_named():
    td = nfb.Shift(torch.nn.Parameter(torch.zeros(2)))(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        nfkit.fit(td, torch.zeros(8, 2), optimizer="lbfgs", verbose=0)


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
    x, _ = make_moons(600, noise=0.05, random_state=0)
    kw = dict(epochs=5, batch_size=64, lr=5e-3, lr_schedule="cosine", validation_split=0.2, seed=3)

    def run(checkpoint, **extra):
        flow = chapter_flow(hidden=(16,))
        history = nfkit.fit(flow, x, verbose=0, checkpoint=checkpoint, **kw, **extra)
        return flow, history

    whole, whole_history = run(tmp_path / "whole.ckpt")

    def interrupt(epoch, logs):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut.ckpt", callbacks=[interrupt])
    resumed, resumed_history = run(tmp_path / "cut.ckpt", resume=True)
    assert resumed_history.history == whole_history.history
    assert resumed_history.best_epoch == whole_history.best_epoch
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_needs_a_seed(tmp_path):
    td = nfb.Shift(torch.nn.Parameter(torch.zeros(2)))(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    with pytest.raises(ValueError, match="needs seed="):
        nfkit.fit(td, torch.zeros(8, 2), checkpoint=tmp_path / "c", verbose=0)
    with pytest.raises(ValueError, match="resume=True needs checkpoint="):
        nfkit.fit(td, torch.zeros(8, 2), resume=True, seed=0, verbose=0)


@pytest.mark.parametrize("coupling", [False, True])
def test_neural_spline_flow_learns_moons(coupling):
    torch.manual_seed(0)
    x, _ = make_moons(3000, noise=0.05, random_state=0)
    test, _ = make_moons(3000, noise=0.05, random_state=1)
    x, test = (2.0 * (a - [0.5, 0.25]) for a in (x, test))  # roughly unit scale, inside the bound
    flow = nfkit.flows.nsf(2, layers=4, hidden=[64, 64], bins=8, coupling=coupling)
    nfkit.fit(flow, x, epochs=25, batch_size=128, lr=3e-3, lr_schedule="cosine", verbose=0, seed=0)
    # Doubling the data adds 2 log 2 = 1.39 nats: the entropy is 0.29 + 1.39 = 1.67 here, and the
    # best Gaussian scores above 3. A spline flow with wrong knots or log-dets cannot reach 2.2.
    gauss = nfd.MultivariateNormalDiag(loc=x.mean(0).tolist(), scale_diag=x.std(0).tolist())
    assert -float(gauss.log_prob(test).mean()) > 3.0
    nll = -float(flow.log_prob(test).mean())
    assert nll < 2.2
    assert abs(mass(flow, lim=4.0, resolution=600) - 1.0) < 0.01
