"""The study's PNG figures, drawn from the records and ``results.json``'s content.

The error along the merge line and the coordinate law are the library's own plots
(:mod:`neuralop_merge.plots`); the rollout snapshots and the error-vs-time panels are the study's.
Figures use matplotlib's object API on the Agg canvas and leave the global backend alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import families
from ..plots import plot_alpha_curves, plot_coordinate_law
from .records import LABELS, SNAPSHOT_FILE, SeedRecord

TIME_METHODS = ("persistence", "anchor", "anchor_extra", "average", "fixed_alpha", "ccm", "oracle", "conditioned")
#: The headline row stands out; the oracle is dotted (a bound, not a method).
STYLES = {"ccm": {"color": "black", "lw": 2.4}, "oracle": {"ls": ":"}}


def _mean_alpha(values: list[Any]) -> float:
    return float(np.mean([np.mean(value) for value in values]))


def alpha_curves(results: dict[str, Any], records: list[SeedRecord], path: Path) -> Path:
    """Mean error along the merge line per test regime, the selected CCM's mean α marked."""
    alphas, curves, chosen = records[0].alphas, {}, {}
    for index, first in enumerate(records[0].regimes):
        if first.split == "support":
            continue
        label = f"{first.split} c={first.c:+g}"
        curves[label] = (alphas, np.mean([record.regimes[index].alpha_curve for record in records], axis=0).tolist())
        chosen[label] = _mean_alpha([record.regimes[index].methods[results["selected_ccm"]].alpha for record in records])
    # Two lines: a variant's label on the first would run past the figure's edge.
    title = f"{results['family']}: error along θ(α), mean over seeds\ndots: the selected {LABELS[results['selected_ccm']]}"
    return plot_alpha_curves(curves, chosen, path, title=title, ylabel="future-frame relative L2")


def coordinate_law(results: dict[str, Any], path: Path) -> Path:
    law = results["coordinate_law"]
    coords, alphas = zip(*law["points"])
    return plot_coordinate_law(coords, alphas, (law["slope"], law["intercept"]), path, r=law["pearson_r"],
                               title=f"{results['family']}: oracle α per test regime and seed")


def _canvas(rows: int, cols: int, width: float, height: float,
            layout: str | None = None) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width * cols, height * rows), dpi=110, layout=layout)
    FigureCanvasAgg(figure)
    return figure, np.asarray(figure.subplots(rows, cols, squeeze=False))


def snapshots(results: dict[str, Any], out: Path, path: Path) -> Path | None:
    """Truth, anchor and the selected CCM on one OOD trajectory: every channel at frames k, T/2, T."""
    if not (out / SNAPSHOT_FILE).exists():
        return None
    snapshot_figure(results, np.load(out / SNAPSHOT_FILE)).savefig(path)
    return path


def snapshot_figure(results: dict[str, Any], snap: Mapping[str, np.ndarray]) -> Figure:
    """The figure of :func:`snapshots`, drawn from the arrays of a ``snapshot.npz``."""
    names = ("truth", "anchor", results["selected_ccm"])
    channels = families.get(results["family"]).channels
    frames = [int(f) for f in snap["frames"]]
    # Constrained layout gives each column's colour bar its own room; without it the bar's tick labels
    # ran over the next column's panels.
    figure, axes = _canvas(len(names), len(frames) * len(channels), 2.1, 2.0, layout="constrained")
    truth = snap["field_truth"].astype(np.float32)
    for column, (frame, channel) in enumerate((j, ch) for j in range(len(frames)) for ch in range(len(channels))):
        low, high = float(truth[frame, channel].min()), float(truth[frame, channel].max())
        for row, name in enumerate(names):
            ax = axes[row][column]
            image = ax.imshow(snap[f"field_{name}"][frame, channel].astype(np.float32), vmin=low, vmax=high,
                              cmap="RdBu_r", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{channels[channel]}, frame {frames[frame]}", fontsize=8)
            if column == 0:
                ax.set_ylabel(LABELS["ccm"].strip("*") if name == results["selected_ccm"] else LABELS[name], fontsize=8)
        figure.colorbar(image, ax=list(axes[:, column]), shrink=0.8)
    # Two lines: NS2D's figure is three panels wide.
    figure.suptitle(f"{results['family']}: OOD rollout at c = {float(snap['c']):+g} (μ = {float(snap['mu']):g}), "
                    f"seed {int(snap['seed'])}\ncolour scale per column from the truth", fontsize=10)
    return figure


def error_vs_time(results: dict[str, Any], records: list[SeedRecord], path: Path) -> Path:
    """Mean relative L2 per frame for each split, averaged over regimes and seeds (log scale)."""
    splits = list(results["splits"])
    figure, axes = _canvas(1, len(splits), 4.2, 3.4)
    k = results["config"]["prefix_k"]
    for ax, split in zip(axes[0], splits):
        for method in TIME_METHODS:
            key = results["selected_ccm"] if method == "ccm" else method
            curves = [r.methods[key].curve for record in records for r in record.regimes if r.split == split]
            curve = np.mean(curves, axis=0)[1:]  # frame 0 is the given initial state
            style = {"lw": 1.4, **STYLES.get(method, {})}
            ax.plot(np.arange(1, len(curve) + 1), curve, label=LABELS[method].strip("*"), **style)
        ax.axvspan(1, k, color="gray", alpha=0.12, label=f"observed prefix (k={k})")
        ax.set(title=split, xlabel="frame", ylabel="relative L2", yscale="log")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    figure.suptitle(f"{results['family']}: error vs time")
    figure.tight_layout(rect=(0, 0.12, 1, 0.95))
    figure.savefig(path)
    return path


def draw_all(results: dict[str, Any], records: list[SeedRecord], out: Path) -> list[Path]:
    """Every figure of the study into ``out``; returns the paths written."""
    drawn = [
        alpha_curves(results, records, out / "alpha_curves.png"),
        coordinate_law(results, out / "coordinate_law.png"),
        error_vs_time(results, records, out / "error_vs_time.png"),
    ]
    snap = snapshots(results, out, out / "snapshots.png")
    return drawn + ([snap] if snap is not None else [])


__all__ = ["draw_all"]
