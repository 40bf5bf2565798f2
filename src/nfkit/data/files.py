r"""Read a table of numbers from a file or a built-in data set, and say exactly what is wrong.

Sources: CSV/TSV/TXT (with or without a header row), NPY, NPZ (one array), Parquet (through
pyarrow, when installed), or the name of a built-in data set (:data:`DATASETS`), generated
locally by scikit-learn — nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nfkit.data.text import column_position, read_text

__all__ = ["DATASETS", "Table", "read_table"]


@dataclass
class Table:
    """Rows of numbers with column names; ``image_shape`` is set for image data sets."""

    values: np.ndarray
    columns: list[str]
    source: str
    image_shape: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)  # what reading did (delimiter, dropped columns)

    def select(self, columns: Sequence[str]) -> Table:
        """These columns (names, or 0-based indices), in this order; an unknown one is an
        error naming the table's columns.
        """
        chosen = [column_position(self.columns, name, self.source) for name in columns]
        names = [self.columns[i] for i in chosen]
        return Table(self.values[:, chosen], names, self.source, None, list(self.notes))


def _skd() -> Any:
    """scikit-learn's data sets, imported on first use (it costs a second at start-up)."""
    from sklearn import datasets

    return datasets


def _moons() -> Table:
    x = _skd().make_moons(10_000, noise=0.05, random_state=0)[0]
    return Table(x, ["x", "y"], "moons")


def _circles() -> Table:
    x = _skd().make_circles(10_000, noise=0.05, factor=0.5, random_state=0)[0]
    return Table(x, ["x", "y"], "circles")


def _digits() -> Table:
    # Pixels are integers 0..16: uniform dequantization (x + u, u ~ U[0, 1); Theis et al. 2016)
    # turns them into a continuous density whose NLL bounds the discrete one.
    x = _skd().load_digits().data
    x = x + np.random.default_rng(0).uniform(size=x.shape)
    return Table(x, [f"pixel_{i}" for i in range(64)], "digits", image_shape=(8, 8))


def _iris() -> Table:
    bunch = _skd().load_iris()
    names = [n.removesuffix(" (cm)").replace(" ", "_") for n in bunch.feature_names]
    return Table(bunch.data, names, "iris")


DATASETS: dict[str, Callable[[], Table]] = {
    "moons": _moons,
    "circles": _circles,
    "digits": _digits,
    "iris": _iris,
}


def _read_array(path: Path) -> Table:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if len(keys) != 1:
                raise ValueError(f"{path} holds {len(keys)} arrays ({keys}); save one array")
            array = archive[keys[0]]
    else:
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path} is not a plain numeric .npy array ({err})") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path} holds {array.dtype} values, not numbers")
    image_shape = tuple(array.shape[1:]) if array.ndim > 2 else None
    array = array.reshape(len(array), -1) if array.ndim != 1 else array.reshape(-1, 1)
    columns = [f"x{i}" for i in range(array.shape[1])]
    return Table(array.astype(np.float64), columns, str(path), image_shape)


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            f"reading {path} needs pyarrow: pip install pyarrow (or convert it to CSV)"
        ) from None
    table = pq.read_table(path)
    columns = list(table.column_names)
    arrays = []
    for name in columns:
        column = table.column(name).to_numpy(zero_copy_only=False)
        if column.dtype.kind not in "biuf":
            raise ValueError(f"{path}, column {name!r} holds {column.dtype} values, not numbers")
        arrays.append(column.astype(np.float64))
    return Table(np.stack(arrays, axis=1), columns, str(path))


def _check(table: Table) -> Table:
    values = table.values
    if values.shape[0] == 0:
        raise ValueError(f"{table.source} has no rows")
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        row, col = int(rows[0]), int(np.flatnonzero(bad[rows[0]])[0])
        raise ValueError(
            f"{table.source} has NaN, inf or empty cells in {len(rows)} row"
            f"{'s' if len(rows) != 1 else ''}; the first is data row {row + 1} (column "
            f"{table.columns[col]!r}, value {values[row, col]}). Drop or impute them"
        )
    return table


def read_table(
    source: str | os.PathLike,
    columns: Sequence[str] | None = None,
    delimiter: str | None = None,
) -> Table:
    """Read ``source`` (a file, or a name in :data:`DATASETS`) as a checked table of floats.

    Args:
        source: path to a .csv/.tsv/.txt, .npy, .npz or .parquet file, or a data-set name.
        columns: keep only these columns (names from the header, or 0-based indices); in a
            text file only these are parsed, and without them text columns are ignored.
        delimiter: a text file's delimiter (``","``, ``";"``, a tab, ``" "`` for
            whitespace); sniffed when ``None`` (see :mod:`nfkit.data.text`).

    Raises:
        FileNotFoundError: neither a file nor a built-in data set.
        ValueError: empty file, header only, a non-numeric cell, ragged rows, NaN/inf cells
            (count and first row), an unknown column; the message names file, line and column.

    Example:
        >>> table = read_table("iris", columns=["petal_length", "petal_width"])
        >>> table.values.shape, table.columns
        ((150, 2), ['petal_length', 'petal_width'])

    """
    name = str(source)
    if name in DATASETS and not Path(name).exists():
        table = DATASETS[name]()
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"no such file: {path} (built-in data sets: {', '.join(DATASETS)})"
            )
        suffix = path.suffix.lower()
        if suffix in (".npy", ".npz"):
            table = _read_array(path)
        elif suffix in (".parquet", ".pq"):
            table = _read_parquet(path)
        else:
            values, names, notes = read_text(path, columns or None, delimiter)
            return _check(Table(values, names, str(path), notes=notes))
    if columns:
        table = table.select(columns)
    return _check(table)
