"""From the per-seed records to ``results.json``, ``results.md`` and the figures.

Every statistic is computed from :class:`~.records.SeedRecord` objects alone, so running the same
command again redraws the report from the saved records without training anything.

Conventions
-----------
* Errors are the future-frame relative L2 of each trajectory. A rollout whose error is non-finite
  or above :data:`~.evaluation.FAILURE_ERROR` is a *failure*, counted per method and split; in
  means and ratios a non-finite error enters as :data:`~.evaluation.ERROR_CAP`.
* ``ccm`` is the CCM variant with the best validation score summed over seeds (pre-registered in
  :mod:`.evaluation`); nothing about it is chosen on a test regime.
* Means come with 95 % clustered-bootstrap intervals over seeds; ratios are geometric means of
  per-trajectory error ratios; the paired p-value is a Wilcoxon test over (seed, regime) cells.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text
from ..diagnostics import coordinate_law, json_safe
from .config import COMPETENCE_TARGET, COMPETENCE_VS_PERSISTENCE, ENDPOINTS, EXPERTS, PUBLISHED_OOD_REDUCTION, SPLITS, StudyConfig
from .evaluation import ERROR_CAP, count_failures, select_variant
from .records import CCM_VARIANTS, METHODS, MethodScores, RegimeRecord, SeedRecord
from .stats import cluster_bootstrap_mean, geometric_mean_ratio, paired_cell_test

#: Every row of the tables: the recorded methods with the selected ``ccm`` before its variants.
ROWS: tuple[str, ...] = METHODS[: METHODS.index("ccm_coord")] + ("ccm",) + METHODS[METHODS.index("ccm_coord") :]
BASELINES: tuple[str, ...] = ("anchor", "average", "fixed_alpha", "conditioned", "anchor_extra", "persistence")
PAIRED_VARIANTS: tuple[str, ...] = ("ccm", *CCM_VARIANTS)
#: The models the no-divergence rule covers (the study's own, not the baselines), and the splits it reads.
DIVERGENCE_RULE_MODELS: tuple[str, ...] = ("anchor", *EXPERTS, *PAIRED_VARIANTS)
IN_DISTRIBUTION_SPLITS: tuple[str, ...] = ("support", "id", "interp")


class Study:
    """The records of one study with the selected CCM variant, and ways to read errors out of them."""

    def __init__(self, records: list[SeedRecord]) -> None:
        if not records:
            raise ValueError("no seed records to report")
        self.records = records
        self.selected = select_variant([record.selection.variant_scores for record in records])

    def scores(self, regime: RegimeRecord, method: str) -> MethodScores:
        return regime.methods[self.selected if method == "ccm" else method]

    def regimes(self, record: SeedRecord, split: str, c: float | None = None) -> list[RegimeRecord]:
        return [r for r in record.regimes if r.split == split and (c is None or r.c == c)]

    def errors(self, record: SeedRecord, split: str, method: str, *, c: float | None = None,
               metric: str = "rel_l2") -> np.ndarray:
        """Per-trajectory errors of one seed on a split (or one regime of it), non-finite ones capped."""
        values = [v for r in self.regimes(record, split, c) for v in getattr(self.scores(r, method), metric)]
        array = np.asarray(values, dtype=float)
        return np.where(np.isfinite(array), np.minimum(array, ERROR_CAP), ERROR_CAP)

    def per_seed(self, split: str, method: str, **kwargs: Any) -> list[np.ndarray]:
        return [self.errors(record, split, method, **kwargs) for record in self.records]

    def coordinates(self, split: str) -> list[float]:
        return sorted({r.c for r in self.records[0].regimes if r.split == split})


def summary(per_seed: list[np.ndarray]) -> dict[str, Any]:
    """Mean over all trajectories, std of the seed means, the seed means, and the clustered CI."""
    means = [float(values.mean()) for values in per_seed]
    boot = cluster_bootstrap_mean(per_seed)
    std = float(np.std(means, ddof=1)) if len(means) > 1 else None
    return {"mean": boot["mean"], "std": std, "per_seed": means, "ci": boot["ci"]}


def split_table(study: Study, metric: str) -> dict[str, dict[str, Any]]:
    return {split: {m: summary(study.per_seed(split, m, metric=metric)) for m in ROWS} for split in SPLITS}


def ood_by_regime(study: Study) -> dict[str, dict[str, Any]]:
    """Per OOD side: every method's mean with its CI, and its reduction of the anchor's mean."""
    table = {}
    for c in study.coordinates("ood"):
        rows = {m: summary(study.per_seed("ood", m, c=c)) for m in ROWS}
        anchor = rows["anchor"]["mean"]
        for row in rows.values():
            row["reduction_vs_anchor"] = 100.0 * (1.0 - row["mean"] / anchor)
        table[f"{c:g}"] = rows
    return table


def paired_ratio(study: Study, variant: str, baseline: str, split: str, c: float | None = None) -> dict[str, Any]:
    """Geometric-mean error ratio variant/baseline with its clustered CI, and the cell-level p-value."""
    logs, cells = [], []
    for record in study.records:
        per_regime = [
            np.log(study.errors(record, split, variant, c=r.c)) - np.log(study.errors(record, split, baseline, c=r.c))
            for r in study.regimes(record, split, c)
        ]
        logs.append(np.concatenate(per_regime))
        cells += [float(ratios.mean()) for ratios in per_regime]
    return {"split": split, **geometric_mean_ratio(logs), "p": paired_cell_test(cells), "n_cells": len(cells)}


def paired_tables(study: Study) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Every CCM variant against every baseline, over the OOD split and per OOD side."""
    pooled, by_side = {}, {}
    for variant in PAIRED_VARIANTS:
        for baseline in BASELINES:
            pooled[f"{variant}_vs_{baseline}"] = paired_ratio(study, variant, baseline, "ood")
    for c in study.coordinates("ood"):
        by_side[f"{c:g}"] = {
            f"{variant}_vs_{baseline}": paired_ratio(study, variant, baseline, "ood", c)
            for variant in PAIRED_VARIANTS for baseline in BASELINES
        }
    return pooled, by_side


