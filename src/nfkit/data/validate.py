"""Turn user data into a checked tensor, or say clearly what is wrong with it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["as_data_tensor", "check_finite_rows"]


def _describe_rows(rows: Tensor) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:5])
    more = f" and {rows.numel() - 5} more" if rows.numel() > 5 else ""
    return f"{rows.numel()} row{'s' if rows.numel() != 1 else ''} (index {shown}{more})"


def as_data_tensor(
    data: Any,
    *,
    event_shape: torch.Size,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    name: str = "data",
) -> Tensor:
    """Check ``data`` against a distribution's event shape and return it as a tensor.

    Raises:
        TypeError: data that is not numeric (strings, objects, complex numbers).
        ValueError: no rows, the wrong number of dims or features, or NaN/inf values; the message
            names the problem, the shapes, and the offending rows.

    """
    if data is None:
        raise ValueError(f"{name} is None")
    if isinstance(data, Tensor):
        if data.is_complex():
            raise TypeError(f"{name} is complex ({data.dtype}); a flow models real numbers")
        tensor = data.detach()
    else:
        array = np.asarray(data)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"{name} must be numeric, got dtype {array.dtype}"
                + ("; convert text columns to numbers first" if array.dtype.kind in "OUS" else "")
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    event = tuple(event_shape)
    want_ndim = 1 + len(event)
    shape = tuple(tensor.shape)
    if tensor.ndim != want_ndim:
        hint = ""
        if tensor.ndim == 1 and len(event) == 1:
            hint = (
                "; for one feature use data.reshape(-1, 1)"
                if event == (1,)
                else f"; a single point must still be a row: data.reshape(1, {event[0]})"
            )
        raise ValueError(
            f"{name} must have shape (N, {', '.join(map(str, event))}) "
            f"({want_ndim}-D: rows of {event if event else 'scalars'}), got a "
            f"{tensor.ndim}-D array of shape {shape}{hint}"
        )
    if shape[1:] != event:
        features = f"{shape[1]} columns" if len(event) == 1 else f"rows of shape {shape[1:]}"
        raise ValueError(
            f"{name} has {features} but the distribution has event shape {event}: "
            f"expected shape (N, {', '.join(map(str, event))}), got {shape}"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {shape} has no rows")
    tensor = tensor.to(device=device, dtype=dtype)
    check_finite_rows(tensor, name)
    return tensor


def check_finite_rows(tensor: Tensor, name: str) -> None:
    """Raise a ``ValueError`` naming the rows (first dim) of ``tensor`` with NaN or inf."""
    finite = torch.isfinite(tensor).reshape(tensor.shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten().cpu()
        raise ValueError(
            f"{name} has NaN or inf values in {_describe_rows(rows)}; drop or impute those rows"
        )
