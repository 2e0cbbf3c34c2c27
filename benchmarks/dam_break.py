"""Accuracy and speed of the dam-break solver, today's against a baseline commit's.

Measured for both solvers, each in its own subprocess (the baseline from a
``git archive`` of ``--baseline``):

* the L1 error, integrated over x, of the depth's cell averages on the planar
  dam break ``h = 2 | 1`` at ``t = 1`` against the exact Riemann solution
  (:mod:`neuralop_merge.families.riemann`), at N = 64, 128 and 256;
* the L1 error, integrated over the domain, of the radial dam break
  (``h_in = 2``, ``r0 = 0.5``, centred, ``t = 1``) against a converged 1-D
  radial solution (the shallow-water equations in ``r`` with their geometric
  source, 8192 cells), at N = 64 and 128;
* frames per second at 64^2 and 128^2 (4 trajectories, float32, default
  frames), best of several repeats, the two solvers taking turns.

Usage::

    python benchmarks/dam_break.py [--baseline REV] [--threads N] --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import torch
from run import write_results  # benchmarks/run.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
PLANAR_RESOLUTIONS = (64, 128, 256)
RADIAL_RESOLUTIONS = (64, 128)
SPEED_RESOLUTIONS = (64, 128)
PLANAR_TARGET = 1.2e-2
FINAL_TIME = 1.0


# -- run inside each solver's subprocess: only the public family API --------------------------
def simulate_cases(repeats: int) -> dict[str, Any]:
    """Final depths of the planar and radial cases and the frame rates of the importable solver."""
    from neuralop_merge import families

    family = families.get("dam_break")
    n_frames = round(FINAL_TIME / family.default_dt_frame)
    planar, radial, speed = {}, {}, {}
    for resolution in PLANAR_RESOLUTIONS:
        x, _ = family.grid(resolution, dtype=torch.float64)
        dam = torch.zeros(1, 3, resolution, resolution, dtype=torch.float64)
        dam[:, 0] = torch.where(x < 0, 2.0, 1.0)
        planar[resolution] = family.simulate(dam, n_frames=n_frames)[0, -1, 0, :, resolution // 2]
    for resolution in RADIAL_RESOLUTIONS:
        dam = family.dam_state(resolution, torch.zeros(1, 2), {"h_in": 2.0, "r0": 0.5}, dtype=torch.float64)
        radial[resolution] = family.simulate(dam, {"h_in": 2.0, "r0": 0.5}, n_frames=n_frames)[0, -1, 0]
    for resolution in SPEED_RESOLUTIONS:
        initial = family.sample_initial(4, resolution, seed=0)
        family.simulate(initial, n_frames=1)  # warm-up
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            family.simulate(initial)
            seconds.append(time.perf_counter() - start)
        speed[resolution] = 4 * family.default_n_frames / min(seconds)
    return {"planar": planar, "radial": radial, "frames_per_second": speed, "package": families.__file__}


# -- run in the parent: references and errors --------------------------------------------------
def radial_reference(cells: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Converged depth ``h(r)`` at ``t = 1`` of the centred default dam, from the 1-D radial equations.

    ``h_t + (hu)_r = -hu / r`` and ``(hu)_t + (hu^2 + g h^2 / 2)_r = -hu^2 / r`` on the
    whole line ``r in [-R, R]`` (``h`` even, ``u`` odd, so no boundary at the centre),
    with the dam-break family's own 1-D sweep for the flux and Strang-split Heun
    steps for the source; ``R`` reaches the corners of the square domain.
    """
    from neuralop_merge import families

    family = families.get("dam_break")
    reach = 2.5 * 2**0.5 + 0.5
    spacing = 2 * reach / cells
    radius = -reach + spacing * (torch.arange(cells, dtype=torch.float64) + 0.5)
    state = torch.zeros(1, 3, cells, 1, dtype=torch.float64)
    state[0, 0, :, 0] = torch.where(radius.abs() < 0.5, 2.0, 1.0)
    column = radius.view(1, 1, -1, 1)

    def source(current: torch.Tensor) -> torch.Tensor:
        discharge = current[:, 1:2]
        velocity = discharge / current[:, :1]
        return -torch.cat((discharge, discharge * velocity, torch.zeros_like(discharge)), dim=1) / column

    def half_source(current: torch.Tensor, dt: float) -> torch.Tensor:
        predictor = current + 0.5 * dt * source(current)
        return 0.5 * (current + predictor + 0.5 * dt * source(predictor))

    elapsed = 0.0
    while elapsed < FINAL_TIME - 1e-12:
        depth = state[:, 0]
        speed = float((state[:, 1].abs() / depth + (family.gravity * depth).sqrt()).max())
        dt = min(family.cfl * spacing / speed, FINAL_TIME - elapsed)
        # The family's x sweep is the 1-D MUSCL-Hancock step; a grid one cell wide makes it 1-D.
        state = half_source(family._sweep_x(half_source(state, dt), dt / spacing), dt)
        elapsed += dt
    keep = radius > 0
    return radius[keep], state[0, 0, :, 0][keep]


