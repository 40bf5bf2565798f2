"""Small tensor helpers shared by bijectors and distributions (no flow math here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["ArrayLike", "as_size", "register_tensor"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float] | float


def register_tensor(module: nn.Module, name: str, value: ArrayLike) -> torch.Tensor:
    """Store ``value`` on ``module`` as a trainable parameter or a fixed buffer.

    An ``nn.Parameter`` stays trainable; anything else (float, list, numpy array, tensor) becomes a
    floating buffer, so ``.to(device)``, ``.double()`` and ``state_dict()`` carry it along while the
    optimizer leaves it alone. Python numbers and lists take torch's default dtype (float32).
    """
    if isinstance(value, nn.Parameter):
        module.register_parameter(name, value)
        return value
    if isinstance(value, torch.Tensor):
        tensor = value.detach().clone()
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
    else:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got an array of dtype {array.dtype}")
        tensor = torch.as_tensor(array, dtype=torch.get_default_dtype())
    module.register_buffer(name, tensor)
    return tensor


def as_size(shape: int | Sequence[int] | torch.Size) -> torch.Size:
    """Turn ``10`` or ``(5, 3)`` into a ``torch.Size``, as ``sample(sample_shape)`` accepts both."""
    if isinstance(shape, int | np.integer):
        return torch.Size([int(shape)])
    return torch.Size(tuple(int(s) for s in shape))
