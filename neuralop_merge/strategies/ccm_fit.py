"""CCM-Fit: a point of the least-squares merge surface through two or more experts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import StrategyError
from ..geometry import LeastSquaresFit
from .base import MergeInputs, Plan, Strategy


class CCMFit(Strategy):
    """A point of the least-squares merge surface through two or more experts.

    ``expert_coords`` are the experts' coordinates (``[K]`` or ``[K, d]``; any per-axis
    affine units, since the fit is invariant under them), ``target`` the coordinate of
    the deployed model in the same units.
    """

    name = "ccm_fit"
    needs_anchor = True
    n_experts = None

    def plan(
        self,
        inputs: MergeInputs,
        *,
        expert_coords: Sequence[float] | Sequence[Sequence[float]],
        target: float | Sequence[float],
        quadratic: bool | str = False,
    ) -> Plan:
        coordinates = np.asarray(expert_coords, dtype=np.float64)
        coordinates = coordinates.reshape(len(coordinates), -1)
        if len(coordinates) != len(inputs.experts) or not np.isfinite(coordinates).all():
            raise StrategyError(f"expert_coords must hold one finite coordinate per expert ({len(inputs.experts)})")
        target = np.asarray(target, dtype=np.float64).reshape(-1)
        if target.shape != (coordinates.shape[1],) or not np.isfinite(target).all():
            raise StrategyError(f"target must be a finite coordinate on {coordinates.shape[1]} axis/axes, got {target.tolist()}")
        return LeastSquaresFit(coordinates, quadratic).plan(target)
