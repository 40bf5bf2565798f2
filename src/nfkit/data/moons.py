r"""The exact density and entropy of scikit-learn's ``make_moons`` data (chapter 7.6).

``make_moons(n, noise=σ)`` places points evenly along two half circles,

.. math:: c_1(t) = (\cos t, \sin t), \qquad c_2(t) = (1 - \cos t, \tfrac12 - \sin t),
          \qquad t \in [0, \pi],

half on each, and adds isotropic Gaussian noise of standard deviation :math:`\sigma`. As the
number of points grows, the data density is the mixture

.. math:: p(x) = \frac{1}{2\pi} \sum_{k=1}^{2} \int_0^\pi
          \mathcal N(x;\, c_k(t),\, \sigma^2 I)\, dt,

which :func:`moons_log_prob` evaluates by the midpoint rule over :math:`t` (with a step far below
:math:`\sigma`, the quadrature error is negligible). Its entropy :math:`H = -E_p[\log p(x)]` is the
lowest mean negative log-likelihood any model can reach on such data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from nfkit.data.toy2d import noisy_curve_log_prob

__all__ = ["moons_entropy", "moons_log_prob"]


def _arc_points(n_t: int, dtype: torch.dtype) -> Tensor:
    t = (torch.arange(n_t, dtype=dtype) + 0.5) * (math.pi / n_t)
    outer = torch.stack([t.cos(), t.sin()], -1)
    inner = torch.stack([1.0 - t.cos(), 0.5 - t.sin()], -1)
    return torch.cat([outer, inner])


def moons_log_prob(x: Tensor | np.ndarray, noise: float = 0.05, *, n_t: int = 2000) -> Tensor:
    r"""Exact log-density of ``make_moons(noise=noise)`` data at points ``x`` of shape ``(N, 2)``.

    Args:
        x: points, shape ``(N, 2)``.
        noise: the ``noise`` argument given to ``make_moons``, :math:`\sigma > 0`.
        n_t: quadrature points per arc.

    Example:
        >>> import torch
        >>> from nfkit.data import moons_log_prob
        >>> [round(v, 2) for v in moons_log_prob(torch.tensor([[1.0, 0.0], [0.0, -2.0]])).tolist()]
        [-0.45, -573.22]

    """
    return noisy_curve_log_prob(x, _arc_points(n_t, torch.float64), noise)


def moons_entropy(noise: float = 0.05, *, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    r"""Entropy :math:`H = -E_p[\log p]` of the moons density, in nats, with its standard error.

    Monte Carlo over ``n`` exact draws (uniform :math:`t` on a uniformly chosen arc plus noise),
    each scored by :func:`moons_log_prob`.

    Example:
        >>> from nfkit.data import moons_entropy
        >>> h, se = moons_entropy(0.05, n=20_000)
        >>> round(h, 1), se < 0.01
        (0.3, True)

    """
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    arc = torch.rand(n, generator=g) < 0.5
    x = torch.where(
        arc[:, None],
        torch.stack([t.cos(), t.sin()], -1),
        torch.stack([1.0 - t.cos(), 0.5 - t.sin()], -1),
    )
    x = x + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    neg = -moons_log_prob(x, noise)
    return float(neg.mean()), float(neg.std() / math.sqrt(n))
