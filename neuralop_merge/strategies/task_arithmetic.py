"""Task arithmetic: θ = θ₀ + λ·Σ(θᵢ − θ₀)."""

from __future__ import annotations

from .base import MergeInputs, Plan, Strategy, coefficient


class TaskArithmetic(Strategy):
    """Add the experts' task vectors θᵢ − θ₀, scaled by λ, to the anchor."""

    name = "task_arithmetic"
    needs_anchor = True

    def plan(self, inputs: MergeInputs, *, scale: float = 1.0) -> Plan:
        scale = coefficient(scale, "scale")
        n = len(inputs.experts)
        return Plan(1.0 - scale * n, (scale,) * n, {"scale": scale})
