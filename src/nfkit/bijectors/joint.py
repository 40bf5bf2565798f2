r"""TFP's ``tfb.JointMap``: a structure of bijectors applied part by part to a structure of
values (a list or a dict), the log-dets summed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nfkit.bijectors.base import Bijector

__all__ = ["JointMap"]

Structure = Sequence[Any] | Mapping[str, Any]


class JointMap(Bijector):
    r"""Apply ``bijectors[k]`` to part ``k`` of a list or dict of values, as TFP's
    ``JointMap``: :math:`f(x_1, \dots, x_K) = (f_1(x_1), \dots, f_K(x_K))`, a block-diagonal
    Jacobian, so :math:`\log|\det J_f| = \sum_k \log|\det J_{f_k}(x_k)|`.

    Args:
        bijectors: a list or a dict (string keys) of bijectors; values come in the same
            structure.

    Example:
        >>> import torch, nfkit.bijectors as tfb
        >>> jm = tfb.JointMap([tfb.Exp(), tfb.Scale(2.0)])
        >>> y = jm.forward([torch.tensor(0.0), torch.tensor([1.0, 3.0])])
        >>> [t.tolist() for t in y]
        [1.0, [2.0, 6.0]]
        >>> float(jm.forward_log_det_jacobian([torch.tensor(1.0), torch.tensor(1.0)], [0, 0]))
        1.6931471824645996

    """

    def __init__(self, bijectors: Structure) -> None:
        super().__init__()
        self.keys: list[Any] | None = None
        if isinstance(bijectors, Mapping):
            self.keys = list(bijectors)
            parts = list(bijectors.values())
        else:
            parts = list(bijectors)
        if not all(isinstance(b, Bijector) for b in parts):
            raise TypeError("JointMap takes a list or a dict of bijectors")
        self.parts = nn.ModuleList(parts)

    def _split(self, value: Structure, what: str) -> list[Any]:
        if self.keys is None:
            if isinstance(value, Mapping) or len(value) != len(self.parts):
                raise ValueError(f"JointMap needs a list of {len(self.parts)} {what}")
            return list(value)
        if not isinstance(value, Mapping) or sorted(value) != sorted(self.keys):
            raise ValueError(f"JointMap needs a dict of {what} with keys {self.keys}")
        return [value[k] for k in self.keys]

    def _join(self, values: list[Any]) -> Structure:
        return values if self.keys is None else dict(zip(self.keys, values, strict=True))

    def _each(self, method: str, value: Structure, event_ndims: Structure | None) -> Any:
        values = self._split(value, "values")
        ndims = [None] * len(values) if event_ndims is None else self._split(event_ndims, "ranks")
        outs, log_det = [], torch.zeros(())
        for part, v, nd in zip(self.parts, values, ndims, strict=True):
            out, ld = getattr(part, method)(v, event_ndims=nd)
            outs.append(out)
            log_det = log_det + torch.as_tensor(ld)
        return self._join(outs), log_det

    def forward_and_log_det(  # type: ignore[override]
        self, z: Structure, *, event_ndims: Structure | None = None, context: Tensor | None = None
    ) -> tuple[Structure, Tensor]:
        """The parts' forwards and the sum of their log-dets."""
        return self._each("forward_and_log_det", z, event_ndims)

    def inverse_and_log_det(  # type: ignore[override]
        self, x: Structure, *, event_ndims: Structure | None = None, context: Tensor | None = None
    ) -> tuple[Structure, Tensor]:
        """The parts' inverses and the sum of their log-dets."""
        return self._each("inverse_and_log_det", x, event_ndims)

    def forward(self, z: Structure, *, context: Tensor | None = None) -> Structure:  # type: ignore[override]
        return self.forward_and_log_det(z)[0]

    def inverse(self, x: Structure, *, context: Tensor | None = None) -> Structure:  # type: ignore[override]
        return self.inverse_and_log_det(x)[0]

    def forward_log_det_jacobian(  # type: ignore[override]
        self, z: Structure, event_ndims: Structure | None = None, *, context: Tensor | None = None
    ) -> Tensor:
        return self.forward_and_log_det(z, event_ndims=event_ndims)[1]

    def inverse_log_det_jacobian(  # type: ignore[override]
        self, x: Structure, event_ndims: Structure | None = None, *, context: Tensor | None = None
    ) -> Tensor:
        return self.inverse_and_log_det(x, event_ndims=event_ndims)[1]

    def forward_event_shape(self, input_shape: Structure) -> Structure:  # type: ignore[override]
        shapes = self._split(input_shape, "shapes")
        return self._join(
            [p.forward_event_shape(s) for p, s in zip(self.parts, shapes, strict=True)]
        )

    def inverse_event_shape(self, output_shape: Structure) -> Structure:  # type: ignore[override]
        shapes = self._split(output_shape, "shapes")
        return self._join(
            [p.inverse_event_shape(s) for p, s in zip(self.parts, shapes, strict=True)]
        )

    def __call__(self, value: Any, *, context: Tensor | None = None) -> Any:
        return self.forward(value)
