r"""Pictures in the chapter's style: density on a grid, samples, loss curves, corner plots, images.

The one-panel functions (``density``, ``samples``, ``loss``) draw into ``ax`` (a new figure when
``None``) and return the ``Axes``; ``corner`` and ``images`` make their own grid of panels and
return the ``Figure``. Each writes a PNG when ``path`` is given. Nothing here changes
matplotlib's global state; :func:`chapter_style` is a context manager for the chapter's look.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nfkit.distributions.base import Distribution, evaluation_mode

__all__ = ["chapter_style", "corner", "density", "density_grid", "images", "loss", "samples"]

Limits = tuple[float, float]

CHAPTER_COLORS = ["#1BBC9B", "#F06060", "#5C4B51", "#F3B562", "#6e5687"]


@contextlib.contextmanager
def chapter_style() -> Iterator[None]:
    """The chapter's look (seaborn's 'dark' style and its colour cycle), without seaborn."""
    rc = {
        "axes.prop_cycle": mpl.cycler(color=CHAPTER_COLORS),
        "axes.facecolor": "#EAEAF2",
        "axes.edgecolor": "#666666",
        "axes.linewidth": 0.8,
        "axes.grid": False,
        "xtick.color": "#666666",
        "ytick.color": "#666666",
        "xtick.bottom": True,
        "ytick.left": True,
        "figure.dpi": 100,
    }
    with mpl.rc_context(rc):
        yield


def _axes(ax: Axes | None, figsize: tuple[float, float] | None) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _save(ax: Axes, path: str | os.PathLike[str] | None, dpi: int) -> Axes:
    if path is not None:
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        ax.figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return ax


def density_grid(
    distribution: Distribution,
    *,
    xlim: Limits = (-4.0, 4.0),
    ylim: Limits | None = None,
    resolution: int = 150,
    context: torch.Tensor | None = None,
    chunk: int = 65536,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Evaluate :math:`p(x)` of a 2-D distribution on a ``resolution × resolution`` grid.

    Returns:
        ``(p, xs, ys)``: densities of shape ``(resolution, resolution)`` with ``p[i, j]`` at
        ``(xs[j], ys[i])``, and the grid coordinates. ``p.sum() * dx * dy`` approximates the
        probability mass inside the window.

    """
    if tuple(distribution.event_shape) != (2,):
        raise ValueError(
            f"density plots need a 2-D distribution, got event shape "
            f"{list(distribution.event_shape)}"
        )
    ylim = xlim if ylim is None else ylim
    xs = np.linspace(*xlim, resolution)
    ys = np.linspace(*ylim, resolution)
    xx, yy = np.meshgrid(xs, ys)
    points = torch.as_tensor(
        np.stack([xx.ravel(), yy.ravel()], axis=1),
        dtype=distribution.dtype,
        device=distribution.device,
    )
    with evaluation_mode(distribution):
        log_p = torch.cat(
            [distribution.log_prob(part, context=context) for part in points.split(chunk)]
        )
    return log_p.exp().cpu().numpy().reshape(xx.shape), xs, ys


def density(
    distribution: Distribution,
    *,
    xlim: Limits = (-4.0, 4.0),
    ylim: Limits | None = None,
    resolution: int = 150,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    cmap: str | None = None,
    context: torch.Tensor | None = None,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 150,
    aspect: str = "equal",
) -> Axes:
    """Show the density of a 2-D distribution as an image (the chapter's ``imshow``).

    Unlike the chapter's ``plt.imshow(p, extent=...)``, the image is drawn with
    ``origin="lower"``, so up on the picture is +y. ``aspect="auto"`` fills the axes when
    the two ranges differ (``"equal"``: one unit is as long on both axes).
    """
    p, xs, ys = density_grid(
        distribution, xlim=xlim, ylim=ylim, resolution=resolution, context=context
    )
    ax = _axes(ax, figsize)
    ax.imshow(
        p,
        origin="lower",
        aspect=aspect,
        extent=(xs[0], xs[-1], ys[0], ys[-1]),
        cmap=cmap,
    )
    return _save(ax, path, dpi)


