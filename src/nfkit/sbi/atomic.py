r"""APT's atomic loss (Greenberg, Nonnenmacher & Macke 2019, "Automatic Posterior
Transformation for Likelihood-Free Inference", ICML; SNPE-C in the ``sbi`` package).

When the parameters :math:`\theta_i` were drawn from a proposal :math:`\tilde p(\theta)`
(the posterior of an earlier round) instead of the prior, maximum likelihood on
:math:`q(\theta \mid x)` learns the proposal's posterior, not the prior's. APT trains
:math:`q` through the *proposal posterior* restricted to a set of atoms
:math:`\Theta_i = \{\theta_i\} \cup \{\theta_j\}_{j \in S_i}`, ``K - 1`` other parameters of the
batch drawn at random:

.. math::

    \ell_i = -\log \frac{q(\theta_i \mid x_i) / p(\theta_i)}
                       {\sum_{\theta' \in \Theta_i} q(\theta' \mid x_i) / p(\theta')}.

Minimizing it recovers the true posterior :math:`q = p(\theta \mid x)` whatever the
proposal (Greenberg et al., Proposition 1), and needs only the prior's density.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nfkit.distributions.base import Distribution, evaluation_mode

__all__ = ["AtomicLoss"]


class AtomicLoss:
    r"""The atomic loss of a batch of pairs :math:`(\theta_i, x_i)` (mean over the batch), an
    objective for :func:`nfkit.fit` with ``context=x``.

    Args:
        prior: :math:`p(\theta)`.
        atoms: atoms per row, ``K`` (the row's own parameter and ``K - 1`` others; at most the
            batch size). ``sbi`` uses 10.

    Example:
        >>> import torch, nfkit
        >>> from nfkit.sbi import tasks
        >>> task = tasks.gaussian_linear(dim=2)
        >>> flow = nfkit.flows.maf(2, layers=1, hidden=[8], context=2)
        >>> theta = task.prior.sample(64)
        >>> loss = AtomicLoss(task.prior)(flow, theta, task.simulator(theta))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)

    """

    def __init__(self, prior: Distribution, atoms: int = 10) -> None:
        if atoms < 2:
            raise ValueError(f"atoms must be at least 2, got {atoms}")
        self.prior, self.atoms = prior, atoms

    def __call__(
        self,
        distribution: Distribution,
        theta: Tensor,
        x: Tensor | None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if x is None:
            raise ValueError("the atomic loss needs the observations as context")
        n = theta.shape[0]
        k = min(self.atoms, n)
        if k < 2:  # a lone last row has nothing to contrast with: it adds no gradient
            return 0.0 * distribution._log_prob(theta, x).sum()
        # K - 1 distinct other rows for each row: uniform over j != i, without replacement.
        others = torch.ones(n, n, device=theta.device).fill_diagonal_(0.0)
        index = torch.multinomial(others, k - 1, generator=generator)
        atoms = torch.cat([theta[:, None], theta[index]], 1)  # (n, K, d); atom 0 is the row's own
        contexts = x[:, None].expand(n, k, *x.shape[1:]).reshape(n * k, *x.shape[1:])
        log_q = distribution._log_prob(atoms.reshape(n * k, -1), contexts).reshape(n, k)
        logits = log_q - self.prior.log_prob(atoms)
        return -(logits[:, 0] - torch.logsumexp(logits, 1)).mean()

    def validation_loss(
        self, distribution: Distribution, theta: Tensor, x: Tensor | None, chunk: int = 200
    ) -> float:
        """The atomic loss of held-out rows, in chunks, with the same atoms every epoch."""
        generator = torch.Generator(device=theta.device).manual_seed(0)
        total, count = 0.0, 0
        with evaluation_mode(distribution), torch.no_grad():
            for start in range(0, theta.shape[0], chunk):
                rows = theta[start : start + chunk]
                if rows.shape[0] < 2:  # a last single row has no other atoms
                    break
                c = None if x is None else x[start : start + chunk]
                total += float(self(distribution, rows, c, generator)) * rows.shape[0]
                count += rows.shape[0]
        return total / max(count, 1)
