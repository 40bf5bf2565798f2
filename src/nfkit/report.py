r"""Pictures that fit the data, and a self-contained ``report.html`` for a run folder.

2-D data get the density on a grid and samples next to the data; more dimensions get a corner
plot (pairwise marginals of data and samples); images get grids of samples and data. The report
embeds its pictures as base64 PNGs, so it opens offline and travels as one file.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from nfkit import plot
from nfkit.bijectors import Exp, Invert, OnColumns
from nfkit.data.standardize import log_scaled
from nfkit.distributions.base import Distribution

__all__ = ["write_pictures", "write_report"]


def _limits(values: np.ndarray, margin: float = 0.15) -> list[tuple[float, float]]:
    low, high = values.min(axis=0), values.max(axis=0)
    pad = (high - low) * margin
    return [(float(a), float(b)) for a, b in zip(low - pad, high + pad, strict=True)]


def write_pictures(
    model: Distribution,
    data: np.ndarray,
    out: Path,
    *,
    columns: Sequence[str] | None = None,
    image_shape: Sequence[int] | None = None,
    history: dict[str, list[float]] | None = None,
    n_samples: int = 2000,
    seed: int = 0,
    context: np.ndarray | None = None,
    kept_epoch: int | None = None,
    shown: Sequence[int] | None = None,
    log_columns: Sequence[int] = (),
) -> list[Path]:
    """Draw the pictures that suit ``data``'s shape into ``out``; return the files written
    (``kept_epoch``: marked on the loss curve, as :func:`nfkit.plot.loss`; ``shown``: the
    column indices of the corner plot, by default all of them up to 12; ``log_columns``:
    columns drawn on the log scale, data, samples and density alike).
    As many samples are drawn as data rows are shown (up to ``n_samples``), so that neither
    hides the other. A conditional model (``context``: the data's context rows) is drawn once
    at each of those rows' contexts, which samples the data's marginal; it has no density
    picture (a density needs one context).
    """
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    torch.manual_seed(seed)
    columns = list(columns or [f"x{i}" for i in range(data.shape[1])])
    if log_columns:  # the model of (log x_L, x_rest): p(x) times the Jacobian of exp
        logs = list(log_columns)
        model = Invert(OnColumns(Exp(), logs))(model)
        data = log_scaled(data, logs)
        columns = [f"log {c}" if i in logs else c for i, c in enumerate(columns)]
    rows = data[:n_samples]
    if context is None:
        samples = model.sample(len(rows)).detach().cpu().numpy()
    else:
        given = torch.as_tensor(context[: len(rows)], dtype=model.dtype)
        samples = model.sample(1, context=given)[0].detach().cpu().numpy()
    with plot.chapter_style():
        if history:
            plot.loss(history, figsize=(5, 3.5), path=out / "loss.png", kept_epoch=kept_epoch)
            written.append(out / "loss.png")
        if image_shape is not None:
            plot.images(samples, image_shape, path=out / "samples.png")
            plot.images(rows, image_shape, path=out / "data.png")
            written += [out / "samples.png", out / "data.png"]
        elif data.shape[1] == 2:
            (xlim, ylim) = _limits(data)
            spans = sorted((xlim[1] - xlim[0], ylim[1] - ylim[0]))
            aspect = "equal" if spans[1] <= 3 * spans[0] else "auto"  # no slivers
            if context is None:
                ax = plot.density(model, xlim=xlim, ylim=ylim, figsize=(4.5, 4), aspect=aspect)
                ax.set(xlabel=columns[0], ylabel=columns[1])
                ax.figure.savefig(out / "density.png", dpi=150, bbox_inches="tight")
                written.append(out / "density.png")
            dots = {"ms": float(np.clip(60 / np.sqrt(len(rows)), 1.0, 5.0)), "aspect": aspect}
            ax = plot.samples(
                rows, xlim=xlim, ylim=ylim, figsize=(4.5, 4), label="data", alpha=0.6, **dots
            )
            plot.samples(samples, ax=ax, xlim=xlim, ylim=ylim, label="samples", alpha=0.4, **dots)
            ax.set(xlabel=columns[0], ylabel=columns[1])
            ax.legend(loc="upper right")
            ax.figure.savefig(out / "samples.png", dpi=150, bbox_inches="tight")
            written.append(out / "samples.png")
        else:
            index = list(range(data.shape[1])) if shown is None else list(shown)
            names = [columns[i] for i in index]
            plot.corner(
                rows[:, index],
                samples[:, index],
                columns=names,
                max_columns=12,  # past 12 the panels are too small to read
                path=out / "corner.png",
            )
            written.append(out / "corner.png")
    plt.close("all")
    return written


def _png(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def write_report(
    path: Path,
    *,
    title: str,
    summary: dict[str, Any],
    metrics: dict[str, Any],
    pictures: Sequence[Path],
    model_text: str,
) -> Path:
    """Write one offline HTML page: the summary table, metrics, pictures and the model."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    epochs = len(metrics.get("loss", []))
    curve_rows = "".join(
        "<tr>"
        + f"<td>{e + 1}</td>"
        + "".join(f"<td>{metrics[k][e]:.4f}</td>" for k in ("loss", "val_loss") if k in metrics)
        + "</tr>"
        for e in range(epochs)
    )
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    curve_head = "".join(f"<th>{k}</th>" for k in ("loss", "val_loss") if k in metrics)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }}
figure {{ display: inline-block; margin: .5rem; }} img {{ max-width: 28rem; }}
pre {{ background: #f4f4f4; padding: 1rem; overflow: auto; }}
details {{ margin: 1rem 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{rows}</table>
<h2>Pictures</h2>
{"".join(_png(p) for p in pictures)}
<h2>Negative log-likelihood per epoch (nats, data units)</h2>
<details><summary>{epochs} epochs</summary>
<table><tr><th>epoch</th>{curve_head}</tr>{curve_rows}</table></details>
<h2>Model</h2>
<pre>{html.escape(model_text)}</pre>
<h2>metrics.json</h2>
<pre>{html.escape(json.dumps(scalars, indent=2))}</pre>
</body></html>
"""
    path.write_text(page)
    return path
