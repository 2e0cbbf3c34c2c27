"""Where does a K-expert merge surface beat the two-endpoint line, and where not?

Every expert below is fine-tuned from the seed's study anchor (trained on the support c ∈ {−0.3,
0, 0.3} of the family's axis at the defaults of every other axis) by the study's expert recipe and
budget, and every merge is read from the target's coordinate alone (CCM-Coord, no prefix):

**One axis** (the study's axis, its test splits). Experts at c = −1, −1/3, +1/3, +1: the study's
two endpoint experts and two more between them (at ±1/3, so that no expert sits on the interp
test regimes c = ±0.5). Compared on every split:

``anchor``              θ₀;
``line``                the study's line through the endpoints, α = c;
``surface_affine``      the least-squares surface θ₀ + A + B·c through the four experts;
``surface_quadratic``   the same with a c² term.

**Two axes** (the study's axis × a second physical axis: the dam's radius r0 on dam break, the
reaction constant k on DiffReact; c₂ ∈ [−1, 1] spans :data:`SECOND_AXIS`, c₂ = 0 at the family's
default). Five experts at the corners (±1, ±1) and the centre (0, 0) of the box; targets inside
the box, out of it along axis 1, along axis 2 and along both (:data:`TARGETS`):

``anchor``      θ₀;
``line``        a two-endpoint line along axis 1, which cannot move along axis 2: the one at the
                c₂ ∈ {−1, 0, +1} nearest the target's (the corner experts' lines at ±1, the study's
                endpoint experts at 0; a tie goes to the study's line);
``best_line``   per target regime, whichever of those three lines has the lowest mean test error
                (an oracle: chosen on the test trajectories, so an optimistic bound for any line);
``surface``     the affine surface θ₀ + A + B·c through the five experts.

Scores: future-frame relative L2 on the study's fresh test trajectories (``n_test`` per regime),
means with seed-clustered 95 % intervals, and geometric means of per-trajectory error ratios
surface / line with their intervals. The verdict calls a surface better than the line where the
ratio's upper bound is below 1, worse where its lower bound is above 1, and undecided otherwise.
The fit residual (the share of the experts' updates the surface misses) says how far the
experts are from lying on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ... import families
from ...ccm import CCM
from ...plots import plot_series
from ...surface import CCMSurface
from ...training.processing import ProcessedModel
from ..config import SPLITS, Regimes, StudyConfig, seeds_give_interval
from ..data import TrainingSet, data_seed, training_set
from ..evaluation import merge_line, score
from ..markdown import table_lines
from ..models import SeedTrainer
from .base import (AblationOutput, AblationSettings, Draw, SeedLine, cached_nets, errors, interval, per_regime, ratio_summary,
                   seed_line, summary)

NAME = "multi_axis"
FAMILIES = ("dam_break", "diffreact")
#: The one-axis surface's experts besides the line's endpoints, by name and coordinate c.
INNER_EXPERTS = {"inner_low": -1.0 / 3.0, "inner_high": 1.0 / 3.0}
ONE_AXIS_METHODS = ("anchor", "line", "surface_affine", "surface_quadratic")
#: The second axis of each family: its name and where c₂ = ±1 sit (centred on the family's default).
SECOND_AXIS = {"dam_break": ("r0", Regimes(low=0.4, high=0.6)), "diffreact": ("k", Regimes(low=-0.045, high=0.055))}
#: The two-axis experts by name and box coordinate (c₁, c₂).
BOX_EXPERTS = {"low_low": (-1.0, -1.0), "high_low": (1.0, -1.0), "low_high": (-1.0, 1.0), "high_high": (1.0, 1.0),
               "centre": (0.0, 0.0)}
#: The two-axis test regimes of each target kind.
TARGETS = {
    "inside": ((-0.5, -0.5), (0.5, 0.5)),
    "ood_axis1": ((-2.0, 0.0), (2.0, 0.0)),
    "ood_axis2": ((0.0, -2.0), (0.0, 2.0)),
    "ood_both": ((-2.0, -2.0), (2.0, 2.0), (-2.0, 2.0), (2.0, -2.0)),
}
TWO_AXIS_METHODS = ("anchor", "line", "best_line", "surface")
#: The c₂ of the lines along axis 1: the corner experts' (±1) and the study's endpoint experts' (0).
LINE_LEVELS = (0.0, -1.0, 1.0)
#: Which methods each part compares with its line.
SURFACES = {"one_axis": ("surface_affine", "surface_quadratic"), "two_axis": ("surface",)}

Errors = dict[str, list[float]]


# -- one axis -----------------------------------------------------------------------------------
def inner_experts(settings: AblationSettings, line: SeedLine) -> dict[str, ProcessedModel]:
    """The experts at c = ±1/3, fine-tuned from the seed's anchor on their own fresh data (cached)."""
    config, seed = line.config, line.seed
    folder = settings.folder(config, seed, "data")

    def train() -> dict[str, torch.nn.Module]:
        parts = {name: (config.regimes.value(c), training_set(config, seed, f"multi-{name}", (c,), config.data.n_endpoint,
                                                              settings.device, folder))
                 for name, c in INNER_EXPERTS.items()}
        runs = SeedTrainer(config, seed, settings.device, settings.progress)
        return {name: model.net for name, model in runs.finetune_at(line.anchor, parts).items()}

    nets = cached_nets(settings.folder(config, seed, "multi-axis-inner"), tuple(INNER_EXPERTS), train)
    return {name: ProcessedModel(net, line.anchor.processor) for name, net in nets.items()}


