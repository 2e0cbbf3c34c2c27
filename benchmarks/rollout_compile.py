"""``rollout(..., compile=...)`` against eager on this machine's CPU, at the study's sizes.

Usage::

    python benchmarks/rollout_compile.py [--threads 1] [--repeats 5] --json OUT

FNO with hidden 24, 8 modes and 4 layers at 32², 1 channel at batch 8 and 3
channels at batch 16, 20 steps. Each way of compiling is timed against eager in the same rounds
(they take turns, so a slow spell of the shared machine hits both alike), after
one warm-up call that also compiles; the best of ``--repeats`` is kept. The
ways tried, all timed end to end as a user calls them:

- ``compile_default``: ``rollout(model, x0, 20, compile=True)``;
- ``compile_max_autotune``: ``compile="max-autotune-no-cudagraphs"`` (inductor
  benchmarks its kernel choices);
- ``precompiled_static``: ``rollout(torch.compile(model, dynamic=False), ...)``,
  the model compiled once for fixed shapes and reused;
- ``whole_rollout``: the 20-step loop itself compiled, so inductor may fuse
  across steps; not a ``rollout`` option, measured to see whether the loop
  around the model leaves anything to gain.

neuraloperator contracts its spectral weights through tensorly's opt_einsum
plugin, whose ``threading.get_ident`` call dynamo cannot trace: every spectral
layer breaks the graph (``fullgraph=True`` fails). The same variants are then
measured again with tensorly's plain einsum (``torch.einsum``, one graph per
step or per rollout), against eager with that einsum and against today's eager.

Times are this process's CPU time (``time.process_time``) with ``--threads 1``,
the clock a busy shared machine disturbs least; wall times are recorded beside
them. The headline ``rollout_compile_speedup`` is ``compile_default``'s worst
case over the configurations (eager time over compiled time), against 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorly.plugins
import torch
from neuralop.models import FNO
from torch import Tensor, nn

from neuralop_merge import rollout
from run import machine_info, write_results  # benchmarks/run.py, beside this script

TARGET = 1.2
N_STEPS = 20
CONFIGS = [(1, 8), (3, 16)]  # (channels, batch)


def timed(run: Callable[[], Any]) -> tuple[float, float]:
    """CPU and wall seconds of one call of ``run``."""
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def best_of(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Best CPU and wall time of each run over ``repeats`` rounds, after one warm-up call each.

    The warm-up compiles; its own time is recorded as ``first_call_cpu_s`` (and
    printed): inductor's on-disk cache makes it shorter on a second run.
    """
    first = {}
    for name, run in runs.items():
        first[name] = timed(run)[0]
        print(f"{name}: first call {first[name]:.1f} s of CPU", file=sys.stderr, flush=True)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(timed(run))
    return {
        name: {
            "cpu_s": round(min(cpu for cpu, _ in values), 5),
            "wall_s": round(min(wall for _, wall in values), 5),
            "first_call_cpu_s": round(first[name], 3),
        }
        for name, values in samples.items()
    }


def whole_rollout(model: nn.Module, n_steps: int, *, fullgraph: bool) -> Callable[[Tensor], Tensor]:
    """The ``n_steps`` loop of ``model`` compiled (as one graph with ``fullgraph``)."""

    def steps(x: Tensor) -> Tensor:
        frames = [x]
        for _ in range(n_steps):
            frames.append(model(frames[-1]))
        return torch.stack(frames, dim=1)

    compiled = torch.compile(steps, fullgraph=fullgraph, dynamic=False)

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return compiled(x)

    return run


