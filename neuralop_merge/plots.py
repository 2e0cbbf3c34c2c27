"""PNG plots of merge diagnostics, from plain arrays.

Every function takes lists or arrays (no CCM object), writes one PNG to ``path``
atomically (see :mod:`neuralop_merge.atomic`; ``overwrite=False`` refuses an existing
file) and returns the path, so that experiment scripts can reuse them on their own numbers.
Figures are built with matplotlib's object API on the Agg canvas: no pyplot state,
no display, and the global backend is left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .atomic import write_file

PathLike = str | os.PathLike


def _figure(width: float = 6.0, height: float = 4.0) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _save(figure: Figure, path: PathLike, overwrite: bool) -> Path:
    figure.tight_layout()
    return write_file(path, lambda handle: figure.savefig(handle, format="png"), overwrite=overwrite)


def plot_alpha_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    chosen: Mapping[str, float] | None,
    path: PathLike,
    *,
    title: str = "error along the merge line",
    xlabel: str = "α",
    ylabel: str = "rollout relative L2",
    logy: bool = True,
    overwrite: bool = True,
) -> Path:
    """Error vs α, one curve per label, with each label's chosen α marked.

    Parameters
    ----------
    curves : Mapping[label, (alphas, errors)]
    chosen : Mapping[label, alpha], optional
        marked with a dot on the label's curve (interpolated) and a dotted vertical line
    path : str or Path
        the PNG to write
    """
    figure, axes = _figure()
    for index, (label, (alphas, errors)) in enumerate(curves.items()):
        alphas, errors = np.asarray(alphas, float), np.asarray(errors, float)
        order = np.argsort(alphas)
        (line,) = axes.plot(alphas[order], errors[order], marker=".", label=str(label), color=f"C{index % 10}")
        if chosen and label in chosen and math.isfinite(chosen[label]):
            alpha = float(chosen[label])
            axes.axvline(alpha, color=line.get_color(), linestyle=":", linewidth=1)
            axes.plot([alpha], [np.interp(alpha, alphas[order], errors[order])], "o", color=line.get_color())
    if logy and all(np.all(np.asarray(e, float) > 0) for _, e in curves.values()):
        axes.set_yscale("log")
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if curves:
        axes.legend(fontsize="small")
    return _save(figure, path, overwrite)


def plot_coordinate_law(
    coords: Sequence[float],
    oracle_alphas: Sequence[float],
    fit: tuple[float, float] | None,
    path: PathLike,
    *,
    r: float | None = None,
    labels: Sequence[str] | None = None,
    title: str = "coordinate law",
    xlabel: str = "normalized coordinate c(μ)",
    ylabel: str = "oracle α",
    overwrite: bool = True,
) -> Path:
    """Oracle α against the physical coordinate, the fitted line α = slope·c + intercept, and α = c.

    Parameters
    ----------
    coords, oracle_alphas : sequences of float
    fit : (slope, intercept), optional
    r : float, optional
        Pearson correlation, shown in the legend
    labels : sequence of str, optional
        annotate each point
    """
    figure, axes = _figure()
    coords, oracle_alphas = np.asarray(coords, float), np.asarray(oracle_alphas, float)
    axes.scatter(coords, oracle_alphas, color="C0", zorder=3, label="oracle α")
    if labels is not None:
        for x, y, text in zip(coords, oracle_alphas, labels):
            axes.annotate(str(text), (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
    span = np.linspace(min(coords.min(initial=-1.0), -1.0), max(coords.max(initial=1.0), 1.0), 50)
    axes.plot(span, span, color="grey", linestyle="--", linewidth=1, label="α = c (uncalibrated)")
    if fit is not None:
        slope, intercept = fit
        fit_label = f"fit α = {slope:.3g}·c + {intercept:.3g}" + (f"  (r = {r:.3f})" if r is not None and math.isfinite(r) else "")
        axes.plot(span, slope * span + intercept, color="C1", label=fit_label)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.legend(fontsize="small")
    return _save(figure, path, overwrite)


def _bars(axes: Any, labels: Sequence[Any], groups: Mapping[str, Sequence[float]], *, crowded: bool,
          color: str | None = None) -> np.ndarray:
    """Each group's bar side by side at every label, the labels as ticks; returns the ticks' positions.

    ``crowded`` (one bar group per tensor of a model) turns the tick labels further and shrinks them.
    """
    positions = np.arange(len(labels))
    width = 0.8 / len(groups)
    for index, (name, values) in enumerate(groups.items()):
        axes.bar(positions + (index - (len(groups) - 1) / 2) * width, values, width=width, label=name, color=color)
    axes.set_xticks(positions, [str(label) for label in labels], rotation=75 if crowded else 30,
                    fontsize="x-small" if crowded else "small")
    return positions


def _rows(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [asdict(row) if is_dataclass(row) else dict(row) for row in rows]


def plot_layer_report(
    rows: Sequence[Any], path: PathLike, *, title: str = "update split per tensor", overwrite: bool = True
) -> Path:
    """‖Δ₊‖ and ‖Δ₋‖ per tensor (bars) and the share along Δ₋ (dots, right axis).

    ``rows`` are :class:`~neuralop_merge.diagnostics.LayerStats` or dicts with
    ``name``, ``shared_norm``, ``direction_norm`` and ``direction_share``.
    """
    rows = [row for row in _rows(rows) if row["name"] != "<overall>"]
    figure, axes = _figure(max(6.0, 0.35 * len(rows) + 2), 4.5)
    norms = {"‖Δ₊‖": [row["shared_norm"] for row in rows], "‖Δ₋‖": [row["direction_norm"] for row in rows]}
    positions = _bars(axes, [row["name"] for row in rows], norms, crowded=True)
    axes.set(ylabel="norm", title=title)
    share = axes.twinx()
    share.plot(positions, [row["direction_share"] for row in rows], "k.", label="share along Δ₋")
    share.set(ylabel="share along Δ₋", ylim=(0, 1))
    axes.legend(loc="upper left", fontsize="small")
    return _save(figure, path, overwrite)


def plot_wrong_sign(
    labels: Sequence[str],
    right_errors: Sequence[float],
    wrong_errors: Sequence[float],
    path: PathLike,
    *,
    title: str = "wrong-sign control",
    overwrite: bool = True,
) -> Path:
    """Error at the coordinate's α against the error at −α, per target regime (bars)."""
    figure, axes = _figure()
    _bars(axes, labels, {"α = g(c)": right_errors, "α = −g(c) (wrong sign)": wrong_errors}, crowded=False)
    axes.set(ylabel="rollout relative L2", title=title)
    axes.legend(fontsize="small")
    return _save(figure, path, overwrite)


