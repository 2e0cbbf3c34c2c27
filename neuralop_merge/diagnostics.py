"""Diagnostics of the merge line: weight space, error along the line, the coordinate law.

* :func:`layer_report`: per tensor and overall, ‖Δ₊‖, ‖Δ₋‖, cos(ΔL, ΔH) and the share of
  the update energy along Δ₋;
* :func:`alpha_curves`: the rollout error along the merge line for given regimes, and
  :func:`oracle_alphas`, the best α of each;
* :func:`coordinate_law`: oracle α against the normalized physical coordinate, its
  least-squares line and Pearson r;
* :func:`wrong_sign_control`: the error at α = g(c) against α = −g(c), i.e. with the
  physical direction Δ₋ flipped, which must hurt if the direction is physical;
* :func:`fit_report`: how far several experts lie from their fitted surface;
* :func:`inspect_report` / :func:`save_report`: all of it as JSON, and PNGs through
  :mod:`neuralop_merge.plots`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import plots
from .atomic import write_text
from .ccm import CCM
from .coordinates import AffineMap
from .metrics import prefix_error
from .residuals import FitResidual
from .surface import CCMSurface


@dataclass(frozen=True)
class LayerStats:
    """Norms and angles of one tensor's (or the whole model's) endpoint updates.

    Attributes
    ----------
    name : str
        the tensor key, or ``"<overall>"`` for all tensors together
    numel : int
        number of entries
    shared_norm : float
        ‖Δ₊‖
    direction_norm : float
        ‖Δ₋‖
    cosine : float
        cos(ΔL, ΔH) (real part of the inner product for complex weights); NaN when an
        update is zero
    direction_share : float
        ‖Δ₋‖² / (‖Δ₊‖² + ‖Δ₋‖²), the share of the update energy along the physical direction
    """

    name: str
    numel: int
    shared_norm: float
    direction_norm: float
    cosine: float
    direction_share: float


def _flat64(tensor: torch.Tensor) -> torch.Tensor:
    """Flattened in double precision, so sums over millions of entries stay accurate."""
    return tensor.reshape(-1).to(torch.complex128 if tensor.is_complex() else torch.float64)


def _stats(name: str, low: torch.Tensor, high: torch.Tensor) -> tuple[LayerStats, tuple[float, float, float]]:
    low, high = _flat64(low), _flat64(high)
    low_sq = float(torch.vdot(low, low).real)
    high_sq = float(torch.vdot(high, high).real)
    cross = float(torch.vdot(low, high).real)
    return _from_sums(name, low.numel(), low_sq, high_sq, cross), (low_sq, high_sq, cross)


def _from_sums(name: str, numel: int, low_sq: float, high_sq: float, cross: float) -> LayerStats:
    # ‖Δ±‖² = (‖ΔH‖² ± 2⟨ΔL,ΔH⟩ + ‖ΔL‖²) / 4
    shared_sq = max((low_sq + high_sq + 2 * cross) / 4, 0.0)
    direction_sq = max((low_sq + high_sq - 2 * cross) / 4, 0.0)
    denominator = math.sqrt(low_sq * high_sq)
    total = shared_sq + direction_sq
    return LayerStats(
        name=name,
        numel=numel,
        shared_norm=math.sqrt(shared_sq),
        direction_norm=math.sqrt(direction_sq),
        cosine=cross / denominator if denominator > 0 else math.nan,
        direction_share=direction_sq / total if total > 0 else math.nan,
    )


def layer_report(ccm: CCM) -> list[LayerStats]:
    """Per-tensor statistics of ΔL = θL − θ₀ and ΔH = θH − θ₀, then the overall row."""
    anchor = ccm.inputs.anchor.tensors
    low, high = (expert.tensors for expert in ccm.inputs.experts)
    rows, totals, numel = [], [0.0, 0.0, 0.0], 0
    for key in anchor:
        row, sums = _stats(key, low[key] - anchor[key], high[key] - anchor[key])
        rows.append(row)
        totals = [t + s for t, s in zip(totals, sums)]
        numel += row.numel
    rows.append(_from_sums("<overall>", numel, *totals))
    return rows


def report_as_dicts(rows: list[LayerStats]) -> list[dict[str, object]]:
    """The report as JSON-ready dictionaries."""
    return [asdict(row) for row in rows]


# -- the error along the line ----------------------------------------------------------
Curves = dict[str, tuple[list[float], list[float]]]


def alpha_curves(
    model_at: Callable[[float], nn.Module],
    regimes: Mapping[Any, torch.Tensor],
    alphas: Sequence[float],
    *,
    history: int = 1,
    max_batch: int | None = None,
) -> Curves:
    """The rollout error of θ(α) on each regime, for every α.

    Parameters
    ----------
    model_at : Callable[[float], nn.Module]
        the merge line, e.g. ``CCM.at``; each model is built once and scored on all regimes
    regimes : Mapping[label, torch.Tensor]
        trajectories ``[B, T + history, C, ...]`` per regime (label: μ or a name)
    alphas : sequence of float

    Returns
    -------
    dict[str, (alphas, errors)]
        per regime (keyed by ``str(label)``): the α values and the relative L2 error of
        the rollout from the first ``history`` frames over all following frames
    """
    alphas = [float(a) for a in alphas]
    errors: dict[str, list[float]] = {str(label): [] for label in regimes}
    for alpha in alphas:
        model = model_at(alpha)
        for label, trajectories in regimes.items():
            errors[str(label)].append(prefix_error(model, trajectories, history=history, max_batch=max_batch))
    return {label: (alphas, values) for label, values in errors.items()}


def oracle_alphas(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> dict[str, float]:
    """The α of smallest error on each curve (the first, on ties)."""
    return {label: float(alphas[int(np.argmin(errors))]) for label, (alphas, errors) in curves.items()}


# -- the coordinate law -------------------------------------------------------------------
@dataclass(frozen=True)
class CoordinateLaw:
    """Oracle α against the normalized coordinate c, with the fit α ≈ slope·c + intercept.

    ``r`` is Pearson's correlation of (c, α): NaN when either is constant.
    """

    coordinates: tuple[float, ...]
    oracle_alphas: tuple[float, ...]
    slope: float
    intercept: float
    r: float


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation coefficient; NaN when either sequence is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denominator if denominator > 0 else math.nan


def coordinate_law(coordinates: Sequence[float], oracle: Sequence[float]) -> CoordinateLaw:
    """Fit α ≈ slope·c + intercept on (c, oracle α) pairs (at least two distinct c)."""
    mapping = AffineMap.fit(zip(coordinates, oracle))
    return CoordinateLaw(
        tuple(float(c) for c in coordinates), tuple(float(a) for a in oracle),
        mapping.slope, mapping.intercept, pearson_r(coordinates, oracle),
    )


# -- the wrong-sign control ------------------------------------------------------------------
@dataclass(frozen=True)
class WrongSign:
    """Error at α = g(c(μ)) and with the physical direction flipped, α = −g(c(μ))."""

    label: str
    alpha: float
    error: float
    wrong_alpha: float
    wrong_error: float


def wrong_sign_control(
    ccm: CCM, regimes: Mapping[float, torch.Tensor], *, history: int = 1, max_batch: int | None = None
) -> list[WrongSign]:
    """For each target μ: the rollout error of CCM-Coord and of its wrong-sign twin.

    θ₀ + Δ₊ − α·Δ₋ = θ(−α), so the control deploys ``ccm.at(-ccm.alpha_for(mu))``.
    ``regimes`` maps μ to trajectories ``[B, T + history, C, ...]``.
    """
    rows = []
    for mu, trajectories in regimes.items():
        alpha = ccm.alpha_for(float(mu))
        right, wrong = (
            prefix_error(ccm.at(a), trajectories, history=history, max_batch=max_batch) for a in (alpha, -alpha)
        )
        rows.append(WrongSign(str(mu), alpha, right, -alpha, wrong))
    return rows


# -- several experts -------------------------------------------------------------------------
def fit_report(surface: CCMSurface) -> list[FitResidual]:
    """Per tensor and overall, each expert's distance from the fitted merge surface."""
    return surface.fit_residuals()


