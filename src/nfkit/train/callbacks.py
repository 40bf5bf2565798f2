r"""Callbacks: what a training run does besides its steps, in Keras' names.

A callback is called by the :class:`~nfkit.train.loop.Loop` at fixed points of a run; every
hook is optional:

- ``on_train_begin(logs)`` once, before the first epoch (resuming happens here);
- ``on_epoch_begin(epoch, logs)``;
- ``on_train_batch_end(batch, logs)`` after each step's backward pass and *before* the optimizer
  applies the gradients (unlike Keras), with ``logs = {"loss", "grad_norm"}``, so a callback
  that raises leaves the weights of the last good step;
- ``on_epoch_end(epoch, logs)`` with the epoch's logs (``loss``, ``lr``, ``val_loss`` with
  validation data, and the objective's metrics); returning ``True`` or setting
  ``self.loop.stop_training = True`` ends training after this epoch;
- ``on_train_end(logs)`` after the last epoch of a run that did not fail; ``close()`` always,
  even when training raised.

``self.loop`` is the running loop: its ``distribution``, ``optimizer``, ``history``,
``epochs`` and ``stop_training``. A callback with state that a resumed run needs returns it
from ``state_dict()`` (JSON values, tensors, or dicts of tensors) and takes it back in
``load_state_dict``; :class:`ModelCheckpoint` saves it with the weights.

Example:
    >>> import torch, nfkit, nfkit.distributions as nfd, nfkit.bijectors as nfb
    >>> from nfkit.callbacks import Callback
    >>> class StopBelow(Callback):
    ...     def on_epoch_end(self, epoch, logs=None):
    ...         return logs["loss"] < 2.0
    >>> flow = nfb.Shift(torch.nn.Parameter(torch.zeros(1)))(nfd.MultivariateNormalDiag([0.0]))
    >>> h = nfkit.fit(flow, torch.randn(64, 1) + 3.0, epochs=50, lr=0.1, verbose=0,
    ...               callbacks=[StopBelow()])
    >>> len(h.epoch) < 50, h.history["loss"][-1] < 2.0
    (True, True)

"""

from __future__ import annotations

import copy
import csv
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from nfkit.train.checkpoint import (
    TrainingState,
    read_checkpoint,
    scheduler_state,
    write_checkpoint,
)

if TYPE_CHECKING:
    from nfkit.train.loop import Loop

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "ProgressBar",
    "TerminateOnNaN",
]