def one_axis_surface(line: SeedLine, inner: Mapping[str, ProcessedModel], *, quadratic: bool) -> CCMSurface:
    """The surface through the line's endpoints and the inner experts, on the study's axis."""
    regimes = line.config.regimes
    experts = {"low": line.low, "high": line.high, **inner}
    coords = {"low": regimes.value(-1.0), "high": regimes.value(1.0),
              **{name: regimes.value(c) for name, c in INNER_EXPERTS.items()}}
    return CCMSurface(line.anchor, experts, coords, transform=regimes.transform, quadratic=quadratic)


def one_axis_errors(settings: AblationSettings, line: SeedLine) -> dict[str, Any]:
    """``{split: {method: errors}}`` of one seed, and each surface's overall fit residual."""
    inner, ccm, k = inner_experts(settings, line), line.ccm(), line.config.prefix_k
    surfaces = {"surface_affine": one_axis_surface(line, inner, quadratic=False),
                "surface_quadratic": one_axis_surface(line, inner, quadratic=True)}
    table: dict[str, Any] = {}
    for split in SPLITS:
        regimes = line.tests(split)
        row = {"anchor": errors(line.anchor, regimes, k), "line": per_regime(lambda r: ccm.at(r.c), regimes, k)}
        row.update({name: per_regime(lambda r, s=surface: s.from_coord(r.mu), regimes, k)
                    for name, surface in surfaces.items()})
        table[split] = row
    table["fit_residual"] = {name: surface.fit_residuals()[-1].relative_total for name, surface in surfaces.items()}
    return table


def second_axis(family: str) -> tuple[str, Regimes]:
    """The name of ``family``'s second axis and its coordinate, with the family's transform."""
    name, regimes = SECOND_AXIS[family]
    transform = next(axis.transform for axis in families.get(family).extra_axes if axis.name == name)
    return name, Regimes(low=regimes.low, high=regimes.high, transform=transform)


def physical(config: StudyConfig, point: tuple[float, float]) -> dict[str, float]:
    """The regime ``{axis: value}`` at box coordinate ``point``."""
    name, regimes = second_axis(config.family)
    return {families.get(config.family).parameter.name: config.regimes.value(point[0]), name: regimes.value(point[1])}


def simulate_points(settings: AblationSettings, config: StudyConfig, seed: int, role: str,
                    points: Sequence[tuple[float, float]], n: int) -> list[torch.Tensor]:
    """``n`` fresh trajectories at each box point, drawn with the study's data seeding for ``role``."""
    data = config.data
    simulated = families.get(config.family).dataset(
        [physical(config, point) for point in points], n, data.resolution, data.n_frames,
        seed=data_seed(seed, config.family, role), dt_frame=data.dt_frame, device=settings.device, refine=data.refine,
        spinup=data.spinup, cache_dir=settings.folder(config, seed, "data"),
    )
    return [simulated.by_regime(index).trajectories for index in range(len(points))]


