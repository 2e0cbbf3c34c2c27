"""neuralop-merge: compose fine-tuned neuraloperator experts in weight space.

The main entry points are :func:`merge` (any registered strategy, from models or
checkpoint paths), :class:`CCM` (the Calibration-Conditioned Merge line through two
endpoint experts), :func:`load_model` / :func:`save_model` (safe checkpoint I/O in
neuraloperator's layout) and :func:`rollout` (autoregressive evaluation).
"""

from .ccm import CCM, PrefixResult
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
from .io import load_model, save_model
from .merging import merge
from .registry import available_strategies, get_strategy, refresh as refresh_strategies
from .rollout import rollout
from .strategies.base import MergeInputs, Plan, Strategy
from .surface import CCMSurface
from .weights import fingerprint

__version__ = "0.1.0"

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
