"""The CCM plane θ(α, β) = θ₀ + β·Δ₊ + α·Δ₋: the merge line with the shared adaptation scaled too.

β = 1 is the CCM line, β = 0 with α = 0 the anchor, and task arithmetic with scale λ is α = 0,
β = 2λ. Scaling β down lets a merge fall back towards the anchor inside the support, where the
shared adaptation Δ₊ may hurt, while α still moves along the physical direction.
"""

from __future__ import annotations

from .base import MergeInputs, Plan, Strategy, finite_float
from ..geometry import line_plan


class CCMPlane(Strategy):
    """θ(α, β) for given α and β (default 1: the merge line)."""

    name = "ccm_plane"
    needs_anchor = True
    n_experts = 2

    def plan(self, inputs: MergeInputs, *, alpha: float, beta: float = 1.0) -> Plan:
        return line_plan(finite_float(alpha, "alpha"), beta=finite_float(beta, "beta"))
