r"""Where a training run's rows come from: arrays, tensors, memory-mapped rows, a user's
DataLoader, or nothing (an objective that draws its own samples); the one validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nfkit.data.validate import as_data_tensor, check_finite_rows
from nfkit.distributions.base import Distribution
from nfkit.train.batches import MappedRows, Source, check_mapped, unpack

__all__ = ["DataSource", "holdout", "training_data", "validation_rows"]


@dataclass
class DataSource:
    """The training rows of a run and its first batch (which builds lazy networks).

    Attributes:
        rows: a tensor, mapped rows, a DataLoader, or an ``int`` number of empty steps.
        context: conditioning rows aligned with ``rows`` (tensor rows only), or ``None``.
        first: the first batch ``(rows, context)``; ``(None, None)`` without data.

    """

    rows: Source
    context: Tensor | None
    first: tuple[Tensor | None, Tensor | None]


def checked_context(context: Any, n: int, dist: Distribution, name: str) -> Tensor | None:
    """``context`` as a ``(n, C)`` tensor on the distribution's device and dtype."""
    if context is None:
        return None
    c = torch.as_tensor(np.asarray(context) if not isinstance(context, Tensor) else context)
    c = c.to(device=dist.device, dtype=dist.dtype)
    if c.ndim < 2 or c.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n}, C), one row per data row; got {tuple(c.shape)}"
        )
    check_finite_rows(c, name)
    return c


def training_data(
    distribution: Distribution,
    data: Any,
    context: Any,
    batch_size: int,
    steps_per_epoch: int | None,
) -> DataSource:
    """Check ``data`` (and ``context``) and say how ``fit`` reads it.

    ``data=None`` needs ``steps_per_epoch``: the objective then draws its own samples.
    """
    device = distribution.device
    if data is None:
        if not steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(
                "data=None needs an objective that draws its own samples and steps_per_epoch "
                "(see nfkit.fit_energy); maximum likelihood needs data"
            )
        return DataSource(steps_per_epoch, None, (None, None))
    if isinstance(data, np.memmap):
        if context is not None:
            raise ValueError("context= is not supported with memory-mapped data")
        check_mapped(data, distribution.event_shape)
        rows = MappedRows(data, None, distribution.dtype, device)
        return DataSource(rows, None, (rows.rows(torch.arange(min(batch_size, len(data)))), None))
    if isinstance(data, torch.utils.data.DataLoader):
        x, c = unpack(next(iter(data)))
        return DataSource(data, None, (x.to(device), None if c is None else c.to(device)))
    x = as_data_tensor(
        data, device=device, event_shape=distribution.event_shape, dtype=distribution.dtype
    )
    c = checked_context(context, x.shape[0], distribution, "context")
    return DataSource(x, c, (x[:batch_size], None if c is None else c[:batch_size]))


def validation_rows(
    distribution: Distribution, validation_data: Any
) -> tuple[Tensor, Tensor | None]:
    """Held-out rows (or ``(rows, context)``) as tensors on the distribution's device."""
    raw, raw_c = validation_data if isinstance(validation_data, tuple) else (validation_data, None)
    x = as_data_tensor(
        raw,
        device=distribution.device,
        name="validation_data",
        event_shape=distribution.event_shape,
        dtype=distribution.dtype,
    )
    return x, checked_context(raw_c, x.shape[0], distribution, "validation context")


def holdout(n: int, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The one validation split: ``(train_index, validation_index)`` of ``n`` rows, the
    validation share being ``round(fraction * n)`` rows drawn at random by ``generator``.

    Example:
        >>> train, val = holdout(10, 0.2, torch.Generator().manual_seed(0))
        >>> len(train), len(val), sorted((*train.tolist(), *val.tolist())) == list(range(10))
        (8, 2, True)

    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must lie in [0, 1), got {fraction}")
    n_val = round(fraction * n)
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"validation_split={fraction} of {n} rows leaves an empty train or validation set"
        )
    order = torch.randperm(n, generator=generator)
    return order[n_val:], order[:n_val]


def holdout_rows(
    rows: np.ndarray, context: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """:func:`holdout` on arrays, with a generator seeded by ``seed`` (the same split every
    time): ``(train_rows, train_context, validation)``, where ``validation`` is what
    :func:`nfkit.fit`'s ``validation_data`` takes (rows, or ``(rows, context)``).

    Example:
        >>> rows, _, val = holdout_rows(np.arange(10.0)[:, None], None, 0.2, seed=0)
        >>> rows.shape, val.shape
        ((8, 1), (2, 1))

    """
    train, val = (
        i.numpy() for i in holdout(len(rows), fraction, torch.Generator().manual_seed(seed))
    )
    if context is None:
        return rows[train], None, rows[val]
    return rows[train], context[train], (rows[val], context[val])


def split_source(
    source: DataSource, fraction: float, generator: torch.Generator
) -> tuple[DataSource, tuple[Tensor, Tensor | None]]:
    """Hold out a share of ``source``'s rows (tensors or mapped rows) for validation."""
    rows, c = source.rows, source.context
    if not isinstance(rows, Tensor | MappedRows):
        raise ValueError("validation_split needs array data; pass validation_data instead")
    train, val = holdout(rows.shape[0], fraction, generator)
    if isinstance(rows, MappedRows):  # the held-out rows are loaded; the rest stay on disk
        kept = train.numpy() if rows.index is None else rows.index[train.numpy()]
        mapped = MappedRows(rows.array, kept, rows.dtype, rows.device)
        return DataSource(mapped, None, source.first), (rows.rows(val), None)
    train, val = train.to(rows.device), val.to(rows.device)
    ct, cv = (None, None) if c is None else (c[train], c[val])
    return DataSource(rows[train], ct, source.first), (rows[val], cv)
