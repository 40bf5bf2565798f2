r"""Run folders: train a flow on a table into a folder, and use the model file it holds.

This is what the ``nfkit`` command does, as plain functions (``nfkit.cli`` only parses
arguments). A run folder holds ``run.json`` (the arguments, for ``--resume``),
``checkpoint.safetensors`` (after every epoch), ``model.safetensors``, ``metrics.json``, the
pictures and ``report.html``.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nfkit import __version__
from nfkit._tensors import resolve_device
from nfkit.continuous import fit_flow_matching
from nfkit.data import Standardization, Table, read_table
from nfkit.data.text import column_position
from nfkit.distributions.base import Distribution
from nfkit.distributions.conditional import Conditional
from nfkit.flows import FLOWS, glow
from nfkit.io import RUN_MODEL_FILE, load_with_header, save
from nfkit.nets import ContextEmbedding
from nfkit.report import write_pictures, write_report
from nfkit.train.data import holdout_rows
from nfkit.train.fit import fit
from nfkit.train.loop import mean_nll
from nfkit.train.tabular import (
    FlowStart,
    TableSizes,
    dequantize,
    few_valued_columns,
    starts_at_mixture,
    table_sizes,
)

__all__ = [
    "UserError",
    "describe",
    "load_model",
    "plot_model",
    "resume_run",
    "sample_model",
    "score_file",
    "start_run",
]

MODEL_FILE = RUN_MODEL_FILE
CHECKPOINT_FILE = "checkpoint.safetensors"
RUN_FILE = "run.json"


class UserError(ValueError):
    """A problem with what the user asked for; the command prints it without a traceback."""


def start_run(args: dict[str, Any], out: Path, *, force: bool, quiet: bool) -> Path:
    """Check the data, create ``out`` (``force``: replace it), record ``args`` and train."""
    if args["flow"] not in FLOWS and args["flow"] != "glow":
        raise UserError(
            f"--flow {args['flow']} is not available yet in this nfkit; use one of "
            f"{', '.join(FLOWS)}"
        )
    if _objective(args) != "likelihood" and args["flow"] != "cnf":
        raise UserError(
            f"--objective {args['objective']} trains continuous flows only; use --flow cnf, or "
            "--objective likelihood"
        )
    _check_numbers(args)
    resolve_device(args.get("device", "cpu"))  # before anything is written
    exists = out.exists() and any(out.iterdir())
    if exists and not force:
        raise UserError(
            f"{out} already exists and is not empty; pass --force to overwrite it, or "
            f"--resume {out} to continue its training"
        )
    table, context = _tables(args)
    table, dequantized = _dequantized(table, args)
    standard = _standardization(table, args)  # refuse bad data before touching the folder
    if exists:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(json.dumps(args, indent=2))
    return _train(out, args, table, standard, context, dequantized, resumed=False, quiet=quiet)


def _check_numbers(args: dict[str, Any]) -> None:
    """Refuse impossible settings before a run folder exists."""
    at_least = {
        "epochs": 1,
        "batch_size": 1,
        "patience": 1,
        "layers": 1,
        "start_components": 0,
        "weight_decay": 0,
    }
    for name, low in at_least.items():
        value = args.get(name)
        if value is not None and not value >= low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    if not args["lr"] > 0:
        raise UserError(f"--lr must be positive, got {args['lr']}")
    if any(h < 1 for h in args.get("hidden") or []):
        raise UserError(f"--hidden widths must be positive, got {args['hidden']}")


def resume_run(out: Path, *, quiet: bool) -> Path:
    """Continue the run in ``out`` from its last checkpoint (same result as uninterrupted)."""
    run_file = out / RUN_FILE
    if not run_file.is_file():
        raise UserError(f"{out} is not an nfkit run folder (no {RUN_FILE})")
    args = json.loads(run_file.read_text())
    table, context = _tables(args)
    table, dequantized = _dequantized(table, args)
    standard = _standardization(table, args)
    return _train(out, args, table, standard, context, dequantized, resumed=True, quiet=quiet)


def _tables(args: dict[str, Any]) -> tuple[Table, Table | None]:
    """The modelled columns and, with ``--context``, the conditioning columns (by default the
    modelled columns are all the others).
    """
    names, columns, delimiter = args.get("context"), args["columns"], args.get("delimiter")
    if not names:
        return read_table(args["data"], columns, delimiter), None
    if args["flow"] == "glow":
        raise UserError("--context is not available for --flow glow (an image model)")
    if columns is not None:  # one read of the file, split by position
        both = read_table(args["data"], [*columns, *names], delimiter)
        overlap = sorted({c for c in both.columns if both.columns.count(c) > 1})
        if overlap:
            raise UserError(f"columns {', '.join(overlap)} are both modelled and context")
        k = len(columns)
        return both.select(both.columns[:k]), both.select(both.columns[k:])
    every = read_table(args["data"], delimiter=delimiter)  # every numeric column
    named = all(c in every.columns for c in names)  # else indices, or a text column to refuse
    context = every.select(names) if named else read_table(args["data"], names, delimiter)
    columns = [c for c in every.columns if c not in context.columns]
    if not columns:
        raise UserError("every column is a context column: nothing is left to model")
    return every.select(columns), context


def _objective(args: dict[str, Any]) -> str:
    """``likelihood``, ``flow-matching`` or ``flow-matching-ot``; ``auto`` picks flow matching
    for continuous flows (no ODE solve per step) and maximum likelihood for the others.
    """
    objective = args.get("objective", "auto")
    if objective == "auto":
        return "flow-matching" if args["flow"] == "cnf" else "likelihood"
    return objective


def _unit_range(table: Table) -> Standardization:
    """Glow's data scaling: all pixels to [0, 1] by the data's own range (its logit
    pre-processing needs bounded values), kept in the model as the standardization is.
    """
    if table.image_shape is None:
        raise UserError(
            f"--flow glow models images, but {table.source} has no image shape: use an image "
            "data set (digits) or an NPY file of images, shaped (N, H, W) or (N, C, H, W)"
        )
    low, high = float(table.values.min()), float(table.values.max())
    if not high > low:
        raise UserError(f"{table.source}: every pixel has the same value; nothing to model")
    columns = table.values.shape[1]
    return Standardization([low] * columns, [high - low] * columns)


def _build_flow(
    args: dict[str, Any], table: Table, context: Table | None, sizes: TableSizes
) -> Distribution:
    """The flow the arguments ask for (``sizes`` where they give none), before training, in
    standardized units; with a context, a conditional flow whose contexts are standardized
    inside the model.
    """
    if args["flow"] == "glow":
        assert table.image_shape is not None
        shape = tuple(table.image_shape)
        shape = (1, *shape) if len(shape) == 2 else shape
        levels = 2 if shape[1] % 4 == 0 and shape[2] % 4 == 0 else 1
        return glow(
            shape,
            levels=levels,
            steps=args.get("layers") or 4,
            hidden_channels=(args.get("hidden") or [64])[0],
            flat=True,
        )
    given = {k: args[k] for k in ("layers", "hidden") if args.get(k) is not None}
    if args["flow"] != "cnf":  # the ODE field keeps its own default size
        given = {"layers": sizes.layers, "hidden": list(sizes.hidden), **given}
    if context is None:
        return FLOWS[args["flow"]](table.values.shape[1], **given)
    width = context.values.shape[1]
    flow = FLOWS[args["flow"]](table.values.shape[1], context=width, **given)
    values = torch.as_tensor(context.values, dtype=torch.get_default_dtype())
    return Conditional(flow, ContextEmbedding.of(values))


def _standardization(table: Table, args: dict[str, Any]) -> Standardization | None:
    rows = table.values.shape[0]
    if rows < 2:
        raise UserError(f"{table.source} has {rows} row; need at least 2")
    if args["flow"] == "glow":
        if args.get("log_columns"):
            raise UserError("--log-columns is for tables; --flow glow models images")
        return _unit_range(table)
    logs = [
        column_position(table.columns, c, "the modelled columns")
        for c in args.get("log_columns") or []
    ]
    standard = None
    if args["standardize"] or logs:
        standard = Standardization.of(table.values, table.columns, logs, scale=args["standardize"])
    held_out = round(args["validation_split"] * rows)
    if args["validation_split"] and not 1 <= held_out < rows:
        raise UserError(
            f"--validation-split {args['validation_split']} of {rows} rows holds out {held_out}; "
            "choose a split that leaves rows on both sides, or --validation-split 0"
        )
    return standard


def _fit(
    flow: Distribution,
    rows: np.ndarray,
    args: dict[str, Any],
    out: Path,
    sizes: TableSizes,
    **kw: Any,
) -> Any:
    """Train ``flow`` on ``rows`` by the run's objective (budget and regularization: the
    arguments, or ``sizes`` where they are not given); returns the History.
    """
    objective = _objective(args)
    train: Any = fit
    if objective != "likelihood":
        coupling = "ot" if objective == "flow-matching-ot" else "independent"
        train = functools.partial(fit_flow_matching, coupling=coupling)
    settings = sizes.fit_options(**args)
    return train(
        flow,
        rows,
        lr=args["lr"],
        lr_schedule=args["lr_schedule"],
        optimizer="adamw",
        seed=args["seed"],
        checkpoint=out / CHECKPOINT_FILE,
        **settings,
        **kw,
    )


def _train_metrics(
    history: Any,
    flow: Distribution,
    rows: np.ndarray,
    context: np.ndarray | None,
    shift: dict[str, float],
    objective: str,
) -> dict[str, Any]:
    """Per-epoch NLL curves and summary numbers, in data units (``shift``: the nats to add to
    the training and the validation curves, ``loss`` and ``val_loss``).
    """
    curves = {k: [v + shift[k] for v in vs] for k, vs in history.history.items() if k in shift}
    kept = -1 if history.best_epoch is None else history.best_epoch
    if objective != "likelihood":
        # The training loss is a regression loss, not an NLL: score (up to 5000) training rows
        # once, by the exact likelihood.
        curves["flow_matching_loss"] = history.history["loss"]
        c = None if context is None else context[:5000]
        curves["loss"] = [mean_nll(flow, rows[:5000], c) + shift["loss"]]
    return {
        **curves,
        "lr": history.history.get("lr", []),
        "epochs": len(history.epoch),
        "best_epoch": None if history.best_epoch is None else history.best_epoch + 1,
        "stopped_early": history.stopped_early,
        "objective": objective,
        # The kept (best-epoch) weights' numbers: those of the saved model.
        "train_nll": curves["loss"][kept if objective == "likelihood" else -1],
        "val_nll": curves["val_loss"][kept] if "val_loss" in curves else None,
        "best_val_nll": min(curves["val_loss"]) if "val_loss" in curves else None,
    }


def _train(
    out: Path,
    args: dict[str, Any],
    table: Table,
    standard: Standardization | None,
    context: Table | None,
    dequantized: list[str],
    *,
    resumed: bool,
    quiet: bool,
) -> Path:
    values = table.values
    rows = (standard.apply(values) if standard else values).astype(np.float32)
    contexts = None if context is None else context.values.astype(np.float32)
    sizes = table_sizes(*values.shape)
    flow, rows, kw, start_at = _prepare(args, table, context, rows, contexts, sizes)
    start = time.perf_counter()
    verbose = 0 if quiet else 1
    history = _fit(flow, rows, args, out, sizes, resume=resumed, verbose=verbose, **kw)
    val_loss = history.history.get("val_loss")
    kept_start = bool(start_at and start_at.keep_if_better(min(val_loss) if val_loss else None))
    flow = flow.cpu()  # the model file, pictures and report are made on the CPU
    model = standard.bijector()(flow) if standard else flow
    # Per-epoch NLL in data units: the standardization (and log scale) add nats per row, their
    # mean over the training rows and over the validation rows.
    validation = kw.get("validation_data")
    if isinstance(validation, tuple):  # (rows, contexts)
        validation = validation[0]

    def nats(part: np.ndarray | None) -> float:
        return 0.0 if standard is None or part is None else float(standard.log_det(part).mean())

    shift = {"loss": nats(rows), "val_loss": nats(validation)}
    metrics = {
        **_train_metrics(history, flow, rows, kw["context"], shift, _objective(args)),
        "seconds": time.perf_counter() - start,
        "rows": int(values.shape[0]),
        "features": int(values.shape[1]),
        "start_components": None if start_at is None else start_at.components,
        "kept_start": kept_start,
        "dequantized_columns": dequantized,
        "read_notes": table.notes,
    }
    if kept_start:  # the saved model is the start: its numbers, not an epoch's
        metrics["best_epoch"] = 0
        metrics["train_nll"] = mean_nll(flow, rows, None) + shift["loss"]
        metrics["val_nll"] = metrics["best_val_nll"] = start_at.start_nll + shift["val_loss"]
    curves = {k: v for k, v in metrics.items() if isinstance(v, list) and k != "lr"}
    metadata = {
        "columns": table.columns,
        "source": table.source,
        "image_shape": table.image_shape,
        "standardization": None if standard is None else standard.__dict__,
        "context_columns": None if context is None else context.columns,
        "train_args": args,
        "metrics": {k: v for k, v in metrics.items() if not isinstance(v, list)},
        "nfkit_version": __version__,
    }
    save(model, out / MODEL_FILE, metadata=metadata)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    pictures = write_pictures(
        model,
        values,
        out,
        columns=table.columns,
        image_shape=table.image_shape,
        history={k: v for k, v in curves.items() if len(v) > 1},
        seed=args["seed"],
        context=contexts,
        kept_epoch=metrics["best_epoch"],
        log_columns=standard.log_columns if standard else (),
    )
    write_report(
        out / "report.html",
        title=f"nfkit run: {args['flow']} on {table.source}",
        summary=summary(metadata, model),
        metrics=metrics,
        pictures=pictures,
        model_text=torch.nn.Module.__repr__(model),
    )
    if not quiet:
        print(_run_summary(args, table, metrics, out, pictures))
    return out


def _prepare(
    args: dict[str, Any],
    table: Table,
    context: Table | None,
    rows: np.ndarray,
    contexts: np.ndarray | None,
    sizes: TableSizes,
) -> tuple[Distribution, np.ndarray, dict[str, Any], FlowStart | None]:
    """The flow to train (at its mixture start where the run uses one), its training rows and
    fit's keywords (contexts, validation rows): built alike on every run and resume of the
    folder, so that the checkpoint's weights fit it.
    """
    torch.manual_seed(args["seed"])
    flow = _build_flow(args, table, context, sizes)
    kw: dict[str, Any] = {"context": contexts}
    if args["validation_split"]:
        rows, kw["context"], kw["validation_data"] = holdout_rows(
            rows, contexts, args["validation_split"], args["seed"]
        )
    start_at = None
    components = args.get("start_components", 10)
    if starts_at_mixture(
        args["flow"], components, conditional=context is not None, standardized=args["standardize"]
    ):
        start_at = FlowStart(flow, rows, kw.get("validation_data"), components, args["seed"])
        flow = start_at.model
    return flow.to(resolve_device(args.get("device", "cpu"))), rows, kw, start_at


def _run_summary(
    args: dict[str, Any], table: Table, metrics: dict[str, Any], out: Path, pictures: list[Path]
) -> str:
    """What the command prints after training: the result, the files, the notes."""
    val = metrics["val_nll"]
    lines = [
        f"trained {args['flow']} on {table.source} ({metrics['rows']} rows x "
        f"{metrics['features']} columns) for {metrics['epochs']} epochs in "
        f"{metrics['seconds']:.1f} s: train NLL {metrics['train_nll']:.4f}"
        + ("" if val is None else f", validation NLL {val:.4f}")
        + " nats",
        f"wrote {out}/ ({MODEL_FILE}, metrics.json, report.html, "
        + ", ".join(p.name for p in pictures)
        + ")",
    ]
    return "\n".join(lines + [f"note: {note}" for note in _notes(metrics)])


def _notes(metrics: dict[str, Any]) -> list[str]:
    """What a user should know about this run's data and result."""
    notes = list(metrics["read_notes"])
    if metrics["dequantized_columns"]:
        names = ", ".join(metrics["dequantized_columns"])
        notes.append(
            f"few-valued columns ({names}) were dequantized: each value spread uniformly over "
            "the gap to the next, so their density at a value is about P(value) / gap"
        )
    if metrics["kept_start"]:
        k = metrics["start_components"]
        start = "the data's Gaussian" if k == 1 else f"a {k}-component Gaussian mixture"
        notes.append(
            f"no epoch beat the flow's starting point, {start}, on the validation rows: the "
            "model kept is that starting point (too few or too plain data for a flow)"
        )
    return notes


