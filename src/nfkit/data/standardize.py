r"""Per-column standardization (and an optional log scale), kept inside the model as a bijector.

The flow learns :math:`p_Y` of :math:`y = (u - m) / s`, with :math:`u_j = \log x_j` for the
log-scale columns :math:`L` and :math:`u_j = x_j` for the others; the saved model is
:math:`x = \exp_L(s \odot y + m)` applied to it, so its ``log_prob`` and samples are in the
data's own units and include the Jacobian term
:math:`-\sum_j \log s_j - \sum_{j \in L} \log x_j`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nfkit.bijectors import Bijector, Chain, Exp, OnColumns, Scale, Shift

__all__ = ["Standardization", "log_scaled"]


def log_scaled(values: np.ndarray, log_columns: Sequence[int]) -> np.ndarray:
    """A float64 copy of ``values`` with the columns in ``log_columns`` replaced by their log."""
    units = np.array(values, dtype=np.float64)
    units[:, list(log_columns)] = np.log(units[:, list(log_columns)])
    return units


@dataclass
class Standardization:
    """Column means and standard deviations of the training data (of the log of the columns in
    ``log_columns``).
    """

    mean: list[float]
    std: list[float]
    log_columns: list[int] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        values: np.ndarray,
        columns: Sequence[str],
        log_columns: Sequence[int] = (),
        *,
        constant_ok: bool = False,
        scale: bool = True,
    ) -> Standardization:
        """Measure ``values`` (rows x columns). A constant column is an error, named, unless
        ``constant_ok`` (it then keeps unit scale, as scikit-learn's ``StandardScaler`` does);
        a log-scale column must be positive. ``scale=False``: only the log scale (mean 0,
        standard deviation 1).
        """
        if values.shape[0] < 2:
            raise ValueError(f"need at least 2 rows to learn a density, got {values.shape[0]}")
        logs = sorted({int(j) for j in log_columns})
        for j in logs:
            low = float(values[:, j].min())
            if not low > 0:
                raise ValueError(
                    f"column {columns[j]!r} has values <= 0 (the smallest is {low:g}): its log "
                    "scale is undefined; model it without the log scale"
                )
        units = log_scaled(values, logs)
        if not scale:
            return cls([0.0] * values.shape[1], [1.0] * values.shape[1], logs)
        std = units.std(axis=0)
        constant = [name for name, s in zip(columns, std, strict=True) if not s > 0]
        if constant and constant_ok:
            std[~(std > 0)] = 1.0
        elif constant:
            many = len(constant) > 1
            raise ValueError(
                f"column{'s' if many else ''} {', '.join(map(repr, constant))} "
                f"never change{'' if many else 's'} (zero variance): a density over "
                f"{'them' if many else 'it'} is degenerate. Drop {'them' if many else 'it'} "
                "(choose columns) or add measurement noise"
            )
        return cls(units.mean(axis=0).tolist(), std.tolist(), logs)

    def apply(self, values: np.ndarray) -> np.ndarray:
        r"""Standardized values :math:`(u - m) / s`."""
        units = log_scaled(values, self.log_columns)
        return (units - np.asarray(self.mean)) / np.asarray(self.std)

    def log_det(self, standardized: np.ndarray) -> np.ndarray:
        r"""Per row, the nats the map to data units subtracts from :math:`\log p_Y`:
        :math:`\sum_j \log s_j + \sum_{j \in L} \log x_j` (``standardized``: rows of :math:`y`).
        """
        logs = self.log_columns
        log_x = standardized[:, logs] * np.asarray(self.std)[logs] + np.asarray(self.mean)[logs]
        return float(np.log(self.std).sum()) + log_x.sum(axis=1)

    def bijector(self) -> Bijector:
        r"""The map from standardized to data units, :math:`x = \exp_L(s \odot y + m)`."""
        affine = [Shift(self.mean), Scale(self.std)]
        if not self.log_columns:
            return Chain(affine)
        return Chain([OnColumns(Exp(), self.log_columns), *affine])
