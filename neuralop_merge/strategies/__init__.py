"""Built-in merge strategies, one module each, registered through entry points."""

from .base import MergeInputs, Plan, Strategy

__all__ = ["MergeInputs", "Plan", "Strategy"]
