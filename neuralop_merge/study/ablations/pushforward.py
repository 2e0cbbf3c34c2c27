"""Does training on the model's own predictions (the pushforward trick) make the surrogates competent?

The study's recipe fights rollout drift with 1 % input noise only. DiffReact's low expert stays
above the competence rule (0.3 × persistence) at every CPU scale, and the one ablation that
brings it within the rule (``direction_stability``'s ``data:4+steps:8``) needs four times the
endpoint data and eight times the steps. The pushforward trick (Brandstetter et al., 2022, the
issue's other suggested lever) lets a model roll its own input forward, without gradients, for
``n`` steps drawn from ``0 .. P`` before each training step, so that it learns to correct the
errors it makes itself, at the price of ``n`` forward passes per step and the same step caps.

Each variant refits one seed's line with one change and is scored like the reference line (the
study's recipe, cached):

``experts:1``, ``experts:2``   the endpoint experts refit from the reference anchor with P = 1 / 2;
``line:1``                     the anchor too trained with P = 1, and its own experts with P = 1;
``steps:4``                    the experts refit with P = 0 and four times the step cap (the
                               stopping rule scales), the control for
``experts:1+steps:4``          the experts refit with P = 1 and four times the step cap: does the
                               trick pay once the cap no longer binds?
``anchor_steps:2``             the anchor retrained with P = 0 and twice its step cap, and its own
                               experts (P = 0, the study's cap), the control for
``line:1+anchor_steps:2``      ``line:1`` with twice the anchor's step cap: does the trick pay for
                               the anchor, whose cap binds in every run above?

Per run: the study's competence checks (anchor on its support, each expert at its own endpoint,
against the targets and 0.3 × persistence), each expert against its anchor at its endpoint,
and CCM-Prefix's OOD error with its cut of the reference anchor's error on each side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ...plots import plot_series
from ..config import COMPETENCE_VS_PERSISTENCE
from ..markdown import captioned_table
from .base import (LINE_MODELS, AblationOutput, AblationSettings, Draw, SeedLine, cached_nets, competence,
                   competence_errors, endpoint_gain, errors, interval, scaled_caps, seed_line, summary, train_line)
from .direction_stability import by_side, ood_errors, per_ood_side, pooled, side_cuts

NAME = "pushforward"
FAMILIES = ("diffreact",)


class Variant(NamedTuple):
    """One refit of the reference line."""

    unrolls: int  #: the most unrolled steps P
    anchor_retrained: bool  #: the anchor is retrained with P too (else the reference anchor is kept)
    expert_steps: float = 1.0  #: factor on the experts' step cap
    anchor_steps: float = 1.0  #: factor on the anchor's step cap (with ``anchor_retrained``)


VARIANTS: dict[str, Variant] = {"experts:1": Variant(1, False), "experts:2": Variant(2, False), "line:1": Variant(1, True),
                                "steps:4": Variant(0, False, 4.0), "experts:1+steps:4": Variant(1, False, 4.0),
                                "anchor_steps:2": Variant(0, True, anchor_steps=2.0),
                                "line:1+anchor_steps:2": Variant(1, True, anchor_steps=2.0)}


def variant_line(settings: AblationSettings, line: SeedLine, key: str) -> SeedLine:
    """``line`` refit under variant ``key`` (cached), with the reference line's data and processor."""
    variant = VARIANTS[key]
    config = scaled_caps(line.config, anchor=variant.anchor_steps, experts=variant.expert_steps)
    nets = cached_nets(
        settings.folder(line.config, line.seed, f"pushforward-{key.replace(':', '-')}"), LINE_MODELS,
        lambda: train_line(config, line.seed, line.data, line.anchor.processor, settings=settings, pushforward=variant.unrolls,
                           anchor=None if variant.anchor_retrained else line.anchor.net))
    return line.with_nets(nets)


def line_scores(line: SeedLine) -> dict[str, Any]:
    """Competence errors, OOD errors and optimizer steps of one seed's line."""
    return {"competence": competence_errors(line), "ood": ood_errors(line.ccm(), line), "steps": line.steps()}


