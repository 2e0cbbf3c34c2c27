"""CCM-Coord: read α from physical metadata, α = g(c(μ))."""

from __future__ import annotations

from collections.abc import Iterable

from ..coordinates import AffineMap, Transform, normalized_coordinate
from ..errors import StrategyError
from .base import MergeInputs, Plan, Strategy, coefficient, finite_float, sequence
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
        low_coord, high_coord = finite_float(low_coord, "low_coord"), finite_float(high_coord, "high_coord")
        coordinate = normalized_coordinate(mu, low_coord, high_coord, transform)
        mapping = AffineMap()
        if calibration is not None:
            bank = [
                (normalized_coordinate(m, low_coord, high_coord, transform), a) for m, a in _pairs(calibration)
            ]
            mapping = AffineMap.fit(bank)
        alpha = coefficient(mapping(coordinate), f"alpha of mu={mu:g}")
        return line_plan(alpha, {"mu": mu, "coordinate": coordinate, "map": [mapping.slope, mapping.intercept]})


def _pairs(calibration: object) -> list[tuple[float, float]]:
    """The calibration bank as (μ, α) pairs of finite numbers, α within the coefficient bound."""
    pairs = []
    for item in sequence(calibration, "calibration"):
        if isinstance(item, (str, bytes)) or not isinstance(item, (list, tuple)) or len(item) != 2:
            raise StrategyError(f"parameter 'calibration' must hold [mu, alpha] pairs, got {item!r}")
        pairs.append((finite_float(item[0], "calibration mu"), coefficient(item[1], "calibration alpha")))
    return pairs
