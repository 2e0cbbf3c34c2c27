"""The ``neuralop-merge`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code.

Only the chosen sub-command's module is imported: the others appear in ``--help``
through :data:`COMMANDS` alone, so the top-level help and an unknown command never
import torch or neuraloperator. ``list``, ``merge``, ``inspect`` and ``finetune``
import them where they run, not at import, so their ``--help`` and argument errors do
not either (``demo``'s options come from the study package, which imports torch).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Sequence

from ..errors import exit_status
from .checkpoints import accept_negative_numbers

#: Sub-commands in the order ``--help`` lists them: name -> (module in this package, one-line help).
#: The help line must be the module's own (a test checks it): it is what ``--help`` shows.
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("list_cmd", "list the installed merge strategies (--details: their parameters)"),
    "merge": ("merge_cmd", "merge an anchor and experts into one checkpoint"),
    "inspect": (
        "inspect_cmd",
        "per-layer norms of the shared and direction updates of an endpoint pair; error along the merge line; "
        "fit residuals of K experts' merge surface",
    ),
    "finetune": ("finetune_cmd", "fine-tune endpoint experts from an anchor checkpoint"),
    "demo": (
        "demo_cmd",
        "run the CCM study on one PDE family (default: dam_break, quick scale, < 10 min on 2 CPU cores)",
    ),
}

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with sub-command ``command`` fully registered (every one when ``None``).

    Every other sub-command is a placeholder that carries only its help line, so its
    module is not imported.
    """
    parser = OneLineParser(
        prog="neuralop-merge",
        description="Compose fine-tuned neuraloperator experts in weight space.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(f"{__name__}.{module_name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    for subparser in (parser, *subparsers.choices.values()):
        accept_negative_numbers(subparser)
    return parser


def chosen_command(argv: Sequence[str] | None) -> str:
    """The sub-command ``argv`` names; top-level ``--help`` and unknown commands exit here.

    Raises
    ------
    SystemExit
        after printing the top-level help (status 0) or a usage error (status 2)
    """
    return build_parser(command="").parse_known_args(argv)[0].command


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuralop-merge`` script; returns the process exit code."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=QUIET_MODULES)
        try:
            args = build_parser(chosen_command(argv)).parse_args(argv)
        except SystemExit as stop:  # --help (0) or a usage error (2), already printed
            return stop.code if isinstance(stop.code, int) else 2
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    return exit_status(f"neuralop-merge {args.command}", lambda: args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
