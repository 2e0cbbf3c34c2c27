"""Warnings attributed to the caller's code rather than to the package's internals.

A fixed ``stacklevel`` points at the right line only for one call depth, and the depth between a
user's call and the place that notices a problem varies (``rollout`` wraps its step in amp, data
processor and CUDA-graph layers; merges reach the lineage check through several doors). So
:func:`warn` walks the stack to the first frame outside neuralop-merge and torch (whose decorators
and modules sit in between), and the warning names that line, as Python's once-per-location
warning filter then keys on it.
"""

from __future__ import annotations

import sys
import warnings
from types import FrameType

_INTERNAL = ("neuralop_merge", "torch")


def _is_internal(frame: FrameType) -> bool:
    name = frame.f_globals.get("__name__", "")
    return any(name == package or name.startswith(f"{package}.") for package in _INTERNAL)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` at the first caller outside neuralop-merge and torch."""
    frame, level = sys._getframe(1), 1
    while frame is not None and _is_internal(frame):
        frame, level = frame.f_back, level + 1
    # stacklevel 1 would be this function; ``level`` counts from its caller.
    warnings.warn(message, category, stacklevel=level + 1)


__all__ = ["warn"]
