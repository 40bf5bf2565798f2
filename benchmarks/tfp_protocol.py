"""Protocol (0) against the chapter's own code: TensorFlow Probability beside nfkit, in one run.

The chapter trains 3 x [MAF + permutation] (MADE [128, 128] relu) with Keras: Adam 1e-2,
batch 32 (Keras' default), 50 epochs, 10 000 points of ``make_moons(noise=0.05)``. This script
runs that code unchanged but for the seed (under TensorFlow Probability in its own virtual
environment, ``.venv-tfp``, made by ``make bench`` when TensorFlow installs: TensorFlow pins its
own numpy) and nfkit's ``fit`` on the same data, alternating per seed, and reports held-out
NLL on 10 000 fresh points, the whole training time and the seconds an epoch takes after the
first (Keras traces and compiles its step in the first epoch; ``compile=True`` does the same for
nfkit).

Run: ``python benchmarks/tfp_protocol.py [--seeds 3]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import time
from pathlib import Path

TFP_PYTHON = Path(__file__).resolve().parent.parent / ".venv-tfp" / "bin" / "python"


def moons(seed: int):
    from sklearn.datasets import make_moons

    data = make_moons(10_000, noise=0.05, random_state=seed)[0].astype("float32")
    test = make_moons(10_000, noise=0.05, random_state=10_000 + seed)[0].astype("float32")
    return data, test


def tfp_child(seed: int, config: dict) -> None:
    """The chapter's code (section 7.6), run under TensorFlow with ``config`` (epochs,
    batch_size, lr: the chapter's); prints one JSON line."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the chapter's Keras 2 functional API
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfd, tfb = tfp.distributions, tfp.bijectors
    tf.random.set_seed(seed)
    data, test = moons(seed)
    zdist = tfd.MultivariateNormalDiag(loc=[0.0] * 2)
    bijectors = []
    for _ in range(3):
        anet = tfb.AutoregressiveNetwork(params=2, hidden_units=[128, 128], activation="relu")
        bijectors += [tfb.MaskedAutoregressiveFlow(anet), tfb.Permute([1, 0])]
    td = tfd.TransformedDistribution(zdist, bijector=tfb.Chain(bijectors))
    x = tf.keras.Input(shape=(2,), dtype=tf.float32)
    model = tf.keras.Model(x, td.log_prob(x))
    model.compile(optimizer=tf.optimizers.Adam(config["lr"]), loss=lambda _, log_p: -log_p)
    ends: list[float] = []
    mark = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter())
    )
    start = time.perf_counter()
    model.fit(
        x=data,
        y=np.zeros(len(data)),
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        verbose=0,
        callbacks=[mark],
    )
    seconds = time.perf_counter() - start
    nll = -float(np.mean(td.log_prob(test)))
    per_epoch = statistics.median(b - a for a, b in itertools.pairwise(ends))
    print(json.dumps({"nll": nll, "seconds": seconds, "epoch": per_epoch, "tf": tf.__version__}))


def run_tfp(seed: int, config: dict) -> dict:
    done = subprocess.run(
        [str(TFP_PYTHON), __file__, "--tfp-child", str(seed), json.dumps(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def tfp_available() -> str | None:
    """TensorFlow's version in ``.venv-tfp``, or None when it is not installed there."""
    if not TFP_PYTHON.exists():
        return None
    done = subprocess.run(
        [
            str(TFP_PYTHON),
            "-c",
            "import tensorflow_probability, tensorflow as tf; print(tf.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tfp-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tfp_child is not None:
        tfp_child(int(args.tfp_child[0]), json.loads(args.tfp_child[1]))
        return
    from chapter_protocol import CHAPTER, run
    from report import machine, write_section

    version = tfp_available()
    lines = [
        "## The chapter's own code: TensorFlow Probability beside nfkit (`tfp_protocol.py`)",
        "",
    ]
    if version is None:
        lines += [
            "TensorFlow Probability is not installed in `.venv-tfp` on this machine "
            "(`make bench` makes it when TensorFlow installs), so this protocol did not run.",
        ]
        write_section("chapter-tfp", lines)
        return
    names = {"TFP (the chapter's Keras code)": None, "nfkit": False, "nfkit, compile=True": True}
    results: dict[str, list[dict]] = {name: [] for name in names}
    for seed in range(args.seeds):
        order = list(names)[seed % 3 :] + list(names)[: seed % 3]
        for name in order:
            flag = names[name]
            if flag is None:
                result = run_tfp(seed, CHAPTER)
            else:
                nll, seconds, epoch = run("nfkit", seed, {**CHAPTER, "compile": flag})
                result = {"nll": nll, "seconds": seconds, "epoch": epoch}
            results[name].append(result)
            print(f"seed {seed} {name}: {result}", flush=True)
    lines += [
        f"The chapter's settings (Adam 1e-2, batch 32, 50 epochs, 10 000 points; held-out NLL on "
        f"10 000 fresh points). TensorFlow {version} with tf-keras, in its own process per run; "
        f"medians of {args.seeds} seeds, the three rotating. Machine: {machine()}.",
        "",
        "| library | median held-out NLL | median time (s) | s per epoch after the first | "
        "runs: NLL |",
        "|---|---|---|---|---|",
    ]
    med = {
        name: {k: statistics.median(r[k] for r in rs) for k in ("nll", "seconds", "epoch")}
        for name, rs in results.items()
    }
    for name, rs in results.items():
        m = med[name]
        runs = ", ".join(f"{r['nll']:.3f}" for r in rs)
        lines.append(
            f"| {name} | {m['nll']:.3f} | {m['seconds']:.1f} | {m['epoch']:.2f} | {runs} |"
        )
    tfp_epoch = med["TFP (the chapter's Keras code)"]["epoch"]
    verdict = []
    for name in ("nfkit", "nfkit, compile=True"):
        ratio = med[name]["epoch"] / tfp_epoch
        verdict.append(f"{name} {ratio:.2f}x ({'met' if ratio < 1 else 'not met'})")
    lines += [
        "",
        "Target (issue 7): seconds per epoch below TensorFlow Probability's compiled Keras loop. "
        "nfkit's epoch against TFP's: " + "; ".join(verdict) + ".",
    ]
    write_section("chapter-tfp", lines)


if __name__ == "__main__":
    main()
