"""neuralop-merge: compose fine-tuned neuraloperator experts in weight space.

The main entry points are :func:`merge` (any registered strategy, from models or
checkpoint paths), :class:`CCM` (the Calibration-Conditioned Merge line through two
endpoint experts), :func:`load_model` / :func:`save_model` (safe checkpoint I/O in
neuraloperator's layout) and :func:`rollout` (autoregressive evaluation).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .errors import (
    CheckpointError,
    EvaluationError,
    IncompatibleModelsError,
    NeuralopMergeError,
    NonFiniteError,
    OutputExistsError,
    SimulationError,
    StrategyError,
    TrainingError,
    UnsafeCheckpointError,
)
from .lazy import lazy_getattr

__version__ = "0.1.0"

# Everything else imports torch and neuraloperator, so it is imported on first use
# (PEP 562): ``neuralop-merge --help`` and ``list`` then start without them.
_LAZY = {
    "CCM": "ccm",
    "PrefixResult": "ccm",
    "load_model": "io",
    "save_model": "io",
    "merge": "merging",
    "available_strategies": "registry",
    "get_strategy": "registry",
    "rollout": "rollout",
    "MergeInputs": "strategies.base",
    "Plan": "strategies.base",
    "Strategy": "strategies.base",
    "CCMSurface": "surface",
    "fingerprint": "weights",
    "refresh_strategies": "registry:refresh",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """This package, keeping its lazy names when a submodule of the same name is imported.

    Importing ``neuralop_merge.rollout`` makes Python bind the submodule to the
    package's ``rollout`` attribute, which would hide the ``rollout`` function;
    refusing that binding keeps what the eager imports gave.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "CCM",
    "CCMSurface",
    "CheckpointError",
    "EvaluationError",
    "IncompatibleModelsError",
    "MergeInputs",
    "NeuralopMergeError",
    "NonFiniteError",
    "OutputExistsError",
    "Plan",
    "PrefixResult",
    "SimulationError",
    "Strategy",
    "StrategyError",
    "TrainingError",
    "UnsafeCheckpointError",
    "available_strategies",
    "fingerprint",
    "get_strategy",
    "load_model",
    "merge",
    "refresh_strategies",
    "rollout",
    "save_model",
]
