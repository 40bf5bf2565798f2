r"""Delimited text tables as people export them: the delimiter sniffed (comma, semicolon, tab or
whitespace) or given, a UTF-8 byte-order mark stripped, decimal commas read, a spreadsheet's
unnamed index column dropped, text columns ignored unless chosen, and only the chosen columns
parsed. Every surprise is either a note (what was done) or an error (what is wrong, where).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["DELIMITERS", "column_position", "read_text"]

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", " ": "whitespace"}


def _cells(lines: list[str], delimiter: str) -> list[list[str]]:
    if delimiter == " ":
        return [line.split() for line in lines]
    return [[c.strip() for c in row] for row in csv.reader(lines, delimiter=delimiter)]


def _number(cell: str) -> float | None:
    """The cell's value (a decimal comma read as a point), ``nan`` for an empty cell, or
    ``None`` when it is not a number.
    """
    if not cell:
        return math.nan
    for text in (cell, cell.replace(",", ".")):
        try:
            return float(text)
        except ValueError:
            continue
    return None


def sniff(lines: list[str]) -> str:
    """Of the delimiters in the first line (whitespace: any inside it), the one that splits
    the first lines into the same number of cells, with the most numbers among them, then the
    most cells (ties: comma, semicolon, tab, whitespace); comma when none splits anything.
    """
    sample = lines[:50]
    best, best_score = ",", (False, -1.0, 1)
    first = lines[0].strip()
    present = [d for d in DELIMITERS if d in first or (d == " " and len(first.split()) > 1)]
    for delimiter in present:
        rows = _cells(sample, delimiter)
        widths = {len(r) for r in rows}
        cells = [c for r in rows[1:] or rows for c in r]
        numeric = sum(_number(c) is not None for c in cells) / max(len(cells), 1)
        score = (len(widths) == 1, numeric, max(widths))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def read_text(
    path: Path, columns: Sequence[str] | None = None, delimiter: str | None = None
) -> tuple[np.ndarray, list[str], list[str]]:
    """Read a delimited text file into ``(values, column names, notes)``.

    Args:
        path: the file.
        columns: names (or 0-based indices) to read; only these are parsed. ``None``: every
            numeric column (columns of text are ignored, with a note).
        delimiter: one of :data:`DELIMITERS` (``" "``: any run of whitespace), or ``None`` to
            sniff it.

    Raises:
        ValueError: an empty file, a header without rows, rows of the wrong length, a
            repeated column name, a chosen column of text, a non-numeric cell (file, line,
            column), or a ``delimiter`` that does not split the file.

    """
    text = path.read_text(encoding="utf-8-sig")  # a byte-order mark goes
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty")
    sniffed = sniff(lines)
    if delimiter is None:
        delimiter = sniffed
    elif delimiter not in DELIMITERS:
        raise ValueError(f"--delimiter must be one of {', '.join(map(repr, DELIMITERS))}")
    elif len(_cells(lines[:1], delimiter)[0]) == 1 and len(_cells(lines[:1], sniffed)[0]) > 1:
        raise ValueError(
            f"{path}: with the {DELIMITERS[delimiter]} delimiter each line is one cell; the file "
            f"looks {DELIMITERS[sniffed]}-separated (give that delimiter, or none to sniff it)"
        )
    rows = _cells(lines, delimiter)
    line_numbers = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip()]
    first = rows[0]
    header = not all(_number(c) is not None for c in first if c)
    names = list(first) if header else [f"x{i}" for i in range(len(first))]
    body = (
        list(zip(line_numbers[1:], rows[1:], strict=True))
        if header
        else list(zip(line_numbers, rows, strict=True))
    )
    if not body:
        raise ValueError(f"{path} has a header row ({', '.join(names)}) but no data rows")
    for line, row in body:
        if len(row) != len(names):
            raise ValueError(
                f"{path}, line {line}: {len(row)} cells, but the "
                f"{'header' if header else f'first row (line {line_numbers[0]})'} has "
                f"{len(names)} ({DELIMITERS[delimiter]}-separated)"
            )
    notes = []
    if delimiter != ",":
        notes.append(f"read {path.name} as {DELIMITERS[delimiter]}-separated")
    keep = list(range(len(names)))
    if header and names[0] in ("", "Unnamed: 0"):
        keep = keep[1:]
        notes.append(f"dropped the unnamed first column of {path.name} (an index)")
    seen: dict[str, int] = {}
    for j in keep:
        if names[j] in seen:
            raise ValueError(
                f"{path}: column {names[j]!r} appears twice (columns {seen[names[j]]} and {j}, "
                "0-based): rename one"
            )
        seen[names[j]] = j
    chosen = keep if columns is None else [column_position(names, c, path) for c in columns]
    values, out_names = [], []
    for j in chosen:
        parsed = [_number(row[j]) for _, row in body]
        if all(v is None or math.isnan(v) for v in parsed) and any(v is None for v in parsed):
            example = next(row[j] for _, row in body if _number(row[j]) is None)
            if columns is None:
                notes.append(f"ignored the text column {names[j]!r} (choose columns to model)")
                continue
            raise ValueError(
                f"{path}: column {names[j]!r} holds text ({example!r}), not numbers: choose "
                "numeric columns"
            )
        for (line, row), v in zip(body, parsed, strict=True):
            if v is None:
                raise ValueError(
                    f"{path}, line {line}, column {names[j]!r}: {row[j]!r} is not a number"
                )
        if any("," in row[j] for _, row in body):
            notes.append(f"read decimal commas in column {names[j]!r} (1,5 as 1.5)")
        values.append(parsed)
        out_names.append(names[j])
    if not values:
        raise ValueError(f"{path} has no numeric columns")
    return np.asarray(values, dtype=np.float64).T, out_names, notes


def column_position(names: Sequence[str], column: str, where: object) -> int:
    """The position of ``column`` (a name, or a 0-based index) among ``names``; an error
    naming ``where`` (a file, a model) and its columns when there is none.
    """
    if column in names:
        return list(names).index(column)
    if column.isdigit() and int(column) < len(names):
        return int(column)
    raise ValueError(
        f"no column {column!r} in {where}; it has {', '.join(names)} (names, or 0-based indices)"
    )