def opt_einsum_variants(model: nn.Module, x0: Tensor) -> dict[str, Callable[[], Any]]:
    """Eager and every way of compiling, as zero-argument calls on ``x0``, with neuraloperator's einsum."""
    static = torch.compile(model, dynamic=False)
    whole = whole_rollout(model, N_STEPS, fullgraph=False)
    return {
        "eager": lambda: rollout(model, x0, N_STEPS),
        "compile_default": lambda: rollout(model, x0, N_STEPS, compile=True),
        "compile_max_autotune": lambda: rollout(model, x0, N_STEPS, compile="max-autotune-no-cudagraphs"),
        "precompiled_static": lambda: rollout(static, x0, N_STEPS),
        "whole_rollout": lambda: whole(x0),
    }


def torch_einsum_variants(model: nn.Module, x0: Tensor) -> dict[str, Callable[[], Any]]:
    """The same with tensorly's plain einsum, which dynamo traces without a graph break."""
    whole = whole_rollout(model, N_STEPS, fullgraph=True)
    return {
        "eager_torch_einsum": lambda: rollout(model, x0, N_STEPS),
        "compile_default_torch_einsum": lambda: rollout(model, x0, N_STEPS, compile=True),
        "whole_rollout_torch_einsum": lambda: whole(x0),
    }


def measure(channels: int, batch: int, repeats: int) -> dict[str, Any]:
    """Timings and speed-ups over eager of every variant for one configuration."""
    torch._dynamo.reset()  # no graph compiled for another shape is reused (nor made dynamic)
    torch.manual_seed(0)
    model = FNO(n_modes=(8, 8), hidden_channels=24, in_channels=channels, out_channels=channels, n_layers=4).eval()
    x0 = torch.randn(batch, channels, 32, 32)
    timings = best_of(opt_einsum_variants(model, x0), repeats)
    torch._dynamo.reset()
    tensorly.plugins.use_default_einsum()
    try:
        timings.update(best_of(torch_einsum_variants(model, x0), repeats))
    finally:
        tensorly.plugins.use_opt_einsum("optimal")  # what neuraloperator sets at import
    return {
        "timings": timings,
        "speedup_cpu_time": speedups(timings, "cpu_s"),
        "speedup_wall_time": speedups(timings, "wall_s"),
        "torch_einsum_speedup_over_its_eager_cpu_time": {
            name: round(timings["eager_torch_einsum"]["cpu_s"] / timings[name]["cpu_s"], 3)
            for name in ("compile_default_torch_einsum", "whole_rollout_torch_einsum")
        },
    }


def speedups(timings: dict[str, dict[str, float]], clock: str) -> dict[str, float]:
    """Eager (neuraloperator's einsum) time over each other variant's, on ``clock``."""
    eager = timings["eager"][clock]
    return {name: round(eager / entry[clock], 3) for name, entry in timings.items() if name != "eager"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per configuration (default 5)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    per_config: dict[str, Any] = {}
    for channels, batch in CONFIGS:
        # Written after every configuration: on a busy machine a run can take an hour.
        per_config[f"channels{channels}_batch{batch}"] = measure(channels, batch, args.repeats)
        summary = write_report(args.json, per_config, args.repeats)
    print(json.dumps(summary))
    return 0


def write_report(path: Path, per_config: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Write the JSON report of the configurations measured so far; returns its headline."""
    worst_case = {
        name: min(entry["speedup_cpu_time"][name] for entry in per_config.values())
        for name in next(iter(per_config.values()))["speedup_cpu_time"]
    }
    value = worst_case["compile_default"]
    report = {
        "machine": {**machine_info(), "niceness": os.nice(0)},
        "clock": "process CPU time (time.process_time); wall times recorded beside",
        "rollout_compile_speedup": {"value": value, "target": TARGET, "met": value >= TARGET},
        "worst_case_speedup_cpu_time_by_variant": worst_case,
        "n_steps": N_STEPS,
        "repeats": repeats,
        "complete": len(per_config) == len(CONFIGS),
        "per_config": per_config,
    }
    write_results(path, report)
    return {"rollout_compile_speedup": value, "by_variant": worst_case}


if __name__ == "__main__":
    sys.exit(main())
