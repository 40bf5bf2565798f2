"""A Boltzmann generator for alanine dipeptide in vacuum (Amber ff96, 300 K; Noé et al. 2019):
molecular dynamics with OpenMM as the reference, a flow on the molecule's 60 internal
coordinates (torsions on the circle) trained on part of it, and importance reweighting to the
exact Boltzmann density.

It writes the Ramachandran plot (phi, psi) of MD, of the raw flow and of the reweighted flow
side by side, and prints the free-energy difference between the two main basins (C7eq,
-2 < phi < 0, and C5 / beta, phi < -2), the KL divergence of each (phi, psi) histogram to
MD's, and the effective sample size. The MD run is cached under ``--cache``.

Run: ``python examples/alanine_dipeptide.py --out docs/alanine_dipeptide.png``
(``make figures``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import nfkit
from nfkit.targets import AlanineDipeptide, InternalTarget
from nfkit.targets.molecules import molecular_dynamics

BINS = 60


def md_frames(molecule: AlanineDipeptide, frames: int, cache: Path, seed: int) -> torch.Tensor:
    """``frames`` positions 100 steps (0.1 ps) apart, after 100 ps of equilibration; cached."""
    solvent = "" if molecule.solvent == "vacuum" else f"{molecule.solvent}_"
    path = cache / f"alanine_md_{solvent}{frames}_{seed}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path))
    x = molecular_dynamics(molecule, frames, interval=100, equilibration=100_000, seed=seed)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, x.numpy())
    return x


def histogram(phi: torch.Tensor, psi: torch.Tensor, weights: torch.Tensor | None = None):
    h, _, _ = np.histogram2d(
        phi.numpy(),
        psi.numpy(),
        bins=BINS,
        range=[[-math.pi, math.pi]] * 2,
        weights=None if weights is None else weights.numpy(),
    )
    return h / h.sum()


def kl(p: np.ndarray, q: np.ndarray, floor: float = 1e-6) -> float:
    """KL(p || q) of two histograms, q's empty bins floored so that the KL stays finite."""
    q = np.where((q == 0) & (p > 0), floor, q)
    q = q / q.sum()
    mask = p > 0
    return float((p[mask] * np.log(p[mask] / q[mask])).sum())


def basin(phi: torch.Tensor) -> torch.Tensor:
    """1 for C7eq (-2 < phi < 0), 0 for C5 / beta (phi < -2 or phi > 2.9), -1 elsewhere."""
    c7 = (phi > -2.0) & (phi < 0.0)
    beta = (phi <= -2.0) | (phi > 2.9)
    return torch.where(c7, 1, torch.where(beta, 0, -1))


def free_energy(weights: torch.Tensor, labels: torch.Tensor, kt: float) -> tuple[float, float]:
    """F(C7eq) - F(beta) = -kT log(P_1 / P_0), in kJ/mol, with a delta-method error."""
    w = weights / weights.sum()
    p1, p0 = float(w[labels == 1].sum()), float(w[labels == 0].sum())
    n_eff = 1.0 / float((w**2).sum())
    se = math.sqrt((1 - p1) / (p1 * n_eff) + (1 - p0) / (p0 * n_eff))  # ~ se of log ratio
    return -kt * math.log(p1 / p0), kt * se


