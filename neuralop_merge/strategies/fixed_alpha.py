"""A fixed position α on the CCM merge line θ(α) = θ₀ + Δ₊ + α·Δ₋."""

from __future__ import annotations

from .base import MergeInputs, Plan, Strategy, coefficient


def line_coefficients(alpha: float, beta: float = 1.0) -> tuple[float, float, float]:
    """Coefficients of (θ₀, θL, θH) for θ(α, β) = θ₀ + β·Δ₊ + α·Δ₋.

    With Δ₊ = (ΔL + ΔH)/2 and Δ₋ = (ΔH − ΔL)/2 this is
    (1 − β)·θ₀ + (β − α)/2 · θL + (β + α)/2 · θH. On the merge line (β = 1) the anchor
    cancels, so α = −1 is θL exactly and α = +1 is θH; β = 0, α = 0 is the anchor.
    """
    return 1.0 - beta, (beta - alpha) / 2.0, (beta + alpha) / 2.0


def line_plan(alpha: float, info: dict | None = None, *, beta: float = 1.0) -> Plan:
    """The plan of the point θ(α, β), recording α, β (off the line) and ``info`` for provenance."""
    anchor, low, high = line_coefficients(alpha, beta)
    recorded = {"alpha": alpha} if beta == 1.0 else {"alpha": alpha, "beta": beta}
    return Plan(anchor, (low, high), {**recorded, **(info or {})})


class FixedAlpha(Strategy):
    """θ(α) for a given α; α = 0 is the plain average, |α| > 1 extrapolates."""

    name = "fixed_alpha"
    needs_anchor = True
    n_experts = 2

    def plan(self, inputs: MergeInputs, *, alpha: float) -> Plan:
        return line_plan(coefficient(alpha, "alpha"))
