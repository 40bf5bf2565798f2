"""Training speed near the limit (issue 18): steps/s of the chapter's MAF and of NSF-AR on moons,
at batch 32 and 512, in a user's plain loop and through ``nfkit.fit``, against zuko, nflows and
normflows, with the matrix-product ceiling of each shape.

(a) Plain loop: every library runs the loop of its documentation (``torch.optim.Adam``'s
    defaults, lr 1e-3; ``loss = -log_prob(x).mean()``, ``zero_grad``, ``backward``, ``step``)
    on a fixed batch; blocks of steps alternate between the libraries, medians of the blocks.
(b) ``nfkit.fit``, eager (``compile=False``) and compiled (``compile=True``; the default
    ``"auto"`` compiles runs of 20,000 steps or more): the best peer's plain loop runs inside
    fit's epoch callback, so every epoch of fit is followed by an equal number of the peer's
    steps, timed apart; medians over the epochs after the first three (the first holds the
    compilation, whose seconds are reported).
(c) Roofline: the matrix products of one nfkit training step, their shapes read by
    ``torch.profiler`` and timed alone; ``1 / (their time)`` is the steps/s a step that did
    nothing but its products would reach, and the fraction of it each nfkit mode reaches.

One thread (``torch.set_num_threads(1)``). Run: ``python benchmarks/training_speed.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch
from peers import BUILDERS, NSF_BUILDERS, available
from report import machine, write_section

import nfkit

FAMILIES = {"MAF": BUILDERS, "NSF-AR": NSF_BUILDERS}
BATCHES = {512: 20, 32: 80}  # batch: steps per block


def make(family: str, library: str):
    torch.manual_seed(0)
    model = FAMILIES[family][library](2, 3, [128, 128])
    return model, torch.optim.Adam(model.module.parameters(), lr=1e-3)


def plain_step(model, opt, x: torch.Tensor) -> None:
    """One step of the loop every library's documentation shows."""
    loss = -model.log_prob(x).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def plain_block(model, opt, x: torch.Tensor, steps: int) -> float:
    """Steps per second of ``steps`` plain-loop steps."""
    start = time.perf_counter()
    for _ in range(steps):
        plain_step(model, opt, x)
    return steps / (time.perf_counter() - start)


def plain_loops(family: str, batch: int, libraries: list[str], blocks: int) -> dict[str, float]:
    steps = BATCHES[batch]
    x = torch.randn(batch, 2, generator=torch.Generator().manual_seed(0))
    runs = {lib: make(family, lib) for lib in libraries}
    for model, opt in runs.values():
        plain_block(model, opt, x, 5)  # warm
    rates: dict[str, list[float]] = {lib: [] for lib in libraries}
    for _ in range(blocks):
        for lib in libraries:
            rates[lib].append(plain_block(*runs[lib], x, steps))
    return {lib: statistics.median(r) for lib, r in rates.items()}


def through_fit(
    family: str, batch: int, peer: str, compile: bool, epochs: int
) -> tuple[float, float, float]:
    """``(fit's steps/s, the peer's plain-loop steps/s, fit's first epoch in seconds)``."""
    steps = BATCHES[batch] * 2
    data = torch.randn(batch * steps, 2, generator=torch.Generator().manual_seed(0))
    model, _ = make(family, "nfkit")
    other, other_opt = make(family, peer)
    ours: list[float] = []
    theirs: list[float] = []
    clock = [time.perf_counter()]

    def interleave(epoch: int, logs: dict) -> bool:
        now = time.perf_counter()
        ours.append(now - clock[0])
        for xb in data.split(batch):
            plain_step(other, other_opt, xb)
        clock[0] = time.perf_counter()
        theirs.append(clock[0] - now)
        return False

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inductor's notes about profiler hooks
        nfkit.fit(
            model.module,
            data,
            epochs=epochs,
            batch_size=batch,
            lr=1e-3,
            verbose=0,
            shuffle=False,
            compile=compile,
            callbacks=[interleave],
        )
    return steps / statistics.median(ours[3:]), steps / statistics.median(theirs[3:]), ours[0]