def _dequantized(table: Table, args: dict[str, Any]) -> tuple[Table, list[str]]:
    """``table`` with its few-valued columns dequantized (the run's seed: the same on resume),
    and their names.
    """
    gaps = {} if table.image_shape is not None else few_valued_columns(table.values)
    if not gaps:
        return table, []
    values = dequantize(table.values, gaps, args["seed"])
    names = [table.columns[j] for j in sorted(gaps)]
    return Table(values, table.columns, table.source, table.image_shape, table.notes), names


def summary(metadata: dict[str, Any], model: Distribution) -> dict[str, Any]:
    """The facts a person wants first about a trained model."""
    m = metadata.get("metrics", {})
    args = metadata.get("train_args")
    params = sum(p.numel() for p in model.parameters())
    if not args:  # a model saved from Python (nfkit.save): no run behind it
        return {
            "model": f"{type(model).__name__}, saved from Python (no training run recorded)",
            "parameters": f"{params:,}",
            "nfkit": metadata.get("nfkit_version"),
        }
    start = m.get("start_components")
    return {
        "data": metadata.get("source"),
        "columns": ", ".join(metadata.get("columns", [])),
        "context": ", ".join(metadata.get("context_columns") or []) or "none",
        "flow": f"{args.get('flow')} ({args.get('layers') or 'default'} layers, hidden "
        f"{args.get('hidden') or 'default'}, objective {_objective(args)})",
        "start": "standard normal base"
        if not start
        else f"{start}-component Gaussian mixture (by BIC)"
        + (", kept: no epoch beat it" if m.get("kept_start") else ""),
        "dequantized": ", ".join(m.get("dequantized_columns") or []) or "none",
        "parameters": f"{params:,}",
        "standardized": "yes" if metadata.get("standardization") else "no",
        "epochs": m.get("epochs"),
        "best epoch": m.get("best_epoch"),
        "train NLL (nats)": _fmt(m.get("train_nll")),
        "validation NLL (nats)": _fmt(m.get("val_nll")),
        "training time (s)": _fmt(m.get("seconds"), 1),
        "nfkit": metadata.get("nfkit_version"),
    }


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _model_path(model: Path) -> Path:
    return model / MODEL_FILE if model.is_dir() else model


