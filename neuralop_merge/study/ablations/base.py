"""What every ablation shares: the study's models of a seed (cached on disk), scores and outputs.

An ablation runs on the committed study's own set-up (:func:`~..config.get_config` at the "small"
scale by default): the same data of each seed, the same recipe and budget rule, so the anchor and
the endpoint experts of seed ``s`` are the ones the study trained for seed ``s``. Training them is
most of an ablation's cost, so :func:`seed_line` keeps them (and the simulated data) in a cache
folder that every ablation reads: running all of them trains each seed's models once.

Every ablation scores rollouts the way the study does (future frames ``k+1..T`` only, relative
L2) and summarizes over seeds with the study's clustered bootstrap.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ...atomic import write_text
from ...ccm import CCM
from ...diagnostics import json_safe
from ...io import load_model, save_model
from ...training.processing import IncrementDataProcessor, ProcessedModel
from ..config import ENDPOINTS, EXPERTS, StudyConfig, get_config, seeds_give_interval
from ..data import Regime, StudyData, generate_data
from ..evaluation import ERROR_CAP, count_failures, log_error, merge_line, persistence, prefix_scores, score, score_prediction
from ..markdown import diverged_models
from ..models import SeedTrainer, build_fno
from ..pipeline import config_digest, log_with_prefix
from ..report import IN_DISTRIBUTION_SPLITS, beats_anchor, competence_checks, divergence_verdict
from ..report import summary as seed_summary
from ..side_by_side import spawn_pool
from ..stats import geometric_mean_ratio

Log = Callable[[str], None]
#: Builds an untrained network: ``(config, in_channels, out_channels, seed, name) -> module``.
Network = Callable[[StudyConfig, int, int, int, str], nn.Module]
#: Draws one figure at the given path and returns it.
Draw = Callable[[Path], Path]
#: The models of a seed's merge line, in the order they are trained.
LINE_MODELS = ("anchor", *EXPERTS)
T = TypeVar("T")


@dataclass(frozen=True)
class AblationSettings:
    """Where and how an ablation runs.

    ``overrides`` replace study settings by name (as ``--set`` does for the study), ``cache`` is
    the folder of trained models and simulated data (None: train everything afresh), ``jobs`` how
    many seeds :meth:`map_seeds` runs at once.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    families: tuple[str, ...] | None = None
    scale: str = "small"
    overrides: dict[str, Any] = field(default_factory=dict)
    cache: Path | None = None
    device: str = "cpu"
    progress: bool = False
    log: Log = print
    jobs: int = 1

    def config(self, family: str, **overrides: Any) -> StudyConfig:
        """The study configuration of ``family`` with the settings' and then ``overrides`` applied."""
        return get_config(family, self.scale).with_overrides(**{**self.overrides, **overrides})

    def folder(self, config: StudyConfig, seed: int, part: str) -> Path | None:
        """The cache folder of ``part`` (models, data) of one seed of one configuration."""
        if self.cache is None:
            return None
        return Path(self.cache) / f"{config.family}-{config_digest(config)}-seed{seed}" / part

    def map_seeds(self, per_seed: Callable[..., T], *args: Any) -> list[T]:
        """``per_seed(settings, *args, seed)`` for every seed, in the seeds' order: an ablation's per-seed step.

        With ``jobs > 1`` the seeds run in up to that many spawned worker processes, each with this
        process's torch thread count and its log lines tagged with its seed, and only the results come
        back: ``per_seed`` and ``args`` must pickle (module-level functions, partials of them). The
        results are those of a run in this process (training and scoring are deterministic per seed).
        """
        if self.jobs == 1 or len(self.seeds) == 1:
            return [per_seed(self, *args, seed) for seed in self.seeds]
        workers = min(self.jobs, len(self.seeds))
        self.log(f"  seeds {list(self.seeds)} in {workers} worker processes")
        with spawn_pool(workers) as pool:
            futures = [pool.submit(seed_in_worker, per_seed, self.for_seed(seed), args, seed, torch.get_num_threads())
                       for seed in self.seeds]
            return [future.result() for future in futures]

    def map_lines(self, score: Callable[..., T], config: StudyConfig, *, with_settings: bool = False) -> list[T]:
        """:meth:`map_seeds` of ``score(line)`` on each seed's merge line under ``config`` (:func:`seed_line`).

        ``with_settings`` calls ``score(settings, line)`` instead, for a score that trains or simulates
        more (into the settings' cache, on their device).
        """
        return self.map_seeds(functools.partial(score_line, score, with_settings), config)

    def for_seed(self, seed: int) -> AblationSettings:
        """These settings in a worker that runs ``seed`` alone: log lines tagged with the seed, no nested workers."""
        return replace(self, jobs=1, log=functools.partial(log_with_prefix, f"[seed {seed}]"))


