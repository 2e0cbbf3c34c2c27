"""Physical coordinates of experts and targets, on one or several named axes.

An expert's coordinate is ``{axis: value}`` (a bare number is a value of the single axis
``"mu"``). The experts span each axis from their lowest to their highest transformed
value, which :class:`Axis` maps to the normalized range [−1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Union

from torch import nn

from .coordinates import Transform, normalized_coordinate, transformed
from .errors import StrategyError
from .provenance import Provenance

#: One expert's (or target's) physical coordinate: a value of the single axis, or axis -> value.
PhysicalCoordinate = Union[float, Mapping[str, float]]

DEFAULT_AXIS = "mu"


@dataclass(frozen=True)
class Axis:
    """One physical axis: its transform and the experts' range (normalized to [−1, 1])."""

    name: str
    transform: Transform
    low: float
    high: float

    def normalize(self, value: float) -> float:
        return normalized_coordinate(value, self.low, self.high, self.transform)


def expert_coordinate(name: str, model: nn.Module, coords: Mapping[str, PhysicalCoordinate] | None) -> dict[str, float]:
    """An expert's physical coordinate as ``{axis: value}``, from ``coords`` or its provenance.

    The training module records ``provenance["parameter"] = {"name": ..., "value": ...}``;
    a value that is itself a mapping is read as several axes.
    """
    if coords is not None:
        if name not in coords:
            raise StrategyError(f"coords has no entry for expert {name!r}")
        return as_axis_values(coords[name], DEFAULT_AXIS, f"coords[{name!r}]")
    parameter = Provenance.of(model).parameter or {}
    if "name" not in parameter or "value" not in parameter:
        raise StrategyError(f"expert {name!r} records no physical parameter in its provenance; pass coords=")
    return as_axis_values(parameter["value"], str(parameter["name"]), f"expert {name!r}")


def as_axis_values(value: PhysicalCoordinate, default_axis: str, label: str) -> dict[str, float]:
    """``value`` as ``{axis: float}``; a bare number is a value of ``default_axis``."""
    pairs = value.items() if isinstance(value, Mapping) else [(default_axis, value)]
    try:
        result = {str(axis): float(v) for axis, v in pairs}
    except (TypeError, ValueError):
        raise StrategyError(f"{label}: coordinate must be a number or a mapping axis -> number, got {value!r}") from None
    if not result or not all(math.isfinite(v) for v in result.values()):
        raise StrategyError(f"{label}: coordinate must be finite and name at least one axis, got {value!r}")
    return result


def build_axes(values: Sequence[Mapping[str, float]], transform: Transform | Mapping[str, Transform]) -> tuple[Axis, ...]:
    """The axes spanned by the experts, each with its transform and the experts' range."""
    names = list(values[0])
    for value in values[1:]:
        if set(value) != set(names):
            raise StrategyError(f"experts name different axes: {sorted(names)} and {sorted(value)}")
    if isinstance(transform, Mapping):
        unknown = sorted(set(transform) - set(names))
        if unknown:
            raise StrategyError(f"transform names unknown axes {unknown}; the axes are {names}")
    axes = []
    for name in names:
        axis_transform = transform.get(name, "linear") if isinstance(transform, Mapping) else transform
        ordered = sorted((v[name] for v in values), key=lambda mu: transformed(mu, axis_transform, name))
        low, high = ordered[0], ordered[-1]
        if transformed(low, axis_transform, name) == transformed(high, axis_transform, name):
            raise StrategyError(f"every expert has {name}={low!r}: a constant axis cannot be fitted; leave it out")
        axes.append(Axis(name, axis_transform, low, high))
    return tuple(axes)
