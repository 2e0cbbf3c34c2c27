"""``neuralop-merge demo``: the reproduction study of one family, end to end, in minutes on a CPU."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import COMMANDS

# DiffReact misses its competence target even at the committed scale (examples/results/diffreact);
# dam break meets its own, so the demo shows competent rollouts by default.
DEFAULT_FAMILY = "dam_break"


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..study.script import add_arguments

    parser = subparsers.add_parser(
        "demo",
        help=COMMANDS["demo"][1],
        description=(
            "Simulate a PDE family, train the anchor on the middle of the parameter axis, fine-tune the low and "
            "high endpoint experts, train the anchor further for the experts' steps and a parameter-conditioned "
            "FNO on the same data, then compare every method against persistence and the truth on support, "
            "endpoint, interpolation and out-of-distribution rollouts. Writes results.json, results.md and PNG "
            "figures; running it again on the same folder reuses the finished seeds. No files needed."
        ),
    )
    parser.add_argument("--family", default=DEFAULT_FAMILY, choices=("diffreact", "ns2d", "dam_break"),
                        help=f"PDE family (default {DEFAULT_FAMILY})")
    add_arguments(parser, scale="quick", out_help="output folder (default ./ccm-demo-<family>, ignored by git)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..study.script import execute, run_from_args

    study = run_from_args(args, args.family, Path(f"ccm-demo-{args.family}"))
    words = sys.argv[1:] if sys.argv[1:2] == ["demo"] else ["demo", "--family", args.family, "--scale", args.scale]
    execute(study, "neuralop-merge " + shlex.join(words))
    return 0
