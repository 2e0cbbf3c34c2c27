"""What a user would build instead of merging: a parameter-conditioned network trained on all the data.

Two conditioned FNOs see the same trajectories as the anchor and both experts together (support
and endpoint regimes, each trajectory with its coordinate c) and get the optimizer steps the
anchor and both experts took, under the study's recipe and stopping rule:

``conditioned``        the study's baseline: c as a constant extra input channel;
``film_conditioned``   FiLM conditioning (Perez et al., 2018), the physics-aware conditioning of
                       PDE foundation models: an MLP of c scales and shifts the hidden channels
                       after every Fourier layer (initialized to the identity).

They are compared with the merge line of the same seed: the identity CCM-Coord and CCM-Prefix.

``dpot_style`` puts a DPOT-style backbone (:class:`~neuralop_merge.backbones.DPOTLite`: patch
embedding, AFNO mixing, patch decoding) in place of the FNO: anchor and experts trained by the
same recipe on the same data, then the anchor, the plain average and the merge line on every
split (the CCM study's DPOT experiment reports base 0.0447, average 0.0391, CCM 0.0183).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from neuralop.models import FNO
from torch import nn

from ...backbones import DPOTLite
from ...merging import merge
from ...plots import plot_series
from ...training.processing import IncrementDataProcessor, ProcessedModel
from ...training.seeding import derive_seed
from ..config import SPLITS, StudyConfig
from ..markdown import table_lines
from ..models import Conditioned, SeedTrainer, build_fno, conditioned_data
from .base import (AblationOutput, AblationSettings, Draw, SeedLine, cached_nets, errors, interval, per_regime, prefix_errors,
                   ratio_summary, seed_line, summary)

NAME = "strong_baselines"
FAMILIES = ("dam_break",)
METHODS = ("anchor", "ccm_coord", "ccm_prefix", "conditioned", "film_conditioned")
DPOT_METHODS = ("anchor", "average", "ccm_coord", "ccm_prefix")
#: DPOT-style backbone: token width, patch side and Fourier modes over the patch grid.
DPOT_SHAPE = {"embed_dim": 32, "patch_size": 4, "modes": 4}


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
    pooled, processor = conditioned_data(data, config.train.noise)
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


def line_errors(line: SeedLine, regimes: list) -> dict[str, list[float]]:
    """The anchor's and the merge line's (identity CCM-Coord, CCM-Prefix) errors on ``regimes``."""
    ccm, k = line.ccm(), line.config.prefix_k
    return {"anchor": errors(line.anchor, regimes, k), "ccm_coord": per_regime(lambda r: ccm.at(r.c), regimes, k),
            "ccm_prefix": prefix_errors(ccm, regimes, line.config)}


def seed_errors(settings: AblationSettings, line: SeedLine) -> dict[str, dict[str, list[float]]]:
    """Every method's errors on every test split of one seed."""
    nets, processor = conditioned_nets(settings, line)
    table = {}
    for split in SPLITS:
        regimes = line.tests(split)
        row = line_errors(line, regimes)
        for name, net in nets.items():
            model = ProcessedModel(net, processor)
            row[name] = per_regime(lambda r: Conditioned(model, r.c), regimes, line.config.prefix_k)
        table[split] = row
    return table


def build_dpot(config: StudyConfig, in_channels: int, out_channels: int, seed: int, name: str) -> DPOTLite:
    """A freshly initialised DPOT-style network with the FNO's depth, its weights a function of ``(seed, name)``."""
    torch.manual_seed(derive_seed(seed, "init", name))
    return DPOTLite(in_channels, out_channels, n_layers=config.model.n_layers, residual=False, **DPOT_SHAPE)


def dpot_errors(settings: AblationSettings, family: str, seed: int) -> dict[str, dict[str, list[float]]]:
    """Anchor, average and merge line of the DPOT-style backbone on every test split of one seed."""
    line = seed_line(settings, settings.config(family), seed, network=build_dpot, part="line-dpot")
    average = merge("average", experts=[line.low, line.high])
    table = {}
    for split in SPLITS:
        row = line_errors(line, line.tests(split))
        row["average"] = errors(average, line.tests(split), line.config.prefix_k)
        table[split] = row
    return table


def summaries(seeds: list[dict[str, dict[str, list[float]]]], methods: tuple[str, ...]) -> dict[str, Any]:
    return {split: {m: summary([s[split][m] for s in seeds]) for m in methods} for split in SPLITS}


def run(settings: AblationSettings) -> AblationOutput:
    family = (settings.families or FAMILIES)[0]
    seeds = settings.map_lines(seed_errors, settings.config(family), with_settings=True)
    ratios = {split: {f"{m}_vs_{b}": ratio_summary([s[split][m] for s in seeds], [s[split][b] for s in seeds])
                      for m in ("ccm_coord", "ccm_prefix") for b in ("conditioned", "film_conditioned")} for split in SPLITS}
    dpot = settings.map_seeds(dpot_errors, family)
    dpot_ratios = {split: {f"{m}_vs_anchor": ratio_summary([s[split][m] for s in dpot], [s[split]["anchor"] for s in dpot])
                           for m in DPOT_METHODS[1:]} for split in SPLITS}
    results = {"family": family,
               "film_conditioned": {"splits": summaries(seeds, METHODS), "ratios": ratios},
               "dpot_style": {"shape": DPOT_SHAPE, "splits": summaries(dpot, DPOT_METHODS), "ratios": dpot_ratios}}
    return AblationOutput(results, markdown(results))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """The conditioned FNOs and the DPOT-style line per split, from ``results.json``'s content."""
    return {name: figure(results["family"], results[name]["splits"], methods, title) for name, methods, title in (
        ("film_conditioned", METHODS, "CCM against conditioned FNOs"),
        ("dpot_style", DPOT_METHODS, "a DPOT-style backbone merged"))}


def figure(family: str, splits: dict[str, Any], methods: tuple[str, ...], title: str):
    def draw(path):
        return plot_series(SPLITS, {m: [splits[split][m]["mean"] for split in SPLITS] for m in methods},
                           path, xlabel="split", title=f"{family}: {title} (mean over seeds)")
    return draw


def markdown(results: dict[str, Any]) -> str:
    film, dpot = results["film_conditioned"], results["dpot_style"]
    return "\n".join([
        f"{results['family']}: mean relative L2 [95 % CI over seeds] per split, and geometric means of "
        "per-trajectory error ratios (below 1: the first method is better).", "",
        "## Conditioned FNOs", "", *split_table(film, METHODS, "film_conditioned", "FiLM"), "",
        f"## DPOT-style backbone ({dpot['shape']})", "", *split_table(dpot, DPOT_METHODS, "anchor", "anchor"),
    ])


def split_table(part: dict[str, Any], methods: tuple[str, ...], baseline: str, label: str) -> list[str]:
    """One part's table: each method's mean per split, then CCM-Coord's and CCM-Prefix's ratios to ``baseline``.

    Parameters
    ----------
    part
        The part's results (``splits`` and ``ratios``, as :func:`run` stores them).
    methods
        The methods whose means fill the first columns.
    baseline, label
        The ratios' baseline, as keyed in ``ratios`` and as named in the header.

    Returns
    -------
    list[str]
        The table's lines.
    """
    columns = ["split", *methods, f"CCM-Coord / {label}", f"CCM-Prefix / {label}"]
    rows = [[split, *(interval(part["splits"][split][m]) for m in methods),
             *(interval(part["ratios"][split][f"{m}_vs_{baseline}"], 3) for m in ("ccm_coord", "ccm_prefix"))]
            for split in SPLITS]
    return table_lines(columns, rows)
