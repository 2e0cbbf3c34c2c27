"""Helpers for data-parallel training with ``torch.distributed`` (DDP)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from ..errors import TrainingError


def require_process_group() -> None:
    """Raise :class:`TrainingError` unless ``torch.distributed`` is initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        raise TrainingError(
            "use_distributed=True needs an initialised torch.distributed process group "
            "(launch with torchrun and call torch.distributed.init_process_group first)"
        )


def is_main_process() -> bool:
    """Whether this process is rank 0, or the only process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def wrap_data_parallel(model: nn.Module, device: str | torch.device) -> DistributedDataParallel:
    """Wrap a model in DDP on ``device``, CPU included.

    neuraloperator's ``Trainer`` always passes ``device_ids=[rank]``, which DDP
    rejects for CPU modules (the gloo case); GPU modules get their own device.

    Parameters
    ----------
    model : nn.Module
        The model; it is moved to ``device``.
    device : str or torch.device
        Device of this process.

    Returns
    -------
    DistributedDataParallel
    """
    device = torch.device(device)
    model = model.to(device)
    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device], output_device=device)
    return DistributedDataParallel(model)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper, or ``model`` itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def shard_loader(loader: DataLoader, seed: int) -> DataLoader:
    """Rebuild ``loader`` so that each rank iterates over its own shard.

    Parameters
    ----------
    loader : DataLoader
        Loader over the full dataset; its batch size, collation, workers and
        shuffling choice are kept.
    seed : int
        Seed of the shuffling, shared by all ranks so that the shards are disjoint.

    Returns
    -------
    DataLoader
        A loader with a :class:`DistributedSampler`; every rank gets the same
        number of batches, which DDP needs to stay in lock-step.
    """
    sampler = DistributedSampler(
        loader.dataset,
        shuffle=isinstance(loader.sampler, RandomSampler),
        seed=seed,
        drop_last=loader.drop_last,
    )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
    )


def mean_over_ranks(value: float) -> float:
    """Average a per-rank scalar over the process group, so every rank records the same number."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return total.item() / dist.get_world_size()
