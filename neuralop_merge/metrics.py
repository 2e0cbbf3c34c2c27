"""Trajectory error metrics with explicit reductions.

Trajectories are ``[B, T, C, *spatial]`` tensors (see :mod:`neuralop_merge.rollout`),
single frames ``[B, C, *spatial]``. Every metric takes a ``reduction``:

``"none"``
    the unreduced per-sample values; the shape is given by each metric.
``"per_sample"``
    one value per sample, ``[B]``.
``"per_channel"``
    one value per channel, ``[C]``.
``"mean"``
    a 0-d tensor.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .errors import EvaluationError
from .rollout import rollout

Reduction = Literal["none", "per_sample", "per_channel", "mean"]
REDUCTIONS: tuple[str, ...] = ("none", "per_sample", "per_channel", "mean")

# Guards the divisions against an all-zero reference field.
EPS = 1e-12


def relative_l2(pred: Tensor, true: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Relative L2 error of each predicted frame.

    For sample ``b`` and step ``t`` the error is
    ``||pred[b, t] - true[b, t]|| / ||true[b, t]||`` with norms over channels
    and space; ``"per_channel"`` instead takes the norms over space only,
    one channel at a time, and averages over samples and steps.

    Parameters
    ----------
    pred, true : Tensor
        Trajectories ``[B, T, C, *spatial]`` of equal shape.
    reduction : {"none", "per_sample", "per_channel", "mean"}, default "mean"
        ``"none"`` gives ``[B, T]`` (per sample and step), ``"per_sample"``
        ``[B]`` (mean over steps), ``"per_channel"`` ``[C]``, ``"mean"`` the
        mean over samples and steps.

    Returns
    -------
    Tensor
        The reduced errors, in ``pred``'s floating dtype.
    """
    _check_pair(pred, true, min_dims=4, layout="[B, T, C, *spatial]")
    _check_reduction(reduction)
    if reduction == "per_channel":
        space = tuple(range(3, pred.dim()))
        per_channel = _norm(pred - true, space) / (_norm(true, space) + EPS)
        return per_channel.mean(dim=(0, 1))
    frame = tuple(range(2, pred.dim()))
    per_step = _norm(pred - true, frame) / (_norm(true, frame) + EPS)
    if reduction == "none":
        return per_step
    if reduction == "per_sample":
        return per_step.mean(dim=1)
    return per_step.mean()


def future_error(
    pred: Tensor, true: Tensor, n_observed: int, *, reduction: Reduction = "mean"
) -> Tensor:
    """Relative L2 error on the frames that follow the observed ones.

    The first ``n_observed`` frames (initial condition(s) plus the prefix a
    calibration saw) are left out. With the ``frames`` given to
    :func:`prefix_error`, ``n_observed = frames.shape[1]``.

    Parameters
    ----------
    pred, true : Tensor
        Trajectories ``[B, T, C, *spatial]`` of equal shape.
    n_observed : int
        Number of leading frames to leave out, ``0 <= n_observed < T``.
    reduction : {"none", "per_sample", "per_channel", "mean"}, default "mean"
        As in :func:`relative_l2`; ``"none"`` gives ``[B, T - n_observed]``.

    Returns
    -------
    Tensor
        The reduced errors over frames ``n_observed, ..., T - 1``.
    """
    _check_pair(pred, true, min_dims=4, layout="[B, T, C, *spatial]")
    if not 0 <= n_observed < pred.shape[1]:
        raise EvaluationError(
            f"n_observed must be in [0, {pred.shape[1]}) for {pred.shape[1]} frames, got {n_observed}"
        )
    return relative_l2(pred[:, n_observed:], true[:, n_observed:], reduction=reduction)


def vrmse(
    pred: Tensor, true: Tensor, *, reduction: Reduction = "mean", eps: float = 1e-7
) -> Tensor:
    """Variance-scaled RMSE, as in The Well.

    For sample ``b`` and channel ``c``,
    ``sqrt(mean((pred - true)**2) / (var(true) + eps))`` with mean and
    (population) variance over space. A constant prediction of the true mean
    scores about 1.

    Parameters
    ----------
    pred, true : Tensor
        Frames ``[B, C, *spatial]`` of equal shape. For trajectories, fold
        time into the batch: ``vrmse(pred.flatten(0, 1), true.flatten(0, 1))``.
    reduction : {"none", "per_sample", "per_channel", "mean"}, default "mean"
        ``"none"`` gives ``[B, C]``, ``"per_sample"`` ``[B]`` (mean over
        channels), ``"per_channel"`` ``[C]`` (mean over samples), ``"mean"``
        the mean over both.
    eps : float, default 1e-7
        Added to the variance, so that constant fields stay finite.

    Returns
    -------
    Tensor
        The reduced errors.
    """
    _check_pair(pred, true, min_dims=3, layout="[B, C, *spatial]")
    _check_reduction(reduction)
    space = tuple(range(2, pred.dim()))
    mse = (pred - true).square().mean(dim=space)
    variance = true.var(dim=space, correction=0)
    per_channel = torch.sqrt(mse / (variance + eps))
    if reduction == "none":
        return per_channel
    if reduction == "per_sample":
        return per_channel.mean(dim=1)
    if reduction == "per_channel":
        return per_channel.mean(dim=0)
    return per_channel.mean()


def prefix_error(
    model: nn.Module,
    frames: Tensor,
    *,
    history: int = 1,
    max_batch: int | None = None,
    amp: str | None = None,
    data_processor: nn.Module | None = None,
) -> float:
    """Relative L2 error of the model's rollout over an observed prefix.

    The model is rolled out from the first ``history`` frames of ``frames``
    and its predictions are compared with the remaining ``k`` frames; this is
    the quantity CCM-Prefix minimises over the merge coefficient.

    Parameters
    ----------
    model : nn.Module
        One-step model, see :func:`neuralop_merge.rollout.rollout`.
    frames : Tensor
        Observed trajectories ``[B, k + history, C, *spatial]``: with
        ``history == 1``, frame 0 and the prefix frames ``1..k``.
    history : int, default 1
        Number of past frames the model sees.
    max_batch, amp, data_processor
        Passed to :func:`neuralop_merge.rollout.rollout`.

    Returns
    -------
    float
        Mean over samples and the ``k`` predicted steps of the per-step
        relative L2 error.
    """
    if frames.dim() < 4 or frames.shape[1] <= history:
        raise EvaluationError(
            f"frames must be [B, k + {history}, C, *spatial] with k >= 1, got shape {tuple(frames.shape)}"
        )
    initial = frames[:, 0] if history == 1 else frames[:, :history]
    n_steps = frames.shape[1] - history
    predicted = rollout(
        model, initial, n_steps, history=history, max_batch=max_batch, amp=amp, data_processor=data_processor
    )
    return future_error(predicted, frames, history).item()


def _norm(values: Tensor, dims: tuple[int, ...]) -> Tensor:
    return torch.linalg.vector_norm(values, dim=dims)


def _check_pair(pred: Tensor, true: Tensor, *, min_dims: int, layout: str) -> None:
    if pred.shape != true.shape:
        raise EvaluationError(
            f"pred and true must have the same shape, got {tuple(pred.shape)} and {tuple(true.shape)}"
        )
    if pred.dim() < min_dims:
        raise EvaluationError(f"expected {layout}, got shape {tuple(pred.shape)}")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise EvaluationError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