def box_training_sets(settings: AblationSettings, line: SeedLine) -> dict[str, TrainingSet]:
    """Training and held-out trajectories of every box expert (``n_endpoint`` and ``n_holdout`` each)."""
    config, points = line.config, list(BOX_EXPERTS.values())
    train = simulate_points(settings, config, line.seed, "box-experts", points, config.data.n_endpoint)
    holdout = simulate_points(settings, config, line.seed, "box-experts-holdout", points, config.data.n_holdout)

    def first_axis(trajectories: torch.Tensor, point: tuple[float, float]) -> torch.Tensor:
        return torch.full((len(trajectories),), point[0], dtype=torch.float64)

    return {name: TrainingSet(trajectories, first_axis(trajectories, point), held, first_axis(held, point))
            for (name, point), trajectories, held in zip(BOX_EXPERTS.items(), train, holdout)}


def box_experts(settings: AblationSettings, line: SeedLine) -> dict[str, ProcessedModel]:
    """The five box experts, fine-tuned from the seed's anchor (cached); provenance records both axes."""
    config = line.config

    def train() -> dict[str, torch.nn.Module]:
        sets = box_training_sets(settings, line)
        parts = {name: (config.regimes.value(point[0]), sets[name]) for name, point in BOX_EXPERTS.items()}
        nets = {name: model.net for name, model in SeedTrainer(config, line.seed, settings.device, settings.progress)
                .finetune_at(line.anchor, parts).items()}
        for name, net in nets.items():  # the recipe records the first axis only; the expert sits on both
            net.provenance["parameter"]["value"] = physical(config, BOX_EXPERTS[name])
        return nets

    nets = cached_nets(settings.folder(config, line.seed, "multi-axis-box"), tuple(BOX_EXPERTS), train)
    return {name: ProcessedModel(net, line.anchor.processor) for name, net in nets.items()}


def box_lines(line: SeedLine, experts: Mapping[str, ProcessedModel]) -> dict[float, CCM]:
    """The lines along axis 1 at each of :data:`LINE_LEVELS`."""
    regimes = line.config.regimes

    def along(low: ProcessedModel, high: ProcessedModel) -> CCM:
        return merge_line(regimes, line.anchor, low, high)

    return {0.0: line.ccm(), -1.0: along(experts["low_low"], experts["high_low"]),
            1.0: along(experts["low_high"], experts["high_high"])}


def nearest_level(c2: float) -> float:
    """The level of :data:`LINE_LEVELS` nearest ``c2``; a tie goes to the study's line (0)."""
    return min(LINE_LEVELS, key=lambda level: (abs(c2 - level), abs(level)))


def box_surface(line: SeedLine, experts: Mapping[str, ProcessedModel]) -> CCMSurface:
    """The affine surface through the five box experts, in physical coordinates."""
    config = line.config
    axis1 = families.get(config.family).parameter.name
    axis2, regimes2 = second_axis(config.family)
    coords = {name: physical(config, point) for name, point in BOX_EXPERTS.items()}
    transform = {axis1: config.regimes.transform, axis2: regimes2.transform}
    return CCMSurface(line.anchor, dict(experts), coords, transform=transform)


def point_errors(line: SeedLine, lines: Mapping[float, CCM], surface: CCMSurface, point: tuple[float, float],
                 trajectories: torch.Tensor) -> Errors:
    """Every two-axis method's errors on the trajectories of one target point."""
    k = line.config.prefix_k

    def on_point(model: torch.nn.Module) -> list[float]:
        return score(model, trajectories, k).rel_l2.tolist()

    by_line = {level: on_point(ccm.at(point[0])) for level, ccm in lines.items()}
    best = min(by_line.values(), key=lambda values: sum(values) / len(values))
    return {"anchor": on_point(line.anchor), "line": by_line[nearest_level(point[1])], "best_line": best,
            "surface": on_point(surface.from_coord(physical(line.config, point)))}


