"""A Boltzmann generator (Noé et al. 2019) for a particle on the Müller–Brown potential: a flow
trained from the energy alone, then free-energy differences between the three basins by
importance reweighting, against the exact values from quadrature.

The flow never sees a sample of the target. Its own samples are biased (it cannot be exact), the
reweighted estimates are not: F_k = -kT log P(basin k), with P estimated by self-normalized
importance sampling and its standard error.

Run: ``python examples/boltzmann_generator.py --out docs/boltzmann.png`` (``make figures``).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit import flows
from nfkit.targets import MullerBrown, muller_brown_energy

CENTRE, SPREAD = torch.tensor([-0.2, 0.8]), torch.tensor([0.8, 0.8])


def mb_flow(layers: int = 6, hidden: tuple[int, ...] = (64, 64)) -> nfd.TransformedDistribution:
    """An NSF coupling flow on the standardized window of the potential."""
    inner = flows.nsf(2, layers=layers, hidden=list(hidden), coupling=True, bound=4.0)
    outer = nfb.Chain([nfb.Shift(CENTRE), nfb.Scale(SPREAD), inner.bijector])
    return nfd.TransformedDistribution(inner.distribution, outer)


def exact_basin_probabilities(target: MullerBrown, grid: int = 801) -> torch.Tensor:
    """P(basin k) by quadrature on a grid over the window (the wall holds the rest)."""
    low, high = target.low - 0.4, target.high + 0.4
    axes = [
        torch.linspace(float(a), float(b), grid, dtype=torch.float64)
        for a, b in zip(low, high, strict=True)
    ]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    weights = torch.softmax(target.log_prob(mesh), 0)
    return torch.zeros(3, dtype=torch.float64).index_add_(0, target.modes(mesh), weights)


def free_energies(probabilities: torch.Tensor, kt: float) -> torch.Tensor:
    """F_k - F_0 = -kT log(P_k / P_0), in the potential's energy units."""
    return -kt * (probabilities / probabilities[0]).log()


def reweighted_basins(result: nfkit.reweight.ImportanceSamples, target: MullerBrown):
    labels = target.modes(result.samples)
    probs, ses = result.expectation(lambda x: torch.nn.functional.one_hot(labels, 3))
    return probs, ses


def train(seed: int, epochs: int, steps: int) -> tuple[nfd.TransformedDistribution, float]:
    torch.manual_seed(seed)
    target = MullerBrown()
    flow = mb_flow()
    start = time.perf_counter()
    nfkit.fit_energy(
        flow,
        target,
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=512,
        lr=2e-3,
        lr_schedule="cosine",
        clip_grad_norm=10.0,
        seed=seed,
        verbose=0,
    )
    return flow, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("boltzmann.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=1_000_000)
    args = parser.parse_args()

    target = MullerBrown()
    kt = 1.0 / target.beta
    flow, seconds = train(args.seed, args.epochs, args.steps)
    result = nfkit.importance(flow, target, args.samples)
    exact = exact_basin_probabilities(target)
    raw = torch.bincount(target.modes(result.samples), minlength=3).double() / args.samples
    weighted, se = reweighted_basins(result, target)
    f_exact, f_raw, f_weighted = (free_energies(p, kt) for p in (exact, raw, weighted))
    # delta method: se(F_k - F_0) = kT sqrt((se_k / P_k)^2 + (se_0 / P_0)^2)
    f_se = kt * ((se / weighted).square() + (se[0] / weighted[0]) ** 2).sqrt()
    print(
        f"trained in {seconds:.0f} s; ESS {result.ess:.3f}; log Z {result.log_z:.4f} "
        f"+- {result.log_z_se:.4f} (exact {target.log_z:.4f})"
    )
    for k in (1, 2):
        print(
            f"F{k} - F0: exact {f_exact[k]:.2f}, flow samples {f_raw[k]:.2f}, "
            f"reweighted {f_weighted[k]:.2f} +- {f_se[k]:.2f}  (kT = {kt:g})"
        )

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.4))
    xs, ys = np.linspace(-1.7, 1.3, 300), np.linspace(-0.5, 2.2, 300)
    gx, gy = np.meshgrid(xs, ys)
    grid = torch.tensor(np.stack([gx, gy], -1))
    energy = muller_brown_energy(grid).numpy()
    ax0.contour(gx, gy, np.minimum(energy, 100), levels=25, cmap="viridis", linewidths=0.7)
    shown = result.samples[:4000].numpy()
    ax0.scatter(shown[:, 0], shown[:, 1], s=1, c="crimson", alpha=0.4)
    ax0.set_title(f"Müller–Brown at kT = {kt:g}: flow samples (ESS {result.ess:.2f})")
    ax0.set_xlabel("x")
    ax0.set_ylabel("y")
    ax0.set_xlim(-1.7, 1.3)
    ax0.set_ylim(-0.5, 2.2)
    # the unweighted counts have a binomial standard error too
    raw_se = kt * ((raw * (1 - raw) / args.samples).sqrt() / raw)
    for offset, values, errors, label in (
        (-0.1, f_raw - f_exact, raw_se, "flow samples, unweighted"),
        (0.1, f_weighted - f_exact, f_se, "reweighted by importance weights"),
    ):
        ax1.errorbar(
            np.arange(2) + offset,
            values[1:].numpy(),
            yerr=2 * errors[1:].numpy(),
            fmt="o",
            capsize=4,
            label=label,
        )
    ax1.axhline(0.0, color="k", lw=0.8)
    ax1.set_xticks(np.arange(2), [f"F{k} − F0 (exact {float(f_exact[k]):.2f})" for k in (1, 2)])
    ax1.set_xlim(-0.6, 1.6)
    ax1.set_ylabel("estimate − exact (energy units, ± 2 se)")
    ax1.set_title("Free-energy differences between basins")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    if not all(math.isfinite(float(v)) for v in f_weighted):
        raise SystemExit("a basin got no weighted samples")


if __name__ == "__main__":
    main()
