"""The trained models of one seed: anchor, endpoint experts and the two trained baselines.

Every network is an FNO behind an :class:`~neuralop_merge.training.processing.IncrementDataProcessor`
(fitted once on the support data and shared by the anchor, the experts and ``anchor_extra``),
trained with :func:`~neuralop_merge.training.train_anchor` /
:func:`~neuralop_merge.training.finetune_endpoints` under the budget rule of :mod:`.config`:

``anchor``        from scratch on the support regimes, capped at ``anchor_max_steps``;
``low``/``high``  fine-tuned from the anchor at each endpoint, capped at ``expert_max_steps`` each;
``anchor_extra``  the anchor trained further on its support for the steps the two experts took,
                  so that a gain of CCM over the anchor is not just more optimisation;
``conditioned``   an FNO with the normalized coordinate c as an extra input channel, trained from
                  scratch on support and endpoint data, capped at the steps of anchor and experts.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from neuralop.models import FNO
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, RandomSampler, WeightedRandomSampler

from .. import families
from ..families.dataset import PairDataset
from ..training import TrainingSettings, finetune_endpoints, train_anchor
from ..training.recipes import OptimizerName
from ..training.processing import IncrementDataProcessor, ProcessedModel
from ..training.seeding import derive_seed
from .config import EXPERTS, StudyConfig
from .data import StudyData, TrainingSet

Log = Callable[[str], None]


class Conditioned(nn.Module):
    """A one-step model of a fixed regime: ``model(cat(x, c))`` without the c channel."""

    def __init__(self, model: nn.Module, coordinate: float) -> None:
        super().__init__()
        self.model = model
        self.coordinate = float(coordinate)

    def forward(self, x: torch.Tensor, **_: Any) -> torch.Tensor:
        channels = x.shape[1]
        return self.model(torch.cat((x, torch.full_like(x[:, :1], self.coordinate)), dim=1))[:, :channels]


def with_coordinate_channel(trajectories: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """``[N, T+1, C, ...]`` trajectories with each one's coordinate appended as a constant channel."""
    shape = (*trajectories.shape[:2], 1, *trajectories.shape[3:])
    view = (-1, *([1] * (trajectories.ndim - 1)))
    return torch.cat((trajectories, coordinates.to(trajectories.dtype).view(view).expand(shape)), dim=2)


@dataclass
class Models:
    """The one-step models (physical units) of one seed, with their optimizer steps and wall times."""

    anchor: nn.Module
    low: nn.Module
    high: nn.Module
    anchor_extra: nn.Module
    conditioned: nn.Module
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def build_fno(config: StudyConfig, in_channels: int, out_channels: int, seed: int, name: str) -> FNO:
    """A freshly initialised FNO, its weights a function of ``(seed, name)``."""
    torch.manual_seed(derive_seed(seed, "init", name))
    m = config.model
    return FNO(
        n_modes=(m.n_modes, m.n_modes), in_channels=in_channels, out_channels=out_channels,
        hidden_channels=m.hidden_channels, n_layers=m.n_layers,
    )


