"""``results.md``: the study's tables and verdicts, written from ``results.json``'s content alone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..atomic import write_text
from .config import COMPETENCE_VS_PERSISTENCE, seeds_give_interval
from .records import LABELS

SPLIT_NAMES = {
    "support": "Support (the anchor's regimes)",
    "id": "ID (endpoints)",
    "interp": "Interpolation",
    "ood": "OOD (extrapolation)",
}
HEADLINE_BASELINES = ("anchor", "average", "anchor_extra", "fixed_alpha", "conditioned")


def table_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table: the header, the separator and one line per row.

    Parameters
    ----------
    columns
        The header cells.
    rows
        The body rows; each cell is written with ``str``, so numbers come already formatted.

    Returns
    -------
    list[str]
        The table's lines, without a trailing newline.
    """
    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(cell) for cell in cells) + " |"

    return [line(columns), "|---" * len(columns) + "|", *(line(row) for row in rows)]


def captioned_table(caption: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A caption, a blank line, then :func:`table_lines`' table, as one block of text.

    Parameters
    ----------
    caption
        The text above the table.
    columns, rows
        As for :func:`table_lines`.

    Returns
    -------
    str
        The block, without a trailing newline.
    """
    return "\n".join([caption, "", *table_lines(columns, rows)])


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean(row: dict[str, Any], digits: int = 4) -> str:
    """``mean ± std`` (std over seed means), without a ± where one seed leaves no spread."""
    text = _number(row["mean"], digits)
    return text if row.get("std") is None else f"{text} ± {row['std']:.{digits}f}"


def _ci(row: dict[str, Any], n_seeds: int, digits: int = 4) -> str:
    """``[lo, hi]``; one seed's clustered bootstrap returns its mean twice, which is no interval."""
    if not seeds_give_interval(n_seeds):
        return "(one seed: no CI)"
    low, high = row["ci"]
    return f"[{_number(low, digits)}, {_number(high, digits)}]"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}"


def split_tables(results: dict[str, Any]) -> list[str]:
    """Mean future-frame relative L2 per split and method, with failures."""
    splits = list(results["splits"])
    rows = []
    for method in results["splits"][splits[0]]:
        cells = []
        for split in splits:
            failed = results["failures"][method][split]
            cells.append(_mean(results["splits"][split][method]) + (f" ({failed} failed)" if failed else ""))
        rows.append([LABELS[method], *cells])
    return table_lines(["Method", *(SPLIT_NAMES[s] for s in splits)], rows)


def ood_side_table(results: dict[str, Any]) -> list[str]:
    """Each OOD side on its own: mean with clustered 95 % CI, and the reduction of the anchor's mean."""
    sides = list(results["ood_by_regime"])
    rows = []
    for method in results["ood_by_regime"][sides[0]]:
        cells = []
        for c in sides:
            row = results["ood_by_regime"][c][method]
            cells += [f"{_number(row['mean'])} {_ci(row, len(results['seeds']))}", f"{row['reduction_vs_anchor']:+.1f} %"]
        rows.append([LABELS[method], *cells])
    # each side takes two columns, as its cells do: the mean with its interval, then the reduction
    columns = ["Method", *(name for c in sides for name in (f"c = {c}: mean [95 % CI]", "vs anchor"))]
    return table_lines(columns, rows)


def paired_table(results: dict[str, Any]) -> list[str]:
    """The selected CCM against each baseline, pooled over OOD and per side."""
    sides = list(results["paired_by_regime"])
    rows = []
    for baseline in (*HEADLINE_BASELINES, "persistence"):
        key = f"ccm_vs_{baseline}"
        cells = [results["paired"][key], *(results["paired_by_regime"][c][key] for c in sides)]
        rows.append([LABELS[baseline], *(f"{cell['gm_ratio']:.3f} {_ci(cell, len(results['seeds']), 3)}, p = {_p(cell['p'])}"
                                         for cell in cells)])
    return table_lines(["ccm vs", "OOD pooled: ratio [95 % CI], p", *(f"c = {c}: ratio [CI], p" for c in sides)], rows)


def competence_lines(results: dict[str, Any]) -> list[str]:
    c = results["competence"]
    beats = c["expert_beats_anchor_at_own_endpoint"]
    return [
        f"- Target: mean relative L2 ≤ {c['target']} and ≤ {COMPETENCE_VS_PERSISTENCE} × persistence.",
        f"- Anchor on its support: **{c['anchor_support']:.4f}** (persistence {c['persistence_support']:.4f}); "
        f"low expert at c = −1: **{c['low_at_low']:.4f}**; high expert at c = +1: **{c['high_at_high']:.4f}** "
        f"(persistence on the endpoints {c['persistence_id']:.4f}).",
        f"- Target met: **{'yes' if c['meets_target'] else 'no'}**; within {COMPETENCE_VS_PERSISTENCE} × persistence: "
        f"**{'yes' if c['within_persistence_fraction'] else 'no'}**.",
        f"- Expert better than the anchor at its own endpoint (geometric mean over its trajectories), per seed: "
        f"low {beats['low']}, high {beats['high']}.",
        divergence_line(c),
    ]


