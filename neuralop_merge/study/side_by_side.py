"""One seed's models trained side by side, each run in its own worker process.

The anchor and the conditioned FNO start at once; the two experts and ``anchor_extra`` start when the
anchor is done. A seed then takes about the time of its longest chain (the anchor, then
``anchor_extra``: 11000 of small16x2d4ex2r's 30000 steps) instead of the sum of its runs, which is
what lets a GPU with many CPU cores finish a protocol within one lent session. Each run seeds
itself from the seed and its own name, so these are the networks :func:`~.models.train_models`
trains one after another (bit for bit on the CPU).

``anchor_extra``'s and the conditioned FNO's budgets follow the experts' steps, so they must be
known before the experts finish: every run goes to its step cap (``patience_fraction=None``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import torch
from torch import nn

from ..training.processing import ProcessedModel
from .config import EXPERTS, StudyConfig, StudyConfigError
from .data import StudyData
from .models import Log, Models, SeedTrainer, fit_anchor, fit_anchor_extra, fit_conditioned, fit_expert

RunResult = tuple[ProcessedModel, dict[str, int], dict[str, float]]


def move_all(model: nn.Module, device: str | torch.device) -> nn.Module:
    """``model`` moved to ``device`` in place, with the tensors its modules keep outside their parameters and buffers.

    ``Module.to`` leaves those where they were: an FNO's cached positional-embedding grid (reused
    while the resolution stays, whatever the device), a neuralop normalizer's running squared mean.
    A CUDA tensor among them could neither outlive the worker that made it nor be passed on to
    another worker, and a grid left on the CPU breaks the model's next forward pass on a GPU.
    """
    def moved(value: Any) -> Any:
        return value.to(device) if isinstance(value, torch.Tensor) else value

    model.to(device)
    for module in model.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor):
                setattr(module, name, moved(value))
            elif isinstance(value, (list, tuple)) and any(isinstance(item, torch.Tensor) for item in value):
                setattr(module, name, type(value)(moved(item) for item in value))
    return model


def fit_in_worker(fit: Callable[..., ProcessedModel], runs: SeedTrainer, threads: int, *args: Any) -> RunResult:
    """One run in a worker process: a model among ``args`` (the anchor) goes to the run's device, the result to the CPU."""
    torch.set_num_threads(threads)
    args = tuple(move_all(arg, runs.device) if isinstance(arg, nn.Module) else arg for arg in args)
    model = fit(runs, *args)
    return move_all(model, "cpu"), runs.steps, runs.seconds


#: How often a worker checks that the process that started it is still alive, in seconds.
PARENT_CHECK_SECONDS = 2.0


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, as every study path that runs work in workers uses.

    Each worker ends itself when the process that started the pool dies: a killed study would
    otherwise leave its workers training a seed for an hour each, with nobody to save the result.
    """
    # spawn, not fork: a forked child would inherit the parent's torch thread pool and any CUDA context.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


def exit_with_parent(parent: int) -> None:
    """Start a daemon thread that ends this worker once ``parent`` is no longer its parent process."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)  # the parent is gone: no one reads this worker's results, and no cleanup is owed

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def check_fixed_budgets(config: StudyConfig) -> None:
    """Refuse a configuration whose runs may stop early: their budgets could not be set before the experts finish."""
    if config.train.patience_fraction is not None:
        raise StudyConfigError(
            f"model_jobs > 1 needs every run trained to its step cap, as at small16x2d4lrcap and the scales registered "
            f"after it; at {config.scale!r} the stopping rule is on (--set patience_fraction=None turns it off), so "
            f"anchor_extra's and the conditioned FNO's budgets wait for the experts' steps"
        )


def check_planned_steps(steps: dict[str, int]) -> None:
    """The budgets planned before the experts finished are the ones the runs took, as in :func:`~.models.train_models`."""
    expert_steps = steps["low"] + steps["high"]
    if steps["anchor_extra"] != expert_steps or steps["conditioned"] != steps["anchor"] + expert_steps:
        raise RuntimeError(f"a run stopped before its step cap, so the side-by-side budgets are wrong: {steps}")


def train_models_side_by_side(config: StudyConfig, data: StudyData, seed: int, *, device: str = "cpu",
                              workers: int = 4, log: Log = print) -> Models:
    """:func:`~.models.train_models` with up to ``workers`` runs at once (4 keeps every run of a seed busy)."""
    check_fixed_budgets(config)
    runs = SeedTrainer(config, seed, device, progress=False)
    expert_steps = 2 * runs.budget(config.train.expert_max_steps)
    steps: dict[str, int] = {}
    seconds: dict[str, float] = {}

    def finish(future: Future) -> ProcessedModel:
        model, run_steps, run_seconds = future.result()
        steps.update(run_steps)
        for name, value in run_seconds.items():  # two workers time "experts": the phase lasts the longer
            seconds[name] = max(value, seconds.get(name, 0.0))
        return model

    with spawn_pool(workers) as pool:
        def start(fit: Callable[..., ProcessedModel], *args: Any) -> Future:
            return pool.submit(fit_in_worker, fit, runs, torch.get_num_threads(), *args)

        log(f"  anchor and parameter-conditioned FNO side by side ({workers} worker processes)")
        conditioned = start(fit_conditioned, data, runs.budget(config.train.anchor_max_steps) + expert_steps)
        anchor = finish(start(fit_anchor, data))
        log(f"  endpoint experts and anchor_extra ({expert_steps} steps) side by side")
        experts = {name: start(fit_expert, anchor, data, name) for name in EXPERTS}
        extra = start(fit_anchor_extra, anchor, data, expert_steps)
        models = [anchor, finish(experts["low"]), finish(experts["high"]), finish(extra), finish(conditioned)]
    check_planned_steps(steps)
    # In the order train_models fills them, so that a record does not show how it was trained.
    steps = {name: steps[name] for name in ("anchor", *EXPERTS, "anchor_extra", "conditioned")}
    seconds = {name: seconds[name] for name in ("anchor", "experts", "anchor_extra", "conditioned")}
    return Models(*(move_all(model, device) for model in models), steps, seconds)


__all__ = ["check_fixed_budgets", "move_all", "spawn_pool", "train_models_side_by_side"]
