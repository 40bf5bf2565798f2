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

Run: ``python benchmarks/throughput.py [--repeats 5] [--budget 60]`` (``make bench``). With
``--device cuda`` the same protocols run on the GPU (data and models moved there, timings
synchronized, 10x the points, a large batch beside 512, peak GPU memory for (5), no (4)) and
write their own section.
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
from pathlib import Path

import torch
from peers import BUILDERS, NSF_BUILDERS, available
from report import README, machine, write_section
from sklearn.datasets import make_moons

import nfkit

FAMILIES = {"MAF": BUILDERS, "NSF-AR": NSF_BUILDERS}
DEVICE = torch.device("cpu")  # --device


def sync() -> None:
    """Wait for the device, so that a host clock reads finished work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


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
    model = FAMILIES[family][library](features, layers, list(hidden))
    model.module.to(DEVICE)
    return model


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
    data = moons(batch * steps, 0).to(DEVICE)
    if library == "nfkit":
        nfkit.fit(model.module, data[: batch * 5], batch_size=batch, lr=1e-3, verbose=0)  # warm
        sync()
        start = time.perf_counter()
        nfkit.fit(model.module, data, batch_size=batch, lr=1e-3, verbose=0, seed=0)
    else:
        plain_steps(model, data, batch, 5)
        sync()
        start = time.perf_counter()
        plain_steps(model, data, batch, steps)
    sync()
    return steps / (time.perf_counter() - start)


def timed(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def throughput(family: str, library: str, features: int, n: int, layers=3, hidden=(128, 128)):
    """Points per second of log_prob and of sampling, no gradients."""
    model = build(family, library, features, layers, hidden)
    model.module.eval()
    x = torch.randn(n, features, device=DEVICE)
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


def compiled_steps(family: str, batch: int, mode: str, steps: int = 200) -> tuple[float, float]:
    """nfkit's opt-in compiled step: steady steps/s (third epoch of ``steps`` steps) and the
    seconds of the first epoch, which holds the compilation."""
    model = build(family, "nfkit", 2)
    data = moons(batch * steps, 0).to(DEVICE)
    marks: list[float] = []

    def mark(epoch: int, logs: dict) -> bool:
        sync()
        marks.append(time.perf_counter())
        return False

    sync()
    start = time.perf_counter()
    nfkit.fit(
        model.module,
        data,
        epochs=3,
        batch_size=batch,
        lr=1e-3,
        verbose=0,
        seed=0,
        compile=mode,
        callbacks=[mark],
    )
    return steps / (marks[2] - marks[1]), marks[0] - start


def compile_section(repeats: int, libraries: list[str], batches: tuple[int, ...]) -> list[str]:
    """Protocol (1) for nfkit's ``fit(compile=...)`` beside its eager step and the peers."""
    mode = "reduce-overhead" if DEVICE.type == "cuda" else "default"
    eager: dict[tuple[str, str, int], list[float]] = {}
    fast: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in range(repeats):
        for family in FAMILIES:
            for batch in batches:
                for library in libraries[r % len(libraries) :] + libraries[: r % len(libraries)]:
                    value = steps_per_second(family, library, batch)
                    eager.setdefault((family, library, batch), []).append(value)
                    print(family, library, batch, f"{value:.0f}", flush=True)
                    if library == "nfkit":
                        pair = compiled_steps(family, batch, mode)
                        fast.setdefault((family, batch), []).append(pair)
                        print(family, "compiled", batch, f"{pair[0]:.0f} ({pair[1]:.1f} s)")
    name = f"nfkit, compile={mode!r}"
    lines = [
        f"### (1b) nfkit's opt-in `fit(compile={mode!r})`: training steps/s",
        "",
        f"Medians of {repeats} repeats on the machine above; steady steps/s (the third epoch of "
        "200 steps); in brackets, the seconds of the first repeat's first epoch, which "
        "compiles (a second batch size can reuse the code compiled for the first; later "
        "repeats reuse the compiler's cache).",
        "",
        "| family, batch | " + " | ".join([name, *libraries]) + " | compiled / best peer |",
        "|---" * (len(libraries) + 3) + "|",
    ]
    for family in FAMILIES:
        for batch in batches:
            med = {lib: statistics.median(eager[(family, lib, batch)]) for lib in libraries}
            steady = statistics.median(p[0] for p in fast[(family, batch)])
            first = fast[(family, batch)][0][1]
            best = max((lib for lib in libraries if lib != "nfkit"), key=med.get, default=None)
            ratio = f"{steady / med[best]:.2f}x ({best})" if best else ""
            cells = [f"{steady:.0f} ({first:.0f} s)", *(f"{med[lib]:.0f}" for lib in libraries)]
            lines.append(f"| {family}, {batch} | " + " | ".join(cells) + f" | {ratio} |")
    return [*lines, ""]


