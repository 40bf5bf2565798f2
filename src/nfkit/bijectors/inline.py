r"""``Inline``: a bijector from plain functions, as TFP's ``tfb.Inline``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from nfkit.bijectors.base import Bijector

__all__ = ["Inline"]

Fn = Callable[[Tensor], Tensor]


class Inline(Bijector):
    r"""A bijector whose maps and log-determinants are the functions given (TFP's ``Inline``).

    Give ``forward_fn`` and/or ``inverse_fn`` and one log-det function at least: the other
    log-det is derived, :math:`\log|\det J_f(z)| = -\log|\det J_{f^{-1}}(f(z))|`. The
    log-det functions cover ``forward_min_event_ndims`` trailing dims (return one value per
    event). An ``Inline`` holds Python functions, so it cannot go into a model file (saving
    names the problem); subclass :class:`Bijector` and register it for that.

    Args:
        forward_fn: :math:`z \mapsto x`.
        inverse_fn: :math:`x \mapsto z`.
        inverse_log_det_jacobian_fn: :math:`x \mapsto \log|\det J_{f^{-1}}(x)|`.
        forward_log_det_jacobian_fn: :math:`z \mapsto \log|\det J_f(z)|`.
        forward_event_shape_fn: event shape after ``forward`` (default: unchanged).
        inverse_event_shape_fn: event shape after ``inverse`` (default: unchanged).
        is_constant_jacobian: whether the log-det is the same everywhere.
        forward_min_event_ndims: the event rank the functions act on (default 0).
        inverse_min_event_ndims: the event rank on the data side (default the same).

    Example:
        >>> import torch, nfkit.bijectors as nfb
        >>> exp = nfb.Inline(
        ...     forward_fn=torch.exp,
        ...     inverse_fn=torch.log,
        ...     inverse_log_det_jacobian_fn=lambda y: -torch.log(y).sum(-1),
        ...     forward_min_event_ndims=1,
        ...     name="exp",
        ... )
        >>> exp.forward(torch.tensor([1.0, 2.0]))
        tensor([2.7183, 7.3891])
        >>> exp.forward_log_det_jacobian(torch.tensor([1.0, 2.0]))  # derived: 1 + 2
        tensor(3.)

    """

    def __init__(
        self,
        forward_fn: Fn | None = None,
        inverse_fn: Fn | None = None,
        inverse_log_det_jacobian_fn: Fn | None = None,
        forward_log_det_jacobian_fn: Fn | None = None,
        forward_event_shape_fn: Callable[[torch.Size], Sequence[int]] | None = None,
        forward_event_shape_tensor_fn: Callable | None = None,
        inverse_event_shape_fn: Callable[[torch.Size], Sequence[int]] | None = None,
        inverse_event_shape_tensor_fn: Callable | None = None,
        is_constant_jacobian: bool = False,
        forward_min_event_ndims: int | None = None,
        inverse_min_event_ndims: int | None = None,
    ) -> None:
        super().__init__(
            forward_min_event_ndims=0
            if forward_min_event_ndims is None
            else forward_min_event_ndims,
            inverse_min_event_ndims=inverse_min_event_ndims,
            is_constant_jacobian=is_constant_jacobian,
        )
        if forward_fn is None and inverse_fn is None:
            raise ValueError("Inline needs forward_fn or inverse_fn")
        if forward_log_det_jacobian_fn is None and inverse_log_det_jacobian_fn is None:
            raise ValueError(
                "Inline needs forward_log_det_jacobian_fn or inverse_log_det_jacobian_fn"
            )
        self._fns = {
            "_forward": forward_fn,
            "_inverse": inverse_fn,
            "_forward_log_det_jacobian": forward_log_det_jacobian_fn,
            "_inverse_log_det_jacobian": inverse_log_det_jacobian_fn,
        }
        # TFP's *_tensor_fn variants compute the same shapes; the static ones serve both here.
        self._shape_fns = (
            forward_event_shape_fn or forward_event_shape_tensor_fn,
            inverse_event_shape_fn or inverse_event_shape_tensor_fn,
        )

    def _defines(self, method: str) -> bool:
        return self._fns[method] is not None

    def _forward(self, z: Tensor) -> Tensor:
        return self._fns["_forward"](z)  # type: ignore[misc]

    def _inverse(self, x: Tensor) -> Tensor:
        return self._fns["_inverse"](x)  # type: ignore[misc]

    def _forward_log_det_jacobian(self, z: Tensor) -> Tensor:
        return self._fns["_forward_log_det_jacobian"](z)  # type: ignore[misc]

    def _inverse_log_det_jacobian(self, x: Tensor) -> Tensor:
        return self._fns["_inverse_log_det_jacobian"](x)  # type: ignore[misc]

    def _forward_event_shape(self, input_shape: torch.Size) -> torch.Size:
        fn = self._shape_fns[0]
        return input_shape if fn is None else torch.Size([int(n) for n in fn(input_shape)])

    def _inverse_event_shape(self, output_shape: torch.Size) -> torch.Size:
        fn = self._shape_fns[1]
        return output_shape if fn is None else torch.Size([int(n) for n in fn(output_shape)])
