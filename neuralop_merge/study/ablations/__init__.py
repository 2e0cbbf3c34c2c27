"""The ablations of the CCM study, one module each, run by ``python examples/ablations.py NAME``.

Every module defines ``NAME``, its default ``FAMILIES``, ``run(settings) -> AblationOutput`` and
``figures(results)``, which draws from ``results.json``'s content alone (so ``--redraw`` needs no
training); :mod:`.base` holds what they share (the study's cached models of a seed, scoring, outputs).
A ``run`` maps a module-level per-seed step over the seeds with ``settings.map_seeds`` (or ``map_lines``)
and summarizes what comes back, so that ``--jobs`` can run the seeds in worker processes.
They run on the committed study's set-up, so they mean something only where the study's
surrogates are competent (see ``examples/results/<family>/results.md``).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

NAMES = (
    "direction_stability", "prefix_budget", "scale_trend", "fixed_alpha_frontier", "calibration_bank",
    "strong_baselines", "ccm_plane", "multi_axis", "endpoint_modes", "pushforward", "expert_replay", "prefix_scan",
)


def get(name: str) -> ModuleType:
    """The module of ablation ``name`` (imported on demand: each pulls in torch and the study)."""
    if name not in NAMES:
        raise KeyError(f"unknown ablation {name!r}; choose one of {', '.join(NAMES)}")
    return import_module(f"{__name__}.{name}")


__all__ = ["NAMES", "get"]
