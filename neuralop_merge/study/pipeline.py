"""The study pipeline: data → anchor → experts → conditioned baseline → evaluation, per seed.

:func:`run_study` runs every seed of a :class:`~.config.StudyConfig`, aggregates the
results (:mod:`.report`), draws the figures (:mod:`.figures`) and writes
``results.json``, ``results.md`` and the PNGs into the output folder.

Seeding: seed ``s`` fixes every random draw of its run: the data of each role
(support, endpoints, validation, test) come from ``derive_seed(s, family, role)``,
each network's initialisation from ``derive_seed(s, "init", name)`` and the
training order from the ``Trainer``'s per-epoch seeding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from neuralop.models import FNO
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import families
from ..families.dataset import RegimeData
from ..training import finetune_endpoints, train_anchor
from ..training.seeding import derive_seed
from .config import StudyConfig

Log = Callable[[str], None]


# -- data ------------------------------------------------------------------------------------------
@dataclass
class Regime:
    """Trajectories ``[n, T+1, C, H, W]`` of one regime at normalized coordinate ``c`` (value ``mu``)."""

    role: str
    c: float
    mu: float
    trajectories: torch.Tensor


@dataclass
class StudyData:
    support: RegimeData
    low: RegimeData
    high: RegimeData
    validation: list[Regime]
    test: dict[str, list[Regime]]

    @property
    def n_frames(self) -> int:
        return self.support.trajectories.shape[1] - 1


def _data_seed(seed: int, family: str, role: str) -> int:
    return derive_seed(seed, family, "data", role) % (2**31)


def generate_data(config: StudyConfig, seed: int, *, device: str = "cpu", progress: bool = True) -> StudyData:
    """Simulate every regime of one seed (support, endpoints, validation, test)."""
    family = families.get(config.family)
    regimes, data = config.regimes, config.data

    def simulate(values: list[float], n: int, role: str) -> RegimeData:
        return family.dataset(
            values, n, data.resolution, data.n_frames, seed=_data_seed(seed, config.family, role),
            dt_frame=data.dt_frame, device=device,
        )

    jobs: list[tuple[str, list[float], tuple[float, ...], int]] = [
        ("support", regimes.values(regimes.support), regimes.support, data.n_support),
        ("low", [regimes.low], (-1.0,), data.n_endpoint),
        ("high", [regimes.high], (1.0,), data.n_endpoint),
        ("validation", regimes.values(regimes.validation), regimes.validation, data.n_validation),
        *((f"test-{split}", regimes.values(coords), coords, data.n_test) for split, coords in regimes.test.items()),
    ]
    built: dict[str, RegimeData] = {}
    for role, values, _, n in tqdm(jobs, desc=f"[1/5] data ({config.family})", unit="set", disable=not progress):
        built[role] = simulate(values, n, role)

    def split_regimes(role: str, coords: tuple[float, ...]) -> list[Regime]:
        whole = built[role]
        return [
            Regime(role, float(c), regimes.value(c), whole.by_regime(index).trajectories)
            for index, c in enumerate(coords)
        ]

    return StudyData(
        support=built["support"],
        low=built["low"],
        high=built["high"],
        validation=split_regimes("validation", regimes.validation),
        test={split: split_regimes(f"test-{split}", coords) for split, coords in regimes.test.items()},
    )


# -- models ------------------------------------------------------------------------------------------
def build_fno(config: StudyConfig, in_channels: int, out_channels: int, seed: int, name: str) -> FNO:
    """A freshly initialised FNO, its weights a function of ``(seed, name)``."""
    torch.manual_seed(derive_seed(seed, "init", name))
    m = config.model
    return FNO(
        n_modes=(m.n_modes, m.n_modes), in_channels=in_channels, out_channels=out_channels,
        hidden_channels=m.hidden_channels, n_layers=m.n_layers,
    )


class Conditioned(nn.Module):
    """A one-step model for a fixed regime: ``net(cat(x, c))`` with c the normalized coordinate as a channel."""

    def __init__(self, net: nn.Module, coordinate: float) -> None:
        super().__init__()
        self.net = net
        self.coordinate = float(coordinate)

    def forward(self, x: torch.Tensor, **_: Any) -> torch.Tensor:
        channel = torch.full_like(x[:, :1], self.coordinate)
        return self.net(torch.cat((x, channel), dim=1))


class ConditionedPairs(Dataset):
    """One-step pairs ``{'x': cat(frame t, c), 'y': frame t+1}`` of trajectories tagged with coordinates."""

    def __init__(self, trajectories: torch.Tensor, coordinates: torch.Tensor) -> None:
        self.trajectories, self.coordinates = trajectories, coordinates.to(trajectories.dtype)
        self.steps = trajectories.shape[1] - 1

    def __len__(self) -> int:
        return self.trajectories.shape[0] * self.steps

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        trajectory, step = divmod(index, self.steps)
        frame = self.trajectories[trajectory, step]
        channel = torch.full_like(frame[:1], float(self.coordinates[trajectory]))
        return {"x": torch.cat((frame, channel)), "y": self.trajectories[trajectory, step + 1]}


@dataclass
class Models:
    anchor: nn.Module
    low: nn.Module
    high: nn.Module
    conditioned_net: nn.Module
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _epochs_for(target_steps: int, loader: DataLoader) -> int:
    return max(1, round(target_steps / max(1, len(loader))))


def _loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def train_models(
    config: StudyConfig, data: StudyData, seed: int, *, device: str = "cpu", progress: bool = True, log: Log = print
) -> Models:
    """Anchor on the support, the two endpoint experts from it, and the conditioned FNO on the same data and steps."""
    family = families.get(config.family)
    channels = len(family.channels)
    train = config.train
    steps: dict[str, int] = {}
    seconds: dict[str, float] = {}

    log(f"[2/5] anchor on support {config.to_dict()['regime_values']['support']}")
    start = time.perf_counter()
    anchor_loader = data.support.loader(train.batch_size, shuffle=True, seed=seed)
    anchor_epochs = train.anchor_epochs or _epochs_for(train.anchor_steps, anchor_loader)
    anchor = train_anchor(
        build_fno(config, channels, channels, seed, "anchor"), anchor_loader, n_epochs=anchor_epochs,
        lr=train.anchor_lr, seed=seed, device=device, progress=progress,
    )
    steps["anchor"], seconds["anchor"] = anchor.provenance["steps"], time.perf_counter() - start

    log(f"[3/5] endpoint experts at {family.parameter.name} = {config.regimes.low:g}, {config.regimes.high:g}")
    start = time.perf_counter()
    low_loader = data.low.loader(train.batch_size, shuffle=True, seed=seed)
    high_loader = data.high.loader(train.batch_size, shuffle=True, seed=seed)
    expert_epochs = train.expert_epochs or _epochs_for(train.expert_steps, low_loader)
    experts = finetune_endpoints(
        anchor,
        {"low": (config.regimes.low, low_loader), "high": (config.regimes.high, high_loader)},
        n_epochs=expert_epochs, parameter=family.parameter.name, lr=train.expert_lr, seed=seed,
        device=device, progress=progress,
    )
    steps["experts"] = sum(expert.provenance["steps"] for expert in experts.values())
    seconds["experts"] = time.perf_counter() - start

    # The baseline users would otherwise build: one FNO that sees the parameter as an input channel,
    # trained on all the data the anchor and the experts saw, for their total number of steps.
    log("[4/5] parameter-conditioned FNO (same data, same total steps)")
    start = time.perf_counter()
    pooled = [data.support, data.low, data.high]
    trajectories = torch.cat([part.trajectories for part in pooled])
    coordinates = torch.tensor([_coordinate(config, float(mu)) for part in pooled for mu in part.params.tolist()])
    cond_loader = _loader(ConditionedPairs(trajectories, coordinates), train.batch_size, seed)
    budget = steps["anchor"] + steps["experts"]
    cond_epochs = _epochs_for(budget, cond_loader)
    conditioned = train_anchor(
        build_fno(config, channels + 1, channels, seed, "conditioned"), cond_loader, n_epochs=cond_epochs,
        lr=train.anchor_lr, seed=derive_seed(seed, "conditioned") % (2**31), device=device, progress=progress,
    )
    steps["conditioned"], seconds["conditioned"] = conditioned.provenance["steps"], time.perf_counter() - start
    return Models(anchor, experts["low"], experts["high"], conditioned, steps, seconds)


def _coordinate(config: StudyConfig, mu: float) -> float:
    """c(μ) of the study's axis (the same formula as :meth:`neuralop_merge.CCM.coordinate`)."""
    from ..coordinates import normalized_coordinate

    return normalized_coordinate(mu, config.regimes.low, config.regimes.high, config.regimes.transform)