def diverged_models(competence: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The models that broke the no-divergence rule, each with its count of diverged trajectories, from its verdict keys."""
    return [(model, count) for model, count in competence["diverged_in_distribution"].items() if count]


def divergence_line(competence: dict[str, Any]) -> str:
    """The no-divergence rule's verdict, naming the models that broke it."""
    broke = [f"{LABELS[model]}: {count} trajectories" for model, count in diverged_models(competence)]
    verdict = f"**no** ({'; '.join(broke)})." if broke else "**yes**."
    return ("- No anchor, expert or CCM model diverges (relative L2 > 1 or non-finite) on a support, endpoint or "
            f"interpolation trajectory: {verdict}")


def verdict_lines(results: dict[str, Any]) -> list[str]:
    """The pre-registered goals, each answered from the numbers."""
    published, lines = results["published_ood_reduction_vs_anchor"], []
    for baseline in ("anchor", "average", "anchor_extra", "fixed_alpha", "conditioned"):
        for c, table in results["paired_by_regime"].items():
            cell = table[f"ccm_vs_{baseline}"]
            if not seeds_give_interval(len(results["seeds"])):
                lines.append(f"- c = {c}, ccm vs {LABELS[baseline]}: ratio {cell['gm_ratio']:.3f}; one seed, so no interval "
                             "and no verdict.")
                continue
            won = cell["ci"][1] < 1
            lines.append(f"- c = {c}, ccm vs {LABELS[baseline]}: ratio {cell['gm_ratio']:.3f}, CI upper bound "
                         f"{cell['ci'][1]:.3f} → {'**beats it**' if won else 'not shown to beat it'}.")
    for c, table in results["ood_by_regime"].items():
        reduction = table["ccm"]["reduction_vs_anchor"]
        lines.append(f"- c = {c}: ccm reduces the anchor's mean OOD error by {reduction:+.1f} % "
                     f"(published {published} %): {'reached' if reduction >= published else '**not reached**'}.")
    return lines


def prefix_lines(prefix: dict[str, Any] | None) -> list[str]:
    """Per OOD side and seed: where the prefix error along θ(α) is lowest, the oracle α, and CCM-Prefix's search."""
    if prefix is None:  # results.json of a report older than the diagnostic
        return []
    sides = prefix["ood"]
    agree = ", ".join(f"c = {c}: {side['same_side']} of {len(side['seeds'])} seeds" for c, side in sides.items())
    rows = [
        [c, row["seed"], f"{row['lowest_prefix_alpha']:+.2f}", _number(row["lowest_prefix_error"], 3),
         f"{row['oracle_alpha']:+.2f}", _number(row["oracle_prefix_error"], 3), f"{row['ccm_prefix_mean_alpha']:+.2f}",
         _number(row["ccm_prefix_prefix_error"], 3), "**yes**" if row["search_missed"] else "no", row["line_from"]]
        for c, side in sides.items() for row in side["seeds"]
    ]
    columns = ["c", "seed", "lowest prefix error at α", "its error", "oracle α", "its prefix error",
               "CCM-Prefix's mean α", "its prefix error", "search missed", "α scanned"]
    return [
        f"- Prefix error (frames 1..k) along θ(α) against the future's: the lowest prefix error and the oracle α lie on the "
        f"same side of α = 0 in {agree}. CCM-Prefix's search missed the minimum of its own criterion (its prefix error "
        f"above a single α's) on {prefix['search_missed']} of {prefix['regimes']} (seed, test regime) cells. α scanned: "
        "the whole grid where the record keeps the prefix curve, else the recorded single-α models (experts, average, "
        "fixed, coordinate, oracle, wrong-sign α).",
        "", *table_lines(columns, rows),
    ]


def write_markdown(results: dict[str, Any], path: Path, figures: list[str]) -> None:
    """results.md: the command first, then competence, the tables, the verdicts and the figures."""
    law, hits = results["coordinate_law"], results["edge_hits"]
    lines = [
        f"# CCM study: {results['family']} ({results['scale']} scale, seeds {results['seeds']})", "",
        "Produced by:", "", "```bash", results["command"] or "(no command recorded)", "```", "",
        f"Seeds computed on: {results.get('device') or 'unknown'}.", "",
        f"Selected CCM variant (validation regimes only): **{results['selected_ccm']}**. "
        "Errors: relative L2 on the future frames (after the 4 observed ones), mean ± std over seed means.", "",
        "## Are the models competent?", "", *competence_lines(results), "",
        "## Every method, every split", "", *split_tables(results), "",
        "## Out of distribution, each side on its own", "", *ood_side_table(results), "",
        "## The selected CCM against the baselines (geometric mean of per-trajectory error ratios)", "",
        "CI: 95 % bootstrap resampling seeds; p: two-sided Wilcoxon over (seed, regime) cells.", "",
        *paired_table(results), "",
        "## Verdicts (pre-registered goals)", "", *verdict_lines(results), "",
        "## Diagnostics", "",
        f"- Coordinate law over all test regimes and seeds: oracle α ≈ {law['slope']:.2f}·c + {law['intercept']:.2f}, "
        f"Pearson r = {_number(law['pearson_r'], 2)}.",
        f"- α-range edge hits: the oracle on {hits['oracle_regimes']} regime(s), CCM-Prefix on "
        f"{hits['ccm_prefix_trajectories']} trajectory(ies).",
        *prefix_lines(results.get("prefix_vs_future")), "",
        *(f"![{name}]({name})" for name in figures),
    ]
    write_text(path, "\n".join(lines) + "\n", overwrite=True)


__all__ = ["captioned_table", "table_lines", "write_markdown"]
