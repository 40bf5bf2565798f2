"""Simulation-based inference on the SBI benchmark (issue 15): nfkit's NPE and NLE (and their
sequential variants) beside the `sbi` package, on the same simulations, scored by C2ST against
the reference posterior samples that ship with `sbibm` (Lueckmann et al. 2021), next to that
paper's published means (sbi-benchmark/results, main_paper.csv).

For each task and simulation budget one set of simulations (nfkit's task definitions; for
the three tasks whose posterior nfkit can sample exactly, `--check-tasks` compares nfkit's
exact samples with sbibm's reference samples by C2ST, which tests the definitions) trains both
libraries in turn, one thread each; each posterior then draws `--samples` samples at each of
the benchmark's observations, and C2ST (nfkit.sbi.c2st: an MLP classifier, 5-fold) compares
them with as many reference samples. Both libraries use an NSF with their own defaults
otherwise (nfkit: NSF-AR, 5 layers of [50, 50], reversals between; sbi 0.27:
`density_estimator="nsf"`); both stop early on a held-out tenth. NLE posteriors are
sampled by each library's vectorized slice sampler with the same chains, warm-up and thinning.
Sequential variants run `--rounds` rounds for one observation at a time.

Results accumulate in `sbi_results.json` (one record per task, method, library and budget), so
the grid can run in parts: `python sbi_benchmark.py --tasks two_moons --budgets 1000`. Every
run rewrites the section of `benchmarks/README.md` and `sbi_c2st.png` from all records.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from report import machine, write_section

from nfkit.sbi import NLE, NPE, c2st, sequential, simulate, tasks

HERE = Path(__file__).parent
RESULTS = HERE / "sbi_results.json"
TASKS = ["two_moons", "gaussian_linear", "slcp", "gaussian_mixture", "bernoulli_glm"]
METHODS = ["NPE", "NLE", "SNPE", "SNLE"]
# Mean C2ST over the 10 observations, Lueckmann et al. 2021, sbi-benchmark/results main_paper.csv.
PUBLISHED = {
    ("two_moons", "NPE"): (0.725, 0.606, 0.542),
    ("two_moons", "NLE"): (0.773, 0.713, 0.668),
    ("two_moons", "SNPE"): (0.643, 0.554, 0.530),
    ("two_moons", "SNLE"): (0.657, 0.571, 0.582),
    ("gaussian_linear", "NPE"): (0.694, 0.552, 0.506),
    ("gaussian_linear", "NLE"): (0.650, 0.555, 0.515),
    ("gaussian_linear", "SNPE"): (0.652, 0.544, 0.507),
    ("gaussian_linear", "SNLE"): (0.628, 0.548, 0.519),
    ("slcp", "NPE"): (0.975, 0.901, 0.831),
    ("slcp", "NLE"): (0.946, 0.771, 0.699),
    ("slcp", "SNPE"): (0.965, 0.845, 0.666),
    ("slcp", "SNLE"): (0.921, 0.713, 0.578),
    ("gaussian_mixture", "NPE"): (0.731, 0.661, 0.555),
    ("gaussian_mixture", "NLE"): (0.812, 0.731, 0.757),
    ("gaussian_mixture", "SNPE"): (0.697, 0.583, 0.533),
    ("gaussian_mixture", "SNLE"): (0.701, 0.702, 0.624),
    ("bernoulli_glm", "NPE"): (0.863, 0.678, 0.559),
    ("bernoulli_glm", "NLE"): (0.740, 0.605, 0.545),
    ("bernoulli_glm", "SNPE"): (0.855, 0.614, 0.525),
    ("bernoulli_glm", "SNLE"): (0.634, 0.553, 0.522),
}
BUDGETS = (1_000, 10_000, 100_000)


def sbibm_files(task: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Observation ``k`` (1-10) and its reference posterior samples, read from sbibm's files."""
    spec = importlib.util.find_spec("sbibm")  # located, not imported: its pins are old
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sbibm is not installed: make bench installs it (pip install --no-deps)")
    folder = Path(spec.submodule_search_locations[0]) / "tasks" / task / "files"
    folder = folder / f"num_observation_{k}"

    def read(name: str) -> torch.Tensor:
        rows = np.loadtxt(folder / name, delimiter=",", skiprows=1, ndmin=2)
        return torch.as_tensor(rows, dtype=torch.float32)

    return read("observation.csv")[0], read("reference_posterior_samples.csv.bz2")


def torch_prior(name: str, task: tasks.Task) -> torch.distributions.Distribution:
    """The task's prior as the torch distribution the `sbi` package expects."""
    from sbi.utils import BoxUniform

    boxes = {"two_moons": (1.0, 2), "slcp": (3.0, 5), "gaussian_mixture": (10.0, 2)}
    if name in boxes:
        half, d = boxes[name]
        return BoxUniform(-half * torch.ones(d), half * torch.ones(d))
    if name == "gaussian_linear":
        return torch.distributions.MultivariateNormal(torch.zeros(10), 0.1 * torch.eye(10))
    return task.prior.distribution  # bernoulli_glm: already a torch MultivariateNormal


