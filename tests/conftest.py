"""Shared fixtures: tiny models so that the whole suite stays fast on 2 CPU cores."""

from __future__ import annotations

import warnings

import pytest
import torch
from neuralop.models import FNO, TFNO
from torch import nn

warnings.filterwarnings("ignore", category=UserWarning, module="neuralop")
torch.set_num_threads(min(2, torch.get_num_threads()))


class Toy(nn.Module):
    """A plain nn.Module with real, complex, integer and non-trainable tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)
        self.spectral = nn.Parameter(torch.randn(2, 2, dtype=torch.cfloat))
        self.register_buffer("steps", torch.tensor(7))
        self.register_buffer("scale", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scale + self.spectral.real.sum()


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one thread: its models are tiny, and on a shared 2-core machine more threads only wait."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_fno(seed: int, **overrides) -> FNO:
    torch.manual_seed(seed)
    kwargs = dict(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    kwargs.update(overrides)
    return FNO(**kwargs)


def tiny_tfno(seed: int, factorization: str = "tucker") -> TFNO:
    torch.manual_seed(seed)
    return TFNO(
        n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
        factorization=factorization, rank=0.5,
    )


@pytest.fixture
def fno_trio() -> tuple[FNO, FNO, FNO]:
    """(anchor, low, high) with distinct random weights."""
    return tiny_fno(0), tiny_fno(1), tiny_fno(2)


@pytest.fixture
def toy_trio() -> tuple[Toy, Toy, Toy]:
    torch.manual_seed(0)
    return Toy(), Toy(), Toy()


def tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state-dict tensors (neuraloperator's ``_metadata`` dropped), cloned."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
