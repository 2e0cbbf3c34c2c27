"""Redraw a finished run's results.md, results.json and figures from its records.json.

    python -m neuralop_merge.study.rerender examples/results/diffreact [more folders...]
"""

from __future__ import annotations

import sys

from .report import rerender


def main(folders: list[str]) -> int:
    for folder in folders:
        rerender(folder)
        print(f"re-rendered {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
