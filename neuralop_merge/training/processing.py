"""Increment prediction in normalized units, with neuraloperator's normalizers and DataProcessor.

Autoregressive PDE surrogates are trained the way the field trains them: the network sees the
state normalized per channel and predicts the *increment* to the next frame, also normalized per
channel, while a little Gaussian noise on the input during training teaches it to correct its own
errors over a rollout. :class:`IncrementDataProcessor` does this inside neuraloperator's
``Trainer`` (it is a ``DefaultDataProcessor``); :class:`ProcessedModel` deploys the trained network
as a one-step model in physical units, which is what ``rollout`` and the merges consume.

A processor's normalizers are buffers fitted once, on the anchor's support data. Experts fine-tuned
from the anchor keep them, so every merge leaves them exactly as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from neuralop.data.transforms.data_processors import DefaultDataProcessor
from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
from torch import nn

from ..errors import TrainingError


def channel_normalizer(samples: torch.Tensor) -> UnitGaussianNormalizer:
    """A per-channel ``UnitGaussianNormalizer`` fitted on ``samples`` ``[N, C, ...]``."""
    reduce = [0, *range(2, samples.ndim)]
    normalizer = UnitGaussianNormalizer(dim=reduce, eps=1e-6)
    normalizer.fit(samples.double())
    normalizer.mean, normalizer.std = normalizer.mean.float(), normalizer.std.float()
    return normalizer


class IncrementDataProcessor(DefaultDataProcessor):
    """Normalized inputs, normalized increments as targets, input noise while training.

    Parameters
    ----------
    in_normalizer : UnitGaussianNormalizer
        Normalizer of the model input: the ``C`` state channels, then any conditioning channels.
    out_normalizer : UnitGaussianNormalizer
        Normalizer of the increment ``y - x`` over the ``C`` state channels.
    noise : float, default 0.0
        Standard deviation of the Gaussian noise added to the state channels of the input
        while training, in units of each channel's standard deviation. The target increment is
        taken from the noisy input, so the network learns to pull a perturbed state back.

    Notes
    -----
    In training mode the loss compares normalized increments. In evaluation mode
    :meth:`postprocess` returns the next state in physical units followed by the input's
    conditioning channels unchanged, so a conditioned model maps its input space to itself and
    rolls out like any other (the ``Trainer``'s evaluation losses are then physical).
    """

    def __init__(self, in_normalizer: UnitGaussianNormalizer, out_normalizer: UnitGaussianNormalizer, noise: float = 0.0):
        super().__init__(in_normalizer=in_normalizer, out_normalizer=out_normalizer)
        if not noise >= 0:
            raise TrainingError(f"input noise must be a non-negative number, got {noise!r}")
        self.noise = float(noise)

    @classmethod
    def fit(cls, trajectories: torch.Tensor, *, state_channels: int | None = None, noise: float = 0.0) -> IncrementDataProcessor:
        """A processor fitted on the one-step pairs of ``trajectories`` ``[N, T+1, C+E, ...]``.

        The first ``state_channels`` channels (default: all) evolve; the others are conditioning
        channels, constant in time, that the model reads but does not predict.
        """
        if trajectories.ndim < 4 or trajectories.shape[1] < 2:
            raise TrainingError(f"trajectories must be [N, T+1>=2, C, ...], got {list(trajectories.shape)}")
        evolving = trajectories.shape[2] if state_channels is None else state_channels
        if not 1 <= evolving <= trajectories.shape[2]:
            raise TrainingError(f"state_channels must be in [1, {trajectories.shape[2]}], got {state_channels}")
        states = trajectories[:, :-1].flatten(0, 1)
        increments = (trajectories[:, 1:, :evolving] - trajectories[:, :-1, :evolving]).flatten(0, 1)
        return cls(channel_normalizer(states), channel_normalizer(increments), noise)

    @property
    def state_channels(self) -> int:
        return int(self.out_normalizer.mean.shape[1])

    def to(self, device: torch.device | str) -> IncrementDataProcessor:
        # The parent's ``to`` moves the normalizers but not this module's own buffers.
        super().to(device)
        return nn.Module.to(self, device)

    def preprocess(self, data_dict: dict[str, Any], batched: bool = True) -> dict[str, Any]:
        """Normalize the input (noisy while training) and, while training, the target increment."""
        x = data_dict["x"].to(self.device)
        y = data_dict["y"].to(self.device)
        state, extra = x[:, : self.state_channels], x[:, self.state_channels :]
        if self.training and self.noise > 0:
            scale = self.in_normalizer.std[:, : self.state_channels].to(state.dtype)
            state = state + self.noise * scale * torch.randn_like(state)
        data_dict["state"], data_dict["extra"] = state, extra
        data_dict["x"] = self.in_normalizer.transform(torch.cat((state, extra), dim=1))
        data_dict["y"] = self.out_normalizer.transform(y[:, : self.state_channels] - state) if self.training else y
        return data_dict

    def postprocess(self, output: torch.Tensor, data_dict: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Training: the normalized increment as is; evaluation: the next state in physical units."""
        state, extra = data_dict.pop("state"), data_dict.pop("extra")
        if not self.training:
            output = torch.cat((state + self.out_normalizer.inverse_transform(output), extra), dim=1)
        return output, data_dict


class ProcessedModel(nn.Module):
    """A network and its data processor as one one-step model in physical units.

    ``ProcessedModel(net, processor)(x)`` is the processor's evaluation-mode prediction of the
    next frame from ``x``, so ``rollout`` and every merge strategy treat it like any other model.
    Both parts are submodules: the normalizers travel in the state dict.
    """

    def __init__(self, net: nn.Module, processor: DefaultDataProcessor) -> None:
        super().__init__()
        self.net = net
        self.processor = processor

    def forward(self, x: torch.Tensor, **_: Any) -> torch.Tensor:
        was_training = self.processor.training
        self.processor.eval()
        try:
            sample = self.processor.preprocess({"x": x, "y": x})
            output, _ = self.processor.postprocess(self.net(sample["x"]), sample)
        finally:
            self.processor.train(was_training)
        return output


__all__ = ["IncrementDataProcessor", "ProcessedModel", "channel_normalizer"]
