"""``neuralop-merge merge``: merge checkpoints with any registered strategy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StrategyError
from . import COMMANDS
from .checkpoints import add_model_class_option, checkpoints_as_models, endpoint_coordinates

if TYPE_CHECKING:
    import torch

# torch, neuraloperator and the I/O and merging modules are imported by the functions
# that use them, so that --help and argument errors return without loading them.


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge",
        help=COMMANDS["merge"][1],
        description="Merge checkpoints (neuraloperator folders or state-dict files) with a registered strategy.",
    )
    parser.add_argument("strategy", help="strategy name (see `neuralop-merge list`)")
    parser.add_argument("--anchor", help="the anchor checkpoint the experts were fine-tuned from")
    parser.add_argument("--expert", action="append", default=[], help="an expert checkpoint (repeat for several)")
    parser.add_argument("--low", help="the low-endpoint expert (with --high, instead of --expert)")
    parser.add_argument("--high", help="the high-endpoint expert")
    parser.add_argument("--alpha", type=float, help="position on the merge line (fixed_alpha)")
    parser.add_argument("--coord", type=float, help="target physical parameter mu (ccm_coord)")
    parser.add_argument("--low-coord", type=float,
                        help="physical parameter of the low expert (ccm_coord; default: its provenance's)")
    parser.add_argument("--high-coord", type=float,
                        help="physical parameter of the high expert (ccm_coord; default: its provenance's)")
    parser.add_argument("--transform", choices=("linear", "log"), help="coordinate transform (ccm_coord)")
    parser.add_argument("--prefix", type=Path, help="torch file with observed frames [B, k+1, C, ...] (ccm_prefix)")
    parser.add_argument("--alpha-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="searched interval")
    parser.add_argument("--weights", type=float, nargs="+", help="expert weights (average)")
    parser.add_argument("--scale", type=float, help="task-vector scale lambda (task_arithmetic)")
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE",
        help="any strategy parameter, VALUE parsed as JSON when it can be (for plugin strategies)",
    )
    parser.add_argument("--output-format", choices=("dense", "refactorize"), default="dense",
                        help="factorized (TFNO) weights: dense twin (exact) or re-factorized at the source rank")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    parser.add_argument("--name", default="merged", help="checkpoint name inside the output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint of that name")
    add_model_class_option(parser)
    parser.set_defaults(func=run)


def _experts(args: argparse.Namespace) -> list[str]:
    if args.expert and (args.low or args.high):
        raise StrategyError("give experts either with --expert or with --low/--high, not both")
    if args.low or args.high:
        if not (args.low and args.high):
            raise StrategyError("--low and --high go together")
        return [args.low, args.high]
    return args.expert


def _load_frames(path: Path) -> torch.Tensor:
    import torch

    from ..io import safe_load

    frames = safe_load(path)
    if isinstance(frames, dict) and "frames" in frames:
        frames = frames["frames"]
    if not torch.is_tensor(frames):
        raise StrategyError(f"{path} must hold a tensor (or a dict with key 'frames')")
    return frames


def _parse_param(item: str) -> tuple[str, Any]:
    key, separator, text = item.partition("=")
    if not separator or not key:
        raise StrategyError(f"--param {item!r} is not KEY=VALUE")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def strategy_params(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy parameters the user gave, under the names strategies accept."""
    given = {
        "alpha": args.alpha,
        "mu": args.coord,
        "low_coord": args.low_coord,
        "high_coord": args.high_coord,
        "transform": args.transform,
        "frames": _load_frames(args.prefix) if args.prefix else None,
        "alpha_range": tuple(args.alpha_range) if args.alpha_range else None,
        "weights": args.weights,
        "scale": args.scale,
    }
    params = {key: value for key, value in given.items() if value is not None}
    params.update(_parse_param(item) for item in args.param)
    if args.strategy == "ccm_coord" and args.low and args.high:
        params["low_coord"], params["high_coord"] = endpoint_coordinates(
            args.low, args.high, params.get("low_coord"), params.get("high_coord")
        )
    return params


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_output_paths
    from ..io import checkpoint_files, save_model
    from ..merging import merge

    files = checkpoint_files(args.out, args.name)
    # Fail before the merge's work; the write itself refuses again, atomically.
    check_output_paths([files["state"], files["provenance"]], overwrite=args.overwrite)
    params = strategy_params(args)
    anchor, *experts = checkpoints_as_models([args.anchor, *_experts(args)], args.model_class)
    model = merge(args.strategy, anchor=anchor, experts=experts, output=args.output_format, **params)
    path = save_model(model, args.out, name=args.name, overwrite=args.overwrite)
    alpha = model.provenance.get("alpha")
    print(f"wrote {path}" + (f" (alpha = {alpha:.4g})" if isinstance(alpha, float) else ""))
    return 0
