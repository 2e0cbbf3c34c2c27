"""Safe, atomic training checkpoints that resume on any torch version.

neuraloperator's own ``save_training_state`` pickles the model's ``_metadata``
(which holds functions such as the activation), so ``torch.load`` refuses it
under the ``weights_only=True`` default of torch >= 2.6. Our checkpoint holds
only tensors and plain containers, and is read back with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_file
from ..errors import CheckpointError

CHECKPOINT_FILE = "training_state.pt"


def checkpoint_exists(folder: str | Path) -> bool:
    """Whether ``folder`` holds a training checkpoint."""
    return (Path(folder) / CHECKPOINT_FILE).is_file()


def tensor_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without neuraloperator's non-tensor ``_metadata`` entry."""
    return {name: value for name, value in model.state_dict().items() if torch.is_tensor(value)}


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write a training checkpoint atomically.

    Parameters
    ----------
    folder : str or Path
        Directory of the checkpoint; created if missing.
    state : dict
        Tensors, numbers, strings and containers of those only (model and
        optimizer state dicts, epoch, step, identity of the run).

    Returns
    -------
    Path
        Path of the checkpoint file.
    """
    # A crash mid-write leaves the previous checkpoint intact.
    return write_file(Path(folder) / CHECKPOINT_FILE, lambda stream: torch.save(state, stream), overwrite=True)


def load_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without running pickled code.

    Parameters
    ----------
    folder : str or Path
        Directory of the checkpoint.

    Returns
    -------
    dict
        The saved state, on CPU.

    Raises
    ------
    CheckpointError
        If the folder holds no checkpoint or the file cannot be read safely.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint in {folder} (expected {CHECKPOINT_FILE})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt or unsafe files
        raise CheckpointError(f"cannot read training checkpoint {path}: {error}") from error
