"""The ``neuralop-merge`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence

from ..errors import NeuralopMergeError, first_line
from .checkpoints import accept_negative_numbers

# Module names (in this package) of the sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = ("list_cmd", "merge_cmd", "inspect_cmd", "finetune_cmd", "demo_cmd")

USER_ERRORS = (NeuralopMergeError, OSError)

# Libraries whose UserWarnings are addressed to developers (deprecations, TypedStorage,
# neuraloperator's own notices); a CLI user can act on none of them. Our own warnings
# (module ``neuralop_merge``) stay visible.
QUIET_MODULES = r"(torch|neuralop|tensorly|tltorch|torch_harmonics)(\..*)?$"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one stderr line and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {high}]")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="neuralop-merge",
        description="Compose fine-tuned neuraloperator experts in weight space.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{module_name}").register(subparsers)
    for subparser in (parser, *subparsers.choices.values()):
        accept_negative_numbers(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuralop-merge`` script; returns the process exit code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=QUIET_MODULES)
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:  # --help (0) or a usage error (2), already printed
            return stop.code if isinstance(stop.code, int) else 2
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader (e.g. `| head`) went away; nothing left to say
        return 0
    except USER_ERRORS as error:
        # A user error is one line on stderr, never a traceback.
        print(f"neuralop-merge {args.command}: error: {first_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neuralop-merge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
