"""One-step and rollout validation on held-out trajectories."""

from __future__ import annotations

import torch
from neuralop.losses import LpLoss
from torch import nn
from torch.utils.data import DataLoader

from ..errors import TrainingError
from ..families.dataset import PairDataset
from ..rollout import rollout


def check_trajectories(trajectories: torch.Tensor) -> None:
    """Raise :class:`TrainingError` unless ``trajectories`` is ``[N, T+1, C, *space]`` (1 to 3 space dims), T >= 1."""
    if not 4 <= trajectories.ndim <= 6 or trajectories.shape[1] < 2:
        raise TrainingError(
            "validation trajectories must have shape [N, T+1, C, *space] with 1 to 3 space dims and at least 2 frames, "
            f"got {tuple(trajectories.shape)}"
        )


def one_step_loader(trajectories: torch.Tensor, batch_size: int) -> DataLoader:
    """An unshuffled loader of the one-step pairs of held-out trajectories."""
    check_trajectories(trajectories)
    return DataLoader(PairDataset(trajectories), batch_size=batch_size, shuffle=False)


def rollout_error(model: nn.Module, trajectories: torch.Tensor, device: str | torch.device = "cpu") -> float:
    """Relative L2 error of autoregressive rollouts, per predicted frame.

    neuraloperator's ``Trainer.evaluate(mode="autoregression")`` needs a data
    processor that feeds predictions back; plain ``{'x', 'y'}`` data has none,
    so the rollout uses :func:`neuralop_merge.rollout.rollout` instead. The
    error is the training loss (``LpLoss``, summed over channels), so it reads
    on the same scale as the one-step losses.

    Parameters
    ----------
    model : nn.Module
        One-step model ``u_t -> u_{t+1}``.
    trajectories : torch.Tensor
        Held-out trajectories ``[N, T+1, C, H, W]``; each rollout starts from frame 0.
    device : str or torch.device
        Device the model computes on.

    Returns
    -------
    float
        The error averaged over trajectories and the T rollout steps.
    """
    check_trajectories(trajectories)
    predicted = rollout(model, trajectories[:, 0], trajectories.shape[1] - 1, device=device)[:, 1:]
    frames = predicted.flatten(0, 1)
    return LpLoss(d=frames.ndim - 2, reduction="sum")(frames, trajectories[:, 1:].flatten(0, 1)).item() / len(frames)
