"""The shared command line of ``examples/<family>.py``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch


def main(family: str, argv: Sequence[str] | None = None) -> int:
    from . import get_config, run_study, summary_table

    parser = argparse.ArgumentParser(description=f"The CCM reproduction study on {family}.")
    parser.add_argument("--scale", default="small", choices=("quick", "small", "paper"),
                        help="quick: 1 seed, minutes; small: 3 seeds on a CPU (the committed results); paper: GPU sizes")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the scale's)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default examples/results/{family})")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    out = args.out or Path(__file__).resolve().parents[2] / "examples" / "results" / family
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        parser.error(f"{out} is not empty; pass --overwrite to replace its results")
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = get_config(family, args.scale).with_overrides(seeds=tuple(args.seeds) if args.seeds else None)
    script = f"examples/{family}.py"
    command = "python " + " ".join(shlex.quote(a) for a in [script, *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    results = run_study(config, out, device=device, progress=not args.no_progress, command=command)
    print(summary_table(results))
    print(f"done in {(time.perf_counter() - started) / 60:.1f} min -> {out}")
    return 0
