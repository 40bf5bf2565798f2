r"""2-D test densities with exact samplers and, where known, exact log-densities and entropies.

Most are "a curve plus Gaussian noise": a point is drawn uniformly in the curve's parameter and
blurred by :math:`\mathcal N(0, \sigma^2 I)`, so

.. math:: p(x) = \int p(t)\, \mathcal N(x;\, c(t),\, \sigma^2 I)\, dt,

evaluated by the midpoint rule in :math:`t` (steps far below :math:`\sigma`). The entropy
:math:`H = -E_p[\log p]` (Monte Carlo with its standard error) is the lowest held-out NLL any
model can reach. ``checkerboard`` is uniform on 8 unit squares, :math:`H = \log 8` exactly;
``pinwheel`` (Grathwohl et al. 2019) has no closed-form density.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["TOY2D", "Toy2D", "noisy_curve_log_prob"]


def _float64(x: Tensor | np.ndarray) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def noisy_curve_log_prob(x: Tensor | np.ndarray, centers: Tensor, sigma: float) -> Tensor:
    """``log mean_m N(x; centers[m], sigma^2 I)`` for points ``(N, 2)``, in float64, chunked;
    differentiable in ``x`` when it is a tensor.
    """
    points = _float64(x)
    centers = centers.to(torch.float64)
    log_norm = math.log(centers.shape[0]) + math.log(2 * math.pi * sigma**2)
    out = []
    for part in points.split(4096):
        sq = torch.cdist(part, centers).square()
        out.append(torch.logsumexp(-0.5 * sq / sigma**2, dim=1) - log_norm)
    return torch.cat(out)


@dataclass(frozen=True)
class Toy2D:
    """A 2-D data density: ``sample(n, rng)`` and, when known, ``log_prob`` and the entropy."""

    name: str
    draw: Callable[[int, np.random.Generator], np.ndarray]
    log_prob: Callable[[Tensor | np.ndarray], Tensor] | None = None
    exact_entropy: float | None = None

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` exact draws, shape ``(n, 2)``."""
        return self.draw(n, np.random.default_rng(seed))

    def entropy(self, n: int = 100_000, seed: int = 12345) -> tuple[float, float] | None:
        """Entropy in nats and its standard error (0 when exact); ``None`` when unknown."""
        if self.exact_entropy is not None:
            return self.exact_entropy, 0.0
        if self.log_prob is None:
            return None
        neg = -self.log_prob(self.sample(n, seed))
        return float(neg.mean()), float(neg.std() / math.sqrt(n))


def _curve(points: Callable[[np.ndarray], np.ndarray], sigma: float, n_t: int = 4000) -> Toy2D:
    """A density uniform in ``t`` on [0, 1) along ``points(t) -> (len(t), 2)``, plus noise."""
    grid = torch.as_tensor(points((np.arange(n_t) + 0.5) / n_t))

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        return points(rng.random(n)) + sigma * rng.normal(size=(n, 2))

    return Toy2D("", draw, lambda x: noisy_curve_log_prob(x, grid, sigma))


def _moons(t: np.ndarray) -> np.ndarray:
    # t in [0, 0.5): outer arc; [0.5, 1): inner arc (scikit-learn's make_moons, centred).
    a = (2 * t % 1.0) * math.pi
    outer = np.stack([np.cos(a), np.sin(a)], -1)
    inner = np.stack([1 - np.cos(a), 0.5 - np.sin(a)], -1)
    return np.where((t < 0.5)[:, None], outer, inner) - [0.5, 0.25]


def _spirals(t: np.ndarray) -> np.ndarray:
    # Two arms of an Archimedean spiral, the second rotated by pi.
    s = 2 * t % 1.0
    angle = 3 * math.pi * s + np.where(t < 0.5, 0.0, math.pi)
    radius = 0.3 + 2.2 * s
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)


_RADII = np.array([0.5, 1.0, 1.5, 2.0])


def _rings(t: np.ndarray) -> np.ndarray:
    # Uniform along the total length: ring k holds a share proportional to its radius.
    edges = np.cumsum(_RADII) / _RADII.sum()
    k = np.searchsorted(edges, t, side="right").clip(max=len(_RADII) - 1)
    start = np.concatenate([[0.0], edges[:-1]])[k]
    angle = 2 * math.pi * (t - start) / (edges[k] - start)
    return _RADII[k, None] * np.stack([np.cos(angle), np.sin(angle)], -1)


_CENTERS = 2.0 * np.array([[math.cos(a), math.sin(a)] for a in np.arange(8) * math.pi / 4])


def _gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    return _CENTERS[rng.integers(0, 8, n)] + 0.2 * rng.normal(size=(n, 2))


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    # 4 x 4 board on [-2, 2]^2; the 8 squares with (row + column) even carry mass 1/8 each.
    cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    pick = cells[rng.integers(0, 8, n)]
    return pick - 2.0 + rng.random((n, 2))


def _checkerboard_log_prob(x: Tensor | np.ndarray) -> Tensor:
    points = _float64(x)
    cell = torch.floor(points + 2.0)
    inside = ((cell >= 0) & (cell <= 3)).all(-1) & (cell.sum(-1) % 2 == 0)
    return torch.where(inside, -math.log(8.0), -math.inf)


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    # Grathwohl et al. 2019 (FFJORD): five arms, radial std 0.3, tangential std 0.1, rate 0.25.
    arms, rate = 5, 0.25
    labels = rng.integers(0, arms, n)
    f = rng.normal(size=(n, 2)) * [0.3, 0.1] + [1.0, 0.0]
    angle = 2 * math.pi * labels / arms + rate * np.exp(f[:, 0])
    c, s = np.cos(angle), np.sin(angle)
    return 2.0 * np.stack([c * f[:, 0] - s * f[:, 1], s * f[:, 0] + c * f[:, 1]], -1)


def _named(name: str, toy: Toy2D) -> Toy2D:
    return Toy2D(name, toy.draw, toy.log_prob, toy.exact_entropy)


TOY2D: dict[str, Toy2D] = {
    "moons": _named("moons", _curve(_moons, 0.05)),
    "8gaussians": Toy2D(
        "8gaussians",
        _gaussians,
        lambda x: noisy_curve_log_prob(x, torch.as_tensor(_CENTERS), 0.2),
    ),
    "checkerboard": Toy2D("checkerboard", _checkerboard, _checkerboard_log_prob, math.log(8.0)),
    "pinwheel": Toy2D("pinwheel", _pinwheel),
    "2spirals": _named("2spirals", _curve(_spirals, 0.08)),
    "rings": _named("rings", _curve(_rings, 0.08)),
}
