"""CCM-Prefix: pick α from an observed rollout prefix, deploy one merged checkpoint."""

from __future__ import annotations

import torch

from ..merging import ReusedModel
from ..prefix import select_alpha
from .base import MergeInputs, Plan, Strategy
from .fixed_alpha import line_plan


class CCMPrefix(Strategy):
    """The α on the merge line whose rollout best matches the first observed frames.

    ``frames`` is ``[B, k+1, C, ...]``; θ(α) is rolled out from frame 0 and scored by
    relative L2 against frames 1..k. Only those frames are used, so the rest of the
    trajectory stays unseen for scoring. ``data_processor`` (a neuraloperator
    DataProcessor) normalizes each step's input and de-normalizes its output, for
    frames in physical units.
    """

    name = "ccm_prefix"
    needs_anchor = True
    n_experts = 2

    def plan(
        self,
        inputs: MergeInputs,
        *,
        frames: torch.Tensor,
        alpha_range: tuple[float, float] = (-3.0, 3.0),
        method: str = "fast",
        n_grid: int = 41,
        data_processor: torch.nn.Module | None = None,
    ) -> Plan:
        reused = ReusedModel(self, inputs)
        search = select_alpha(
            lambda alpha: reused(line_plan(alpha)), frames, alpha_range=tuple(alpha_range), method=method,
            n_grid=n_grid, data_processor=data_processor,
        )
        curve = {"alphas": search.alphas.tolist(), "errors": search.errors.tolist()}
        return line_plan(search.alpha, {"prefix_frames": int(frames.shape[1]), "curve": curve})
