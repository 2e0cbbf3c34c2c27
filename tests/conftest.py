"""Shared fixtures: tiny models so that the whole suite stays fast on 2 CPU cores."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from neuralop.models import FNO, TFNO
from torch import nn
from torch.utils.data import DataLoader

from neuralop_merge.families.dataset import PairDataset

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


class Scale(nn.Module):
    """One-step model x -> factor * x: its rollout is known in closed form, and along a line of factors
    its prefix error is whatever function of α the factors are made to follow."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.tensor(factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x

@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one thread: its models are tiny, and on a shared 2-core machine more threads only wait."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_fno(seed: int = 0, **overrides) -> FNO:
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


# -- heat-equation data: one-step pairs of two diffusivity regimes ----------------------------
GRID = 16
LOW, HIGH = 0.02, 0.2


def heat_trajectories(diffusivity: float, n_trajectories: int, n_steps: int, seed: int) -> torch.Tensor:
    """Explicit heat-equation steps of smooth random fields, ``[N, T+1, 1, GRID, GRID]``."""
    generator = torch.Generator().manual_seed(seed)
    # Smooth initial fields (a few low Fourier modes), which a 4-mode FNO can represent.
    coefficients = torch.randn(n_trajectories, 1, 4, 4, generator=generator, dtype=torch.complex64)
    spectrum = torch.zeros(n_trajectories, 1, GRID, GRID // 2 + 1, dtype=torch.complex64)
    spectrum[..., :4, :4] = coefficients
    field = torch.fft.irfft2(spectrum, s=(GRID, GRID)) * GRID
    frames = [field]
    for _ in range(n_steps):
        neighbours = sum(torch.roll(field, shift, dim) for shift in (1, -1) for dim in (-1, -2))
        field = field + diffusivity * (neighbours - 4 * field)
        frames.append(field)
    return torch.stack(frames, dim=1)


def heat_loader(diffusivity: float, seed: int, *, n_trajectories: int = 8, batch_size: int = 8) -> DataLoader:
    """Shuffled loader of one-step pairs of one heat regime."""
    pairs = PairDataset(heat_trajectories(diffusivity, n_trajectories, 2, seed))
    return DataLoader(pairs, batch_size=batch_size, shuffle=True, generator=torch.Generator())


# -- a tiny residual convolution and experts near it --------------------------------------------
class TinyConv(nn.Module):
    """A one-step model cheap enough for the many rollouts of a prefix search."""

    def __init__(self, seed: int, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")
        with torch.no_grad():
            self.conv.weight.mul_(0.3 * scale)
            self.conv.bias.mul_(0.3 * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def conv_experts(n: int) -> tuple[TinyConv, dict[str, TinyConv]]:
    """An anchor and n experts near it, as fine-tuning leaves them."""
    anchor = TinyConv(0)
    experts = {}
    for i in range(n):
        expert = copy.deepcopy(anchor)
        with torch.no_grad():
            for parameter, offset in zip(expert.parameters(), TinyConv(i + 1, scale=0.5).parameters()):
                parameter.add_(offset)
        experts[f"e{i}"] = expert
    return anchor, experts
