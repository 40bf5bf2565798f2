r"""Independent distributions on blocks of columns: a base for flows whose columns are of
different kinds (real values and angles, as in internal coordinates of a molecule).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nfkit.distributions.base import Distribution

__all__ = ["Blockwise"]


class Blockwise(Distribution):
    r"""The product :math:`p(x) = \prod_k p_k(x_{C_k})` of vector distributions on disjoint
    column sets :math:`C_k` that together cover :math:`0, \dots, D-1` (TFP's
    ``Blockwise``, with the blocks' columns named instead of contiguous).

    Args:
        distributions: the :math:`p_k`, each with event shape ``(|C_k|,)`` and no batch shape.
        columns: the :math:`C_k`, one list of column indices per distribution.

    Example:
        >>> import math, torch, nfkit.distributions as nfd
        >>> angles = nfd.Independent(nfd.Uniform(-math.pi * torch.ones(1), math.pi), 1)
        >>> normal = nfd.MultivariateNormalDiag(loc=[0.0, 0.0])
        >>> base = nfd.Blockwise([normal, angles], [[0, 2], [1]])  # angle in column 1
        >>> base.sample(4).shape, round(float(base.log_prob(torch.zeros(3))), 4)  # -2 log 2 pi
        (torch.Size([4, 3]), -3.6758)

    """

    def __init__(
        self, distributions: Sequence[Distribution], columns: Sequence[Sequence[int]]
    ) -> None:
        super().__init__()
        if len(distributions) != len(columns) or not distributions:
            raise ValueError("Blockwise needs one list of columns per distribution")
        blocks = [[int(c) for c in block] for block in columns]
        flat = [c for block in blocks for c in block]
        if sorted(flat) != list(range(len(flat))):
            raise ValueError(f"the columns must cover 0..{len(flat) - 1} once each, got {blocks}")
        for d, block in zip(distributions, blocks, strict=True):
            if tuple(d.event_shape) != (len(block),) or len(d.batch_shape):
                raise ValueError(
                    f"a block of {len(block)} columns needs a distribution with event shape "
                    f"[{len(block)}] and no batch shape, got {d}"
                )
        self.parts = nn.ModuleList(distributions)
        self.blocks = blocks
        self.register_buffer("_order", torch.tensor(flat))
        self.register_buffer("_unorder", torch.argsort(torch.tensor(flat)))
        self._event_shape = torch.Size([len(flat)])

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        draws = [part._rsample(shape, context) for part in self.parts]
        return torch.cat(draws, -1)[..., self._unorder]

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        total = 0.0
        for part, block in zip(self.parts, self.blocks, strict=True):
            total = total + part._log_prob(value[..., block], context)
        return total  # type: ignore[return-value]
