"""Exception types raised by neuralop-merge, and how a command reports them.

Every error a user can cause derives from :class:`NeuralopMergeError`, so the
command line (``neuralop-merge`` and the ``examples/`` scripts, through
:func:`exit_status`) can print it as one line and exit with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class NeuralopMergeError(Exception):
    """Base class of all user-facing errors of neuralop-merge."""


class IncompatibleModelsError(NeuralopMergeError, ValueError):
    """Models that cannot be combined: class, architecture, keys, shapes or dtypes differ."""


class NonFiniteError(NeuralopMergeError, ValueError):
    """A NaN or Inf in an input tensor or in a merge result."""


class StrategyError(NeuralopMergeError, ValueError):
    """An unknown strategy, a bad or unknown strategy parameter, or a plugin conflict."""


class CheckpointError(NeuralopMergeError, OSError):
    """A checkpoint that cannot be read or written."""


class OutputExistsError(CheckpointError, FileExistsError):
    """An output file exists and the caller did not ask to overwrite it."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would execute code or build objects we do not allow."""


class SimulationError(NeuralopMergeError, ValueError):
    """A PDE family was given bad input or its simulation blew up (NaN, CFL violation)."""


class TrainingError(NeuralopMergeError, ValueError):
    """Fine-tuning was given inconsistent input (e.g. an expert from a foreign anchor)."""


class EvaluationError(NeuralopMergeError, ValueError):
    """A rollout or metric was given inconsistent input (shapes, history) or a precision its FFT sizes do not support."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message, or its type name: how a
    foreign exception is shown inside one of ours."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def exit_status(program: str, body: Callable[[], int | None]) -> int:
    """Run a command's ``body`` and return its exit status, reporting what a user can fix in one line.

    A user error (ours, or an ``OSError`` such as a missing file) is printed as
    ``"<program>: error: <first line>"`` on stderr with status 2, never as a traceback; an
    interrupt gives 130, and a reader that went away (``| head``) ends the command quietly.
    """
    try:
        return int(body() or 0)
    except BrokenPipeError:
        return 0
    except USER_ERRORS as error:
        print(f"{program}: error: {first_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130


#: What :func:`exit_status` reports in one line: errors a user causes and can fix.
USER_ERRORS = (NeuralopMergeError, OSError)
