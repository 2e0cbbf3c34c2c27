"""Helpers the sub-commands share: endpoint coordinates from provenance, negative option values,
and checkpoints of the user's own model classes."""

from __future__ import annotations

import argparse
import importlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import StrategyError

if TYPE_CHECKING:
    from torch import nn

# torch and the checkpoint I/O are imported by the functions that read checkpoints:
# the CLI imports this module to build its parser, which must not wait for torch.

# argparse reads "-1e-3" as an option name because its own pattern for negative
# numbers knows no exponent; this one also accepts "-1e-3", "-.5" and "-inf".
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf$")


def accept_negative_numbers(parser: argparse.ArgumentParser) -> None:
    """Let option values such as ``--coord -1e-3`` through (no option of ours looks like a number)."""
    parser._negative_number_matcher = NEGATIVE_NUMBER


def recorded_value(path: str) -> Any:
    """What an expert's provenance records as its physical parameter (``parameter.value``), unchecked, or None."""
    from ..io import recorded_provenance

    record = recorded_provenance(path)
    parameter = record.get("parameter") if isinstance(record, Mapping) else None
    return parameter.get("value") if isinstance(parameter, Mapping) else None


def recorded_coordinate(path: str) -> float | None:
    """The physical parameter value an expert's provenance records (``parameter.value``), or None."""
    value = recorded_value(path)
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


def add_model_class_option(parser: argparse.ArgumentParser) -> None:
    """``--model-class MODULE:CLASS``, for checkpoints of a class outside neuraloperator."""
    parser.add_argument(
        "--model-class", metavar="MODULE:CLASS",
        help="the class of checkpoints whose provenance records a class outside neuraloperator (your own "
             "nn.Module, rebuilt with the recorded arguments); it is imported, so name only code you trust",
    )


def resolve_model_class(spec: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass that ``MODULE:CLASS`` names.

    Raises
    ------
    StrategyError
        when ``spec`` is malformed, cannot be imported, or is not an ``nn.Module`` class
    """
    from torch import nn

    module_name, separator, class_name = spec.partition(":")
    if not (separator and module_name and class_name):
        raise StrategyError(f"--model-class must be MODULE:CLASS, got {spec!r}")
    try:
        model_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise StrategyError(f"--model-class {spec}: {error}") from None
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        raise StrategyError(f"--model-class {spec} is not an nn.Module class")
    return model_class


def checkpoints_as_models(paths: Sequence[str | None], spec: str | None) -> list[str | nn.Module | None]:
    """``paths`` unchanged, or, with ``--model-class``, the models they hold built as that class."""
    if spec is None:
        return list(paths)
    from ..io import load_model

    model_class = resolve_model_class(spec)
    return [None if path is None else load_model(path, model_class=model_class) for path in paths]
