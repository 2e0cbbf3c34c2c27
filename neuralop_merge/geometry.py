"""The merge geometry: which affine combination of the experts sits at a normalized coordinate.

K experts θᵢ fine-tuned from one anchor θ₀ sit at normalized coordinates cᵢ ∈ ℝ^d. Per
tensor, the residuals Δᵢ = θᵢ − θ₀ are fitted by least squares with

    θ(c) ≈ θ₀ + A + B·c  (+ Σ_{j≤k} Q_jk c_j c_k with ``quadratic=True``).

The fit is linear in the Δᵢ, so it is solved once for all tensors, in closed form: with
X the K×p design matrix of features φ(cᵢ) = [1, cᵢ, (cᵢⱼcᵢₖ)] and P = (XᵀX)⁻¹Xᵀ, the
fitted model is θ(c) = θ₀ + Σᵢ wᵢ(c)·Δᵢ with w(c) = φ(c)ᵀP. Because φ holds the
constant, Σᵢ wᵢ(c) = 1 for every c: the anchor cancels and every point of the surface is
an affine combination of the experts, a :class:`~neuralop_merge.strategies.base.Plan`.

Scaling the constant feature by β gives θ(c, β) = θ₀ + β·A + B·c, which leaves the
anchor the weight 1 − β: β = 0, c = 0 is the anchor itself.

The two-endpoint CCM line is the case K = 2, d = 1 with the experts at c = ∓1
(:data:`LINE`): A = Δ₊ = (ΔL + ΔH)/2, B = Δ₋ = (ΔH − ΔL)/2, so θ(α, β) = θ₀ + β·Δ₊ + α·Δ₋
with coefficients (1 − β, (β − α)/2, (β + α)/2) for (θ₀, θL, θH).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import StrategyError
from .strategies.base import Plan


def n_features(n_axes: int, quadratic: bool) -> int:
    """p, the number of fitted terms: 1 + d, plus d(d+1)/2 quadratic ones."""
    return 1 + n_axes + (n_axes * (n_axes + 1) // 2 if quadratic else 0)


def features(coordinates: np.ndarray, quadratic: bool, *, constant: float = 1.0) -> np.ndarray:
    """The design rows φ(c) = [β, c₁..c_d, (c_j·c_k for j ≤ k)] of ``[n, d]`` coordinates (β = ``constant``)."""
    coordinates = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
    columns = [np.full(len(coordinates), float(constant)), *coordinates.T]
    if quadratic:
        d = coordinates.shape[1]
        columns += [coordinates[:, j] * coordinates[:, k] for j in range(d) for k in range(j, d)]
    return np.stack(columns, axis=1)


class LeastSquaresFit:
    """The fit θ(c) ≈ θ₀ + A + B·c (+ quadratic) through experts at normalized coordinates.

    Parameters
    ----------
    coordinates : array ``[K, d]``
        the experts' normalized coordinates
    quadratic : bool or "auto"
        add the d(d+1)/2 quadratic terms; ``"auto"`` adds them when K allows (K ≥ p)

    Raises
    ------
    StrategyError
        with fewer experts than fitted terms, or coordinates that do not determine the
        fit (e.g. experts on two axes that all lie on one line)

    Examples
    --------
    >>> LINE.weights([0.5])  # θ(0.5) = 0.25·θL + 0.75·θH
    (0.25, 0.75)
    """

    def __init__(self, coordinates: np.ndarray, quadratic: bool | str = False) -> None:
        coordinates = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
        n_experts, n_axes = coordinates.shape
        if quadratic == "auto":
            quadratic = n_experts >= n_features(n_axes, True)
        elif not isinstance(quadratic, bool):
            raise StrategyError(f"quadratic must be True, False or 'auto', got {quadratic!r}")
        p = n_features(n_axes, quadratic)
        if n_experts < p:
            kind = "a quadratic" if quadratic else "an affine"
            raise StrategyError(f"{kind} fit on {n_axes} axis/axes has {p} terms and needs at least {p} experts, got {n_experts}")
        design = features(coordinates, quadratic)
        if np.linalg.matrix_rank(design) < p:
            raise StrategyError(
                "the experts' coordinates do not determine the fit (on several axes, they must not all lie "
                "on one line; for a quadratic term, on one conic); add an expert off that set"
            )
        self.coordinates = coordinates
        self.quadratic = bool(quadratic)
        self.design = design
        # (XᵀX)⁻¹Xᵀ by a solve: exact 0.5s for the two-endpoint case, so the line's
        # coefficients come out exactly (β ∓ α)/2.
        self.projector = np.linalg.solve(design.T @ design, design.T)

    @property
    def n_axes(self) -> int:
        return self.coordinates.shape[1]

    def weights(self, coordinate: Any, *, beta: float = 1.0) -> tuple[float, ...]:
        """wᵢ(c, β) = φ_β(c)ᵀ(XᵀX)⁻¹Xᵀ: the expert coefficients at c; they sum to β."""
        row = features(np.asarray(coordinate, dtype=np.float64).reshape(1, self.n_axes), self.quadratic, constant=beta)[0]
        return tuple(float(sum(row[k] * self.projector[k, i] for k in range(len(row)))) for i in range(len(self.coordinates)))

    def hat(self) -> np.ndarray:
        """H = X(XᵀX)⁻¹Xᵀ, ``[K, K]``: row i gives the fitted model at cᵢ; I − H gives the residuals."""
        return self.design @ self.projector

    def plan(self, coordinate: Any, info: Mapping[str, Any] | None = None, *, beta: float = 1.0) -> Plan:
        """The fitted model θ(c, β) as a Plan: the anchor keeps 1 − β (0 on the surface itself)."""
        coordinate = np.asarray(coordinate, dtype=np.float64).reshape(self.n_axes)
        recorded = {"coordinate": coordinate.tolist(), "quadratic": self.quadratic}
        if beta != 1.0:
            recorded["beta"] = float(beta)
        return Plan(1.0 - beta, self.weights(coordinate, beta=beta), {**recorded, **(info or {})})


#: The two-endpoint CCM line: experts θL at c = −1 and θH at c = +1.
LINE = LeastSquaresFit(np.array([[-1.0], [1.0]]))


def line_plan(alpha: float, info: Mapping[str, Any] | None = None, *, beta: float = 1.0) -> Plan:
    """θ(α, β) = θ₀ + β·Δ₊ + α·Δ₋ on :data:`LINE`, recording α (β off the line) and ``info``.

    The coefficients of (θ₀, θL, θH) are (1 − β, (β − α)/2, (β + α)/2): on the merge line
    (β = 1) the anchor cancels, α = −1 is θL exactly and α = +1 is θH.
    """
    recorded = {"alpha": alpha} if beta == 1.0 else {"alpha": alpha, "beta": beta}
    return Plan(1.0 - beta, LINE.weights([alpha], beta=beta), {**recorded, **(info or {})})