MCMC = {"chains": 500, "warmup": 50, "thin": 2}


class NfkitRun:
    """nfkit's estimators with their defaults."""

    def __init__(self, name: str, task: tasks.Task, method: str) -> None:
        self.task, self.method = task, method
        self.estimator = (NPE if method.endswith("NPE") else NLE)(task.prior, seed=0)

    def train(self, theta: torch.Tensor, x: torch.Tensor) -> None:
        self.estimator.fit(theta, x)

    def train_sequential(self, x_o: torch.Tensor, rounds: int, per_round: int) -> None:
        sequential(
            self.estimator, self.task.simulator, x_o, rounds=rounds, simulations=per_round,
            vectorized=True,
        )  # fmt: skip

    def sample(self, n: int, x_o: torch.Tensor) -> torch.Tensor:
        if self.method.endswith("NPE"):
            return self.estimator.sample(n, x=x_o)
        return self.estimator.sample(n, x=x_o, **MCMC)


class SbiRun:
    """The `sbi` package (0.27) with its defaults and an NSF, as in its tutorials."""

    def __init__(self, name: str, task: tasks.Task, method: str) -> None:
        from sbi import inference

        self.task, self.method = task, method
        self.prior = torch_prior(name, task)
        cls = inference.NPE if method.endswith("NPE") else inference.NLE
        self.inference = cls(prior=self.prior, density_estimator="nsf", show_progress_bars=False)
        self.posterior = None

    def _build(self):
        if self.method.endswith("NPE"):
            return self.inference.build_posterior()
        return self.inference.build_posterior(
            mcmc_method="slice_np_vectorized",
            mcmc_parameters={
                "num_chains": MCMC["chains"],
                "warmup_steps": MCMC["warmup"],
                "thin": MCMC["thin"],
                "init_strategy": "resample",
            },
        )

    def train(self, theta: torch.Tensor, x: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.inference.append_simulations(theta, x).train()
        self.posterior = self._build()

    def train_sequential(self, x_o: torch.Tensor, rounds: int, per_round: int) -> None:
        torch.manual_seed(0)
        proposal = self.prior
        for _ in range(rounds):
            theta = proposal.sample((per_round,))
            x = self.task.simulator(theta)
            if self.method == "SNPE":
                self.inference.append_simulations(theta, x, proposal=proposal).train()
            else:
                self.inference.append_simulations(theta, x).train()
            self.posterior = self._build().set_default_x(x_o)
            proposal = self.posterior

    def sample(self, n: int, x_o: torch.Tensor) -> torch.Tensor:
        return self.posterior.sample((n,), x=x_o, show_progress_bars=False)


LIBRARIES = {"nfkit": NfkitRun, "sbi": SbiRun}


def run_amortized(name, method, budget, observations, samples, libraries) -> list[dict]:
    """One training per library on shared simulations; C2ST at every observation."""
    task = tasks.TASKS[name]()
    theta, x = simulate(task.prior, task.simulator, budget, seed=budget, vectorized=True)
    records = []
    for library in libraries:
        run = LIBRARIES[library](name, task, method)
        start = time.perf_counter()
        run.train(theta, x)
        train_s = time.perf_counter() - start
        scores, sample_s = zip(*(score(run, name, k, samples) for k in observations), strict=True)
        records.append(
            record(name, method, library, budget, observations, scores, train_s, sample_s)
            | {"samples": samples}
        )
    return records


def score(run, name: str, k: int, samples: int) -> tuple[float, float]:
    """C2ST of ``run``'s posterior at observation ``k`` against sbibm's, and the seconds that
    drawing its samples took.
    """
    x_o, reference = sbibm_files(name, k)
    torch.manual_seed(k)
    start = time.perf_counter()
    draws = run.sample(samples, x_o)
    seconds = time.perf_counter() - start
    return c2st(draws, reference[:samples], seed=k), seconds


def run_sequential(name, method, budget, observations, samples, libraries, rounds) -> list[dict]:
    """One sequential run per library and observation, ``budget / rounds`` simulations a round."""
    task = tasks.TASKS[name]()
    records = []
    for library in libraries:
        scores, train_s, sample_s = [], 0.0, []
        for k in observations:
            run = LIBRARIES[library](name, task, method)
            start = time.perf_counter()
            run.train_sequential(sbibm_files(name, k)[0], rounds, budget // rounds)
            train_s += time.perf_counter() - start
            c2st_k, seconds = score(run, name, k, samples)
            scores.append(c2st_k)
            sample_s.append(seconds)
        records.append(
            record(name, method, library, budget, observations, scores, train_s, sample_s, rounds)
            | {"samples": samples}
        )
    return records


def record(name, method, library, budget, observations, scores, train_s, sample_s, rounds=1):
    row = {
        "task": name,
        "method": method,
        "library": library,
        "budget": budget,
        "observations": list(observations),
        "c2st": [round(float(s), 4) for s in scores],
        "train_s": round(train_s, 1),
        "sample_s": round(float(np.median(sample_s)), 1),
        "rounds": rounds,
    }
    print(json.dumps(row), flush=True)
    return row


KEY = ("task", "method", "library", "budget")


def load(path: Path | None = None) -> list[dict]:
    """The records of ``path``, or of every ``sbi_results*.json`` here (parts of the grid run in
    parallel processes write files of their own; a later file's record wins).
    """
    paths = [path] if path else sorted(HERE.glob("sbi_results*.json"))
    rows: dict[tuple, dict] = {}
    for p in paths:
        if p.exists():
            rows.update({tuple(r[k] for k in KEY): r for r in json.loads(p.read_text())})
    return sorted(rows.values(), key=lambda r: (TASKS.index(r["task"]), r["method"], r["budget"]))


def store(new: list[dict], path: Path) -> list[dict]:
    """Merge ``new`` into ``path`` (a record replaces one with the same key); all records."""
    rows = {tuple(r[k] for k in KEY): r for r in load(path) + new}
    path.write_text(json.dumps(list(rows.values()), indent=1) + "\n")
    return load()


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def published(name: str, method: str, budget: int) -> float:
    values = PUBLISHED.get((name, method))
    return values[BUDGETS.index(budget)] if values and budget in BUDGETS else math.nan


def table(rows: list[dict]) -> list[str]:
    """One line per task, method and budget: both libraries, the paper, the verdict."""
    cells = {(r["task"], r["method"], r["budget"], r["library"]): r for r in rows}
    lines = [
        "| task | method | simulations | nfkit C2ST | sbi C2ST | published | target | "
        "nfkit train s | sbi train s | nfkit sample s | sbi sample s | observations | samples |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, method, budget in sorted(
        {(r["task"], r["method"], r["budget"]) for r in rows},
        key=lambda k: (TASKS.index(k[0]), METHODS.index(k[1]), k[2]),
    ):
        ours, theirs = (
            cells.get((name, method, budget, "nfkit")),
            cells.get((name, method, budget, "sbi")),
        )
        ours_c = mean(ours["c2st"]) if ours else math.nan
        theirs_c = mean(theirs["c2st"]) if theirs else math.nan
        paper = published(name, method, budget)
        best = (
            np.nanmin([theirs_c, paper])
            if not (math.isnan(theirs_c) and math.isnan(paper))
            else math.nan
        )
        verdict = (
            "—"
            if math.isnan(ours_c) or math.isnan(best)
            else ("met" if ours_c <= best else f"missed by {ours_c - best:.3f}")
        )
        if theirs is None and verdict != "—":
            verdict += " (no sbi run)"
        shown = ours or theirs
        rounds = f", {shown['rounds']} rounds" if shown["rounds"] > 1 else ""

        # nfkit's MADE started Glorot with a zero output layer before 2026-12-08 (records
        # without made_init); the rows run since carry made_init="torch" and a star
        star = "*" if ours and ours.get("made_init") == "torch" else ""
        lines.append(
            f"| {name} | {method} | {budget:,} | {fmt(ours_c)}{star} | {fmt(theirs_c)} | "
            f"{fmt(paper)} | "
            f"{verdict} | {cell(ours, 'train_s')} | {cell(theirs, 'train_s')} | "
            f"{cell(ours, 'sample_s')} | {cell(theirs, 'sample_s')} | "
            f"{len(shown['observations'])}{rounds} | {shown.get('samples', '—')} |"
        )
    return lines


def cell(row: dict | None, key: str) -> str:
    return str(row[key]) if row else "—"


def task_check_lines() -> list[str]:
    if not CHECKS.exists():
        return []
    checks = json.loads(CHECKS.read_text())
    pairs = ", ".join(f"{name} {value:.3f}" for name, value in checks.items())
    return [
        "The task definitions: nfkit's exact posterior samples against sbibm's reference",
        f"samples at observation 1 give C2ST {pairs} (0.5: the same distribution).",
        "",
    ]


def fmt(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def picture(rows: list[dict], path: Path) -> None:
    names = [t for t in TASKS if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    colors = {"NPE": "C0", "NLE": "C1", "SNPE": "C2", "SNLE": "C3"}
    for ax, name in zip(axes[0], names, strict=True):
        for method, color in colors.items():
            for library, style in (("nfkit", "-"), ("sbi", ":")):
                pts = sorted(
                    (r["budget"], mean(r["c2st"]))
                    for r in rows
                    if r["task"] == name and r["method"] == method and r["library"] == library
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, marker="o", color=color,
                            label=f"{library} {method}")  # fmt: skip
            paper = [(b, published(name, method, b)) for b in BUDGETS]
            if any(r["task"] == name and r["method"] == method for r in rows):
                ax.plot(*zip(*paper, strict=True), "x", color=color, alpha=0.6)
        ax.set(xscale="log", title=name, xlabel="simulations", ylim=(0.48, 1.0))
        ax.axhline(0.5, color="gray", lw=0.5)
    axes[0][0].set_ylabel("C2ST (0.5 = indistinguishable)")
    labelled = {
        t: h for ax in axes[0] for h, t in zip(*ax.get_legend_handles_labels(), strict=True)
    }
    axes[0][-1].legend(labelled.values(), labelled.keys(), fontsize=6, loc="upper right")
    fig.suptitle("solid: nfkit, dotted: sbi 0.27, x: published (Lueckmann et al. 2021)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


CHECKS = HERE / "sbi_task_check.json"


def check_tasks(samples: int) -> dict[str, float]:
    """C2ST of nfkit's exact posterior samples against sbibm's, at observation 1."""
    scores = {}
    for name in ("gaussian_linear", "gaussian_mixture", "bernoulli_glm"):
        x_o, reference = sbibm_files(name, 1)
        torch.manual_seed(0)
        ours = tasks.TASKS[name]().reference_samples(x_o, samples)
        scores[name] = round(c2st(ours, reference[:samples]), 3)
        print(f"{name}: C2ST(nfkit exact, sbibm reference) = {scores[name]}", flush=True)
    CHECKS.write_text(json.dumps(scores, indent=1) + "\n")
    return scores


def write(rows: list[dict]) -> None:
    picture(rows, HERE / "sbi_c2st.png")
    lines = [
        "## Simulation-based inference on the SBI benchmark (`sbi_benchmark.py`)",
        "",
        "C2ST of each posterior's samples against the reference samples shipped with `sbibm`",
        "(0.5: indistinguishable, 1: disjoint), mean over the observations listed; nfkit and the",
        "`sbi` package (0.27, NSF) train on the same simulations in one process, one thread",
        "(`torch.set_num_threads(1)`), libraries interleaved per task and budget; published:",
        "mean of Lueckmann et al. 2021 (10 observations, 10,000 samples). Target: nfkit at or",
        "below the better of sbi and the published figure. Times are seconds of training (all",
        "rounds, all observations for sequential runs) and median seconds to draw the samples",
        f"for one observation. NLE sampling, both libraries: slice sampling, {MCMC['chains']}",
        f"chains, {MCMC['warmup']} warm-up sweeps, thinning {MCMC['thin']}. Machine: {machine()}.",
        "Rows with fewer observations or samples than the benchmark's 10 and 10,000 are parts of",
        "the grid run so far (`--observations`, `--samples`); runs split over processes",
        "(`--results`, one per core) share the machine, and their times include that.",
        "",
        *task_check_lines(),
        *table(rows),
        "",
        '\\* run with the MADE\'s present start (`init="torch"`, 2026-12-08); the other nfkit '
        "rows with its previous one (Glorot, zero output layer), not rerun.",
        "",
        "![C2ST against simulations](sbi_c2st.png)",
    ]
    write_section("sbi", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--budgets", default="1000,10000,100000")
    parser.add_argument("--sequential-budgets", default="10000")
    parser.add_argument("--libraries", default="nfkit,sbi")
    parser.add_argument("--observations", default="1-10", help="e.g. 1-10 or 1,2,3")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--results", default=str(RESULTS), help="file this run adds to")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--check-tasks", action="store_true", help="only the task check")
    parser.add_argument("--no-report", action="store_true", help="parallel parts: records only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.report_only or args.check_tasks:
        if args.check_tasks:
            check_tasks(min(args.samples, 5000))
        write(load())
        return
    first, _, last = args.observations.partition("-")
    observations = (
        list(range(int(first), int(last) + 1)) if last else [int(k) for k in first.split(",")]
    )
    libraries = args.libraries.split(",")
    for name in args.tasks.split(","):
        for method in args.methods.split(","):
            sequential_method = method.startswith("S")
            budgets = args.sequential_budgets if sequential_method else args.budgets
            for budget in (int(b) for b in budgets.split(",") if b):
                if sequential_method:
                    new = run_sequential(
                        name, method, budget, observations, args.samples, libraries, args.rounds
                    )
                else:
                    new = run_amortized(name, method, budget, observations, args.samples, libraries)
                rows = store(new, Path(args.results))
                if not args.no_report:
                    write(rows)


if __name__ == "__main__":
    main()