# -- everything, as JSON and PNGs ------------------------------------------------------------
def inspect_report(
    ccm: CCM,
    regimes: Mapping[float, torch.Tensor] | None = None,
    alphas: Sequence[float] | None = None,
    *,
    history: int = 1,
    max_batch: int | None = None,
) -> dict[str, Any]:
    """The JSON-ready diagnostics of a merge line.

    Always ``layers`` (:func:`layer_report`); with ``regimes`` (μ -> trajectories) also
    ``curves`` along ``alphas`` (default 25 points over [−3, 3]), ``oracle`` α per
    regime, ``coordinate`` c(μ) and ``coord_alpha`` g(c(μ)) per regime, the
    ``coordinate_law`` (with two or more distinct coordinates, else None) and the
    ``wrong_sign`` control.
    """
    report: dict[str, Any] = {"layers": report_as_dicts(layer_report(ccm))}
    if not regimes:
        return report
    alphas = list(np.linspace(-3.0, 3.0, 25)) if alphas is None else list(alphas)
    curves = alpha_curves(ccm.at, regimes, alphas, history=history, max_batch=max_batch)
    oracle = oracle_alphas(curves)
    coordinates = {str(mu): ccm.coordinate(float(mu)) for mu in regimes}
    law = None
    if len(set(coordinates.values())) >= 2:
        law = asdict(coordinate_law(list(coordinates.values()), [oracle[label] for label in coordinates]))
    report.update(
        curves={label: {"alphas": a, "errors": e} for label, (a, e) in curves.items()},
        oracle=oracle,
        coordinate=coordinates,
        coord_alpha={str(mu): ccm.alpha_for(float(mu)) for mu in regimes},
        coordinate_law=law,
        wrong_sign=[asdict(row) for row in wrong_sign_control(ccm, regimes, history=history, max_batch=max_batch)],
    )
    return report


