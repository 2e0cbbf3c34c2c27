"""Benchmarks of neuralop-merge's hot paths, written to one JSON file.

Usage::

    python benchmarks/run.py [--quick] [--threads N] [--clock cpu] [--only KEY ...] --json OUT

Measured side by side in one run:

1. rollout steps/s of :func:`neuralop_merge.rollout` against a naive Python loop
   and against neuraloperator's ``Trainer.eval_one_batch_autoreg``, FNO at 32² and
   64² (on CUDA also ``torch.compile`` and CUDA graphs);
2. ``rollout(..., compile=True)`` against eager at the study's sizes (FNO hidden 24,
   8 modes, 4 layers, 32², batch 4 to 16);
3. CCM-Prefix selection time, ``CCM.from_prefix(method="parabolic")`` against the
   sequential 41-point grid, with both choices, on briefly trained models of the
   three study families;
4. the time of one ``fixed_alpha`` merge of a >= 20 M-parameter FNO over the time
   of cloning its input tensors;
5. the peak memory of merging checkpoints from disk, in a fresh subprocess, over
   the bytes of the inputs plus the output (Linux only: it reads /proc).

Each headline key carries ``value``, ``target``, ``met`` and the raw timings.
Every time is the best of several repeats, the figure least disturbed by other
processes on a shared machine. With ``--clock cpu`` (CPU only, use with
``--threads 1``) times are this process's CPU time rather than wall time: on a
machine shared with busier processes, a ``nice`` benchmark's wall time
measures the scheduler more than the code.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import neuralop
import torch
from neuralop.data.transforms.data_processors import DataProcessor
from neuralop.models import FNO
from neuralop.training import Trainer
from torch import Tensor, nn

from neuralop_merge import CCM, merge, rollout, save_model
from neuralop_merge.prefix import select_alpha

ROLLOUT_TARGET = 1.0
PREFIX_TARGET = 8.0
COMPILE_TARGET = 1.2
MERGE_TARGET = 3.0
MEMORY_TARGET = 1.2


#: The clock of every timing: wall time, or process CPU time with ``--clock cpu``.
clock: Callable[[], float] = time.perf_counter


def best_time(run: Callable[[], Any], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls of ``run``, after one warm-up call."""
    return best_times({"run": run}, repeats)["run"]