# -- the whole study --------------------------------------------------------------------------------
def run_seed(
    config: StudyConfig, seed: int, *, device: str = "cpu", progress: bool = True, log: Log = print
) -> dict[str, Any]:
    """Everything for one seed: data, training, evaluation. Returns the seed's raw record."""
    from .methods import evaluate_seed

    started = time.perf_counter()
    data = generate_data(config, seed, device=device, progress=progress)
    data_seconds = time.perf_counter() - started
    models = train_models(config, data, seed, device=device, progress=progress, log=log)
    log("[5/5] evaluation: validation selection, α sweeps, every method on every test regime")
    start = time.perf_counter()
    record = evaluate_seed(config, data, models, device=device, progress=progress)
    record["seed"] = seed
    record["steps"] = models.steps
    record["seconds"] = {
        "data": data_seconds, **models.seconds, "evaluation": time.perf_counter() - start,
        "total": time.perf_counter() - started,
    }
    return record


def run_study(
    config: StudyConfig,
    out: str | Path,
    *,
    device: str = "cpu",
    progress: bool = True,
    command: str = "",
    log: Log = print,
    figures: bool = True,
) -> dict[str, Any]:
    """Run every seed of ``config``, then write results.json, results.md and the figures into ``out``.

    Returns
    -------
    dict
        The content of results.json.
    """
    from .report import aggregate, write_outputs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for index, seed in enumerate(config.seeds):
        log(f"== {config.family} ({config.scale}) seed {seed} [{index + 1}/{len(config.seeds)}] ==")
        records.append(run_seed(config, seed, device=device, progress=progress, log=log))
        log(f"   seed {seed} done in {records[-1]['seconds']['total']:.0f} s")
    results = aggregate(config, records, command=command, device=device)
    write_outputs(results, records, config, out, figures=figures)
    return results


__all__ = [
    "Conditioned",
    "ConditionedPairs",
    "Models",
    "Regime",
    "StudyData",
    "build_fno",
    "generate_data",
    "run_seed",
    "run_study",
    "train_models",
]
