r"""Neural networks used inside bijectors: a plain MLP, masked linear layers, MADE and the
time-conditioned velocity network of continuous flows.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nfkit._config import Configurable
from nfkit._tensors import broadcast_shapes

__all__ = [
    "MLP",
    "Conditioner",
    "ContextEmbedding",
    "ConvNet",
    "AutoregressiveNetwork",
    "FunctionConditioner",
    "TFPFunction",
    "MaskedLinear",
    "VelocityNetwork",
    "WaveNet",
    "activation_module",
    "refuse_context",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}

Activation = str | nn.Module | Callable[[Tensor], Tensor] | None


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def activation_module(activation: Activation) -> nn.Module:
    """Turn ``"relu"``, a module, a function or ``None`` (linear) into an ``nn.Module``."""
    if activation is None:
        return nn.Identity()
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation.lower()]()
        except KeyError:
            names = ", ".join(sorted(_ACTIVATIONS))
            raise ValueError(f"unknown activation {activation!r}; choose one of {names}") from None
    if isinstance(activation, nn.Module):
        return activation
    if callable(activation):
        return _Lambda(activation)
    raise TypeError(f"activation must be a name, a module or a function, got {activation!r}")


class Conditioner(Configurable, nn.Module):
    r"""Base of the networks that give coupling and autoregressive layers their parameters.

    The one convention of every such layer: the layer calls ``conditioner(inputs, units)``,
    adding ``context=c`` only when it has a context, and gets back a tensor of the input's
    batch shape followed by ``(units, params, *rest)``:

    - coupling layers (``RealNVP``, ``SplineCoupling``, ``CircularCoupling``): ``inputs`` are
      the kept dims ``(*, d)``, ``units`` the number of transformed dims, output
      ``(*, units, params)``;
    - autoregressive layers (``MaskedAutoregressiveFlow``, ``MaskedAutoregressiveSpline``):
      ``inputs`` are all ``D`` dims, ``units == D``, output ``(*, D, params)``, where the
      output for dim :math:`i` depends only on the inputs before it;
    - channel couplings (``GlowCoupling``, ``WaveNetCoupling``): ``inputs`` are the kept
      channels ``(*, C_a, *rest)``, ``units`` the other channels, output
      ``(*, units, params, *rest)`` (``rest``: ``(H, W)`` or ``(T,)``).

    ``params`` is what the layer's transform needs per unit (2 for an affine layer: shift and
    scale; :math:`3K - 1` for a :math:`K`-bin spline); the layer checks the shape and names
    what it expected. A network that cannot use a context raises when given one. Any callable
    with this signature serves; subclass this class to have it saved with the model.
    """

    def forward(self, inputs: Tensor, units: int, context: Tensor | None = None) -> Tensor:
        raise NotImplementedError


def _context_name(fn: Callable[..., Any]) -> str:
    """The keyword a function takes its context by: nfkit's ``context``, or TFP's
    ``conditional_input`` when it takes that one and not the other.
    """
    try:
        names = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return "context"
    return (
        "conditional_input"
        if "context" not in names and "conditional_input" in names
        else "context"
    )


class TFPFunction(Conditioner):
    """A function called the TensorFlow Probability way: ``fn(x)`` for an autoregressive layer,
    ``fn(x0, units)`` for a coupling layer, the context by nfkit's name ``context=`` or TFP's
    ``conditional_input=`` (whichever it takes, read once from its signature). The base of
    :class:`FunctionConditioner` and of TFP's ``bijector_fn=``.

    Args:
        fn: the function or module.
        takes_units: pass ``units`` as the second argument (TFP's ``RealNVP`` form).

    """

    def __init__(self, fn: Callable[..., Any], *, takes_units: bool) -> None:
        super().__init__()
        self.fn, self.takes_units = fn, takes_units
        self._context_name = _context_name(fn)

    def call(self, inputs: Tensor, units: int, context: Tensor | None) -> Any:
        """``fn``'s answer for ``inputs``, TFP's way."""
        args = (inputs, units) if self.takes_units else (inputs,)
        return (
            self.fn(*args) if context is None else self.fn(*args, **{self._context_name: context})
        )


class FunctionConditioner(TFPFunction):
    r"""A conditioner written the TensorFlow Probability way, adapted to nfkit's convention:
    what a layer's ``shift_and_log_scale_fn=`` receives (called as :class:`TFPFunction`),
    returning a tensor ``(*, units, params)`` or a tuple of ``params`` tensors ``(*, units)``
    (shift, log-scale), which is stacked here; ``(shift, None)`` is a shift alone (NICE) and
    ``(None, log_scale)`` a scale alone, as in TFP.
    """

    def forward(self, inputs: Tensor, units: int, context: Tensor | None = None) -> Tensor:
        out = self.call(inputs, units, context)
        if not isinstance(out, tuple | list):
            return out
        shift, log_scale = out
        if shift is None and log_scale is None:
            raise ValueError("a shift-and-log-scale function returned (None, None)")
        if log_scale is None:  # TFP's (shift, None): a shift alone, volume preserving
            return shift[..., None]
        if shift is None:
            shift = torch.zeros_like(log_scale)
        return torch.stack((shift, log_scale), dim=-1)


def refuse_context(network: nn.Module, context: Tensor | None) -> None:
    """Raise a clear error when a network that has no use for a context is given one."""
    if context is not None:
        raise ValueError(
            f"{type(network).__name__} cannot use a context: it is an unconditional network "
            "(give the layer a conditioner that takes context=, or drop the context)"
        )


class MLP(Configurable, nn.Sequential):
    r"""A fully connected network ``in -> hidden_units... -> out`` with one activation.

    Args:
        in_features: input width.
        out_features: output width.
        hidden_units: widths of the hidden layers.
        activation: name (``"relu"``), module or function applied after each hidden layer.
        zero_last: initialise the last layer to zero, so a bijector built on it starts as
            the identity.

    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_units: Sequence[int] = (64, 64),
        *,
        activation: Activation = "relu",
        zero_last: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        with warnings.catch_warnings():
            # no inputs (a coupling layer with num_masked=0): the first layer is its biases
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            for h in hidden_units:
                layers += [nn.Linear(width, h), activation_module(activation)]
                width = h
            last = nn.Linear(width, out_features)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        super().__init__(*layers, last)


def _check_init(init: str) -> str:
    if init not in ("torch", "glorot"):
        raise ValueError(f"init must be 'torch' or 'glorot', got {init!r}")
    return init


class MaskedLinear(nn.Linear):
    r"""A linear layer :math:`y = (W \odot M) x + b` whose fixed binary mask :math:`M` cuts
    connections, as in MADE (Germain et al. 2015).

    Args:
        mask: ``(out_features, in_features)`` tensor of 0/1.
        zero: start with zero weights and bias instead of Glorot-uniform weights and
            :math:`U(\pm 1/\sqrt{\text{fan-in}})` biases.
        scale: instead, Glorot-uniform weights times ``scale`` and zero biases (an output
            layer; ``scale=0`` is the same as ``zero=True``).
        init: ``"glorot"`` (the above, fans counted over the connections that exist) or
            ``"torch"``: ``torch.nn.Linear``'s own start, weights and biases
            :math:`U(\pm 1/\sqrt{\text{in\_features}})`, times ``scale`` when given.

    """

    def __init__(
        self,
        mask: Tensor,
        *,
        zero: bool = False,
        scale: float | None = None,
        init: str = "glorot",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, device=device, dtype=dtype)
        self.register_buffer("mask", mask.to(device=device, dtype=self.weight.dtype))
        _check_init(init)
        if init == "torch" and not zero:
            if scale is not None:
                with torch.no_grad():
                    self.weight.mul_(scale)
                    self.bias.mul_(scale)
            return
        # Glorot-uniform over the connections that exist, so masked units start at unit scale.
        fan_in = self.mask.sum(1).clamp(min=1).mean().item()
        fan_out = self.mask.sum(0).clamp(min=1).mean().item()
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        with torch.no_grad():
            if zero or scale == 0:
                self.weight.zero_()
                self.bias.zero_()
            elif scale is not None:
                self.weight.uniform_(-scale * bound, scale * bound)
                self.bias.zero_()
            else:
                self.weight.uniform_(-bound, bound)
                # Biases spread as nn.Linear's: with zero biases every ReLU unit that sees one
                # input bends at the same point (the chapter's MAF on moons after 15 s at lr
                # 1e-3: 0.62 nats with zero biases, 0.43 with these).
                self.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        where = "" if self.weight is not None else ", weights held by the network"
        return f"in_features={self.in_features}, out_features={self.out_features}{where}"


def _input_degrees(order: str | Sequence[int], size: int) -> Tensor:
    if isinstance(order, str):
        if order == "left-to-right":
            return torch.arange(1, size + 1)
        if order == "right-to-left":
            return torch.arange(size, 0, -1)
        if order == "random":
            return torch.randperm(size) + 1
        raise ValueError(
            f"input_order must be 'left-to-right', 'right-to-left', 'random' or a permutation "
            f"of 1..D, got {order!r}"
        )
    degrees = torch.as_tensor(list(order), dtype=torch.long)
    if degrees.numel() != size or not torch.equal(degrees.sort().values, torch.arange(1, size + 1)):
        raise ValueError(f"input_order must be a permutation of 1..{size}, got {list(order)}")
    return degrees


def _lecun_normal(weight: Tensor) -> Tensor:
    # Keras': a normal truncated at two standard deviations, rescaled to variance 1 / fan-in.
    std = 1.0 / math.sqrt(max(weight.shape[1], 1)) / 0.87962566103423978
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


_INITIALIZERS: dict[str, Callable[[Tensor], Any]] = {
    "glorot_uniform": nn.init.xavier_uniform_,
    "glorot_normal": nn.init.xavier_normal_,
    "he_uniform": functools.partial(nn.init.kaiming_uniform_, nonlinearity="relu"),
    "he_normal": functools.partial(nn.init.kaiming_normal_, nonlinearity="relu"),
    "lecun_normal": _lecun_normal,
    "zeros": nn.init.zeros_,
}


def _conditional_width(
    context_features: int | None,
    conditional: bool,
    conditional_event_shape: int | Sequence[int] | None,
    layers: str,
) -> int | None:
    """``context_features`` from TFP's ``conditional=`` / ``conditional_event_shape=``."""
    if layers not in ("all_layers", "first_layer"):
        raise ValueError(
            f"conditional_input_layers must be 'all_layers' or 'first_layer', got {layers!r}"
        )
    if conditional_event_shape is None:
        if conditional and context_features is None:
            raise ValueError("conditional=True needs conditional_event_shape= (the context width)")
        return context_features
    if not conditional:
        raise ValueError("conditional_event_shape= is for conditional=True networks")
    shape = (
        [conditional_event_shape]
        if isinstance(conditional_event_shape, int)
        else list(conditional_event_shape)
    )
    if len(shape) != 1:
        raise ValueError(f"conditional_event_shape must be C or [C], got {conditional_event_shape}")
    if context_features is not None and context_features != shape[0]:
        raise ValueError("context_features and conditional_event_shape disagree")
    return int(shape[0])


def _save_layer_names(net: Any, state: dict[str, Any], prefix: str, _: Any) -> None:
    """State-dict hook of :class:`AutoregressiveNetwork`: its flat ``weights`` written as each
    layer's ``weight`` and ``bias`` (the names files and state dicts have always had).
    """
    if prefix + "weights" not in state:
        return
    views = net._views(state.pop(prefix + "weights"))
    for name, view in zip(net._names, views, strict=True):
        state[prefix + name] = view


def _load_layer_names(net: Any, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load hook of :class:`AutoregressiveNetwork`: the layers' weights and biases gathered
    into the flat ``weights``, and the flat mask remade from the masks being loaded (a random
    input order's masks come from the file).
    """
    keys = [prefix + name for name in getattr(net, "_names", ())]
    if keys and all(k in state for k in keys):
        state[prefix + "weights"] = torch.cat([state.pop(k).reshape(-1) for k in keys])
    masks = [k.removesuffix("weight") + "mask" for k in keys[::2]]
    if masks and all(k in state for k in masks):
        with torch.no_grad():
            net.weight_mask.copy_(_flat_mask([state[k] for k in masks], net._shapes[1::2]))


def _flat_mask(masks: Sequence[Tensor], bias_shapes: Sequence[tuple[int, ...]]) -> Tensor:
    """The masks of MADE's layers laid out as its flat ``weights`` (ones for the biases)."""
    pieces = []
    for mask, shape in zip(masks, bias_shapes, strict=True):
        pieces += [mask.reshape(-1), mask.new_ones(shape)]
    return torch.cat(pieces)


class AutoregressiveNetwork(Conditioner):
    r"""MADE: a masked MLP whose output for dim :math:`i` depends only on inputs before :math:`i`.

    Each input dim gets a degree :math:`m(i)` from ``input_order``; hidden units get degrees in
    :math:`[1, D-1]`; a connection exists from a unit of degree :math:`a` to a hidden unit of degree
    :math:`b` iff :math:`b \ge a`, and to an output of degree :math:`b` iff :math:`b > a`. Hence
    output :math:`i` is a function of :math:`\{x_j : m(j) < m(i)\}`, which makes the Jacobian of a
    flow built on it triangular. Conditioning inputs (``context``) have degree 0, and a
    conditional net also has degree-0 hidden units, so the context reaches every output.

    Args:
        params: number of outputs per input dim (2 for an affine MAF: shift and log-scale).
        event_shape: ``D`` or ``[D]``; inferred from the first input when ``None``.
        hidden_units: widths of the hidden layers.
        activation: name (``"relu"``), module or function after each hidden layer; ``None``
            (the default, TFP's) keeps the hidden layers linear, so pass one (the chapter
            passes ``"relu"``).
        input_order: ``"left-to-right"``, ``"right-to-left"``, ``"random"`` or a permutation of
            ``1..D`` giving each input dim its degree.
        context_features: width of the conditioning input; when ``None`` and the net is built
            on first use, it is taken from the first ``context`` (none: an unconditional net).
        zero_last: start the output layer at zero, so a flow built on the network starts as a
            fixed map that ignores its input (the identity for splines and ``scale="exp"``
            MAFs, a uniform widening by 1/0.69 for the default softplus MAF); the hidden
            layers then get no gradient at the first step.
        init: how the layers start: ``"torch"`` (the default) as ``torch.nn.Linear`` does,
            weights and biases :math:`U(\pm 1/\sqrt{n_\text{in}})`, the output layer too (as
            nflows and zuko start); ``"glorot"``, nfkit's start before 2026-12: Glorot-uniform
            over the connections that exist, biases :math:`U(\pm 1/\sqrt{\text{fan-in}})`,
            the output layer Glorot times ``output_scale`` with zero biases. Measured
            (``benchmarks/learning_per_step.py``, 600 steps, 10 seeds): the torch start with
            a drawn output layer teaches more per step than the glorot start with a zero
            output layer (MAF 0.661 against 0.730 nats at lr 1e-3, 0.585 against 0.755 at
            1e-2; NSF-AR 0.376 against 0.392 and 0.397 against 0.485), and is level on the
            chapter's 50 epochs (median of 10 seeds 0.625 against 0.611).
        output_scale: a factor on the output layer's start (with ``zero_last=False``); 0.1
            starts close to the fixed map while the hidden layers still get gradient.
        conditional: TFP's: a conditional network, its context of width
            ``conditional_event_shape`` (``C`` or ``[C]``) given as ``context=`` or, TFP's
            name, ``conditional_input=``.
        conditional_event_shape: the context's width (TFP's name for ``context_features``).
        conditional_input_layers: TFP's ``"all_layers"`` or ``"first_layer"``; both accepted,
            and the context enters at the first layer, reaching every later one through the
            degree-0 hidden units (a documented difference from TFP's ``"all_layers"``).
        kernel_initializer: TFP's: draw every layer's weights, the output layer's included
            (then ``zero_last`` does not apply), with ``"glorot_uniform"`` (TFP's default),
            ``"glorot_normal"``, ``"he_uniform"``, ``"he_normal"``, ``"lecun_normal"``,
            ``"zeros"`` or a function that fills a tensor in place (``torch.nn.init``'s);
            biases start at zero, as TFP's. ``None``: nfkit's start, above.

    Shapes: input ``(*, D)``, context ``(*, C)``, output ``(*, D, params)``: the conditioner
    convention (:class:`Conditioner`) with ``units = D``, which may be left out
    (``net(x)``, as in TFP).

    Parameters are created on the first call when ``event_shape`` is not given (the chapter never
    passes it); build an optimizer after that call, or call :meth:`build` first.

    References:
        Germain, Gregor, Murray, Larochelle. MADE: Masked Autoencoder for Distribution
        Estimation. ICML 2015. https://arxiv.org/abs/1502.03509

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> _ = torch.manual_seed(0)
        >>> net = nfb.AutoregressiveNetwork(params=2, hidden_units=[8], activation="relu")
        >>> net(torch.zeros(5, 3)).shape
        torch.Size([5, 3, 2])

    """

    def __init__(
        self,
        params: int,
        event_shape: int | Sequence[int] | None = None,
        hidden_units: Sequence[int] = (),
        activation: Activation = None,
        input_order: str | Sequence[int] = "left-to-right",
        *,
        context_features: int | None = None,
        zero_last: bool = False,
        init: str = "torch",
        output_scale: float = 1.0,
        conditional: bool = False,
        conditional_event_shape: int | Sequence[int] | None = None,
        conditional_input_layers: str = "all_layers",
        kernel_initializer: str | Callable[[Tensor], Any] | None = None,
    ) -> None:
        super().__init__()
        # Files and state dicts name each layer's weight and bias (see _flatten).
        self.register_state_dict_post_hook(_save_layer_names)
        self.register_load_state_dict_pre_hook(_load_layer_names)
        context_features = _conditional_width(
            context_features, conditional, conditional_event_shape, conditional_input_layers
        )
        if isinstance(kernel_initializer, str) and kernel_initializer not in _INITIALIZERS:
            raise ValueError(
                f"kernel_initializer must be one of {sorted(_INITIALIZERS)} or a function, "
                f"got {kernel_initializer!r}"
            )
        self.kernel_initializer = kernel_initializer
        if not output_scale >= 0:
            raise ValueError(f"output_scale must be >= 0, got {output_scale}")
        self.output_scale, self.zero_last = float(output_scale), zero_last
        self.init = _check_init(init)
        if params < 1:
            raise ValueError(f"params must be a positive integer, got {params}")
        self.params = int(params)
        self.hidden_units = [int(h) for h in hidden_units]
        self.activation = activation
        self.input_order = input_order
        self.context_features = context_features
        self.event_size: int | None = None
        self.net: nn.Sequential | None = None
        if event_shape is not None:
            size = [event_shape] if isinstance(event_shape, int) else list(event_shape)
            if len(size) != 1:
                raise ValueError(f"event_shape must be D or [D], got {event_shape}")
            self.build(int(size[0]))

    @property
    def built(self) -> bool:
        """Whether the layers exist yet (they are made on first use)."""
        return self.net is not None

    def build(
        self,
        event_size: int,
        context_features: int | None = None,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Create the masked layers for ``event_size`` input dims."""
        if context_features is None:
            context_features = self.context_features
        self.event_size = event_size
        self.context_features = context_features
        n_context = context_features or 0
        degrees = _input_degrees(self.input_order, event_size)
        self.register_buffer("input_degrees", degrees)
        in_deg = torch.cat([torch.zeros(n_context, dtype=torch.long), degrees])
        layers: list[nn.Module] = []
        prev = in_deg
        # Degree-0 hidden units see only the context, so that the first output can depend on it.
        low = 0 if n_context else 1
        high = max(event_size - 1, low)
        for width in self.hidden_units:
            deg = low + torch.arange(width) % (high - low + 1)
            layers += [
                MaskedLinear(
                    (deg[:, None] >= prev[None, :]).long(),
                    init=self.init,
                    device=device,
                    dtype=dtype,
                ),
                activation_module(self.activation),
            ]
            prev = deg
        out_deg = degrees.repeat(self.params)
        out_mask = (out_deg[:, None] > prev[None, :]).long()
        layers.append(
            MaskedLinear(
                out_mask,
                scale=0.0 if self.zero_last else self.output_scale,
                init=self.init,
                device=device,
                dtype=dtype,
            )
        )
        self.net = nn.Sequential(*layers)
        if self.kernel_initializer is not None:
            init = self.kernel_initializer
            init = _INITIALIZERS[init] if isinstance(init, str) else init
            with torch.no_grad():
                for layer in self.net:
                    if isinstance(layer, MaskedLinear):
                        init(layer.weight)
                        layer.bias.zero_()
        self._flatten()

    def _flatten(self) -> None:
        """Move every layer's weight and bias into one parameter, ``weights`` (one tensor for
        the optimizer instead of two per layer); the layers keep their masks, and the state
        dict keeps each layer's ``weight`` and ``bias`` under their usual names.
        """
        linears = [m for m in self.net if isinstance(m, MaskedLinear)]  # type: ignore[union-attr]
        tensors = [t for layer in linears for t in (layer.weight, layer.bias)]
        self._shapes = [tuple(t.shape) for t in tensors]
        self._sizes = [t.numel() for t in tensors]
        places = [i for i, m in enumerate(self.net) if isinstance(m, MaskedLinear)]  # type: ignore[arg-type]
        self._names = [f"net.{i}.{name}" for i in places for name in ("weight", "bias")]
        self.weights = nn.Parameter(torch.cat([t.detach().reshape(-1) for t in tensors]))
        mask = _flat_mask([layer.mask for layer in linears], self._shapes[1::2])
        self.register_buffer("weight_mask", mask, persistent=False)
        for layer in linears:
            layer.register_parameter("weight", None)
            layer.register_parameter("bias", None)

    def layer_parameters(self) -> list[tuple[Tensor, Tensor]]:
        """Each masked layer's ``(weight, bias)``: views into ``weights``, so changes made in
        place (under ``torch.no_grad()``) are the network's.
        """
        views = self._views(self.weights)
        return list(zip(views[::2], views[1::2], strict=True))

    def _views(self, flat: Tensor) -> list[Tensor]:
        """``flat`` (laid out as ``weights``) cut into each layer's weight and bias, in turn."""
        pieces = flat.split(self._sizes)
        return [piece.view(shape) for piece, shape in zip(pieces, self._shapes, strict=True)]

    def zero_output(self) -> None:
        """Set the output layer to zero now (and when built later): the flow built on it
        becomes the fixed map its ``zero_last`` start is (e.g. to start at a given base).
        """
        self.zero_last = True
        if self.net is not None:
            with torch.no_grad():
                for tensor in self.layer_parameters()[-1]:
                    tensor.zero_()

    def forward(
        self,
        x: Tensor,
        units: int | None = None,
        context: Tensor | None = None,
        *,
        conditional_input: Tensor | None = None,
    ) -> Tensor:
        """Return the ``(*, D, params)`` autoregressive parameters of ``x`` (the context as
        ``context=`` or TFP's ``conditional_input=``).
        """
        if conditional_input is not None:
            if context is not None:
                raise ValueError("pass context= or conditional_input=, not both")
            context = conditional_input
        if units is not None and units != x.shape[-1]:
            raise ValueError(
                f"an autoregressive network gives parameters for every input dim: units must be "
                f"{x.shape[-1]} (the input width), got {units}"
            )
        if self.net is None:
            n_context = None if context is None else context.shape[-1]
            self.build(x.shape[-1], n_context, device=x.device, dtype=x.dtype)
        assert self.net is not None
        if x.shape[-1] != self.event_size:
            raise ValueError(
                f"expected trailing shape ({self.event_size},), got {tuple(x.shape)}: "
                f"the network was built for {self.event_size} features"
            )
        if context is not None:
            if not self.context_features:
                raise ValueError("this network was built without context_features; got a context")
            if context.shape[-1] != self.context_features:
                raise ValueError(
                    f"this network was built for a context of width {self.context_features}, "
                    f"got {context.shape[-1]}"
                )
            batch = broadcast_shapes(x.shape[:-1], context.shape[:-1])
            x = torch.cat([context.expand(*batch, -1), x.expand(*batch, -1)], dim=-1)
        elif self.context_features:
            raise ValueError(
                f"this network is conditional (context_features={self.context_features}); "
                "pass context="
            )
        # One product applies every mask; layer k's weight and bias are views 2k and 2k + 1,
        # its activation is net[2k + 1].
        views = self._views(self.weights * self.weight_mask)
        for k in range(0, len(views), 2):
            x = F.linear(x, views[k], views[k + 1])
            if k + 2 < len(views):
                x = self.net[k + 1](x)  # type: ignore[index]
        return x.unflatten(-1, (self.params, self.event_size)).transpose(-1, -2)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.built:
            config.update(event_shape=self.event_size, context_features=self.context_features)
        return config

    def extra_repr(self) -> str:
        return (
            f"params={self.params}, event_size={self.event_size}, hidden_units={self.hidden_units}"
        )


class VelocityNetwork(Configurable, nn.Module):
    r"""A time-dependent vector field :math:`v_\theta(x, t, c)` for continuous flows: an MLP
    on :math:`x`, Fourier features of the time and an optional context.

    The time enters as :math:`[t, \sin(\pi k t), \cos(\pi k t)]_{k=1..K}` concatenated to
    :math:`x` (and the context), the "concat" conditioning of FFJORD. Use a smooth
    ``activation``: the ODE solver and the divergence differentiate through the network. The
    last layer starts at zero, so a new continuous flow is the identity map. Sizes are taken
    from the first call unless ``features`` is given.

    Args:
        hidden_units: widths of the hidden layers.
        activation: activation after each hidden layer.
        time_frequencies: :math:`K`, the number of sine/cosine pairs of the time embedding.
        features: :math:`D` (builds the layers now instead of on first use).
        context_features: width of the context (with ``features``).

    References:
        Grathwohl et al., "FFJORD: Free-form Continuous Dynamics for Scalable Reversible
        Generative Models", 2019, https://arxiv.org/abs/1810.01367.

    Example:
        >>> import torch, nfkit.nets as nets
        >>> v = nets.VelocityNetwork([16], features=2)
        >>> v(torch.randn(5, 2), torch.tensor(0.5)).shape
        torch.Size([5, 2])

    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (64, 64),
        activation: Activation = "silu",
        *,
        time_frequencies: int = 3,
        features: int | None = None,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        if time_frequencies < 0:
            raise ValueError(f"time_frequencies must be >= 0, got {time_frequencies}")
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.time_frequencies = time_frequencies
        self.register_buffer(
            "frequencies",
            math.pi * torch.arange(1, time_frequencies + 1, dtype=torch.float32),
            persistent=False,
        )
        self.mlp: MLP | None = None
        if features is not None:
            self._build(features, context_features)

    def _build(
        self,
        features: int,
        context_features: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        width = features + 1 + 2 * self.time_frequencies + context_features
        self.mlp = MLP(
            width, features, self.hidden_units, activation=self.activation, zero_last=True
        ).to(device=device, dtype=dtype)
        self.frequencies = self.frequencies.to(device=device, dtype=dtype)

    def forward(self, x: Tensor, t: Tensor | float, context: Tensor | None = None) -> Tensor:
        """:math:`v(x, t, c)` for ``x`` of shape ``(*, D)`` and a scalar or ``(*,)`` time."""
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
        batch = (
            x.shape[:-1] if context is None else broadcast_shapes(x.shape[:-1], context.shape[:-1])
        )
        t = t.reshape((*t.shape, 1) if t.ndim else (1,)).expand(*batch, 1)
        parts = [x.expand(*batch, -1), t]
        if self.time_frequencies:
            angle = t * self.frequencies.to(x.dtype)
            parts += [angle.sin(), angle.cos()]
        if context is not None:
            parts.append(context.expand(*batch, -1))
        if self.mlp is None:
            context_features = 0 if context is None else context.shape[-1]
            self._build(x.shape[-1], context_features, x.device, x.dtype)
        assert self.mlp is not None
        return self.mlp(torch.cat(parts, dim=-1))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.mlp is not None:
            # Sizes as built: the input is x, the time features and the context.
            features = self.mlp[-1].out_features
            context = self.mlp[0].in_features - features - 1 - 2 * self.time_frequencies
            config.update(features=features, context_features=context)
        return config


def _channel_params(out: Tensor, params: int, units: int, event_rank: int) -> Tensor:
    """``(*, params * units, *rest)`` (parameter-major, as the last layer is laid out) to the
    conditioner convention ``(*, units, params, *rest)``.
    """
    return out.unflatten(-event_rank, (params, units)).transpose(-event_rank - 1, -event_rank)


class ConvNet(Conditioner):
    r"""Glow's coupling network for images ``(*, C, H, W)``: a 3x3 convolution, ReLU, a 1x1
    convolution, ReLU, and a zero-initialized 3x3 convolution (the coupling starts as the
    identity), padding kept so the output has the input's height and width. Built on first
    use. Called as a conditioner, ``net(x, units)`` returns ``(*, units, params, H, W)``;
    it takes no context.

    Args:
        hidden_channels: width of the two hidden layers.
        params: parameters per output channel and pixel (2: shift and scale).
        in_features: input channels; with ``units`` (output channels), builds the layers now
            instead of on first use.
        units: output channels.

    References:
        Kingma, Dhariwal, "Glow", 2018, https://arxiv.org/abs/1807.03039.

    Example:
        >>> import torch
        >>> ConvNet(8)(torch.randn(5, 3, 4, 4), 2).shape
        torch.Size([5, 2, 2, 4, 4])

    """

    def __init__(
        self,
        hidden_channels: int = 64,
        *,
        params: int = 2,
        in_features: int | None = None,
        units: int | None = None,
    ) -> None:
        super().__init__()
        self.hidden_channels, self.params = hidden_channels, params
        self.net: nn.Sequential | None = None
        if in_features is not None and units is not None:
            self._build(in_features, units)

    def _build(
        self,
        in_features: int,
        units: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        last = nn.Conv2d(self.hidden_channels, self.params * units, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.units = units
        self.net = nn.Sequential(
            nn.Conv2d(in_features, self.hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(self.hidden_channels, self.hidden_channels, 1),
            nn.ReLU(),
            last,
        ).to(device=device, dtype=dtype)

    def forward(self, inputs: Tensor, units: int, context: Tensor | None = None) -> Tensor:
        refuse_context(self, context)
        if self.net is None:
            self._build(inputs.shape[-3], units, inputs.device, inputs.dtype)
        assert self.net is not None
        _check_built(self, inputs.shape[-3], self.net[0].in_channels, units)
        batch = inputs.shape[:-3]
        out = self.net(inputs.reshape(-1, *inputs.shape[-3:]))
        out = out.reshape(*batch, *out.shape[-3:])
        return _channel_params(out, self.params, units, 3)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.net is not None:
            config.update(in_features=self.net[0].in_channels, units=self.units)
        return config


def _check_built(net: nn.Module, got: int, built: int, units: int) -> None:
    if got != built or units != net.units:  # type: ignore[attr-defined]
        raise ValueError(
            f"{type(net).__name__} was built for {built} input channels and "
            f"{net.units} units, got {got} and {units}"  # type: ignore[attr-defined]
        )


class WaveNet(Conditioner):
    r"""A WaveNet-style network for sequences ``(*, C, T)``: a 1x1 convolution to
    ``hidden_channels``, then ``layers`` residual blocks of dilated causal convolutions
    (dilation :math:`2^l`, so the receptive field is :math:`2^{L}(k-1) + 1` steps) with gated
    activations :math:`\tanh(a) \odot \sigma(b)`, skip connections summed, and a
    zero-initialized 1x1 convolution (a coupling built on it starts as the identity). Built on
    first use. Called as a conditioner, ``net(x, units)`` returns ``(*, units, params, T)``;
    it takes no context.

    Args:
        hidden_channels: residual and skip width.
        layers: residual blocks.
        kernel_size: width of the dilated convolutions.
        params: parameters per output channel and step (2: shift and scale).
        in_features: input channels; with ``units`` (output channels), builds the layers now
            instead of on first use.
        units: output channels.

    References:
        van den Oord et al., "WaveNet: A Generative Model for Raw Audio", 2016,
        https://arxiv.org/abs/1609.03499; Kim et al., "FloWaveNet", ICML 2019,
        https://arxiv.org/abs/1811.02155.

    Example:
        >>> import torch
        >>> WaveNet(8, layers=3)(torch.randn(2, 3, 16), 4).shape
        torch.Size([2, 4, 2, 16])

    """

    def __init__(
        self,
        hidden_channels: int = 32,
        *,
        layers: int = 4,
        kernel_size: int = 3,
        params: int = 2,
        in_features: int | None = None,
        units: int | None = None,
    ) -> None:
        super().__init__()
        self.hidden_channels, self.params = hidden_channels, params
        self.layers, self.kernel_size = layers, kernel_size
        self.front: nn.Conv1d | None = None
        if in_features is not None and units is not None:
            self._build(in_features, units)

    def _build(
        self,
        in_features: int,
        units: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        h = self.hidden_channels
        self.units = units
        self.front = nn.Conv1d(in_features, h, 1)
        self.dilated = nn.ModuleList(
            nn.Conv1d(h, 2 * h, self.kernel_size, dilation=2**i) for i in range(self.layers)
        )
        # The last block's residual output would feed nothing: only its skip is kept.
        self.residual = nn.ModuleList(nn.Conv1d(h, h, 1) for _ in range(self.layers - 1))
        self.skip = nn.ModuleList(nn.Conv1d(h, h, 1) for _ in range(self.layers))
        self.out = nn.Conv1d(h, self.params * units, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.to(device=device, dtype=dtype)

    def forward(self, inputs: Tensor, units: int, context: Tensor | None = None) -> Tensor:
        refuse_context(self, context)
        if self.front is None:
            self._build(inputs.shape[-2], units, inputs.device, inputs.dtype)
        assert self.front is not None
        _check_built(self, inputs.shape[-2], self.front.in_channels, units)
        batch = inputs.shape[:-2]
        h = self.front(inputs.reshape(-1, *inputs.shape[-2:]))
        skips = torch.zeros_like(h)
        for i, (conv, skip) in enumerate(zip(self.dilated, self.skip, strict=True)):
            pad = (self.kernel_size - 1) * 2**i  # causal: pad on the left only
            a, b = conv(F.pad(h, (pad, 0))).chunk(2, dim=-2)
            gated = torch.tanh(a) * torch.sigmoid(b)
            skips = skips + skip(gated)
            if i < len(self.residual):
                h = h + self.residual[i](gated)
        out = self.out(torch.relu(skips))
        return _channel_params(out.reshape(*batch, *out.shape[-2:]), self.params, units, 2)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.front is not None:
            config.update(in_features=self.front.in_channels, units=self.units)
        return config


class ContextEmbedding(Configurable, nn.Module):
    r"""What a conditional flow does to its context first: standardize it,
    :math:`(c - m) / s` (fixed statistics of the training contexts, so the model takes raw
    values), then an optional ``network`` of summary statistics, trained with the flow.

    Args:
        loc: :math:`m`, of the context's shape (one value per feature or element).
        scale: :math:`s`.
        network: a module from standardized contexts ``(*, *context_shape)`` to ``(*, k)``
            (e.g. a 1-D conv net over a time series); ``None``: the standardized context.

    Example:
        >>> import torch
        >>> e = ContextEmbedding([1.0, 2.0], [2.0, 4.0])
        >>> e(torch.tensor([[3.0, 2.0]]))
        tensor([[1., 0.]])

    """

    def __init__(self, loc: Any, scale: Any, network: nn.Module | None = None) -> None:
        super().__init__()
        self.register_buffer("loc", torch.as_tensor(loc, dtype=torch.get_default_dtype()))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.get_default_dtype()))
        if not bool((self.scale > 0).all()):
            raise ValueError("ContextEmbedding needs positive scales")
        self.network = network

    @classmethod
    def of(cls, contexts: Tensor, network: nn.Module | None = None) -> ContextEmbedding:
        """The embedding standardizing ``contexts`` (rows ``(n, *shape)``; constant entries
        keep scale 1).
        """
        std = contexts.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(contexts.mean(0), std, network)

    def features(self, contexts: Tensor) -> int:
        """The width ``k`` of the embedding of ``contexts`` (one evaluation of two rows)."""
        with torch.no_grad():
            out = self(contexts[:2].to(self.loc))
        if out.ndim != 2:
            raise ValueError(
                f"the embedding network must return rows (n, k), got shape {tuple(out.shape)}"
            )
        return out.shape[-1]

    def forward(self, context: Tensor) -> Tensor:
        standardized = (context - self.loc) / self.scale
        return standardized if self.network is None else self.network(standardized)

    def get_config(self) -> dict[str, Any]:
        return {"loc": self.loc, "scale": self.scale, "network": self.network}