def seed_results(settings: AblationSettings, family: str, seed: int) -> dict[str, Any]:
    """The reference line's scores and each variant's, and the reference anchor's OOD errors per side, for one seed."""
    line = seed_line(settings, settings.config(family), seed)
    out = {"reference": line_scores(line),
           "anchor_by_side": per_ood_side(lambda regime: errors(line.anchor, [regime], line.config.prefix_k), line)}
    for key in VARIANTS:
        settings.log(f"  {family} seed {seed}: pushforward {key}")
        out[key] = line_scores(variant_line(settings, line, key))
    return out


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


def family_results(settings: AblationSettings, family: str) -> dict[str, Any]:
    seeds = [seed_results(settings, family, seed) for seed in settings.seeds]
    table = {key: run_table([seed[key] for seed in seeds], family) for key in ("reference", *VARIANTS)}
    anchor_by_side = [seed["anchor_by_side"] for seed in seeds]
    table["reference_anchor_ood"] = summary([pooled(side) for side in anchor_by_side])
    table["reference_anchor_ood_by_side"] = by_side(anchor_by_side)
    table["persistence_id"] = table["reference"]["competence"]["persistence_id"]  # data only: the same for every run
    return table


def run(settings: AblationSettings) -> AblationOutput:
    families = settings.families or FAMILIES
    by_family = {family: family_results(settings, family) for family in families}
    return AblationOutput({"variants": {key: variant._asdict() for key, variant in VARIANTS.items()},
                           "by_family": by_family}, markdown(by_family))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """Each run's low expert at its endpoint against 0.3 × persistence, per family, from ``results.json``'s content."""
    runs = ["reference", *results["variants"]]
    by_family = results["by_family"]
    return {"pushforward": lambda path: plot_series(
        runs, {f"{family}: low expert at c = −1": [table[run]["low_at_low"]["mean"] for run in runs]
               for family, table in by_family.items()},
        path, bands={f"{family}: low expert at c = −1": tuple([table[run]["low_at_low"]["ci"][i] for run in runs] for i in (0, 1))
                     for family, table in by_family.items()},
        hlines={f"{family}: {COMPETENCE_VS_PERSISTENCE} × persistence": COMPETENCE_VS_PERSISTENCE * table["persistence_id"]
                for family, table in by_family.items()},
        logy=False, xlabel="run", title="pushforward: the low expert at c = −1 (95 % CI over seeds)")}


def markdown(by_family: dict[str, Any]) -> str:
    caption = ("Each run's anchor on its support and experts at their own endpoints (mean relative L2 [95 % CI over seeds]; "
               f"the competence rule asks for the family's target and at most {COMPETENCE_VS_PERSISTENCE} × persistence, "
               "persistence on the ID test trajectories: "
               + ", ".join(f"{family} {table['persistence_id']:.4f}" for family, table in by_family.items())
               + "), whether every competence check passes, each expert against its anchor at its own endpoint (geometric mean "
               "of per-trajectory error ratios; below 1: the expert is better), CCM-Prefix's OOD error and its cut of the "
               "reference anchor's mean OOD error on each side (c = −2 / c = +2), and the optimizer steps (mean over seeds: "
               "anchor / low / high).")
    columns = ["family", "run", "anchor on support", "low at c = −1", "high at c = +1", "competent", "low / anchor",
               "high / anchor", "CCM-Prefix OOD", "cut −2 / +2", "steps"]
    rows = []
    for family, table in by_family.items():
        for key in ("reference", *VARIANTS):
            row = table[key]
            steps = " / ".join(f"{np.mean([s[name] for s in row['steps']]):.0f}" for name in LINE_MODELS)
            rows.append([family, key, interval(row["anchor_support"]), interval(row["low_at_low"]), interval(row["high_at_high"]),
                         "yes" if competent(row["competence"]) else "no",
                         interval(row["expert_vs_anchor"]["low"], 3), interval(row["expert_vs_anchor"]["high"], 3),
                         interval(row["prefix_ood"]), side_cuts(row["prefix_ood_by_side"], table["reference_anchor_ood_by_side"]),
                         steps])
    return captioned_table(caption, columns, rows)


def competent(checks: Mapping[str, Any]) -> bool:
    """Every competence check passes: the targets, 0.3 × persistence, each expert beating its anchor in every seed."""
    beats = checks["expert_beats_anchor_at_own_endpoint"]
    return checks["meets_target"] and checks["within_persistence_fraction"] and all(all(side) for side in beats.values())
