"""Alanine dipeptide (issue 19): the Boltzmann generator of ``examples/alanine_dipeptide.py``
over seeds and training methods, each seed with its own MD reference (OpenMM, vacuum, 300 K,
10 ns): KL divergence of the (phi, psi) histogram to MD's, the flow's ESS, the free-energy
difference between the C7eq and C5/beta basins against MD's, and wall-clock.

Run: ``python benchmarks/alanine.py [--seeds 3] [--methods md,reverse_kl,fab]`` (``make
bench``); MD runs are cached in ``out/``, and each (method, seed) result in
``out/bench_alanine/`` is reused while it is newer than the example (delete it to rerun).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from report import machine, write_section

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "alanine_dipeptide.py"
# method: (label, extra arguments of the example)
METHODS = {
    "md": ("maximum likelihood on 50,000 MD frames", []),
    "reverse_kl": ("reverse KL, energy only, 6,000 steps", ["--steps", "6000"]),
    "fab": ("FAB + buffer, energy only, 3,000 steps", ["--steps", "3000"]),
}


def run(method: str, seed: int) -> dict:
    out = ROOT / "out" / "bench_alanine" / f"{method}_seed{seed}.png"
    result = out.with_suffix(".json")
    if not (result.exists() and result.stat().st_mtime > EXAMPLE.stat().st_mtime):
        subprocess.run(
            [sys.executable, str(EXAMPLE), "--seed", str(seed), "--method", method,
             "--out", str(out), "--cache", str(ROOT / "out"), *METHODS[method][1]],
            check=True,
        )  # fmt: skip
    return json.loads(result.read_text())


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    methods = args.methods.split(",")
    runs = {m: [run(m, seed) for seed in range(args.seeds)] for m in methods}
    md = "MD (OpenMM, reference)"
    first = runs[methods[0]]
    md_df = [r["rows"][md]["delta_f"] for r in first]
    lines = [
        "## Alanine dipeptide (`alanine.py`)",
        "",
        __doc__.split("\n\n")[0].replace("\n", " "),
        "The flow: `flows.mixed` (6 MixedCoupling layers, [128, 128], von Mises / normal base "
        "at marginals) on the 60 internal coordinates. Maximum likelihood: every other MD "
        "frame (50,000; Adam 1e-3, batch 256, up to 30 epochs, early stopping on 10%), base at "
        "their marginals. Energy only (`nfkit.fit_energy`, batch 256, Adam 3e-4 cosine, clip "
        "10): no MD frame is used except a 20 ps run (2,000 frames) that places the base at its "
        "marginals; FAB with its defaults (2 intermediate HMC densities, replay buffer). Then "
        "100,000 flow samples reweighted by `nfkit.importance` against the exact Boltzmann "
        "density in internal coordinates. Delta F = F(C7eq) - F(beta) in kJ/mol (per run: its "
        "delta-method error on the ESS; for MD it ignores the frames' correlation, and MD's "
        f"run-to-run spread is {min(md_df):.2f}-{max(md_df):.2f}). One thread. Medians of "
        f"{args.seeds} seeds, every run listed. Machine: {machine()}.",
        "",
        f"MD's own Delta F per seed: {', '.join(f'{d:.2f}' for d in md_df)} kJ/mol.",
        "",
        "| training | samples | KL to MD (phi, psi) | Delta F (kJ/mol) | runs: Delta F | ESS "
        "| training time |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        rs = runs[method]
        for name in ("flow, raw samples", "flow, reweighted"):
            kls = [r["rows"][name]["kl_to_md"] for r in rs]
            dfs = [r["rows"][name]["delta_f"] for r in rs]
            ses = [r["rows"][name]["delta_f_se"] for r in rs]
            each = ", ".join(f"{d:.2f} ± {s:.2f}" for d, s in zip(dfs, ses, strict=True))
            ess = ", ".join(f"{r['ess']:.3f}" for r in rs) if "reweighted" in name else ""
            seconds = f"{median([r['train_seconds'] for r in rs]):.0f} s" if ess else ""
            lines.append(
                f"| {METHODS[method][0]} | {name.removeprefix('flow, ')} | {median(kls):.4f} | "
                f"{median(dfs):.2f} | {each} | {ess} | {seconds} |"
            )
    lines += [
        "",
        f"Wall-clock per seed besides training, medians: MD "
        f"{median([r['md_seconds'] for r in first]):.0f} s (0 when cached), sampling and "
        f"weighing {median([r['reweight_seconds'] for r in first]):.0f} s.",
    ]
    write_section("alanine", lines)


if __name__ == "__main__":
    main()
