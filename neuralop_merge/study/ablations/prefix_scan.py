"""What CCM-Prefix finds with each search over α, on the same merge lines.

Three searches of the same criterion, the error over the observed frames ``1..k``:

``registered``  the fast search with the coarse scan the line's protocol registered
                (``StudyConfig.prefix_n_coarse``: 5 points, gaps of 2 on the study's ±4, up to
                ``small16x2d4ex2r``; the library's scan from ``small16x2d4ex2rs`` on);
``one_unit``    the library's default fast search, its coarse points about one unit of α apart;
``grid``        every point of the study's α grid: the criterion's minimum on that grid.

For each family and seed, on each OOD test trajectory, each search picks α from frames ``0..k`` and
the chosen θ(α) is scored on frames ``k+1..T``, the study's rule. A search *missed* where its prefix
error is above the grid's. The anchor's error on the same frames is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...plots import plot_series
from ..config import StudyConfig
from ..evaluation import score
from ..markdown import table_lines
from .base import AblationOutput, AblationSettings, Draw, SeedLine, interval, reduction, summary

NAME = "prefix_scan"
#: DiffReact is where the registered scan missed (small16x2d4ex2r, c = -2).
FAMILIES = ("diffreact",)
SEARCHES = ("registered", "one_unit", "grid")


def searches(config: StudyConfig) -> dict[str, dict[str, Any]]:
    """Each search's arguments to :meth:`~neuralop_merge.ccm.CCM.from_prefix` on a line of this protocol."""
    return {
        "registered": {"method": "fast", "n_coarse": config.prefix_n_coarse},
        "one_unit": {"method": "fast", "n_coarse": None},
        "grid": {"method": "grid"},
    }


#: How far (relative) a search's prefix error may sit above the grid's before it counts as a miss.
MISS_TOLERANCE = 1e-3


def seed_scans(line: SeedLine) -> dict[str, Any]:
    """Per OOD trajectory of one seed: its side, the anchor's error, and each search's α, errors and cost."""
    config, ccm, k = line.config, line.ccm(), line.config.prefix_k
    found: dict[str, Any] = {"side": [], "anchor": [], **{name: [] for name in SEARCHES}}
    for regime in line.tests("ood"):
        anchor = score(line.anchor, regime.trajectories, k).rel_l2.tolist()
        for row in range(regime.trajectories.shape[0]):
            x = regime.trajectories[row : row + 1]
            found["side"].append(regime.c)
            found["anchor"].append(anchor[row])
            for name, search in searches(config).items():
                result = ccm.from_prefix(x[:, : k + 1], alpha_range=config.alpha_range, n_grid=config.n_grid, **search)
                found[name].append({
                    "alpha": result.alpha, "prefix": float(result.errors.min()), "evaluations": result.n_evaluations,
                    "future": float(score(result.model, x, k).rel_l2[0]),
                })
    return found


def side_cells(seeds: list[dict[str, Any]], side: float) -> dict[str, Any]:
    """One OOD side over seeds: the anchor's summary and each search's, with its misses and mean cost."""
    rows = [[index for index, c in enumerate(seed["side"]) if c == side] for seed in seeds]
    anchor = summary([[seed["anchor"][i] for i in picked] for seed, picked in zip(seeds, rows)])
    cells = {"anchor": anchor}
    for name in SEARCHES:
        chosen = [[seed[name][i] for i in picked] for seed, picked in zip(seeds, rows)]
        grid = [[seed["grid"][i]["prefix"] for i in picked] for seed, picked in zip(seeds, rows)]
        cell = summary([[pick["future"] for pick in seed] for seed in chosen])
        cell["reduction_vs_anchor"] = reduction(cell, anchor)
        cell["missed"] = sum(pick["prefix"] > best * (1 + MISS_TOLERANCE)
                             for seed, bests in zip(chosen, grid) for pick, best in zip(seed, bests))
        cell["trajectories"] = sum(len(seed) for seed in chosen)
        cell["evaluations"] = sum(pick["evaluations"] for seed in chosen for pick in seed) / cell["trajectories"]
        cell["alpha_per_seed"] = [[pick["alpha"] for pick in seed] for seed in chosen]
        cells[name] = cell
    return cells


def run(settings: AblationSettings) -> AblationOutput:
    families = settings.families or FAMILIES
    details, arguments = {}, {}
    for family in families:
        config = settings.config(family)
        seeds = settings.map_lines(seed_scans, config)
        details[family] = {f"{side:g}": side_cells(seeds, side) for side in sorted(set(seeds[0]["side"]))}
        arguments[family] = searches(config)
    results = {"searches": arguments, "details": details}
    return AblationOutput(results, markdown(details))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """One figure per family, from ``results.json``'s content."""
    return {f"prefix_scan_{family}": figure(family, sides) for family, sides in results["details"].items()}


def figure(family: str, sides: dict[str, Any]) -> Draw:
    def draw(path):
        names = ["anchor", *SEARCHES]
        series = {name: [sides[c][name]["mean"] for c in sides] for name in names}
        bands = {name: ([sides[c][name]["ci"][0] for c in sides], [sides[c][name]["ci"][1] for c in sides]) for name in names}
        return plot_series([f"c = {c}" for c in sides], series, path, bands=bands, joined=False, logy=False,
                           title=f"{family}: CCM-Prefix's OOD error by search\n(95 % CI over seeds)")
    return draw


def markdown(details: dict[str, dict[str, Any]]) -> str:
    columns = ["family", "OOD side", "search", "future error [95 % CI]", "vs anchor", "missed the grid's minimum",
               "evaluations per trajectory"]
    rows = []
    for family, sides in details.items():
        for c, cells in sides.items():
            rows.append([family, f"c = {c}", "anchor", interval(cells["anchor"]), "", "", ""])
            rows += [[family, f"c = {c}", name, interval(cell), f"{cell['reduction_vs_anchor']:+.1f} %",
                      f"{cell['missed']} of {cell['trajectories']}", f"{cell['evaluations']:.1f}"]
                     for name, cell in ((name, cells[name]) for name in SEARCHES)]
    return "\n".join([
        "CCM-Prefix on the OOD test trajectories of each seed, α picked from frames 0..k by each search of the",
        "same prefix error, scored on frames k+1..T. Mean relative L2 [95 % CI over seeds]; 'missed' counts the",
        "trajectories whose chosen α has a higher prefix error than the grid's.", "",
        *table_lines(columns, rows),
    ])
