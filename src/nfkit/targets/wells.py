r"""The double well of Boltzmann generators (Noé et al. 2019, Science 365) and the Many Well of
Flow Annealed Importance Sampling Bootstrap (Midgley et al. 2023, ICLR): a product of double wells.

.. math:: \log \tilde p(x_1, x_2) = -x_1^4 + 6 x_1^2 + \tfrac12 x_1 - \tfrac12 x_2^2

has two modes near :math:`x_1 \approx \pm 1.7` (the right one deeper, by the tilt
:math:`\frac12 x_1`) separated by a barrier at :math:`x_1 \approx 0`; :math:`x_2` is standard
normal. The Many Well in :math:`D = 2m` dimensions is the product of :math:`m` copies, with
:math:`2^m` modes and :math:`\log Z = m \log Z_2`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from nfkit.targets.base import Target, _generator, rejection_sample

__all__ = ["DoubleWell", "ManyWell"]

_A, _B, _C = 1.0, 6.0, 0.5  # -a x^4 + b x^2 + c x


def _well(x1: Tensor) -> Tensor:
    return -_A * x1**4 + _B * x1**2 + _C * x1


def _well_peak() -> float:
    """The maximum of the quartic, from the real roots of its derivative."""
    roots = np.roots([-4 * _A, 0.0, 2 * _B, _C])
    real = roots[np.abs(roots.imag) < 1e-12].real
    return float(max(_well(torch.tensor(r, dtype=torch.float64)) for r in real))


def _well_log_z(half_width: float = 6.0, points: int = 200_001) -> float:
    x = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    values = _well(x)
    peak = float(values.max())
    return peak + math.log(float(torch.trapezoid((values - peak).exp(), x)))


class DoubleWell(Target):
    r"""The 2-D double well (Noé et al. 2019, Fig. 2; Midgley et al. 2023, Sec. 5).

    ``log_z`` is exact to quadrature precision (1-D trapezoid on 200 001 points plus
    :math:`\frac12\log 2\pi` for :math:`x_2`); ``sample`` is exact (rejection in :math:`x_1`
    from the uniform law on [-4, 4], whose tails hold under :math:`e^{-150}` of the mass).
    ``modes`` labels 0 for :math:`x_1 < 0` and 1 for the deeper right well.

    Example:
        >>> import torch
        >>> from nfkit.targets import DoubleWell
        >>> target = DoubleWell()
        >>> round(target.log_z, 4), target.log_prob(torch.tensor([1.7, 0.0])).item() > 9
        (10.2935, True)

    """

    def __init__(self) -> None:
        super().__init__()
        self.dim = 2
        self.log_z = _well_log_z() + 0.5 * math.log(2 * math.pi)

    def log_prob(self, x: Tensor) -> Tensor:
        self._check(x)
        return _well(x[..., 0]) - 0.5 * x[..., 1].square()

    def sample(self, n: int, *, seed: int | None = None) -> Tensor:
        return _double_well_draws(n, 1, _generator(seed)).float()

    def modes(self, x: Tensor) -> Tensor:
        return (x[..., 0] > 0).long()


def _double_well_draws(n: int, copies: int, generator: torch.Generator) -> Tensor:
    low, high = torch.tensor([-4.0], dtype=torch.float64), torch.tensor([4.0], dtype=torch.float64)
    x1 = rejection_sample(
        lambda t: _well(t[..., 0]), low, high, _well_peak(), n * copies, generator
    ).reshape(n, copies)
    x2 = torch.randn((n, copies), generator=generator, dtype=torch.float64)
    return torch.stack([x1, x2], -1).reshape(n, 2 * copies)


class ManyWell(Target):
    r"""The Many Well (Midgley et al. 2023): ``dim // 2`` independent double wells on the pairs
    :math:`(x_{2i}, x_{2i+1})`, with :math:`2^{D/2}` modes (65 536 for the paper's
    :math:`D = 32`) and :math:`\log Z = \frac D2 \log Z_2` exactly. ``modes`` numbers the
    sign pattern of the :math:`x_{2i}` as a binary integer.

    Example:
        >>> from nfkit.targets import DoubleWell, ManyWell
        >>> target = ManyWell(32)
        >>> target.sample(5, seed=0).shape, round(target.log_z - 16 * DoubleWell().log_z, 9)
        (torch.Size([5, 32]), 0.0)

    """

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"ManyWell needs an even dimension >= 2, got {dim}")
        self.dim = dim
        self.log_z = dim // 2 * DoubleWell().log_z

    def log_prob(self, x: Tensor) -> Tensor:
        self._check(x)
        return (_well(x[..., 0::2]) - 0.5 * x[..., 1::2].square()).sum(-1)

    def sample(self, n: int, *, seed: int | None = None) -> Tensor:
        return _double_well_draws(n, self.dim // 2, _generator(seed)).float()

    def modes(self, x: Tensor) -> Tensor:
        bits = (x[..., 0::2] > 0).long()
        powers = 2 ** torch.arange(bits.shape[-1], device=x.device)
        return (bits * powers).sum(-1)
