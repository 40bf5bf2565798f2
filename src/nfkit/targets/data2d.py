r"""The 2-D data densities of the benchmarks (``nfkit.data.TOY2D``) as sampling targets: their
exact log-density (a curve blurred by Gaussian noise, or a Gaussian mixture) is known and
normalized, so :math:`\log Z = 0`, and exact samples come from their data generators.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfkit.data.toy2d import TOY2D
from nfkit.targets.base import Target

__all__ = ["DATA_TARGETS", "DataDensity"]

DATA_TARGETS = ("moons", "8gaussians", "2spirals", "rings")


class DataDensity(Target):
    """A normalized 2-D data density by name: ``"moons"``, ``"8gaussians"``, ``"2spirals"`` or
    ``"rings"`` (those whose log-density is finite everywhere, as reverse-KL training needs).

    ``"moons"`` is scikit-learn's ``make_moons(noise=0.05)`` centred at the origin, as in
    ``benchmarks/density2d.py``; ``modes`` labels its two arcs (0 outer, 1 inner) by the
    nearer arc.

    Example:
        >>> import torch
        >>> from nfkit.targets import DataDensity
        >>> target = DataDensity("moons")
        >>> x = torch.zeros(3, 2, requires_grad=True)
        >>> target.log_prob(x).sum().backward(); x.grad.shape
        torch.Size([3, 2])

    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in DATA_TARGETS:
            raise ValueError(f"unknown data density {name!r}; choose one of {DATA_TARGETS}")
        self.name, self.dim, self.log_z = name, 2, 0.0
        self._toy = TOY2D[name]

    def log_prob(self, x: Tensor) -> Tensor:
        self._check(x)
        assert self._toy.log_prob is not None
        flat = x.reshape(-1, 2)
        return self._toy.log_prob(flat).to(x.dtype).reshape(x.shape[:-1])

    def sample(self, n: int, *, seed: int | None = None) -> Tensor:
        seed = int(torch.randint(0, 2**31, ()).item()) if seed is None else seed
        return torch.as_tensor(self._toy.sample(n, seed), dtype=torch.float32)

    def arc_distances(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Distances of points ``(..., 2)`` to the outer and the inner arc of the moons."""
        if self.name != "moons":
            raise NotImplementedError(f"arcs exist for 'moons' only, not {self.name!r}")
        t = torch.linspace(0, torch.pi, 400, dtype=torch.float64)
        centre = torch.tensor([0.5, 0.25], dtype=torch.float64)  # as TOY2D's centred moons
        outer = torch.stack([t.cos(), t.sin()], -1) - centre
        inner = torch.stack([1 - t.cos(), 0.5 - t.sin()], -1) - centre
        flat = x.reshape(-1, 2).to(torch.float64).cpu()
        d_outer = torch.cdist(flat, outer).min(-1).values.reshape(x.shape[:-1])
        d_inner = torch.cdist(flat, inner).min(-1).values.reshape(x.shape[:-1])
        return d_outer.to(x.device), d_inner.to(x.device)

    def modes(self, x: Tensor) -> Tensor:
        if self.name != "moons":
            raise NotImplementedError(f"modes are labelled for 'moons' only, not {self.name!r}")
        d_outer, d_inner = self.arc_distances(x)
        return (d_inner < d_outer).long()
