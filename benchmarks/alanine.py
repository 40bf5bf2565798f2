"""Alanine dipeptide (issue 19): the Boltzmann generator of ``examples/alanine_dipeptide.py``
over several seeds, each with its own MD run (OpenMM, vacuum, 300 K, 10 ns): KL divergence of
the (phi, psi) histogram to MD's, the flow's ESS, the free-energy difference between the C7eq
and C5/beta basins against MD's, and wall-clock.

Run: ``python benchmarks/alanine.py [--seeds 3]`` (``make bench``); the MD runs are cached in
``out/``.
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
ROWS = ("MD (OpenMM, reference)", "flow, raw samples", "flow, reweighted")


def run(seed: int) -> dict:
    out = ROOT / "out" / "bench_alanine" / f"seed{seed}.png"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "alanine_dipeptide.py"), "--seed", str(seed),
         "--out", str(out), "--cache", str(ROOT / "out")],
        check=True,
    )  # fmt: skip
    return json.loads(out.with_suffix(".json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    runs = [run(seed) for seed in range(args.seeds)]
    lines = [
        "## Alanine dipeptide (`alanine.py`)",
        "",
        __doc__.split("\n\n")[0].replace("\n", " "),
        "The flow: `flows.mixed` (6 MixedCoupling layers, [128, 128], von Mises / normal base "
        "at the data's marginals) on the 60 internal coordinates, trained by maximum likelihood "
        "on every other MD frame (50,000; Adam 1e-3, batch 256, up to 30 epochs, early "
        "stopping on 10%); 100,000 flow samples, reweighted by `nfkit.importance` against the "
        "exact Boltzmann density in internal coordinates. Delta F = F(C7eq) - F(beta) in kJ/mol "
        "(its error: delta method on the effective sample size; for MD it ignores the frames' "
        f"correlation). One thread. Medians of {args.seeds} seeds, every run listed. "
        f"Machine: {machine()}.",
        "",
        "| samples | KL to MD (phi, psi) | Delta F (kJ/mol) | runs: Delta F |",
        "|---|---|---|---|",
    ]
    for name in ROWS:
        kls = [r["rows"][name]["kl_to_md"] for r in runs]
        dfs = [r["rows"][name]["delta_f"] for r in runs]
        ses = [r["rows"][name]["delta_f_se"] for r in runs]
        each = ", ".join(f"{d:.2f} ± {s:.2f}" for d, s in zip(dfs, ses, strict=True))
        lines.append(
            f"| {name} | {statistics.median(kls):.4f} | {statistics.median(dfs):.2f} | {each} |"
        )
    ess = [r["ess"] for r in runs]
    lines += [
        "",
        f"Flow ESS (normalized Kish): median {statistics.median(ess):.3f} "
        f"({', '.join(f'{e:.3f}' for e in ess)}). Wall-clock per seed, medians: MD "
        f"{statistics.median(r['md_seconds'] for r in runs):.0f} s (0 when cached), training "
        f"{statistics.median(r['train_seconds'] for r in runs):.0f} s, sampling and weighing "
        f"{statistics.median(r['reweight_seconds'] for r in runs):.0f} s.",
    ]
    write_section("alanine", lines)


if __name__ == "__main__":
    main()
