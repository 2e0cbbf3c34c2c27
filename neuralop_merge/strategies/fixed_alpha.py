"""A fixed position α on the CCM merge line θ(α) = θ₀ + Δ₊ + α·Δ₋."""

from __future__ import annotations

from ..geometry import line_plan
from .base import MergeInputs, Plan, Strategy, coefficient


class FixedAlpha(Strategy):
    """θ(α) for a given α; α = 0 is the plain average, |α| > 1 extrapolates."""

    name = "fixed_alpha"
    needs_anchor = True
    n_experts = 2

    def plan(self, inputs: MergeInputs, *, alpha: float) -> Plan:
        return line_plan(coefficient(alpha, "alpha"))
