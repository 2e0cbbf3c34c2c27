"""``neuralop-merge inspect --expert A --expert B --expert C ...``: K experts on a merge surface.

With two or more ``--expert`` checkpoints (instead of ``--low``/``--high``), ``inspect`` fits the
least-squares merge surface through them (:class:`~neuralop_merge.surface.CCMSurface`) and
reports each expert's physical and normalized coordinate and how far each expert lies from the
surface (:func:`~neuralop_merge.diagnostics.fit_report`), per tensor and overall.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from ..errors import StrategyError
from .checkpoints import recorded_value

#: Options of the two-expert line that mean nothing for a surface.
LINE_ONLY_OPTIONS = ("low_coord", "high_coord", "family", "regimes", "data", "plot")


def parse_coordinate(text: str) -> float | dict[str, float]:
    """``--expert-coord``: a number (one axis) or ``AXIS=VALUE[,AXIS=VALUE...]``, every value finite."""
    if "=" not in text:
        pairs = [("", text)]
    else:
        pairs = [item.partition("=")[::2] for item in text.split(",")]
    try:
        values = {axis.strip(): float(value) for axis, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or AXIS=VALUE[,AXIS=VALUE...]") from None
    if not all(math.isfinite(value) for value in values.values()) or ("=" in text and "" in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be finite, and AXIS=VALUE needs an axis name")
    if len(values) != len(pairs):
        raise argparse.ArgumentTypeError(f"{text!r} names an axis twice")
    return values[""] if "" in values else values


def parse_transform(text: str) -> str | dict[str, str]:
    """``--transform``: ``linear`` or ``log`` for every axis, or ``AXIS=log[,AXIS=linear...]`` per axis."""
    if text in ("linear", "log"):
        return text
    pairs = [item.partition("=")[::2] for item in text.split(",")]
    if not all(axis.strip() and value in ("linear", "log") for axis, value in pairs):
        raise argparse.ArgumentTypeError(f"{text!r} is not linear, log or AXIS=linear|log[,AXIS=linear|log...]")
    return {axis.strip(): value for axis, value in pairs}


def check_surface_arguments(args: argparse.Namespace) -> None:
    """Refuse option combinations that the surface report cannot honour."""
    if args.low or args.high:
        raise StrategyError("give experts either with --expert or with --low/--high, not both")
    if len(args.expert) < 2:
        raise StrategyError(f"--expert needs at least two experts, got {len(args.expert)}")
    if len(set(args.expert)) != len(args.expert):
        raise StrategyError("an --expert checkpoint is given twice")
    given = [f"--{name.replace('_', '-')}" for name in LINE_ONLY_OPTIONS if getattr(args, name)]
    if given:
        raise StrategyError(f"{', '.join(given)} inspect(s) the two-expert line (--low/--high), not an --expert surface")
    if args.expert_coord and len(args.expert_coord) != len(args.expert):
        raise StrategyError(f"give one --expert-coord per --expert ({len(args.expert)}), got {len(args.expert_coord)}")


def recorded_axes(path: str) -> Any:
    """An expert's coordinate as its provenance records it (a number, or axis -> number, checked by the surface)."""
    value = recorded_value(path)
    if value is None:
        raise StrategyError(f"give --expert-coord: {path} records no physical parameter in its provenance")
    return value


def surface_report(surface: Any) -> dict[str, Any]:
    """The JSON-ready report of a surface: axes, each expert's coordinates, and the fit residuals."""
    from ..diagnostics import fit_report

    axes = [{"name": axis.name, "transform": str(axis.transform), "low": axis.low, "high": axis.high}
            for axis in surface.axes]
    experts = [{"expert": name, "coordinate": surface.expert_coords[name],
                "normalized": surface.normalized_coords[index].tolist()} for index, name in enumerate(surface.expert_names)]
    fit = [asdict(row) for row in fit_report(surface)]
    return {"axes": axes, "quadratic": surface.fit.quadratic, "experts": experts, "fit": fit}


def print_report(report: Mapping[str, Any]) -> None:
    """The experts' coordinates and the per-tensor fit residuals, as two tables on stdout."""
    names = [axis["name"] for axis in report["axes"]]
    overall = report["fit"][-1]
    width = max(len(row["expert"]) for row in report["experts"])
    print(f"{'expert':{width}s}  " + "  ".join(f"{name:>10s}  {'c(' + name + ')':>10s}" for name in names) + "  fit residual")
    for index, row in enumerate(report["experts"]):
        cells = "  ".join(f"{row['coordinate'][name]:10.4g}  {row['normalized'][axis]:10.3f}"
                          for axis, name in enumerate(names))
        print(f"{row['expert']:{width}s}  {cells}  {overall['relative'][index]:12.4g}")
    kind = "quadratic" if report["quadratic"] else "affine"
    print(f"\n{kind} surface; per tensor, the share of the experts' update norm it misses (max over experts):")
    width = max(len(row["name"]) for row in report["fit"])
    print(f"{'tensor':{width}s}  {'numel':>9s}  {'residual':>9s}  {'max':>9s}")
    for row in report["fit"]:
        finite = [value for value in row["relative"] if math.isfinite(value)]
        largest = max(finite) if finite else math.nan
        print(f"{row['name']:{width}s}  {row['numel']:9d}  {row['relative_total']:9.4g}  {largest:9.4g}")


def run_surface(args: argparse.Namespace) -> int:
    """The ``--expert`` form of ``inspect`` (see the module docstring)."""
    from ..atomic import check_output_paths, write_text
    from ..diagnostics import json_safe
    from ..surface import CCMSurface
    from .checkpoints import checkpoints_as_models

    check_surface_arguments(args)
    check_output_paths([args.json] if args.json else [], overwrite=args.overwrite)
    experts = args.expert
    coords = dict(zip(experts, args.expert_coord or [recorded_axes(path) for path in experts]))
    anchor, *models = checkpoints_as_models([args.anchor, *experts], args.model_class)
    surface = CCMSurface(anchor, dict(zip(experts, models)), coords, transform=args.transform, quadratic=args.quadratic)
    report = surface_report(surface)
    print_report(report)
    if args.json:
        write_text(args.json, json.dumps(json_safe(report), indent=2), overwrite=args.overwrite)
    return 0
