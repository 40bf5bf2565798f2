r"""Flow Annealed Importance Sampling Bootstrap (FAB; Midgley, Stimper, Simm, Schölkopf &
Hernández-Lobato 2023, ICLR): training a flow :math:`q_\theta` towards :math:`p \propto
\tilde p` by the :math:`\alpha = 2` divergence

.. math:: D_2(p\,\|\,q_\theta) = \log\int \frac{p(x)^2}{q_\theta(x)}\,dx,
          \qquad \nabla_\theta D_2 = -E_{g}\big[\nabla_\theta\log q_\theta(x)\big],
          \quad g \propto p^2/q_\theta,

estimated with annealed importance sampling from :math:`q_\theta` to :math:`g` (the
importance-sampling distribution of least variance for that integral;
:mod:`nfkit.annealing` with ``alpha=2``): with chains :math:`x_i` and self-normalized AIS
weights :math:`\bar w_i` (no gradient), the loss is :math:`-\sum_i \bar w_i\log q_\theta(x_i)`
(eq. 8 there). The divergence is mass-covering, and AIS moves the samples into regions the flow
does not yet reach, so modes are found without any sample of the target.

With the prioritized replay buffer (Algorithm 2 there), each AIS run's chains go into a buffer
with their log-weights and :math:`\log q` at that time; each step draws a batch from the buffer
without replacement with probability proportional to the weights (Gumbel top-k) and minimizes
:math:`-\sum_b \bar r_b\log q_\theta(x_b)` with :math:`\bar r_b \propto q_{old}(x_b) /
q_\theta(x_b)` normalized over the batch, without gradient (the paper takes the plain mean of
:math:`r_b \log q_\theta`: the same direction, but a ratio can overflow), then corrects the
drawn points' log-weights by :math:`\log q_{old}(x_b) - \log q_\theta(x_b)`, since
:math:`g \propto p^2/q_\theta` moved with :math:`\theta`. One AIS run then serves several
steps (``replay_batches``; 4 in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nfkit.annealing import AnnealedImportanceSampler
from nfkit.distributions.base import Distribution
from nfkit.reweight import kish_ess
from nfkit.train.callbacks import Callback, NonFiniteLossError

__all__ = ["FABObjective", "ReplayBuffer"]


class ReplayBuffer:
    r"""A first-in-first-out store of AIS points with their log-weights and flow log-densities,
    sampled in proportion to the weights (FAB's prioritized replay).

    Args:
        capacity: the most points held; the oldest are overwritten.
        min_length: points needed before sampling.

    """

    def __init__(self, capacity: int, min_length: int) -> None:
        if not 0 < min_length <= capacity:
            raise ValueError(f"need 0 < min_length <= capacity, got {min_length}, {capacity}")
        self.capacity, self.min_length = capacity, min_length
        self.x: Tensor | None = None
        self.log_w = torch.empty(0, dtype=torch.float64)
        self.log_q = torch.empty(0, dtype=torch.float64)
        self.length, self.position = 0, 0

    @property
    def ready(self) -> bool:
        """Whether the buffer holds ``min_length`` points."""
        return self.length >= self.min_length

    def add(self, x: Tensor, log_w: Tensor, log_q: Tensor) -> None:
        r"""Store points ``(n, D)`` with their log-weights and :math:`\log q`, overwriting the
        oldest when full.
        """
        if self.x is None:
            self.x = x.new_zeros((self.capacity, *x.shape[1:]))
            self.log_w = log_w.new_full((self.capacity,), -math.inf, dtype=torch.float64)
            self.log_q = log_q.new_zeros((self.capacity,), dtype=torch.float64)
        index = (self.position + torch.arange(x.shape[0], device=x.device)) % self.capacity
        self.x[index] = x.detach()
        self.log_w[index] = log_w.double()
        self.log_q[index] = log_q.double()
        self.position = (self.position + x.shape[0]) % self.capacity
        self.length = min(self.length + x.shape[0], self.capacity)

    def sample(self, n: int) -> Tensor:
        """Indices of ``n`` distinct points drawn with probability proportional to their
        weights (Gumbel top-k: successive sampling without replacement).
        """
        logits = self.log_w[: self.length]
        gumbel = -torch.empty_like(logits).exponential_().log()
        return torch.topk(logits + gumbel, min(n, self.length)).indices

    def adjust(self, index: Tensor, log_w_change: Tensor, log_q: Tensor) -> None:
        r"""Add ``log_w_change`` to the log-weights of ``index`` and store their new
        :math:`\log q`.
        """
        self.log_w[index] += log_w_change.double()
        self.log_q[index] = log_q.double()

    def to(self, device: torch.device) -> None:
        """Move the stored points (a run resumed from a checkpoint loads them on the CPU)."""
        if self.x is not None and self.x.device != device:
            self.x, self.log_w, self.log_q = (
                t.to(device) for t in (self.x, self.log_w, self.log_q)
            )

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"length": self.length, "position": self.position}
        if self.x is not None:
            state.update(x=self.x, log_w=self.log_w, log_q=self.log_q)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.length, self.position = int(state["length"]), int(state["position"])
        if "x" in state:
            self.x, self.log_w, self.log_q = state["x"], state["log_w"], state["log_q"]


class FABObjective:
    r"""The FAB loss of one training step (see :mod:`nfkit.train.fab`), with or without the
    replay buffer.

    Args:
        log_target: :math:`\log\tilde p` (already tempered).
        samples: AIS chains per run (and buffer points per step).
        sampler: the annealing from the flow to :math:`p^2/q`.
        replay: use the prioritized replay buffer.
        replay_batches: steps per AIS run with the buffer.
        buffer_size: the buffer's capacity; it is filled to a tenth of it before the first
            step.

    ``pop_metrics()`` gives, for the epoch so far: ``ess``, the normalized Kish ESS of the
    flow's own samples against the target (the chains' starts); ``ais_ess``, that of the AIS
    weights for :math:`p^2/q`; ``acceptance``, the transitions' mean acceptance; ``nonfinite``,
    chains and buffer points left out.

    """

    def __init__(
        self,
        log_target: Callable[[Tensor], Tensor],
        samples: int,
        sampler: AnnealedImportanceSampler,
        *,
        replay: bool = True,
        replay_batches: int = 4,
        buffer_size: int | None = None,
    ) -> None:
        if samples < 2 or replay_batches < 1:
            raise ValueError(
                f"need samples >= 2, replay_batches >= 1; got {samples}, {replay_batches}"
            )
        self.log_target, self.samples, self.sampler = log_target, samples, sampler
        self.replay_batches = replay_batches
        capacity = buffer_size or 100 * samples
        if replay and capacity < replay_batches * samples:
            raise ValueError(
                f"buffer_size {capacity} is below one AIS run's batches ({replay_batches} x "
                f"{samples})"
            )
        self.buffer = (
            ReplayBuffer(capacity, max(capacity // 10, replay_batches * samples))
            if replay
            else None
        )
        self.pending: list[Tensor] = []
        self._metrics: dict[str, list[float]] = {"ess": [], "ais_ess": [], "acceptance": []}
        self._nonfinite = 0

    def _anneal(self, distribution: Distribution) -> tuple[Tensor, Tensor, Tensor]:
        result = self.sampler.sample(distribution, self.log_target, self.samples, alpha=2.0)
        assert result.log_q is not None and result.proposal_log_weights is not None
        self._metrics["ess"].append(kish_ess(result.proposal_log_weights))
        self._metrics["ais_ess"].append(result.ess)
        self._metrics["acceptance"].append(sum(result.acceptance) / max(len(result.acceptance), 1))
        self._nonfinite += result.dropped
        return result.samples, result.log_weights, result.log_q

    def __call__(self, distribution: Distribution, batch: Tensor | None, context: Any) -> Tensor:
        if context is not None:
            raise ValueError("FAB trains unconditional flows: drop the context")
        if self.buffer is None:
            x, log_w, _ = self._anneal(distribution)
            weights = torch.softmax(log_w, 0).to(x.dtype)
            return -(weights * distribution.log_prob(x)).sum()
        if not self.pending:
            while True:
                self.buffer.add(*self._anneal(distribution))
                if self.buffer.ready:
                    break
            index = self.buffer.sample(self.replay_batches * self.samples)
            self.pending = list(index.chunk(self.replay_batches))
        assert self.buffer.x is not None
        self.buffer.to(distribution.device)
        index = self.pending.pop(0).to(distribution.device)
        log_q = distribution.log_prob(self.buffer.x[index])
        log_ratio = self.buffer.log_q[index] - log_q.detach().double()  # log q_old / q
        finite = torch.isfinite(log_ratio)
        if not bool(finite.all()):
            self._nonfinite += int((~finite).sum())
            if not bool(finite.any()):
                raise NonFiniteLossError(
                    "every replayed point has a non-finite flow log-density; lower the lr"
                )
        self.buffer.adjust(index[finite], log_ratio[finite], log_q.detach()[finite])
        # Self-normalized over the batch (in float64: a ratio can pass float32's range): the
        # same direction as FAB's mean of ratio * log q, with a bounded scale.
        weights = torch.softmax(log_ratio[finite], 0).to(log_q.dtype)
        return -(weights * log_q[finite]).sum()

    def pop_metrics(self) -> dict[str, float]:
        """The epoch's means (see the class); resets them."""
        out = {k: sum(v) / len(v) if v else math.nan for k, v in self._metrics.items()}
        out["nonfinite"] = float(self._nonfinite)
        self._metrics = {k: [] for k in self._metrics}
        self._nonfinite = 0
        return out

    def state_dict(self) -> dict[str, Any]:
        """The buffer, the batches drawn but not yet used and the step sizes: what resuming
        needs to continue exactly.
        """
        state: dict[str, Any] = {"sampler": dict(self.sampler.state_dict())}
        state["pending"] = torch.stack(self.pending) if self.pending else torch.empty(0)
        if self.buffer is not None:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.pending = list(state["pending"].long()) if state["pending"].numel() else []
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])


class ObjectiveState(Callback):
    """Carries an objective's ``state_dict`` in the run's checkpoints (a callback's state is
    saved with the run), so that resuming restores it.
    """

    def __init__(self, objective: FABObjective) -> None:
        self.objective = objective

    def state_dict(self) -> dict[str, Any]:
        return _flat(self.objective.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.objective.load_state_dict(_nested(state))


def _flat(state: dict[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": v}}`` to ``{"a.b": v}`` (checkpoints hold one level of nesting)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in _flat(value).items()})
        else:
            out[key] = value
    return out


def _nested(state: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if rest and head in ("sampler", "buffer"):
            out.setdefault(head, {})[rest] = value
        else:
            out[key] = value
    return out