def matmul_ceiling(family: str, batch: int, repeats: int = 200) -> float:
    """Steps/s of a step that ran only its matrix products (shapes from the profiler)."""
    model, opt = make(family, "nfkit")
    x = torch.randn(batch, 2)
    plain_block(model, opt, x, 3)
    with torch.profiler.profile(record_shapes=True) as prof:
        plain_block(model, opt, x, 1)
    products = []
    for event in prof.events():
        if event.name in ("aten::mm", "aten::addmm"):
            shapes = [s for s in event.input_shapes if len(s) == 2]
            products.append((event.name, shapes))
    tensors = []
    for name, shapes in products:
        if name == "aten::mm":
            tensors.append((torch.mm, [torch.randn(*s) for s in shapes[:2]]))
        else:  # addmm(bias, a, b): the bias is broadcast
            a, b = (torch.randn(*s) for s in shapes[-2:])
            tensors.append((torch.addmm, [torch.randn(b.shape[1]), a, b]))
    for fn, args in tensors:
        fn(*args)
    start = time.perf_counter()
    for _ in range(repeats):
        for fn, args in tensors:
            fn(*args)
    return repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    # A fresh cache for the compiler, so that the first epoch shows a cold compilation.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="nfkit-inductor-")
    torch.set_num_threads(1)
    libraries = available()
    peers = [lib for lib in libraries if lib != "nfkit"]
    lines = [
        "## Training speed near the limit (`training_speed.py`)",
        "",
        "Steps/s on moons, 3 layers of MADE [128, 128] (MAF: affine; NSF-AR: 8 bins, tails at "
        "5), Adam lr 1e-3, one thread; medians. (a) every library's plain loop (torch's Adam "
        "with its defaults), blocks of steps alternating between libraries; (b) `nfkit.fit` "
        "eager and compiled, each epoch followed by as many steps of the best peer's plain loop "
        "(timed apart: same machine state; the table gives the seconds of the "
        "first epoch, which holds a cold compilation); (c) the products alone: the matrix "
        "products of one nfkit step (shapes from `torch.profiler`) timed by themselves, the "
        "ceiling a step could reach if it did nothing else. Ratios are nfkit / best peer.",
        "",
        f"Machine: {machine()}.",
        "",
        "| flow, batch | plain loop: "
        + ", ".join(libraries)
        + " | plain ratio | fit eager (peer) | fit ratio | fit compiled (peer), first epoch"
        " | compiled ratio | products alone | best nfkit / products |",
        "|---" * 9 + "|",
    ]
    verdicts = []
    for family in FAMILIES:
        for batch in BATCHES:
            plain = plain_loops(family, batch, libraries, args.blocks)
            print(family, batch, {k: round(v) for k, v in plain.items()}, flush=True)
            best = max(peers, key=plain.get)
            eager, eager_peer, _ = through_fit(family, batch, best, False, args.epochs)
            fast, fast_peer, first = through_fit(family, batch, best, True, args.epochs)
            ceiling = matmul_ceiling(family, batch)
            print(family, batch, eager, eager_peer, fast, fast_peer, first, ceiling, flush=True)
            ratios = (plain["nfkit"] / plain[best], eager / eager_peer, fast / fast_peer)
            cells = [
                ", ".join(f"{plain[lib]:.0f}" for lib in libraries),
                f"{ratios[0]:.2f}x ({best})",
                f"{eager:.0f} ({eager_peer:.0f})",
                f"{ratios[1]:.2f}x",
                f"{fast:.0f} ({fast_peer:.0f}), {first:.0f} s",
                f"{ratios[2]:.2f}x",
                f"{ceiling:.0f}",
                f"{max(plain['nfkit'], eager, fast) / ceiling:.0%}",
            ]
            lines.append(f"| {family}, {batch} | " + " | ".join(cells) + " |")
            verdicts.append(
                f"{family} at {batch}: plain {ratios[0]:.2f}x "
                f"({'met' if ratios[0] >= 1.5 else 'missed'}), fit {max(ratios[1:]):.2f}x "
                f"({'met' if max(ratios[1:]) >= 2 else 'missed'}); the products alone allow "
                f"{ceiling / plain[best]:.1f}x the peer"
            )
    lines += [
        "",
        "Target (issue 18): at least 1.5x the best peer in a plain loop and 2x through `fit`. "
        + "; ".join(verdicts)
        + ".",
        "",
    ]
    write_section("training_speed", lines)


if __name__ == "__main__":
    main()