def load_model(model: Path) -> tuple[Distribution, dict[str, Any]]:
    """The distribution in a model file (or run folder) and its metadata."""
    dist, header = load_with_header(_model_path(model))
    return dist, header["metadata"]


def _write_rows(values: np.ndarray, header: list[str], output: Path | None) -> None:
    if output is not None and output.suffix.lower() == ".npy":
        np.save(output, values)
        return
    if output is not None and output.suffix.lower() != ".csv":
        raise UserError(f"output must end in .csv or .npy, got {output.name}")
    with contextlib.ExitStack() as stack:
        stream = sys.stdout if output is None else stack.enter_context(open(output, "w"))
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([f"{v:.8g}" for v in row] for row in values.reshape(len(values), -1))


def _contexts(
    meta: dict[str, Any], given: str | None, rows: int | None = None
) -> np.ndarray | None:
    """Context rows for a conditional model: ``given`` is a file (its context columns are
    read) or comma-separated values; ``None`` for a model without a context.
    """
    names = meta.get("context_columns")
    if not names:
        if given is not None:
            raise UserError("this model is not conditional: it takes no --context")
        return None
    if given is None:
        raise UserError(f"this model is conditional on {', '.join(names)}: pass --context")
    if Path(given).is_file():
        values = read_table(given, names).values
    else:
        try:
            values = np.array([[float(v) for v in given.split(",")]])
        except ValueError:
            raise UserError(
                f"--context {given!r} is neither a file nor numbers (one per context column: "
                f"{', '.join(names)})"
            ) from None
        if values.shape[1] != len(names):
            raise UserError(
                f"--context needs {len(names)} values ({', '.join(names)}), got {values.shape[1]}"
            )
    if rows is not None and values.shape[0] not in (1, rows):
        raise UserError(f"--context has {values.shape[0]} rows for {rows} data rows")
    return values.astype(np.float32)


