"""CCM-Coord: read α from physical metadata, α = g(c(μ))."""

from __future__ import annotations

from collections.abc import Iterable

from ..coordinates import AffineMap, Transform, normalized_coordinate
from ..errors import StrategyError
from ..geometry import line_plan
from .base import MergeInputs, Plan, Strategy, coefficient, finite_float, sequence


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
        bank = None if calibration is None else _pairs(calibration)
        return coord_plan(mu, low_coord, high_coord, transform, bank)


def coord_plan(
    mu: float, low_coord: float, high_coord: float, transform: Transform, bank: list[tuple[float, float]] | None
) -> Plan:
    """The line point α = g(c(μ)), g fitted on ``bank`` (the identity without one).

    Shared by this strategy and :meth:`neuralop_merge.CCM.from_coord`, so that both
    doors give the same weights and the same provenance.
    """
    coordinate = normalized_coordinate(mu, low_coord, high_coord, transform)
    mapping = AffineMap()
    if bank is not None:
        mapping = AffineMap.fit((normalized_coordinate(m, low_coord, high_coord, transform), a) for m, a in bank)
    alpha = coefficient(mapping(coordinate), f"alpha of mu={mu:g}")
    info = {"mu": mu, "coordinate": coordinate, "calibrated": bank is not None, "map": [mapping.slope, mapping.intercept]}
    return line_plan(alpha, info)


def _pairs(calibration: object) -> list[tuple[float, float]]:
    """The calibration bank as (μ, α) pairs of finite numbers, α within the coefficient bound."""
    pairs = []
    for item in sequence(calibration, "calibration"):
        if isinstance(item, (str, bytes)) or not isinstance(item, (list, tuple)) or len(item) != 2:
            raise StrategyError(f"parameter 'calibration' must hold [mu, alpha] pairs, got {item!r}")
        pairs.append((finite_float(item[0], "calibration mu"), coefficient(item[1], "calibration alpha")))
    return pairs
