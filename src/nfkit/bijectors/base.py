r"""The bijector protocol: ``Bijector``, its composition ``Chain`` and its reversal ``Invert``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nfkit._config import Configurable
from nfkit._tensors import broadcast_shapes

__all__ = ["Bijector", "Chain", "Context", "Invert", "NotInvertibleError", "Pair"]

Context = torch.Tensor | None
"""An optional conditioning tensor, passed as ``context=`` to every method."""
Pair = tuple[torch.Tensor, torch.Tensor]
"""A value and its log-det."""


def accepts_arrays(method: Any) -> Any:
    """Let a bijector method take numbers, lists and numpy arrays as well as tensors (TFP's
    ``tfb.Exp()([-1., 0., 1.])``): they are cast to the bijector's dtype and device,
    evaluated without gradients, and the results come back as numpy arrays, as
    :meth:`~nfkit.distributions.Distribution.log_prob` does.
    """

    @functools.wraps(method)
    def wrapper(self: Bijector, value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return method(self, value, *args, **kwargs)
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"{type(self).__name__} takes a tensor, an array or numbers, got "
                f"{type(value).__name__}"
            ) from None
        tensors = [t for t in [*self.parameters(), *self.buffers()] if t.is_floating_point()]
        like = tensors[0] if tensors else torch.empty(0)
        with torch.no_grad():
            out = method(self, torch.as_tensor(array, dtype=like.dtype, device=like.device),
                         *args, **kwargs)  # fmt: skip
        if isinstance(out, tuple):
            return tuple(o.cpu().numpy() for o in out)
        return out.cpu().numpy()

    return wrapper


def parameter_batch_shape(parameter: torch.Tensor, event_ndims: int, extra: int = 0) -> torch.Size:
    """The batch part of a parameter broadcast against inputs with ``event_ndims`` event dims;
    ``extra``: the parameter's own dims beyond the input's (1 for a matrix acting on vectors).
    """
    return parameter.shape[: max(0, parameter.ndim - extra - event_ndims)]


class NotInvertibleError(NotImplementedError):
    """Raised when a bijector has no analytic inverse in the asked direction."""


def _reduce_log_det(log_det: torch.Tensor, batch_shape: torch.Size, extra: int) -> torch.Tensor:
    """Broadcast a log-det to ``batch_shape`` and sum it over its ``extra`` last dims (the
    event dims beyond the bijector's own).
    """
    if log_det.shape != batch_shape:
        log_det = log_det.expand(batch_shape)
    if extra:
        log_det = log_det.sum(dim=tuple(range(-extra, 0)))
    return log_det


class Bijector(Configurable, nn.Module):
    r"""An invertible map :math:`x = f(z)` with a tractable log-determinant of its Jacobian.

    Direction, as in TensorFlow Probability and distrax: ``forward`` maps the base space to the
    data space (:math:`z \mapsto x`, the *sampling* direction) and ``inverse`` maps data to base
    (:math:`x \mapsto z`, the *density* direction). By the change of variables,

    .. math:: \log p_X(x) = \log p_Z(f^{-1}(x)) + \log\left|\det J_{f^{-1}}(x)\right|.

    A subclass implements two methods and inherits everything else:

    * ``_forward_and_log_det(z, context)`` returns ``(x, log|det J_f(z)|)``;
    * ``_inverse_and_log_det(x, context)`` returns ``(z, log|det J_{f^{-1}}(x)|)``; leave it out
      when no analytic inverse exists and a ``NotInvertibleError`` is raised instead.

    The log-det they return covers ``forward_min_event_ndims`` trailing dims and broadcasts over
    all dims to their left (the batch dims). The public methods broadcast it to the full batch
    shape and, given ``event_ndims`` larger than the bijector's own, sum it over the extra dims.

    Calling a bijector applies ``forward`` to a tensor, composes with another bijector
    (``Shift(s)(Scale(c))`` is ``Chain([Shift(s), Scale(c)])``) and transforms a distribution
    (``bijector(base)`` is ``TransformedDistribution(base, bijector)``).

    Every method accepts a keyword ``context`` (a conditioning tensor) that neural bijectors pass
    to their networks and all others ignore.
    """

    tfp_keywords = True
    name: str
    validate_args: bool

    forward_min_event_ndims: int = 0
    """Number of trailing dims one application of the bijector acts on (0: elementwise)."""

    is_constant_jacobian: bool = False
    """True when the log-det does not depend on the input (callers may compute it once)."""

    def __init__(
        self,
        *,
        forward_min_event_ndims: int | None = None,
        inverse_min_event_ndims: int | None = None,
        is_constant_jacobian: bool | None = None,
        validate_args: bool = False,
        name: str | None = None,
        dtype: Any = None,
        parameters: Any = None,
        graph_parents: Any = None,
    ) -> None:
        """The keywords are TFP's ``Bijector.__init__``'s, for subclasses written the TFP way
        (``super().__init__(forward_min_event_ndims=0, name=name)``); ``dtype``,
        ``parameters`` and ``graph_parents`` are accepted and unused (torch tracks both).
        nfkit's own bijectors set the class attributes instead.
        """
        super().__init__()
        # TFP's keywords, set by the constructor's recorder when given (see Configurable).
        object.__setattr__(self, "name", type(self).__name__ if name is None else str(name))
        object.__setattr__(self, "validate_args", bool(validate_args))
        if forward_min_event_ndims is not None:
            self.forward_min_event_ndims = int(forward_min_event_ndims)
        if inverse_min_event_ndims is not None:
            self._inverse_min_event_ndims = int(inverse_min_event_ndims)
        if is_constant_jacobian is not None:
            self.is_constant_jacobian = bool(is_constant_jacobian)

    # --- what subclasses implement -------------------------------------------------------------

    def batch_dependent(self) -> bool:
        """Whether a row's result depends on the other rows of its batch in the current state
        (a batch statistic, a data initialization still to come, a step size shared by the
        batch); such a model is not evaluated in chunks.
        """
        return False

    def _forward_and_log_det(self, z: torch.Tensor, context: Context) -> Pair:
        if not self._defines("_forward"):
            raise NotImplementedError(
                f"{type(self).__name__} must implement _forward_and_log_det (or TFP's _forward "
                "with _forward_log_det_jacobian or _inverse_log_det_jacobian)"
            )
        x = self._forward(z)
        if self._defines("_forward_log_det_jacobian"):
            return x, self._as_log_det(self._forward_log_det_jacobian(z), z)
        if self._defines("_inverse_log_det_jacobian"):
            return x, -self._as_log_det(self._inverse_log_det_jacobian(x), x)
        raise NotImplementedError(
            f"{type(self).__name__} defines _forward but neither _forward_log_det_jacobian nor "
            "_inverse_log_det_jacobian"
        )

    def _inverse_and_log_det(self, x: torch.Tensor, context: Context) -> Pair:
        if not self._defines("_inverse"):
            raise NotInvertibleError(
                f"{type(self).__name__} has no analytic inverse; wrap it in Invert(...) to make "
                "the cheap direction the one you need"
            )
        z = self._inverse(x)
        if self._defines("_inverse_log_det_jacobian"):
            return z, self._as_log_det(self._inverse_log_det_jacobian(x), x)
        if self._defines("_forward_log_det_jacobian"):
            return z, -self._as_log_det(self._forward_log_det_jacobian(z), z)
        raise NotImplementedError(
            f"{type(self).__name__} defines _inverse but neither _inverse_log_det_jacobian nor "
            "_forward_log_det_jacobian"
        )

    # --- TFP's four methods: an alternative to the fused pair above ----------------------------
    # A subclass written the TFP way defines _forward and/or _inverse and one of the two
    # log-dets (each on the input of its own direction); the other log-det is the negative
    # of the one given, evaluated at the other end: log|J_f(z)| = -log|J_{f^-1}(f(z))|.

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward_log_det_jacobian(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _inverse_log_det_jacobian(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _defines(self, method: str) -> bool:
        """Whether this bijector's class provides ``method`` (one of TFP's four)."""
        return getattr(type(self), method) is not getattr(Bijector, method)

    @staticmethod
    def _as_log_det(value: Any, like: torch.Tensor) -> torch.Tensor:
        # TFP's constant-Jacobian bijectors often return a Python number.
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)

    # --- public API ----------------------------------------------------------------------------

    @property
    def inverse_min_event_ndims(self) -> int:
        """Event rank in the data space (``forward_min_event_ndims`` unless set otherwise)."""
        return self.__dict__.get("_inverse_min_event_ndims", self.forward_min_event_ndims)

    # --- shapes ------------------------------------------------------------------------------

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        """The event shape after ``forward`` (TFP's hook; shape-keeping bijectors inherit it)."""
        return input_shape

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        """The event shape after ``inverse``."""
        return output_shape

    def forward_event_shape(self, input_shape: Sequence[int]) -> torch.Size:
        """The shape of ``forward``'s output for an input (event) shape, as in TFP; leading
        dims beyond the bijector's event rank pass through.
        """
        return torch.Size(self._forward_event_shape(torch.Size(input_shape)))

    def inverse_event_shape(self, output_shape: Sequence[int]) -> torch.Size:
        """The shape of ``inverse``'s output for a data-space (event) shape."""
        return torch.Size(self._inverse_event_shape(torch.Size(output_shape)))

    def forward_event_shape_tensor(self, input_shape: Any) -> torch.Tensor:
        """:meth:`forward_event_shape` as an integer tensor (TFP's dynamic-shape variant)."""
        shape = torch.as_tensor(input_shape).tolist()
        return torch.tensor(list(self.forward_event_shape(shape)), dtype=torch.int64)

    def inverse_event_shape_tensor(self, output_shape: Any) -> torch.Tensor:
        """:meth:`inverse_event_shape` as an integer tensor."""
        shape = torch.as_tensor(output_shape).tolist()
        return torch.tensor(list(self.inverse_event_shape(shape)), dtype=torch.int64)

    def _parameter_batch_shape(self, event_ndims: int) -> torch.Size:
        """The batch shape that the bijector's own parameters add when it acts on events of
        rank ``event_ndims``; none for bijectors whose parameters are networks.
        """
        return torch.Size()

    def experimental_batch_shape(self, x_event_ndims: int | None = None) -> torch.Size:
        """The batch of bijectors this object represents on inputs of event rank
        ``x_event_ndims`` (default its own), as TFP's: ``Shift([-1., 0., 1.])`` on scalars is
        a batch of 3, on vectors of length 3 a single bijector.
        """
        nd = self.forward_min_event_ndims if x_event_ndims is None else int(x_event_ndims)
        return torch.Size(self._parameter_batch_shape(nd))

    @property
    def batch_shape(self) -> torch.Size:
        """:meth:`experimental_batch_shape` at the bijector's own event rank."""
        return self.experimental_batch_shape()

    def _check_rank(self, value: torch.Tensor, event_ndims: int | None, what: str) -> int:
        least = self.inverse_min_event_ndims if what == "x" else self.forward_min_event_ndims
        nd = least if event_ndims is None else int(event_ndims)
        if nd < least:
            raise ValueError(
                f"{type(self).__name__} acts on {least} trailing dims of {what}, "
                f"event_ndims={nd} is too small"
            )
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim < nd:
            raise ValueError(
                f"{type(self).__name__} needs {what} with at least {nd} dims, got shape "
                f"{tuple(value.shape)}"
            )
        return nd

    def _reduced(
        self, log_det: torch.Tensor, z: torch.Tensor, x: torch.Tensor, extra: int
    ) -> torch.Tensor:
        """The log-det over the batch shape of ``z`` and ``x`` (a bijector with batch
        parameters broadcasts its input), summed over ``extra`` reinterpreted event dims.
        """
        batch = broadcast_shapes(
            z.shape[: z.ndim - self.forward_min_event_ndims],
            x.shape[: x.ndim - self.inverse_min_event_ndims],
        )
        return _reduce_log_det(log_det, batch, extra)

    @accepts_arrays
    def forward_and_log_det(
        self,
        z: torch.Tensor,
        *,
        event_ndims: int | None = None,
        context: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Return :math:`x = f(z)` and :math:`\log|\det J_f(z)|` in one pass."""
        nd = self._check_rank(z, event_ndims, "z")
        x, log_det = self._forward_and_log_det(z, context)
        return x, self._reduced(log_det, z, x, nd - self.forward_min_event_ndims)

    @accepts_arrays
    def inverse_and_log_det(
        self,
        x: torch.Tensor,
        *,
        event_ndims: int | None = None,
        context: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Return :math:`z = f^{-1}(x)` and :math:`\log|\det J_{f^{-1}}(x)|` in one pass."""
        nd = self._check_rank(x, event_ndims, "x")
        z, log_det = self._inverse_and_log_det(x, context)
        return z, self._reduced(log_det, z, x, nd - self.inverse_min_event_ndims)

    @accepts_arrays
    def forward(self, z: torch.Tensor, *, context: torch.Tensor | None = None) -> torch.Tensor:
        """Map base-space points ``z`` to data space (the sampling direction)."""
        return self.forward_and_log_det(z, context=context)[0]

    @accepts_arrays
    def inverse(self, x: torch.Tensor, *, context: torch.Tensor | None = None) -> torch.Tensor:
        """Map data-space points ``x`` back to base space (the density direction)."""
        return self.inverse_and_log_det(x, context=context)[0]

    @accepts_arrays
    def forward_log_det_jacobian(
        self,
        z: torch.Tensor,
        event_ndims: int | None = None,
        *,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r""":math:`\log|\det J_f(z)|`, summed over ``event_ndims`` trailing dims."""
        return self.forward_and_log_det(z, event_ndims=event_ndims, context=context)[1]

    @accepts_arrays
    def inverse_log_det_jacobian(
        self,
        x: torch.Tensor,
        event_ndims: int | None = None,
        *,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r""":math:`\log|\det J_{f^{-1}}(x)|`, summed over ``event_ndims`` trailing dims."""
        return self.inverse_and_log_det(x, event_ndims=event_ndims, context=context)[1]

    def __call__(self, value: Any, *, context: torch.Tensor | None = None) -> Any:
        """Apply ``forward`` to a tensor, compose with a bijector, or transform a distribution."""
        if isinstance(value, Bijector):
            return Chain([self, value])
        if hasattr(value, "log_prob") and hasattr(value, "event_shape"):
            # Imported here: distributions build on bijectors, never the other way round.
            from nfkit.distributions.transformed import TransformedDistribution

            return TransformedDistribution(value, bijector=self)
        return self.forward(value, context=context)

    def __repr__(self) -> str:
        extra = self.extra_repr()
        name = self.__dict__.get("name", type(self).__name__)
        named = "" if name == type(self).__name__ else f" {name!r}"
        return f"nfkit.bijectors.{type(self).__name__}({extra}){named}"


class Chain(Bijector):
    r"""The composition :math:`f_1 \circ f_2 \circ \dots \circ f_n` of a list of bijectors.

    As in TFP, ``Chain([f, g]).forward(z) == f(g(z))``: the *last* bijector in the list is applied
    first when sampling, and the first one first when evaluating a density. The log-det is the sum
    of the parts' log-dets (eq. 7.2 of the chapter); a part with a lower event rank than the chain
    has its log-det summed over the dims the chain reinterprets as event dims.

    Args:
        bijectors: the parts, outermost first.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> b = nfb.Chain([nfb.Shift(1.0), nfb.Scale(2.0)])
        >>> b.forward(torch.tensor([1.0, 2.0]))
        tensor([3., 5.])

    """

    def __init__(self, bijectors: Sequence[Bijector]) -> None:
        super().__init__()
        self.bijectors = nn.ModuleList(bijectors)
        # The event rank the chain needs on each side, walking the parts in the forward
        # direction (last first): a part that needs more dims than reach it raises the
        # chain's own rank, a part that changes the rank (Reshape) moves it (as TFP's Chain).
        need = rank = 0
        for b in reversed(self.bijectors):
            if rank < b.forward_min_event_ndims:
                need += b.forward_min_event_ndims - rank
                rank = b.forward_min_event_ndims
            rank += b.inverse_min_event_ndims - b.forward_min_event_ndims
        self.forward_min_event_ndims = need
        self._inverse_min_event_ndims = rank
        self.is_constant_jacobian = all(b.is_constant_jacobian for b in self.bijectors)

    def _ranks(self, event_ndims: int) -> list[int]:
        """The event rank at the input of each part, in the forward direction (last first)."""
        ranks = []
        for b in reversed(self.bijectors):
            ranks.append(event_ndims)
            event_ndims += b.inverse_min_event_ndims - b.forward_min_event_ndims
        return ranks

    def _forward_and_log_det(self, z: torch.Tensor, context: Context) -> Pair:
        total = z.new_zeros(())
        parts = reversed(self.bijectors)
        for b, nd in zip(parts, self._ranks(self.forward_min_event_ndims), strict=True):
            z, log_det = b.forward_and_log_det(z, event_ndims=nd, context=context)
            total = total + log_det
        return z, total

    def _inverse_and_log_det(self, x: torch.Tensor, context: Context) -> Pair:
        total = x.new_zeros(())
        nd = self._inverse_min_event_ndims
        for b in self.bijectors:
            x, log_det = b.inverse_and_log_det(x, event_ndims=nd, context=context)
            total = total + log_det
            nd += b.forward_min_event_ndims - b.inverse_min_event_ndims
        return x, total

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        for b in reversed(self.bijectors):
            input_shape = b.forward_event_shape(input_shape)
        return input_shape

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        for b in self.bijectors:
            output_shape = b.inverse_event_shape(output_shape)
        return output_shape

    def _parameter_batch_shape(self, event_ndims: int) -> torch.Size:
        shapes = [
            b.experimental_batch_shape(nd)
            for b, nd in zip(reversed(self.bijectors), self._ranks(event_ndims), strict=True)
        ]
        return broadcast_shapes(*shapes)

    @accepts_arrays
    def forward(self, z: torch.Tensor, *, context: torch.Tensor | None = None) -> torch.Tensor:
        # Each part's own forward: parts such as continuous flows skip their log-det then.
        self._check_rank(z, None, "z")
        for b in reversed(self.bijectors):
            z = b.forward(z, context=context)
        return z

    @accepts_arrays
    def inverse(self, x: torch.Tensor, *, context: torch.Tensor | None = None) -> torch.Tensor:
        self._check_rank(x, None, "x")
        for b in self.bijectors:
            x = b.inverse(x, context=context)
        return x

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(b).replace("\n", "\n  ") for b in self.bijectors)
        return f"nfkit.bijectors.Chain([\n  {inner},\n])"


class Invert(Bijector):
    r"""The inverse bijector :math:`f^{-1}`: ``forward`` and ``inverse`` swap roles.

    ``Invert(MaskedAutoregressiveFlow(...))`` is an inverse autoregressive flow (IAF): sampling
    becomes the one-pass direction and density evaluation the sequential one. Parameters are
    shared with the wrapped bijector.

    Args:
        bijector: the bijector to invert.

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> nfb.Invert(nfb.Exp()).forward(torch.tensor([1.0]))
        tensor([0.])

    """

    def __init__(self, bijector: Bijector) -> None:
        super().__init__()
        self.bijector = bijector
        self.forward_min_event_ndims = bijector.inverse_min_event_ndims
        self.is_constant_jacobian = bijector.is_constant_jacobian

    def _forward_and_log_det(self, z: torch.Tensor, context: Context) -> Pair:
        return self.bijector._inverse_and_log_det(z, context)

    def _inverse_and_log_det(self, x: torch.Tensor, context: Context) -> Pair:
        return self.bijector._forward_and_log_det(x, context)

    @property
    def inverse_min_event_ndims(self) -> int:
        return self.bijector.forward_min_event_ndims

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        return self.bijector.inverse_event_shape(input_shape)

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        return self.bijector.forward_event_shape(output_shape)

    def _parameter_batch_shape(self, event_ndims: int) -> torch.Size:
        shift = self.bijector.forward_min_event_ndims - self.bijector.inverse_min_event_ndims
        return self.bijector.experimental_batch_shape(event_ndims + shift)

    def __repr__(self) -> str:
        return f"nfkit.bijectors.Invert({self.bijector!r})"
