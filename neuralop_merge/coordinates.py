"""Physical coordinates and the map from a coordinate to a merge-line position α.

CCM-Coord reads α from metadata: α = g(c(μ)) with the normalized coordinate

    c(μ) = (2·t(μ) − t(μL) − t(μH)) / (t(μH) − t(μL)),

so that c(μL) = −1 and c(μH) = +1, ``t`` the identity or the logarithm (viscosities
are compared on a log scale), and ``g`` the identity until a calibration bank of
(μ, best α) pairs fits an affine map.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Union

from .errors import StrategyError

Transform = Union[str, Callable[[float], float]]
TRANSFORMS: dict[str, Callable[[float], float]] = {"linear": lambda mu: mu, "log": math.log}


def resolve_transform(transform: Transform) -> Callable[[float], float]:
    """The callable behind ``"linear"``, ``"log"`` or a user's own callable."""
    if callable(transform):
        return transform
    if transform not in TRANSFORMS:
        raise StrategyError(f"unknown coordinate transform {transform!r} (use 'linear', 'log' or a callable)")
    return TRANSFORMS[transform]


def transformed(mu: float, transform: Transform, name: str = "mu") -> float:
    """``t(mu)``, refusing values the transform is not defined for."""
    if transform == "log" and not mu > 0:
        raise StrategyError(f"{name}={mu!r} must be positive for a log coordinate")
    value = float(resolve_transform(transform)(float(mu)))
    if not math.isfinite(value):
        raise StrategyError(f"coordinate transform of {name}={mu!r} is not finite")
    return value


def check_endpoints(low_coord: float, high_coord: float, transform: Transform) -> None:
    """Refuse endpoint coordinates that do not span a non-empty interval μL < μH."""
    t_low = transformed(low_coord, transform, "low_coord")
    t_high = transformed(high_coord, transform, "high_coord")
    if t_low == t_high:
        raise StrategyError(f"low_coord and high_coord are equal ({low_coord!r}): the endpoints must differ")
    if t_low > t_high:
        raise StrategyError(f"low_coord={low_coord!r} must be below high_coord={high_coord!r}")


def normalized_coordinate(mu: float, low_coord: float, high_coord: float, transform: Transform = "linear") -> float:
    """c(μ): −1 at the low endpoint, +1 at the high one, affine in t(μ)."""
    check_endpoints(low_coord, high_coord, transform)
    t_low = transformed(low_coord, transform, "low_coord")
    t_high = transformed(high_coord, transform, "high_coord")
    return (2.0 * transformed(mu, transform) - t_low - t_high) / (t_high - t_low)


INVERSES: dict[str, Callable[[float], float]] = {"linear": lambda t: t, "log": math.exp}


def from_normalized(c: float, low_coord: float, high_coord: float, transform: str = "linear") -> float:
    """μ(c), the inverse of :func:`normalized_coordinate` for the named transforms."""
    if transform not in INVERSES:
        raise StrategyError(f"no inverse for coordinate transform {transform!r} (use 'linear' or 'log')")
    check_endpoints(low_coord, high_coord, transform)
    t_low = transformed(low_coord, transform, "low_coord")
    t_high = transformed(high_coord, transform, "high_coord")
    return INVERSES[transform](0.5 * (t_low + t_high) + 0.5 * c * (t_high - t_low))


@dataclass(frozen=True)
class AffineMap:
    """g(c) = slope·c + intercept, the calibrated coordinate-to-α map."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, coordinate: float) -> float:
        return self.slope * coordinate + self.intercept

    @classmethod
    def fit(cls, pairs: Iterable[tuple[float, float]]) -> AffineMap:
        """Least-squares fit of α ≈ slope·c + intercept over (c, α) pairs.

        Raises
        ------
        StrategyError
            with fewer than two distinct coordinates (the slope is undetermined)
        """
        points = [(float(c), float(a)) for c, a in pairs]
        if any(not (math.isfinite(c) and math.isfinite(a)) for c, a in points):
            raise StrategyError("calibration bank holds a non-finite coordinate or alpha")
        if len({c for c, _ in points}) < 2:
            raise StrategyError(f"calibration needs at least two distinct coordinates, got {len(points)} pair(s)")
        mean_c = sum(c for c, _ in points) / len(points)
        mean_a = sum(a for _, a in points) / len(points)
        spread = sum((c - mean_c) ** 2 for c, _ in points)
        slope = sum((c - mean_c) * (a - mean_a) for c, a in points) / spread
        return cls(slope=slope, intercept=mean_a - slope * mean_c)
