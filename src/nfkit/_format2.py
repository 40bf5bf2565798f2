r"""Reading model files of format 2 and earlier (nfkit before ScaleMatvecLU took TFP's
permutation convention).

Those files stored, for ``ScaleMatvecLU`` and ``InvertibleConv1x1``, the permutation
:math:`\sigma` with :math:`W z = (L U z)_\sigma`; from format 3 on it is ``tf.linalg.lu``'s
:math:`\pi`, with :math:`W_\pi = L U`, which is :math:`\sigma`'s inverse. Both the
constructor argument and the weight (a buffer) are inverted on reading, so the files give the
numbers they gave.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["upgrade_args", "upgrade_state"]


def _is_lu(cls: type) -> bool:
    from nfkit.bijectors.affine import ScaleMatvecLU  # the file families import io lazily

    return isinstance(cls, type) and issubclass(cls, ScaleMatvecLU)


def upgrade_args(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """Format-2 constructor arguments of ``cls`` in format 3's convention."""
    if _is_lu(cls) and args.get("permutation") is not None:
        args = {**args, "permutation": torch.argsort(torch.as_tensor(args["permutation"]))}
    return args


def upgrade_state(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Format-2 weights of ``model`` in format 3's convention."""
    state = dict(state)
    for path, module in model.named_modules():
        key = f"{path}.permutation" if path else "permutation"
        if _is_lu(type(module)) and key in state:
            state[key] = torch.argsort(state[key])
    return state
