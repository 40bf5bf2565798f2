"""Atomic writes of safetensors files: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor

__all__ = ["atomic_save_file"]


def atomic_save_file(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write ``tensors`` and ``metadata`` to ``path`` so that a crash never leaves half a file.

    The data reach the disk (fsync) before the rename, and the rename replaces any old file in
    one step: readers see the old file or the new one, nothing in between.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
