"""Benchmarks of neuralop-merge's hot paths, written to one JSON file.

Usage::

    python benchmarks/run.py [--quick] [--threads N] --json OUT

Measured side by side in one run:

1. rollout steps/s of :func:`neuralop_merge.rollout` against a naive Python loop
   and against neuraloperator's ``Trainer.eval_one_batch_autoreg``, FNO at 32² and
   64² (on CUDA also ``torch.compile`` and CUDA graphs);
2. CCM-Prefix selection time, ``method="fast"`` against the sequential 41-point
   grid, with both choices;
3. the time of one ``fixed_alpha`` merge of a >= 20 M-parameter FNO over the time
   of cloning its input tensors;
4. the peak memory of merging checkpoints from disk, in a fresh subprocess, over
   the bytes of the inputs plus the output (Linux only: it reads /proc).

Each headline key carries ``value``, ``target``, ``met`` and the raw timings.
Every time is the best of several repeats, the figure least disturbed by other
processes on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
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
PREFIX_TARGET = 3.0
MERGE_TARGET = 3.0
MEMORY_TARGET = 1.2


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
            start = time.perf_counter()
            run()
            _synchronize()
            times[name].append(time.perf_counter() - start)
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
        steps_per_s = {k.replace("_s", "_steps_per_s"): round(n_steps / v, 2) for k, v in timings.items()}
        results[f"{size}x{size}"] = {"batch": batch, "n_steps": n_steps, **timings, **steps_per_s}
    speedups = [r["naive_loop_s"] / r["rollout_s"] for r in results.values()]
    return headline(min(speedups), ROLLOUT_TARGET, at_least=True, per_size=results)


def _cuda_variants(model: nn.Module, x0: Tensor, n_steps: int, repeats: int) -> dict[str, float]:
    timings = {}
    for label, mode in (("compile", True), ("cuda_graphs", "reduce-overhead")):
        try:
            timings[f"rollout_{label}_s"] = best_time(lambda: rollout(model, x0, n_steps, compile=mode), repeats)
        except Exception as error:  # a missing compiler toolchain must not lose the other numbers
            timings[f"rollout_{label}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return timings


# -- 2. CCM-Prefix -------------------------------------------------------------------------
class ResidualFNO(nn.Module):
    """x + FNO(x): a one-step model whose rollouts stay in range."""

    def __init__(self) -> None:
        super().__init__()
        self.fno = FNO(n_modes=(8, 8), hidden_channels=16, in_channels=1, out_channels=1, n_layers=2)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fno(x)


def ccm_case(seed: int) -> CCM:
    """A CCM line through a random residual-FNO anchor and two experts near it.

    The experts differ from the anchor by a shared and a signed random update, the
    shape fine-tuning gives them, scaled so that rollouts stay in range on [-3, 3].
    """
    torch.manual_seed(seed)
    anchor, shared, direction = ResidualFNO(), ResidualFNO(), ResidualFNO()
    base, shared, direction = (
        {k: v for k, v in m.state_dict().items() if torch.is_tensor(v)} for m in (anchor, shared, direction)
    )
    low, high = copy.deepcopy(anchor), copy.deepcopy(anchor)
    for expert, sign in ((low, -1.0), (high, 1.0)):
        expert.load_state_dict({
            key: value + 0.1 * (shared[key] - value) + sign * 0.1 * (direction[key] - value)
            for key, value in base.items()
        })
    return CCM(anchor, low, high, low_coord=-1.0, high_coord=1.0)


def bench_prefix() -> dict[str, Any]:
    """The product path (``CCM.from_prefix``, fast search) against a user's sequential
    41-point sweep (``select_alpha(ccm.at, ..., method="grid")``, one merged model per α)."""
    cases = [(0, 0.7), (1, -1.9), (2, 2.4), (3, -0.3)]
    spacing = 6.0 / 40
    runs, grid_total, fast_total = [], 0.0, 0.0
    for seed, true_alpha in cases:
        ccm = ccm_case(seed)
        frames = rollout(ccm.at(true_alpha), torch.randn(4, 1, 32, 32), 4)
        frames = frames + 0.05 * frames.std() * torch.randn_like(frames)
        start = time.perf_counter()
        grid = select_alpha(ccm.at, frames, method="grid")
        grid_s = time.perf_counter() - start
        start = time.perf_counter()
        fast = ccm.from_prefix(frames, method="fast").search
        fast_s = time.perf_counter() - start
        grid_error, fast_error = _error_of_choice(grid), _error_of_choice(fast)
        grid_total += grid_s
        fast_total += fast_s
        runs.append({
            "true_alpha": true_alpha,
            "grid_alpha": grid.alpha, "fast_alpha": fast.alpha,
            "grid_error": grid_error, "fast_error": fast_error,
            "grid_evaluations": grid.n_evaluations, "fast_evaluations": fast.n_evaluations,
            "grid_s": grid_s, "fast_s": fast_s,
            "agrees": abs(fast.alpha - grid.alpha) <= spacing + 1e-9 and fast_error <= 1.01 * grid_error,
        })
    return headline(
        grid_total / fast_total, PREFIX_TARGET, at_least=True,
        all_agree=all(r["agrees"] for r in runs), grid_s=grid_total, fast_s=fast_total, runs=runs,
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
    start = time.perf_counter()
    run_merge()
    first_merge_s = time.perf_counter() - start
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (< 2 minutes)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", required=True, type=Path, help="where to write the results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"machine": machine_info(), "quick": args.quick}
    results["rollout_speedup_vs_naive"] = bench_rollout(args.quick)
    results["prefix_speedup_vs_grid"] = bench_prefix()
    results["merge_over_clone"] = bench_merge(args.quick)
    results["merge_peak_mem_ratio"] = bench_merge_memory()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v["value"] for k, v in results.items() if isinstance(v, dict) and "value" in v}))


if __name__ == "__main__":
    main()