def train_flow(
    target: InternalTarget, x_md: torch.Tensor, args: argparse.Namespace
) -> nfkit.distributions.Distribution:
    """The flow, trained on MD frames (``md``: maximum likelihood, the Boltzmann-generator
    way) or on the energy alone (``fab``, ``reverse_kl``: no MD frame is used except the
    short run that places the base distribution)."""
    z_md = target.from_cartesian(x_md).float()
    if args.method == "md":
        train = z_md[::2]  # every other frame for training; all frames for the reference
        flow = nfkit.flows.mixed(60, target.torsions, layers=6, hidden=[128, 128], data=train)
        nfkit.fit(
            flow,
            train,
            epochs=args.epochs,
            batch_size=256,
            lr=1e-3,
            validation_split=0.1,
            patience=5,
            seed=args.seed,
            verbose=0,
        )
        return flow
    # the base at the marginals of 20 ps of MD (2,000 frames), far from converged
    start = molecular_dynamics(
        target.target, 2_000, interval=10, equilibration=1_000, seed=args.seed + 1
    )
    place = target.from_cartesian(start).float()
    flow = nfkit.flows.mixed(60, target.torsions, layers=6, hidden=[128, 128], data=place)
    nfkit.fit_energy(
        flow,
        target,
        method=args.method,
        epochs=10,
        steps_per_epoch=args.steps // 10,
        batch_size=256,
        lr=args.lr,
        lr_schedule="cosine",
        clip_grad_norm=10.0,
        seed=args.seed,
        verbose=0,
    )
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/alanine_dipeptide.png"))
    parser.add_argument("--cache", type=Path, default=Path("out"))
    parser.add_argument("--frames", type=int, default=100_000, help="MD frames (0.1 ps apart)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--method",
        choices=["md", "fab", "reverse_kl"],
        default="md",
        help="train on MD frames (maximum likelihood) or on the energy alone",
    )
    parser.add_argument("--steps", type=int, default=1000, help="steps of fab / reverse_kl")
    parser.add_argument("--lr", type=float, default=3e-4, help="Adam's, fab / reverse_kl")
    parser.add_argument("--solvent", choices=["vacuum", "implicit"], default="vacuum")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    molecule = AlanineDipeptide(args.solvent, temperature=300.0)
    target = InternalTarget(molecule, molecule.zmatrix())

    start = time.perf_counter()
    x_md = md_frames(molecule, args.frames, args.cache, args.seed)
    md_seconds = time.perf_counter() - start
    start = time.perf_counter()
    flow = train_flow(target, x_md, args)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = nfkit.importance(flow, target, args.samples, batch_size=10_000)
    weigh_seconds = time.perf_counter() - start

    x_flow = target.to_cartesian(result.samples.double())
    kt = molecule.kT
    angles = {
        "MD (OpenMM, reference)": (molecule.dihedrals(x_md), None),
        "flow, raw samples": (molecule.dihedrals(x_flow), None),
        "flow, reweighted": (molecule.dihedrals(x_flow), torch.softmax(result.log_weights, 0)),
    }
    reference = histogram(*angles["MD (OpenMM, reference)"][0])
    rows = {}
    fig, axes = plt.subplots(1, 3, figsize=(13, 5.2), sharey=True)
    for ax, (name, ((phi, psi), weights)) in zip(axes, angles.items(), strict=True):
        h = histogram(phi, psi, weights)
        w = torch.ones_like(phi) if weights is None else weights
        delta_f, se = free_energy(w.double(), basin(phi), kt)
        rows[name] = {"kl_to_md": kl(reference, h), "delta_f": delta_f, "delta_f_se": se}
        with np.errstate(divide="ignore"):
            free = -np.log(h.T)
        ax.imshow(
            free - np.nanmin(free[np.isfinite(free)]),
            origin="lower",
            extent=[-math.pi, math.pi, -math.pi, math.pi],
            cmap="viridis",
            vmax=10,
        )
        ax.set_title(
            f"{name}\nΔF(C7eq − β) = {delta_f:.2f} ± {se:.2f} kJ/mol, "
            f"KL to MD {rows[name]['kl_to_md']:.3f}",
            fontsize=9,
        )
        ax.set_xlabel("φ (rad)")
    axes[0].set_ylabel("ψ (rad)")
    fig.suptitle(
        f"Alanine dipeptide, {args.solvent}, 300 K, flow trained by {args.method}: free energy "
        f"−log p(φ, ψ) (kT, capped at 10); flow ESS {result.ess:.3f}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    summary = {
        "method": args.method,
        "solvent": args.solvent,
        "md_frames": args.frames,
        "md_seconds": round(md_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "reweight_seconds": round(weigh_seconds, 1),
        "ess": result.ess,
        "rows": rows,
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
