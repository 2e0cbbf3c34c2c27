"""Where ``torch.compile`` changes neuraloperator's FNO: relative L2 of compiled against eager.

Usage::

    python benchmarks/compile_gaps.py [--modes 4 6 8 12 16] [--sizes 16 24 32 48 64] --json OUT

For each number of Fourier modes, one FNO (hidden 32, 4 layers, 1 channel, ``torch.manual_seed(0)``)
is compiled afresh for each grid size (batch 4) and its output compared with eager's on the same
random input. This is a correctness scan, not a timing: it is why ``rollout(..., compile=...)``
checks its first compiled step against eager. Runs on CUDA when there is one, with TF32 off so
that only the compiler can make a gap. The headline ``compile_gap_max`` is the largest gap.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from neuralop.models import FNO

from neuralop_merge.rollout import COMPILE_CHECK_TOLERANCE
from run import machine_info, write_results  # benchmarks/run.py, beside this script

#: A gap beyond the tolerance of rollout's own compiled-step check (float32, no autocast) counts as a
#: miscompilation; float32 round-off of the same model stays far below it.
MISCOMPILED = COMPILE_CHECK_TOLERANCE[None]


def compile_gap(model: torch.nn.Module, size: int, device: torch.device) -> float:
    """Relative L2 between the compiled and the eager model on one random input of ``size``²."""
    torch._dynamo.reset()  # a fresh compile for each shape, as a new process would make
    inputs = torch.randn(4, 1, size, size, device=device)
    with torch.no_grad():
        eager = model(inputs)
        compiled = torch.compile(model)(inputs)
    return float((compiled - eager).norm() / eager.norm())


def scan(modes: list[int], sizes: list[int], device: torch.device) -> dict[str, dict[str, float]]:
    """Gap per number of modes and grid size; sizes too small for the modes are left out."""
    gaps: dict[str, dict[str, float]] = {}
    for n_modes in modes:
        torch.manual_seed(0)
        model = FNO(n_modes=(n_modes, n_modes), hidden_channels=32, in_channels=1, out_channels=1).to(device).eval()
        gaps[str(n_modes)] = {str(size): compile_gap(model, size, device) for size in sizes if size >= n_modes}
        print(f"modes {n_modes:2d}: " + "  ".join(f"{size}²: {gap:.1e}" for size, gap in gaps[str(n_modes)].items()),
              flush=True)
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", type=int, nargs="+", default=[4, 6, 8, 12, 16])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 24, 32, 48, 64])
    parser.add_argument("--json", required=True, type=Path, help="where to write the results")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    warnings.simplefilter("ignore")  # inductor's notes on complex operators and dynamo's on graph breaks
    gaps = scan(args.modes, args.sizes, device)
    worst = max(gap for row in gaps.values() for gap in row.values())
    miscompiled = [f"{n_modes} modes at {size}²" for n_modes, row in gaps.items()
                   for size, gap in row.items() if gap > MISCOMPILED]
    write_results(args.json, {
        "machine": machine_info(),
        "compile_gap_max": {"value": worst, "miscompiled": miscompiled, "threshold": MISCOMPILED, "gaps": gaps},
    })
    print(f"miscompiled (relative L2 > {MISCOMPILED:g}): {', '.join(miscompiled) or 'none'}")


if __name__ == "__main__":
    main()
