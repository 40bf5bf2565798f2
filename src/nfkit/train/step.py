r"""The training step: objective → loss (+ the modules' penalties) → backward → gradient norm
→ optimizer update. The forward part is the unit that ``torch.compile`` and DDP wrap.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from nfkit.distributions.base import Distribution
from nfkit.train.distributed import StepModule, compiled, mean_across, wrap_ddp

__all__ = [
    "AUTO_COMPILE_STEPS",
    "COMPILE_MODES",
    "Objective",
    "OptimizerSpec",
    "ScheduleSpec",
    "TrainStep",
    "make_optimizer",
    "make_schedule",
    "negative_log_likelihood",
]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# compile="auto" runs eagerly for this many steps and then compiles if at least as many are
# still planned: on one CPU core compiling the chapter's MAF takes 3-12 s and NSF-AR 20-30 s
# and saves 1-4 ms a step (steps 1.3-4x faster, benchmarks/README.md), so compiling pays after
# about 10,000 steps. A run that ends early (early stopping) never pays more than the compile
# time over the eager steps already taken.
AUTO_COMPILE_STEPS = 10_000

Objective = Callable[[Distribution, Any, Tensor | None], Tensor]
OptimizerSpec = str | Callable[..., torch.optim.Optimizer]
ScheduleSpec = str | Callable[[torch.optim.Optimizer, int], Any] | None


def negative_log_likelihood(
    distribution: Distribution, batch: Tensor, context: Tensor | None
) -> Tensor:
    """The default objective: the mean negative log-likelihood of the batch (nats per row)."""
    return -distribution._log_prob(batch, context).mean()


def compiler_available(device: torch.device, world: int) -> bool:
    """Whether ``compile="auto"`` may compile: one process, and a C++ compiler for inductor
    on the CPU.
    """
    if world > 1:
        return False
    return device.type != "cpu" or any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def make_optimizer(
    spec: OptimizerSpec, params: list[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``"adam"``, ``"adamw"``, ``"sgd"`` or a callable ``(params, lr=, weight_decay=)``."""
    if not isinstance(spec, str):
        return spec(params, lr=lr, weight_decay=weight_decay)
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if spec.lower() not in classes:
        raise ValueError(f"optimizer must be one of {sorted(classes)} or a class, got {spec!r}")
    if spec.lower() == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    # The fused kernel updates every tensor in one call: at small batches the per-tensor
    # Python loop of the default implementation is a fifth of the step time.
    try:
        return classes[spec.lower()](params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return classes[spec.lower()](params, lr=lr, weight_decay=weight_decay)


def make_schedule(spec: ScheduleSpec, opt: torch.optim.Optimizer, total_steps: int) -> Any:
    """``None``/``"constant"``, ``"cosine"`` (to 0 over all steps) or ``(opt, steps) -> sched``."""
    if spec is None or spec == "constant":
        return None
    if spec == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    if isinstance(spec, str):
        raise ValueError(f"lr_schedule must be None, 'cosine' or a callable, got {spec!r}")
    return spec(opt, total_steps)


class TrainStep:
    """One optimization step of ``objective`` on ``distribution``, in two halves: calling it
    computes the loss and gradients and returns ``(loss, grad_norm)`` as floats (averaged
    over the processes of a distributed run); :meth:`apply` then updates the weights and
    steps the schedule. Between the two, callbacks may refuse the step.

    Args:
        distribution: the model.
        objective: ``objective(distribution, batch, context) -> loss``; one with
            ``pop_metrics()`` adds its metrics to each epoch's logs.
        optimizer: the optimizer of the distribution's trainable parameters.
        scheduler: a learning-rate scheduler stepped after every update, or ``None``.
        clip_grad_norm: clip the global gradient norm to this value.
        compile: ``torch.compile`` the forward part and with it its backward (``True`` or a
            mode); ``"auto"``: eagerly for :data:`AUTO_COMPILE_STEPS` steps, then compiled if
            at least as many of the planned ``steps`` remain (:func:`compiler_available`). If
            compiling fails, on the first call or in the first backward pass, the step runs
            eagerly (with a ``RuntimeWarning`` unless ``"auto"`` chose to compile).
        world: processes of a distributed run (1: none); above 1 the forward is under DDP.
        steps: the steps the run plans (for ``compile="auto"``).

    """

    def __init__(
        self,
        distribution: Distribution,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        *,
        clip_grad_norm: float | None = None,
        compile: bool | str = False,
        world: int = 1,
        steps: int = 0,
    ) -> None:
        if isinstance(compile, str) and compile not in (*COMPILE_MODES, "auto"):
            raise ValueError(
                f"compile must be a bool, 'auto' or one of {COMPILE_MODES}, got {compile!r}"
            )
        auto = compile == "auto"
        # The step at which "auto" compiles (None: it does not).
        long_run = steps - AUTO_COMPILE_STEPS >= AUTO_COMPILE_STEPS
        self.compile_at = (
            AUTO_COMPILE_STEPS + 1
            if auto and long_run and compiler_available(distribution.device, world)
            else None
        )
        self.done = 0
        self.objective, self.optimizer, self.scheduler = objective, optimizer, scheduler
        self.clip_grad_norm, self.world = clip_grad_norm, world
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.penalized = [
            m.pop_penalty for m in distribution.modules() if hasattr(m, "pop_penalty")
        ]
        module: Any = StepModule(distribution, objective)
        if world > 1:
            module = wrap_ddp(module, distribution.device)  # broadcasts rank 0's weights
        self.module, self.forward = module, module
        self.untried = False  # a compiled forward whose first step has not finished
        if compile and not auto:
            self._compile({"mode": compile} if isinstance(compile, str) else {}, quiet=False)

    def _compile(self, mode: dict[str, str], quiet: bool) -> None:
        self.forward = compiled(self.module, quiet=quiet, **mode)
        self.untried = True

    def __call__(self, batch: Tensor | None, context: Tensor | None) -> tuple[float, float]:
        self.done += 1
        if self.done == self.compile_at:
            self._compile({}, quiet=True)
        if not self.untried:
            return self._step(batch, context)
        try:  # the backward pass compiles on first use: a failure there falls back too
            result = self._step(batch, context)
        except Exception as err:
            self.forward.fall_back(err)
            result = self._step(batch, context)
        self.untried = False
        return result

    def _step(self, batch: Tensor | None, context: Tensor | None) -> tuple[float, float]:
        loss = self.forward(batch, context)
        for pop_penalty in self.penalized:
            penalty = pop_penalty()
            if penalty is not None:
                loss = loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm(
                [p.grad for p in self.params if p.grad is not None]
            )
        pair = mean_across(torch.stack([loss.detach(), norm.detach().to(loss.dtype)]), self.world)
        loss_value, norm_value = pair.tolist()
        return loss_value, norm_value

    def apply(self) -> None:
        """Update the weights with the gradients of the last call; step the schedule."""
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def pop_metrics(self) -> dict[str, float]:
        """The objective's metrics for the epoch so far (empty when it has none)."""
        pop = getattr(self.objective, "pop_metrics", None)
        return {} if pop is None else pop()
