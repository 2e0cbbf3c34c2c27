"""The CCM plane θ(α, β) = θ₀ + β·Δ₊ + α·Δ₋: can a merge fall back to the anchor inside the support?

On the merge line (β = 1) the shared adaptation Δ₊ is always added, which can hurt where the anchor
was trained. The plane scales it:

``ccm_plane``             α = c and β = min(1, |c|), read from the coordinate alone: the anchor at
                          the centre of the support, the CCM line from the endpoints outwards;
``ccm_plane_calibrated``  α = c and β = a + b·|c| (clipped to [0, 1.5]), fitted on the validation
                          regimes' best β of the grid 0, 0.25, ..., 1.5;
``ccm``                   the identity CCM-Coord line, α = c and β = 1;
``anchor``                θ₀.

Every split of every seed; the question is whether the plane is never worse than the anchor in
the support while keeping the line's OOD gain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...plots import plot_series
from ..config import SPLITS
from ..evaluation import log_error, score
from ..markdown import captioned_table
from .base import AblationOutput, AblationSettings, Draw, SeedLine, errors, interval, per_regime, ratio_summary, summary

NAME = "ccm_plane"
FAMILIES = ("dam_break", "diffreact", "ns2d")
BETAS = tuple(0.25 * i for i in range(7))
METHODS = ("ccm_plane", "ccm_plane_calibrated", "ccm", "anchor")


def coordinate_beta(c: float) -> float:
    return min(1.0, abs(c))


def calibrated_beta(line: SeedLine) -> tuple[float, float]:
    """``(a, b)`` of β = a + b·|c|, least squares over the validation regimes' best grid β."""
    ccm, k, points = line.ccm(), line.config.prefix_k, []
    for regime in line.data.validation:
        logs = [float(log_error(score(ccm.at(regime.c, beta=beta), regime.trajectories, k).rel_l2).mean()) for beta in BETAS]
        points.append((abs(regime.c), BETAS[int(np.argmin(logs))]))
    x, y = np.array(points).T
    if np.ptp(x) == 0:
        return float(y.mean()), 0.0
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def seed_errors(line: SeedLine) -> tuple[dict[str, dict[str, list[float]]], dict[str, float]]:
    """``{split: {method: errors}}`` of one seed, and its calibrated β = a + b·|c| as ``{intercept, slope}``."""
    ccm, k = line.ccm(), line.config.prefix_k
    a, b = calibrated_beta(line)
    rules = {"ccm_plane": coordinate_beta, "ccm_plane_calibrated": lambda c: float(np.clip(a + b * abs(c), 0.0, 1.5)),
             "ccm": lambda c: 1.0}
    table: dict[str, dict[str, list[float]]] = {}
    for split in SPLITS:
        regimes = line.tests(split)
        table[split] = {"anchor": errors(line.anchor, regimes, k)}
        for name, beta in rules.items():
            table[split][name] = per_regime(lambda regime: ccm.at(regime.c, beta=beta(regime.c)), regimes, k)
    return table, {"intercept": a, "slope": b}


def run(settings: AblationSettings) -> AblationOutput:
    families = settings.families or FAMILIES
    results: dict[str, Any] = {"plane": {}, "by_family": {}}
    for family in families:
        seeds, calibration = zip(*settings.map_lines(seed_errors, settings.config(family)))
        results["by_family"][family] = {**family_summary(seeds), "beta_calibration": list(calibration)}
    results["plane"] = results["by_family"][families[0]]["splits"]
    return AblationOutput(results, markdown(results["by_family"]))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """One figure per family, from ``results.json``'s content."""
    return {f"ccm_plane_{family}": figure(family, table) for family, table in results["by_family"].items()}


def family_summary(seeds: list[dict[str, dict[str, list[float]]]]) -> dict[str, Any]:
    splits = {split: {method: summary([seed[split][method] for seed in seeds]) for method in METHODS} for split in SPLITS}
    ratios = {split: {f"{method}_vs_anchor": ratio_summary([s[split][method] for s in seeds], [s[split]["anchor"] for s in seeds])
                      for method in METHODS[:3]} for split in SPLITS}
    return {"splits": splits, "ratios": ratios}


def figure(family: str, table: dict[str, Any]):
    def draw(path):
        series = {method: [table["splits"][split][method]["mean"] for split in SPLITS] for method in METHODS}
        return plot_series(SPLITS, series, path, xlabel="split",
                           title=f"{family}: the CCM plane against the line and the anchor")
    return draw


def markdown(by_family: dict[str, Any]) -> str:
    caption = ("Geometric mean of per-trajectory error ratios against the anchor [95 % CI over seeds] "
               "(below 1: better than the anchor), and each method's mean relative L2.")
    compared = METHODS[:3]  # the methods family_summary pairs with the anchor
    columns = ["family", "split", *(f"{method} / anchor" for method in compared), "anchor mean"]
    rows = [[family, split, *(interval(table["ratios"][split][f"{method}_vs_anchor"], 3) for method in compared),
             f"{table['splits'][split]['anchor']['mean']:.4f}"]
            for family, table in by_family.items() for split in SPLITS]
    return captioned_table(caption, columns, rows)


__all__ = ["coordinate_beta", "run"]
