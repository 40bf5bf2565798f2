"""How much each step teaches (issue 18): held-out NLL after 600 Adam steps (batch 512) of the
chapter's MAF and of NSF-AR (3 layers, MADE [128, 128] relu; NSF: 8 bins on [-5, 5]) on moons,
at lr 1e-3 and at the chapter's 1e-2, for nfkit's initialisations beside zuko and nflows.

nfkit's MADE starts every layer as ``torch.nn.Linear`` does (``init="torch"``, the default
since 2026-12, as nflows and zuko). "glorot, zero output" is the start before
(``init="glorot", zero_last=True``: Glorot-uniform over the connections, the output layer at
zero, a flow that starts as a fixed map); "glorot/10" draws that output layer Glorot-uniform
at a tenth of the scale, with zero biases.
Every library runs the same plain loop (batches drawn with replacement from 50,000 points by a
seeded generator; 10,000 fresh points scored); ten seeds, median and every run reported.
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


def restart(flow: torch.nn.Module, output_scale: float | None) -> None:
    """Every MADE restarted as ``init="glorot"``: its output layer at zero (``None``) or drawn
    Glorot-uniform times ``output_scale`` with zero biases."""
    for module in flow.modules():
        if isinstance(module, AutoregressiveNetwork) and module.net is not None:
            fresh = AutoregressiveNetwork(
                module.params,
                module.event_size,
                module.hidden_units,
                module.activation,
                module.input_order,
                context_features=module.context_features,
                init="glorot",
                zero_last=output_scale is None,
                output_scale=output_scale or 1.0,
            )
            with torch.no_grad():
                module.weights.copy_(fresh.weights)


def variant(build: Callable[..., Model], output_scale: float | None) -> Callable[..., Model]:
    def made(features: int, layers: int, hidden: list[int]) -> Model:
        model = build(features, layers, hidden)
        restart(model.module, output_scale)
        return model

    return made


def builders(family: dict[str, Callable[..., Model]]) -> dict[str, Callable[..., Model]]:
    out = {
        "nfkit (torch start, default)": family["nfkit"],
        "nfkit glorot, zero output (before)": variant(family["nfkit"], None),
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
    parser.add_argument("--seeds", type=int, default=10)
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