def plot_fit_residuals(
    names: Sequence[str],
    relative: Sequence[float],
    path: PathLike,
    *,
    title: str = "distance of the experts from the fit",
    overwrite: bool = True,
) -> Path:
    """The relative fit residual √(Σ‖Δᵢ − Δ̂ᵢ‖² / Σ‖Δᵢ‖²) per tensor (bars)."""
    figure, axes = _figure(max(6.0, 0.35 * len(names) + 2), 4.5)
    _bars(axes, names, {"relative residual": relative}, crowded=True, color="C2")
    axes.set(ylabel="relative residual", title=title)
    return _save(figure, path, overwrite)


def _tick_angle(names: Sequence[str]) -> dict[str, Any]:
    """Rotation of category names under a line plot: level when short, steeper when many long ones would touch."""
    if max(map(len, names), default=0) <= 4:
        return {"rotation": 0}
    if sum(map(len, names)) <= 80:
        return {"rotation": 20}
    return {"rotation": 40, "ha": "right", "rotation_mode": "anchor"}


def _line(axes: Any, positions: Sequence[float], values: Sequence[float], band: tuple | None, **style: Any) -> None:
    axes.plot(positions, values, marker="o", **style)
    if band is not None:
        axes.fill_between(positions, *band, color=style["color"], alpha=0.2, linewidth=0)


def _points(axes: Any, positions: Sequence[float], values: Sequence[float], band: tuple | None, **style: Any) -> None:
    lo, hi = band if band is not None else (values, values)
    below = [value - low for value, low in zip(values, lo)]
    above = [high - value for value, high in zip(values, hi)]
    axes.errorbar(positions, values, yerr=[below, above], fmt="o", capsize=3, **style)


def plot_series(
    x: Sequence[float] | Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: PathLike,
    *,
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    hlines: Mapping[str, float] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "rollout relative L2",
    logx: bool = False,
    logy: bool = True,
    joined: bool = True,
    overwrite: bool = True,
) -> Path:
    """One line per label over ``x``, with optional (lo, hi) bands (confidence intervals) and levels.

    Parameters
    ----------
    x : sequence of float, or of str
        names (splits, perturbations, maps) are categories, placed in order and written at their
        ticks; on a log axis (``logx``) each value is written at its tick instead of 2^k marks
    series : Mapping[label, values]
        a value per ``x``
    bands : Mapping[label, (lo, hi)], optional
        shaded around the label's line, in its colour
    hlines : Mapping[label, float], optional
        dashed horizontal levels (a method that does not depend on ``x``)
    joined : bool, default True
        each label's points joined by a line, its band shaded; False draws separate points with error
        bars, each label's set a little to the side, for categories in no order (an ablation's runs),
        where a line would suggest a trend between them
    """
    categorical = any(isinstance(value, str) for value in x)
    names = [str(value) for value in x] if categorical or logx else None
    positions = list(range(len(x))) if categorical else list(x)
    figure, axes = _figure()
    for index, (label, values) in enumerate(series.items()):
        band, style = (bands or {}).get(label), {"color": f"C{index % 10}", "label": str(label)}
        if joined:
            _line(axes, positions, values, band, **style)
        else:
            offset = 0.08 * (index - (len(series) - 1) / 2)
            _points(axes, [position + offset for position in positions], values, band, **style)
    for index, (label, level) in enumerate((hlines or {}).items()):
        axes.axhline(level, color=f"C{(len(series) + index) % 10}", linestyle="--", linewidth=1, label=str(label))
    values = [v for line in series.values() for v in line] + list((hlines or {}).values())
    if logy and values and all(math.isfinite(v) and v > 0 for v in values):
        axes.set_yscale("log")
    if logx:
        axes.set_xscale("log", base=2)
    if names is not None:
        axes.set_xticks(positions, names, fontsize="small", **_tick_angle(names))
        axes.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)  # a log axis's 2^k marks
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.legend(fontsize="small")
    return _save(figure, path, overwrite)
