"""Weight-space diagnostics of an endpoint pair: how the update splits into Δ₊ and Δ₋."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .ccm import CCM


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
