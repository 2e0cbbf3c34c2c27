"""``neuralop-merge inspect``: how an endpoint pair's update splits into Δ₊ and Δ₋."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..ccm import CCM
from ..diagnostics import layer_report, report_as_dicts


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="per-layer norms of the shared and direction updates of an endpoint pair",
        description="Per tensor: ||Delta+||, ||Delta-||, cos(Delta_L, Delta_H) and the share along Delta-.",
    )
    parser.add_argument("--anchor", required=True, help="the anchor checkpoint")
    parser.add_argument("--low", required=True, help="the low-endpoint expert checkpoint")
    parser.add_argument("--high", required=True, help="the high-endpoint expert checkpoint")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    parser.set_defaults(func=run)


def _format(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def run(args: argparse.Namespace) -> int:
    # The coordinates do not enter the decomposition; any ordered pair will do.
    rows = layer_report(CCM(args.anchor, args.low, args.high, low_coord=-1.0, high_coord=1.0))
    width = max(len(row.name) for row in rows)
    print(f"{'tensor':{width}s}  {'numel':>9s}  {'|D+|':>10s}  {'|D-|':>10s}  {'cos(DL,DH)':>10s}  {'share D-':>8s}")
    for row in rows:
        print(
            f"{row.name:{width}s}  {row.numel:9d}  {_format(row.shared_norm):>10s}  {_format(row.direction_norm):>10s}"
            f"  {_format(row.cosine):>10s}  {_format(row.direction_share):>8s}"
        )
    if args.json:
        args.json.write_text(json.dumps(report_as_dicts(rows), indent=2))
    return 0
