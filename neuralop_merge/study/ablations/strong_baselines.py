"""What a user would build instead of merging: a parameter-conditioned network trained on all the data.

Two conditioned FNOs see the same trajectories as the anchor and both experts together (support
and endpoint regimes, each trajectory with its coordinate c) and get the optimizer steps the
anchor and both experts took, under the study's recipe and stopping rule:

``conditioned``        the study's baseline: c as a constant extra input channel;
``film_conditioned``   FiLM conditioning (Perez et al., 2018), the physics-aware conditioning of
                       PDE foundation models: an MLP of c scales and shifts the hidden channels
                       after every Fourier layer (initialized to the identity).

They are compared with the merge line of the same seed: the identity CCM-Coord and CCM-Prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from neuralop.models import FNO
from torch import nn

from ...plots import plot_series
from ..config import SPLITS
from ..data import TrainingSet
from ...training.processing import IncrementDataProcessor, ProcessedModel
from ..evaluation import prefix_scores
from ..models import Conditioned, SeedTrainer, build_fno, with_coordinate_channel
from .base import (AblationOutput, AblationSettings, SeedLine, cached_nets, errors, interval, ratio_summary, seed_line,
                   summary)

NAME = "strong_baselines"
FAMILIES = ("dam_break",)
METHODS = ("anchor", "ccm_coord", "ccm_prefix", "conditioned", "film_conditioned")


class FiLMFNO(nn.Module):
    """An FNO whose hidden channels are modulated by the coordinate after every Fourier layer.

    The input is ``[B, C+1, ...]``: C state channels and a constant channel holding c (as the
    concatenation baseline receives it); the output is ``[B, C, ...]``.
    """

    def __init__(self, fno: FNO, hidden: int = 32) -> None:
        super().__init__()
        self.fno = fno
        width, layers = fno.hidden_channels, fno.n_layers
        self.film = nn.Sequential(nn.Linear(1, hidden), nn.GELU(), nn.Linear(hidden, 2 * width * layers))
        nn.init.zeros_(self.film[-1].weight)  # start as the plain FNO: scale 1, shift 0
        nn.init.zeros_(self.film[-1].bias)

    def forward(self, x: torch.Tensor, **_: Any) -> torch.Tensor:
        fno, state, c = self.fno, x[:, :-1], x[:, -1:].flatten(1).mean(dim=1, keepdim=True)
        view = (x.shape[0], fno.n_layers, 2, fno.hidden_channels, *([1] * (x.ndim - 2)))
        modulation = self.film(c).view(view)
        if fno.positional_embedding is not None:
            state = fno.positional_embedding(state)
        h = fno.lifting(state)
        if fno.domain_padding is not None:
            h = fno.domain_padding.pad(h)
        for layer in range(fno.n_layers):
            h = fno.fno_blocks(h, layer) * (1 + modulation[:, layer, 0]) + modulation[:, layer, 1]
        if fno.domain_padding is not None:
            h = fno.domain_padding.unpad(h)
        return fno.projection(h)


def conditioned_nets(settings: AblationSettings, line: SeedLine) -> tuple[dict[str, nn.Module], IncrementDataProcessor]:
    """Both conditioned networks of one seed, trained on pooled support and endpoint data (cached)."""
    config, data, seed = line.config, line.data, line.seed
    channels = data.support.trajectories.shape[2]
    pooled = TrainingSet.pooled([data.support, data.low, data.high])
    processor = IncrementDataProcessor.fit(with_coordinate_channel(pooled.trajectories, pooled.coordinates),
                                           state_channels=channels, noise=config.train.noise)
    budget = sum(int(model.net.provenance["steps"]) for model in (line.anchor, line.low, line.high))

    def fresh(name: str) -> nn.Module:
        if name == "conditioned":
            return build_fno(config, channels + 1, channels, seed, "conditioned")
        return FiLMFNO(build_fno(config, channels, channels, seed, "film"))

    def train() -> dict[str, nn.Module]:
        runs = SeedTrainer(config, seed, settings.device, settings.progress)
        nets = {name: fresh(name) for name in ("conditioned", "film_conditioned")}
        for name, net in nets.items():
            runs.fit(name, net, pooled, processor, budget, config.train.lr, conditioned=True)
        return nets

    folder = settings.folder(config, seed, "strong-baselines")
    return cached_nets(folder, ("conditioned", "film_conditioned"), train, template=fresh), processor


def seed_errors(settings: AblationSettings, line: SeedLine) -> dict[str, dict[str, list[float]]]:
    """Every method's errors on every test split of one seed."""
    nets, processor = conditioned_nets(settings, line)
    ccm, k, table = line.ccm(), line.config.prefix_k, {}
    for split in SPLITS:
        regimes = line.tests(split)
        row = {"anchor": errors(line.anchor, regimes, k),
               "ccm_coord": [e for r in regimes for e in errors(ccm.at(r.c), [r], k)],
               "ccm_prefix": [e for r in regimes for e in prefix_scores(ccm, r.trajectories, line.config, "cpu")[0].rel_l2.tolist()]}
        for name, net in nets.items():
            row[name] = [e for r in regimes for e in errors(Conditioned(ProcessedModel(net, processor), r.c), [r], k)]
        table[split] = row
    return table


def run(settings: AblationSettings) -> AblationOutput:
    family = (settings.families or FAMILIES)[0]
    seeds = [seed_errors(settings, seed_line(settings, settings.config(family), seed)) for seed in settings.seeds]
    splits = {split: {m: summary([s[split][m] for s in seeds]) for m in METHODS} for split in SPLITS}
    ratios = {split: {f"{m}_vs_{b}": ratio_summary([s[split][m] for s in seeds], [s[split][b] for s in seeds])
                      for m in ("ccm_coord", "ccm_prefix") for b in ("conditioned", "film_conditioned")} for split in SPLITS}
    film = {"family": family, "splits": {split: splits[split] for split in SPLITS}, "ratios": ratios}
    results = {"film_conditioned": film,
               "dpot_style": {"status": "not run", "why": "see the README's ablation section"}}
    figures = {"strong_baselines": lambda path: plot_series(
        list(range(len(SPLITS))), {m: [splits[split][m]["mean"] for split in SPLITS] for m in METHODS}, path,
        xlabel="split: " + " / ".join(SPLITS), title=f"{family}: CCM against conditioned FNOs (mean over seeds)")}
    return AblationOutput(results, markdown(family, splits, ratios), figures)


def markdown(family: str, splits: dict[str, Any], ratios: dict[str, Any]) -> str:
    lines = [f"{family}: mean relative L2 [95 % CI over seeds] per split, and the geometric mean of per-trajectory "
             "error ratios of the merge against each conditioned network (below 1: the merge is better).", "",
             "| split | " + " | ".join(METHODS) + " | CCM-Coord / FiLM | CCM-Prefix / FiLM |", "|---" * (len(METHODS) + 3) + "|"]
    for split in SPLITS:
        cells = " | ".join(interval(splits[split][m]) for m in METHODS)
        lines.append(f"| {split} | {cells} | {interval(ratios[split]['ccm_coord_vs_film_conditioned'], 3)} | "
                     f"{interval(ratios[split]['ccm_prefix_vs_film_conditioned'], 3)} |")
    return "\n".join(lines)
