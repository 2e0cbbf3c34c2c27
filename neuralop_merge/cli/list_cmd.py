"""``neuralop-merge list``: the installed merge strategies."""

from __future__ import annotations

import argparse
import inspect

from ..registry import available_strategies, get_strategy


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list the installed merge strategies and their parameters")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in available_strategies():
        strategy = get_strategy(name)
        summary = (inspect.getdoc(type(strategy)) or "").splitlines()[0:1]
        parameters = ", ".join(strategy.parameter_names()) or "-"
        print(f"{name:18s} params: {parameters:40s} {summary[0] if summary else ''}")
    return 0
