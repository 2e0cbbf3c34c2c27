"""Helpers the sub-commands share: endpoint coordinates from provenance, negative option values."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping

from ..errors import StrategyError
from ..io import recorded_provenance

# argparse reads "-1e-3" as an option name because its own pattern for negative
# numbers knows no exponent; this one also accepts "-1e-3", "-.5" and "-inf".
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf$")


def accept_negative_numbers(parser: argparse.ArgumentParser) -> None:
    """Let option values such as ``--coord -1e-3`` through (no option of ours looks like a number)."""
    parser._negative_number_matcher = NEGATIVE_NUMBER


def recorded_coordinate(path: str) -> float | None:
    """The physical parameter value an expert's provenance records (``parameter.value``), or None."""
    parameter = (recorded_provenance(path) or {}).get("parameter")
    value = parameter.get("value") if isinstance(parameter, Mapping) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def endpoint_coordinates(
    low: str, high: str, low_coord: float | None, high_coord: float | None
) -> tuple[float, float]:
    """The endpoints' coordinates: as given, else as their provenance records them.

    Raises
    ------
    StrategyError
        when a coordinate is neither given nor recorded (there is no default)
    """
    coordinates = []
    for path, given, option in ((low, low_coord, "--low-coord"), (high, high_coord, "--high-coord")):
        value = given if given is not None else recorded_coordinate(path)
        if value is None:
            raise StrategyError(f"give {option}: {path} records no physical parameter in its provenance")
        coordinates.append(value)
    return coordinates[0], coordinates[1]
