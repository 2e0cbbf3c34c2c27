"""The README's summary table, regenerated from the committed ``results.json`` files.

    python -m neuralop_merge.study.table examples/results/diffreact examples/results/ns2d examples/results/dam_break
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COMPARED = ("anchor", "average", "anchor_extra", "fixed_alpha", "conditioned")
NAMES = {"anchor": "anchor", "average": "average", "anchor_extra": "anchor + steps", "fixed_alpha": "best fixed α",
         "conditioned": "conditioned FNO"}


def _ratio(cell: dict[str, Any]) -> str:
    low, high = cell["ci"]
    mark = "**" if high < 1 else ""
    return f"{mark}{cell['gm_ratio']:.2f}{mark} [{low:.2f}, {high:.2f}]"


def rows(results: dict[str, Any]) -> list[str]:
    """One row per OOD side of one family."""
    competence = results["competence"]
    worst = max(competence[k] for k in ("anchor_support", "low_at_low", "high_at_high"))
    lines = []
    for c, table in results["ood_by_regime"].items():
        paired = results["paired_by_regime"][c]
        cells = [_ratio(paired[f"ccm_vs_{baseline}"]) for baseline in COMPARED]
        lines.append(
            f"| {results['family']} | {len(results['seeds'])} | {worst:.3f} (≤ {competence['target']}) | "
            f"{results['selected_ccm']} | c = {c} | {table['ccm']['reduction_vs_anchor']:+.1f} % | "
            + " | ".join(cells) + f" | {results['published_ood_reduction_vs_anchor']} % |"
        )
    return lines


def readme_table(folders: list[Path]) -> str:
    header = ("| Family | seeds | worst competence (target) | selected CCM | OOD side | mean error vs anchor | "
              + " | ".join(f"ratio vs {NAMES[b]} [95 % CI]" for b in COMPARED) + " | published |")
    lines = [header, "|---" * (7 + len(COMPARED)) + "|"]
    for folder in folders:
        lines += rows(json.loads((folder / "results.json").read_text()))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    print(readme_table([Path(folder) for folder in argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
