r"""Running a simulator :math:`\theta \mapsto x` many times: in parallel processes (joblib) or
on a dask cluster, failures and non-finite outputs dropped and counted.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nfkit.sbi.prior import as_prior

__all__ = ["SimulationError", "Simulations", "simulate", "simulate_at"]


class SimulationError(RuntimeError):
    """Every simulation failed (or returned non-finite values)."""


class Simulations:
    r"""Pairs :math:`(\\theta_i, x_i)` that simulated cleanly; unpacks as ``theta, x``.

    Attributes:
        theta: ``(n, d)`` parameters.
        x: ``(n, *x_shape)`` simulator outputs.
        failed: simulations that raised (dropped).
        nonfinite: simulations that returned NaN or inf (dropped).

    """

    def __init__(self, theta: Tensor, x: Tensor, failed: int = 0, nonfinite: int = 0) -> None:
        self.theta, self.x, self.failed, self.nonfinite = theta, x, failed, nonfinite

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.theta, self.x))

    def __len__(self) -> int:
        return self.theta.shape[0]

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` file with ``theta``, ``x`` and the drop counts (no pickle)."""
        path = Path(path)
        np.savez(
            path,
            theta=self.theta.numpy(),
            x=self.x.numpy(),
            counts=np.array([self.failed, self.nonfinite]),
        )
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Simulations:
        """Read what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as f:
            failed, nonfinite = (int(v) for v in f["counts"])
            return cls(torch.from_numpy(f["theta"]), torch.from_numpy(f["x"]), failed, nonfinite)


def _run_chunk(simulator: Callable[[Any], Any], thetas: np.ndarray) -> list[Any]:
    """Simulate each row; an exception becomes ``("error", message)``."""
    out: list[Any] = []
    for theta in thetas:
        try:
            out.append(np.asarray(simulator(theta), dtype=np.float64))
        except Exception as err:  # the simulator's own failure: counted, not fatal
            out.append(("error", f"{type(err).__name__}: {err}"))
    return out


def simulate(
    prior: Any,
    simulator: Callable[[Any], Any],
    n: int,
    *,
    seed: int | None = 0,
    workers: int = 1,
    client: Any = None,
    vectorized: bool = False,
) -> Simulations:
    r"""Draw :math:`\theta_i \sim p(\theta)` and run ``simulator`` on each, :math:`i < n`.

    Args:
        prior: an nfkit or torch distribution over vectors ``(d,)``.
        simulator: a function of one parameter vector (a numpy array ``(d,)``) returning an
            array (any fixed shape); with ``vectorized=True``, of a tensor ``(n, d)`` returning
            ``(n, *x_shape)``.
        n: number of simulations.
        seed: seeds the parameter draws (and torch's generator for the simulator, in-process).
        workers: parallel processes (joblib); 1 runs in this process.
        client: a ``dask.distributed.Client`` (or anything with ``map`` and ``gather``): the
            simulations run on its cluster, in chunks.
        vectorized: call ``simulator`` once on the whole batch.

    Returns:
        :class:`Simulations` (unpack as ``theta, x``): simulations that raised or returned
        NaN/inf are dropped and counted (a warning says how many).

    Raises:
        SimulationError: every simulation failed; the message quotes the first error.

    Example:
        >>> import torch
        >>> import torch.distributions as td
        >>> prior = td.Independent(td.Normal(torch.zeros(2), 1.0), 1)
        >>> theta, x = simulate(prior, lambda t: t + 1.0, 100)
        >>> tuple(theta.shape), torch.allclose(x, theta + 1.0)
        ((100, 2), True)

    """
    if n < 1:
        raise ValueError(f"need n >= 1, got {n}")
    prior = as_prior(prior)
    if seed is not None:
        torch.manual_seed(seed)
    theta = prior.sample(n).detach().cpu()
    return simulate_at(theta, simulator, workers=workers, client=client, vectorized=vectorized)


def simulate_at(
    theta: Any,
    simulator: Callable[[Any], Any],
    *,
    workers: int = 1,
    client: Any = None,
    vectorized: bool = False,
) -> Simulations:
    """Run ``simulator`` at given parameters: the rows of ``theta`` ``(n, d)`` (e.g.
    posterior samples, for a predictive check). Arguments and result as :func:`simulate`.
    """
    theta = torch.as_tensor(theta).detach().cpu()
    if not theta.is_floating_point():
        theta = theta.to(torch.get_default_dtype())
    if theta.ndim != 2 or theta.shape[0] == 0:
        raise ValueError(f"theta must be rows (n, d), got shape {tuple(theta.shape)}")
    if workers < 1:
        raise ValueError(f"need workers >= 1, got {workers}")
    n = theta.shape[0]
    if vectorized:
        x = torch.as_tensor(simulator(theta))
        if x.shape[0] != n:
            raise ValueError(f"a vectorized simulator must return {n} rows, got {tuple(x.shape)}")
        return _clean(theta, list(x.double().numpy()))
    rows = theta.double().numpy()
    chunks = np.array_split(rows, max(1, min(n, 8 * max(workers, 1))))
    if client is not None:
        futures = client.map(_run_chunk, [simulator] * len(chunks), chunks)
        results = [r for chunk in client.gather(futures) for r in chunk]
    elif workers > 1:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=workers)
        results = [
            r
            for chunk in parallel(delayed(_run_chunk)(simulator, c) for c in chunks)
            for r in chunk
        ]
    else:
        results = _run_chunk(simulator, rows)
    return _clean(theta, results)


def _clean(theta: Tensor, results: list[Any]) -> Simulations:
    errors = [r[1] for r in results if isinstance(r, tuple)]
    arrays = [r for r in results if not isinstance(r, tuple)]
    if not arrays:
        raise SimulationError(
            f"all {len(results)} simulations failed; the first: {errors[0]}"
            if errors
            else "the simulator returned nothing"
        )
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"the simulator returned outputs of different shapes: {sorted(shapes)}")
    keep = torch.tensor([not isinstance(r, tuple) for r in results])
    x = torch.as_tensor(np.stack(arrays), dtype=theta.dtype)
    finite = torch.isfinite(x.reshape(len(x), -1)).all(-1)
    if not bool(finite.any()):
        raise SimulationError(f"all {len(results)} simulations returned NaN or inf")
    theta = theta[keep][finite]
    dropped = (len(errors), int((~finite).sum()))
    if any(dropped):
        first = f" (first error: {errors[0]})" if errors else ""
        warnings.warn(
            f"dropped {dropped[0]} simulations that raised and {dropped[1]} that returned NaN "
            f"or inf, of {len(results)}{first}",
            RuntimeWarning,
            stacklevel=3,
        )
    return Simulations(theta, x[finite], *dropped)
