"""Start-up time of the ``neuralop-merge`` command line, against importing neuraloperator.

Each command runs as a fresh ``python`` process with this checkout first on
``PYTHONPATH``; the commands take turns within each round and the best time
of each is kept (the figure least disturbed by other processes). Both the
wall time and the child's CPU time (user + system) are recorded; the ratios
use CPU time, which a busy shared machine disturbs far less.
Target (issue 14): ``neuralop-merge --help`` in at most 0.25x the time of
``python -c "import neuralop"``.

Usage::

    python benchmarks/cli_startup.py [--rounds N] --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.25
COMMANDS = {
    "help": ["-m", "neuralop_merge", "--help"],
    "list": ["-m", "neuralop_merge", "list"],
    "argument_error": ["-m", "neuralop_merge", "merge", "fixed_alpha", "--alpha", "not-a-number"],
    "import_neuralop": ["-c", "import neuralop"],
    "python_only": ["-c", "pass"],
}


def timed_run(arguments: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one ``python ARGUMENTS`` process, start to exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before, start = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, *arguments], env=env, cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start, _children_cpu() - before


def _children_cpu() -> float:
    """User + system CPU seconds of every finished child process, to the microsecond."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_times(rounds: int) -> dict[str, dict[str, float]]:
    """Best wall and CPU time of ``rounds`` runs of each command, after one warm-up run of each."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for arguments in COMMANDS.values():
        timed_run(arguments)
    for _ in range(rounds):
        for name, arguments in COMMANDS.items():
            runs[name].append(timed_run(arguments))
    return {
        name: {"wall_s": min(wall for wall, _ in values), "cpu_s": min(cpu for _, cpu in values)}
        for name, values in runs.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    args = parser.parse_args(argv)
    seconds = best_times(args.rounds)

    def over_import(name: str) -> float:
        return round(seconds[name]["cpu_s"] / seconds["import_neuralop"]["cpu_s"], 4)

    ratio = over_import("help")
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "niceness": os.nice(0),
        },
        "help_over_import_neuralop": {
            "value": ratio,
            "target": TARGET,
            "met": ratio <= TARGET,
            "wall_time_ratio": round(seconds["help"]["wall_s"] / seconds["import_neuralop"]["wall_s"], 4),
        },
        "list_over_import_neuralop": over_import("list"),
        "argument_error_over_import_neuralop": over_import("argument_error"),
        "seconds": seconds,
        "rounds": args.rounds,
    }
    from run import write_results  # benchmarks/run.py; it imports torch, which this script's own start need not

    write_results(args.json, report)
    print(json.dumps(report["help_over_import_neuralop"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
