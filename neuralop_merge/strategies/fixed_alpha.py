"""A fixed position α on the CCM merge line θ(α) = θ₀ + Δ₊ + α·Δ₋."""

from __future__ import annotations

from .base import MergeInputs, Plan, Strategy, coefficient


def line_coefficients(alpha: float) -> tuple[float, float, float]:
    """Coefficients of (θ₀, θL, θH) for θ(α) = θ₀ + Δ₊ + α·Δ₋.

    With Δ₊ = (ΔL + ΔH)/2 and Δ₋ = (ΔH − ΔL)/2 the anchor cancels:
    θ(α) = (1 − α)/2 · θL + (1 + α)/2 · θH, so α = −1 is θL exactly, α = +1 is θH.
    """
    return 0.0, (1.0 - alpha) / 2.0, (1.0 + alpha) / 2.0


def line_plan(alpha: float, info: dict | None = None) -> Plan:
    """The plan of the merge-line point θ(α), recording α (and ``info``) for provenance."""
    anchor, low, high = line_coefficients(alpha)
    return Plan(anchor, (low, high), {"alpha": alpha, **(info or {})})


class FixedAlpha(Strategy):
    """θ(α) for a given α; α = 0 is the plain average, |α| > 1 extrapolates."""

    name = "fixed_alpha"
    needs_anchor = True
    n_experts = 2

    def plan(self, inputs: MergeInputs, *, alpha: float) -> Plan:
        return line_plan(coefficient(alpha, "alpha"))