def sample_model(
    model: Path,
    n: int,
    output: Path | None,
    seed: int | None,
    context: str | None = None,
    temperature: float | None = None,
) -> None:
    """Write ``n`` samples of ``model`` (CSV with the data's column names, or NPY); for a
    conditional model, ``n`` at each context row, written after its context values.
    """
    if n < 1:
        raise UserError(f"-n must be positive, got {n}")
    dist, meta = load_model(model)
    contexts = _contexts(meta, context)
    options = {"seed": seed, "temperature": temperature}
    columns = meta.get("columns") or [f"x{i}" for i in range(dist.event_shape[0])]
    if contexts is None:
        _write_rows(dist.sample(n, **options).detach().cpu().numpy(), columns, output)
        return
    given = torch.from_numpy(contexts)
    draws = dist.sample(n, context=given, **options).detach().cpu().numpy()
    draws = draws.transpose(1, 0, 2)  # (contexts, n, D): each context's samples together
    shown = np.broadcast_to(contexts[:, None], (*draws.shape[:2], contexts.shape[1]))
    values = np.concatenate([shown, draws], -1).reshape(-1, shown.shape[-1] + draws.shape[-1])
    _write_rows(values, meta["context_columns"] + columns, output)


def score_file(model: Path, data: str, output: Path | None, context: str | None = None) -> None:
    """Write log p(x) of every row of ``data``, choosing the trained columns when named; a
    conditional model reads its context columns from ``data`` unless ``context`` is given.
    """
    dist, meta = load_model(model)
    trained = meta.get("columns") or []
    table = read_table(data)
    names = meta.get("context_columns")
    if context is None and names and all(c in table.columns for c in names):
        context = data
    if trained and all(c in table.columns for c in trained):
        table = table.select(trained)
    contexts = _contexts(meta, context, table.values.shape[0])
    features = dist.event_shape[0]
    if table.values.shape[1] != features:
        names = f" ({', '.join(trained)})" if trained else ""
        raise UserError(
            f"the model expects {features} columns{names}, but {table.source} has "
            f"{table.values.shape[1]} ({', '.join(table.columns)})"
        )
    scores = dist.log_prob(
        table.values.astype(np.float32),
        context=None
        if contexts is None
        else np.broadcast_to(contexts, (len(table.values), contexts.shape[1])),
    )
    _write_rows(np.asarray(scores).reshape(-1, 1), ["log_prob"], output)


