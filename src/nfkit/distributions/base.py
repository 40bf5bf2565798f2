r"""The distribution protocol: ``sample``/``rsample``/``log_prob`` with TFP's shape semantics."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nfkit._config import Configurable
from nfkit._tensors import as_size, broadcast_shapes

__all__ = [
    "BijectorKwargs",
    "Distribution",
    "PushedForward",
    "SampleShape",
    "context_from",
    "evaluation_mode",
    "gaussian_noise",
]

SampleShape = int | Sequence[int] | torch.Size

CHUNK_ROWS = 4096
"""Rows that :meth:`Distribution.log_prob` and :meth:`Distribution.sample` evaluate at once when
no gradient is asked for: a 4096-row block of a flow's activations stays in the CPU's caches,
which halves the time of 100,000-point evaluations (``benchmarks/chunks.py``); the numbers
are the same. ``None`` turns chunking off."""

# The temperature of the ``sample`` call in progress, and whether a Gaussian used it.
_TEMPERATURE: ContextVar[list | None] = ContextVar("nfkit_temperature", default=None)


def gaussian_noise(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Standard normal noise for a Gaussian's draws, scaled by the ``temperature`` of the
    :meth:`Distribution.sample` call in progress (1 outside one).
    """
    eps = torch.randn(shape, dtype=dtype, device=device)
    state = _TEMPERATURE.get()
    if state is None:
        return eps
    state[1] = True
    return eps * state[0]


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """Evaluate ``module`` without gradients: in ``torch.inference_mode()``, or in
    ``torch.no_grad()`` when one of its parts differentiates inside its own evaluation (an ODE
    flow's divergence, a Langevin step: attribute ``autograd_at_eval = True``), which inference
    mode forbids. Networks built lazily during the evaluation get ordinary (trainable) tensors.
    """
    if any(getattr(m, "autograd_at_eval", False) for m in module.modules()):
        with torch.no_grad():
            yield
        return
    with torch.inference_mode():
        yield
    for part in module.modules():  # a lazy network built just now holds inference tensors
        for name, param in list(part._parameters.items()):
            if param is not None and param.is_inference():
                part._parameters[name] = nn.Parameter(param.clone(), param.requires_grad)
        for name, buffer in list(part._buffers.items()):
            if buffer is not None and buffer.is_inference():
                part._buffers[name] = buffer.clone()


def _never() -> bool:
    return False


def _shape_str(shape: torch.Size) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


BijectorKwargs = dict[str, Any] | None


def context_from(context: Any, bijector_kwargs: BijectorKwargs) -> Any:
    """The ``context=`` of nfkit from TFP's ``bijector_kwargs=``: ``{"conditional_input": c}``, or
    the same nested under bijector names (``{"maf1": {"conditional_input": c}, ...}``). nfkit
    hands one context to every layer, so the named inputs must be one tensor (an error
    otherwise, never a silent choice).
    """
    if bijector_kwargs is None:
        return context
    if context is not None:
        raise ValueError("pass context= or bijector_kwargs=, not both")
    found: list[Any] = []

    def walk(kwargs: dict[str, Any]) -> None:
        for key, value in kwargs.items():
            if key == "conditional_input":
                found.append(value)
            elif isinstance(value, dict):
                walk(value)
            else:
                raise ValueError(
                    f"bijector_kwargs: nfkit's layers take conditional_input only, got {key!r}"
                )

    walk(bijector_kwargs)
    if not found:
        return None
    first, *others = (v if isinstance(v, Tensor) else torch.as_tensor(np.asarray(v)) for v in found)
    for other in others:
        if other.shape != first.shape or not torch.equal(other.to(first), first):
            raise NotImplementedError(
                "bijector_kwargs gives different conditional inputs to different bijectors; "
                "nfkit passes one context to every layer (concatenate them into one context)"
            )
    return found[0]


