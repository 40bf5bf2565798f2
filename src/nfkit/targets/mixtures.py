r"""The 40-mode Gaussian mixture of Flow Annealed Importance Sampling Bootstrap (Midgley et al.
2023, ICLR, Sec. 5.1): 40 equally weighted 2-D Gaussians with means uniform on
:math:`[-40, 40]^2` and a common isotropic scale :math:`\operatorname{softplus}(1) \approx 1.313`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nfkit.targets.base import Target, _generator

__all__ = ["GaussianMixture"]


class GaussianMixture(Target):
    r"""Equal-weight isotropic Gaussian mixture, normalized (:math:`\log Z = 0`):

    .. math:: p(x) = \frac1K \sum_{k=1}^K \mathcal N(x;\, \mu_k,\, s^2 I).

    The default is FAB's GMM-40 recipe; the means are drawn from ``seed`` with torch's
    generator, so they are this library's draw of that recipe, not the paper's exact means.
    ``modes`` labels each point with its nearest mean.

    Args:
        components: :math:`K`.
        dim: :math:`D`.
        spread: means uniform on :math:`[-\text{spread}, \text{spread}]^D`.
        scale: :math:`s`.
        seed: seed of the means.

    Example:
        >>> from nfkit.targets import GaussianMixture
        >>> target = GaussianMixture()
        >>> hit = target.modes(target.sample(4000, seed=1)).unique().numel()
        >>> target.means.shape, target.log_z, hit
        (torch.Size([40, 2]), 0.0, 40)

    """

    def __init__(
        self,
        components: int = 40,
        dim: int = 2,
        spread: float = 40.0,
        scale: float = math.log1p(math.e),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.scale, self.log_z = dim, scale, 0.0
        means = (torch.rand((components, dim), generator=_generator(seed)) - 0.5) * 2 * spread
        self.means: Tensor
        self.register_buffer("means", means.double())

    def log_prob(self, x: Tensor) -> Tensor:
        self._check(x)
        means = self.means.to(x)
        sq = (x.unsqueeze(-2) - means).square().sum(-1)
        k, d = means.shape
        norm = math.log(k) + d * math.log(self.scale * math.sqrt(2 * math.pi))
        return torch.logsumexp(-0.5 * sq / self.scale**2, dim=-1) - norm

    def sample(self, n: int, *, seed: int | None = None) -> Tensor:
        g = _generator(seed)
        means = self.means.cpu()
        pick = torch.randint(0, means.shape[0], (n,), generator=g)
        noise = torch.randn((n, self.dim), generator=g, dtype=torch.float64)
        return (means[pick] + self.scale * noise).float()

    def modes(self, x: Tensor) -> Tensor:
        return torch.cdist(x.to(self.means), self.means).argmin(-1)
