"""Data sets larger than memory: rows of an NPY file, or of a Parquet file converted once to
one, memory-mapped so that ``nfkit.fit`` reads a batch at a time and never loads them whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["open_rows"]


def _parquet_to_npy(path: Path, out: Path, columns: list[str] | None) -> None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    source = pq.ParquetFile(path)
    names = columns or list(source.schema_arrow.names)
    n = source.metadata.num_rows
    tmp = out.with_name(out.name + ".partial")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, len(names)))
    start = 0
    for batch in source.iter_batches(batch_size=65_536, columns=names):
        block = np.stack(
            [batch.column(i).to_numpy(zero_copy_only=False) for i in range(len(names))], 1
        )
        if block.dtype.kind not in "biuf":
            raise ValueError(f"{path} holds non-numeric values ({block.dtype}) in {names}")
        array[start : start + len(block)] = block
        start += len(block)
    array.flush()
    del array
    os.replace(tmp, out)  # atomic: a half-written cache is never mistaken for a whole one


def open_rows(
    path: str | os.PathLike,
    *,
    columns: list[str] | None = None,
    cache: str | os.PathLike | None = None,
) -> np.memmap:
    """Memory-map the rows of a ``.npy`` or ``.parquet`` file for :func:`nfkit.fit`.

    A ``.npy`` file is mapped as it is (``np.load(path, mmap_mode="r")``). A Parquet file is
    converted once, a row group at a time, to a float32 ``.npy`` next to it (or at ``cache``),
    which is then mapped; the conversion is reused while it is newer than the source.

    Args:
        path: the file.
        columns: Parquet columns to keep (default: all).
        cache: where the converted NPY goes (default: ``path`` with ``.npy`` appended).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from nfkit.data import open_rows
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "rows.npy"
        >>> np.save(file, np.zeros((1000, 3), np.float32))
        >>> rows = open_rows(file); type(rows).__name__, rows.shape
        ('memmap', (1000, 3))

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if columns is not None:
            raise ValueError("columns= applies to Parquet files; slice an NPY file's columns")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if suffix != ".parquet":
        raise ValueError(f"open_rows reads .npy and .parquet files, not {path.name}")
    out = Path(cache) if cache is not None else path.with_name(path.name + ".npy")
    if not out.exists() or out.stat().st_mtime < path.stat().st_mtime:
        _parquet_to_npy(path, out, columns)
    return np.load(out, mmap_mode="r", allow_pickle=False)
