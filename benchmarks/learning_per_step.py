"""How much each step teaches (issue 18): held-out NLL after 600 Adam steps (batch 512) of the
chapter's MAF and of NSF-AR (3 layers, MADE [128, 128] relu; NSF: 8 bins on [-5, 5]) on moons,
at lr 1e-3 and at the chapter's 1e-2, for nfkit's initialisations beside zuko and nflows.

nfkit's MADE starts its output layer at zero (``zero_last=True``, the default: a flow that
starts as a fixed map). Variants re-draw that layer after building: "glorot" (Glorot-uniform
weights, zero biases: TFP's initialisation) and "glorot/10" (the same, a tenth as large).
Every library runs the same plain loop (batches drawn with replacement from 50,000 points by a
seeded generator; 10,000 fresh points scored); five seeds, median and every run reported.
Steps, not seconds: the machine's load does not change the numbers.

Run: ``python benchmarks/learning_per_step.py`` (``make bench``).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable

import torch
from peers import BUILDERS, NSF_BUILDERS, Model, available
from report import machine, runs, write_section
from throughput import moons

from nfkit.nets import AutoregressiveNetwork


def redraw_last_layers(flow: torch.nn.Module, factor: float) -> None:
    """Glorot-uniform weights times ``factor`` and zero biases for every MADE's output layer."""
    for module in flow.modules():
        if isinstance(module, AutoregressiveNetwork) and module.net is not None:
            last = module.net[-1]
            fan_in = last.mask.sum(1).clamp(min=1).mean().item()
            fan_out = last.mask.sum(0).clamp(min=1).mean().item()
            bound = factor * math.sqrt(6.0 / (fan_in + fan_out))
            with torch.no_grad():
                last.weight.uniform_(-bound, bound)
                last.bias.zero_()


def variant(build: Callable[..., Model], factor: float) -> Callable[..., Model]:
    def made(features: int, layers: int, hidden: list[int]) -> Model:
        model = build(features, layers, hidden)
        redraw_last_layers(model.module, factor)
        return model

    return made


def builders(family: dict[str, Callable[..., Model]]) -> dict[str, Callable[..., Model]]:
    out = {
        "nfkit (zero_last, default)": family["nfkit"],
        "nfkit glorot": variant(family["nfkit"], 1.0),
        "nfkit glorot/10": variant(family["nfkit"], 0.1),
    }
    return out | {p: family[p] for p in available() if p in ("zuko", "nflows")}


FAMILIES = {"MAF": builders(BUILDERS), "NSF-AR": builders(NSF_BUILDERS)}


def held_out_nll(build: Callable[..., Model], lr: float, seed: int, steps: int = 600) -> float:
    train, test = moons(50_000, seed), moons(10_000, 10_000 + seed)
    torch.manual_seed(seed)
    model = build(2, 3, [128, 128])
    optimizer = torch.optim.Adam(model.module.parameters(), lr=lr)
    rows = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = train[torch.randint(0, len(train), (512,), generator=rows)]
        loss = -model.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return -float(model.log_prob(test).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        "## How much each step teaches (`learning_per_step.py`)",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"Machine: {machine()}. Held-out NLL in nats (lower is better; moons' entropy: 0.29).",
        "",
        "| flow | initialisation | lr 1e-3: median | runs | lr 1e-2: median | runs |",
        "|---|---|---|---|---|---|",
    ]
    for family, models in FAMILIES.items():
        for name, build in models.items():
            cells = []
            for lr in (1e-3, 1e-2):
                values = [held_out_nll(build, lr, seed) for seed in range(args.seeds)]
                finite = [v for v in values if math.isfinite(v)]
                median = statistics.median(finite) if finite else math.nan
                cells += [f"{median:.3f}", runs(values)]
                print(family, name, lr, cells[-2], cells[-1], flush=True)
            lines.append(f"| {family} | {name} | " + " | ".join(cells) + " |")
    write_section("learning_per_step", lines)


if __name__ == "__main__":
    main()
