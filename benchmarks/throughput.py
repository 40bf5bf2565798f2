"""Speed, side by side with zuko, nflows and normflows (issue 7): protocols (1)-(5).

(1) training steps per second, batch 512, Adam 1e-3, of the chapter's MAF (3 x [MAF + reversal],
    MADE [128, 128] relu) on moons and of NSF-AR (same, 8 bins); nfkit through ``nfkit.fit``
    (what its users run), the peers through the plain loop of their documentation;
(2) log_prob and sampling throughput on 100 000 points (no gradients);
(3) how log_prob and sampling cost grow with the dimension D in {2, 8, 32, 64} (5 MAF layers,
    MADE [256, 256]; 10 000 points);
(4) held-out NLL after a fixed wall-clock budget on moons (2-D) and a 16-D Gaussian mixture
    (the chapter's MAF, Adam 1e-3, batch 512);
(5) peak memory of a training step (batch 512) and of sampling 100 000 points, in a fresh
    process per library.

Libraries alternate inside every repeat so that machine noise hits all alike; medians of the
repeats and ratios nfkit / best peer are reported.

Run: ``python benchmarks/throughput.py [--repeats 5] [--budget 60]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

import torch
from peers import BUILDERS, NSF_BUILDERS, available
from report import machine, write_section
from sklearn.datasets import make_moons

import nfkit

FAMILIES = {"MAF": BUILDERS, "NSF-AR": NSF_BUILDERS}


def moons(n: int, seed: int) -> torch.Tensor:
    return torch.as_tensor(make_moons(n, noise=0.05, random_state=seed)[0], dtype=torch.float32)


def mixture16(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    means = torch.randn(8, 16, generator=g) * 2.0
    g.manual_seed(seed + 1)
    pick = torch.randint(0, 8, (n,), generator=g)
    return means[pick] + 0.5 * torch.randn(n, 16, generator=g)


def build(family: str, library: str, features: int, layers: int = 3, hidden=(128, 128)):
    torch.manual_seed(0)
    return FAMILIES[family][library](features, layers, list(hidden))


def plain_steps(model, data: torch.Tensor, batch: int, steps: int) -> None:
    opt = torch.optim.Adam(model.module.parameters(), lr=1e-3)
    order = torch.randperm(data.shape[0]).split(batch)
    for i in range(steps):
        loss = -model.log_prob(data[order[i % len(order)]]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def steps_per_second(family: str, library: str, batch: int = 512, steps: int = 200) -> float:
    model = build(family, library, 2)
    data = moons(batch * steps, 0)
    if library == "nfkit":
        nfkit.fit(model.module, data[: batch * 5], batch_size=batch, lr=1e-3, verbose=0)  # warm
        start = time.perf_counter()
        nfkit.fit(model.module, data, batch_size=batch, lr=1e-3, verbose=0, seed=0)
    else:
        plain_steps(model, data, batch, 5)
        start = time.perf_counter()
        plain_steps(model, data, batch, steps)
    return steps / (time.perf_counter() - start)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(family: str, library: str, features: int, n: int, layers=3, hidden=(128, 128)):
    """Points per second of log_prob and of sampling, no gradients."""
    model = build(family, library, features, layers, hidden)
    model.module.eval()
    x = torch.randn(n, features)
    with torch.no_grad():
        model.log_prob(x[:100])
        model.sample(100)
        log_prob_s = timed(lambda: model.log_prob(x))
        sample_s = timed(lambda: model.sample(n))
    return n / log_prob_s, n / sample_s


def nll_at_budget(library: str, data_name: str, seconds: float, seed: int) -> float:
    """Held-out NLL after training for ``seconds`` (the chapter's MAF, batch 512)."""
    make = moons if data_name == "moons" else mixture16
    train, test = make(50_000, seed), make(10_000, 10_000 + seed)
    torch.manual_seed(seed)
    model = BUILDERS[library](train.shape[1], 3, [128, 128])
    if library == "nfkit":
        start = time.perf_counter()
        nfkit.fit(
            model.module,
            train,
            epochs=10_000,
            batch_size=512,
            lr=1e-3,
            verbose=0,
            seed=seed,
            callbacks=[lambda e, logs: time.perf_counter() - start > seconds],
        )
    else:
        opt = torch.optim.Adam(model.module.parameters(), lr=1e-3)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for idx in torch.randperm(train.shape[0]).split(512):
                loss = -model.log_prob(train[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            # like nfkit's callback, the budget is checked once per epoch
    model.module.eval()
    with torch.no_grad():
        return -float(model.log_prob(test).mean())


def peak_memory(family: str, library: str) -> tuple[float, float]:
    """MiB of resident memory above the start, at the peak of 20 training steps and of sampling
    100 000 points, each measured in a fresh interpreter."""
    out = []
    for what in ("train", "sample"):
        done = subprocess.run(
            [sys.executable, __file__, "--memory", family, library, what],
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(json.loads(done.stdout.strip().splitlines()[-1])["mib"])
    return out[0], out[1]


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _memory_child(family: str, library: str, what: str) -> None:
    model = build(family, library, 2)
    data = moons(512 * 20, 0)
    model.log_prob(data[:10])
    baseline = _resident_mib()
    peak, stop = [baseline], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak.append(_resident_mib())
            stop.wait(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    if what == "train":
        if library == "nfkit":
            nfkit.fit(model.module, data, batch_size=512, lr=1e-3, verbose=0, seed=0)
        else:
            plain_steps(model, data, 512, 20)
    else:
        with torch.no_grad():
            model.sample(100_000)
    stop.set()
    watcher.join()
    print(json.dumps({"mib": max(peak) - baseline}))


def ratio_line(values: dict[str, float], higher_better: bool) -> str:
    peers = {k: v for k, v in values.items() if k != "nfkit"}
    if not peers:
        return ""
    best = (max if higher_better else min)(peers, key=peers.get)
    r = values["nfkit"] / peers[best] if higher_better else peers[best] / values["nfkit"]
    return f"{r:.2f}x ({best})"


def table(title: str, columns: list[str], rows: dict[str, list[str]]) -> list[str]:
    lines = [title, "", "| library | " + " | ".join(columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        _memory_child(*args.memory)
        return
    libraries = available()

    def rotated(r: int) -> list[str]:
        return libraries[r % len(libraries) :] + libraries[: r % len(libraries)]

    # (1) and (2)
    speed: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in range(args.repeats):
        for family in FAMILIES:
            for library in rotated(r):
                steps = steps_per_second(family, library)
                lp, smp = throughput(family, library, 2, 100_000)
                speed.setdefault((family, library), []).append((steps, lp, smp))
                print(
                    family,
                    library,
                    f"{steps:.0f} steps/s, {lp:.0f} lp/s, {smp:.0f} s/s",
                    flush=True,
                )
    med = {k: [statistics.median(v[i] for v in vs) for i in range(3)] for k, vs in speed.items()}
    lines = [
        "## Speed against the other flow libraries (`throughput.py`)",
        "",
        f"Machine: {machine()}. Medians of {args.repeats} repeats, libraries alternating in "
        "each repeat. Ratio: nfkit / best peer (higher is better for nfkit).",
        "",
    ]
    for family in FAMILIES:
        rows = {
            lib: [
                f"{med[(family, lib)][0]:.0f}",
                f"{med[(family, lib)][1] / 1e3:.0f}k",
                f"{med[(family, lib)][2] / 1e3:.0f}k",
            ]
            for lib in libraries
        }
        ratios = [
            ratio_line({lib: med[(family, lib)][i] for lib in libraries}, True) for i in range(3)
        ]
        rows["nfkit / best peer"] = ratios
        lines += table(
            f"### (1)-(2) {family} on moons: training steps/s (batch 512), log_prob and "
            "sampling points/s (100 000 points)",
            ["train steps/s", "log_prob pts/s", "sample pts/s"],
            rows,
        )
    lines += [
        "normflows' `MaskedAffineAutoregressive` runs the other way round: one pass to sample, "
        "D passes for the density (an IAF in nfkit's terms; see (3)), so its sampling column "
        "is not like for like. Against the peers whose MAF samples in D passes, nfkit samples "
        + ", ".join(
            f"{family} {med[(family, 'nfkit')][2] / max(med[(family, p)][2] for p in same):.2f}x"
            for family in FAMILIES
            if (same := [p for p in libraries if p not in ("nfkit", "normflows")])
        )
        + " faster: the first coordinate's parameters depend on no input, so nfkit computes "
        "them on one row instead of the whole batch (one of the D passes saved).",
        "",
    ]
    # (3)
    dims = [2, 8, 32, 64]
    scale: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in range(max(1, args.repeats // 2)):
        for d in dims:
            for library in rotated(r):
                lp, smp = throughput("MAF", library, d, 10_000, layers=5, hidden=(256, 256))
                scale.setdefault((library, d), []).append((lp, smp))
    rows = {}
    for library in libraries:
        cells = []
        for d in dims:
            lp = statistics.median(v[0] for v in scale[(library, d)])
            smp = statistics.median(v[1] for v in scale[(library, d)])
            cells.append(f"{10_000 / lp * 1e3:.0f} / {10_000 / smp * 1e3:.0f}")
        rows[library] = cells
    lines += table(
        "### (3) Cost against dimension: milliseconds for log_prob / sampling of 10 000 "
        "points, 5 MAF layers, MADE [256, 256]",
        [f"D = {d}" for d in dims],
        rows,
    )
    # (4)
    nll: dict[tuple[str, str], list[float]] = {}
    for r in range(max(1, args.repeats // 2)):
        for data_name in ("moons", "16-D mixture"):
            for library in rotated(r):
                value = nll_at_budget(library, data_name, args.budget, seed=r)
                nll.setdefault((library, data_name), []).append(value)
                print(data_name, library, f"{value:.3f}", flush=True)
    rows = {
        lib: [f"{statistics.median(nll[(lib, d)]):.3f}" for d in ("moons", "16-D mixture")]
        for lib in libraries
    }
    lines += table(
        f"### (4) Held-out NLL (nats) after {args.budget:.0f} s of training, chapter MAF, "
        "batch 512, Adam 1e-3 (lower is better)",
        ["moons", "16-D mixture"],
        rows,
    )
    # (5)
    rows = {}
    for library in libraries:
        train_mib, sample_mib = peak_memory("MAF", library)
        rows[library] = [f"{train_mib:.0f}", f"{sample_mib:.0f}"]
    lines += table(
        "### (5) Peak resident memory above the start (MiB, sampled every millisecond in a "
        "fresh process), chapter MAF",
        ["20 training steps, batch 512", "sampling 100 000 points"],
        rows,
    )
    write_section("throughput", lines)


if __name__ == "__main__":
    main()