def samples(
    points: torch.Tensor | np.ndarray,
    *,
    xlim: Limits | None = None,
    ylim: Limits | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    alpha: float = 0.8,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 150,
    aspect: str = "equal",
    **plot_kwargs: Any,
) -> Axes:
    """Scatter 2-D points (samples or data) as the chapter does: ``plot(x, y, '.')``; with
    both limits given, ``aspect`` as for :func:`density`.
    """
    array = (
        points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    )
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"samples() draws points of shape (N, 2), got {array.shape}")
    ax = _axes(ax, figsize)
    ax.plot(array[:, 0], array[:, 1], ".", alpha=alpha, **plot_kwargs)
    if xlim is not None:
        ax.set_xlim(*xlim)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if xlim is not None and ylim is not None:
        ax.set_aspect(aspect)
    return _save(ax, path, dpi)


def loss(
    history: Any,
    *,
    keys: Sequence[str] = ("loss", "val_loss"),
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 150,
    kept_epoch: int | None = None,
) -> Axes:
    """Plot the per-epoch curves of a :class:`~nfkit.History` (or its ``.history`` dict),
    with a dashed line at the epoch whose weights were kept (``kept_epoch``, counted from 1;
    0: the starting point; by default a History's ``best_epoch``).
    """
    curves = getattr(history, "history", history)
    if kept_epoch is None and getattr(history, "best_epoch", None) is not None:
        kept_epoch = history.best_epoch + 1
    ax = _axes(ax, figsize)
    for key in keys:
        if key in curves:
            values = curves[key]
            ax.plot(np.arange(1, len(values) + 1), values, label=key)
    if kept_epoch is not None:
        label = "kept: the start" if kept_epoch == 0 else f"kept: epoch {kept_epoch}"
        ax.axvline(kept_epoch, color="gray", ls="--", lw=1, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative log-likelihood (nats)")
    ax.legend()
    return _save(ax, path, dpi)


def _numpy(points: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        return points.detach().cpu().numpy()
    return np.asarray(points)


def corner(
    data: torch.Tensor | np.ndarray,
    samples: torch.Tensor | np.ndarray | None = None,
    *,
    columns: Sequence[str] | None = None,
    max_columns: int = 6,
    max_points: int = 2000,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 120,
) -> Figure:
    """Pairwise marginals of data (and model samples, overlaid) for more than two dimensions.

    The diagonal shows each column's histogram, the lower triangle pairwise scatter plots; only
    the first ``max_columns`` columns and ``max_points`` rows are drawn, and the title says
    so when columns are left out.
    """
    sets = [("data", _numpy(data))] + ([] if samples is None else [("samples", _numpy(samples))])
    total = sets[0][1].shape[1]
    d = min(total, max_columns)
    names = list(columns or [f"x{i}" for i in range(d)])[:d]
    fig, axes = plt.subplots(d, d, figsize=(1.8 * d + 1, 1.8 * d + 1), squeeze=False)
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            for (label, values), color in zip(sets, CHAPTER_COLORS, strict=False):
                shown = values[:max_points]
                dot = float(np.clip(40 / np.sqrt(len(shown)), 1.0, 4.0))  # fewer points, bigger
                if i == j:
                    ax.hist(shown[:, i], bins=30, density=True, alpha=0.5, color=color, label=label)
                else:
                    ax.plot(shown[:, j], shown[:, i], ".", ms=dot, alpha=0.4, color=color)
            if i == d - 1:
                ax.set_xlabel(names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
    axes[0, 0].legend(fontsize="small")
    if d < total:
        fig.suptitle(f"the first {d} of {total} columns (choose others with columns=)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def images(
    values: torch.Tensor | np.ndarray,
    image_shape: Sequence[int],
    *,
    rows: int = 4,
    cols: int = 8,
    path: str | os.PathLike[str] | None = None,
    dpi: int = 120,
) -> Figure:
    """A grid of grey-scale images from rows of flattened pixels (e.g. samples of digits)."""
    array = _numpy(values)[: rows * cols].reshape(-1, *image_shape)
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(array):
            ax.imshow(array[k], cmap="gray_r", interpolation="nearest")
    if path is not None:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig
