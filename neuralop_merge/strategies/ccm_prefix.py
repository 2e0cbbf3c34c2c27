"""CCM-Prefix: pick α from an observed rollout prefix, deploy one merged checkpoint."""

from __future__ import annotations

import torch

from ..geometry import line_plan
from ..prefix import ALPHA_RANGE, N_GRID, SEARCH_METHOD, prefix_info, search_axis
from .base import MergeInputs, Plan, Strategy


class CCMPrefix(Strategy):
    """The α on the merge line whose rollout best matches the first observed frames.

    ``frames`` is ``[B, k + history, C, ...]``; θ(α) is rolled out from the first
    ``history`` frames and scored by relative L2 against the next k. Only those frames
    are used, so the rest of the trajectory stays unseen for scoring. ``method`` is
    one of :data:`neuralop_merge.prefix.METHODS`; ``n_coarse`` sets the fast methods' coarse
    scan (see :func:`~neuralop_merge.prefix.select_alpha`); ``max_batch`` bounds the rollout's
    memory; ``data_processor`` (a neuraloperator DataProcessor) normalizes each step's
    input and de-normalizes its output, for frames in physical units.
    """

    name = "ccm_prefix"
    needs_anchor = True
    n_experts = 2

    def plan(
        self,
        inputs: MergeInputs,
        *,
        frames: torch.Tensor,
        alpha_range: tuple[float, float] = ALPHA_RANGE,
        method: str = SEARCH_METHOD,
        n_grid: int = N_GRID,
        history: int = 1,
        n_coarse: int | None = None,
        max_batch: int | None = None,
        data_processor: torch.nn.Module | None = None,
    ) -> Plan:
        search, _ = search_axis(
            self, inputs, line_plan, frames, affine=True, alpha_range=tuple(alpha_range), method=method,
            n_grid=n_grid, history=history, n_coarse=n_coarse, max_batch=max_batch, data_processor=data_processor,
        )
        return line_plan(search.alpha, prefix_info(search, frames))