def seed_in_worker(per_seed: Callable[..., T], settings: AblationSettings, args: tuple, seed: int, threads: int) -> T:
    """One seed's step of :meth:`AblationSettings.map_seeds` in a worker process, with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    return per_seed(settings, *args, seed)


def score_line(score: Callable[..., T], with_settings: bool, settings: AblationSettings, config: StudyConfig, seed: int) -> T:
    """``score`` of the merge line of ``seed`` under ``config`` (see :meth:`AblationSettings.map_lines`)."""
    line = seed_line(settings, config, seed)
    return score(settings, line) if with_settings else score(line)


@dataclass
class SeedLine:
    """One seed's data and merge line: anchor and endpoint experts in physical units."""

    config: StudyConfig
    seed: int
    data: StudyData
    anchor: ProcessedModel
    low: ProcessedModel
    high: ProcessedModel

    @classmethod
    def from_nets(cls, config: StudyConfig, seed: int, data: StudyData, nets: Mapping[str, nn.Module],
                  processor: IncrementDataProcessor) -> SeedLine:
        """The line whose anchor and experts are the networks ``nets`` (by :data:`LINE_MODELS` name) behind ``processor``."""
        models = {name: ProcessedModel(nets[name], processor) for name in LINE_MODELS}
        return cls(config, seed, data, models["anchor"], models["low"], models["high"])

    def with_nets(self, nets: Mapping[str, nn.Module]) -> SeedLine:
        """This line's set-up and data (and the anchor's processor) with the networks ``nets`` instead."""
        return SeedLine.from_nets(self.config, self.seed, self.data, nets, self.anchor.processor)

    def models(self) -> dict[str, ProcessedModel]:
        """The line's anchor and experts by name ("anchor", "low", "high")."""
        return {"anchor": self.anchor, "low": self.low, "high": self.high}

    def steps(self) -> dict[str, int]:
        """Optimizer steps of each network, as its provenance records them (-1 where it does not)."""
        return {name: int(getattr(model.net, "provenance", {}).get("steps", -1)) for name, model in self.models().items()}

    def ccm(self) -> CCM:
        """The merge line θ(α) of this seed, reading coordinates on the study's axis."""
        return merge_line(self.config.regimes, self.anchor, self.low, self.high)

    def tests(self, split: str) -> list:
        """The test regimes of ``split`` ("support", "id", "interp" or "ood")."""
        return self.data.test[split]


def cached_nets(folder: Path | None, names: Sequence[str], train: Callable[[], dict[str, nn.Module]], *,
                template: Callable[[str], nn.Module] | None = None) -> dict[str, nn.Module]:
    """The networks ``names`` from ``folder`` when all are there, else ``train()``'s, saved there.

    Checkpoints go through the package's safe writer and loader, so a cache folder is read with
    ``weights_only`` loads and a half-written one is refused rather than used. ``template(name)``
    builds the module to load into, for classes a checkpoint cannot rebuild by itself.
    """
    if folder is not None and all((folder / f"{name}_provenance.json").exists() for name in names):
        return {name: load_model(folder, name=name, template=template(name) if template else None) for name in names}
    nets = train()
    if folder is not None:
        for name in names:
            save_model(nets[name], folder, name=name, overwrite=True)
    return nets


