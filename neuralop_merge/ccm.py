"""Calibration-Conditioned Merge: the merge line through two endpoint experts.

θ₀ the family anchor, θL and θH experts fine-tuned from it at μL < μH,
ΔL = θL − θ₀, ΔH = θH − θ₀, the shared adaptation Δ₊ = (ΔL + ΔH)/2 and the signed
physical direction Δ₋ = (ΔH − ΔL)/2. The merge line is θ(α) = θ₀ + Δ₊ + α·Δ₋; CCM
reads α from metadata (:meth:`CCM.from_coord`, optionally through a calibrated map)
or from an observed rollout prefix (:meth:`CCM.from_prefix`).

:class:`CCM` is the K = 2, d = 1 case of the merge surface
(:class:`~neuralop_merge.surface.CCMSurface`), with the experts at c = ∓1 and α the
coordinate; what it adds is the line's vocabulary (α, β, Δ₊, Δ₋) and the strategy each
door records: ``fixed_alpha`` / ``ccm_plane`` for :meth:`CCM.at`, ``ccm_coord`` for
:meth:`CCM.from_coord` and ``ccm_prefix`` for :meth:`CCM.from_prefix`, with the same
plans as :func:`neuralop_merge.merge` under those names. More than two experts, or
experts on several physical axes, give the surface itself (:meth:`CCM.from_experts` picks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .axes import PhysicalCoordinate, expert_coordinate
from .coordinates import AffineMap, Transform, check_endpoints, transformed
from .errors import StrategyError
from .geometry import LINE, line_plan
from .merging import ModelLike, prepare_inputs
from .prefix import ALPHA_RANGE, N_GRID, SEARCH_METHOD
from .strategies.base import Plan, Strategy
from .strategies.ccm_coord import CCMCoord, coord_plan
from .strategies.ccm_plane import CCMPlane
from .strategies.ccm_prefix import CCMPrefix
from .strategies.fixed_alpha import FixedAlpha
from .surface import CCMSurface, NormalizedCoordinate, PrefixResult
from .warning_site import warn


class CCM(CCMSurface):
    """The CCM merge line of an anchor and two endpoint experts.

    Parameters
    ----------
    anchor, low, high : nn.Module or checkpoint path
        θ₀, and the experts fine-tuned from it at ``low_coord`` < ``high_coord``
    low_coord, high_coord : float
        the physical parameter values μL, μH of the endpoint experts
    transform : "linear", "log" or callable
        t in the normalized coordinate c(μ) = (2t(μ) − t(μL) − t(μH)) / (t(μH) − t(μL))
    output : {"dense", "refactorize"}
        what merged factorized (TFNO) weights become, see :func:`neuralop_merge.merge`

    Examples
    --------
    >>> ccm = CCM(anchor, low, high, low_coord=1e-3, high_coord=4e-3, transform="log")  # doctest: +SKIP
    >>> model = ccm.from_coord(8e-3)  # extrapolates beyond the high expert  # doctest: +SKIP
    """

    def __init__(
        self,
        anchor: ModelLike,
        low: ModelLike,
        high: ModelLike,
        *,
        low_coord: float,
        high_coord: float,
        transform: Transform = "linear",
        output: str = "dense",
    ) -> None:
        check_endpoints(low_coord, high_coord, transform)
        super().__init__(
            anchor, {"low": low, "high": high}, {"low": low_coord, "high": high_coord}, transform=transform,
            output=output,
        )
        self.low_coord = float(low_coord)
        self.high_coord = float(high_coord)
        self.transform = transform
        # c(μL) = −1 and c(μH) = +1 by definition; the rounding of c(μH) through the
        # transform must not move the line off its exact (β ∓ α)/2 coefficients.
        self.fit = LINE

    @classmethod
    def from_experts(
        cls,
        anchor: ModelLike,
        experts: Mapping[str, ModelLike],
        coords: Mapping[str, PhysicalCoordinate] | None = None,
        **kwargs: Any,
    ) -> CCM | CCMSurface:
        """Build the merge line, or the fitted merge surface, from named experts.

        Two experts on one axis give the two-endpoint :class:`CCM` (ordered by their
        coordinate); more experts, several axes, or ``quadratic=`` give a
        :class:`~neuralop_merge.surface.CCMSurface`, the least-squares fit
        θ(c) ≈ θ₀ + A + B·c (+ quadratic terms) through all of them.

        Parameters
        ----------
        anchor : nn.Module or path
            the anchor every expert must have been fine-tuned from
        experts : Mapping[str, nn.Module or path]
            two or more named experts, e.g. ``finetune_endpoints``' output
        coords : Mapping[str, float or Mapping[str, float]], optional
            each expert's physical coordinate, a number or ``{axis: value}`` for several
            axes; read from its provenance (``parameter`` name and value) when omitted
        **kwargs
            ``transform`` (one for all axes, or ``{axis: transform}``) and ``output``;
            ``quadratic`` for the surface

        Experts trained elsewhere (no provenance) are accepted with ``coords``; their
        lineage cannot be checked, which a warning says.

        Raises
        ------
        TrainingError
            when an expert records a different anchor fingerprint than ``anchor``'s
        StrategyError
            with fewer than two experts, or coordinates that cannot be fitted
        """
        if not isinstance(experts, Mapping) or len(experts) < 2:
            raise StrategyError(f"CCM needs a mapping of at least two named experts, got {len(experts)}")
        loaded = prepare_inputs(anchor, list(experts.values()))
        named = dict(zip(experts, (view.model for view in loaded.experts)))
        check_lineage(loaded.anchor.model, named)
        values = {name: expert_coordinate(name, model, coords) for name, model in named.items()}
        axes = {axis for value in values.values() for axis in value}
        if len(named) > 2 or len(axes) > 1 or kwargs.get("quadratic"):
            return CCMSurface(loaded.anchor.model, named, values, **kwargs)
        kwargs.pop("quadratic", None)
        (axis,) = axes
        transform = kwargs.pop("transform", "linear")
        if isinstance(transform, Mapping):
            transform = transform.get(axis, "linear")
        low, high = sorted(named, key=lambda name: transformed(values[name][axis], transform, axis))
        return cls(
            loaded.anchor.model, named[low], named[high], low_coord=values[low][axis],
            high_coord=values[high][axis], transform=transform, **kwargs,
        )

    # -- the decomposition --------------------------------------------------------------
    @property
    def delta_shared(self) -> dict[str, torch.Tensor]:
        """Δ₊ = (ΔL + ΔH)/2 per tensor (factorized weights in dense form)."""
        return self._deltas(0.5, 0.5)

    @property
    def delta_direction(self) -> dict[str, torch.Tensor]:
        """Δ₋ = (ΔH − ΔL)/2 per tensor (factorized weights in dense form)."""
        return self._deltas(-0.5, 0.5)

    def _deltas(self, low_weight: float, high_weight: float) -> dict[str, torch.Tensor]:
        anchor, (low, high) = self.inputs.anchor.tensors, (e.tensors for e in self.inputs.experts)
        return {
            key: (low[key] - anchor[key]).mul_(low_weight).add_(high[key] - anchor[key], alpha=high_weight)
            for key in anchor
        }

    # -- points on the line -------------------------------------------------------------
    def plan(self, alpha: NormalizedCoordinate, info: Mapping[str, Any] | None = None, *, beta: float = 1.0) -> Plan:
        """The affine coefficients of (θ₀, θL, θH) at α (and β, off the line)."""
        coords = {"low_coord": self.low_coord, "high_coord": self.high_coord, **(info or {})}
        return line_plan(float(self._normalized(alpha)[0]), coords, beta=float(beta))

    def strategy(self, door: str, *, beta: float = 1.0) -> Strategy:
        """The strategy of ``door`` ("at", "coord", "prefix"), as :func:`neuralop_merge.merge` names it."""
        if door == "at":
            return FixedAlpha() if beta == 1.0 else CCMPlane()
        return CCMCoord() if door == "coord" else CCMPrefix()

    def at(self, alpha: float, *, beta: float = 1.0) -> nn.Module:
        """θ(α, β) = θ₀ + β·Δ₊ + α·Δ₋ as a new model.

        On the merge line (β = 1, the default) α = −1 is θL, +1 is θH and 0 the average;
        β = 0, α = 0 is the anchor (the ``ccm_plane`` strategy).
        """
        params = {"alpha": float(alpha)} if beta == 1.0 else {"alpha": float(alpha), "beta": float(beta)}
        return self.realize(self.strategy("at", beta=beta), self.plan(alpha, beta=beta), params)

    # -- CCM-Coord -----------------------------------------------------------------------
    def coordinate(self, mu: float) -> float:
        """c(μ): −1 at μL, +1 at μH, affine in the transformed parameter."""
        return float(self._box_coordinate(mu)[0])

    @property
    def calibration(self) -> AffineMap | None:
        """The calibrated map g of α = g(c(μ)), once :meth:`calibrate` ran."""
        return None if self.maps is None else self.maps[0]

    def alpha_for(self, mu: float) -> float:
        """α = g(c(μ)); g is the calibrated map once :meth:`calibrate` ran, else the identity."""
        return float(self.calibrated_coordinate(mu)[0])

    def from_coord(self, mu: float) -> nn.Module:
        """The merged model for a target regime μ, with α read from its (calibrated) coordinate."""
        bank = None if self.calibration_bank is None else [(m["mu"], best[0]) for m, best in self.calibration_bank]
        params = {"mu": float(mu), "low_coord": self.low_coord, "high_coord": self.high_coord, "transform": self.transform}
        if bank is not None:
            params["calibration"] = [list(pair) for pair in bank]
        return self.realize(self.strategy("coord"), coord_plan(float(mu), self.low_coord, self.high_coord, self.transform, bank), params)

    def calibrate(self, bank: Iterable[tuple[float, float]]) -> AffineMap:
        """Fit g(c) = a·c + b on a bank of (μ, best α) pairs; later :meth:`from_coord` uses it."""
        return super().calibrate(bank)[0]

    # -- CCM-Prefix ----------------------------------------------------------------------
    def from_prefix(
        self,
        frames: torch.Tensor,
        *,
        alpha_range: tuple[float, float] = ALPHA_RANGE,
        method: str = SEARCH_METHOD,
        n_grid: int = N_GRID,
        history: int = 1,
        n_coarse: int | None = None,
        max_batch: int | None = None,
        data_processor: nn.Module | None = None,
    ) -> PrefixResult:
        """Pick α from the first frames of the target trajectory and deploy θ(α).

        Parameters
        ----------
        frames : torch.Tensor
            ``[B, k + history, C, ...]``: the first ``history`` frames start the rollout,
            the next k are scored
        alpha_range : (float, float)
            the searched interval
        method : {"fast", "grid", "parabolic"}
            the bracketing search (the grid's own choice on a unimodal curve), the
            exhaustive ``n_grid``-point reference, or the search that stops within one
            grid step of it, with candidates written in place (see :mod:`neuralop_merge.prefix`)
        n_grid : int
            points of the reference grid (its spacing is the fast searches' resolution)
        history : int
            past frames the model takes as input
        n_coarse : int, optional
            points of the fast searches' first, coarse scan; by default about one unit of α
            apart (see :func:`~neuralop_merge.prefix.select_alpha`)
        max_batch : int, optional
            bounds the rollout's memory
        data_processor : neuraloperator DataProcessor, optional
            the pipeline's normalizing processor: ``frames`` are in physical units
            and each rollout step is pre- and postprocessed by it
        """
        return super().from_prefix(
            frames, box=[alpha_range], n_grid=n_grid, method=method, history=history, n_coarse=n_coarse,
            max_batch=max_batch, data_processor=data_processor,
        )

    def prefix_params(
        self, frames: torch.Tensor, box: list[tuple[float, float]], method: str, n_grid: int | None, history: int,
        max_batch: int | None,
    ) -> dict[str, Any]:
        """The parameters of :meth:`from_prefix`, named as the ``ccm_prefix`` strategy takes them."""
        return {
            "frames": frames, "alpha_range": list(box[0]), "method": method, "n_grid": n_grid, "history": history,
            "max_batch": max_batch,
        }


def check_lineage(anchor: nn.Module, experts: Mapping[str, nn.Module]) -> None:
    """Check the experts that record their anchor's fingerprint; warn about those that do not.

    Raises
    ------
    TrainingError
        when an expert records a different anchor than ``anchor``
    """
    from .training import check_expert_lineage  # training pulls in the Trainer; import on use

    unrecorded = []
    for name, expert in experts.items():
        if "anchor_fingerprint" in (getattr(expert, "provenance", None) or {}):
            check_expert_lineage(anchor, expert)
        else:
            unrecorded.append(name)
    if unrecorded:
        warn(
            f"experts {unrecorded} record no anchor fingerprint (trained outside neuralop-merge), so they "
            "cannot be checked against the anchor: the merge assumes they were fine-tuned from it"
        )
