r"""The target protocol: an unnormalized log-density :math:`\log \tilde p(x) = -u(x)` (minus an
energy), with its normalizer :math:`\log Z = \log \int \tilde p` and exact samples where known.

A :class:`Target` is a ``torch.nn.Module`` (so ``.to("cuda")`` moves its buffers) whose call is
its ``log_prob``: ``fit_energy(flow, target)`` and ``importance(flow, target, n)`` take one
wherever they take a ``log_prob_fn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["Box2D", "Target"]


class Target(nn.Module):
    r"""An unnormalized density on :math:`\mathbb R^D` for sampling and importance weighting.

    Subclasses define :meth:`log_prob` (differentiable, any leading shape, in the input's
    dtype) and, when known, :attr:`log_z` and :meth:`sample`.

    Attributes:
        dim: the dimension :math:`D`.
        log_z: :math:`\log \int \exp(\mathrm{log\_prob}(x))\,dx`, or ``None`` when unknown.

    """

    dim: int
    log_z: float | None = None

    def log_prob(self, x: Tensor) -> Tensor:
        """Unnormalized log-density of points ``(..., D)``; shape ``(...)``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_prob`, so that a target serves as a ``log_prob_fn``."""
        return self.log_prob(x)

    def energy(self, x: Tensor) -> Tensor:
        r""":math:`u(x) = -\log \tilde p(x)`."""
        return -self.log_prob(x)

    def sample(self, n: int, *, seed: int | None = None) -> Tensor:
        """``n`` exact draws ``(n, D)`` in float32 (float64 work inside)."""
        raise NotImplementedError(f"{type(self).__name__} has no exact sampler")

    def modes(self, x: Tensor) -> Tensor:
        """The index of the mode (basin) each point ``(N, D)`` belongs to, for coverage counts."""
        raise NotImplementedError(f"{type(self).__name__} does not label its modes")

    def _check(self, x: Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} is {self.dim}-dimensional; got points of shape "
                f"{tuple(x.shape)}"
            )


def _generator(seed: int | None) -> torch.Generator:
    seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else seed
    return torch.Generator().manual_seed(seed)


def rejection_sample(
    log_prob: Callable[[Tensor], Tensor],
    low: Tensor,
    high: Tensor,
    log_bound: float,
    n: int,
    generator: torch.Generator,
) -> Tensor:
    r"""Exact draws from :math:`\tilde p` restricted to the box ``[low, high]`` by rejection from
    the uniform box: accept :math:`x` with probability :math:`\tilde p(x) / M`,
    :math:`\log M` = ``log_bound``. A point above the bound raises (the bound was wrong), so a
    sample is never silently biased.
    """
    out: list[Tensor] = []
    have = 0
    while have < n:
        u = torch.rand((max(4 * (n - have), 1024), low.numel()), generator=generator)
        x = low + (high - low) * u.to(low.dtype)
        log_ratio = log_prob(x) - log_bound
        if bool((log_ratio > 1e-9).any()):
            raise RuntimeError(f"rejection bound exceeded by {float(log_ratio.max()):.3g} nats")
        keep = torch.rand(x.shape[0], generator=generator, dtype=x.dtype).log() < log_ratio
        out.append(x[keep])
        have += int(keep.sum())
    return torch.cat(out)[:n]


class Box2D(Target):
    r"""A 2-D density :math:`\tilde p(x) = \exp(f(x) - w(x))` known through its log-density
    :math:`f`, made proper by a stiff wall outside the window ``[low, high]``:
    :math:`w(x) = \frac{1}{2 s^2} \sum_i \big(\max(0, \ell_i - x_i) + \max(0, x_i - h_i)\big)^2`.

    Inside the window the density is exactly :math:`e^{f}`; :math:`\log Z` comes from a
    trapezoid rule on a fine grid over the window widened by ``8 s`` (float64), and samples by
    rejection from that widened box with the grid maximum raised by a margin as the bound.

    Args:
        log_prob_fn: :math:`f`, points ``(..., 2)`` to ``(...)``.
        low, high: the window.
        wall: :math:`s`, the wall's width.
        grid: quadrature points per axis.

    """

    def __init__(
        self,
        log_prob_fn: Callable[[Tensor], Tensor],
        low: tuple[float, float],
        high: tuple[float, float],
        *,
        wall: float = 0.1,
        grid: int = 1201,
    ) -> None:
        super().__init__()
        self.dim = 2
        self.fn = log_prob_fn
        self.register_buffer("low", torch.tensor(low, dtype=torch.float64))
        self.register_buffer("high", torch.tensor(high, dtype=torch.float64))
        self.wall = wall
        outer_low, outer_high = self.low - 8 * wall, self.high + 8 * wall
        axes = [
            torch.linspace(float(a), float(b), grid, dtype=torch.float64)
            for a, b in zip(outer_low, outer_high, strict=True)
        ]
        mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
        with torch.no_grad():
            values = self.log_prob(mesh)
        peak = float(values.max())
        integral = torch.trapezoid(torch.trapezoid((values - peak).exp(), axes[1]), axes[0])
        self.log_z = peak + math.log(float(integral))
        # On each grid cell a smooth f stays below its corners' maximum plus their spread.
        corners = torch.stack([values[:-1, :-1], values[1:, :-1], values[:-1, 1:], values[1:, 1:]])
        high_corner, low_corner = corners.max(0).values, corners.min(0).values
        self._log_bound = float((2 * high_corner - low_corner).max()) + 1e-3
        self._outer = (outer_low, outer_high)

    def log_prob(self, x: Tensor) -> Tensor:
        self._check(x)
        low, high = self.low.to(x), self.high.to(x)
        outside = torch.relu(low - x) + torch.relu(x - high)
        return self.fn(x) - 0.5 * (outside / self.wall).square().sum(-1)

    def sample(self, n: int, *, seed: int | None = None) -> Tensor:
        low, high = self._outer
        draws = rejection_sample(
            self.log_prob, low.cpu(), high.cpu(), self._log_bound, n, _generator(seed)
        )
        return draws.float()