def scaled_caps(config: StudyConfig, *, anchor: float = 1.0, experts: float = 1.0) -> StudyConfig:
    """``config`` with the anchor's and the experts' step caps scaled by these factors.

    The validation stopping rule, where the scale has one, still ends a run early; its patience scales
    with the cap.
    """
    return config.with_overrides(anchor_max_steps=round(config.train.anchor_max_steps * anchor),
                                 expert_max_steps=round(config.train.expert_max_steps * experts))


def load_data(settings: AblationSettings, config: StudyConfig, seed: int) -> StudyData:
    folder = settings.folder(config, seed, "data")
    return generate_data(config, seed, device=settings.device, progress=settings.progress, cache_dir=folder)


def train_line(config: StudyConfig, seed: int, data: StudyData, processor: IncrementDataProcessor, *,
               settings: AblationSettings, anchor: nn.Module | None = None, optimizer: str = "adamw",
               anchor_seed: int | None = None, network: Network = build_fno, pushforward: int = 0,
               replay_share: float | None = None) -> dict[str, nn.Module]:
    """Anchor (unless given) and endpoint experts of one seed, trained by the study's recipe.

    ``anchor_seed`` draws the anchor's initialization and batch order from another seed while
    the data stay those of ``seed``; ``optimizer`` changes the experts' optimizer; ``network``
    builds the anchor's untrained network (the study's FNO by default); ``pushforward`` trains
    the anchor (when trained here) and the experts on up to that many of their own steps;
    ``replay_share`` draws that share of the experts' training pairs from the support data (None: the
    configuration's ``expert_replay``).
    """
    runs = SeedTrainer(config, seed, settings.device, settings.progress, optimizer=optimizer, pushforward=pushforward)
    if anchor is None:
        origin = seed if anchor_seed is None else anchor_seed
        channels = data.support.trajectories.shape[2]
        net = network(config, channels, channels, origin, "anchor")
        anchor_runs = SeedTrainer(config, origin, settings.device, settings.progress, pushforward=pushforward)
        anchor = anchor_runs.fit("anchor", net, data.support, processor, config.train.anchor_max_steps, config.train.lr).net
    experts = runs.finetune(ProcessedModel(anchor, processor), data, replay_share=replay_share)
    return {"anchor": anchor, "low": experts["low"].net, "high": experts["high"].net}


def seed_line(settings: AblationSettings, config: StudyConfig, seed: int, *, network: Network | None = None,
              part: str = "line") -> SeedLine:
    """The study's data and merge line of ``seed`` under ``config`` (trained once, then cached in ``part``).

    ``network`` replaces the study's FNO (then give the line its own ``part``).
    """
    data = load_data(settings, config, seed)
    processor = IncrementDataProcessor.fit(data.support.trajectories, noise=config.train.noise)
    settings.log(f"  {config.family} seed {seed}: merge line ({part})")
    build = network or build_fno
    channels = data.support.trajectories.shape[2]
    nets = cached_nets(settings.folder(config, seed, part), LINE_MODELS,
                       lambda: train_line(config, seed, data, processor, settings=settings, network=build),
                       template=None if network is None else lambda name: network(config, channels, channels, seed, name))
    return SeedLine.from_nets(config, seed, data, nets, processor)


def errors(model: nn.Module, regimes: Sequence, k: int, device: str = "cpu") -> list[float]:
    """Future-frame relative L2 of ``model`` on every trajectory of ``regimes``."""
    return [value for regime in regimes for value in score(model, regime.trajectories, k, device).rel_l2.tolist()]


def per_regime(model_for: Callable[[Regime], nn.Module], regimes: Sequence[Regime], k: int) -> list[float]:
    """Errors of the model ``model_for(regime)`` on each regime's trajectories, regime after regime."""
    return [value for regime in regimes for value in errors(model_for(regime), [regime], k)]


def prefix_errors(ccm: CCM, regimes: Sequence[Regime], config: StudyConfig, device: str = "cpu") -> list[float]:
    """CCM-Prefix's future-frame errors (α from each trajectory's own prefix) on every trajectory of ``regimes``."""
    return [value for regime in regimes for value in prefix_scores(ccm, regime.trajectories, config, device)[0].rel_l2.tolist()]


