"""The README's summary table, regenerated from the committed ``results.json`` files, and one study's OOD sides per seed.

    python -m neuralop_merge.study.table examples/results/diffreact examples/results/ns2d examples/results/dam_break
    python -m neuralop_merge.study.table --per-seed examples/results/small16x2d4ex2r/diffreact
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import exit_status
from .config import StudyConfigError, seeds_give_interval
from .markdown import table_lines
from .pipeline import read_record_payload, saved_record_path
from .records import SeedRecord

COMPARED = ("anchor", "average", "anchor_extra", "fixed_alpha", "conditioned")
NAMES = {"anchor": "anchor", "average": "average", "anchor_extra": "anchor + steps", "fixed_alpha": "best fixed α",
         "conditioned": "conditioned FNO"}


def _ratio(cell: dict[str, Any], n_seeds: int) -> str:
    """The ratio with its CI, bold where the CI's upper bound is below 1; one seed has no interval to judge."""
    if not seeds_give_interval(n_seeds):
        return f"{cell['gm_ratio']:.2f} (one seed: no CI)"
    low, high = cell["ci"]
    mark = "**" if high < 1 else ""
    return f"{mark}{cell['gm_ratio']:.2f}{mark} [{low:.2f}, {high:.2f}]"


def rows(results: dict[str, Any]) -> list[list[str]]:
    """One row of cells per OOD side of one family."""
    competence = results["competence"]
    worst = max(competence[k] for k in ("anchor_support", "low_at_low", "high_at_high"))
    return [
        [results["family"], str(len(results["seeds"])), f"{worst:.3f} (≤ {competence['target']})", results["selected_ccm"],
         f"c = {c}", f"{table['ccm']['reduction_vs_anchor']:+.1f} %",
         *(_ratio(results["paired_by_regime"][c][f"ccm_vs_{baseline}"], len(results["seeds"])) for baseline in COMPARED),
         f"{results['published_ood_reduction_vs_anchor']} %"]
        for c, table in results["ood_by_regime"].items()
    ]


def readme_table(folders: list[Path]) -> str:
    columns = ["Family", "seeds", "worst competence (target)", "selected CCM", "OOD side", "mean error vs anchor",
               *(f"ratio vs {NAMES[b]} [95 % CI]" for b in COMPARED), "published"]
    body = [row for folder in folders for row in rows(json.loads((folder / "results.json").read_text()))]
    return "\n".join(table_lines(columns, body))


def _alpha(value: float) -> str:
    """``+1.20``; a grid point that round-off put a hair below zero prints as ``+0.00``."""
    return f"{round(float(value), 2) + 0.0:+.2f}"


def seed_records(folder: Path, seeds: list[int]) -> list[SeedRecord]:
    """The records of ``seeds``, found where the study saves them (:func:`~.pipeline.saved_record_path`)."""
    paths = {seed: saved_record_path(folder, seed) for seed in seeds}
    missing = [seed for seed, path in paths.items() if path is None]
    if missing or not paths:
        wanted = f"seeds {missing}" if missing else "any seed (results.json names none)"
        raise StudyConfigError(f"{folder / 'records'} holds no seed records for {wanted} (records/seed_<s>.json.gz)")
    return [SeedRecord.from_json(read_record_payload(path)["record"]) for path in paths.values()]


def per_seed_table(folder: Path) -> str:
    """Per seed and OOD side: the anchor's, the selected CCM's and the oracle α's mean error, the CCM's cut of
    the anchor's and the range of the α it chose, read from the records of the seeds results.json reports."""
    results = json.loads((folder / "results.json").read_text())
    selected = results["selected_ccm"]
    columns = ["seed", "OOD side", "anchor", selected, "cut", "oracle α: error", "oracle α", f"{selected}: α chosen"]
    body = []
    for record in seed_records(folder, results.get("seeds", [])):
        for regime in (r for r in record.regimes if r.split == "ood"):
            anchor, ccm, oracle = (float(np.mean(regime.methods[m].rel_l2)) for m in ("anchor", selected, "oracle"))
            alphas = np.atleast_1d(regime.methods[selected].alpha if regime.methods[selected].alpha is not None else np.nan)
            body.append([str(record.seed), f"c = {regime.c:g}", f"{anchor:.3f}", f"{ccm:.3f}", f"{100 * (1 - ccm / anchor):+.1f} %",
                         f"{oracle:.3f}", _alpha(regime.methods["oracle"].alpha), f"{_alpha(alphas.min())} to {_alpha(alphas.max())}"])
    return "\n".join(table_lines(columns, body))


def main(argv: list[str]) -> int:
    """Print the README's table of the folders ``argv``, or with ``--per-seed`` first, each folder's per-seed table."""
    if argv[:1] == ["--per-seed"]:
        return exit_status("neuralop_merge.study.table", lambda: print("\n\n".join(per_seed_table(Path(f)) for f in argv[1:])))
    return exit_status("neuralop_merge.study.table", lambda: print(readme_table([Path(folder) for folder in argv])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
