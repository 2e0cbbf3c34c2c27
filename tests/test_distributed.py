"""Data-parallel fine-tuning: two gloo processes on CPU, as ``torchrun`` would start them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import HIGH, LOW, heat_loader, tiny_fno

from neuralop_merge.training import finetune_endpoints
from neuralop_merge.training.checkpoint import CHECKPOINT_FILE

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def finetune_on_rank(rank: int, port: int, workdir: Path) -> None:
    """One rank: fine-tune two regimes data-parallel, then dump the experts' weights for the parent."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        regimes = {"low": (LOW, heat_loader(LOW, seed=2)), "high": (HIGH, heat_loader(HIGH, seed=3))}
        experts = finetune_endpoints(
            tiny_fno(),
            regimes,
            n_epochs=2,
            lr=1e-2,
            use_distributed=True,
            # One directory per rank, so the parent can see which ranks wrote.
            checkpoint_dir=workdir / f"checkpoints_rank{rank}",
            progress=False,
        )
        torch.save(
            {name: (expert.state_dict(), expert.provenance) for name, expert in experts.items()},
            workdir / f"experts_rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_ranks_end_identical_and_only_rank_zero_checkpoints(tmp_path: Path) -> None:
    mp.spawn(finetune_on_rank, args=(free_port(), tmp_path), nprocs=WORLD_SIZE, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"experts_rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE))
    anchor = tiny_fno().state_dict()
    for name in ("low", "high"):
        (state0, provenance0), (state1, provenance1) = rank0[name], rank1[name]
        assert provenance0 == provenance1
        # 16 pairs in batches of 8, split over 2 ranks: one step per epoch.
        assert provenance0["steps"] == 2
        for key, tensor in state0.items():
            if torch.is_tensor(tensor):
                assert torch.equal(tensor, state1[key]), key
        assert any(torch.is_tensor(t) and not torch.equal(t, anchor[k]) for k, t in state0.items())
        assert (tmp_path / "checkpoints_rank0" / name / CHECKPOINT_FILE).is_file()
    assert not (tmp_path / "checkpoints_rank1").exists()
