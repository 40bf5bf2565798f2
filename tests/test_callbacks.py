"""The training loop's callbacks: each one's effect, a user's own, resume through a checkpoint."""

import csv
import math

import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgressBar,
    TerminateOnNaN,
)


def small_flow():
    torch.manual_seed(0)
    layers = [
        nfb.MaskedAutoregressiveFlow(
            nfb.AutoregressiveNetwork(2, hidden_units=[8], activation="relu")
        )
    ]
    return nfd.TransformedDistribution(
        nfd.MultivariateNormalDiag(loc=[0.0, 0.0]), nfb.Chain([*layers, nfb.Permute([1, 0])])
    )


def data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return torch.stack([x[:, 0], 0.5 * x[:, 0] ** 2 + 0.3 * x[:, 1]], -1)


def test_a_user_callback_sees_logs_and_stops_training():
    seen = []

    class StopAtThird(Callback):
        def on_train_begin(self, logs=None):
            seen.append(("begin", self.loop.epochs))

        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))
            if epoch == 2:
                self.loop.stop_training = True

    h = nfkit.fit(small_flow(), data(), epochs=10, verbose=0, callbacks=[StopAtThird()])
    assert h.epoch == [0, 1, 2]
    assert seen[0] == ("begin", 10)
    assert seen[1] == (0, ["loss", "lr"])
    assert not h.stopped_early  # a user's stop is not early stopping


def test_a_function_callback_returning_true_stops_training():
    h = nfkit.fit(small_flow(), data(), epochs=10, verbose=0, callbacks=[lambda e, logs: e == 1])
    assert h.epoch == [0, 1]


def test_early_stopping_callback_stops_and_restores_the_best_weights():
    torch.manual_seed(0)
    flow = small_flow()
    # A learning rate this high makes the validation loss wander, so patience is exercised.
    stop = EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    h = nfkit.fit(
        flow,
        data(512),
        epochs=60,
        lr=0.05,
        validation_data=data(256, seed=1),
        verbose=0,
        seed=0,
        callbacks=[stop],
    )
    val = h.history["val_loss"]
    assert h.stopped_early and len(val) < 60
    assert stop.best_epoch == val.index(min(val))
    assert all(v >= min(val) for v in val[stop.best_epoch + 1 :])  # no improvement after it
    nll = float(-flow.log_prob(data(256, seed=1)).mean().detach())
    assert nll == pytest.approx(min(val), abs=1e-5)
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_early_stopping_names_a_missing_monitored_log():
    with pytest.raises(KeyError, match="'val_nll'"):
        nfkit.fit(small_flow(), data(), epochs=2, verbose=0, callbacks=[EarlyStopping("val_nll")])


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    h = nfkit.fit(
        small_flow(),
        data(),
        epochs=4,
        validation_split=0.25,
        seed=0,
        verbose=0,
        callbacks=[CSVLogger(path)],
    )
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "lr", "val_loss"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2, 3]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(h.history["loss"])
    assert [float(r[3]) for r in rows[1:]] == pytest.approx(h.history["val_loss"])


def test_learning_rate_scheduler_sets_each_epochs_rate():
    halve = LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr / 2)
    h = nfkit.fit(small_flow(), data(), epochs=4, lr=0.08, verbose=0, callbacks=[halve])
    assert h.history["lr"] == pytest.approx([0.08, 0.04, 0.02, 0.01])
    broken = LearningRateScheduler(lambda epoch, lr: math.nan)
    with pytest.raises(ValueError, match="schedule returned nan"):
        nfkit.fit(small_flow(), data(), epochs=1, verbose=0, callbacks=[broken])


def test_terminate_on_nan_raises_before_the_update_and_keeps_the_weights():
    flow = small_flow()
    calls = []

    def objective(dist, batch, context):
        calls.append(1)
        loss = -dist._log_prob(batch, context).mean()
        return loss * math.nan if len(calls) == 3 else loss

    weights = []

    class Record(Callback):  # the weights after each applied step
        def on_train_batch_end(self, batch, logs=None):
            weights.append([p.detach().clone() for p in flow.parameters()])

    with pytest.raises(nfkit.NonFiniteLossError, match=r"loss is nan at epoch 1/2, step 3/8"):
        nfkit.fit(flow, data(), epochs=2, verbose=0, objective=objective, callbacks=[Record()])
    # The callbacks after TerminateOnNaN did not run for step 3, and no update was applied:
    # the weights are those with which step 3's loss was computed.
    assert len(weights) == 2
    assert any(not torch.equal(a, b) for a, b in zip(weights[0], weights[1], strict=True))