def radial_error(depth: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor], subsamples: int = 4) -> float:
    """L1 distance, integrated over the square, of cell averages to the interpolated radial reference."""
    from neuralop_merge import families

    radius, profile = reference
    resolution = depth.shape[-1]
    x, y = families.get("dam_break").grid(resolution * subsamples, dtype=torch.float64)
    points = (x**2 + y**2).sqrt().flatten()
    position = ((points - radius[0]) / (radius[1] - radius[0])).clamp(0, len(radius) - 1.000001)
    lower = position.floor().long()
    weight = position - lower
    sampled = (1 - weight) * profile[lower] + weight * profile[lower + 1]
    exact = torch.nn.functional.avg_pool2d(sampled.view(1, 1, *x.shape), subsamples)[0, 0]
    return float((depth - exact).abs().sum()) * (5.0 / resolution) ** 2


def planar_errors(planar: dict[int, torch.Tensor]) -> dict[str, float]:
    from neuralop_merge.families.riemann import RiemannProblem

    errors = {}
    for resolution, depth in planar.items():
        exact, _ = RiemannProblem(2.0, 1.0).cell_averages(-2.5, 2.5, resolution, FINAL_TIME)
        errors[str(resolution)] = float((depth - exact).abs().sum()) * 5.0 / resolution
    return errors


def run_solver(tree: Path, threads: int, repeats: int) -> dict[str, Any]:
    """``simulate_cases`` of the package under ``tree``, in a fresh subprocess."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "cases.pt"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, __file__, "--simulate", str(out), "--threads", str(threads), "--repeats", str(repeats)]
        subprocess.run(command, env=env, check=True, cwd=tree)
        return torch.load(out, weights_only=True)


def export_tree(revision: str, into: Path) -> Path:
    """The ``neuralop_merge`` package of ``revision``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "neuralop_merge"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def summarise(cases: dict[str, Any], reference: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    return {
        "planar_l1": planar_errors(cases["planar"]),
        "radial_l1": {str(n): radial_error(depth, reference) for n, depth in cases["radial"].items()},
        "frames_per_second": {str(n): fps for n, fps in cases["frames_per_second"].items()},
        "package": cases["package"],
    }


def compare(baseline: str, threads: int, repeats: int, rounds: int) -> dict[str, Any]:
    """Both solvers' summaries; frame rates are the best over ``rounds`` alternating subprocess runs."""
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"before": export_tree(baseline, Path(scratch)), "after": ROOT}
        runs = {name: [] for name in trees}
        for _ in range(rounds):
            for name, tree in trees.items():
                runs[name].append(run_solver(tree, threads, repeats))
    reference = radial_reference()
    results = {}
    for name, cases in runs.items():
        results[name] = summarise(cases[0], reference)
        for n in SPEED_RESOLUTIONS:
            results[name]["frames_per_second"][str(n)] = max(case["frames_per_second"][n] for case in cases)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="f9f2167", help="commit of the previous solver (default: minmod-HLLE)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each solver run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per solver")
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--simulate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.simulate is not None:
        torch.save(simulate_cases(args.repeats), args.simulate)
        return 0
    if args.json is None:
        parser.error("--json is required")
    # The references and errors use this checkout's package, whatever is installed.
    sys.path.insert(0, str(ROOT))
    results = compare(args.baseline, args.threads, args.repeats, args.rounds)
    after, before = results["after"], results["before"]
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": args.threads,
            "niceness": os.nice(0),
        },
        "baseline_commit": args.baseline,
        "planar_l1_128": {
            "value": after["planar_l1"]["128"],
            "target": PLANAR_TARGET,
            "met": after["planar_l1"]["128"] <= PLANAR_TARGET,
        },
        "radial_l1_closer": all(after["radial_l1"][n] < before["radial_l1"][n] for n in after["radial_l1"]),
        "frames_per_second_ratio_128": after["frames_per_second"]["128"] / before["frames_per_second"]["128"],
        **results,
    }
    write_results(args.json, report)
    print(json.dumps({key: report[key] for key in ("planar_l1_128", "radial_l1_closer", "frames_per_second_ratio_128")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