@dataclass
class SeedTrainer:
    """Runs the recipe for one seed and keeps each run's optimizer steps and seconds.

    ``optimizer`` and ``pushforward`` (see :class:`~..training.TrainingSettings`) change the recipe
    for ablations; the study itself keeps their defaults.
    """

    config: StudyConfig
    seed: int
    device: str = "cpu"
    progress: bool = True
    optimizer: OptimizerName = "adamw"
    pushforward: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def budget(self, max_steps: int) -> int:
        """The optimizer steps of a run capped at ``max_steps`` that goes to its cap: whole epochs, at least one."""
        per_epoch = self.config.train.steps_per_epoch
        return max(1, max_steps // per_epoch) * per_epoch

    def settings(self, name: str, max_steps: int, lr: float) -> TrainingSettings:
        """The recipe's settings of run ``name`` capped at ``max_steps`` (one epoch per evaluation)."""
        train = self.config.train
        return TrainingSettings(
            n_epochs=self.budget(max_steps) // train.steps_per_epoch, lr=lr, weight_decay=train.weight_decay,
            scheduler="onecycle", seed=derive_seed(self.seed, "train", name) % (2**31), device=self.device,
            progress=self.progress, grad_clip=train.grad_clip, patience=train.patience(max_steps),
            optimizer=self.optimizer, pushforward=self.pushforward,
        )

    def loader(self, trajectories: torch.Tensor, replay: torch.Tensor | None = None, replay_share: float = 0.0) -> DataLoader:
        """Shuffled one-step batches (with the frames a pushforward needs), ``steps_per_epoch`` of them per epoch.

        With ``replay`` (trajectories of other regimes, such as the anchor's support), each pair is drawn
        from them with probability ``replay_share`` and from ``trajectories`` otherwise.
        """
        train = self.config.train
        samples = train.steps_per_epoch * train.batch_size
        pairs = PairDataset(trajectories, lead=self.pushforward)
        if replay is None:
            return DataLoader(pairs, batch_size=train.batch_size, sampler=RandomSampler(pairs, num_samples=samples))
        if not 0.0 <= replay_share < 1.0:
            raise ValueError(f"replay_share must lie in [0, 1), got {replay_share}")
        replayed = PairDataset(replay, lead=self.pushforward)
        weights = torch.cat((torch.full((len(pairs),), (1.0 - replay_share) / len(pairs), dtype=torch.float64),
                             torch.full((len(replayed),), replay_share / len(replayed), dtype=torch.float64)))
        sampler = WeightedRandomSampler(weights, num_samples=samples)
        return DataLoader(ConcatDataset([pairs, replayed]), batch_size=train.batch_size, sampler=sampler)

    def fit(self, name: str, net: nn.Module, part: TrainingSet, processor: IncrementDataProcessor,
            max_steps: int, lr: float, *, conditioned: bool = False) -> ProcessedModel:
        """Train ``net`` in place on ``part`` and return it behind its processor."""
        def channels(trajectories: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
            return with_coordinate_channel(trajectories, coordinates) if conditioned else trajectories

        start = time.perf_counter()
        train_anchor(
            net, self.loader(channels(part.trajectories, part.coordinates)),
            settings=self.settings(name, max_steps, lr), data_processor=processor,
            val_trajectories=channels(part.holdout, part.holdout_coordinates),
        )
        self.seconds[name], self.steps[name] = time.perf_counter() - start, net.provenance["steps"]
        return ProcessedModel(net, processor)

    def finetune(self, anchor: ProcessedModel, data: StudyData, *, replay_share: float | None = None,
                 names: Sequence[str] = EXPERTS) -> dict[str, ProcessedModel]:
        """The endpoint experts ``names`` (both by default), fine-tuned from the anchor's network.

        ``replay_share`` > 0 draws that share of each expert's training pairs from the anchor's support
        data; None takes the configuration's ``expert_replay``.
        """
        regimes = self.config.regimes
        endpoints = {"low": (regimes.low, data.low), "high": (regimes.high, data.high)}
        replay_share = self.config.train.expert_replay if replay_share is None else replay_share
        return self.finetune_at(anchor, {name: endpoints[name] for name in names},
                                replay=data.support if replay_share else None, replay_share=replay_share)

    def finetune_at(self, anchor: ProcessedModel, parts: Mapping[str, tuple[float, TrainingSet]], *,
                    replay: TrainingSet | None = None, replay_share: float = 0.0) -> dict[str, ProcessedModel]:
        """One expert per named ``(parameter value, training set)``, fine-tuned from the anchor by the experts' recipe.

        Each expert's seed derives from this trainer's seed and its name, so an expert does not
        depend on which others are trained with it. With ``replay``, a ``replay_share`` of each
        expert's training pairs comes from that set (see :meth:`loader`); its stopping rule still
        reads the expert's own held-out trajectories.
        """
        config, start = self.config, time.perf_counter()
        extra = None if replay is None else replay.trajectories
        nets = finetune_endpoints(
            anchor.net, {name: (mu, self.loader(part.trajectories, extra, replay_share)) for name, (mu, part) in parts.items()},
            parameter=families.get(config.family).parameter.name,
            settings=self.settings("experts", config.train.expert_max_steps, config.train.expert_lr),
            data_processor=anchor.processor, val_trajectories={name: part.holdout for name, (_, part) in parts.items()},
        )
        self.seconds["experts"] = time.perf_counter() - start
        self.steps.update({name: net.provenance["steps"] for name, net in nets.items()})
        return {name: ProcessedModel(net, anchor.processor) for name, net in nets.items()}


def conditioned_data(data: StudyData, noise: float) -> tuple[TrainingSet, IncrementDataProcessor]:
    """Support and endpoint data pooled for a network fed the coordinate c, and its fitted processor."""
    pooled = TrainingSet.pooled([data.support, data.low, data.high])
    processor = IncrementDataProcessor.fit(
        with_coordinate_channel(pooled.trajectories, pooled.coordinates),
        state_channels=data.support.trajectories.shape[2], noise=noise,
    )
    return pooled, processor


def fit_anchor(runs: SeedTrainer, data: StudyData) -> ProcessedModel:
    """The anchor: from scratch on the support regimes, behind the processor fitted on them."""
    config, channels = runs.config, len(families.get(runs.config.family).channels)
    processor = IncrementDataProcessor.fit(data.support.trajectories, noise=config.train.noise)
    net = build_fno(config, channels, channels, runs.seed, "anchor")
    return runs.fit("anchor", net, data.support, processor, config.train.anchor_max_steps, config.train.lr)


def fit_expert(runs: SeedTrainer, anchor: ProcessedModel, data: StudyData, name: str) -> ProcessedModel:
    """The endpoint expert ``name`` ("low" or "high") alone; the same network as when trained with the other."""
    return runs.finetune(anchor, data, names=(name,))[name]


def fit_anchor_extra(runs: SeedTrainer, anchor: ProcessedModel, data: StudyData, steps: int) -> ProcessedModel:
    """``anchor_extra``: a copy of the anchor trained on its support for ``steps`` more steps, at the experts' rate."""
    net = copy.deepcopy(anchor.net)
    return runs.fit("anchor_extra", net, data.support, anchor.processor, steps, runs.config.train.expert_lr)


def fit_conditioned(runs: SeedTrainer, data: StudyData, steps: int) -> ProcessedModel:
    """The parameter-conditioned FNO, from scratch on support and endpoint data, capped at ``steps``."""
    config, channels = runs.config, len(families.get(runs.config.family).channels)
    pooled, processor = conditioned_data(data, config.train.noise)
    net = build_fno(config, channels + 1, channels, runs.seed, "conditioned")
    return runs.fit("conditioned", net, pooled, processor, steps, config.train.lr, conditioned=True)


def train_models(
    config: StudyConfig, data: StudyData, seed: int, *, device: str = "cpu", progress: bool = True, log: Log = print
) -> Models:
    """Anchor, experts, ``anchor_extra`` and the conditioned FNO of one seed, one after another (see the module docstring)."""
    runs = SeedTrainer(config, seed, device, progress)
    log(f"  anchor on the support c = {list(config.regimes.support)}")
    anchor = fit_anchor(runs, data)
    log("  endpoint experts at c = -1 and +1")
    experts = runs.finetune(anchor, data)
    expert_steps = runs.steps["low"] + runs.steps["high"]
    log(f"  anchor_extra: the anchor trained on for the experts' {expert_steps} steps")
    extra = fit_anchor_extra(runs, anchor, data, expert_steps)
    log("  parameter-conditioned FNO on the same data")
    conditioned = fit_conditioned(runs, data, runs.steps["anchor"] + expert_steps)
    return Models(anchor, experts["low"], experts["high"], extra, conditioned, runs.steps, runs.seconds)


__all__ = [
    "Conditioned", "Models", "SeedTrainer", "build_fno", "conditioned_data", "fit_anchor", "fit_anchor_extra", "fit_conditioned",
    "fit_expert", "train_models", "with_coordinate_channel",
]
