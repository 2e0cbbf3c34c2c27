"""The README's summary table, regenerated from the committed ``results.json`` files.

    python -m neuralop_merge.study.table examples/results/diffreact examples/results/ns2d examples/results/dam_break
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .markdown import table_lines

COMPARED = ("anchor", "average", "anchor_extra", "fixed_alpha", "conditioned")
NAMES = {"anchor": "anchor", "average": "average", "anchor_extra": "anchor + steps", "fixed_alpha": "best fixed α",
         "conditioned": "conditioned FNO"}


def _ratio(cell: dict[str, Any]) -> str:
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
         *(_ratio(results["paired_by_regime"][c][f"ccm_vs_{baseline}"]) for baseline in COMPARED),
         f"{results['published_ood_reduction_vs_anchor']} %"]
        for c, table in results["ood_by_regime"].items()
    ]


def readme_table(folders: list[Path]) -> str:
    columns = ["Family", "seeds", "worst competence (target)", "selected CCM", "OOD side", "mean error vs anchor",
               *(f"ratio vs {NAMES[b]} [95 % CI]" for b in COMPARED), "published"]
    body = [row for folder in folders for row in rows(json.loads((folder / "results.json").read_text()))]
    return "\n".join(table_lines(columns, body))


def main(argv: list[str]) -> int:
    print(readme_table([Path(folder) for folder in argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
