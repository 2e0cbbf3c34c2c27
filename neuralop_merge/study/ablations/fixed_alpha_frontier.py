"""Dam break: every fixed α on the merge line against CCM-Prefix, and the α CCM-Prefix picks.

The study's frontier figure asks whether a per-trajectory α (CCM-Prefix, from the first k frames)
does better than the best single α for a whole split. Here every α of the study's grid is scored
on every test trajectory of every seed; the best fixed α of a split is chosen *in hindsight* on
that split, so it is a bound no deployable fixed α can beat. CCM-Prefix is scored on the same
future frames, and its per-trajectory α is reported against the trajectory's coordinate c.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...plots import plot_coordinate_law, plot_series
from ..config import SPLITS
from ..evaluation import alpha_grid, prefix_scores, sweep
from ..markdown import captioned_table
from .base import AblationOutput, AblationSettings, Draw, SeedLine, interval, summary

NAME = "fixed_alpha_frontier"
FAMILIES = ("dam_break",)


def seed_cells(settings: AblationSettings, line: SeedLine) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """One seed's cells per split (``[α][trajectory]`` fixed-α errors, ``[trajectory]`` CCM-Prefix ones) and its picks."""
    config, ccm = line.config, line.ccm()
    cells, picks = {}, []
    for split in SPLITS:
        x = torch.cat([regime.trajectories for regime in line.tests(split)])
        prefix, alphas = prefix_scores(ccm, x, config, settings.device)
        cells[split] = {"fixed": sweep(ccm.at, alpha_grid(config), x, config.prefix_k, progress=False)[0].tolist(),
                        "prefix": prefix.rel_l2.tolist()}
        coords = [regime.c for regime in line.tests(split) for _ in range(regime.trajectories.shape[0])]
        picks += [{"seed": line.seed, "split": split, "c": c, "alpha": a} for c, a in zip(coords, alphas)]
    return cells, picks


def split_cells(settings: AblationSettings, family: str) -> tuple[list[float], dict[str, Any], list[dict[str, float]]]:
    """Per split: ``[seed][α][trajectory]`` fixed-α errors and ``[seed][trajectory]`` CCM-Prefix ones, and every pick."""
    config = settings.config(family)
    seeds = settings.map_lines(seed_cells, config, with_settings=True)
    cells = {split: {kind: [seed[split][kind] for seed, _ in seeds] for kind in ("fixed", "prefix")} for split in SPLITS}
    return alpha_grid(config), cells, [pick for _, picks in seeds for pick in picks]


def frontier(grid: list[float], cells: dict[str, Any]) -> dict[str, Any]:
    """The mean error of each fixed α per split, the hindsight-best one, and CCM-Prefix's."""
    table = {}
    for split, cell in cells.items():
        per_alpha = [summary([seed[i] for seed in cell["fixed"]]) for i in range(len(grid))]
        best = int(np.argmin([entry["mean"] for entry in per_alpha]))
        table[split] = {
            "fixed_alpha": [entry["mean"] for entry in per_alpha],
            "best_fixed_alpha": {"alpha": grid[best], **per_alpha[best]},
            "ccm_prefix": summary(cell["prefix"]),
        }
    return table


def run(settings: AblationSettings) -> AblationOutput:
    family = (settings.families or FAMILIES)[0]
    grid, cells, picks = split_cells(settings, family)
    table = frontier(grid, cells)
    results = {"family": family, "alphas": grid, "splits": table, "selected_alpha": picks}
    return AblationOutput(results, markdown(family, table, picks))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """The frontier and the per-trajectory picks, from ``results.json``'s content."""
    family, table, picks = results["family"], results["splits"], results["selected_alpha"]
    return {"frontier": lambda path: plot_series(
        results["alphas"], {split: table[split]["fixed_alpha"] for split in table}, path,
        hlines={f"CCM-Prefix ({split})": table[split]["ccm_prefix"]["mean"] for split in table},
        xlabel="fixed α", title=f"{family}: every fixed α vs CCM-Prefix (mean over seeds)"),
        "selected_alpha": lambda path: plot_coordinate_law(
            [p["c"] for p in picks], [p["alpha"] for p in picks], None, path,
            title=f"{family}: α picked by CCM-Prefix per trajectory", ylabel="CCM-Prefix α")}


def markdown(family: str, table: dict[str, Any], picks: list[dict[str, float]]) -> str:
    caption = (f"{family}: mean future-frame relative L2 [95 % CI over seeds]. The best fixed α is chosen on each split "
               "in hindsight (a bound, not a method).")
    columns = ["split", "best fixed α (hindsight)", "its error", "CCM-Prefix", "CCM-Prefix failures"]
    rows = [[split, f"{row['best_fixed_alpha']['alpha']:+.1f}", interval(row["best_fixed_alpha"]), interval(row["ccm_prefix"]),
             row["ccm_prefix"]["failures"]] for split, row in table.items()]
    return captioned_table(caption, columns, rows) + "\n\n" + alpha_table(picks)  # a blank line between the tables


def alpha_table(picks: list[dict[str, float]]) -> str:
    """CCM-Prefix's picked α per coordinate c: mean ± std over trajectories and seeds, and how many.

    Parameters
    ----------
    picks
        One ``{"c": ..., "alpha": ...}`` per scored trajectory, as :func:`run` stores them.

    Returns
    -------
    str
        The captioned table.
    """
    chosen = {c: np.array([p["alpha"] for p in picks if p["c"] == c]) for c in sorted({p["c"] for p in picks})}
    rows = [[f"{c:+.2f}", f"{alphas.mean():+.2f} ± {alphas.std():.2f}", len(alphas)] for c, alphas in chosen.items()]
    return captioned_table("CCM-Prefix's α per coordinate (mean ± std over trajectories and seeds):", ["c", "α", "n"], rows)
