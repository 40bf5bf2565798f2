r"""The training loop every entry point shares: a data source, a step and callbacks.

``fit``, ``fit_energy``, flow matching, the command and the estimator all build a
:class:`Loop` and run it; what differs between them is the objective of the
:class:`~nfkit.train.step.TrainStep` and where the batches come from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from nfkit.distributions.base import Distribution, evaluation_mode
from nfkit.train.batches import Batches
from nfkit.train.callbacks import Callback, ModelCheckpoint
from nfkit.train.step import TrainStep

__all__ = ["History", "Loop", "mean_nll"]


@dataclass
class History:
    """What training measured, one value per epoch, as Keras' ``History``.

    Attributes:
        history: ``{"loss": [...], "val_loss": [...], "lr": [...]}``; ``loss`` is the mean
            training loss (for ``fit``, the negative log-likelihood in nats per sample) over
            each epoch's batches.
        epoch: the epoch indices that ran (0-based).
        best_epoch: epoch whose weights were kept (best ``val_loss``), or ``None``.
        stopped_early: whether early stopping ended training.
        seconds: wall-clock training time.

    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    def _log(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


def mean_nll(dist: Distribution, data: Any, context: Any, chunk: int = 8192) -> float:
    """Mean negative log-likelihood of ``data`` (nats per row; tensors or arrays, cast to the
    distribution's dtype and device), in eval mode, in chunks.
    """
    data = torch.as_tensor(data, dtype=dist.dtype, device=dist.device)
    if context is not None:
        context = torch.as_tensor(context, dtype=dist.dtype, device=dist.device)
    with evaluation_mode(dist):
        total = 0.0
        for start in range(0, data.shape[0], chunk):
            c = None if context is None else context[start : start + chunk]
            total -= float(dist._log_prob(data[start : start + chunk], c).sum())
    return total / data.shape[0]


class Loop:
    """Run ``epochs`` passes of ``step`` over ``batches``, calling ``callbacks`` (see
    :mod:`nfkit.train.callbacks`); each epoch's logs are the mean loss over its rows, the
    learning rate, the objective's metrics and, with ``validation``, ``val_loss``: the
    held-out negative log-likelihood, or what ``validation_loss(distribution, rows, context)``
    returns (an objective that is not a likelihood, such as APT's atomic loss, scores itself).

    Attributes a callback may read: ``distribution``, ``optimizer``, ``scheduler``,
    ``history``, ``epoch``, ``epochs``, ``start_epoch``, ``steps_per_epoch``, ``generator``
    (the data order), ``rank``, ``device``; and set ``stop_training = True``.
    """

    def __init__(
        self,
        distribution: Distribution,
        step: TrainStep,
        batches: Batches,
        *,
        epochs: int,
        callbacks: Sequence[Callback] = (),
        validation: tuple[Tensor, Tensor | None] | None = None,
        validation_loss: Callable[[Distribution, Tensor, Tensor | None], float] = mean_nll,
    ) -> None:
        self.distribution, self.step, self.batches = distribution, step, batches
        self.epochs, self.validation, self.validation_loss = epochs, validation, validation_loss
        # Checkpoints run last, so that they save the state every other callback left.
        self.callbacks = sorted(callbacks, key=lambda cb: isinstance(cb, ModelCheckpoint))
        self.history = History()
        self.start_epoch = self.epoch = 0
        self.stop_training = False
        for callback in self.callbacks:
            callback.set_loop(self)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.step.optimizer

    @property
    def scheduler(self) -> Any:
        return self.step.scheduler

    @property
    def generator(self) -> torch.Generator:
        return self.batches.generator

    @property
    def rank(self) -> int:
        return self.batches.rank

    @property
    def device(self) -> torch.device:
        return self.distribution.device

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def run(self) -> History:
        """Train; returns the :class:`History` (also ``self.history``)."""
        start = time.perf_counter()
        try:
            for callback in self.callbacks:
                callback.on_train_begin({})
            for epoch in range(self.start_epoch, self.epochs):
                self.epoch = epoch
                for callback in self.callbacks:
                    callback.on_epoch_begin(epoch, {})
                logs = self._epoch()
                self.history._log(epoch, logs)
                for callback in self.callbacks:
                    if callback.on_epoch_end(epoch, logs):
                        self.stop_training = True
                if self.stop_training:
                    break
            for callback in self.callbacks:
                callback.on_train_end({})
        finally:
            for callback in self.callbacks:
                callback.close()
            self.history.seconds = time.perf_counter() - start
        self.distribution.eval()
        return self.history

    def _epoch(self) -> dict[str, float]:
        self.distribution.train()
        device, world = self.device, self.batches.world
        total, count = 0.0, 0
        for index, (xb, cb) in enumerate(self.batches):
            if xb is not None and xb.device != device:
                xb = xb.to(device)
                cb = None if cb is None else cb.to(device)
            loss, norm = self.step(xb, cb)
            for callback in self.callbacks:
                callback.on_train_batch_end(index, {"loss": loss, "grad_norm": norm})
            self.step.apply()
            rows = 1 if xb is None else xb.shape[0] * world
            total += loss * rows
            count += rows
        logs = {"loss": total / count, "lr": self.optimizer.param_groups[0]["lr"]}
        logs.update(self.step.pop_metrics())
        if self.validation is not None:
            logs["val_loss"] = self.validation_loss(self.distribution, *self.validation)
        return logs