def test_terminate_on_nan_alone_checks_the_gradient_norm():
    class FakeLoop:
        epoch, epochs, steps_per_epoch = 0, 1, 1
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    guard = TerminateOnNaN()
    guard.set_loop(FakeLoop())
    guard.on_train_batch_end(0, {"loss": 1.0, "grad_norm": 2.0})
    with pytest.raises(nfkit.NonFiniteLossError, match="gradient norm is inf"):
        guard.on_train_batch_end(0, {"loss": 1.0, "grad_norm": math.inf})


def test_progress_bar_prints_one_line_per_epoch_at_verbose_2(capsys):
    nfkit.fit(small_flow(), data(), epochs=3, verbose=0, callbacks=[ProgressBar(verbose=2)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("loss=" in line for line in lines)


def test_model_checkpoint_callback_resumes_to_the_uninterrupted_result(tmp_path):
    kw = dict(epochs=6, batch_size=32, lr=5e-3, validation_split=0.2, seed=3, verbose=0)

    def run(path, *extra, resume=False):
        flow = small_flow()
        callbacks = [
            ModelCheckpoint(path, resume=resume),
            EarlyStopping(patience=10, restore_best_weights=True),
            CSVLogger(path.with_suffix(".csv"), append=resume),
            *extra,
        ]
        return flow, nfkit.fit(flow, data(), callbacks=callbacks, **kw)

    whole, whole_history = run(tmp_path / "whole.ckpt")

    class Interrupt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut.ckpt", Interrupt())
    resumed, resumed_history = run(tmp_path / "cut.ckpt", resume=True)
    assert resumed_history.history == whole_history.history
    assert resumed_history.best_epoch == whole_history.best_epoch
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (tmp_path / "cut.csv").read_text() == (tmp_path / "whole.csv").read_text()


def test_an_early_stopped_run_stays_stopped_on_resume_and_a_callback_stop_resumes(tmp_path):
    path = tmp_path / "c.ckpt"
    kw = dict(epochs=40, lr=0.05, seed=0, verbose=0, checkpoint=path, patience=1)
    first = nfkit.fit(small_flow(), data(), **kw)
    assert first.stopped_early
    again = nfkit.fit(small_flow(), data(), resume=True, **kw)
    assert again.epoch == first.epoch
    kw = dict(epochs=4, seed=0, verbose=0, checkpoint=tmp_path / "d.ckpt")
    nfkit.fit(small_flow(), data(), callbacks=[lambda epoch, logs: epoch == 1], **kw)
    assert nfkit.fit(small_flow(), data(), resume=True, **kw).epoch == [0, 1, 2, 3]


def test_model_checkpoint_needs_a_seed(tmp_path):
    with pytest.raises(ValueError, match="ModelCheckpoint needs seed="):
        nfkit.fit(small_flow(), data(), verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c")])


def test_fit_energy_and_flow_matching_take_callbacks(tmp_path):
    target = lambda x: -0.5 * (x - 1.0).square().sum(-1)  # noqa: E731
    path = tmp_path / "energy.csv"
    h = nfkit.fit_energy(
        small_flow(), target, epochs=2, steps_per_epoch=5, verbose=0, callbacks=[CSVLogger(path)]
    )
    header = next(csv.reader(path.open()))
    assert header == ["epoch", "loss", "lr", "ess", "nonfinite"] and len(h.epoch) == 2
    from nfkit.continuous import ContinuousFlow, fit_flow_matching

    flow = ContinuousFlow(hidden_units=[8])(nfd.MultivariateNormalDiag(loc=[0.0, 0.0]))
    h = fit_flow_matching(flow, data(), epochs=5, verbose=0, callbacks=[lambda e, logs: e == 1])
    assert h.epoch == [0, 1]
