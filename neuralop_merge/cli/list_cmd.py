"""``neuralop-merge list``: the installed merge strategies."""

from __future__ import annotations

import argparse
import inspect

from ..registry import available_strategies, declared_strategies, get_strategy
from . import COMMANDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help=COMMANDS["list"][1])
    parser.add_argument(
        "--details", action="store_true",
        help="load every strategy to show its parameters and summary (imports torch and the plugins)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.details:
        # From the entry-point metadata alone: instant, and no strategy is imported.
        for name, claims in declared_strategies().items():
            print(f"{name:18s} {' and '.join(claims)}")
        return 0
    for name in available_strategies():
        strategy = get_strategy(name)
        summary = (inspect.getdoc(type(strategy)) or "").splitlines()[0:1]
        parameters = ", ".join(strategy.parameter_names()) or "-"
        print(f"{name:18s} params: {parameters:40s} {summary[0] if summary else ''}")
    return 0
