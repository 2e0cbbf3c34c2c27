"""How far each expert lies from the merge surface fitted through all of them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .geometry import LeastSquaresFit
from .strategies.base import MergeInputs


@dataclass(frozen=True)
class FitResidual:
    """How far one tensor's (or the whole model's) experts lie from the fitted surface.

    Attributes
    ----------
    name : str
        the tensor key, or ``"<overall>"``
    numel : int
    residual_norms : tuple[float, ...]
        ‖Δᵢ − Δ̂(cᵢ)‖ per expert
    relative : tuple[float, ...]
        ‖Δᵢ − Δ̂(cᵢ)‖ / ‖Δᵢ‖ per expert (NaN where Δᵢ = 0)
    relative_total : float
        √(Σᵢ‖Δᵢ − Δ̂(cᵢ)‖² / Σᵢ‖Δᵢ‖²), the share of the update norm the fit misses
    """

    name: str
    numel: int
    residual_norms: tuple[float, ...]
    relative: tuple[float, ...]
    relative_total: float


def fit_residuals(fit: LeastSquaresFit, inputs: MergeInputs) -> list[FitResidual]:
    """Per tensor and overall: how far each expert lies from the fitted surface at its own coordinate."""
    residual_matrix = torch.from_numpy(np.eye(len(fit.coordinates)) - fit.hat())
    anchor = inputs.anchor.tensors
    rows, totals, delta_totals, numel = [], np.zeros(len(fit.coordinates)), np.zeros(len(fit.coordinates)), 0
    for key, base in anchor.items():
        dtype = torch.complex128 if base.is_complex() else torch.float64
        deltas = torch.stack([(e.tensors[key].to(base.device) - base).reshape(-1).to(dtype) for e in inputs.experts])
        residuals = residual_matrix.to(dtype) @ deltas.cpu()
        residual_sq = residuals.abs().square().sum(dim=1).numpy()
        delta_sq = deltas.abs().square().sum(dim=1).cpu().numpy()
        rows.append(_residual_row(key, base.numel(), residual_sq, delta_sq))
        totals, delta_totals, numel = totals + residual_sq, delta_totals + delta_sq, numel + base.numel()
    rows.append(_residual_row("<overall>", numel, totals, delta_totals))
    return rows


def _residual_row(name: str, numel: int, residual_sq: np.ndarray, delta_sq: np.ndarray) -> FitResidual:
    relative = tuple(float(math.sqrt(r / d)) if d > 0 else math.nan for r, d in zip(residual_sq, delta_sq))
    total = float(delta_sq.sum())
    return FitResidual(
        name, numel, tuple(float(math.sqrt(r)) for r in residual_sq), relative,
        float(math.sqrt(residual_sq.sum() / total)) if total > 0 else math.nan,
    )
