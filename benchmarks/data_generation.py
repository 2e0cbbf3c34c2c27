"""Throughput of the PDE regime families' data generation.

Measures, on the CPU and (when available) on CUDA:

* frames per second of each family at 64^2 with its default frame spacing;
* the wall time of the demo data set: diffreact, 5 regimes x 32 trajectories
  x 50 frames at 32^2 (target: under 60 s on a 2-core CPU).

Usage::

    python benchmarks/data_generation.py [--quick] --json OUT
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from neuralop_merge import families
from run import write_results  # benchmarks/run.py, beside this script

DEMO = {"family": "diffreact", "n_regimes": 5, "n_per_param": 32, "n_frames": 50, "resolution": 32}


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, work) -> float:
    _synchronise(device)
    start = time.perf_counter()
    work()
    _synchronise(device)
    return time.perf_counter() - start


def family_throughput(name: str, device: torch.device, n_trajectories: int, n_frames: int) -> dict:
    """Frames per second of one family at 64^2 (default parameter and frame spacing)."""
    family = families.get(name)
    # A tiny warm-up run keeps one-off costs (kernel loading, FFT plans) out of the timing.
    family.simulate(family.sample_initial(1, 16, device=device), n_frames=1)
    initial = family.sample_initial(n_trajectories, 64, seed=0, device=device)
    seconds = _timed(device, lambda: family.simulate(initial, n_frames=n_frames))
    return {
        "family": name,
        "resolution": 64,
        "trajectories": n_trajectories,
        "frames": n_frames,
        "dt_frame": family.default_dt_frame,
        "seconds": seconds,
        "frames_per_second": n_trajectories * n_frames / seconds,
    }


def demo_dataset_seconds(device: torch.device) -> dict:
    """Wall time of generating the demo data set (no cache)."""
    family = families.get(DEMO["family"])
    regimes = family.parameter.spaced(2.5e-4, 4e-3, DEMO["n_regimes"])
    seconds = _timed(
        device,
        lambda: family.dataset(
            regimes, DEMO["n_per_param"], DEMO["resolution"], DEMO["n_frames"], seed=0, device=device
        ),
    )
    frames = DEMO["n_regimes"] * DEMO["n_per_param"] * DEMO["n_frames"]
    return {**DEMO, "regimes": regimes, "seconds": seconds, "frames_per_second": frames / seconds}


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "neuraloperator": metadata.version("neuraloperator"),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trajectories and frames per family")
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    args = parser.parse_args(argv)
    n_trajectories, n_frames = (4, 2) if args.quick else (16, 5)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for name in families.available():
            entry = {"device": str(device), **family_throughput(name, device, n_trajectories, n_frames)}
            print(f"{device} {name:10s} 64^2: {entry['frames_per_second']:8.1f} frames/s", flush=True)
            results.append(entry)
        demo = {"device": str(device), **demo_dataset_seconds(device)}
        print(f"{device} demo data set ({demo['n_regimes']}x{demo['n_per_param']}x{demo['n_frames']} "
              f"at {demo['resolution']}^2): {demo['seconds']:.1f} s", flush=True)
        results.append(demo)
    report = {"machine": machine_info(), "quick": args.quick, "results": results}
    write_results(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
