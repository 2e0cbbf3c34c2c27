"""What the ablations that refit a seed's merge line share: each refit scored like the reference line.

An ablation of this kind (``pushforward``, ``expert_replay``) names its variants and says how one
refits the reference line (the study's recipe, cached); everything else is here: per variant, the
study's competence checks (anchor on its support, each expert at its own endpoint against the
target and 0.3 × persistence, each expert against its anchor there, no model diverging in
distribution), CCM-Prefix's OOD error with its cut of the reference anchor's error on each side,
and the optimizer steps, in one table and one figure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ...plots import plot_series
from ..config import COMPETENCE_VS_PERSISTENCE
from ..markdown import captioned_table
from .base import (LINE_MODELS, AblationOutput, AblationSettings, Draw, SeedLine, competence, competence_errors, diverged_cell, endpoint_gain,
                   errors, interval, seed_line, summary)
from .direction_stability import by_side, ood_errors, per_ood_side, pooled, side_cuts

#: Refits the reference line under the named variant: ``(settings, line, key) -> line``.
Refit = Callable[[AblationSettings, SeedLine, str], SeedLine]


def line_scores(line: SeedLine) -> dict[str, Any]:
    """Competence errors, OOD errors and optimizer steps of one seed's line."""
    return {"competence": competence_errors(line), "ood": ood_errors(line.ccm(), line), "steps": line.steps()}


def seed_results(settings: AblationSettings, family: str, refit: Refit, keys: Sequence[str], seed: int) -> dict[str, Any]:
    """The reference line's scores and each variant's, and the reference anchor's OOD errors per side, for one seed."""
    line = seed_line(settings, settings.config(family), seed)
    out = {"reference": line_scores(line),
           "anchor_by_side": per_ood_side(lambda regime: errors(line.anchor, [regime], line.config.prefix_k), line)}
    for key in keys:
        settings.log(f"  {family} seed {seed}: {key}")
        out[key] = line_scores(refit(settings, line, key))
    return out


def run_refits(settings: AblationSettings, families: Sequence[str], refit: Refit,
               variants: Mapping[str, NamedTuple]) -> AblationOutput:
    """The ablation's output: each family's runs (:func:`family_results`), its variants' settings and its table."""
    by_family = {family: family_results(settings, family, refit, tuple(variants)) for family in settings.families or families}
    return AblationOutput({"variants": {key: variant._asdict() for key, variant in variants.items()}, "by_family": by_family},
                          markdown(by_family, tuple(variants)))


def run_table(seeds: list[dict[str, Any]], family: str) -> dict[str, Any]:
    """One run's summary over seeds."""
    scores = [seed["competence"] for seed in seeds]
    return {
        "competence": competence(scores, family),
        "anchor_support": summary([s["anchor_support"] for s in scores]),
        "low_at_low": summary([s["low_at_low"] for s in scores]),
        "high_at_high": summary([s["high_at_high"] for s in scores]),
        "expert_vs_anchor": endpoint_gain([s["endpoints"] for s in scores]),
        "prefix_ood": summary([seed["ood"]["prefix"] for seed in seeds]),
        "prefix_ood_by_side": by_side([seed["ood"]["prefix_by_side"] for seed in seeds]),
        "ccm_ood": summary([seed["ood"]["coord"] for seed in seeds]),
        "steps": [seed["steps"] for seed in seeds],
    }


def family_results(settings: AblationSettings, family: str, refit: Refit, keys: Sequence[str]) -> dict[str, Any]:
    """Every run's summary over the seeds of ``settings``, with the reference anchor's OOD errors and persistence's."""
    seeds = settings.map_seeds(seed_results, family, refit, tuple(keys))
    table = {key: run_table([seed[key] for seed in seeds], family) for key in ("reference", *keys)}
    anchor_by_side = [seed["anchor_by_side"] for seed in seeds]
    table["reference_anchor_ood"] = summary([pooled(side) for side in anchor_by_side])
    table["reference_anchor_ood_by_side"] = by_side(anchor_by_side)
    table["persistence_id"] = table["reference"]["competence"]["persistence_id"]  # data only: the same for every run
    return table


def low_expert_figure(results: Mapping[str, Any], title: str) -> Draw:
    """Each run's low expert at its endpoint against 0.3 × persistence, per family, from ``results.json``'s content."""
    runs = ["reference", *results["variants"]]
    by_family = results["by_family"]
    return lambda path: plot_series(
        runs, {f"{family}: low expert at c = −1": [table[run]["low_at_low"]["mean"] for run in runs]
               for family, table in by_family.items()},
        path, bands={f"{family}: low expert at c = −1": tuple([table[run]["low_at_low"]["ci"][i] for run in runs] for i in (0, 1))
                     for family, table in by_family.items()},
        hlines={f"{family}: {COMPETENCE_VS_PERSISTENCE} × persistence": COMPETENCE_VS_PERSISTENCE * table["persistence_id"]
                for family, table in by_family.items()},
        logy=False, joined=False, xlabel="run", title=f"{title} (95 % CI over seeds)")


def markdown(by_family: dict[str, Any], keys: Sequence[str]) -> str:
    caption = ("Each run's anchor on its support and experts at their own endpoints (mean relative L2 [95 % CI over seeds]; "
               f"the competence rule asks for the family's target and at most {COMPETENCE_VS_PERSISTENCE} × persistence, "
               "persistence on the ID test trajectories: "
               + ", ".join(f"{family} {table['persistence_id']:.4f}" for family, table in by_family.items())
               + "), whether every competence check passes, the models that diverge (relative L2 > 1 or non-finite) on a "
               "support, endpoint or interpolation trajectory with their trajectory counts over seeds (the study's "
               "no-divergence rule, one of the checks), each expert against its anchor at its own endpoint (geometric mean "
               "of per-trajectory error ratios; below 1: the expert is better), CCM-Prefix's OOD error and its cut of the "
               "reference anchor's mean OOD error on each side (c = −2 / c = +2), and the optimizer steps (mean over seeds: "
               "anchor / low / high).")
    columns = ["family", "run", "anchor on support", "low at c = −1", "high at c = +1", "competent", "diverged (in distribution)",
               "low / anchor", "high / anchor", "CCM-Prefix OOD", "cut −2 / +2", "steps"]
    rows = []
    for family, table in by_family.items():
        for key in ("reference", *keys):
            row = table[key]
            steps = " / ".join(f"{np.mean([s[name] for s in row['steps']]):.0f}" for name in LINE_MODELS)
            rows.append([family, key, interval(row["anchor_support"]), interval(row["low_at_low"]), interval(row["high_at_high"]),
                         "yes" if competent(row["competence"]) else "no", diverged_cell(row["competence"]),
                         interval(row["expert_vs_anchor"]["low"], 3), interval(row["expert_vs_anchor"]["high"], 3),
                         interval(row["prefix_ood"]), side_cuts(row["prefix_ood_by_side"], table["reference_anchor_ood_by_side"]),
                         steps])
    return captioned_table(caption, columns, rows)


def competent(checks: Mapping[str, Any]) -> bool:
    """Every competence check passes: the targets, 0.3 × persistence, each expert beating its anchor in every seed
    and no model diverging in distribution."""
    beats = checks["expert_beats_anchor_at_own_endpoint"]
    return (checks["meets_target"] and checks["within_persistence_fraction"] and all(all(side) for side in beats.values())
            and checks["no_divergence_in_distribution"])


__all__ = ["Refit", "competent", "family_results", "line_scores", "low_expert_figure", "markdown", "run_refits", "run_table", "seed_results"]
