"""Tests of the CCM-Prefix coefficient search, neuralop_merge.prefix."""

import copy

import numpy as np
import pytest
import torch
from conftest import Scale, tiny_fno
from neuralop.models import FNO
from torch import nn

from neuralop_merge.errors import StrategyError
from neuralop_merge.metrics import prefix_error
from neuralop_merge.prefix import PrefixSearch, select_alpha
from neuralop_merge.rollout import rollout

GRID_SPACING = 6.0 / 40


class Residual(nn.Module):
    """x + scale * FNO(x): a one-step model that neither explodes nor vanishes."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.fno = FNO(n_modes=(4, 4), hidden_channels=8, in_channels=in_channels, out_channels=1, n_layers=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1:] + 10.0 * self.fno(x)


def merge_line(in_channels: int = 1):
    """``model_at`` for theta(alpha) = theta_a + alpha * 0.3 * (theta_b - theta_a)."""
    torch.manual_seed(0)
    anchor, other = Residual(in_channels), Residual(in_channels)
    # FNO state dicts also carry a non-tensor "_metadata" entry.
    base = {k: v for k, v in anchor.state_dict().items() if torch.is_tensor(v)}
    direction = {k: 0.3 * (v - base[k]) for k, v in other.state_dict().items() if k in base}

    def model_at(alpha: float) -> nn.Module:
        model = copy.deepcopy(anchor)
        model.load_state_dict({k: base[k] + alpha * direction[k] for k in base}, strict=False)
        return model

    return model_at


def observed_prefix(model_at, alpha: float, *, history: int = 1) -> torch.Tensor:
    torch.manual_seed(1)
    x0 = torch.randn(2, history, 1, 16, 16) if history > 1 else torch.randn(2, 1, 16, 16)
    frames = rollout(model_at(alpha), x0, 3, history=history)
    return frames + 0.05 * frames.std() * torch.randn_like(frames)


def error_of_choice(search: PrefixSearch) -> float:
    return search.errors[search.alphas.tolist().index(search.alpha)].item()


@pytest.mark.parametrize("true_alpha", [0.7, -1.9, 3.4])
def test_fast_search_agrees_with_grid(true_alpha):
    model_at = merge_line()
    frames = observed_prefix(model_at, true_alpha)
    grid = select_alpha(model_at, frames, method="grid")
    fast = select_alpha(model_at, frames, method="fast")
    assert abs(fast.alpha - grid.alpha) <= GRID_SPACING + 1e-9
    assert error_of_choice(fast) <= 1.01 * error_of_choice(grid)
    assert fast.n_evaluations <= 41 / 2  # coarse points one unit apart, 7 on ±3, then the basins' searches


def test_the_fast_search_does_not_step_over_a_deep_basin_next_to_an_expert():
    """A prefix curve shaped as CCM-Prefix met it on DiffReact's c = -2 extrapolation (study records, seed 42):
    high at α = -2, a deep minimum at -1.4, a shallow one near +1.2. Five coarse points on ±4 (gaps of 2) see
    only the shallow one; points one unit apart find the grid's choice."""
    knots = ([-4.0, -2.0, -1.4, -1.0, 0.0, 1.0, 1.2, 2.0, 4.0], [3.0, 0.70, 0.104, 0.153, 0.241, 0.233, 0.228, 0.236, 1.0])

    def model_at(alpha: float) -> nn.Module:
        return Scale(1.0 + float(np.interp(alpha, *knots)))

    frames = torch.ones(1, 5, 1, 4, 4)
    search = {"alpha_range": (-4.0, 4.0), "n_grid": 41}
    grid = select_alpha(model_at, frames, method="grid", **search)
    assert grid.alpha == pytest.approx(-1.4)
    assert select_alpha(model_at, frames, n_coarse=5, **search).alpha == pytest.approx(1.2)  # the old default's miss
    for method in ("fast", "parabolic"):
        found = select_alpha(model_at, frames, method=method, **search)
        assert abs(found.alpha - grid.alpha) <= 0.2 + 1e-9, method
        assert found.n_evaluations < 41


def test_search_records_every_evaluation_once_and_sorted():
    model_at = merge_line()
    frames = observed_prefix(model_at, 0.3)
    grid = select_alpha(model_at, frames, method="grid", n_grid=11, alpha_range=(-1.0, 1.0))
    torch.testing.assert_close(grid.alphas, torch.linspace(-1.0, 1.0, 11, dtype=torch.float64))
    assert grid.n_evaluations == 11 and grid.method == "grid"
    fast = select_alpha(model_at, frames)
    assert torch.equal(fast.alphas, fast.alphas.unique())
    assert len(fast.errors) == fast.n_evaluations == len(fast.alphas)
    assert fast.errors.min().item() == error_of_choice(fast)


def test_search_with_history():
    model_at = merge_line(in_channels=2)
    frames = observed_prefix(model_at, -0.5, history=2)
    fast = select_alpha(model_at, frames, history=2)
    assert abs(fast.alpha + 0.5) <= 2 * GRID_SPACING


def test_bad_search_parameters_are_refused():
    model_at = merge_line()
    frames = torch.zeros(1, 2, 1, 4, 4)
    with pytest.raises(StrategyError, match="method"):
        select_alpha(model_at, frames, method="brent")
    with pytest.raises(StrategyError, match="alpha_range"):
        select_alpha(model_at, frames, alpha_range=(1.0, -1.0))
    with pytest.raises(StrategyError, match="n_grid"):
        select_alpha(model_at, frames, n_grid=1)
    with pytest.raises(StrategyError, match="n_coarse"):
        select_alpha(model_at, frames, n_coarse=2)


def test_float64_frames_are_cast_to_the_models_dtype_before_scoring():
    model = tiny_fno(0)
    frames = torch.randn(1, 3, 1, 16, 16, dtype=torch.float64)
    search = select_alpha(lambda alpha: model, frames, method="grid", n_grid=3)
    # Scored as float32 frames: the same error as the float32 model gives on a float32 copy.
    expected = prefix_error(model, frames.float())
    assert search.errors.tolist() == pytest.approx([expected] * 3, rel=1e-6)
