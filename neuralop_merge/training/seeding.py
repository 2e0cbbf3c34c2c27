"""Deterministic seeds for reproducible (and resumable) training runs."""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def derive_seed(seed: int, *labels: object) -> int:
    """Derive an independent 63-bit seed from a base seed and labels.

    Parameters
    ----------
    seed : int
        Base seed given by the user.
    *labels : object
        Anything identifying the sub-run (regime name, epoch index, ...); their
        ``str`` forms enter the hash.

    Returns
    -------
    int
        A seed accepted by ``torch.manual_seed``; equal inputs give equal seeds
        on every machine and Python version (unlike ``hash``).
    """
    text = ":".join(str(part) for part in (seed, *labels))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def seed_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Make every random draw of one training epoch a function of ``(seed, epoch)``.

    Seeding per epoch, rather than once per run, is what lets a run resumed
    from a checkpoint replay the remaining epochs exactly: no RNG state has to
    be carried across the interruption.

    Parameters
    ----------
    loader : DataLoader
        The training loader; its own generator (if any) and its distributed
        sampler (if any) are re-seeded too.
    seed : int
        Seed of the run.
    epoch : int
        Index of the epoch about to start.
    """
    epoch_seed = derive_seed(seed, "epoch", epoch)
    torch.manual_seed(epoch_seed)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
