"""CCM-Coord: read α from physical metadata, α = g(c(μ))."""

from __future__ import annotations

from collections.abc import Iterable

from ..coordinates import AffineMap, Transform, normalized_coordinate
from .base import MergeInputs, Plan, Strategy, finite_float
from .fixed_alpha import line_plan


class CCMCoord(Strategy):
    """The merge-line position of a target regime μ from its normalized coordinate.

    ``calibration`` is an optional bank of (μ, best α) pairs; when given, g is the
    affine least-squares map fitted on it, otherwise g is the identity.
    """

    name = "ccm_coord"
    needs_anchor = True
    n_experts = 2

    def plan(
        self,
        inputs: MergeInputs,
        *,
        mu: float,
        low_coord: float,
        high_coord: float,
        transform: Transform = "linear",
        calibration: Iterable[tuple[float, float]] | None = None,
    ) -> Plan:
        mu = finite_float(mu, "mu")
        coordinate = normalized_coordinate(mu, low_coord, high_coord, transform)
        mapping = AffineMap()
        if calibration is not None:
            bank = [(normalized_coordinate(m, low_coord, high_coord, transform), a) for m, a in calibration]
            mapping = AffineMap.fit(bank)
        return line_plan(mapping(coordinate), {"mu": mu, "coordinate": coordinate, "map": [mapping.slope, mapping.intercept]})
