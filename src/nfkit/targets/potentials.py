r"""2-D potentials: Rezende & Mohamed's U1–U4 (2015, ICML, Table 1) and the Müller–Brown
potential (Müller & Brown 1979), the classic test system for rare-event sampling.

The paper draws U1–U4 on :math:`[-4, 4]^2`, where U2–U4 are improper (flat in :math:`z_1`);
here each is a :class:`~nfkit.targets.base.Box2D` with a stiff wall outside that window, so it
has a finite :math:`\log Z` (by quadrature) and exact samples (by rejection).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nfkit.targets.base import Box2D

__all__ = ["MullerBrown", "rezende"]


def _gauss(t: Tensor, width: float) -> Tensor:
    return -0.5 * (t / width).square()


def _w1(z1: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z1 / 4)


def _u1(z: Tensor) -> Tensor:
    z1 = z[..., 0]
    ring = _gauss(z.norm(dim=-1) - 2.0, 0.4)
    return ring + torch.logaddexp(_gauss(z1 - 2.0, 0.6), _gauss(z1 + 2.0, 0.6))


def _u2(z: Tensor) -> Tensor:
    return _gauss(z[..., 1] - _w1(z[..., 0]), 0.4)


def _u3(z: Tensor) -> Tensor:
    z1, z2 = z[..., 0], z[..., 1]
    w2 = 3.0 * torch.exp(_gauss(z1 - 1.0, 0.6))
    return torch.logaddexp(_gauss(z2 - _w1(z1), 0.35), _gauss(z2 - _w1(z1) + w2, 0.35))


def _u4(z: Tensor) -> Tensor:
    z1, z2 = z[..., 0], z[..., 1]
    w3 = 3.0 * torch.sigmoid((z1 - 1.0) / 0.3)
    return torch.logaddexp(_gauss(z2 - _w1(z1), 0.4), _gauss(z2 - _w1(z1) + w3, 0.35))


_U = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def rezende(name: str) -> Box2D:
    r"""One of the four test energies of Rezende & Mohamed (2015, Table 1),
    :math:`\log\tilde p = -U(z)`, on the window :math:`[-4, 4]^2`:

    - U1: a ring of radius 2 cut into two arcs, :math:`\frac12(\frac{\|z\|-2}{0.4})^2 -
      \ln(e^{-\frac12(\frac{z_1-2}{0.6})^2} + e^{-\frac12(\frac{z_1+2}{0.6})^2})`;
    - U2: a sine wave, :math:`\frac12(\frac{z_2 - w_1(z)}{0.4})^2`, :math:`w_1 = \sin\frac{2\pi
      z_1}{4}`;
    - U3, U4: two branches of the sine wave split by :math:`w_2 = 3e^{-\frac12(\frac{z_1-1}
      {0.6})^2}` or :math:`w_3 = 3\sigma(\frac{z_1-1}{0.3})`.

    Example:
        >>> from nfkit.targets import rezende
        >>> target = rezende("U2")
        >>> target.sample(3, seed=0).shape, round(target.log_z, 2)
        (torch.Size([3, 2]), 2.11)

    """
    if name not in _U:
        raise ValueError(f"unknown potential {name!r}; choose one of {sorted(_U)}")
    return Box2D(_U[name], (-4.0, -4.0), (4.0, 4.0))


_MB_A = (-200.0, -100.0, -170.0, 15.0)
_MB_a = (-1.0, -1.0, -6.5, 0.7)
_MB_b = (0.0, 0.0, 11.0, 0.6)
_MB_c = (-10.0, -10.0, -6.5, 0.7)
_MB_X = (1.0, 0.0, -0.5, -1.0)
_MB_Y = (0.0, 0.5, 1.5, 1.0)


def muller_brown_energy(x: Tensor) -> Tensor:
    r"""The Müller–Brown potential :math:`V(x, y) = \sum_{k=1}^4 A_k \exp(a_k (x - x_k)^2 +
    b_k (x - x_k)(y - y_k) + c_k (y - y_k)^2)`, with its three minima near (−0.56, 1.44),
    (0.62, 0.03) and (−0.05, 0.47) at −146.7, −108.2 and −80.8.
    """
    px, py = x[..., 0], x[..., 1]
    total = torch.zeros_like(px)
    for amp, a, b, c, x0, y0 in zip(_MB_A, _MB_a, _MB_b, _MB_c, _MB_X, _MB_Y, strict=True):
        dx, dy = px - x0, py - y0
        total = total + amp * torch.exp(a * dx * dx + b * dx * dy + c * dy * dy)
    return total


class MullerBrown(Box2D):
    r"""The Boltzmann density :math:`\tilde p(x) = e^{-\beta V(x)}` of the Müller–Brown
    potential on the window :math:`[-1.7, 1.3] \times [-0.5, 2.2]` (outside it the potential
    flattens to 0, so a wall keeps the density proper). ``modes`` labels the basin of the
    nearest minimum: 0 at (−0.56, 1.44), 1 at (0.62, 0.03), 2 at (−0.05, 0.47).

    Args:
        beta: inverse temperature :math:`\beta` (per energy unit of :math:`V`).

    """

    minima = ((-0.558, 1.442), (0.623, 0.028), (-0.050, 0.467))

    def __init__(self, beta: float = 1.0 / 20.0) -> None:
        self.beta = beta
        super().__init__(
            lambda x: -beta * muller_brown_energy(x), (-1.7, -0.5), (1.3, 2.2), wall=0.05
        )

    def modes(self, x: Tensor) -> Tensor:
        minima = torch.tensor(self.minima, dtype=x.dtype, device=x.device)
        return torch.cdist(x.reshape(-1, 2), minima).argmin(-1).reshape(x.shape[:-1])
