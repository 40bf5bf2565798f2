r"""Affine coupling layers: RealNVP (Dinh et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from nfkit._tensors import broadcast_shapes
from nfkit.bijectors.autoregressive import Scale, affine_transform, resolve_scale
from nfkit.bijectors.base import Bijector, Context, Pair
from nfkit.bijectors.conditioned import _BASES, ConditionedBijector, conditioner_from
from nfkit.nets import MLP, Activation, Conditioner

__all__ = ["CouplingNetwork", "RealNVP"]


class CouplingNetwork(Conditioner):
    r"""The default coupling conditioner: an MLP from the kept dims (and the context) to
    ``params`` numbers for each transformed dim, built on first use. Its last layer starts at
    zero, so the coupling layer starts as a fixed map that ignores its input (the identity
    for splines).

    Args:
        hidden_units: widths of the hidden layers.
        activation: activation after each hidden layer.
        params: numbers per transformed dim (2 for an affine layer: shift and scale).
        in_features: width of the kept dims; with ``units``, builds the layers now instead of
            on first use.
        units: number of transformed dims.
        context_features: width of the context (0: an unconditional network).

    Shapes: ``net(x0, units, context=None)`` maps ``(*, in_features)`` (and ``(*, C)``) to
    ``(*, units, params)`` (see :class:`nfkit.nets.Conditioner`).

    Example:
        >>> import torch
        >>> CouplingNetwork([8], params=2)(torch.randn(5, 1), 3).shape
        torch.Size([5, 3, 2])

    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        *,
        params: int = 2,
        in_features: int | None = None,
        units: int | None = None,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.params = params
        self.mlp: MLP | None = None
        if in_features is not None and units is not None:
            self._build(in_features, units, context_features)

    def _build(
        self,
        in_features: int,
        units: int,
        context_features: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.in_features, self.units = in_features, units
        self.context_features = context_features
        self.mlp = MLP(
            in_features + context_features,
            self.params * units,
            self.hidden_units,
            activation=self.activation,
            zero_last=True,
        ).to(device=device, dtype=dtype)

    def forward(self, inputs: Tensor, units: int, context: Tensor | None = None) -> Tensor:
        """Return ``(*, units, params)``."""
        width = 0 if context is None else context.shape[-1]
        if self.mlp is None:
            self._build(inputs.shape[-1], units, width, inputs.device, inputs.dtype)
        got = (inputs.shape[-1], units, width)
        built = (self.in_features, self.units, self.context_features)
        if got != built:
            raise ValueError(
                "this coupling network was built for {} kept dims, {} transformed dims and a "
                "context of width {}; got {}, {} and {}".format(*built, *got)
            )
        if context is not None:
            batch = broadcast_shapes(inputs.shape[:-1], context.shape[:-1])
            inputs = torch.cat([inputs.expand(*batch, -1), context.expand(*batch, -1)], dim=-1)
        assert self.mlp is not None
        return self.mlp(inputs).unflatten(-1, (units, self.params))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.mlp is not None:
            config.update(
                in_features=self.in_features,
                units=self.units,
                context_features=self.context_features,
            )
        return config


class CouplingBijector(ConditionedBijector):
    r"""Base of coupling layers: the first :math:`d` dims pass through and parametrize an
    elementwise bijection of the rest, :math:`x_{d+1:D} = g(z_{d+1:D};\ \theta(z_{1:d}))`.

    The Jacobian is triangular, so :math:`\log|\det J| = \sum_i \log|g'_i|`, and both
    directions take one conditioner pass, ``conditioner(z_{1:d}, D - d[, context=])`` returning
    ``(*, D - d, params)`` (see :class:`nfkit.nets.Conditioner`). Subclasses set ``params``
    and give ``_transform(part, params, inverse) -> (out, log_det)``.

    Args:
        num_masked: :math:`d`, how many leading dims are kept (``0 <= d < D``; as in TFP, a
            negative :math:`d` keeps the last :math:`|d|` instead, and :math:`d = 0`
            transforms every dim by parameters that depend on no input).
        conditioner: the network.
        fraction_masked: alternatively, :math:`d` as a fraction of :math:`D` in
            :math:`(-1, 1)`.

    """

    forward_min_event_ndims = 1

    def __init__(
        self,
        num_masked: int | None,
        conditioner: Callable[..., Tensor] | None,
        fraction_masked: float | None,
    ) -> None:
        super().__init__(conditioner)
        name = type(self).__name__
        if (num_masked is None) == (fraction_masked is None):
            raise ValueError(f"{name} takes exactly one of num_masked and fraction_masked")
        if fraction_masked is not None and not -1.0 < fraction_masked < 1.0:
            raise ValueError(f"fraction_masked must lie in (-1, 1), got {fraction_masked}")
        self.num_masked = num_masked
        self.fraction_masked = fraction_masked

    def _masked(self, size: int) -> int:
        """:math:`d` for events of ``size`` dims (negative: the last :math:`|d|` are kept)."""
        d = self.num_masked
        if d is None:
            d = round(self.fraction_masked * size)  # type: ignore[operator]
        if not abs(d) < size:
            raise ValueError(
                f"{type(self).__name__} needs |num_masked| < D, got num_masked={d} for D={size}"
            )
        return d

    def _split(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """``(kept, transformed)`` parts of ``value`` (the kept ones last for a negative mask)."""
        d = self._masked(value.shape[-1])
        if d < 0:
            return value[..., d:], value[..., :d]
        return value[..., :d], value[..., d:]

    def _transform(self, part: Tensor, params: Any, inverse: bool) -> Pair:
        raise NotImplementedError

    def _couple(self, value: Tensor, context: Context, inverse: bool) -> Pair:
        kept, part = self._split(value)
        pair = self._inner(kept, part.shape[-1], context, part, inverse)
        if pair is None:
            params = self._condition(kept, part.shape[-1], context)
            pair = self._transform(part, params, inverse)
        out, log_det = pair
        kept = kept.expand(*out.shape[:-1], -1)
        last = self._masked(value.shape[-1]) < 0
        return torch.cat([out, kept] if last else [kept, out], -1), log_det

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._couple(z, context, inverse=False)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._couple(x, context, inverse=True)

    def extra_repr(self) -> str:
        if self.num_masked is not None:
            return f"num_masked={self.num_masked}"
        return f"fraction_masked={self.fraction_masked}"


_BASES.add(CouplingBijector)


class RealNVP(CouplingBijector):
    r"""Affine coupling layer (real NVP, Dinh et al. 2016).

    The first :math:`d` = ``num_masked`` dims pass through; the rest are scaled and shifted by
    functions of them. In TFP's form (``scale="exp"``)

    .. math:: x_{1:d} = z_{1:d}, \qquad x_{d+1:D} = z_{d+1:D} \odot e^{\alpha(z_{1:d})}
              + \mu(z_{1:d}),

    with :math:`\log|\det J_f| = \sum_i \alpha_i`; the default ``scale="softplus"`` is the
    same layer with the softplus scale of :class:`MaskedAutoregressiveFlow`. Both directions
    take one network pass, so training, sampling and density evaluation are all cheap;
    alternate it with ``Permute`` or ``Reverse`` so every dim gets transformed.

    Args:
        num_masked: :math:`d`, how many leading dims are kept (``0 < d < D``).
        shift_and_log_scale_fn: a custom network as TFP takes it: an nfkit conditioner is
            used as it is; any other function is called ``fn(x0, units)`` (plus ``context=``)
            and returns a tuple ``(shift, log_scale)`` of ``(*, units)`` tensors (``(shift,
            None)``: NICE's shift alone) or one ``(*, units, 2)`` tensor. Defaults to a
            :class:`CouplingNetwork`.
        bijector_fn: alternatively, TFP's: ``fn(x0, units)`` (plus ``context=``) returns the
            bijector applied to the transformed dims (elementwise or on vectors).
        is_constant_jacobian: TFP's flag that the log-det does not depend on the input.
        conditioner: alternatively, any callable in nfkit's convention,
            ``conditioner(x0, units[, context=])`` returning ``(*, units, 2)`` (shift, then
            scale; see :class:`nfkit.nets.Conditioner`).
        fraction_masked: alternatively, :math:`d` as a fraction of :math:`D`.
        hidden_units: hidden widths of the default conditioner.
        activation: activation of the default conditioner.
        scale: ``"softplus"`` (the default with nfkit's networks): in the density direction
            :math:`z_{d+1:D} = s \odot x_{d+1:D} + a` with :math:`s = \operatorname{softplus}(b)
            + 10^{-3}`, as :class:`MaskedAutoregressiveFlow` (finite everywhere: the scale cannot
            overflow far from the data); ``"exp"``: the formula above, as TFP (the default
            with a ``shift_and_log_scale_fn`` given TFP's way).
        log_scale_bound: with ``scale="exp"``, softly clip log-scales to :math:`(-B, B)`.

    References:
        Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
        https://arxiv.org/abs/1605.08803

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> b = nfb.RealNVP(1, hidden_units=[16])
        >>> z = torch.randn(4, 2)
        >>> torch.allclose(b.inverse(b.forward(z)), z)
        True

    """

    params = (1, 2)

    def __init__(
        self,
        num_masked: int | None = None,
        shift_and_log_scale_fn: Callable[..., tuple[Tensor, Tensor]] | None = None,
        *,
        bijector_fn: Callable[..., Bijector] | None = None,
        is_constant_jacobian: bool = False,
        conditioner: Callable[..., Tensor] | None = None,
        fraction_masked: float | None = None,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        scale: Scale | None = None,
        log_scale_bound: float | None = None,
    ) -> None:
        fn = conditioner_from(
            conditioner,
            shift_and_log_scale_fn,
            takes_units=True,
            name="RealNVP",
            bijector_fn=bijector_fn,
        )
        super().__init__(
            num_masked, fn or CouplingNetwork(hidden_units, activation), fraction_masked
        )
        self.scale = resolve_scale(scale, fn, log_scale_bound)
        self.log_scale_bound = log_scale_bound
        self.is_constant_jacobian = bool(is_constant_jacobian)

    def _transform(self, part: Tensor, params: Any, inverse: bool) -> Pair:
        return affine_transform(part, params, self.scale, self.log_scale_bound, inverse)
