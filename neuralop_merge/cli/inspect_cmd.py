"""``neuralop-merge inspect``: how an endpoint pair's update splits into Δ₊ and Δ₋,
and, given target regimes, the error along the merge line, the coordinate law and the
wrong-sign control (JSON, and PNGs with ``--plot DIR``). With ``--expert`` (repeated) instead
of ``--low``/``--high``: K experts' coordinates and their merge surface's fit residuals
(:mod:`.inspect_surface`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StrategyError
from . import COMMANDS, bounded_int
from .checkpoints import add_model_class_option, checkpoints_as_models, endpoint_coordinates
from .inspect_surface import parse_coordinate, parse_transform, run_surface

if TYPE_CHECKING:
    import torch

# torch, neuraloperator and the CCM, diagnostics and I/O modules are imported by the
# functions that use them, so that --help and argument errors return without loading them.


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help=COMMANDS["inspect"][1],
        description=(
            "Per tensor: ||Delta+||, ||Delta-||, cos(Delta_L, Delta_H) and the share along Delta-. With target "
            "regimes (--family and --regimes, or --data), also the rollout error along the merge line per regime, "
            "the oracle alpha, the coordinate law (c(mu) vs oracle alpha, fitted line, Pearson r) and the "
            "wrong-sign control. With two or more --expert instead of --low/--high: each expert's physical and "
            "normalized coordinates and, per tensor, how far the experts lie from their least-squares merge surface."
        ),
    )
    parser.add_argument("--anchor", required=True, help="the anchor checkpoint")
    parser.add_argument("--low", help="the low-endpoint expert checkpoint")
    parser.add_argument("--high", help="the high-endpoint expert checkpoint")
    parser.add_argument("--expert", action="append", default=[], metavar="PATH",
                        help="instead of --low/--high: an expert of a merge surface (repeat, two or more); reports each "
                             "expert's coordinates and its distance from the fitted surface")
    parser.add_argument("--expert-coord", action="append", type=parse_coordinate, metavar="COORD",
                        help="physical coordinate of the matching --expert: a number, or AXIS=VALUE[,AXIS=VALUE...] on "
                             "several axes (repeat, one per --expert; default: their provenance's)")
    parser.add_argument("--quadratic", action="store_true", help="with --expert: fit the surface with quadratic terms")
    parser.add_argument("--low-coord", type=float, help="physical parameter of the low expert (default: its provenance's)")
    parser.add_argument("--high-coord", type=float, help="physical parameter of the high expert (default: its provenance's)")
    parser.add_argument("--transform", type=parse_transform, default="linear",
                        help="coordinate transform: log for parameters compared on a log scale (default linear); with "
                             "--expert on several axes, per axis as AXIS=log[,AXIS=linear...]")
    parser.add_argument("--family", help="simulate the target regimes with this family (e.g. diffreact)")
    parser.add_argument("--regimes", type=float, nargs="+", metavar="MU", help="target values of the family's axis")
    parser.add_argument("--n-traj", type=bounded_int(1, 10_000), default=4,
                        help="trajectories per simulated regime (default 4)")
    parser.add_argument("--resolution", type=bounded_int(4, 4096), default=32,
                        help="grid of the simulated regimes (default 32)")
    parser.add_argument("--n-frames", type=bounded_int(1, 10_000), default=10,
                        help="frames after the initial one (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated initial states")
    parser.add_argument(
        "--data", type=Path,
        help="a torch file {'trajectories': [N, T+1, C, H, W], 'params': [N]} of target regimes (instead of --family)",
    )
    parser.add_argument("--alphas", default="-3:3:25", help="START:STOP:NUM alphas of the error curve, written --alphas=-2:2:17 when START is negative (default -3:3:25)")
    parser.add_argument("--json", type=Path, help="write the per-tensor table as JSON to this file")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="write PNGs and the full report.json into DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json / --plot files")
    add_model_class_option(parser)
    parser.set_defaults(func=run)


def _format(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def parse_alphas(spec: str) -> list[float]:
    """``START:STOP:NUM`` as NUM evenly spaced floats (2 <= NUM <= MAX_GRID)."""
    import torch

    from ..prefix import MAX_GRID
    from ..strategies.base import coefficient

    try:
        start, stop, number = spec.split(":")
        count = int(number)
    except ValueError:
        raise StrategyError(f"--alphas must be START:STOP:NUM, got {spec!r}") from None
    if not 2 <= count <= MAX_GRID:
        raise StrategyError(f"--alphas needs between 2 and {MAX_GRID} points, got {spec!r}")
    low, high = coefficient(start, "--alphas START"), coefficient(stop, "--alphas STOP")
    return torch.linspace(low, high, count, dtype=torch.float64).tolist()


def load_regimes(args: argparse.Namespace) -> dict[float, torch.Tensor] | None:
    """μ -> trajectories from --data or simulated with --family/--regimes; None when neither is given."""
    if args.data is not None and args.family is not None:
        raise StrategyError("give either --data or --family, not both")
    if args.data is not None:
        return _data_regimes(args.data)
    if args.family is None:
        if args.regimes:
            raise StrategyError("--regimes needs --family")
        return None
    if not args.regimes:
        raise StrategyError("--family needs --regimes")
    from .. import families

    family = families.get(args.family)
    data = family.dataset(args.regimes, args.n_traj, args.resolution, args.n_frames, seed=args.seed)
    return {float(mu): data.by_regime(index).trajectories for index, mu in enumerate(args.regimes)}


def _data_regimes(path: Path) -> dict[float, torch.Tensor]:
    """μ -> trajectories from a ``{'trajectories', 'params'}`` torch file, checked."""
    import torch

    from ..io import safe_load

    content = safe_load(path, map_location="cpu")
    if not isinstance(content, dict) or not all(torch.is_tensor(content.get(k)) for k in ("trajectories", "params")):
        raise StrategyError(f"{path}: expected a dict with tensors 'trajectories' and 'params'")
    trajectories, params = content["trajectories"], content["params"].reshape(-1)
    if trajectories.ndim < 4 or len(params) != len(trajectories) or trajectories.numel() == 0:
        raise StrategyError(f"{path}: 'params' needs one value per trajectory [N, T+1, C, ...]")
    for name, tensor in (("trajectories", trajectories), ("params", params)):
        if not tensor.is_floating_point() or tensor.layout != torch.strided or not bool(torch.isfinite(tensor).all()):
            raise StrategyError(f"{path}: {name!r} must be a dense, finite, floating-point tensor")
    return {float(mu): trajectories[params == mu] for mu in torch.unique(params).tolist()}


def check_line_arguments(args: argparse.Namespace) -> None:
    """The endpoint pair is complete, and no option of the ``--expert`` surface is given."""
    if not (args.low and args.high):
        raise StrategyError("give --low and --high (an endpoint pair), or two or more --expert")
    if args.expert_coord or args.quadratic:
        raise StrategyError("--expert-coord and --quadratic go with --expert")
    if isinstance(args.transform, dict):
        raise StrategyError("a per-axis --transform needs --expert; the --low/--high line has one axis")


def _outputs(args: argparse.Namespace) -> list[Path]:
    """Every file this run may write."""
    from ..diagnostics import PLOT_FILES

    outputs = [args.json] if args.json else []
    if args.plot:
        outputs += [args.plot / "report.json", *(args.plot / name for name in PLOT_FILES)]
    return outputs


def run(args: argparse.Namespace) -> int:
    if args.expert:
        return run_surface(args)
    check_line_arguments(args)

    from ..atomic import check_output_paths, write_text
    from ..ccm import CCM
    from ..diagnostics import inspect_report, json_safe, save_report

    # Fail before minutes of work on outputs that cannot be written; writes refuse again, atomically.
    check_output_paths(_outputs(args), overwrite=args.overwrite)
    alphas = parse_alphas(args.alphas)
    low_coord, high_coord = endpoint_coordinates(args.low, args.high, args.low_coord, args.high_coord)
    anchor, low, high = checkpoints_as_models([args.anchor, args.low, args.high], args.model_class)
    ccm = CCM(anchor, low, high, low_coord=low_coord, high_coord=high_coord, transform=args.transform)
    regimes = load_regimes(args)
    report = inspect_report(ccm, regimes, alphas)
    rows = report["layers"]
    width = max(len(row["name"]) for row in rows)
    print(f"{'tensor':{width}s}  {'numel':>9s}  {'|D+|':>10s}  {'|D-|':>10s}  {'cos(DL,DH)':>10s}  {'share D-':>8s}")
    for row in rows:
        print(
            f"{row['name']:{width}s}  {row['numel']:9d}  {_format(row['shared_norm']):>10s}"
            f"  {_format(row['direction_norm']):>10s}  {_format(row['cosine']):>10s}  {_format(row['direction_share']):>8s}"
        )
    if regimes:
        print(f"\n{'regime':>12s}  {'c(mu)':>8s}  {'oracle a':>9s}  {'err@g(c)':>9s}  {'err@-g(c)':>9s}")
        for row in report["wrong_sign"]:
            label = row["label"]
            print(f"{label:>12s}  {report['coordinate'][label]:8.3f}  {report['oracle'][label]:9.3f}"
                  f"  {row['error']:9.4g}  {row['wrong_error']:9.4g}")
        law = report["coordinate_law"]
        if law is not None:
            caveat = " (from only two regimes: r is +-1 or undefined whatever the models)" if len(regimes) == 2 else ""
            print(f"coordinate law: alpha = {law['slope']:.3g} c + {law['intercept']:.3g}, r = {_format(law['r'])}{caveat}")
    if args.json:
        write_text(args.json, json.dumps(json_safe(rows), indent=2), overwrite=args.overwrite)
    if args.plot:
        written = save_report(report, json_path=args.plot / "report.json", plot_dir=args.plot, overwrite=args.overwrite)
        for path in written:
            print(f"wrote {path}")
    return 0

