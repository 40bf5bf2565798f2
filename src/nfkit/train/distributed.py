"""The training step as a module, so that it can run under PyTorch's DistributedDataParallel
and ``torch.compile``; the process-group setup for ``fit(strategy="ddp")``.

Under ``torchrun --nproc_per_node=K script.py`` (which sets ``RANK``, ``WORLD_SIZE`` and the
rendezvous variables) ``fit(..., strategy="ddp")`` joins the process group (gloo on CPU, NCCL
on CUDA, one device per local rank), wraps the step in ``DistributedDataParallel`` and shards
every global batch across the processes. Run without a launcher, the same call trains in one
process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from nfkit.distributions.base import Distribution

__all__ = ["StepModule", "compiled", "distributed_setup", "mean_across", "wrap_ddp"]


class StepModule(nn.Module):
    """``forward(batch, context)`` is the objective's loss on one batch."""

    def __init__(self, distribution: Distribution, objective: Callable[..., Tensor]) -> None:
        super().__init__()
        self.distribution = distribution
        self.objective = objective

    def forward(self, batch: Tensor | None, context: Tensor | None) -> Tensor:
        return self.objective(self.distribution, batch, context)


def distributed_setup(strategy: str | None, device: torch.device) -> tuple[int, int]:
    """``(rank, world_size)``; joins the process group for ``"ddp"`` under a launcher."""
    if strategy is None:
        return 0, 1
    if strategy != "ddp":
        raise ValueError(f"strategy must be None or 'ddp', got {strategy!r}")
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1  # no launcher: one process
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def wrap_ddp(step: StepModule, device: torch.device) -> nn.Module:
    """The step under DistributedDataParallel (gradients averaged across processes)."""
    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step, device_ids=ids)


def mean_across(values: Tensor, world: int) -> Tensor:
    """The mean of ``values`` over the processes (the values themselves in one process)."""
    if world > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world
    return values


class compiled:  # noqa: N801  (used like a function)
    """``torch.compile(module)`` that falls back to the eager module, with one warning (none
    when ``quiet``), when compilation fails (no C++ compiler, an unsupported operation, an old
    platform); :meth:`fall_back` is that switch for a failure found outside the call (a
    backward pass compiled on first use).
    """

    def __init__(self, module: nn.Module, *, quiet: bool = False, **options: Any) -> None:
        self.eager = module
        self.quiet = quiet
        self.failed: Exception | None = None
        # Modes that replay CUDA graphs must be told where a training step starts.
        self.graphs = options.get("mode") in ("reduce-overhead", "max-autotune")
        try:
            self.fn: Callable[..., Tensor] = torch.compile(module, **options)
        except Exception as err:
            self.fall_back(err)

    def fall_back(self, err: Exception) -> None:
        """Run the eager module from now on (``err``: why compilation failed)."""
        self.failed = err
        if self.quiet:
            return
        warnings.warn(
            f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "training continues without compilation",
            RuntimeWarning,
            stacklevel=3,
        )

    def __call__(self, *args: Any) -> Tensor:
        if self.failed is None:
            try:
                if self.graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                return self.fn(*args)
            except Exception as err:
                self.fall_back(err)
        return self.eager(*args)
