"""The ``neuralop-merge`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import NeuralopMergeError
from .checkpoints import accept_negative_numbers

# Module names (in this package) of the sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = ("list_cmd", "merge_cmd", "inspect_cmd", "finetune_cmd", "demo_cmd")

USER_ERRORS = (NeuralopMergeError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as error:
        # A user error is one line on stderr, never a traceback.
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"neuralop-merge {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader (e.g. `| head`) went away; nothing left to say
        return 0
    except KeyboardInterrupt:
        print(f"neuralop-merge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
