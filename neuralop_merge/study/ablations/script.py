"""The command line of ``examples/ablations.py``: one ablation per call, written to its own folder."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from ...errors import exit_status
from ..config import SCALES, scale_seeds
from ..script import parse_setting, positive_int
from . import NAMES, get

DEFAULT_OUT = Path("examples") / "results" / "ablations"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Run one ablation of the CCM study on the committed study's set-up.")
    p.add_argument("name", choices=NAMES, help="the ablation")
    p.add_argument("--scale", default="small", choices=SCALES,
                   help="the study scale whose models are ablated (default small, the committed study's)")
    p.add_argument("--seed", type=int, action="append", dest="seeds", metavar="N",
                   help="seed (repeat; default the scale's first three: 0 1 2 for small)")
    p.add_argument("--family", action="append", dest="families", metavar="NAME", help="family (repeat; default: the ablation's)")
    p.add_argument("-o", "--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT}/NAME; at another scale, {DEFAULT_OUT}-SCALE/NAME)")
    p.add_argument("--cache", type=Path, default=DEFAULT_OUT / ".cache",
                   help="folder of trained models and simulated data shared by the ablations (default %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="train everything afresh and keep nothing")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="run the seeds in up to N worker processes (each with --threads threads); the results are "
                        "those of a run without --jobs (default 1)")
    p.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=VALUE",
                   help="override a study setting, e.g. --set n_test=2 (tests, smoke runs)")
    p.add_argument("--redraw", action="store_true",
                   help="only redraw the figures of the output folder from its results.json (no training, no scoring)")
    return p


def default_out(name: str, scale: str) -> Path:
    """``examples/results/ablations/NAME`` for the committed small scale; other scales get a folder of their own."""
    folder = DEFAULT_OUT if scale == "small" else DEFAULT_OUT.with_name(f"{DEFAULT_OUT.name}-{scale}")
    return folder / name


def redraw(name: str, out: Path) -> int:
    """Draw ``name``'s figures again from ``out/results.json``, as the run that wrote it would."""
    path = out / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: cannot redraw {name} from {path}: {error}") from None
    found = results.get("ablation") if isinstance(results, dict) else None
    if found != name:
        raise SystemExit(f"error: {path} holds the ablation {found!r}, not {name!r}")
    from .base import draw_figures

    print(f"{name}: redrew {', '.join(draw_figures(out, get(name).figures(results)))} in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import torch

    from .base import AblationSettings, write_outputs

    cli = parser()
    args = cli.parse_args(argv)
    if args.redraw:
        return redraw(args.name, args.out or default_out(args.name, args.scale))
    torch.set_num_threads(args.threads)
    settings = AblationSettings(
        seeds=tuple(args.seeds or scale_seeds(args.scale)[:3]),
        families=tuple(args.families) if args.families else None, scale=args.scale,
        overrides=dict(args.set), cache=None if args.no_cache else args.cache, jobs=args.jobs,
    )
    out = args.out or default_out(args.name, args.scale)
    command = "python " + shlex.join(["examples/ablations.py", *(sys.argv[1:] if argv is None else argv)])

    def ablate() -> None:
        started = time.perf_counter()
        ablation = get(args.name)
        write_outputs(out, args.name, ablation.run(settings), ablation.figures, command=command, seeds=settings.seeds,
                      scale=settings.scale)
        print(f"{args.name}: done in {(time.perf_counter() - started) / 60:.1f} min -> {out / 'results.md'}")

    return exit_status("examples/ablations.py", ablate)
