"""Does CCM's OOD gain grow with the FNO's width? (The study's FNO scale trend, on DiffReact.)

The anchor and the experts are trained at each width with the study's recipe and budget rule
(the step caps do not change with width). ``ood_reduction`` is the reduction of the mean OOD
error (c = ±2) of CCM-Prefix, the variant the committed DiffReact study selected on validation,
against the anchor of the same width; the identity CCM-Coord's is reported too. ``competence`` scores each
width's models by the study's rule (anchor on its support, each expert at its own endpoint, against
the family's target and 0.3 × persistence; no model diverging on a support, endpoint or interpolation
trajectory), so a width's gain can be read against its models' quality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...plots import plot_series
from ..config import COMPETENCE_VS_PERSISTENCE, EXPERTS
from ..markdown import captioned_table
from .base import (AblationOutput, AblationSettings, Draw, SeedLine, competence, competence_errors, diverged_cell, errors, interval,
                   per_regime, prefix_errors, ratio_summary, reduction, summary)

NAME = "scale_trend"
FAMILIES = ("diffreact",)
WIDTHS = (12, 24, 48)
METHODS = ("anchor", "ccm_coord", "ccm_prefix")


def seed_errors(line: SeedLine) -> dict[str, Any]:
    ccm, k, ood = line.ccm(), line.config.prefix_k, line.tests("ood")
    return {"anchor": errors(line.anchor, ood, k), "ccm_coord": per_regime(lambda r: ccm.at(r.c), ood, k),
            "ccm_prefix": prefix_errors(ccm, ood, line.config), "competence": competence_errors(line)}


def width_results(settings: AblationSettings, family: str, width: int) -> dict[str, Any]:
    config = settings.config(family, hidden_channels=width)
    seeds = settings.map_lines(seed_errors, config)
    cells = {m: summary([s[m] for s in seeds]) for m in METHODS}
    ratios = {f"{m}_vs_anchor": ratio_summary([s[m] for s in seeds], [s["anchor"] for s in seeds]) for m in METHODS[1:]}
    return {"ood": cells, "ratios": ratios, "reduction": {m: reduction(cells[m], cells["anchor"]) for m in METHODS[1:]},
            "competence": competence([s["competence"] for s in seeds], family)}


def run(settings: AblationSettings) -> AblationOutput:
    family = (settings.families or FAMILIES)[0]
    widths = {width: width_results(settings, family, width) for width in WIDTHS}
    results = {"family": family, "widths": list(WIDTHS),
               "ood_reduction": [widths[w]["reduction"]["ccm_prefix"] for w in WIDTHS],
               "ood_reduction_ccm_coord": [widths[w]["reduction"]["ccm_coord"] for w in WIDTHS],
               "by_width": {str(w): table for w, table in widths.items()}}
    return AblationOutput(results, markdown(family, widths))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """The OOD error of each method per width, from ``results.json``'s content."""
    widths, ood = results["widths"], [results["by_width"][str(w)]["ood"] for w in results["widths"]]
    return {"scale_trend": lambda path: plot_series(
        widths, {m: [cell[m]["mean"] for cell in ood] for m in METHODS}, path,
        bands={m: ([cell[m]["ci"][0] for cell in ood], [cell[m]["ci"][1] for cell in ood]) for m in METHODS},
        logx=True, xlabel="FNO hidden channels",
        title=f"{results['family']}: OOD error vs FNO width (95 % CI over seeds)")}


def markdown(family: str, widths: dict[int, dict[str, Any]]) -> str:
    caption = (f"{family}, OOD (c = ±2): mean relative L2 [95 % CI over seeds] and the reduction of the mean against "
               "the anchor of the same width.")
    columns = ["width", "anchor", "CCM-Coord", "CCM-Prefix", "CCM-Prefix reduction", "CCM-Prefix / anchor (geo. mean)"]
    rows = [[width, interval(t["ood"]["anchor"]), interval(t["ood"]["ccm_coord"]), interval(t["ood"]["ccm_prefix"]),
             f"{t['reduction']['ccm_prefix']:+.1f} %", interval(t["ratios"]["ccm_prefix_vs_anchor"], 3)]
            for width, t in widths.items()]
    return "\n\n".join((captioned_table(caption, columns, rows).rstrip(), competence_table(family, widths)))


def competence_table(family: str, widths: dict[int, dict[str, Any]]) -> str:
    """Each width's models against the study's competence rule."""
    target = next(iter(widths.values()))["competence"]["target"]
    caption = (f"{family}, competence of each width's models (mean relative L2 over seeds; target ≤ {target} and "
               f"≤ {COMPETENCE_VS_PERSISTENCE} × persistence; experts beating the anchor at their own endpoint, per seed; the models "
               "diverging (relative L2 > 1 or non-finite) on a support, endpoint or interpolation trajectory, with their "
               "trajectory counts over seeds).")
    columns = ["width", "anchor on support", "low at c = −1", "high at c = +1", "persistence (endpoints)", "target met",
               f"≤ {COMPETENCE_VS_PERSISTENCE} × persistence", "low beats anchor", "high beats anchor", "diverged (in distribution)"]

    def row(width: int, c: dict[str, Any]) -> list[Any]:
        beats = c["expert_beats_anchor_at_own_endpoint"]
        return [width, f"{c['anchor_support']:.4f}", f"{c['low_at_low']:.4f}", f"{c['high_at_high']:.4f}",
                f"{c['persistence_id']:.4f}", "yes" if c["meets_target"] else "no",
                "yes" if c["within_persistence_fraction"] else "no",
                *(f"{sum(beats[side])}/{len(beats[side])}" for side in EXPERTS), diverged_cell(c)]

    return captioned_table(caption, columns, [row(width, t["competence"]) for width, t in widths.items()])
