"""Which calibration bank the calibrated CCM-Coord map needs.

The calibrated map α = slope·c + intercept is fitted on a bank of (c, best grid α) pairs, each
from fresh trajectories of one calibration regime. The banks compared:

``default``   the study's validation regimes, c ∈ {−1.5, −0.25, 0.25, 1.5} (reaching beyond ±1);
``within``    the bank limited to c ∈ [−1, 1]: {−1, −0.25, 0.25, 1};
``size_2``    {−1.5, 1.5};  ``size_3``  {−1.5, 0, 1.5};  ``size_5``  {−1.5, −0.75, 0, 0.75, 1.5}.

Each map is scored on the OOD test regimes (c = ±2) against the identity map (α = c) and the
anchor. The default bank's regimes reuse the study's validation data; the others are simulated
with their own data role, so no bank sees a test trajectory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...coordinates import AffineMap
from ...plots import plot_series
from ..data import Regime, regimes_at
from ..evaluation import alpha_grid, regime_means, sweep
from ..markdown import captioned_table
from .base import AblationOutput, AblationSettings, Draw, SeedLine, errors, interval, per_regime, ratio_summary, summary

NAME = "calibration_bank"
FAMILIES = ("diffreact", "ns2d", "dam_break")
BANKS: dict[str, tuple[float, ...]] = {
    "default": (-1.5, -0.25, 0.25, 1.5),
    "within": (-1.0, -0.25, 0.25, 1.0),
    "size_2": (-1.5, 1.5),
    "size_3": (-1.5, 0.0, 1.5),
    "size_5": (-1.5, -0.75, 0.0, 0.75, 1.5),
}


def calibration_regimes(settings: AblationSettings, line: SeedLine) -> dict[float, Regime]:
    """Every bank coordinate's regime: the study's validation data where it has them, else fresh ones."""
    known = {regime.c: regime for regime in line.data.validation}
    missing = tuple(sorted({c for bank in BANKS.values() for c in bank} - set(known)))
    folder = settings.folder(line.config, line.seed, "data")
    fresh = regimes_at(line.config, line.seed, "calibration", missing, line.config.data.n_validation,
                       settings.device, folder) if missing else []
    return {**known, **{regime.c: regime for regime in fresh}}


def best_alphas(line: SeedLine, regimes: dict[float, Regime]) -> dict[float, float]:
    """The grid α of lowest mean log error at each calibration coordinate."""
    grid, coords = alpha_grid(line.config), sorted(regimes)
    x = torch.cat([regimes[c].trajectories for c in coords])
    sizes = [regimes[c].trajectories.shape[0] for c in coords]
    logs = regime_means(sweep(line.ccm().at, grid, x, line.config.prefix_k, progress=False)[0], sizes)
    return {c: grid[int(index)] for c, index in zip(coords, logs.argmin(dim=0))}


def seed_errors(settings: AblationSettings, line: SeedLine) -> dict[str, Any]:
    """OOD errors of the anchor, the identity map and every bank's map, and the maps, of one seed."""
    best = best_alphas(line, calibration_regimes(settings, line))
    ccm, k, ood = line.ccm(), line.config.prefix_k, line.tests("ood")
    table: dict[str, Any] = {"anchor": errors(line.anchor, ood, k), "identity": per_regime(lambda r: ccm.at(r.c), ood, k)}
    maps = {}
    for name, bank in BANKS.items():
        mapping = AffineMap.fit((c, best[c]) for c in bank)
        maps[name] = {"slope": mapping.slope, "intercept": mapping.intercept}
        table[name] = per_regime(lambda r: ccm.at(float(mapping(r.c))), ood, k)
    return {"errors": table, "maps": maps, "best_alpha": {str(c): a for c, a in best.items()}}


def run(settings: AblationSettings) -> AblationOutput:
    families, results = settings.families or FAMILIES, {"banks": {name: list(bank) for name, bank in BANKS.items()}}
    for family in families:
        seeds = settings.map_lines(seed_errors, settings.config(family), with_settings=True)
        methods = ["anchor", "identity", *BANKS]
        results[family] = {
            "ood": {m: summary([s["errors"][m] for s in seeds]) for m in methods},
            "vs_anchor": {m: ratio_summary([s["errors"][m] for s in seeds], [s["errors"]["anchor"] for s in seeds]) for m in methods[1:]},
            "maps": [s["maps"] for s in seeds], "best_alpha": [s["best_alpha"] for s in seeds],
        }
    return AblationOutput(results, markdown(results, families))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """Each family's OOD ratio to the anchor per map, from ``results.json``'s content."""
    families = [key for key, value in results.items() if isinstance(value, Mapping) and "vs_anchor" in value]
    maps = ["identity", *BANKS]
    return {"calibration_bank": lambda path: plot_series(
        maps, {f: [results[f]["vs_anchor"][m]["gm_ratio"] for m in maps] for f in families},
        path, xlabel="map", ylabel="OOD error ratio to the anchor (geometric mean)",
        title="calibrated CCM-Coord by calibration bank")}


def markdown(results: dict[str, Any], families: tuple[str, ...]) -> str:
    caption = "OOD (c = ±2) geometric mean of per-trajectory error ratios against the anchor [95 % CI over seeds]."
    columns = ["family", "identity α = c", *(f"{name} {list(bank)}" for name, bank in BANKS.items())]
    rows = [[family, *(interval(results[family]["vs_anchor"][m], 3) for m in ["identity", *BANKS])] for family in families]
    return captioned_table(caption, columns, rows)
