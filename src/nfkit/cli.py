r"""The ``nfkit`` command: train a flow on a table, then sample, score, describe and plot it.

Every command has ``--help``; ``nfkit --install-completion`` sets up shell completion. Problems
with the user's input end with one line ``error: ...`` on stderr and exit status 2. This module
only parses arguments; :mod:`nfkit.runs` does the work, and is imported inside each command so
that ``--help`` and completion answer without loading torch.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="nfkit: learn a probability density from a table of numbers, then sample from it, "
    "evaluate it and plot it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class Objective(str, enum.Enum):
    """How to train: maximum likelihood, or flow matching (continuous flows only)."""

    auto = "auto"
    likelihood = "likelihood"
    flow_matching = "flow-matching"
    flow_matching_ot = "flow-matching-ot"


class Flow(str, enum.Enum):
    """Flow families the command knows."""

    maf = "maf"
    iaf = "iaf"
    realnvp = "realnvp"
    nsf = "nsf"
    glow = "glow"
    cnf = "cnf"


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    # ValueError covers nfkit's own (UserError, ModelFileError) and bad data.
    try:
        yield
    except (ValueError, FileNotFoundError, TypeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _run_ends(out: Path) -> Iterator[None]:
    """One line, no traceback, when training diverges or is interrupted, saying what the run
    folder holds and how to go on.
    """
    from nfkit.train.callbacks import NonFiniteLossError

    try:
        yield
    except NonFiniteLossError as err:
        typer.echo(
            f"error: training diverged: {err} The run folder {out} has no model; train again "
            "with a lower --lr and --force",
            err=True,
        )
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo(
            f"\ninterrupted: {out} keeps the last finished epoch's checkpoint; continue with "
            f"`nfkit train --resume {out}`",
            err=True,
        )
        raise typer.Exit(130) from None


def _names(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; ``None`` stays ``None``."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--hidden expects comma-separated integers, got {text!r}") from None


@app.command()
def train(
    data: Annotated[
        str | None,
        typer.Argument(
            help="CSV/TSV/TXT, NPY/NPZ or Parquet file, or a built-in data set "
            "(moons, circles, digits, iris)."
        ),
    ] = None,
    flow: Annotated[
        Flow, typer.Option(help="Flow family (default nsf, as the estimator).")
    ] = Flow.nsf,
    layers: Annotated[
        int | None,
        typer.Option(
            help="Flow layers (default 3 below 2,000 rows, else 5; cnf: 1 ODE block; glow: 4 "
            "steps per level)."
        ),
    ] = None,
    hidden: Annotated[
        str | None,
        typer.Option(
            help="Hidden widths, comma-separated (default 64,64 below 2,000 rows, else 128,128; "
            "cnf: 128,128,128; glow: the coupling networks' channels, 64)."
        ),
    ] = None,
    objective: Annotated[
        Objective,
        typer.Option(
            help="Training objective. auto: flow matching for cnf (no ODE solve per step), "
            "maximum likelihood otherwise; flow-matching-ot pairs each batch by optimal transport."
        ),
    ] = Objective.auto,
    epochs: Annotated[
        int | None,
        typer.Option(help="At most this many passes (default: 200 below 2,000 rows, else 100)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per step (default: about rows / 8, 32 to 256).")
    ] = None,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    lr_schedule: Annotated[str, typer.Option(help="'constant' or 'cosine'.")] = "constant",
    weight_decay: Annotated[
        float | None,
        typer.Option(help="AdamW weight decay (default: 1e-4 below 2,000 rows, else 0)."),
    ] = None,
    validation_split: Annotated[float, typer.Option(help="Held-out fraction.")] = 0.1,
    start_components: Annotated[
        int,
        typer.Option(
            help="Start the flow at the Gaussian mixture (at most this many components, by BIC) "
            "that fits the data, kept if no epoch beats it; 1: the Gaussian; 0: off."
        ),
    ] = 10,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Stop after this many epochs without a better validation NLL (default: 30 "
            "below 2,000 rows, else 20)."
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            help="Columns to condition on: trains p(columns | context) (default columns: the rest)."
        ),
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="Columns to model (names or 0-based indices).")
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            help="A text file's delimiter: ',', ';', 'tab' or 'space' (default: sniffed)."
        ),
    ] = None,
    standardize: Annotated[
        bool, typer.Option(help="Standardize columns (kept inside the model).")
    ] = True,
    log_columns: Annotated[
        str | None,
        typer.Option(
            help="Positive columns to model on the log scale (concentrations, prices); scores "
            "and samples stay in the data's units, the pictures show these columns' logs."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (initialisation, split, order).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to create.")] = Path("run"),
    force: Annotated[bool, typer.Option(help="Overwrite an existing run folder.")] = False,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the interrupted run in this folder.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary.")] = False,
    device: Annotated[
        str, typer.Option(help="Where to train: cpu, cuda, cuda:N or mps (the model file is CPU).")
    ] = "cpu",
) -> None:
    """Train a flow on DATA and write the model, metrics, pictures and report into a run folder."""
    with _user_errors():
        from nfkit import runs

        if resume is not None:
            with _run_ends(resume):
                runs.resume_run(resume, quiet=quiet)
            return
        if data is None:
            raise ValueError("give DATA (a file or a data-set name), or --resume RUN")
        args = {
            "data": data,
            "flow": flow.value,
            "layers": layers,
            "hidden": None if hidden is None else _ints(hidden),
            "objective": objective.value,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "lr_schedule": None if lr_schedule == "constant" else lr_schedule,
            "weight_decay": weight_decay,
            "validation_split": validation_split,
            "start_components": start_components,
            "patience": patience,
            "columns": _names(columns),
            "delimiter": {"tab": "\t", "space": " "}.get(delimiter or "", delimiter),
            "context": _names(context),
            "standardize": standardize,
            "log_columns": _names(log_columns),
            "seed": seed,
            "device": device,
        }
        with _run_ends(out):
            runs.start_run(args, out, force=force, quiet=quiet)


ModelArg = Annotated[Path, typer.Argument(help="A model file, or a run folder holding one.")]
Output = Annotated[
    Path | None, typer.Option("--output", "-o", help=".csv or .npy (default: CSV on stdout).")
]
Context = Annotated[
    str | None,
    typer.Option(help="A conditional model's context: values 'v1,v2' or a file of context rows."),
]


@app.command()
def sample(
    model: ModelArg,
    n: Annotated[int, typer.Option("-n", help="Number of samples.")] = 1000,
    output: Output = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    context: Context = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Scale the base's Gaussian noise: below 1 the dense core, above the tails."
        ),
    ] = None,
) -> None:
    """Draw N samples from MODEL, in the data's units and column names (a conditional model:
    N at each context row, after its context values).
    """
    with _user_errors():
        from nfkit import runs

        runs.sample_model(model, n, output, seed, context, temperature)


@app.command("log-prob")
def log_prob(
    model: ModelArg,
    data: Annotated[str, typer.Argument(help="Rows to evaluate (same columns as training).")],
    output: Output = None,
    context: Context = None,
) -> None:
    """Write log p(x) (natural log, data units) for every row of DATA; a conditional model
    reads log p(x | context) with the context columns of DATA, or --context.
    """
    with _user_errors():
        from nfkit import runs

        runs.score_file(model, data, output, context)


@app.command()
def info(model: ModelArg) -> None:
    """Describe MODEL: architecture, parameters, data and training metrics."""
    with _user_errors():
        from nfkit import runs

        typer.echo(runs.describe(model))


@app.command("plot")
def plot_model(
    model: ModelArg,
    data: Annotated[
        str | None, typer.Option(help="Data to draw next to samples (default: training data).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNGs.")] = Path("."),
    seed: Annotated[int, typer.Option(help="Random seed for the samples.")] = 0,
    columns: Annotated[
        str | None,
        typer.Option(help="Columns of the corner plot (default: all, up to 12)."),
    ] = None,
) -> None:
    """Draw MODEL's pictures (density and samples, corner plot or image grids) into a folder."""
    with _user_errors():
        from nfkit import runs

        written = runs.plot_model(model, data, out, seed, _names(columns))
        typer.echo("wrote " + ", ".join(str(p) for p in written))


def main() -> None:
    """Entry point of the ``nfkit`` console script."""
    app()


if __name__ == "__main__":
    main()
