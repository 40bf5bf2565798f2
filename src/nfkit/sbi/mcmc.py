r"""Slice sampling (Neal 2003) over many chains at once, one coordinate at a time: the
posterior of neural likelihood estimation, or any unnormalized log-density of ``(chains, d)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["slice_sample"]


def _coordinate_step(
    log_prob: Callable[[Tensor], Tensor],
    theta: Tensor,
    current: Tensor,
    dim: int,
    width: Tensor,
    max_steps: int,
) -> tuple[Tensor, Tensor]:
    """One slice-sampling update of coordinate ``dim`` of every chain."""
    level = current - torch.empty_like(current).exponential_()  # log of u * p(theta)
    left = theta[:, dim] - width[dim] * torch.rand_like(current)
    right = left + width[dim]

    def at(values: Tensor) -> Tensor:
        moved = theta.clone()
        moved[:, dim] = values
        return log_prob(moved)

    # Stepping out with Neal's random split of the budget (J steps left, m - 1 - J right),
    # which keeps the update exact however small the width.
    left_steps = torch.floor(max_steps * torch.rand_like(current))
    right_steps = max_steps - 1 - left_steps
    for step in range(max_steps):
        grow = (at(left) > level) & (left_steps > step)
        if not bool(grow.any()):
            break
        left = torch.where(grow, left - width[dim], left)
    for step in range(max_steps):
        grow = (at(right) > level) & (right_steps > step)
        if not bool(grow.any()):
            break
        right = torch.where(grow, right + width[dim], right)
    new, new_lp = theta[:, dim].clone(), current.clone()
    pending = torch.ones_like(current, dtype=torch.bool)
    for _ in range(100):  # shrinkage until every chain has a point inside its slice
        proposal = left + (right - left) * torch.rand_like(current)
        lp = at(proposal)
        accept = pending & (lp > level)
        new, new_lp = torch.where(accept, proposal, new), torch.where(accept, lp, new_lp)
        pending = pending & ~accept
        if not bool(pending.any()):
            break
        below = proposal < theta[:, dim]
        left = torch.where(pending & below, proposal, left)
        right = torch.where(pending & ~below, proposal, right)
    moved = theta.clone()
    moved[:, dim] = new
    return moved, new_lp


def slice_sample(
    log_prob: Callable[[Tensor], Tensor],
    start: Tensor,
    sweeps: int,
    *,
    width: float | Tensor | None = None,
    max_steps: int = 10,
) -> Tensor:
    r"""Run ``start.shape[0]`` chains of coordinate-wise slice sampling for ``sweeps`` sweeps.

    Each sweep updates every coordinate in turn: draw a level under the density, step an
    interval of ``width`` out until both ends lie outside the slice (at most ``max_steps``
    steps in all, split at random between the sides as in Neal 2003), then shrink it
    towards the current point until a uniform proposal falls inside. Every chain moves in
    each evaluation of ``log_prob`` (a batch of ``(chains, d)``).
    The result is exact MCMC (detailed balance holds for any width); the width only sets the
    cost. Default width: twice the spread of the starting points per coordinate (at least
    0.5).

    Args:
        log_prob: unnormalized log-density of rows ``(chains, d)``; ``-inf`` outside the
            support.
        start: ``(chains, d)`` starting points with finite ``log_prob``.
        sweeps: sweeps to run.
        width: the initial interval width (scalar or per coordinate).
        max_steps: stepping-out limit per side.

    Returns:
        ``(sweeps, chains, d)`` states after each sweep.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> draws = slice_sample(lambda t: -0.5 * (t**2).sum(-1), torch.zeros(200, 1), 60)
        >>> round(draws[10:].std().item(), 1)
        1.0

    """
    theta = start.detach().clone()
    with torch.no_grad():
        current = log_prob(theta)
        if not bool(torch.isfinite(current).all()):
            raise ValueError("every chain must start where log_prob is finite")
        if width is None:
            spread = theta.std(0) if theta.shape[0] > 1 else torch.ones(theta.shape[1])
            w = torch.clamp(2 * torch.nan_to_num(spread, nan=1.0), min=0.5)
        else:
            w = torch.as_tensor(width, dtype=theta.dtype).expand(theta.shape[1])
        states = []
        for _ in range(sweeps):
            for dim in range(theta.shape[1]):
                theta, current = _coordinate_step(log_prob, theta, current, dim, w, max_steps)
            states.append(theta.clone())
    return torch.stack(states)
