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


def get(name: str) -> Family:
    """The family registered under ``name``.

    Raises
    ------
    SimulationError
        If no family has that name.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SimulationError(f"unknown family {name!r}; available: {available()}") from None


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
