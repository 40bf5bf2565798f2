r"""Per-column standardization, kept inside the model as an affine bijector.

The flow learns :math:`p_Y` of :math:`y = (x - m) / s`; the saved model is
:math:`x = s \odot y + m` applied to it, so its ``log_prob`` and samples are in the data's own
units and include the Jacobian term :math:`-\sum_j \log s_j`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nfkit.bijectors import Chain, Scale, Shift

__all__ = ["Standardization"]


@dataclass
class Standardization:
    """Column means and standard deviations of the training data."""

    mean: list[float]
    std: list[float]

    @classmethod
    def of(cls, values: np.ndarray, columns: Sequence[str]) -> Standardization:
        """Measure ``values`` (rows x columns); constant columns are an error, named."""
        if values.shape[0] < 2:
            raise ValueError(f"need at least 2 rows to learn a density, got {values.shape[0]}")
        std = values.std(axis=0)
        constant = [name for name, s in zip(columns, std, strict=True) if not s > 0]
        if constant:
            many = len(constant) > 1
            raise ValueError(
                f"column{'s' if many else ''} {', '.join(map(repr, constant))} "
                f"never change{'' if many else 's'} (zero variance): a density over "
                f"{'them' if many else 'it'} is degenerate. Drop {'them' if many else 'it'} "
                "(choose columns) or add measurement noise"
            )
        return cls(values.mean(axis=0).tolist(), std.tolist())

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Standardized values :math:`(x - m) / s`."""
        return (values - np.asarray(self.mean)) / np.asarray(self.std)

    def bijector(self) -> Chain:
        r"""The map from standardized to data units, :math:`x = s \odot y + m`."""
        return Chain([Shift(self.mean), Scale(self.std)])
