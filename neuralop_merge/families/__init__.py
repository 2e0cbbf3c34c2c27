"""PDE regime families: batched PyTorch solvers that produce the experts' data.

Three families mirror public benchmarks: ``diffreact`` (PDEBench's 2D
FitzHugh-Nagumo diffusion-reaction), ``ns2d`` (vorticity Navier-Stokes on the
unit torus) and ``dam_break`` (PDEBench's radial shallow-water dam break).

Examples
--------
>>> from neuralop_merge import families
>>> family = families.get("diffreact")
>>> x0 = family.sample_initial(4, 32, seed=0)
>>> family.simulate(x0, 2e-3, n_frames=3).shape
torch.Size([4, 4, 2, 32, 32])
"""

from __future__ import annotations

from typing import Any

from ..errors import SimulationError
from .base import Family, ParameterAxis, ParamSpec
from .dam_break import DamBreak
from .dataset import PairDataset, RegimeData
from .diffreact import DiffusionReaction
from .ns2d import NavierStokes2D

_REGISTRY: dict[str, Family] = {family.name: family for family in (DiffusionReaction(), NavierStokes2D(), DamBreak())}


def available() -> list[str]:
    """Names of the registered families, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **settings: Any) -> Family:
    """The family registered under ``name``, or a new one of its kind built with ``settings``.

    Examples
    --------
    >>> get("dam_break", r0_range=(0.3, 0.7))
    DamBreak(r0_range=(0.3, 0.7))

    Raises
    ------
    SimulationError
        If no family has that name, or it takes no such settings.
    """
    try:
        family = _REGISTRY[name]
    except KeyError:
        raise SimulationError(f"unknown family {name!r}; available: {available()}") from None
    if not settings:
        return family
    try:
        return type(family)(**settings)
    except TypeError:
        raise SimulationError(f"{name}: unknown setting(s) {sorted(settings)}") from None


__all__ = [
    "DamBreak",
    "DiffusionReaction",
    "Family",
    "NavierStokes2D",
    "PairDataset",
    "ParamSpec",
    "ParameterAxis",
    "RegimeData",
    "available",
    "get",
]