Logs = dict[str, float]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or gradient; the weights are the last good ones."""


class Callback:
    """Base class: override the hooks you need (see :mod:`nfkit.train.callbacks`)."""

    loop: Loop

    def set_loop(self, loop: Loop) -> None:
        self.loop = loop

    def on_train_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> bool | None:
        return None

    def on_train_end(self, logs: Logs | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LambdaCallback(Callback):
    """A plain function ``fn(epoch, logs) -> bool | None`` called at each epoch's end (what
    ``fit(callbacks=[fn])`` makes of a function); ``True`` stops training.
    """

    def __init__(self, on_epoch_end: Callable[[int, Logs], bool | None]) -> None:
        self.fn = on_epoch_end

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> bool | None:
        return self.fn(epoch, logs or {})


class TerminateOnNaN(Callback):
    """Raise :class:`NonFiniteLossError` at the first step whose loss or gradient norm is NaN
    or infinite, before the optimizer applies it: the weights stay those of the last finite
    step, and the message names the epoch and step. ``fit`` always includes it.
    """

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        assert logs is not None
        loss, norm = logs["loss"], logs["grad_norm"]
        if math.isfinite(loss) and math.isfinite(norm):
            return
        what, bad = ("loss", loss) if not math.isfinite(loss) else ("gradient norm", norm)
        loop = self.loop
        raise NonFiniteLossError(
            f"{what} is {bad} at epoch {loop.epoch + 1}/{loop.epochs}, step {batch + 1}/"
            f"{loop.steps_per_epoch}; training stopped and the weights are those after the last "
            f"finite step. Try a lower lr (now {loop.optimizer.param_groups[0]['lr']:g}), "
            "clip_grad_norm=..., or standardize the data."
        )


class EarlyStopping(Callback):
    """Track the best epoch and stop after ``patience`` epochs without improvement.

    Args:
        monitor: the log to watch (lower is better); ``None``: ``val_loss`` when the run has
            validation data, else ``loss``.
        patience: epochs without an improvement of at least ``min_delta`` before training
            stops; ``None`` never stops (the best epoch is still tracked).
        min_delta: smallest decrease that counts as an improvement.
        restore_best_weights: end training (when it did not fail) with the best epoch's weights.

    Sets ``history.best_epoch`` and, when it stops training, ``history.stopped_early``.

    """

    def __init__(
        self,
        monitor: str | None = None,
        *,
        patience: int | None = 0,
        min_delta: float = 0.0,
        restore_best_weights: bool = False,
    ) -> None:
        if patience is not None and patience < 0:
            raise ValueError(f"patience must be >= 0 or None, got {patience}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.restore_best_weights = restore_best_weights
        self.best, self.bad_epochs = math.inf, 0
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> bool | None:
        assert logs is not None
        key = self.monitor or ("val_loss" if "val_loss" in logs else "loss")
        if key not in logs:
            raise KeyError(f"EarlyStopping monitors {key!r}, but the logs hold {sorted(logs)}")
        if logs[key] < self.best - self.min_delta:
            self.best, self.bad_epochs, self.best_epoch = logs[key], 0, epoch
            self.loop.history.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(self.loop.distribution.state_dict())
            return None
        self.bad_epochs += 1
        if self.patience is not None and self.bad_epochs >= self.patience:
            self.loop.history.stopped_early = True
            return True
        return None

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.best_weights is not None:
            self.loop.distribution.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "best_epoch": self.best_epoch,
        }
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
        self.best_epoch = state["best_epoch"]
        self.best_weights = state.get("best_weights")
        self.loop.history.best_epoch = self.best_epoch


class ModelCheckpoint(Callback):
    """Write everything a run needs to continue (weights, optimizer, schedule, random states,
    history, every callback's state) to ``filepath`` after each epoch, atomically; with
    ``resume=True`` continue from that file when it exists. A run resumed this way ends with
    the same weights and history as one that was never interrupted (same architecture, data,
    arguments and seed). Only rank 0 of a distributed run writes. The loop runs checkpoints
    after every other callback, so the state they save is the epoch's final one.
    """

    def __init__(self, filepath: str | os.PathLike, *, resume: bool = False) -> None:
        self.filepath, self.resume = Path(filepath), resume

    def _stateful(self) -> list[Callback]:
        return [cb for cb in self.loop.callbacks if cb is not self]

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if not (self.resume and self.filepath.exists()):
            return
        state = read_checkpoint(self.filepath)
        loop = self.loop
        loop.distribution.load_state_dict(state.model)
        loop.optimizer.load_state_dict(state.optimizer)
        if loop.scheduler is not None and state.scheduler is not None:
            loop.scheduler.load_state_dict(state.scheduler)
        loop.history.history = state.history
        loop.history.epoch = list(range(state.next_epoch))
        loop.history.stopped_early = state.stopped_early
        for callback, saved in zip(self._stateful(), state.callbacks, strict=False):
            callback.load_state_dict(saved)
        torch.set_rng_state(state.torch_rng)
        if state.device_rng is not None and loop.device.type == "cuda":
            torch.cuda.set_rng_state(state.device_rng, loop.device)
        loop.generator.set_state(state.data_rng)
        # Early stopping ended the run; a callback's stop (or an interruption) is resumable.
        loop.start_epoch = loop.epochs if state.stopped_early else state.next_epoch

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        loop = self.loop
        if loop.rank != 0:
            return
        device = loop.device
        write_checkpoint(
            self.filepath,
            TrainingState(
                next_epoch=epoch + 1,
                history=loop.history.history,
                optimizer=loop.optimizer.state_dict(),
                scheduler=scheduler_state(loop.scheduler),
                callbacks=[cb.state_dict() for cb in self._stateful()],
                torch_rng=torch.get_rng_state(),
                device_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                data_rng=loop.generator.get_state(),
                stopped_early=loop.history.stopped_early,
                model=loop.distribution.state_dict(),
            ),
        )


class ProgressBar(Callback):
    """A tqdm bar of steps (``verbose=1``, when stderr is a terminal) with the epoch's logs,
    or one printed line per epoch (``verbose=2``); ``verbose=0`` is silent. Rank 0 only.
    """

    def __init__(self, verbose: int = 1) -> None:
        self.verbose = verbose
        self.bar: Any = None

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        if self.bar is None:
            loop = self.loop
            self.bar = tqdm(
                total=loop.steps_per_epoch * (loop.epochs - loop.start_epoch),
                unit="step",
                disable=self.verbose != 1 or loop.rank != 0 or not sys.stderr.isatty(),
                dynamic_ncols=True,
                mininterval=0.25,
            )

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.bar.update(1)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        assert logs is not None
        shown = {k: v for k, v in logs.items() if k != "lr"}
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()}, epoch=epoch + 1)
        if self.verbose == 2 and self.loop.rank == 0:
            line = "  ".join(f"{k}={v:.4f}" for k, v in shown.items())
            print(f"epoch {epoch + 1}/{self.loop.epochs}  {line}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CSVLogger(Callback):
    """Append each epoch's logs as a row of a CSV file (``epoch`` first, then the logs' keys in
    the order of the first epoch written), as Keras' ``CSVLogger``.

    Args:
        filename: the CSV file.
        separator: the field separator.
        append: add to an existing file (a resumed run) instead of starting a new one.

    """

    def __init__(
        self, filename: str | os.PathLike, separator: str = ",", append: bool = False
    ) -> None:
        self.filename, self.separator, self.append = Path(filename), separator, append
        self.keys: list[str] | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.append and self.filename.exists() and self.filename.stat().st_size:
            with self.filename.open(newline="") as f:
                self.keys = next(csv.reader(f, delimiter=self.separator))[1:]
        else:
            self.filename.write_text("")
            self.keys = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        assert logs is not None
        with self.filename.open("a", newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if self.keys is None:
                self.keys = list(logs)
                writer.writerow(["epoch", *self.keys])
            writer.writerow([epoch, *(logs.get(k, "") for k in self.keys)])


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start to ``schedule(epoch, lr)`` (Keras' form),
    where ``lr`` is the current rate of the first parameter group; applied to every group.

    Example:
        >>> halve = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)

    """

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        groups = self.loop.optimizer.param_groups
        lr = float(self.schedule(epoch, float(groups[0]["lr"])))
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"the learning-rate schedule returned {lr} at epoch {epoch}")
        for group in groups:
            group["lr"] = lr
        if self.verbose:
            print(f"epoch {epoch + 1}: learning rate {lr:g}", flush=True)
