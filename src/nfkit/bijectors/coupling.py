r"""Affine coupling layers: RealNVP (Dinh et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nfkit._config import Configurable
from nfkit.bijectors.autoregressive import Scale, affine_transform, check_scale
from nfkit.bijectors.base import Bijector, Context, Pair
from nfkit.nets import MLP, Activation

__all__ = ["CouplingNetwork", "RealNVP"]


class CouplingNetwork(Configurable, nn.Module):
    r"""The default RealNVP conditioner: an MLP from the kept dims (and context) to shift and
    log-scale of the transformed dims, built on first use. Its last layer starts at zero, so the
    coupling layer starts as the identity.

    Args:
        hidden_units: widths of the hidden layers.
        activation: activation after each hidden layer.
        in_features: width of the kept half (plus context); with ``output_units``, builds the
            layers now instead of on first use.
        output_units: width of the transformed half.

    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        *,
        params: int = 2,
        in_features: int | None = None,
        output_units: int | None = None,
    ) -> None:
        super().__init__()
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.params = params
        self.mlp: MLP | None = None
        if in_features is not None and output_units is not None:
            self._build(in_features, output_units)

    def _build(
        self,
        in_features: int,
        output_units: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.mlp = MLP(
            in_features,
            self.params * output_units,
            self.hidden_units,
            activation=self.activation,
            zero_last=True,
        ).to(device=device, dtype=dtype)

    def forward(self, x0: Tensor, output_units: int, context: Tensor | None = None) -> Tensor:
        """Return ``(*, output_units, params)`` (for an affine layer: shift, log-scale)."""
        if context is not None:
            batch = torch.broadcast_shapes(x0.shape[:-1], context.shape[:-1])
            x0 = torch.cat([x0.expand(*batch, -1), context.expand(*batch, -1)], dim=-1)
        if self.mlp is None:
            self._build(x0.shape[-1], output_units, x0.device, x0.dtype)
        assert self.mlp is not None
        return self.mlp(x0).unflatten(-1, (output_units, self.params))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.mlp is not None:
            config.update(
                in_features=self.mlp[0].in_features,
                output_units=self.mlp[-1].out_features // self.params,
            )
        return config


class CouplingBijector(Bijector):
    r"""Base of coupling layers: the first :math:`d` dims pass through and parametrize an
    elementwise bijection of the rest, :math:`x_{d+1:D} = g(z_{d+1:D};\ \theta(z_{1:d}))`.

    The Jacobian is triangular, so :math:`\log|\det J| = \sum_i \log|g'_i|`, and both
    directions take one network pass. Subclasses give the conditioner (attribute named by
    ``conditioner_name``) and ``_transform(part, params, inverse) -> (out, log_det)``.

    Args:
        num_masked: :math:`d`, how many leading dims are kept (``0 < d < D``).
        fraction_masked: alternatively, :math:`d` as a fraction of :math:`D`.

    """

    forward_min_event_ndims = 1
    conditioner_name = ""

    def __init__(self, num_masked: int | None, fraction_masked: float | None) -> None:
        super().__init__()
        name = type(self).__name__
        if (num_masked is None) == (fraction_masked is None):
            raise ValueError(f"{name} takes exactly one of num_masked and fraction_masked")
        if fraction_masked is not None and not 0.0 < fraction_masked < 1.0:
            raise ValueError(f"fraction_masked must lie in (0, 1), got {fraction_masked}")
        self.num_masked = num_masked
        self.fraction_masked = fraction_masked

    def _split(self, value: Tensor) -> tuple[Tensor, Tensor]:
        size = value.shape[-1]
        d = self.num_masked
        if d is None:
            d = round(self.fraction_masked * size)  # type: ignore[operator]
        if not 0 < d < size:
            raise ValueError(
                f"{type(self).__name__} needs 0 < num_masked < D, got num_masked={d} for D={size}"
            )
        return value[..., :d], value[..., d:]

    def _transform(self, part: Tensor, params: Any, inverse: bool) -> Pair:
        raise NotImplementedError

    def _couple(self, value: Tensor, context: Context, inverse: bool) -> Pair:
        kept, part = self._split(value)
        fn = getattr(self, self.conditioner_name)
        units = part.shape[-1]
        params = fn(kept, units) if context is None else fn(kept, units, context=context)
        out, log_det = self._transform(part, params, inverse)
        return torch.cat([kept.expand(*out.shape[:-1], -1), out], -1), log_det

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        return self._couple(z, context, inverse=False)

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        return self._couple(x, context, inverse=True)

    def get_config(self) -> dict[str, Any]:
        # The conditioner as built (with its layer sizes), whether given or made by default.
        name = self.conditioner_name
        return {**super().get_config(), name: getattr(self, name)}

    def extra_repr(self) -> str:
        if self.num_masked is not None:
            return f"num_masked={self.num_masked}"
        return f"fraction_masked={self.fraction_masked}"


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
        shift_and_log_scale_fn: a custom conditioner called as ``fn(x0, output_units)`` (plus
            ``context=`` when given) that returns ``(shift, log_scale)`` of shape
            ``(*, output_units)``; defaults to a :class:`CouplingNetwork`.
        fraction_masked: alternatively, :math:`d` as a fraction of :math:`D`.
        hidden_units: hidden widths of the default conditioner.
        activation: activation of the default conditioner.
        scale: ``"softplus"`` (default): in the density direction
            :math:`z_{d+1:D} = s \odot x_{d+1:D} + a` with :math:`s = \operatorname{softplus}(b)
            + 10^{-3}`, as :class:`MaskedAutoregressiveFlow` (finite everywhere: the scale cannot
            overflow far from the data); ``"exp"``: the formula above, as TFP.
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

    def __init__(
        self,
        num_masked: int | None = None,
        shift_and_log_scale_fn: Callable[..., tuple[Tensor, Tensor]] | None = None,
        *,
        fraction_masked: float | None = None,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        scale: Scale = "softplus",
        log_scale_bound: float | None = None,
    ) -> None:
        super().__init__(num_masked, fraction_masked)
        check_scale(scale, log_scale_bound)
        self.scale = scale
        self.log_scale_bound = log_scale_bound
        self.shift_and_log_scale_fn = shift_and_log_scale_fn or CouplingNetwork(
            hidden_units, activation
        )

    conditioner_name = "shift_and_log_scale_fn"

    def _transform(self, part: Tensor, params: Any, inverse: bool) -> Pair:
        return affine_transform(part, params, self.scale, self.log_scale_bound, inverse)