def endpoint_errors(line: SeedLine, models: Mapping[str, ProcessedModel]) -> dict[str, dict[str, list[float]]]:
    """Each expert's and its anchor's errors at the expert's own endpoint (the ID test trajectories).

    The study's competence rule asks each expert to beat its anchor there; an expert that does not
    adds no physics on its side, whatever its direction's cosine.
    """
    at = {regime.c: [regime] for regime in line.tests("id")}
    k = line.config.prefix_k
    return {side: {"expert": errors(models[side], at[c], k), "anchor": errors(models["anchor"], at[c], k)}
            for side, c in ENDPOINTS}


def persistence_errors(regimes: Sequence[Regime], k: int) -> list[float]:
    """Future-frame relative L2 of repeating each trajectory's last observed frame (frame ``k``)."""
    return [value for regime in regimes
            for value in score_prediction(persistence(regime.trajectories, k), regime.trajectories, k).rel_l2.tolist()]


def in_distribution_errors(line: SeedLine) -> dict[str, dict[float, list[float]]]:
    """Each model's errors on each support, endpoint and interpolation regime, keyed by the regime's coordinate.

    The models an ablation merges and scores: the anchor, both experts at every one of these regimes
    (whichever endpoint is theirs), the identity CCM-Coord at each regime's coordinate and CCM-Prefix.
    """
    ccm, k = line.ccm(), line.config.prefix_k
    regimes = [regime for split in IN_DISTRIBUTION_SPLITS for regime in line.tests(split)]
    found = {name: {regime.c: errors(model, [regime], k) for regime in regimes} for name, model in line.models().items()}
    found["ccm_coord"] = {regime.c: errors(ccm.at(regime.c), [regime], k) for regime in regimes}
    found["ccm_prefix"] = {regime.c: prefix_errors(ccm, [regime], line.config) for regime in regimes}
    return found


def in_distribution_failures(found: Mapping[str, Mapping[float, list[float]]]) -> dict[str, int]:
    """The study's no-divergence rule on :func:`in_distribution_errors`: each model's diverged trajectories
    (failures by :func:`~..evaluation.count_failures`)."""
    return {name: count_failures(value for values in by_regime.values() for value in values) for name, by_regime in found.items()}


def competence_errors(line: SeedLine) -> dict[str, Any]:
    """One seed's errors behind the study's competence rule: the anchor on its support, each expert
    at its own endpoint (with the anchor there), persistence on both, and each model's diverged
    in-distribution trajectories, all read from one rollout of each model per regime."""
    k, found = line.config.prefix_k, in_distribution_errors(line)
    endpoints = {side: {"expert": found[side][c], "anchor": found["anchor"][c]} for side, c in ENDPOINTS}
    return {"anchor_support": [value for regime in line.tests("support") for value in found["anchor"][regime.c]],
            "low_at_low": endpoints["low"]["expert"], "high_at_high": endpoints["high"]["expert"],
            "persistence_id": persistence_errors(line.tests("id"), k),
            "persistence_support": persistence_errors(line.tests("support"), k), "endpoints": endpoints,
            "diverged": in_distribution_failures(found)}


def competence(seeds: Sequence[Mapping[str, Any]], family: str) -> dict[str, Any]:
    """The study's competence verdicts (the keys of its ``results.json``) from :func:`competence_errors` of each seed."""
    values = {key: float(np.mean(np.concatenate([seed[key] for seed in seeds])))
              for key in ("anchor_support", "low_at_low", "high_at_high", "persistence_id", "persistence_support")}
    beats = {side: [beats_anchor(seed["endpoints"][side]["expert"], seed["endpoints"][side]["anchor"]) for seed in seeds]
             for side in EXPERTS}
    diverged = {name: sum(seed["diverged"][name] for seed in seeds) for name in seeds[0]["diverged"]}
    return {**competence_checks(values, beats, family), **divergence_verdict(diverged)}


def diverged_cell(checks: Mapping[str, Any]) -> str:
    """A table cell naming the models that broke the no-divergence rule with their trajectory counts ("none" if none)."""
    return ", ".join(f"{name} {count}" for name, count in diverged_models(checks)) or "none"


