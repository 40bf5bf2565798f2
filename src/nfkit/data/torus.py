r"""A density on the torus with an exact log-density and exact samples: a Ramachandran-like
mixture of products of von Mises distributions over two torsion angles :math:`(\phi, \psi)`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["TORSION_MODES", "torsion_log_prob", "torsion_sample"]

TORSION_MODES = (
    # weight, (phi, psi) centre, (kappa_phi, kappa_psi): beta-sheet-, alpha-helix- and
    # left-handed-helix-like regions
    (0.45, (-1.3, 2.4), (4.0, 3.0)),
    (0.45, (-1.1, -0.7), (6.0, 5.0)),
    (0.10, (1.0, 0.7), (5.0, 5.0)),
)


def torsion_log_prob(x: Tensor | np.ndarray) -> Tensor:
    r"""Exact :math:`\log p(\phi, \psi)` for angles ``(*, 2)`` in :math:`[-\pi, \pi)`:
    :math:`\log \sum_k w_k \prod_j \mathrm{vM}(x_j; \mu_{kj}, \kappa_{kj})`.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    terms = []
    for weight, centre, kappa in TORSION_MODES:
        mu, k = torch.tensor(centre, dtype=x.dtype), torch.tensor(kappa, dtype=x.dtype)
        log_i0 = torch.log(torch.special.i0e(k)) + k
        per_angle = k * torch.cos(x - mu) - log_i0 - math.log(2 * math.pi)
        terms.append(math.log(weight) + per_angle.sum(-1))
    return torch.logsumexp(torch.stack(terms), dim=0)


def torsion_sample(n: int, seed: int | None = 0) -> np.ndarray:
    """``n`` exact draws ``(n, 2)`` of the torsion density, angles in [-pi, pi)."""
    rng = np.random.default_rng(seed)
    weights = np.array([m[0] for m in TORSION_MODES])
    component = rng.choice(len(TORSION_MODES), size=n, p=weights / weights.sum())
    centres = np.array([m[1] for m in TORSION_MODES])[component]
    kappas = np.array([m[2] for m in TORSION_MODES])[component]
    angles = rng.vonmises(centres, kappas)
    return np.remainder(angles + math.pi, 2 * math.pi) - math.pi
