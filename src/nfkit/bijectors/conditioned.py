r"""The base of every layer whose parameters come from a network: coupling, autoregressive and
channel-coupling layers share one conditioner convention (:class:`nfkit.nets.Conditioner`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from nfkit.bijectors.base import Bijector, Context, Pair
from nfkit.nets import Conditioner, FunctionConditioner, TFPFunction

__all__ = ["BijectorFunction", "ConditionedBijector", "conditioner_from", "tfp_form"]


def conditioner_from(
    conditioner: Callable[..., Tensor] | None,
    shift_and_log_scale_fn: Callable[..., Any] | None,
    *,
    takes_units: bool,
    name: str,
    bijector_fn: Callable[..., Bijector] | None = None,
) -> Callable[..., Tensor] | None:
    """The layer's conditioner from nfkit's ``conditioner=``, TFP's ``shift_and_log_scale_fn=``
    (called TFP's way unless it is already an nfkit :class:`~nfkit.nets.Conditioner`) or TFP's
    ``bijector_fn=`` (a :class:`BijectorFunction`).
    """
    given = [conditioner, shift_and_log_scale_fn, bijector_fn]
    if sum(g is not None for g in given) > 1:
        raise ValueError(
            f"{name} takes one of conditioner=, shift_and_log_scale_fn= and bijector_fn="
        )
    if bijector_fn is not None:
        return BijectorFunction(bijector_fn, takes_units=takes_units)
    if shift_and_log_scale_fn is None or isinstance(shift_and_log_scale_fn, Conditioner):
        return conditioner if shift_and_log_scale_fn is None else shift_and_log_scale_fn
    return FunctionConditioner(shift_and_log_scale_fn, takes_units=takes_units)


def tfp_form(conditioner: Any) -> bool:
    """Whether the layer's network was given TFP's way (a plain function or module called
    ``fn(x)``): such a layer takes TFP's affine formula :math:`x = z e^{b} + a` by default.
    """
    return isinstance(conditioner, FunctionConditioner)


class BijectorFunction(TFPFunction):
    """TFP's ``bijector_fn=``: a function from the conditioning inputs to the bijector that
    transforms the rest (called as :class:`~nfkit.nets.TFPFunction`: ``fn(x0, units)`` in a
    coupling layer, ``fn(x)`` in an autoregressive one). It stands where a layer's conditioner
    would; the bijector it returns acts on scalars or vectors (not changing the rank).
    """

    def forward(self, inputs: Tensor, units: int, context: Tensor | None = None) -> Bijector:
        inner = self.call(inputs, units, context)
        if not isinstance(inner, Bijector) or inner.forward_min_event_ndims > 1:
            raise ValueError(
                "bijector_fn must return a bijector on scalars or vectors, got "
                f"{type(inner).__name__}"
            )
        return inner


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

    def _inner(
        self, inputs: Tensor, units: int, context: Context, value: Tensor, inverse: bool
    ) -> Pair | None:
        """With TFP's ``bijector_fn=``: the bijector it returns for ``inputs``, applied to
        ``value`` (``inverse``: data to base), with its log-det over the last dim; ``None``
        for a layer with a conditioner.
        """
        if not isinstance(self.conditioner, BijectorFunction):
            return None
        inner = self.conditioner(inputs, units, context)
        apply = inner.inverse_and_log_det if inverse else inner.forward_and_log_det
        return apply(value, event_ndims=1)

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
        names = ("conditioner", "shift_and_log_scale_fn", "bijector_fn")
        config = {k: v for k, v in super().get_config().items() if k not in names}
        if isinstance(self.conditioner, BijectorFunction):
            return {**config, "bijector_fn": self.conditioner.fn}
        if isinstance(self.conditioner, FunctionConditioner):
            return {**config, "shift_and_log_scale_fn": self.conditioner.fn}
        return {**config, "conditioner": self.conditioner}


_BASES: set[type] = {ConditionedBijector}
