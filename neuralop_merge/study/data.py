"""Simulated data of one seed: training, held-out, validation and test trajectories of every regime.

Seeding: the data of each role come from ``derive_seed(seed, family, "data", role)``, so roles
never share initial states and a seed fixes every trajectory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .. import families
from ..families.dataset import RegimeData
from ..training.seeding import derive_seed
from .config import StudyConfig

CacheDir = str | os.PathLike | None


@dataclass
class Regime:
    """Trajectories ``[n, T+1, C, H, W]`` of one regime at normalized coordinate ``c`` (value ``mu``)."""

    role: str
    c: float
    mu: float
    trajectories: torch.Tensor


@dataclass
class TrainingSet:
    """What one training run sees: pooled trajectories, their coordinates, and held-out ones."""

    trajectories: torch.Tensor
    coordinates: torch.Tensor
    holdout: torch.Tensor
    holdout_coordinates: torch.Tensor

    @staticmethod
    def pooled(parts: list[TrainingSet]) -> TrainingSet:
        return TrainingSet(
            *(torch.cat([getattr(part, name) for part in parts]) for name in TrainingSet.__dataclass_fields__)
        )


@dataclass
class StudyData:
    support: TrainingSet
    low: TrainingSet
    high: TrainingSet
    validation: list[Regime]
    test: dict[str, list[Regime]]


def data_seed(seed: int, family: str, role: str) -> int:
    return derive_seed(seed, family, "data", role) % (2**31)


def _simulate(config: StudyConfig, seed: int, role: str, coords: tuple[float, ...], n: int, device: str,
              cache_dir: CacheDir = None) -> RegimeData:
    data = config.data
    return families.get(config.family).dataset(
        config.regimes.values(coords), n, data.resolution, data.n_frames, seed=data_seed(seed, config.family, role),
        dt_frame=data.dt_frame, device=device, refine=data.refine, spinup=data.spinup, cache_dir=cache_dir,
    )


def training_set(config: StudyConfig, seed: int, role: str, coords: tuple[float, ...], n: int, device: str = "cpu",
                 cache_dir: CacheDir = None) -> TrainingSet:
    """``n`` training and ``n_holdout`` held-out trajectories per regime of ``coords``."""
    parts = []
    for part, count in ((role, n), (f"{role}-holdout", config.data.n_holdout)):
        data = _simulate(config, seed, part, coords, count, device, cache_dir)
        coordinate = torch.tensor(coords, dtype=torch.float64).repeat_interleave(count)
        parts.append((data.trajectories, coordinate))
    (train, train_c), (holdout, holdout_c) = parts
    return TrainingSet(train, train_c, holdout, holdout_c)


def regimes_at(config: StudyConfig, seed: int, role: str, coords: tuple[float, ...], n: int, device: str,
             cache_dir: CacheDir = None) -> list[Regime]:
    whole = _simulate(config, seed, role, coords, n, device, cache_dir)
    return [
        Regime(role, float(c), config.regimes.value(c), whole.by_regime(index).trajectories)
        for index, c in enumerate(coords)
    ]


def generate_data(config: StudyConfig, seed: int, *, device: str = "cpu", progress: bool = True,
                  cache_dir: CacheDir = None) -> StudyData:
    """Simulate every regime of one seed (or read it from the data-set cache in ``cache_dir``)."""
    regimes, data = config.regimes, config.data
    steps = tqdm(total=4 + len(regimes.test), desc=f"data ({config.family})", unit="set", disable=not progress)
    built = {}
    for role, coords, n in (("support", regimes.support, data.n_support), ("low", (-1.0,), data.n_endpoint),
                            ("high", (1.0,), data.n_endpoint)):
        built[role] = training_set(config, seed, role, coords, n, device, cache_dir)
        steps.update()
    validation = regimes_at(config, seed, "validation", regimes.validation, data.n_validation, device, cache_dir)
    steps.update()
    test = {}
    for split, coords in regimes.test.items():
        test[split] = regimes_at(config, seed, f"test-{split}", coords, data.n_test, device, cache_dir)
        steps.update()
    steps.close()
    return StudyData(built["support"], built["low"], built["high"], validation, test)


__all__ = ["Regime", "StudyData", "TrainingSet", "data_seed", "generate_data", "regimes_at", "training_set"]
