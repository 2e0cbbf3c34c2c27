"""Plain (weighted) averaging of N ≥ 2 experts: θ = Σ wᵢθᵢ with Σ wᵢ = 1."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import StrategyError
from .base import MergeInputs, Plan, Strategy, coefficient, sequence


class Average(Strategy):
    """Σ wᵢθᵢ over the experts; weights default to uniform and are normalized to sum 1."""

    name = "average"

    def plan(self, inputs: MergeInputs, *, weights: Sequence[float] | None = None) -> Plan:
        n = len(inputs.experts)
        raw = [1.0] * n if weights is None else [coefficient(w, "weights") for w in sequence(weights, "weights")]
        if len(raw) != n:
            raise StrategyError(f"parameter 'weights' has {len(raw)} entries for {n} experts")
        total = sum(raw)
        if total == 0.0:
            raise StrategyError(f"parameter 'weights' sums to zero: {list(raw)}")
        return Plan(0.0, tuple(w / total for w in raw), {"weights": [w / total for w in raw]})