class Distribution(Configurable, nn.Module):
    r"""A probability distribution as an ``nn.Module``.

    Shapes follow TensorFlow Probability (chapter 7.6.2): a sample has shape
    ``sample_shape + batch_shape + event_shape``. ``event_shape`` is the shape of one draw,
    ``batch_shape`` indexes independent distributions with different parameters, and
    ``sample_shape`` counts draws. ``log_prob`` reduces over the event dims only.

    A subclass sets ``batch_shape`` and ``event_shape`` and implements ``_rsample(shape, context)``
    (``shape`` = ``sample_shape + batch_shape``) and ``_log_prob(value, context)``; the public
    methods check and convert their inputs once.

    Being a module, a distribution moves with ``.to(device)``, casts with ``.double()``, and hands
    its trainable parameters to an optimizer through ``parameters()``.
    """

    tfp_keywords = True
    name: str
    validate_args: bool

    def __init__(self, batch_shape: Sequence[int] = (), event_shape: Sequence[int] = ()) -> None:
        super().__init__()
        self._batch_shape = torch.Size(batch_shape)
        self._event_shape = torch.Size(event_shape)
        # TFP's keywords, set by the constructor's recorder when given (see Configurable).
        object.__setattr__(self, "name", type(self).__name__)
        object.__setattr__(self, "validate_args", False)

    # --- what subclasses implement -------------------------------------------------------------

    def _rsample(self, shape: torch.Size, context: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _log_prob(self, value: Tensor, context: Tensor | None) -> Tensor:
        raise NotImplementedError

    # --- shapes, dtype, device -----------------------------------------------------------------

    @property
    def batch_shape(self) -> torch.Size:
        """Shape of the batch of independent distributions this object represents."""
        return self._batch_shape

    @property
    def event_shape(self) -> torch.Size:
        """Shape of a single draw."""
        return self._event_shape

    def _reference(self) -> Tensor | None:
        for t in self.buffers():
            if t.is_floating_point():
                return t
        for t in self.parameters():
            if t.is_floating_point():
                return t
        return None

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of samples and densities (float32 unless cast with ``.double()``)."""
        ref = self._reference()
        return torch.get_default_dtype() if ref is None else ref.dtype

    @property
    def device(self) -> torch.device:
        """Device the distribution's tensors live on."""
        ref = self._reference()
        return torch.device("cpu") if ref is None else ref.device

    # --- public API ----------------------------------------------------------------------------

    def rsample(
        self,
        sample_shape: SampleShape = (),
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> Tensor:
        """Draw reparametrized samples of shape ``sample_shape + batch_shape + event_shape``;
        gradients flow back to the parameters. With a context ``(C,)`` every sample shares
        it; a batch of contexts ``(B, C)`` adds its batch dims after ``sample_shape``:
        ``sample(n, context=c)`` is ``(n, B, *event_shape)``. TFP's
        ``bijector_kwargs={"conditional_input": c}`` gives the context TFP's way
        (:func:`context_from`): it broadcasts against ``sample_shape`` instead, so ``n``
        contexts give ``n`` samples.
        """
        sample_shape, context = self._sampling_context(sample_shape, context, bijector_kwargs)
        shape = sample_shape + self._context_batch(context) + self.batch_shape
        return self._rsample(shape, context)

    def sample(
        self,
        sample_shape: SampleShape = (),
        *,
        context: Tensor | None = None,
        seed: int | None = None,
        temperature: float | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> Tensor:
        """Draw samples of shape ``sample_shape + batch_shape + event_shape``, without gradients.

        Args:
            sample_shape: how many (a shape).
            context: the conditioning input of a conditional distribution.
            seed: draw from a generator seeded so (torch's global one is left as it was).
            temperature: scale the noise of the Gaussian base by this (Kingma & Dhariwal
                2018): below 1 draws from the dense core, above 1 from the tails. Only for
                distributions drawn from Gaussian noise (an error otherwise).
            bijector_kwargs: TFP's way to give the context (:func:`context_from`).

        Example:
            >>> import nfkit.distributions as nfd
            >>> d = nfd.MultivariateNormalDiag(loc=[0.0, 0.0])
            >>> d.sample((5, 3)).shape
            torch.Size([5, 3, 2])
            >>> bool((d.sample(4, seed=1) == d.sample(4, seed=1)).all())
            True
            >>> float(d.sample(10_000, seed=0, temperature=0.5).std()) < 0.55
            True

        """
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        with contextlib.ExitStack() as stack:
            if seed is not None:
                cuda = [self.device.index or 0] if self.device.type == "cuda" else []
                stack.enter_context(torch.random.fork_rng(devices=cuda))
                torch.manual_seed(seed)
            state = None if temperature is None else [float(temperature), False]
            token = _TEMPERATURE.set(state)
            try:
                with torch.no_grad():
                    out = self.rsample(
                        sample_shape, context=context, bijector_kwargs=bijector_kwargs
                    )
            finally:
                _TEMPERATURE.reset(token)
        if state is not None and not state[1]:
            raise ValueError(
                f"temperature= needs draws from Gaussian noise; {type(self).__name__} has none"
            )
        return out

    # --- closed-form statistics (TFP's names), where the family has them ----------------------

    def _no_closed_form(self, what: str) -> Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form {what}; estimate it from sample()"
        )

    def mean(self) -> Tensor:
        """The mean, of shape ``batch_shape + event_shape``."""
        return self._no_closed_form("mean")

    def variance(self) -> Tensor:
        """The variance of each coordinate, of shape ``batch_shape + event_shape``."""
        return self._no_closed_form("variance")

    def stddev(self) -> Tensor:
        """The standard deviation of each coordinate (the square root of :meth:`variance`)."""
        return self.variance().sqrt()

    def covariance(self) -> Tensor:
        """The covariance matrix of a vector event, ``batch_shape + (D, D)``; a diagonal one
        from :meth:`variance` unless the family correlates its coordinates.
        """
        if len(self.event_shape) != 1:
            raise ValueError(f"covariance() needs vector events, got {list(self.event_shape)}")
        return torch.diag_embed(self.variance())

    def mode(self) -> Tensor:
        """The most likely value, of shape ``batch_shape + event_shape``."""
        return self._no_closed_form("mode")

    def entropy(self) -> Tensor:
        r"""The differential entropy :math:`-\mathbb E[\log p(x)]`, of shape ``batch_shape``."""
        return self._no_closed_form("entropy")

    def log_prob(
        self,
        value: Tensor | np.ndarray,
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> Tensor | np.ndarray:
        """Log-density of ``value`` (shape ``(*, *event_shape)``), reduced over the event dims.

        Tensors in, tensors out (differentiable; a tensor on another device is moved to this
        distribution's, so a flow moved with ``.to("cuda")`` takes CPU data). A numpy array or
        list in (the chapter's ``td.log_prob(zgrid)``) is cast to this distribution's dtype,
        evaluated without gradients, and answered with a numpy array, so
        ``np.exp(td.log_prob(grid))`` works. TFP's ``bijector_kwargs=`` gives the context
        as :func:`context_from` reads it.
        """
        tensor, from_numpy = self._as_input(value)
        context = self._as_context(context_from(context, bijector_kwargs))
        log_prob = functools.partial(self._log_prob, context=context)
        if from_numpy:
            with evaluation_mode(self):
                return self._checked(self.in_chunks(log_prob, tensor, context)).cpu().numpy()
        return self._checked(self.in_chunks(log_prob, tensor, context))

    def _checked(self, log_prob: Tensor) -> Tensor:
        """With ``validate_args=True``, refuse values outside the support (a ``-inf`` or NaN
        log-density) instead of returning them.
        """
        if self.validate_args and not bool(torch.isfinite(log_prob).all()):
            bad = int((~torch.isfinite(log_prob)).sum())
            raise ValueError(
                f"{self.name}: {bad} value{'s' if bad != 1 else ''} outside the support "
                "(validate_args=True)"
            )
        return log_prob

    def prob(
        self,
        value: Tensor | np.ndarray,
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> Tensor | np.ndarray:
        """Density of ``value``: the exponential of :meth:`log_prob` (numpy in, numpy out)."""
        log_p = self.log_prob(value, context=context, bijector_kwargs=bijector_kwargs)
        return np.exp(log_p) if isinstance(log_p, np.ndarray) else log_p.exp()

    def sample_and_log_prob(
        self,
        sample_shape: SampleShape = (),
        *,
        context: Tensor | None = None,
        bijector_kwargs: BijectorKwargs = None,
    ) -> tuple[Tensor, Tensor]:
        """Reparametrized samples and their log-density, computed together."""
        sample_shape, context = self._sampling_context(sample_shape, context, bijector_kwargs)
        x = self.rsample(sample_shape, context=context)
        return x, self._log_prob(x, context)

    def in_chunks(
        self, fn: Callable[[Tensor], Tensor], value: Tensor, context: Tensor | None
    ) -> Tensor:
        """``fn(value)``, or, without gradients, ``fn`` on blocks of :data:`CHUNK_ROWS` rows of
        ``value``'s first (sample) dim, concatenated: the same numbers with less memory
        traffic. Not when the rows share a batch with a context's rows, nor when some part
        of the model depends on the batch (:meth:`Bijector.batch_dependent`).
        """
        sample_dims = value.ndim - len(self.batch_shape) - len(self.event_shape)
        if (
            CHUNK_ROWS is None
            or sample_dims < 1
            or value.shape[0] <= CHUNK_ROWS
            or torch.is_grad_enabled()
            or (context is not None and context.ndim > 1)
            or any(getattr(m, "batch_dependent", _never)() for m in self.modules())
        ):
            return fn(value)
        return torch.cat([fn(part) for part in value.split(CHUNK_ROWS)])

    def _as_context(self, context: Tensor | np.ndarray | None) -> Tensor | None:
        """A context as a tensor of this distribution's dtype and device (numpy and lists
        too), refused when it holds NaN or inf.
        """
        if context is None:
            return None
        if not isinstance(context, Tensor):
            context = torch.as_tensor(np.asarray(context, dtype=np.float64))
        context = context.to(device=self.device, dtype=self.dtype)
        if not bool(torch.isfinite(context).all()):
            raise ValueError("the context has NaN or inf values")
        return context

    def _sampling_context(
        self, sample_shape: SampleShape, context: Any, bijector_kwargs: BijectorKwargs
    ) -> tuple[torch.Size, Tensor | None]:
        """The sample shape and context of a sampling call. A context given TFP's way
        (``bijector_kwargs=``) broadcasts against the sample shape, as in TFP
        (``sample(n, bijector_kwargs={"conditional_input": c})`` with ``c`` of shape
        ``(n, C)`` gives ``n`` samples, one per row); nfkit's ``context=`` adds its batch
        dims after the sample shape instead.
        """
        if bijector_kwargs is None:
            return as_size(sample_shape), self._as_context(context)
        context = self._as_context(context_from(context, bijector_kwargs))
        if context is None or context.ndim < 2:
            return as_size(sample_shape), context
        shape = broadcast_shapes(as_size(sample_shape), context.shape[:-1])
        return torch.Size(()), context.expand(*shape, context.shape[-1])

    def _context_batch(self, context: Tensor | None) -> torch.Size:
        """The batch dims a context adds to samples (all but its last, the features)."""
        return torch.Size(()) if context is None else context.shape[:-1]

    def _as_input(self, value: Tensor | np.ndarray) -> tuple[Tensor, bool]:
        from_numpy = not isinstance(value, Tensor)
        if from_numpy:
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise TypeError(f"expected numbers, got an array of dtype {array.dtype}")
            tensor = torch.as_tensor(array, dtype=self.dtype, device=self.device)
        elif not value.is_floating_point():
            tensor = value.to(self.dtype)
        elif value.dtype != self.dtype:
            raise TypeError(
                f"expected {self.dtype} input, got {value.dtype}: cast the data with "
                f".to({self.dtype}) or the distribution with .to({value.dtype})"
            )
        else:
            tensor = value
        if tensor.device != self.device:
            tensor = tensor.to(self.device)  # data follows the distribution (differentiably)
        n_event = len(self.event_shape)
        if tensor.ndim < n_event or tensor.shape[tensor.ndim - n_event :] != self.event_shape:
            size = tuple(self.event_shape)
            raise ValueError(
                f"expected trailing shape {size}, got {tuple(tensor.shape)}: the distribution "
                f"has event shape {size}" + (f", {size[0]} features" if n_event == 1 else "")
            )
        return tensor, from_numpy

    def as_torch(self) -> torch.distributions.Distribution:
        """This distribution as a ``torch.distributions.Distribution`` (for Pyro, ``kl``, ...)."""
        from nfkit.distributions.torch_compat import AsTorchDistribution

        return AsTorchDistribution(self)

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return (
            f"<nfkit.distributions.{type(self).__name__} {self.name!r} "
            f"batch_shape={_shape_str(self.batch_shape)} "
            f"event_shape={_shape_str(self.event_shape)} dtype={dtype}>"
        )


class PushedForward(Distribution):
    """A distribution built on a base ``self.distribution``, whose dtype and device it takes."""

    distribution: Distribution

    @property
    def dtype(self) -> torch.dtype:
        """The base distribution's dtype."""
        return self.distribution.dtype

    @property
    def device(self) -> torch.device:
        """The base distribution's device."""
        return self.distribution.device
