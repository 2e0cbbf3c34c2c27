"""Does each expert beat its anchor at its own endpoint once the FNO keeps more Fourier modes?

The study's competence rule asks each endpoint expert to beat its anchor at its own endpoint.
NS2D's low-ν expert does not, at the small and at the medium scale, and no change of the experts'
recipe fixes it (``direction_stability``). One reading: with 8 Fourier modes per layer on the 32²
grid the model resolves too little of what separates ν = 4e-5 from the support's ν ≈ 8e-5. This
ablation trains the study's line with more modes (same grid, data, recipe and budget rule) and
scores, per mode count, each expert against its anchor at the expert's endpoint (the ID test
trajectories), the anchor on its support, and the identity CCM-Coord against the anchor OOD.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...plots import plot_series
from ..config import EXPERTS
from ..markdown import captioned_table
from .base import (AblationOutput, AblationSettings, Draw, SeedLine, endpoint_errors, endpoint_gain, errors, interval,
                   per_regime, ratio_summary, summary)

NAME = "endpoint_modes"
FAMILIES = ("ns2d",)
MODES = (8, 16)  # 8: the study's; 16: every mode the 32² grid holds along each axis


def seed_scores(line: SeedLine) -> dict[str, Any]:
    ccm, k, ood = line.ccm(), line.config.prefix_k, line.tests("ood")
    return {
        "endpoints": endpoint_errors(line, line.models()),
        "anchor_support": errors(line.anchor, line.tests("support"), k),
        "anchor_ood": errors(line.anchor, ood, k),
        "ccm_coord_ood": per_regime(lambda regime: ccm.at(regime.c), ood, k),
    }


def modes_results(settings: AblationSettings, family: str, modes: int) -> dict[str, Any]:
    config = settings.config(family, n_modes=modes)
    seeds = settings.map_lines(seed_scores, config)
    return {
        "expert_vs_anchor": endpoint_gain([s["endpoints"] for s in seeds]),
        "anchor_support": summary([s["anchor_support"] for s in seeds]),
        "ccm_coord_vs_anchor_ood": ratio_summary([s["ccm_coord_ood"] for s in seeds], [s["anchor_ood"] for s in seeds]),
    }


def run(settings: AblationSettings) -> AblationOutput:
    family = (settings.families or FAMILIES)[0]
    by_modes = {modes: modes_results(settings, family, modes) for modes in MODES}
    results = {"family": family, "modes": list(MODES), "by_modes": {str(m): table for m, table in by_modes.items()}}
    return AblationOutput(results, markdown(family, by_modes))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """Each expert's error ratio to the anchor at its endpoint per mode count, from ``results.json``'s content."""
    modes, gains = results["modes"], [results["by_modes"][str(m)]["expert_vs_anchor"] for m in results["modes"]]
    sides = {f"{side} expert / anchor at its endpoint": side for side in EXPERTS}
    return {"endpoint_modes": lambda path: plot_series(
        modes, {label: [gain[side]["gm_ratio"] for gain in gains] for label, side in sides.items()},
        path, bands={label: tuple([gain[side]["ci"][i] for gain in gains] for i in (0, 1)) for label, side in sides.items()},
        hlines={"no gain": 1.0}, logx=True, logy=False, xlabel="Fourier modes per axis", ylabel="error ratio (geometric mean)",
        title=f"{results['family']}: expert against anchor at its own endpoint (95 % CI over seeds)")}


def markdown(family: str, by_modes: dict[int, dict[str, Any]]) -> str:
    caption = (f"{family}: each expert against its anchor at the expert's own endpoint and the identity CCM-Coord against "
               "the anchor OOD (geometric means of per-trajectory error ratios [95 % CI over seeds]; below 1: the first is "
               "better), and the anchor's mean relative L2 on its support.")
    columns = ["Fourier modes", "low / anchor at c = −1", "high / anchor at c = +1", "anchor on its support", "CCM-Coord / anchor OOD"]
    rows = [[modes, interval(t["expert_vs_anchor"]["low"], 3), interval(t["expert_vs_anchor"]["high"], 3),
             interval(t["anchor_support"]), interval(t["ccm_coord_vs_anchor_ood"], 3)] for modes, t in by_modes.items()]
    return captioned_table(caption, columns, rows)