def gpu_memory(family: str, library: str, points: int) -> tuple[float, float]:
    """MiB of GPU memory above the start at the peak of 20 training steps (batch 512, the
    optimizer's state included) and of sampling ``points`` points."""
    out = []
    for what in ("train", "sample"):
        model = build(family, library, 2)
        data = moons(512 * 20, 0).to(DEVICE)
        sync()
        torch.cuda.reset_peak_memory_stats(DEVICE)
        start = torch.cuda.memory_allocated(DEVICE)
        if what == "sample":
            with torch.no_grad():
                model.sample(points)
        elif library == "nfkit":
            nfkit.fit(model.module, data, batch_size=512, lr=1e-3, verbose=0, seed=0)
        else:
            plain_steps(model, data, 512, 20)
        sync()
        out.append((torch.cuda.max_memory_allocated(DEVICE) - start) / 2**20)
        del model, data
    return out[0], out[1]


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (a GPU table of its own)")
    parser.add_argument("--readme", type=Path, default=README, help="the file to write into")
    parser.add_argument("--compiled", action="store_true", help="only protocol (1b)")
    parser.add_argument("--memory", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        _memory_child(*args.memory)
        return
    DEVICE = torch.device(args.device)
    gpu = DEVICE.type == "cuda"
    points = 1_000_000 if gpu else 100_000
    batches = (512, 8192) if gpu else (512,)
    libraries = available()
    suffix = "-cuda" if gpu else ""
    if args.compiled:
        lines = compile_section(args.repeats, libraries, batches)
        write_section(f"throughput{suffix}-compile", lines, args.readme)
        return

    def rotated(r: int) -> list[str]:
        return libraries[r % len(libraries) :] + libraries[: r % len(libraries)]

    # (1) and (2)
    speed: dict[tuple[str, str], list[list[float]]] = {}
    for r in range(args.repeats):
        for family in FAMILIES:
            for library in rotated(r):
                row = [steps_per_second(family, library, b) for b in batches]
                row += throughput(family, library, 2, points)
                speed.setdefault((family, library), []).append(row)
                print(family, library, " ".join(f"{v:.0f}" for v in row), flush=True)
    cols = len(batches) + 2
    med = {k: [statistics.median(v[i] for v in vs) for i in range(cols)] for k, vs in speed.items()}
    where = f"{machine()}, {torch.cuda.get_device_name(DEVICE)}" if gpu else machine()
    lines = [
        f"## Speed against the other flow libraries{' on a GPU' if gpu else ''} "
        f"(`throughput.py{' --device cuda' if gpu else ''}`)",
        "",
        f"Machine: {where}. Medians of {args.repeats} repeats, libraries alternating in "
        "each repeat. Ratio: nfkit / best peer (higher is better for nfkit).",
        "",
    ]
    if gpu:
        lines += [
            "Data and models on the GPU; every timing ends with `torch.cuda.synchronize()`. "
            "nfkit's steps are `nfkit.fit`, which reads the loss on the host every step to stop "
            "on a non-finite one; the peers' plain loops do not. Regenerate with "
            "`bash benchmarks/gpu.sh` on a machine with CUDA (it also runs the device tests).",
            "",
        ]
    for family in FAMILIES:
        rows = {
            lib: [f"{v:.0f}" for v in med[(family, lib)][:-2]]
            + [f"{v / 1e3:.0f}k" for v in med[(family, lib)][-2:]]
            for lib in libraries
        }
        rows["nfkit / best peer"] = [
            ratio_line({lib: med[(family, lib)][i] for lib in libraries}, True) for i in range(cols)
        ]
        lines += table(
            f"### (1)-(2) {family} on moons: training steps/s, log_prob and sampling points/s "
            f"({points:,} points)",
            [f"train steps/s, batch {b}" for b in batches] + ["log_prob pts/s", "sample pts/s"],
            rows,
        )
    lines += [
        "normflows' `MaskedAffineAutoregressive` runs the other way round: one pass to sample, "
        "D passes for the density (an IAF in nfkit's terms; see (3)), so its sampling column "
        "is not like for like. Against the peers whose MAF samples in D passes, nfkit samples "
        + ", ".join(
            f"{family} {med[(family, 'nfkit')][-1] / max(med[(family, p)][-1] for p in same):.2f}x"
            for family in FAMILIES
            if (same := [p for p in libraries if p not in ("nfkit", "normflows")])
        )
        + " faster: the first coordinate's parameters depend on no input, so nfkit computes "
        "them on one row instead of the whole batch (one of the D passes saved).",
        "",
    ]
    peers = [p for p in libraries if p != "nfkit"]
    if peers:
        verdicts = []
        for family in FAMILIES:
            n = med[(family, "nfkit")]
            train = n[0] / max(med[(family, p)][0] for p in peers)
            d_pass = [p for p in peers if p != "normflows"] or peers
            sample = n[-1] / max(med[(family, p)][-1] for p in d_pass)
            verdicts.append(
                f"{family} training {train:.2f}x ({'met' if train >= 1.5 else 'not met'}), "
                f"sampling {sample:.2f}x against the D-pass peers "
                f"({'met' if sample >= 1.5 else 'not met'})"
            )
        lines += [
            "Target (issue 7): training and sampling throughput at least 1.5x the best peer. "
            + "; ".join(verdicts)
            + (
                ". Eager steps of these small flows are launch-bound here: see (1b) for the "
                "compiled step."
                if gpu
                else ". The training step is the same matrix products in every library; the "
                "compiled step pays only at small batches (the chapter sections) or on a GPU "
                "((1b) in the GPU section)."
            ),
            "",
        ]
    # (3)
    dims, n_dim = [2, 8, 32, 64], points // 10
    scale: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in range(max(1, args.repeats // 2)):
        for d in dims:
            for library in rotated(r):
                lp, smp = throughput("MAF", library, d, n_dim, layers=5, hidden=(256, 256))
                scale.setdefault((library, d), []).append((lp, smp))
    rows = {}
    for library in libraries:
        cells = []
        for d in dims:
            lp = statistics.median(v[0] for v in scale[(library, d)])
            smp = statistics.median(v[1] for v in scale[(library, d)])
            cells.append(f"{n_dim / lp * 1e3:.0f} / {n_dim / smp * 1e3:.0f}")
        rows[library] = cells
    lines += table(
        f"### (3) Cost against dimension: milliseconds for log_prob / sampling of {n_dim:,} "
        "points, 5 MAF layers, MADE [256, 256]",
        [f"D = {d}" for d in dims],
        rows,
    )
    # (4), on the CPU only: a wall-clock budget per library and data set is too dear on a lease
    if not gpu:
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
        if len(libraries) > 1:
            verdicts = []
            for d in ("moons", "16-D mixture"):
                ours = statistics.median(nll[("nfkit", d)])
                best = min(libraries[1:], key=lambda lib: statistics.median(nll[(lib, d)]))
                theirs = statistics.median(nll[(best, d)])
                verdict = "met" if ours <= theirs else f"not met, {ours - theirs:.3f} behind"
                verdicts.append(f"{d} {ours:.3f} against {best} {theirs:.3f} ({verdict})")
            lines += [
                "Target (issue 7): the lowest held-out NLL at equal wall-clock. "
                + "; ".join(verdicts)
                + f". Medians of {max(1, args.repeats // 2)} seed(s).",
                "",
            ]
    # (5)
    rows = {}
    for library in libraries:
        mib = gpu_memory("MAF", library, points) if gpu else peak_memory("MAF", library)
        rows[library] = [f"{mib[0]:.0f}", f"{mib[1]:.0f}"]
    what = (
        "Peak GPU memory above the start (MiB, `torch.cuda.max_memory_allocated`)"
        if gpu
        else "Peak resident memory above the start (MiB, sampled every millisecond in a "
        "fresh process)"
    )
    lines += table(
        f"### (5) {what}, chapter MAF",
        ["20 training steps, batch 512", f"sampling {points:,} points"],
        rows,
    )
    write_section(f"throughput{suffix}", lines, args.readme)


if __name__ == "__main__":
    main()