def best_times(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Shortest wall time of each of ``runs`` over ``repeats`` rounds, after a warm-up.

    The candidates take turns within each round, so a slow spell of a shared
    machine hits all of them alike instead of whichever happened to run then.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, run in runs.items():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            _synchronize()
            start = clock()
            run()
            _synchronize()
            times[name].append(clock() - start)
    return {name: min(values) for name, values in times.items()}


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def machine_info() -> dict[str, Any]:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "neuraloperator": neuralop.__version__,
        "device": device,
    }


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write ``results`` as JSON to ``path``, with the command line that made them (``results`` is left as it is)."""
    command = shlex.join(["python", *sys.argv])  # which benchmark, at which settings, made the file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "command": command}, indent=2))


def headline(value: float, target: float, *, at_least: bool, **raw: Any) -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {"value": round(value, 4), "target": target, "met": bool(met), **raw}


# -- 1. rollout ----------------------------------------------------------------------------
class FeedbackProcessor(DataProcessor):
    """Feeds each prediction back as the next input of ``Trainer.eval_one_batch_autoreg``."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.state: Tensor | None = None

    def to(self, device: torch.device) -> FeedbackProcessor:
        self.device = device
        return self

    def preprocess(self, sample: dict[str, Tensor], step: int = 0) -> dict[str, Tensor]:
        if step == 0:
            self.state = sample["x"].to(self.device)
        # The loss below ignores y; the trainer only needs it to count samples.
        return {"x": self.state, "y": self.state}

    def postprocess(self, out: Tensor, sample: dict[str, Tensor], step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        self.state = out
        return out, sample

    def forward(self, **sample: Tensor) -> Tensor:
        raise TypeError("FeedbackProcessor only serves Trainer.eval_one_batch_autoreg")


def naive_rollout(model: nn.Module, x0: Tensor, n_steps: int) -> Tensor:
    """What a user writes by hand: a loop that stacks the frames at the end."""
    frames = [x0]
    with torch.no_grad():
        for _ in range(n_steps):
            frames.append(model(frames[-1]))
    return torch.stack(frames, dim=1)


def trainer_rollout(model: nn.Module, x0: Tensor, n_steps: int, device: torch.device) -> None:
    trainer = Trainer(model=model, n_epochs=1, device=device, data_processor=FeedbackProcessor(device))
    trainer.n_samples = 0  # set by Trainer.evaluate, which owns the loop we call into
    with torch.no_grad():
        trainer.eval_one_batch_autoreg({"x": x0, "y": x0}, {"zero": lambda out, **_: 0.0}, max_steps=n_steps)


def bench_rollout(quick: bool) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_steps, repeats, batch = (10, 7, 4) if quick else (20, 10, 8)
    results = {}
    for size in (32, 64):
        torch.manual_seed(0)
        model = FNO(n_modes=(12, 12), hidden_channels=32, in_channels=1, out_channels=1).to(device).eval()
        x0 = torch.randn(batch, 1, size, size, device=device)
        timings = best_times(
            {
                "rollout_s": lambda: rollout(model, x0, n_steps),
                "naive_loop_s": lambda: naive_rollout(model, x0, n_steps),
                "trainer_autoreg_s": lambda: trainer_rollout(model, x0, n_steps, device),
            },
            repeats,
        )
        if device.type == "cuda":
            timings.update(_cuda_variants(model, x0, n_steps, repeats))
        steps_per_s = {  # a variant that failed to compile left its error message instead of a time
            k.replace("_s", "_steps_per_s"): round(n_steps / v, 2) for k, v in timings.items() if isinstance(v, float)
        }
        results[f"{size}x{size}"] = {"batch": batch, "n_steps": n_steps, **timings, **steps_per_s}
    speedups = [r["naive_loop_s"] / r["rollout_s"] for r in results.values()]
    return headline(min(speedups), ROLLOUT_TARGET, at_least=True, per_size=results)


def bench_rollout_compile(quick: bool) -> dict[str, Any]:
    """``rollout(..., compile=True)`` against eager at the study's sizes, on this machine's device.

    FNO with hidden 24, 8 modes and 4 layers at 32^2, batch 4, 8 and 16. The
    first compiled rollout (the compilation itself) is timed separately; the
    speed-up is the smallest over the batch sizes.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_steps, repeats = (10, 3) if quick else (20, 5)
    torch.manual_seed(0)
    model = FNO(n_modes=(8, 8), hidden_channels=24, in_channels=1, out_channels=1, n_layers=4).to(device).eval()
    per_batch = {}
    for batch in (4, 8, 16):
        x0 = torch.randn(batch, 1, 32, 32, device=device)
        start = clock()
        rollout(model, x0, n_steps, compile=True)
        _synchronize()
        first_compiled_s = clock() - start
        timings = best_times(
            {
                "eager_s": lambda: rollout(model, x0, n_steps),
                "compiled_s": lambda: rollout(model, x0, n_steps, compile=True),
            },
            repeats,
        )
        per_batch[str(batch)] = {
            **timings, "first_compiled_s": first_compiled_s, "speedup": timings["eager_s"] / timings["compiled_s"],
        }
    speedup = min(entry["speedup"] for entry in per_batch.values())
    return headline(speedup, COMPILE_TARGET, at_least=True, n_steps=n_steps, per_batch=per_batch)


def _cuda_variants(model: nn.Module, x0: Tensor, n_steps: int, repeats: int) -> dict[str, float]:
    timings = {}
    for label, mode in (("compile", True), ("cuda_graphs", "reduce-overhead")):
        try:
            timings[f"rollout_{label}_s"] = best_time(lambda: rollout(model, x0, n_steps, compile=mode), repeats)
        except Exception as error:  # a missing compiler toolchain must not lose the other numbers
            first_line = next(iter(str(error).splitlines()), "")  # some compiler errors carry no message
            timings[f"rollout_{label}_error"] = f"{type(error).__name__}: {first_line}"
    return timings


# -- 2. CCM-Prefix -------------------------------------------------------------------------
class ResidualFNO(nn.Module):
    """``x + scale * FNO(x / scale)`` at the study's size: a one-step model of one family."""

    def __init__(self, channels: int, scale: Tensor) -> None:
        super().__init__()
        self.fno = FNO(n_modes=(8, 8), hidden_channels=24, in_channels=channels, out_channels=channels, n_layers=4)
        self.register_buffer("scale", scale.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.scale * self.fno(x / self.scale)


def fit(model: nn.Module, pairs: dict[str, Tensor], steps: int, seed: int) -> nn.Module:
    """``steps`` Adam steps (batch 8) of one-step MSE on ``pairs``; returns ``model``, trained in place."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.randint(len(pairs["x"]), (8,), generator=generator)
        loss = nn.functional.mse_loss(model(pairs["x"][batch]), pairs["y"][batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def study_family_case(name: str, quick: bool) -> tuple[CCM, list[Tensor]]:
    """A CCM line of the study's family ``name`` and observed prefixes (k = 4) of its test regimes.

    The anchor is trained on the support regimes (c = -0.3, 0, 0.3) and each
    expert is fine-tuned from it at its endpoint (c = -1, +1), on the study's
    axes and grid (32^2), briefly: the models only have to make the prefix
    error curves the search meets in the study, not to be good surrogates.
    """
    from neuralop_merge import families
    from neuralop_merge.study.config import AXES

    family = families.get(name)
    # The study's axis on the family's own coordinate transform (log for viscosities).
    axis = dataclasses.replace(AXES[name], transform=family.parameter.transform)
    steps = 60 if quick else 150

    def pairs(coords: tuple[float, ...], seed: int) -> dict[str, Tensor]:
        trajectories = family.dataset(axis.values(coords), 8, 32, seed=seed).trajectories
        return {"x": trajectories[:, :-1].flatten(0, 1), "y": trajectories[:, 1:].flatten(0, 1)}

    support = pairs(axis.support, seed=0)
    torch.manual_seed(0)
    anchor = fit(ResidualFNO(len(family.channels), support["x"].std(dim=(0, 2, 3))), support, 2 * steps, seed=0)
    low = fit(copy.deepcopy(anchor).train(), pairs((-1.0,), seed=1), steps, seed=1)
    high = fit(copy.deepcopy(anchor).train(), pairs((1.0,), seed=2), steps, seed=2)
    ccm = CCM(anchor, low, high, low_coord=axis.low, high_coord=axis.high, transform=axis.transform)
    targets = family.dataset(axis.values((-2.0, -1.0, 0.5, 2.0)), 1, 32, n_frames=4, seed=3).trajectories
    return ccm, [trajectory[None] for trajectory in targets]


def bench_prefix(quick: bool) -> dict[str, Any]:
    """The product path (``CCM.from_prefix``, parabolic search) against a user's sequential
    41-point sweep (``select_alpha(ccm.at, ..., method="grid")``, one merged model per α),
    on one trajectory at a time (as the study does) of the three study families."""
    spacing = 6.0 / 40
    runs, grid_total, fast_total = [], 0.0, 0.0
    for name in ("diffreact", "ns2d", "dam_break"):
        ccm, prefixes = study_family_case(name, quick)
        for frames in prefixes:
            start = clock()
            grid = select_alpha(ccm.at, frames, method="grid")
            grid_s = clock() - start
            start = clock()
            fast = ccm.from_prefix(frames, method="parabolic")
            fast_s = clock() - start
            grid_error, fast_error = _error_of_choice(grid), _error_of_choice(fast)
            grid_total += grid_s
            fast_total += fast_s
            runs.append({
                "family": name,
                "grid_alpha": grid.alpha, "fast_alpha": fast.alpha,
                "grid_error": grid_error, "fast_error": fast_error,
                "grid_evaluations": grid.n_evaluations, "fast_evaluations": fast.n_evaluations,
                "grid_s": grid_s, "fast_s": fast_s,
                "within_one_step": abs(fast.alpha - grid.alpha) <= spacing + 1e-9,
            })
    return headline(
        grid_total / fast_total, PREFIX_TARGET, at_least=True,
        all_within_one_step=all(r["within_one_step"] for r in runs), grid_s=grid_total, fast_s=fast_total,
        runs=runs,
    )


def _error_of_choice(search: Any) -> float:
    return search.errors[search.alphas.tolist().index(search.alpha)].item()


# -- 3. and 4. merge cost ------------------------------------------------------------------
def big_fno(seed: int) -> FNO:
    torch.manual_seed(seed)
    return FNO(n_modes=(48, 48), hidden_channels=64, in_channels=1, out_channels=1, n_layers=5)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values() if torch.is_tensor(t))


def bench_merge(quick: bool) -> dict[str, Any]:
    repeats = 2 if quick else 5
    anchor, low, high = big_fno(0), big_fno(1), big_fno(2)
    inputs = [t for m in (anchor, low, high) for t in m.state_dict().values() if torch.is_tensor(t)]

    def run_merge() -> nn.Module:
        return merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.3)

    # The first merge of new inputs also hashes them for provenance (cached afterwards).
    start = clock()
    run_merge()
    first_merge_s = clock() - start
    merge_s = best_time(run_merge, repeats)
    clone_s = best_time(lambda: [t.clone() for t in inputs], repeats)
    return headline(
        merge_s / clone_s, MERGE_TARGET, at_least=False,
        parameters=parameter_count(anchor), merge_s=merge_s, clone_inputs_s=clone_s,
        first_merge_s=first_merge_s, first_merge_over_clone=first_merge_s / clone_s,
    )


# ru_maxrss would be wrong here: Linux carries it over from the forking parent,
# which holds the benchmark's own models. The child instead resets its
# high-water mark (VmHWM) after the imports and reads it after the merge.
PEAK_SCRIPT = """
import json, sys
from pathlib import Path
from neuralop_merge import merge

def kib(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1])

baseline = kib("VmRSS:")
Path("/proc/self/clear_refs").write_text("5")
merged = merge("fixed_alpha", anchor=sys.argv[1], experts=[sys.argv[2], sys.argv[3]], alpha=0.3)
print(json.dumps({"baseline_kib": baseline, "peak_kib": kib("VmHWM:")}))
"""


def bench_merge_memory() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for seed, name in enumerate(("anchor", "low", "high")):
            model = big_fno(seed)
            paths.append(str(save_model(model, folder, name=name)))
        model_bytes = state_bytes(model)
        child = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, *paths], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
    usage = json.loads(child.stdout.strip().splitlines()[-1])
    extra_bytes = (usage["peak_kib"] - usage["baseline_kib"]) * 1024
    needed_bytes = 4 * model_bytes
    return headline(
        extra_bytes / needed_bytes, MEMORY_TARGET, at_least=False,
        inputs_plus_output_bytes=needed_bytes, peak_minus_baseline_bytes=extra_bytes,
        method="VmHWM reset after imports (Linux)", **usage,
    )


#: Headline keys and the benchmark that measures each.
BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "rollout_speedup_vs_naive": bench_rollout,
    "rollout_compile_speedup": bench_rollout_compile,
    "prefix_speedup_vs_grid": bench_prefix,
    "merge_over_clone": bench_merge,
    "merge_peak_mem_ratio": lambda quick: bench_merge_memory(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (< 2 minutes)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", required=True, type=Path, help="where to write the results")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what the timings measure")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if torch.cuda.is_available():
            parser.error("--clock cpu times CPU work only; GPU runs need wall time")
        global clock
        clock = time.process_time
    results = {"machine": {**machine_info(), "clock": args.clock, "niceness": os.nice(0)}, "quick": args.quick}
    for key, bench in BENCHMARKS.items():
        if args.only is None or key in args.only:
            results[key] = bench(args.quick)
    write_results(args.json, results)
    print(json.dumps({k: v["value"] for k, v in results.items() if isinstance(v, dict) and "value" in v}))


if __name__ == "__main__":
    main()
