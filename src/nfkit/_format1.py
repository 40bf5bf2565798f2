"""Reading model files of format 1 (nfkit before the one conditioner convention).

Format 1 named a layer's network ``shift_and_log_scale_fn`` (MAF, IAF, RealNVP) or ``network``
(splines, circular and channel couplings), ActNorm's event rank ``event_ndims``, and the
convolutional networks' sizes ``out_channels``/``in_channels``. Their files load unchanged:
the arguments and weight names are translated here; the weights themselves are the same
numbers in the same layout.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

__all__ = ["upgrade_args", "upgrade_state"]

_CONDITIONER_NAMES = ("shift_and_log_scale_fn", "network")


def upgrade_args(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """Format-1 constructor arguments of ``cls`` in today's names."""
    args = dict(args)
    parameters = inspect.signature(cls).parameters
    if "conditioner" in parameters:
        for old in _CONDITIONER_NAMES:
            if old in args:
                args["conditioner"] = args.pop(old)
    if cls.__name__ == "ActNorm" and "event_ndims" in args:
        args["forward_min_event_ndims"] = args.pop("event_ndims")
    if cls.__name__ == "CouplingNetwork" and "output_units" in args:
        args["units"] = args.pop("output_units")
    if cls.__name__ in ("ConvNet", "WaveNet") and "out_channels" in args:
        out = args.pop("out_channels")  # shift and scale for every output channel
        args["params"] = 2
        if "in_channels" in args:
            args["in_features"], args["units"] = args.pop("in_channels"), out // 2
    return args


def upgrade_state(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Format-1 weight names of ``model``'s layers in today's names."""
    renames: dict[str, str] = {}
    for path, module in model.named_modules():
        if hasattr(module, "conditioner") and not isinstance(module, nn.Sequential):
            for old in _CONDITIONER_NAMES:
                renames[f"{path}.{old}."] = f"{path}.conditioner."
    upgraded = {}
    for key, value in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        upgraded[key] = value
    return upgraded
