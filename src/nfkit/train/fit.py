r"""Maximum-likelihood training: ``fit(distribution, data, ...)`` returns a Keras-like History.

``fit`` is the shared :class:`~nfkit.train.loop.Loop` with the negative log-likelihood as its
objective (or any other objective), the data source the arguments describe, and the
callbacks its arguments ask for; :func:`nfkit.fit_energy` and
:func:`nfkit.continuous.fit_flow_matching` are ``fit`` with another objective.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from nfkit.bijectors.normalization import data_init
from nfkit.distributions.base import Distribution
from nfkit.train.batches import Batches
from nfkit.train.callbacks import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    NonFiniteLossError,
    ProgressBar,
    TerminateOnNaN,
)
from nfkit.train.data import split_source, training_data, validation_rows
from nfkit.train.distributed import distributed_setup
from nfkit.train.loop import History, Loop, mean_nll
from nfkit.train.step import (
    Objective,
    OptimizerSpec,
    ScheduleSpec,
    TrainStep,
    make_optimizer,
    make_schedule,
    negative_log_likelihood,
)

__all__ = ["History", "NonFiniteLossError", "fit", "negative_log_likelihood"]

CallbackSpec = Callback | Callable[[int, dict[str, float]], bool | None]


def _check(epochs: int, batch_size: int, checkpoint: Any, resume: bool, seed: Any) -> None:
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if checkpoint is not None and seed is None:
        raise ValueError("checkpoint= needs seed=, so that a resumed run sees the same data order")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=, the file to continue from")


def _prepare(distribution: Distribution, first: tuple[Tensor | None, Tensor | None]) -> list:
    """Run one batch before the optimizer exists: neural bijectors create their layers on
    first use, and data-initialized layers (ActNorm) start from this batch.
    """
    distribution.train()
    x, c = first
    with torch.no_grad():
        if x is None:
            distribution.sample((2,))
        else:
            data_init(distribution, x, context=c)
    params = [p for p in distribution.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the distribution has no trainable parameters")
    return params


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
    callbacks: Sequence[CallbackSpec] = (),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    objective: Objective = negative_log_likelihood,
    steps_per_epoch: int | None = None,
    strategy: str | None = None,
    compile: bool | str = "auto",
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
        callbacks: :class:`~nfkit.callbacks.Callback` objects (see :mod:`nfkit.callbacks`:
            ``CSVLogger``, ``LearningRateScheduler``, ``EarlyStopping``, ``ModelCheckpoint``,
            your own subclass), or functions ``(epoch, logs) -> bool | None`` called after each
            epoch; returning ``True`` stops training. ``fit`` adds ``TerminateOnNaN``, an
            ``EarlyStopping`` from ``patience``, a ``ProgressBar`` from ``verbose`` and a
            ``ModelCheckpoint`` from ``checkpoint``.
        checkpoint: a file written (atomically) after every epoch with the weights, optimizer,
            schedule, random states and history; needs ``seed``.
        resume: continue from ``checkpoint`` when it exists. With the same distribution
            architecture, data and arguments, an interrupted run resumed this way ends with the
            same weights and history as one that was never interrupted.
        objective: the loss of a batch, ``objective(distribution, batch, context)`` (default:
            :func:`negative_log_likelihood`); validation reports the NLL, or, when the
            objective has a ``validation_loss(distribution, rows, context) -> float`` method,
            what that returns. Modules with a
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
        compile: run the training step (forward and backward) through ``torch.compile``; if
            compilation fails the step runs eagerly (one ``RuntimeWarning``). Pays off for long
            runs of a fixed architecture; the first steps are slower while it compiles. The
            default ``"auto"`` runs the first :data:`~nfkit.train.step.AUTO_COMPILE_STEPS`
            (10,000) steps eagerly and then compiles when at least as many are still planned,
            in one process and where a C++ compiler is found, silently falling back when it
            cannot. A mode string is
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
    _check(epochs, batch_size, checkpoint, resume, seed)
    if objective is negative_log_likelihood and data is None:
        steps_per_epoch = None  # maximum likelihood needs data
    if seed is not None:
        torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(
        seed if seed is not None else int(torch.randint(0, 2**62, ()).item())
    )
    source = training_data(distribution, data, context, batch_size, steps_per_epoch)
    validation = None
    if validation_data is not None:
        validation = validation_rows(distribution, validation_data)
    elif validation_split:
        source, validation = split_source(source, validation_split, generator)
    rank, world = distributed_setup(strategy, distribution.device)
    params = _prepare(distribution, source.first)
    opt = make_optimizer(optimizer, params, lr, weight_decay)
    batches = Batches(source.rows, source.context, batch_size, shuffle, generator, rank, world)
    schedule = make_schedule(lr_schedule, opt, len(batches) * epochs)
    step = TrainStep(
        distribution,
        objective,
        opt,
        schedule,
        clip_grad_norm=clip_grad_norm,
        compile=compile,
        world=world,
        steps=len(batches) * epochs,
    )
    if world > 1 and seed is not None:
        torch.manual_seed(seed + rank)  # own samples per process (energy objectives)
    tracker = EarlyStopping(
        patience=patience,
        min_delta=min_delta,
        restore_best_weights=restore_best_weights and validation is not None,
    )
    extra = [cb if isinstance(cb, Callback) else LambdaCallback(cb) for cb in callbacks]
    if any(isinstance(cb, ModelCheckpoint) for cb in extra) and seed is None:
        raise ValueError("a ModelCheckpoint needs seed=, so a resumed run sees the same data order")
    saving = [] if checkpoint is None else [ModelCheckpoint(checkpoint, resume=resume)]
    everything = [TerminateOnNaN(), tracker, *extra, ProgressBar(verbose), *saving]
    loop = Loop(
        distribution,
        step,
        batches,
        epochs=epochs,
        callbacks=everything,
        validation=validation,
        validation_loss=getattr(objective, "validation_loss", mean_nll),
    )
    return loop.run()
