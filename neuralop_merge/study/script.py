"""The one implementation behind ``neuralop-merge demo`` and ``examples/<family>.py``.

Both parse the same options into a :class:`StudyRun` and call :func:`execute`. Outputs go where
``--out`` says, relative to the working directory, never into the installed package.
"""

from __future__ import annotations

import argparse
import ast
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import exit_status
from .config import FAMILIES, SCALE_SUMMARIES, SCALES, StudyConfigError, get_config, scale_seeds, seeds_give_interval


@dataclass(frozen=True)
class StudyRun:
    """What to run: a family at a scale, where to, and any setting overridden (tiny test runs)."""

    family: str
    scale: str
    out: Path
    seeds: tuple[int, ...] | None = None
    device: str | None = None
    threads: int = 1
    jobs: int = 1
    model_jobs: int = 1
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)


def parse_setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with VALUE a Python literal (``n_test=2``, ``alpha_range=(-4.0, 4.0)``)."""
    name, separator, value = text.partition("=")
    if not separator or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if name == "seeds":  # --seed has its own option; two sources of seeds would collide later
        raise argparse.ArgumentTypeError(f"{text!r}: give seeds with --seed N, once per seed")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"{text!r}: VALUE must be a number, tuple or quoted string") from None


def positive_int(text: str) -> int:
    """An argparse type for counts such as ``--jobs`` and ``--threads``: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, scale: str, out_help: str) -> None:
    """The options shared by the demo and the example scripts."""
    parser.add_argument("--scale", default=scale, choices=SCALES,
                        help="; ".join(f"{name}: {summary}, seeds {' '.join(map(str, scale_seeds(name)))}"
                                       for name, summary in SCALE_SUMMARIES.items()) + f" (default {scale})")
    parser.add_argument("--seed", type=int, action="append", dest="seeds", metavar="N",
                        help="seed (repeat for several; default: the scale's seeds)")
    parser.add_argument("-o", "--out", type=Path, default=None, help=out_help)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads for torch (default 1: on a shared or 2-core machine more threads are slower)")
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                        help="run N seeds at once, one process each with --threads threads (default 1; "
                             "on a 2-core machine, 2 halves a multi-seed run's time)")
    parser.add_argument("--model-jobs", type=positive_int, default=1, metavar="N",
                        help="train N of a seed's models at once, one process each (default 1; the models are the same; "
                             "needs every run trained to its step cap, as from small16x2d4lrcap on; 4 keeps them all "
                             "busy, for a machine with cores to spare such as a GPU host)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--set", type=parse_setting, action="append", default=[], metavar="NAME=VALUE",
                        help="override one study setting, e.g. --set n_test=2 --set anchor_max_steps=20 (tests, smoke runs)")


def run_from_args(args: argparse.Namespace, family: str, default_out: Path) -> StudyRun:
    return StudyRun(
        family=family, scale=args.scale, out=args.out or default_out, seeds=tuple(args.seeds) if args.seeds else None,
        device=args.device, threads=args.threads, jobs=args.jobs, model_jobs=args.model_jobs, progress=not args.no_progress,
        overrides=dict(args.set),
    )


def execute(run: StudyRun, command: str) -> dict[str, Any]:
    """Run (or resume) the study, print its headline, return results.json's content."""
    import torch

    from .pipeline import run_study

    device = run.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StudyConfigError(f"--device {device}: CUDA is not available here")
    torch.set_num_threads(run.threads)
    config = get_config(run.family, run.scale).with_overrides(seeds=run.seeds, **run.overrides)
    print(f"CCM study: {config.family}, {config.scale} scale, seeds {list(config.seeds)}, device {device} -> {run.out}")
    started = time.perf_counter()
    results = run_study(config, run.out, device=device, progress=run.progress, command=command, jobs=run.jobs,
                        model_jobs=run.model_jobs)
    print(headline(results))
    print(f"Done in {(time.perf_counter() - started) / 60:.1f} min. Results: {run.out / 'results.md'}")
    return results


def headline(results: dict[str, Any]) -> str:
    """Competence, then the selected CCM against the anchor on each OOD side."""
    competence = results["competence"]
    lines = [
        f"Competence (rel. L2, target ≤ {competence['target']}): anchor on support {competence['anchor_support']:.4f}, "
        f"low at c=-1 {competence['low_at_low']:.4f}, high at c=+1 {competence['high_at_high']:.4f}; "
        f"persistence {competence['persistence_id']:.4f}.",
        f"Selected CCM variant (validation): {results['selected_ccm']}.",
    ]
    for c, table in results["ood_by_regime"].items():
        ccm, anchor = table["ccm"], table["anchor"]
        cell = results["paired_by_regime"][c]["ccm_vs_anchor"]
        spread = (f"95 % CI [{cell['ci'][0]:.3f}, {cell['ci'][1]:.3f}] over seeds"
                  if seeds_give_interval(len(results["seeds"])) else "one seed, so no interval")
        lines.append(
            f"OOD c={c}: ccm {ccm['mean']:.4f} vs anchor {anchor['mean']:.4f} ({ccm['reduction_vs_anchor']:+.1f} % of the mean; "
            f"per-trajectory ratio {cell['gm_ratio']:.3f}, {spread}; published {results['published_ood_reduction_vs_anchor']} %)."
        )
    return "\n".join(lines)


def main(family: str, argv: list[str] | None = None) -> int:
    """``examples/<family>.py``: the study of one family, writing examples/results/<family>/ by default."""
    if family not in FAMILIES:
        raise StudyConfigError(f"unknown study family {family!r}")
    parser = argparse.ArgumentParser(description=f"The CCM reproduction study on {family}.")
    add_arguments(parser, scale="small", out_help=f"output folder (default examples/results/{family}, from the working directory)")
    args = parser.parse_args(argv)
    words = sys.argv[1:] if argv is None else argv

    def study() -> None:
        run = run_from_args(args, family, Path("examples") / "results" / family)
        execute(run, "python " + shlex.join([f"examples/{family}.py", *words]))

    return exit_status(f"examples/{family}.py", study)


__all__ = ["StudyRun", "add_arguments", "execute", "headline", "main", "parse_setting", "run_from_args"]
