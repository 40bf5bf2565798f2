r"""TFP's default networks for its affine layers, ``real_nvp_default_template`` and
``masked_autoregressive_default_template``: functions called TFP's way (``fn(x0, units)`` and
``fn(x)``) that return ``(shift, log_scale)``, so the layers given them take TFP's formula
:math:`x = z\,e^{\log s} + \text{shift}`. They are modules (built on first use, saved in model
files) rather than TFP's ``tf.make_template`` closures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from nfkit._config import Configurable
from nfkit.nets import MLP, Activation, AutoregressiveNetwork

__all__ = [
    "MaskedAutoregressiveTemplate",
    "RealNVPTemplate",
    "masked_autoregressive_default_template",
    "real_nvp_default_template",
]


class RealNVPTemplate(Configurable, nn.Module):
    r"""TFP's ``real_nvp_default_template`` (also under that name): an MLP from the kept dims
    to ``units`` shifts and, unless ``shift_only`` (NICE, Dinh et al. 2014), ``units``
    log-scales; dense layers with torch's default initialization (TFP's: Glorot), built on the
    first call.

    Args:
        hidden_layers: the hidden widths.
        shift_only: return ``(shift, None)``.
        activation: after each hidden layer.
        name: TFP's; accepted and unused.
        in_features: the kept dims' width; with ``units``, builds the layers now.
        units: the transformed dims.

    """

    def __init__(
        self,
        hidden_layers: Sequence[int],
        shift_only: bool = False,
        activation: Activation = "relu",
        name: str | None = None,
        *,
        in_features: int | None = None,
        units: int | None = None,
    ) -> None:
        super().__init__()
        self.hidden_layers, self.shift_only = [int(h) for h in hidden_layers], shift_only
        self.activation = activation
        self.mlp: MLP | None = None
        self.units: int | None = None
        if in_features is not None and units is not None:
            self._build(in_features, units)

    def _build(self, in_features: int, units: int) -> None:
        width = units * (1 if self.shift_only else 2)
        self.mlp = MLP(in_features, width, self.hidden_layers, activation=self.activation)
        self.in_features, self.units = in_features, units

    def forward(self, x: Tensor, units: int) -> tuple[Tensor, Tensor | None]:
        """``(shift, log_scale)``, each ``(*, units)``."""
        if self.mlp is None:
            self._build(x.shape[-1], units)
            self.to(device=x.device, dtype=x.dtype)
        assert self.mlp is not None
        if units != self.units:
            raise ValueError(f"this template was built for {self.units} units, got {units}")
        out = self.mlp(x)
        if self.shift_only:
            return out, None
        return out[..., :units], out[..., units:]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.mlp is not None:
            config.update(in_features=self.in_features, units=self.units)
        return config


class MaskedAutoregressiveTemplate(Configurable, nn.Module):
    r"""TFP's ``masked_autoregressive_default_template`` (also under that name; deprecated in
    TFP for ``AutoregressiveNetwork``): a MADE (Germain et al. 2015) with Glorot-initialized
    masked layers (the output layer too, as TFP's) returning ``(shift,
    log_scale)``, the log-scale clipped to ``[log_scale_min_clip, log_scale_max_clip]``; the
    clip passes the gradient through unchanged unless ``log_scale_clip_gradient``, as TFP's.

    Args:
        hidden_layers: the hidden widths.
        shift_only: return ``(shift, None)``.
        activation: after each hidden layer.
        log_scale_min_clip: the smallest log-scale.
        log_scale_max_clip: the largest log-scale.
        log_scale_clip_gradient: clip the gradient as well (a plain clamp).
        name: TFP's; accepted and unused.
        event_size: the input width; builds the layers now.

    """

    def __init__(
        self,
        hidden_layers: Sequence[int],
        shift_only: bool = False,
        activation: Activation = "relu",
        log_scale_min_clip: float = -5.0,
        log_scale_max_clip: float = 3.0,
        log_scale_clip_gradient: bool = False,
        name: str | None = None,
        *,
        event_size: int | None = None,
    ) -> None:
        super().__init__()
        self.shift_only = shift_only
        self.clip = (float(log_scale_min_clip), float(log_scale_max_clip))
        self.clip_gradient = log_scale_clip_gradient
        self.made = AutoregressiveNetwork(
            1 if shift_only else 2,
            event_size,
            hidden_units=hidden_layers,
            activation=activation,
            zero_last=False,
            output_scale=1.0,
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(shift, log_scale)``, each ``(*, D)``."""
        out = self.made(x)
        if self.shift_only:
            return out[..., 0], None
        log_scale = out[..., 1]
        clipped = log_scale.clamp(*self.clip)
        if not self.clip_gradient:
            clipped = log_scale + (clipped - log_scale).detach()
        return out[..., 0], clipped

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.made.built:
            config.update(event_size=self.made.event_size)
        return config


# TFP's names; TFP's are functions returning closures, these build the modules above.
real_nvp_default_template = RealNVPTemplate
masked_autoregressive_default_template = MaskedAutoregressiveTemplate
