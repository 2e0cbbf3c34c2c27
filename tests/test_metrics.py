"""Tests of neuralop_merge.metrics against hand computations."""

import math

import pytest
import torch
from conftest import Scale
from torch import nn

from neuralop_merge.errors import EvaluationError
from neuralop_merge.metrics import future_error, prefix_error, relative_l2, vrmse


def two_step_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Trajectories [B=2, T=2, C=2, X=2] with hand-checkable errors."""
    true = torch.ones(2, 2, 2, 2)
    pred = true.clone()
    pred[0, 1, 0] = 3.0  # sample 0, step 1, channel 0: error (2, 2)
    pred[1, 0] = 0.0  # sample 1, step 0: everything missed
    return pred, true


def test_relative_l2_reductions_match_hand_values():
    pred, true = two_step_pair()
    # ||true[b, t]|| = 2 everywhere; the errors have norms sqrt(8), 2 and 0.
    expected = torch.tensor([[0.0, math.sqrt(8) / 2], [1.0, 0.0]])
    torch.testing.assert_close(relative_l2(pred, true, reduction="none"), expected)
    torch.testing.assert_close(relative_l2(pred, true, reduction="per_sample"), expected.mean(1))
    torch.testing.assert_close(relative_l2(pred, true, reduction="mean"), expected.mean())
    # Per channel, ||true[b, t, c]|| = sqrt(2): channel 0 misses by 2 (sample 0)
    # and 1 (sample 1), channel 1 by 1 (sample 1); each averaged over 4 frames.
    per_channel = torch.tensor([(2.0 + 1.0) / 4, 1.0 / 4])
    torch.testing.assert_close(relative_l2(pred, true, reduction="per_channel"), per_channel)


def test_future_error_leaves_out_observed_frames():
    pred, true = two_step_pair()
    torch.testing.assert_close(
        future_error(pred, true, 1, reduction="none"), torch.tensor([[math.sqrt(2)], [0.0]])
    )
    assert future_error(pred, true, 0) == relative_l2(pred, true)
    with pytest.raises(EvaluationError, match="n_observed"):
        future_error(pred, true, 2)


def test_vrmse_matches_hand_values():
    true = torch.tensor([[[0.0, 2.0, 0.0, 2.0]]])  # mean 1, variance 1
    mean_prediction = torch.ones_like(true)
    assert vrmse(mean_prediction, true, eps=0.0).item() == pytest.approx(1.0)
    shifted = true + 3.0  # mse 9
    assert vrmse(shifted, true, eps=0.0, reduction="none").shape == (1, 1)
    assert vrmse(shifted, true, eps=0.0).item() == pytest.approx(3.0)
    assert vrmse(true, true).item() == 0.0


def test_vrmse_reduction_shapes():
    pred, true = torch.randn(3, 2, 5, 5), torch.randn(3, 2, 5, 5)
    none = vrmse(pred, true, reduction="none")
    assert none.shape == (3, 2)
    torch.testing.assert_close(vrmse(pred, true, reduction="per_sample"), none.mean(1))
    torch.testing.assert_close(vrmse(pred, true, reduction="per_channel"), none.mean(0))
    torch.testing.assert_close(vrmse(pred, true), none.mean())


def test_prefix_error_of_a_scaling_model():
    # The truth doubles each step; a model that triples misses by (3^t - 2^t) / 2^t.
    x0 = torch.randn(2, 1, 4, 4)
    frames = torch.stack([x0 * 2.0**t for t in range(4)], dim=1)
    expected = sum((3.0**t - 2.0**t) / 2.0**t for t in (1, 2, 3)) / 3
    assert prefix_error(Scale(3.0), frames) == pytest.approx(expected, rel=1e-5)
    assert prefix_error(Scale(2.0), frames) == pytest.approx(0.0, abs=1e-6)


def test_prefix_error_with_history_skips_the_given_frames():
    class SumOfTwo(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :1] + x[:, 1:]

    fibonacci = torch.tensor([1.0, 1.0, 2.0, 3.0, 5.0]).view(1, 5, 1, 1)
    assert prefix_error(SumOfTwo(), fibonacci, history=2) == 0.0


def test_bad_metric_input_is_refused():
    pred, true = two_step_pair()
    with pytest.raises(EvaluationError, match="reduction"):
        relative_l2(pred, true, reduction="sum")
    with pytest.raises(EvaluationError, match="same shape"):
        relative_l2(pred, true[:, :1])
    with pytest.raises(EvaluationError, match="k >= 1"):
        prefix_error(Scale(1.0), true[:, :1])
