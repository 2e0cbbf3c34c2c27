"""``neuralop-merge demo``: the reproduction study of one family, end to end, in minutes on a CPU."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from ..errors import NeuralopMergeError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the CCM study on one PDE family (default: DiffReact, quick scale, ~5 min on 2 CPU cores)",
        description=(
            "Simulate a PDE family, train the anchor on the middle of the parameter axis, fine-tune the low and "
            "high endpoint experts, train a parameter-conditioned FNO on the same data and steps, then compare "
            "anchor, experts, averaging, task arithmetic, fixed α, CCM-Coord, CCM-Prefix, the oracle α and a "
            "wrong-sign control on in-distribution, interpolation and out-of-distribution rollouts. Writes "
            "results.json, results.md and PNG figures. No files needed: the data are simulated."
        ),
    )
    parser.add_argument("--family", default="diffreact", choices=("diffreact", "ns2d", "dam_break"),
                        help="PDE family (default diffreact)")
    parser.add_argument("--scale", default="quick", choices=("quick", "small", "paper"),
                        help="quick: 1 seed, minutes on a CPU; small: the committed CPU results; paper: GPU sizes")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("-o", "--out", type=Path, default=None, help="output folder (default ./ccm-demo-<family>)")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output folder")
    parser.add_argument("--seed", type=int, action="append", dest="seeds", metavar="N",
                        help="seed (repeat for several; default: the scale's seeds, 0 for quick)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: on a shared or 2-core machine more threads are slower)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    tiny = parser.add_argument_group("overrides (for tests and smoke runs)")
    tiny.add_argument("--epochs", type=int, help="train every model for this many epochs instead of the step budget")
    tiny.add_argument("--steps", type=int, help="anchor optimizer steps (experts get half each)")
    tiny.add_argument("--n-train", type=int, help="training trajectories per regime")
    tiny.add_argument("--n-test", type=int, help="test trajectories per regime")
    tiny.add_argument("--resolution", type=int, help="grid size")
    tiny.add_argument("--n-frames", type=int, help="frames per trajectory (> 5)")
    tiny.add_argument("--hidden-channels", type=int, help="FNO width")
    tiny.add_argument("--n-modes", type=int, help="Fourier modes per dimension")
    tiny.add_argument("--n-grid", type=int, help="points of the α grid on [-3, 3] (default 41)")
    parser.set_defaults(func=run)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to mix results into a non-empty folder unless asked to (results are never lost silently)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace its results, or choose another --out")


def run(args: argparse.Namespace) -> int:
    from ..study import get_config, run_study, summary_table

    device = args.device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise NeuralopMergeError(f"--device {device}: CUDA is not available here")
    if args.threads < 1:
        raise NeuralopMergeError(f"--threads must be at least 1, got {args.threads}")
    out = args.out or Path(f"ccm-demo-{args.family}")
    check_out(out, args.overwrite)
    torch.set_num_threads(args.threads)
    config = get_config(args.family, args.scale).with_overrides(
        seeds=tuple(args.seeds) if args.seeds else None,
        epochs=args.epochs,
        steps=args.steps,
        n_train=args.n_train,
        n_test=args.n_test,
        resolution=args.resolution,
        n_frames=args.n_frames,
        hidden_channels=args.hidden_channels,
        n_modes=args.n_modes,
        n_grid=args.n_grid,
    )
    command = "neuralop-merge " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["demo"] else (
        "neuralop-merge demo " + " ".join(shlex.quote(a) for a in _reconstructed(args))
    )
    started = time.perf_counter()
    print(f"CCM study: {config.family}, {config.scale} scale, seeds {list(config.seeds)}, device {device} -> {out}")
    results = run_study(config, out, device=device, progress=not args.no_progress, command=command)
    minutes = (time.perf_counter() - started) / 60
    print()
    print(f"Relative L2 on future frames ({config.family}, {config.scale}, mean ± std over seeds {list(config.seeds)}):")
    print(summary_table(results))
    ood = results["splits"]["ood"]
    print()
    print(
        f"OOD: CCM-Coord {ood['ccm_coord']['mean']:.4f} vs anchor {ood['anchor']['mean']:.4f} "
        f"({results['ood_reduction_vs_anchor']['ccm_coord']:+.1f} %; published {results['published_ood_reduction_vs_anchor']} %), "
        f"average {ood['average']['mean']:.4f}, conditioned FNO {ood['conditioned']['mean']:.4f}."
    )
    print(f"Done in {minutes:.1f} min. Results: {out / 'results.md'}, {out / 'results.json'}; figures: {out}/*.png")
    return 0


def _reconstructed(args: argparse.Namespace) -> list[str]:
    """The options of a call that did not come from the command line (e.g. ``main([...])``)."""
    parts = ["--family", args.family, "--scale", args.scale]
    for name in ("device", "out", "epochs", "steps", "n_train", "n_test", "resolution", "n_frames",
                 "hidden_channels", "n_modes", "n_grid"):
        value = getattr(args, name)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    for seed in args.seeds or []:
        parts += ["--seed", str(seed)]
    return parts
