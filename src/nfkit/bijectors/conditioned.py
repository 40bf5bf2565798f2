r"""The base of every layer whose parameters come from a network: coupling, autoregressive and
channel-coupling layers share one conditioner convention (:class:`nfkit.nets.Conditioner`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from nfkit.bijectors.base import Bijector, Context
from nfkit.nets import Conditioner, FunctionConditioner

__all__ = ["ConditionedBijector", "conditioner_from"]


def conditioner_from(
    conditioner: Callable[..., Tensor] | None,
    shift_and_log_scale_fn: Callable[..., Any] | None,
    *,
    takes_units: bool,
    name: str,
) -> Callable[..., Tensor] | None:
    """The layer's conditioner from nfkit's ``conditioner=`` or TFP's ``shift_and_log_scale_fn=``
    (called TFP's way unless it is already an nfkit :class:`~nfkit.nets.Conditioner`).
    """
    if conditioner is not None and shift_and_log_scale_fn is not None:
        raise ValueError(f"{name} takes conditioner= or shift_and_log_scale_fn=, not both")
    if shift_and_log_scale_fn is None or isinstance(shift_and_log_scale_fn, Conditioner):
        return conditioner if shift_and_log_scale_fn is None else shift_and_log_scale_fn
    return FunctionConditioner(shift_and_log_scale_fn, takes_units=takes_units)


class ConditionedBijector(Bijector):
    """A bijector whose elementwise transform takes its parameters from ``self.conditioner``.

    Subclasses set ``params`` (the parameter counts per unit their transform accepts) and call
    :meth:`_condition`, which calls the conditioner by the convention and checks the shape of
    what it returns. Not a layer by itself.
    """

    params: Sequence[int] = ()

    def __init__(self, conditioner: Callable[..., Tensor] | None) -> None:
        if type(self) in _BASES:
            raise TypeError(
                f"{type(self).__name__} is a base class, not a layer: use one of its subclasses "
                "(RealNVP, SplineCoupling, MaskedAutoregressiveFlow, GlowCoupling, ...) or "
                "subclass it"
            )
        super().__init__()
        if conditioner is None:
            raise ValueError(f"{type(self).__name__} needs a conditioner")
        self.conditioner = conditioner

    def _condition(
        self, inputs: Tensor, units: int, context: Context, rest: Sequence[int] = ()
    ) -> Tensor:
        """``conditioner(inputs, units[, context=])``, checked to be ``(*, units, P, *rest)``."""
        fn = self.conditioner
        out = fn(inputs, units) if context is None else fn(inputs, units, context=context)
        tail = len(rest) + 2
        if (
            not isinstance(out, Tensor)
            or out.ndim < tail
            or out.shape[-tail] != units
            or out.shape[-tail + 1] not in self.params
            or tuple(out.shape[len(out.shape) - len(rest) :]) != tuple(rest)
        ):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            want = ", ".join(["*", str(units), "|".join(map(str, self.params)), *map(str, rest)])
            raise ValueError(
                f"{type(self).__name__}'s conditioner must return a tensor ({want}) — units, "
                f"then the {'|'.join(map(str, self.params))} parameters of each — got {got}"
            )
        return out

    def get_config(self) -> dict[str, Any]:
        # The conditioner as built (with its sizes); a TFP-form function as the user gave it.
        names = ("conditioner", "shift_and_log_scale_fn")
        config = {k: v for k, v in super().get_config().items() if k not in names}
        if isinstance(self.conditioner, FunctionConditioner):
            return {**config, "shift_and_log_scale_fn": self.conditioner.fn}
        return {**config, "conditioner": self.conditioner}


_BASES: set[type] = {ConditionedBijector}