def failures(study: Study) -> dict[str, dict[str, int]]:
    """Trajectories with a non-finite error or one above FAILURE_ERROR, per method and split."""
    counts: dict[str, dict[str, int]] = {}
    for method in ROWS:
        counts[method] = {}
        for split in SPLITS:
            counts[method][split] = count_failures(
                v for record in study.records for r in study.regimes(record, split) for v in study.scores(r, method).rel_l2)
    return counts


def competence(study: Study, family: str, failure_counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Are the merged models competent? The anchor on its support, each expert at its own endpoint.

    ``failure_counts`` (from :func:`failures`) add the rule that no anchor, expert or CCM model diverges
    on a support, endpoint or interpolation trajectory, whichever endpoint it is.
    """
    def mean(split: str, method: str, c: float | None = None) -> float:
        return float(np.mean(np.concatenate(study.per_seed(split, method, c=c))))

    values = {
        "anchor_support": mean("support", "anchor"),
        "low_at_low": mean("id", "low", -1.0),
        "high_at_high": mean("id", "high", 1.0),
        "persistence_id": mean("id", "persistence"),
        "persistence_support": mean("support", "persistence"),
    }
    beats = {
        name: [beats_anchor(study.errors(r, "id", name, c=c), study.errors(r, "id", "anchor", c=c)) for r in study.records]
        for name, c in ENDPOINTS
    }
    diverged = {m: sum(failure_counts[m][s] for s in IN_DISTRIBUTION_SPLITS) for m in DIVERGENCE_RULE_MODELS}
    return {**competence_checks(values, beats, family), **divergence_verdict(diverged)}


def divergence_verdict(diverged: dict[str, int]) -> dict[str, Any]:
    """The no-divergence rule's keys of ``competence`` from each model's count of diverged in-distribution trajectories."""
    return {"diverged_in_distribution": diverged, "no_divergence_in_distribution": not any(diverged.values())}


def beats_anchor(expert: Any, anchor: Any) -> bool:
    """Does an expert beat the anchor on the same trajectories? (geometric mean of per-trajectory ratios below 1)"""
    return bool(np.mean(np.log(expert) - np.log(anchor)) < 0)


def competence_checks(values: dict[str, float], beats: dict[str, list[bool]], family: str) -> dict[str, Any]:
    """The study's competence verdicts on the mean errors ``values`` (keys as in ``results.json``).

    ``beats[side]`` says, per seed, whether that side's expert beat the anchor at its own endpoint
    (:func:`beats_anchor`).
    """
    target = COMPETENCE_TARGET[family]
    checks = {
        "target": target,
        "meets_target": all(values[k] <= target for k in ("anchor_support", "low_at_low", "high_at_high")),
        "within_persistence_fraction": all(
            values[k] <= COMPETENCE_VS_PERSISTENCE * values[p]
            for k, p in (("anchor_support", "persistence_support"), ("low_at_low", "persistence_id"), ("high_at_high", "persistence_id"))
        ),
        "expert_beats_anchor_at_own_endpoint": beats,
    }
    return {**values, **checks}


def edge_hits(study: Study, alpha_range: tuple[float, float]) -> dict[str, int]:
    """How often the oracle (per regime) or CCM-Prefix (per trajectory) chose an end of the α range."""
    ends = set(alpha_range)
    oracle = sum(1 for record in study.records for r in record.regimes if r.methods["oracle"].alpha in ends)
    prefix = sum(1 for record in study.records for r in record.regimes for a in r.methods["ccm_prefix"].alpha if a in ends)
    return {"oracle_regimes": oracle, "ccm_prefix_trajectories": prefix}


#: The methods that deploy one model θ(α) of the merge line for a whole regime: those at a fixed α,
#: and those that record their own (one float).
FIXED_LINE_ALPHAS: dict[str, float] = {"low": -1.0, "average": 0.0, "high": 1.0}
RECORDED_LINE_ALPHAS: tuple[str, ...] = ("fixed_alpha", "ccm_coord", "ccm_coord_calibrated", "oracle", "wrong_sign")
#: How far (relative) CCM-Prefix's own prefix error may sit above a single α's before it counts as a
#: search miss: well above the records' 5-digit rounding and batched-rollout noise.
SEARCH_MISS_TOLERANCE = 0.01


def prefix_mean(curve: list[float], k: int) -> float:
    """Mean relative L2 over the observed frames ``1..k`` of a per-frame curve."""
    return float(np.mean(curve[1 : k + 1]))


def line_prefix_errors(record: SeedRecord, regime: RegimeRecord, k: int) -> dict[float, float]:
    """Mean prefix error of single models θ(α) on one regime, by α.

    The regime's prefix curve gives every grid α; a record older than it gives the recorded methods
    that deploy one θ(α): the experts (α = ∓1), the average (0) and the α-valued methods.
    """
    if regime.prefix_curve:
        line = dict(zip(record.alphas, regime.prefix_curve))
    else:
        alphas = {**FIXED_LINE_ALPHAS, **{name: regime.methods[name].alpha for name in RECORDED_LINE_ALPHAS}}
        line = {alpha: prefix_mean(regime.methods[name].curve, k) for name, alpha in alphas.items()}
    return {alpha: error for alpha, error in line.items() if math.isfinite(error)}


def prefix_row(record: SeedRecord, regime: RegimeRecord, k: int) -> dict[str, Any]:
    """Where the prefix error is lowest along θ(α), where the future error is, and whether the search found it.

    Per trajectory, the grid's argmin of the prefix error is at most the prefix error of any single α,
    so CCM-Prefix's mean prefix error above a single α's (beyond :data:`SEARCH_MISS_TOLERANCE`) shows
    that its search stopped short of the minimum of its own criterion on some trajectories.
    """
    line = line_prefix_errors(record, regime, k)
    lowest = min(line, key=line.__getitem__)
    chosen = prefix_mean(regime.methods["ccm_prefix"].curve, k)
    return {
        "seed": record.seed,
        "lowest_prefix_alpha": lowest,
        "lowest_prefix_error": line[lowest],
        "oracle_alpha": regime.methods["oracle"].alpha,
        "oracle_prefix_error": prefix_mean(regime.methods["oracle"].curve, k),
        "ccm_prefix_mean_alpha": float(np.mean(regime.methods["ccm_prefix"].alpha)),
        "ccm_prefix_prefix_error": chosen,
        "search_missed": bool(chosen > line[lowest] * (1 + SEARCH_MISS_TOLERANCE)),
        "line_from": "grid" if regime.prefix_curve else "recorded models",
    }


def prefix_vs_future(study: Study, k: int) -> dict[str, Any]:
    """Per OOD side, :func:`prefix_row` of each seed; with how many point to the oracle's side, and how
    many CCM-Prefix searches missed, over the side and over every test regime."""
    every = [(regime, prefix_row(record, regime, k)) for record in study.records for regime in record.regimes]
    sides = {}
    for c in study.coordinates("ood"):
        rows = [row for regime, row in every if regime.split == "ood" and regime.c == c]
        same = sum(1 for row in rows if np.sign(row["lowest_prefix_alpha"]) == np.sign(row["oracle_alpha"]))
        sides[f"{c:g}"] = {"seeds": rows, "same_side": same, "search_missed": sum(row["search_missed"] for row in rows)}
    return {"ood": sides, "search_missed": sum(row["search_missed"] for _, row in every), "regimes": len(every)}


def law(study: Study) -> dict[str, Any]:
    """The coordinate law over all test regimes and seeds: oracle α against c."""
    points = [(r.c, r.methods["oracle"].alpha) for record in study.records for r in record.regimes]
    fit = coordinate_law([c for c, _ in points], [a for _, a in points])
    return {"points": points, "slope": fit.slope, "intercept": fit.intercept, "pearson_r": fit.r}


def aggregate(config: StudyConfig, records: list[SeedRecord], *, command: str = "", device: str = "cpu") -> dict[str, Any]:
    """results.json's content from the per-seed records."""
    study = Study(records)
    pooled, by_side = paired_tables(study)
    splits = split_table(study, "rel_l2")
    failure_counts = failures(study)
    return {
        "family": config.family, "scale": config.scale, "seeds": [r.seed for r in records], "command": command,
        "selected_ccm": study.selected,
        "splits": splits,
        "vrmse": split_table(study, "vrmse"),
        "competence": competence(study, config.family, failure_counts),
        "ood_by_regime": ood_by_regime(study),
        "paired": pooled,
        "paired_by_regime": by_side,
        "failures": failure_counts,
        "edge_hits": edge_hits(study, config.alpha_range),
        "coordinate_law": law(study),
        "prefix_vs_future": prefix_vs_future(study, config.prefix_k),
        "published_ood_reduction_vs_anchor": PUBLISHED_OOD_REDUCTION.get(config.family),
        "selection": [{"seed": r.seed, **vars(r.selection)} for r in records],
        "steps": [{"seed": r.seed, **r.steps} for r in records],
        "seconds": [{"seed": r.seed, **{k: round(v, 1) for k, v in r.seconds.items()}} for r in records],
        "config": config.to_dict(),
        # The seeds' own devices where their records say (seeds may run apart, on other machines).
        "device": ", ".join(sorted({r.device for r in records if r.device})) or device,
        "platform": platform.platform(),
    }


def write_outputs(config: StudyConfig, records: list[SeedRecord], out: Path, *, command: str = "",
                  device: str = "cpu", figures: bool = True) -> dict[str, Any]:
    """Write results.json, the figures and results.md into ``out``; return the results."""
    from .figures import draw_all
    from .markdown import write_markdown

    results = json_safe(aggregate(config, records, command=command, device=device))
    write_text(out / "results.json", json.dumps(results, indent=1), overwrite=True)
    drawn = draw_all(results, records, out) if figures else []
    write_markdown(results, out / "results.md", [path.name for path in drawn])
    return results


__all__ = ["ROWS", "Study", "aggregate", "write_outputs"]