def json_safe(value: Any) -> Any:
    """NaN and infinities as None, so that the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


#: The files :func:`save_report` may write into ``plot_dir``.
PLOT_FILES = ("layers.png", "alpha_curves.png", "wrong_sign.png", "coordinate_law.png")


def save_report(
    report: Mapping[str, Any],
    *,
    json_path: str | Path | None = None,
    plot_dir: str | Path | None = None,
    overwrite: bool = True,
) -> list[Path]:
    """Write ``report`` (from :func:`inspect_report`) as JSON and/or PNGs; returns the written paths.

    PNGs: ``layers.png``; with curves also ``alpha_curves.png`` (oracle α marked),
    ``coordinate_law.png`` and ``wrong_sign.png``. Every file is written atomically;
    with ``overwrite=False`` an existing one is refused.
    """
    written = []
    if json_path is not None:
        written.append(write_text(json_path, json.dumps(json_safe(report), indent=2), overwrite=overwrite))
    if plot_dir is None:
        return written
    plot_dir = Path(plot_dir)
    layers, curves_png, wrong_png, law_png = (plot_dir / name for name in PLOT_FILES)
    written.append(plots.plot_layer_report(report["layers"], layers, overwrite=overwrite))
    if "curves" in report:
        curves = {label: (c["alphas"], c["errors"]) for label, c in report["curves"].items()}
        written.append(plots.plot_alpha_curves(curves, report["oracle"], curves_png, overwrite=overwrite))
        rows = report["wrong_sign"]
        written.append(plots.plot_wrong_sign(
            [row["label"] for row in rows], [row["error"] for row in rows], [row["wrong_error"] for row in rows],
            wrong_png, overwrite=overwrite,
        ))
    law = report.get("coordinate_law")
    if law is not None:
        written.append(plots.plot_coordinate_law(
            law["coordinates"], law["oracle_alphas"], (law["slope"], law["intercept"]), law_png,
            r=law["r"], labels=list(report["coordinate"]), overwrite=overwrite,
        ))
    return written