def endpoint_gain(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per side, expert / anchor at the expert's endpoint: geometric mean of per-trajectory ratios, seed-clustered CI."""
    return {side: ratio_summary([s[side]["expert"] for s in seeds], [s[side]["anchor"] for s in seeds])
            for side in EXPERTS}


def summary(per_seed: Sequence[Sequence[float]]) -> dict[str, Any]:
    """The study's summary of errors grouped by seed (mean, seed-clustered 95 % CI), and the failure count.

    A failure is a non-finite error or one above :data:`~..evaluation.FAILURE_ERROR` (the study's
    rule); errors enter the mean capped at :data:`~..evaluation.ERROR_CAP`, as in the study, so that
    one exploding rollout cannot hide behind ``nan``.
    """
    arrays = [np.asarray(seed, dtype=float) for seed in per_seed]
    capped = [np.where(np.isfinite(a), np.minimum(a, ERROR_CAP), ERROR_CAP) for a in arrays]
    return {**seed_summary(capped), "failures": sum(count_failures(seed) for seed in per_seed)}


def ratio_summary(method: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Geometric mean of per-trajectory error ratios ``method / baseline`` with its seed-clustered CI."""
    logs = [(log_error(torch.tensor(m, dtype=torch.float64)) - log_error(torch.tensor(b, dtype=torch.float64))).tolist()
            for m, b in zip(method, baseline)]
    return geometric_mean_ratio(logs)


def reduction(method: dict[str, Any], baseline: dict[str, Any]) -> float:
    """Reduction of the mean error against a baseline, in percent."""
    return 100.0 * (1.0 - method["mean"] / baseline["mean"])


@dataclass
class AblationOutput:
    """What an ablation's run returns: results.json's content and results.md's body.

    Its figures come from the module's ``figures(results)``, drawn from what results.json holds.
    """

    results: dict[str, Any]
    markdown: str


def write_outputs(out: Path, name: str, output: AblationOutput, figures: Callable[[Mapping[str, Any]], Mapping[str, Draw]], *,
                  command: str, seeds: Sequence[int], scale: str = "small") -> None:
    """``results.json``, ``results.md`` (the command on top) and the figures, in ``out``.

    ``figures`` draws from the payload written to results.json, exactly as ``--redraw`` later does.
    """
    out.mkdir(parents=True, exist_ok=True)
    payload = json_safe({"ablation": name, "command": command, "seeds": list(seeds), "scale": scale, **output.results})
    write_text(out / "results.json", json.dumps(payload, indent=2, allow_nan=False) + "\n", overwrite=True)
    drawn = draw_figures(out, figures(payload))
    lines = [f"# Ablation: {name}", "", "Produced by:", "", "```", command, "```", ""]
    if not seeds_give_interval(len(seeds)):
        lines += ["One seed: the tables show means without intervals (a seed-clustered interval needs several seeds).", ""]
    lines += [output.markdown.rstrip(), ""]
    lines += [f"![{figure}]({figure})" for figure in drawn]
    write_text(out / "results.md", "\n".join(lines) + "\n", overwrite=True)


def draw_figures(out: Path, figures: Mapping[str, Draw]) -> list[str]:
    """Draw each figure to ``out/<name>.png``; the file names, in order."""
    return [draw(out / f"{name}.png").name for name, draw in figures.items()]


def interval(cell: dict[str, Any], digits: int = 4) -> str:
    """``mean [lo, hi]`` of a summary or ratio cell; the mean alone where the interval is a point (one seed)."""
    value = cell.get("mean", cell.get("gm_ratio"))
    low, high = cell["ci"]
    if low == high:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


__all__ = [
    "AblationOutput", "AblationSettings", "Draw", "SeedLine", "cached_nets", "competence", "competence_errors", "diverged_cell", "draw_figures", "endpoint_errors", "endpoint_gain", "errors", "in_distribution_errors", "in_distribution_failures", "interval",
    "load_data", "per_regime", "persistence_errors", "prefix_errors", "ratio_summary", "reduction", "score_line", "seed_line", "summary", "train_line", "write_outputs",
]
