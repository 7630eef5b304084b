"""Plots of runs: learning curves and curves compared across runs (each task draws its own in its ``plots.py``)."""

from __future__ import annotations

import csv
import pathlib

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no backend switch or global state (a notebook keeps its backend)


def subplots(rows: int, columns: int, figsize) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure with a ``rows x columns`` array of axes (the tasks' plots use it too)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, columns, squeeze=False)


MAX_COLUMNS = 3  # panels per row of a figure grid


def _grid(panels: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure with ``panels`` axes in rows of at most ``MAX_COLUMNS`` (unused cells switched off)."""
    columns = max(1, min(MAX_COLUMNS, panels))
    rows = max(1, -(-panels // columns))
    fig, axes = subplots(rows, columns, (width * columns, height * rows))
    for ax in axes.ravel()[panels:]:
        ax.axis("off")
    return fig, list(axes.ravel()[:panels])


def _value(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def learning_curves_figure(
    history_csv, title: str | None = None, best_epoch: int | None = None, noise_off_epoch: int | None = None
) -> Figure:
    """The figure of :func:`learning_curves`: one panel per metric (training and validation), in a grid.

    Args:
        history_csv: A run's ``history.csv`` (``epoch`` 0-based, one column per metric, ``val_`` prefixes).
        title: Figure title (e.g. the run's name and settings).
        best_epoch: 0-based epoch of the tested checkpoint: a dotted vertical line in every panel.
        noise_off_epoch: 0-based first epoch without margin noise: a dashed vertical line.
    """
    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"No epochs logged in {history_csv}")
    epochs = [int(r["epoch"]) + 1 for r in rows]
    names = [k for k in rows[0] if k not in ("epoch", "learning_rate") and not k.startswith("val_")]
    names += [k[4:] for k in rows[0] if k.startswith("val_") and k[4:] not in rows[0]]  # validation-only metrics
    fig, axes = _grid(len(names), 4.2, 3.2)
    for ax, name in zip(axes, names):
        if name in rows[0]:
            ax.plot(epochs, [_value(r[name]) for r in rows], label="train")
        if f"val_{name}" in rows[0]:
            ax.plot(epochs, [_value(r[f"val_{name}"]) for r in rows], label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="tab:green", ls=":", lw=1.2, label=f"tested (epoch {best_epoch + 1})")
        if noise_off_epoch is not None:
            ax.axvline(noise_off_epoch + 0.5, color="grey", ls="--", lw=1.0, label="margin noise off")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def learning_curves(
    history_csv, out_png, title: str | None = None, best_epoch: int | None = None, noise_off_epoch: int | None = None
) -> pathlib.Path:
    """PNG of :func:`learning_curves_figure` (panels in rows of at most three).

    Example:

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "history.csv").write_text("epoch,loss,val_loss\\n0,2.0,3.0\\n1,1.0,2.5\\n")
    >>> learning_curves(folder / "history.csv", folder / "curves.png", title="demo", best_epoch=1).exists()
    True
    """
    fig = learning_curves_figure(history_csv, title=title, best_epoch=best_epoch, noise_off_epoch=noise_off_epoch)
    fig.savefig(out_png, dpi=110, format="png")
    return pathlib.Path(out_png)


def compare_curves_figure(
    histories: dict,
    column,
    scale: float = 1.0,
    title: str | None = None,
    best_epochs: dict | None = None,
    noise_epochs: int | None = None,
    log_y: bool = False,
) -> Figure:
    """The figure of :func:`compare_curves`: one curve per run, one panel per column.

    Args:
        histories: ``{run name: history.csv path}`` (missing files are skipped).
        column: A history column, or a list of them (one panel each).
        scale: Factor applied to every value.
        title: Figure title.
        best_epochs: ``{run name: 0-based epoch}`` of each run's tested (best-validation) checkpoint: a marker on
            its curve, as in the paper's Fig. 4c.
        noise_epochs: The margin noise was on for the first ``noise_epochs`` epochs: a shaded band over them.
        log_y: A logarithmic value axis (e.g. cost norms that differ by orders of magnitude).
    """
    columns = [column] if isinstance(column, str) else list(column)
    fig, axes = _grid(len(columns), 6.5, 4.0)
    for ax, name in zip(axes, columns):
        if noise_epochs:
            ax.axvspan(0.5, noise_epochs + 0.5, color="grey", alpha=0.15, lw=0, label="margin noise on")
        for run, path in histories.items():
            if not pathlib.Path(path).exists():
                continue
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if r.get(name) not in (None, "")]
            if not rows:
                continue
            epochs, values = [int(r["epoch"]) + 1 for r in rows], [scale * float(r[name]) for r in rows]
            (line,) = ax.plot(epochs, values, label=run)
            best = (best_epochs or {}).get(run)
            if best is not None and best + 1 in epochs:
                ax.plot([best + 1], [values[epochs.index(best + 1)]], "o", color=line.get_color(), ms=6)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def compare_curves(
    histories: dict,
    column,
    out_png,
    scale: float = 1.0,
    title: str | None = None,
    best_epochs: dict | None = None,
    noise_epochs: int | None = None,
    log_y: bool = False,
) -> pathlib.Path:
    """PNG of :func:`compare_curves_figure`: one curve per run of each ``column`` of the runs' histories."""
    fig = compare_curves_figure(
        histories, column, scale=scale, title=title, best_epochs=best_epochs, noise_epochs=noise_epochs, log_y=log_y
    )
    fig.savefig(out_png, dpi=110, format="png")
    return pathlib.Path(out_png)
