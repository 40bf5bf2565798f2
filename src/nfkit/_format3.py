r"""Reading model files of format 3 and earlier (nfkit before two TFP defaults).

Format 4 changed three defaults to TFP's, and an argument a file left out would now mean
something else; it is written out on reading, so the files give the numbers they gave:

* ``Independent`` without ``reinterpreted_batch_ndims`` made every batch dim of its
  distribution an event dim; now all but the first.
* ``AutoregressiveNetwork`` without ``activation`` used ReLU; now TFP's ``None`` (linear).
* An affine layer (``MaskedAutoregressiveFlow``, ``InverseAutoregressiveFlow``, ``RealNVP``)
  whose ``shift_and_log_scale_fn`` was given TFP's way (a registered module, not an nfkit
  conditioner) used nfkit's softplus scale without ``scale=``; now TFP's exponential.
"""

from __future__ import annotations

from typing import Any

__all__ = ["upgrade_args"]


def upgrade_args(cls: type, args: dict[str, Any]) -> dict[str, Any]:
    """Format-3 constructor arguments of ``cls`` in format 4's convention."""
    # the file families import io lazily
    from nfkit.bijectors.autoregressive import InverseAutoregressiveFlow, MaskedAutoregressiveFlow
    from nfkit.bijectors.coupling import RealNVP
    from nfkit.distributions.simple import Independent
    from nfkit.nets import AutoregressiveNetwork, Conditioner

    if not isinstance(cls, type):
        return args
    if issubclass(cls, Independent) and args.get("reinterpreted_batch_ndims") is None:
        return {**args, "reinterpreted_batch_ndims": len(args["distribution"].batch_shape)}
    if issubclass(cls, AutoregressiveNetwork):
        return {"activation": "relu", **args}
    affine = (MaskedAutoregressiveFlow, InverseAutoregressiveFlow, RealNVP)
    fn = args.get("shift_and_log_scale_fn")
    if issubclass(cls, affine) and fn is not None and not isinstance(fn, Conditioner):
        return {"scale": "softplus", **args}
    return args
