"""The chapter's moon protocol, nfkit side by side with the other flow libraries.

Protocol (issue 2): 10 000 points of ``make_moons(noise=0.05)``; 3 x [MAF + reversal], MADE
hidden [128, 128] relu; Adam 1e-2, batch 32, 50 epochs; held-out NLL on 10 000 fresh points;
wall-clock training time. Every library trains the same architecture on the same data with the
same seed; the order of the libraries rotates from seed to seed so that machine noise hits all
alike. nfkit trains through ``nfkit.fit`` (what its users run); the peers through the plain
PyTorch loop their documentation shows. A last row shows nfkit's recommended settings.

Run: ``python benchmarks/chapter_protocol.py [--seeds 5]`` (``make bench``).
"""

import argparse
import itertools
import statistics
import time

import torch
from peers import BUILDERS, available
from report import machine, runs, write_section
from sklearn.datasets import make_moons

import nfkit
from nfkit.data import moons_entropy

CHAPTER = dict(epochs=50, batch_size=32, lr=1e-2)
RECOMMENDED = dict(epochs=200, batch_size=256, lr=3e-3, lr_schedule="cosine", validation_split=0.1)


def moons(seed):
    data = make_moons(10_000, noise=0.05, random_state=seed)[0]
    test = make_moons(10_000, noise=0.05, random_state=10_000 + seed)[0]
    return (torch.as_tensor(a, dtype=torch.float32) for a in (data, test))


def train_plain(model, data, epochs, batch_size, lr, mark):
    """The loop of the peers' documentation: shuffle, Adam, mean NLL."""
    opt = torch.optim.Adam(model.module.parameters(), lr=lr)
    for epoch in range(epochs):
        for idx in torch.randperm(data.shape[0]).split(batch_size):
            loss = -model.log_prob(data[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        mark(epoch, {})


def run(library, seed, config, **build):
    torch.manual_seed(seed)
    data, test = moons(seed)
    model = BUILDERS[library](2, 3, [128, 128], **build)
    ends = []

    def mark(epoch, logs):
        ends.append(time.perf_counter())
        return False

    start = time.perf_counter()
    if library == "nfkit":
        nfkit.fit(model.module, data, verbose=0, seed=seed, callbacks=[mark], **config)
    else:
        train_plain(model, data, mark=mark, **config)
    seconds = time.perf_counter() - start
    epoch_seconds = statistics.median(b - a for a, b in itertools.pairwise(ends))
    model.module.eval()
    with torch.no_grad():
        return -float(model.log_prob(test).mean()), seconds, epoch_seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    libraries = available()
    results = {name: [] for name in libraries}
    results["nfkit, compile=True"] = []
    results["nfkit, recommended"] = []
    results["nfkit, recommended, scale='exp'"] = []
    for seed in range(args.seeds):
        order = libraries[seed % len(libraries) :] + libraries[: seed % len(libraries)]
        for library in order:
            results[library].append(run(library, seed, CHAPTER))
            print(f"seed {seed} {library}: NLL {results[library][-1][0]:.3f}", flush=True)
        results["nfkit, compile=True"].append(run("nfkit", seed, {**CHAPTER, "compile": True}))
        results["nfkit, recommended"].append(run("nfkit", seed, RECOMMENDED))
        results["nfkit, recommended, scale='exp'"].append(
            run("nfkit", seed, RECOMMENDED, scale="exp")
        )
    entropy, entropy_se = moons_entropy(0.05)
    medians = {
        name: [statistics.median(r[i] for r in rs) for i in range(3)]
        for name, rs in results.items()
    }
    peers = [name for name in libraries if name != "nfkit"]
    lines = [
        "## The chapter's moon protocol (`chapter_protocol.py`)",
        "",
        "10 000 training points of `make_moons(noise=0.05)`; 3 x [MAF + reversal], MADE hidden",
        "[128, 128] relu; Adam 1e-2, batch 32, 50 epochs; held-out NLL (nats, lower is better) on",
        "10 000 fresh points; training wall-clock. Same architecture (52 236 parameters), data and",
        f"seeds for every library, library order rotated per seed; medians of {args.seeds} seeds,",
        f"every run listed. Machine: {machine()}.",
        "",
        f"Entropy of the data density (the lowest NLL any model can reach): "
        f"**{entropy:.3f} ± {entropy_se:.3f}** nats.",
        "",
        "| library | median held-out NLL | median time (s) | s per epoch after the first "
        "| runs: NLL | runs: s |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        nll, sec, per_epoch = medians[name]
        lines.append(
            f"| {name} | {nll:.3f} | {sec:.1f} | {per_epoch:.2f} | {runs([r[0] for r in rs])} "
            f"| {runs([r[1] for r in rs], '{:.0f}')} |"
        )
    if peers:
        best_nll = min(peers, key=lambda p: medians[p][0])
        fastest = min(peers, key=lambda p: medians[p][1])
        peer_epoch = min(medians[p][2] for p in peers)
        lines += [
            "",
            f"nfkit / best peer on the chapter's settings: NLL {medians['nfkit'][0]:.3f} vs "
            f"{medians[best_nll][0]:.3f} ({best_nll}); time ratio "
            f"{medians['nfkit'][1] / medians[fastest][1]:.2f} against the fastest ({fastest}).",
            "",
            "Target (issue 7): seconds per epoch below every peer's. Epochs after the first: "
            + ", ".join(
                f"{name} {medians[name][2]:.2f} s"
                for name in ("nfkit", "nfkit, compile=True", *peers)
            )
            + "; "
            + ", ".join(
                f"{name} {'met' if medians[name][2] < peer_epoch else 'not met'}"
                for name in ("nfkit", "nfkit, compile=True")
            )
            + ". TensorFlow Probability: `tfp_protocol.py`'s section.",
        ]
    lines += [
        "",
        "`compile=True` runs the chapter's settings through `torch.compile`: its time includes "
        "compiling (about 19 s from a cold cache, a few seconds once the compiler's on-disk "
        "cache holds the step); the column after it is the steady cost of an epoch. The "
        "issue's figures for one epoch at batch 32: TensorFlow Probability's compiled Keras "
        "loop 0.44 s, zuko 0.73 s, nflows 1.48 s (another machine).",
        "",
        "The recommended rows: "
        + ", ".join(f"{k}={v}" for k, v in RECOMMENDED.items())
        + ", best weights restored; the last one with TFP's exponential scale",
        "(`MaskedAutoregressiveFlow(net, scale='exp')`) instead of the default softplus.",
        "Issue 2 quotes TensorFlow Probability at about 1.0 nats in 22 s on this protocol;",
        "`tfp_protocol.py` runs the chapter's own code beside nfkit where TensorFlow installs.",
    ]
    write_section("chapter", lines)


if __name__ == "__main__":
    main()