def two_axis_errors(settings: AblationSettings, line: SeedLine) -> dict[str, Any]:
    """``{target: {method: errors}}`` of one seed, and the surface's overall fit residual."""
    experts = box_experts(settings, line)
    lines, surface = box_lines(line, experts), box_surface(line, experts)
    table: dict[str, Any] = {}
    for target, points in TARGETS.items():
        simulated = simulate_points(settings, line.config, line.seed, f"box-test-{target}", points, line.config.data.n_test)
        cells = [point_errors(line, lines, surface, point, trajectories) for point, trajectories in zip(points, simulated)]
        table[target] = {method: [e for cell in cells for e in cell[method]] for method in TWO_AXIS_METHODS}
    table["fit_residual"] = {"surface": surface.fit_residuals()[-1].relative_total}
    return table


# -- summaries, verdict and report --------------------------------------------------------------
def part_summary(seeds: Sequence[Mapping[str, Any]], methods: Sequence[str], surfaces: Sequence[str],
                 baselines: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({cell: {method: summary}}, {cell: {"<surface>_vs_<baseline>": ratio}})`` of one part of one family."""
    cells = [cell for cell in seeds[0] if cell != "fit_residual"]
    summaries = {cell: {m: summary([s[cell][m] for s in seeds]) for m in methods} for cell in cells}
    ratios = {cell: {f"{surface}_vs_{baseline}": ratio_summary([s[cell][surface] for s in seeds],
                                                               [s[cell][baseline] for s in seeds])
                     for surface in surfaces for baseline in baselines} for cell in cells}
    return summaries, ratios


def verdict_of(ratio: Mapping[str, Any]) -> str:
    """Which of surface and line is better by a ratio's 95 % interval (surface / line), or "undecided"."""
    low, high = ratio["ci"]
    return "surface_beats_line" if high < 1.0 else "line_beats_surface" if low > 1.0 else "undecided"


def verdict(ratios: Mapping[str, Mapping[str, Any]], n_seeds: int) -> dict[str, dict[str, float]]:
    """Every surface-vs-line ratio, filed by :func:`verdict_of` as ``"part/family/cell/surface": gm_ratio``.

    With one seed every ratio is "undecided": a seed-clustered interval of one seed is a point.
    """
    filed: dict[str, dict[str, float]] = {"surface_beats_line": {}, "line_beats_surface": {}, "undecided": {}}
    for part, by_family in ratios.items():
        for family, cells in by_family.items():
            for cell, row in cells.items():
                for surface in SURFACES[part]:
                    ratio = row[f"{surface}_vs_line"]
                    kind = verdict_of(ratio) if seeds_give_interval(n_seeds) else "undecided"
                    filed[kind][f"{part}/{family}/{cell}/{surface}"] = ratio["gm_ratio"]
    return filed


def seed_errors(settings: AblationSettings, family: str, seed: int) -> dict[str, Any]:
    """Both parts' errors of one seed of one family."""
    line = seed_line(settings, settings.config(family), seed)
    settings.log(f"  {family} seed {seed}: experts at c = ±1/3, and the five box experts")
    return {"one_axis": one_axis_errors(settings, line), "two_axis": two_axis_errors(settings, line)}


def setup(families_run: Sequence[str]) -> dict[str, Any]:
    """Where the experts and the targets sit, for results.json."""
    axes = {family: {"name": SECOND_AXIS[family][0], "c2=-1": SECOND_AXIS[family][1].low, "c2=+1": SECOND_AXIS[family][1].high}
            for family in families_run}
    return {"inner_experts": INNER_EXPERTS, "second_axis": axes, "box_experts": BOX_EXPERTS, "targets": TARGETS}


def run(settings: AblationSettings) -> AblationOutput:
    families_run = settings.families or FAMILIES
    unknown = [family for family in families_run if family not in SECOND_AXIS]
    if unknown:
        raise KeyError(f"multi_axis has no second axis for {', '.join(unknown)}; choose from {', '.join(SECOND_AXIS)}")
    results: dict[str, Any] = {"one_axis": {}, "two_axis": {}, "ratios": {"one_axis": {}, "two_axis": {}},
                               "fit_residual": {"one_axis": {}, "two_axis": {}}}
    shapes = {"one_axis": (ONE_AXIS_METHODS, ("line",)), "two_axis": (TWO_AXIS_METHODS, ("line", "best_line"))}
    for family in families_run:
        seeds = settings.map_seeds(seed_errors, family)
        for part, (methods, baselines) in shapes.items():
            parts = [seed[part] for seed in seeds]
            results[part][family], results["ratios"][part][family] = part_summary(parts, methods, SURFACES[part], baselines)
            results["fit_residual"][part][family] = {name: [p["fit_residual"][name] for p in parts] for name in SURFACES[part]}
    results["verdict"] = verdict(results["ratios"], len(settings.seeds))
    results["setup"] = setup(families_run)
    return AblationOutput(results, markdown(results))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """One figure per part and family, from ``results.json``'s content."""
    methods = {"one_axis": ONE_AXIS_METHODS, "two_axis": TWO_AXIS_METHODS}
    return {f"{part}_{family}": figure(part, family, cells, methods[part])
            for part in methods for family, cells in results[part].items()}


def figure(part: str, family: str, cells: Mapping[str, Any], methods: Sequence[str]):
    """Each method's mean error per split (or target), with the line's and surfaces' 95 % intervals as bands."""
    def draw(path):
        names = list(cells)
        series = {m: [cells[name][m]["mean"] for name in names] for m in methods}
        banded = [m for m in methods if m == "line" or m in SURFACES[part]]
        bands = {m: ([cells[name][m]["ci"][0] for name in names], [cells[name][m]["ci"][1] for name in names]) for m in banded}
        return plot_series(names, series, path, bands=bands,
                           title=f"{family}, {part.replace('_', ' ')}: surface vs line")
    return draw


def markdown(results: Mapping[str, Any]) -> str:
    lines = ["Mean relative L2 of future frames [95 % CI over seeds], and geometric means of per-trajectory error "
             "ratios (below 1: the surface is better)."]
    lines += part_table(results, "one_axis", "One axis: experts at c = -1, -1/3, +1/3, +1", "split", ONE_AXIS_METHODS)
    lines += part_table(results, "two_axis", "Two axes: experts at the corners and the centre of the box", "target",
                        TWO_AXIS_METHODS)
    return "\n".join(lines + verdict_lines(results))


def part_table(results: Mapping[str, Any], part: str, title: str, cell_name: str, methods: Sequence[str]) -> list[str]:
    """One part's markdown table: every method's mean per family and cell, then every ratio to a line."""
    ratio_names = list(next(iter(next(iter(results["ratios"][part].values())).values())))
    rows = [[family, cell, *(interval(row[m]) for m in methods),
             *(interval(results["ratios"][part][family][cell][name], 3) for name in ratio_names)]
            for family, cells in results[part].items() for cell, row in cells.items()]
    return ["", f"## {title}", "", *table_lines(["family", cell_name, *methods, *ratio_names], rows)]


def verdict_lines(results: Mapping[str, Any]) -> list[str]:
    """The fit residuals and the verdict, as markdown."""
    lines = ["", "## Fit residuals (share of the experts' update norm the surface misses, per seed)", ""]
    for part, by_family in results["fit_residual"].items():
        for family, by_surface in by_family.items():
            lines += [f"- {part} {family} {name}: " + ", ".join(f"{value:.3f}" for value in values)
                      for name, values in by_surface.items()]
    lines += ["", "## Verdict (surface / line, by the 95 % interval of the ratio over seeds; none from one seed)", ""]
    for kind, cells in results["verdict"].items():
        listed = ", ".join(f"{cell} ({ratio:.4f})" for cell, ratio in cells.items()) or "none"
        lines.append(f"- **{kind.replace('_', ' ')}**: {listed}")
    return lines


__all__ = ["nearest_level", "run", "verdict_of"]
