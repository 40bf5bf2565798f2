"""Mini-batches for ``fit``: rows of a tensor in memory, of a memory-mapped array on disk, of a
user's DataLoader, or empty steps for objectives that draw their own samples; sharded across
the processes of a distributed run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Batches", "MappedRows", "unpack"]


class MappedRows:
    """Rows of a memory-mapped array, read a batch at a time and never loaded whole.

    Args:
        array: a ``numpy.memmap`` (or any array) of shape ``(N, *event_shape)``.
        index: the rows of ``array`` that belong to this set (``None``: all of them).
        dtype, device: what each batch becomes.

    """

    def __init__(
        self,
        array: np.ndarray,
        index: np.ndarray | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.array, self.dtype, self.device = array, dtype, device
        self.index = index

    @property
    def shape(self) -> tuple[int, ...]:
        rows = self.array.shape[0] if self.index is None else len(self.index)
        return (rows, *self.array.shape[1:])

    def rows(self, positions: Tensor) -> Tensor:
        """The rows at ``positions`` (into this set), read in file order for locality."""
        wanted = positions.cpu().numpy()
        wanted = np.sort(wanted if self.index is None else self.index[wanted])
        return torch.from_numpy(np.asarray(self.array[wanted])).to(self.device, self.dtype)


Source = Tensor | MappedRows | torch.utils.data.DataLoader | int


class Batches:
    """One epoch's mini-batches.

    Tensors and mapped rows are shuffled by one index permutation per epoch (no copy of the
    data set); with ``world > 1`` every process draws the same permutation and keeps its
    ``rank``-th share of each global batch of ``batch_size`` rows, so the processes together
    see exactly the batches of a single process. An ``int`` source yields that many
    ``(None, None)`` steps.
    """

    def __init__(
        self,
        data: Source,
        context: Tensor | None,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.data, self.context = data, context
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        if isinstance(self.data, int):
            return self.data
        if isinstance(self.data, Tensor | MappedRows):
            return math.ceil(self.data.shape[0] / self.batch_size)
        return len(self.data)

    def __iter__(self) -> Iterator[tuple[Tensor | None, Tensor | None]]:
        if isinstance(self.data, int):  # no data: the objective draws its own samples
            yield from ((None, None) for _ in range(self.data))
            return
        if not isinstance(self.data, Tensor | MappedRows):
            yield from (unpack(batch) for batch in self.data)
            return
        n = self.data.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if isinstance(self.data, Tensor):
            order = order.to(self.data.device)  # one copy per epoch, not one per batch
        for idx in order.split(self.batch_size):
            idx = idx[self.rank :: self.world]
            if isinstance(self.data, MappedRows):
                yield self.data.rows(idx), None if self.context is None else self.context[idx]
                continue
            yield self.data[idx], None if self.context is None else self.context[idx]


def unpack(batch: Any) -> tuple[Tensor, Tensor | None]:
    """A DataLoader's batch as ``(rows, context or None)``."""
    if isinstance(batch, list | tuple):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


def check_mapped(array: np.ndarray, event_shape: torch.Size, name: str = "data") -> None:
    """Shape, dtype and finiteness checks of a mapped array, read a chunk at a time."""
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if tuple(array.shape[1:]) != tuple(event_shape) or array.ndim != 1 + len(event_shape):
        raise ValueError(
            f"{name} has shape {tuple(array.shape)} but the distribution has event shape "
            f"{tuple(event_shape)}: expected (N, {', '.join(map(str, event_shape))})"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(array.shape)} has no rows")
    chunk = max(1, 2**20 // max(1, math.prod(array.shape[1:])))
    for start in range(0, array.shape[0], chunk):
        part = np.asarray(array[start : start + chunk]).reshape(-1, math.prod(array.shape[1:]))
        bad = ~np.isfinite(part).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad) + start
            raise ValueError(
                f"{name} has NaN or inf values in row {int(rows[0])} (and {len(rows) - 1} more "
                f"in rows {start}-{start + len(part) - 1}); drop or impute those rows"
            )