def describe(model: Path) -> str:
    """A text description: file, summary, standardization and the module tree."""
    path = _model_path(model)
    dist, header = load_with_header(path)
    meta = header["metadata"]
    lines = [f"model file: {path} (nfkit format {header['format_version']})"]
    lines += [f"{key}: {value}" for key, value in summary(meta, dist).items()]
    standard = meta.get("standardization")
    if standard:
        logs = standard.get("log_columns", [])
        for i, (name, m, s) in enumerate(
            zip(meta["columns"], standard["mean"], standard["std"], strict=True)
        ):
            of = f"log {name}" if i in logs else name
            lines.append(f"  {of}: mean {m:.6g}, std {s:.6g}")
    lines.append(f"event shape: {list(dist.event_shape)}, dtype: {dist.dtype}")
    lines.append(torch.nn.Module.__repr__(dist))
    return "\n".join(lines)


def plot_model(
    model: Path, data: str | None, out: Path, seed: int, columns: list[str] | None = None
) -> list[Path]:
    """Draw ``model``'s pictures next to ``data`` (default: the data it was trained on);
    ``columns``: those of the corner plot.
    """
    dist, meta = load_model(model)
    source = data or meta.get("source")
    if source is None:
        raise UserError("this model does not record its data; pass --data")
    table = read_table(source, meta.get("columns") if data is None else None)
    if table.values.shape[1] != dist.event_shape[0]:
        raise UserError(
            f"the model has {dist.event_shape[0]} columns, {table.source} has "
            f"{table.values.shape[1]}"
        )
    image_shape = meta.get("image_shape") or table.image_shape
    names = meta.get("context_columns")
    context = read_table(source, names).values.astype(np.float32) if names else None
    shown = None
    if columns is not None:
        shown = [column_position(table.columns, c, "the model") for c in columns]
    return write_pictures(
        dist,
        table.values,
        out,
        columns=table.columns,
        image_shape=image_shape,
        seed=seed,
        context=context,
        shown=shown,
        log_columns=(meta.get("standardization") or {}).get("log_columns", []),
    )
