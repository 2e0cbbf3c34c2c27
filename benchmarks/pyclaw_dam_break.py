"""The dam-break solver against PDEBench's: clawpack's pyclaw with its shallow-water Roe solver.

PDEBench generates its radial dam break with pyclaw (``shallow_roe_with_efix_2D``, MC limiter,
dimensional splitting). Both solvers run the same cases as ``benchmarks/dam_break.py``:

* the planar dam break ``h = 2 | 1`` on [-2.5, 2.5] with g = 1 at ``t = 1``: L1 error of the
  depth's cell averages against the exact Riemann solution, at N = 64, 128 and 256 (pyclaw in
  1-D; ours on an N x N grid, one row read);
* the radial dam break (``h_in = 2``, ``r0 = 0.5``, centred) at ``t = 1``: L1 distance to a
  converged 1-D radial solution at 64^2 and 128^2, and frames per second (20 frames of 0.05, one
  trajectory at a time for pyclaw, which has no batch; four at a time for ours, counted as four
  trajectories' frames).

clawpack is not a dependency of this project: it runs in its own interpreter, given by
``--pyclaw-python`` (build it with ``pip install clawpack``, which needs ``gfortran``).

Usage::

    python benchmarks/pyclaw_dam_break.py --pyclaw-python /path/to/venv/bin/python --json OUT
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_FRAMES = 20
# The cases of benchmarks/dam_break.py (the pyclaw interpreter imports neither torch nor that file).
PLANAR_RESOLUTIONS = (64, 128, 256)
RADIAL_RESOLUTIONS = (64, 128)


# -- run inside the pyclaw interpreter: numpy and clawpack only --------------------------------
def pyclaw_planar(resolution: int) -> list[float]:
    from clawpack import pyclaw, riemann

    solver = pyclaw.ClawSolver1D(riemann.shallow_roe_with_efix_1D)
    solver.limiters = pyclaw.limiters.tvd.MC
    solver.bc_lower[0] = solver.bc_upper[0] = pyclaw.BC.extrap
    domain = pyclaw.Domain(pyclaw.Dimension(-2.5, 2.5, resolution, name="x"))
    state = pyclaw.State(domain, 2)
    state.problem_data["grav"] = 1.0
    state.q[0, :] = np.where(state.grid.x.centers < 0, 2.0, 1.0)
    state.q[1, :] = 0.0
    return list(run_controller(solver, state, domain, 1)[-1][0])


def pyclaw_radial(resolution: int) -> tuple[list[list[float]], float]:
    """Final depth of the centred radial dam, and the seconds for its 20 frames."""
    from clawpack import pyclaw, riemann

    solver = pyclaw.ClawSolver2D(riemann.shallow_roe_with_efix_2D)
    solver.limiters = pyclaw.limiters.tvd.MC
    solver.dimensional_split = True
    for axis in (0, 1):
        solver.bc_lower[axis] = solver.bc_upper[axis] = pyclaw.BC.extrap
    x = pyclaw.Dimension(-2.5, 2.5, resolution, name="x")
    y = pyclaw.Dimension(-2.5, 2.5, resolution, name="y")
    domain = pyclaw.Domain([x, y])
    state = pyclaw.State(domain, 3)
    state.problem_data["grav"] = 1.0
    xc, yc = state.grid.p_centers
    state.q[0] = np.where(np.hypot(xc, yc) < 0.5, 2.0, 1.0)
    state.q[1] = state.q[2] = 0.0
    start = time.perf_counter()
    frames = run_controller(solver, state, domain, N_FRAMES)
    return frames[-1][0].tolist(), time.perf_counter() - start


def run_controller(solver: Any, state: Any, domain: Any, n_outputs: int) -> list[Any]:
    from clawpack import pyclaw

    controller = pyclaw.Controller()
    controller.solution = pyclaw.Solution(state, domain)
    controller.solver = solver
    controller.tfinal, controller.num_output_times = 1.0, n_outputs
    controller.keep_copy, controller.output_format, controller.verbosity = True, None, 0
    controller.run()
    return [frame.q.copy() for frame in controller.frames]


def child(out: Path) -> None:
    planar = {str(n): pyclaw_planar(n) for n in PLANAR_RESOLUTIONS}
    radial = {str(n): pyclaw_radial(n) for n in RADIAL_RESOLUTIONS}
    out.write_text(json.dumps({"planar": planar, "radial": radial}))


# -- run in the parent ---------------------------------------------------------------------------
def pyclaw_cases(python: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "pyclaw.json"
        # In the scratch folder: pyclaw writes its log file into the working directory.
        subprocess.run([python, str(Path(__file__).resolve()), "--child", str(out)], check=True, cwd=scratch)
        return json.loads(out.read_text())


def compare(python: str, repeats: int) -> dict[str, Any]:
    """Errors and frame rates of both solvers (ours through benchmarks/dam_break.py's own cases)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dam_break as ours  # the sibling benchmark: our solver's cases and the references

    assert ours.PLANAR_RESOLUTIONS == PLANAR_RESOLUTIONS and ours.RADIAL_RESOLUTIONS == RADIAL_RESOLUTIONS
    reference = ours.radial_reference()
    cases = pyclaw_cases(python)
    pyclaw = {
        "planar_l1": ours.planar_errors({int(n): torch.tensor(h, dtype=torch.float64) for n, h in cases["planar"].items()}),
        # pyclaw indexes q[x, y]; ours depth[y, x].
        "radial_l1": {n: ours.radial_error(torch.tensor(h, dtype=torch.float64).T, reference)
                      for n, (h, _) in cases["radial"].items()},
        "frames_per_second": {n: N_FRAMES / seconds for n, (_, seconds) in cases["radial"].items()},
    }
    mine = ours.summarise(ours.simulate_cases(repeats), reference)
    return {"pyclaw": pyclaw, "neuralop_merge": mine,
            "l1_ratio_128": mine["planar_l1"]["128"] / pyclaw["planar_l1"]["128"],
            "frames_per_second_ratio_128": mine["frames_per_second"]["128"] / pyclaw["frames_per_second"]["128"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyclaw-python", default=sys.executable, help="an interpreter with clawpack installed")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our solver (best kept)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    results = {"machine": {"python": sys.version.split()[0], "torch_threads": args.threads, "clock": "wall"},
               **compare(args.pyclaw_python, args.repeats)}
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        from run import write_results  # benchmarks/run.py; not at the top, since pyclaw's Python runs this file too

        write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
