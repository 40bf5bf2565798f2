r"""Maximum-likelihood training: ``fit(distribution, data, ...)`` returns a Keras-like History."""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from nfkit.data.validate import as_data_tensor
from nfkit.distributions.base import Distribution, evaluation_mode
from nfkit.train.batches import Batches, MappedRows, check_mapped, unpack
from nfkit.train.checkpoint import (
    TrainingState,
    read_checkpoint,
    scheduler_state,
    write_checkpoint,
)
from nfkit.train.distributed import (
    StepModule,
    compiled,
    distributed_setup,
    mean_across,
    wrap_ddp,
)

__all__ = ["History", "NonFiniteLossError", "fit", "negative_log_likelihood"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

Callback = Callable[[int, dict[str, float]], bool | None]
Objective = Callable[[Distribution, Any, Tensor | None], Tensor]
OptimizerSpec = str | Callable[..., torch.optim.Optimizer]
ScheduleSpec = str | Callable[[torch.optim.Optimizer, int], Any] | None


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or gradient; the weights are the last good ones."""


@dataclass
class History:
    """What ``fit`` measured, one value per epoch, as Keras' ``History``.

    Attributes:
        history: ``{"loss": [...], "val_loss": [...], "lr": [...]}``; ``loss`` is the mean
            negative log-likelihood (nats per sample) over each epoch's batches.
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


def _optimizer(
    spec: OptimizerSpec, params: list[nn.Parameter], lr: float, wd: float
) -> torch.optim.Optimizer:
    if isinstance(spec, str):
        classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
        if spec.lower() not in classes:
            raise ValueError(f"optimizer must be one of {sorted(classes)} or a class, got {spec!r}")
        if spec.lower() == "sgd":
            return torch.optim.SGD(params, lr=lr, weight_decay=wd)
        # The fused kernel updates every tensor in one call: at small batches the per-tensor
        # Python loop of the default implementation is a fifth of the step time.
        try:
            return classes[spec.lower()](params, lr=lr, weight_decay=wd, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
            return classes[spec.lower()](params, lr=lr, weight_decay=wd)
    return spec(params, lr=lr, weight_decay=wd)


def _schedule(spec: ScheduleSpec, opt: torch.optim.Optimizer, total_steps: int) -> Any:
    if spec is None or spec == "constant":
        return None
    if spec == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    if isinstance(spec, str):
        raise ValueError(f"lr_schedule must be None, 'cosine' or a callable, got {spec!r}")
    return spec(opt, total_steps)


def _grad_norm(params: list[nn.Parameter], clip: float | None) -> Tensor:
    """Global gradient norm (checked for NaN/inf every step); clips to ``clip`` when given."""
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


def negative_log_likelihood(
    distribution: Distribution, batch: Tensor, context: Tensor | None
) -> Tensor:
    """The default objective: the mean negative log-likelihood of the batch (nats per row)."""
    return -distribution._log_prob(batch, context).mean()


def _mean_nll(dist: Distribution, data: Tensor, context: Tensor | None, chunk: int = 8192) -> float:
    with evaluation_mode(dist):
        total = 0.0
        for start in range(0, data.shape[0], chunk):
            c = None if context is None else context[start : start + chunk]
            total -= float(dist._log_prob(data[start : start + chunk], c).sum())
    return total / data.shape[0]


def _split_validation(
    x: Tensor, c: Tensor | None, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must lie in [0, 1), got {fraction}")
    n_val = round(fraction * x.shape[0])
    if n_val < 1 or n_val >= x.shape[0]:
        raise ValueError(
            f"validation_split={fraction} of {x.shape[0]} rows leaves an empty train or "
            "validation set"
        )
    order = torch.randperm(x.shape[0], generator=generator).to(x.device)
    val, train = order[:n_val], order[n_val:]
    cv, ct = (None, None) if c is None else (c[val], c[train])
    return x[train], ct, x[val], cv


def _split_mapped(
    rows: MappedRows, fraction: float, generator: torch.Generator
) -> tuple[MappedRows, Tensor]:
    """A held-out share of mapped rows, loaded into memory; the rest stay on disk."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must lie in [0, 1), got {fraction}")
    n = rows.shape[0]
    n_val = round(fraction * n)
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split={fraction} of {n} rows leaves an empty set")
    order = torch.randperm(n, generator=generator).numpy()
    kept = order[n_val:] if rows.index is None else rows.index[order[n_val:]]
    train = MappedRows(rows.array, kept, rows.dtype, rows.device)
    return train, rows.rows(torch.from_numpy(order[:n_val]))


def _checked_context(context: Any, n: int, dist: Distribution, name: str) -> Tensor | None:
    if context is None:
        return None
    c = torch.as_tensor(np.asarray(context) if not isinstance(context, Tensor) else context)
    c = c.to(device=dist.device, dtype=dist.dtype)
    if c.ndim != 2 or c.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n}, C), one row per data row; got {tuple(c.shape)}"
        )
    return c


def fit(
    distribution: Distribution,
    data: Any,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 1e-3,
    optimizer: OptimizerSpec = "adam",
    weight_decay: float = 0.0,
    lr_schedule: ScheduleSpec = None,
    validation_data: Any = None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best_weights: bool = True,
    clip_grad_norm: float | None = None,
    context: Any = None,
    seed: int | None = None,
    verbose: int = 1,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    objective: Objective = negative_log_likelihood,
    steps_per_epoch: int | None = None,
    strategy: str | None = None,
    compile: bool | str = False,
) -> History:
    r"""Train ``distribution`` by maximum likelihood on ``data`` (chapter eq. 7.3).

    Each step minimises the mean negative log-likelihood of a mini-batch,
    :math:`\ell = -\frac1B \sum_b \log p_\theta(x_b)`, with Adam by default.

    Args:
        distribution: any nfkit distribution with trainable parameters (a flow).
        data: an array or tensor of shape ``(N, *event_shape)``, a memory-mapped array
            (``np.load(path, mmap_mode="r")`` or :func:`nfkit.data.open_rows` for NPY and
            Parquet files larger than memory: read one batch at a time, never whole), or a
            ``DataLoader`` yielding batches (or ``(batch, context)`` pairs).
        epochs: passes over the data.
        batch_size: rows per step (arrays and tensors only).
        lr: learning rate.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, or a callable ``(params, lr=,
            weight_decay=)`` returning a torch optimizer.
        weight_decay: L2 penalty (decoupled with ``"adamw"``).
        lr_schedule: ``None`` (constant), ``"cosine"`` (annealed to 0 over all steps), or a
            callable ``(optimizer, total_steps)`` returning a scheduler stepped every step.
        validation_data: held-out rows (or ``(rows, context)``) scored after every epoch.
        validation_split: alternatively, a fraction of ``data`` held out at random (seeded).
        shuffle: reshuffle the rows every epoch.
        patience: stop after this many epochs without ``min_delta`` improvement of the
            validation loss (of the training loss when there is no validation data).
        min_delta: smallest decrease that counts as an improvement.
        restore_best_weights: with validation data, end with the weights of the best epoch.
        clip_grad_norm: clip the global gradient norm to this value.
        context: conditioning rows aligned with ``data`` (conditional flows).
        seed: seeds torch (lazy network initialisation, sampling) and the data order.
        verbose: 0 silent; 1 a progress bar when stderr is a terminal; 2 one line per epoch.
        callbacks: functions ``(epoch, logs) -> bool | None`` called after each epoch; returning
            ``True`` stops training.
        checkpoint: a file written (atomically) after every epoch with the weights, optimizer,
            schedule, random states and history; needs ``seed``.
        resume: continue from ``checkpoint`` when it exists. With the same distribution
            architecture, data and arguments, an interrupted run resumed this way ends with the
            same weights and history as one that was never interrupted.
        objective: the loss of a batch, ``objective(distribution, batch, context)`` (default:
            :func:`negative_log_likelihood`); validation always reports the NLL. Modules with a
            ``pop_penalty()`` method (a continuous flow's kinetic energy) add the
            regularization they computed during the pass.
            :func:`nfkit.continuous.fit_flow_matching` passes its flow-matching loss here.
            An objective with a ``pop_metrics()`` method adds what it returns (a dict of
            floats) to each epoch's logs.
        steps_per_epoch: with ``data=None``, the steps per epoch of an objective that draws
            its own samples (:func:`nfkit.fit_energy`); the batch it receives is ``None``.
        strategy: ``"ddp"`` trains with PyTorch's ``DistributedDataParallel`` when the script
            runs under ``torchrun`` (gloo on CPU, NCCL on CUDA): every process draws the same
            shuffle and takes its share of each global batch of ``batch_size`` rows, so K
            processes end with the weights of one process on the same global batches; only
            rank 0 shows progress, prints and writes checkpoints. Without a launcher it trains
            in one process. ``None``: one process. A ``DataLoader`` is not sharded by ``fit``:
            give it a ``torch.utils.data.DistributedSampler``.
        compile: run the training step through ``torch.compile``; if compilation fails the
            step runs eagerly (one ``RuntimeWarning``). Pays off for long runs of a fixed
            architecture; the first steps are slower while it compiles. A string is
            ``torch.compile``'s ``mode``: ``"reduce-overhead"`` replays the step's forward and
            backward as CUDA graphs on a GPU, which removes the per-kernel launch cost that
            dominates small flows there (see ``benchmarks/README.md``).

    Returns:
        A :class:`History` whose ``history["loss"]`` (and ``"val_loss"``) has one value per epoch.

    Raises:
        ValueError: bad data (NaN/inf rows, wrong shape, empty) or arguments.
        NonFiniteLossError: a NaN/inf loss or gradient; the message names the epoch and step, and
            the weights are left as they were after the last finite step.

    Example:
        >>> import torch, nfkit, nfkit.distributions as nfd, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> base = nfd.MultivariateNormalDiag(loc=[0.0] * 2)
        >>> flow = nfb.Shift(torch.nn.Parameter(torch.zeros(2)))(base)
        >>> h = nfkit.fit(flow, torch.randn(256, 2) + 3.0, epochs=20, lr=0.1, verbose=0)
        >>> len(h.history["loss"]), round(float(flow.bijector.shift.detach().mean()))
        (20, 3)

    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if checkpoint is not None and seed is None:
        raise ValueError("checkpoint= needs seed=, so that a resumed run sees the same data order")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=, the file to continue from")
    if seed is not None:
        torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(
        seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
    )
    as_tensor = {"event_shape": distribution.event_shape, "dtype": distribution.dtype}
    device = distribution.device

    train_x: Tensor | torch.utils.data.DataLoader | int
    first_x: Tensor | None
    if data is None:
        if objective is negative_log_likelihood or not steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(
                "data=None needs an objective that draws its own samples and steps_per_epoch "
                "(see nfkit.fit_energy); maximum likelihood needs data"
            )
        train_x, train_c, first_x, first_c = steps_per_epoch, None, None, None
    elif isinstance(data, np.memmap):
        if context is not None:
            raise ValueError("context= is not supported with memory-mapped data")
        check_mapped(data, distribution.event_shape)
        train_x, train_c = MappedRows(data, None, distribution.dtype, device), None
        first_x, first_c = train_x.rows(torch.arange(min(batch_size, data.shape[0]))), None
    elif isinstance(data, torch.utils.data.DataLoader):
        train_x, train_c = data, None
        first_x, first_c = unpack(next(iter(data)))
        first_x, first_c = first_x.to(device), None if first_c is None else first_c.to(device)
    else:
        train_x = as_data_tensor(data, device=device, **as_tensor)
        train_c = _checked_context(context, train_x.shape[0], distribution, "context")
        first_x, first_c = train_x[:batch_size], None if train_c is None else train_c[:batch_size]

    val_x: Tensor | None = None
    val_c: Tensor | None = None
    if validation_data is not None:
        raw, raw_c = (
            validation_data if isinstance(validation_data, tuple) else (validation_data, None)
        )
        val_x = as_data_tensor(raw, device=device, name="validation_data", **as_tensor)
        val_c = _checked_context(raw_c, val_x.shape[0], distribution, "validation context")
    elif validation_split:
        if isinstance(train_x, MappedRows):
            train_x, val_x = _split_mapped(train_x, validation_split, generator)
        elif isinstance(train_x, Tensor):
            train_x, train_c, val_x, val_c = _split_validation(
                train_x, train_c, validation_split, generator
            )
        else:
            raise ValueError("validation_split needs array data; pass validation_data instead")

    rank, world = distributed_setup(strategy, device)
    # Neural bijectors create their layers on first use: run one batch before the optimizer.
    distribution.train()
    with torch.no_grad():
        if first_x is None:
            distribution.sample((2,))
        else:
            distribution._log_prob(first_x, first_c)
    params = [p for p in distribution.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the distribution has no trainable parameters")
    penalized = [m.pop_penalty for m in distribution.modules() if hasattr(m, "pop_penalty")]
    opt = _optimizer(optimizer, params, lr, weight_decay)
    step_module: Any = StepModule(distribution, objective)
    if world > 1:
        step_module = wrap_ddp(step_module, device)  # broadcasts rank 0's weights
        if seed is not None:
            torch.manual_seed(seed + rank)  # own samples per process (energy objectives)
    if isinstance(compile, str) and compile not in COMPILE_MODES:
        raise ValueError(f"compile must be a bool or one of {COMPILE_MODES}, got {compile!r}")
    mode = {"mode": compile} if isinstance(compile, str) else {}
    run_step = compiled(step_module, **mode) if compile else step_module
    batches = Batches(train_x, train_c, batch_size, shuffle, generator, rank, world)
    steps = len(batches)
    scheduler = _schedule(lr_schedule, opt, steps * epochs)

    history = History()
    best = math.inf
    best_state: dict[str, Tensor] | None = None
    bad_epochs = 0
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = read_checkpoint(checkpoint)
        distribution.load_state_dict(state.model)
        opt.load_state_dict(state.optimizer)
        if scheduler is not None and state.scheduler is not None:
            scheduler.load_state_dict(state.scheduler)
        history.history = state.history
        history.epoch = list(range(state.next_epoch))
        history.best_epoch, history.stopped_early = state.best_epoch, state.stopped_early
        best, bad_epochs, best_state = state.best, state.bad_epochs, state.best_state
        torch.set_rng_state(state.torch_rng)
        if state.device_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state.device_rng, device)
        generator.set_state(state.data_rng)
        start_epoch = epochs if state.stopped_early else state.next_epoch
    bar = tqdm(
        total=steps * (epochs - start_epoch),
        unit="step",
        disable=verbose != 1 or rank != 0 or not sys.stderr.isatty(),
        dynamic_ncols=True,
        mininterval=0.25,
    )
    start = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            distribution.train()
            total, count = 0.0, 0
            for step, (xb, cb) in enumerate(batches):
                if xb is not None and xb.device != device:
                    xb = xb.to(device)
                    cb = None if cb is None else cb.to(device)
                loss = run_step(xb, cb)
                for pop_penalty in penalized:
                    penalty = pop_penalty()
                    if penalty is not None:
                        loss = loss + penalty
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = _grad_norm(params, clip_grad_norm)
                loss_value, norm_value = mean_across(
                    torch.stack([loss.detach(), norm.detach()]), world
                ).tolist()
                if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                    what = "loss" if not math.isfinite(loss_value) else "gradient norm"
                    bad = loss_value if what == "loss" else norm_value
                    raise NonFiniteLossError(
                        f"{what} is {bad} at epoch {epoch + 1}/{epochs}, step {step + 1}/{steps}; "
                        "training stopped and the weights are those after the last finite step. "
                        f"Try a lower lr (now {opt.param_groups[0]['lr']:g}), clip_grad_norm=..., "
                        "or standardize the data."
                    )
                opt.step()
                if scheduler is not None:
                    scheduler.step()
                rows = 1 if xb is None else xb.shape[0] * world
                total += loss_value * rows
                count += rows
                bar.update(1)
            logs = {"loss": total / count, "lr": opt.param_groups[0]["lr"]}
            if hasattr(objective, "pop_metrics"):
                logs.update(objective.pop_metrics())
            if val_x is not None:
                distribution.eval()
                logs["val_loss"] = _mean_nll(distribution, val_x, val_c)
            history._log(epoch, logs)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "lr"}, epoch=epoch + 1)
            if verbose == 2 and rank == 0:
                shown = "  ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "lr")
                print(f"epoch {epoch + 1}/{epochs}  {shown}", flush=True)
            monitored = logs.get("val_loss", logs["loss"])
            if monitored < best - min_delta:
                best, bad_epochs = monitored, 0
                history.best_epoch = epoch
                if val_x is not None and restore_best_weights:
                    best_state = copy.deepcopy(distribution.state_dict())
            else:
                bad_epochs += 1
            stop = any(bool(cb(epoch, logs)) for cb in callbacks)
            if patience is not None and bad_epochs >= patience:
                history.stopped_early = True
                stop = True
            if checkpoint is not None and rank == 0:
                write_checkpoint(
                    checkpoint,
                    TrainingState(
                        next_epoch=epoch + 1,
                        history=history.history,
                        optimizer=opt.state_dict(),
                        scheduler=scheduler_state(scheduler),
                        best=best,
                        best_epoch=history.best_epoch,
                        bad_epochs=bad_epochs,
                        best_state=best_state,
                        torch_rng=torch.get_rng_state(),
                        device_rng=(
                            torch.cuda.get_rng_state(device) if device.type == "cuda" else None
                        ),
                        data_rng=generator.get_state(),
                        stopped_early=history.stopped_early,
                        model=distribution.state_dict(),
                    ),
                )
            if stop:
                break
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
    if best_state is not None:
        distribution.load_state_dict(best_state)
    distribution.eval()
    return history
