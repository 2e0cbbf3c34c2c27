"""Calibration-Conditioned Merge: the merge line through two endpoint experts.

θ₀ the family anchor, θL and θH experts fine-tuned from it at μL < μH,
ΔL = θL − θ₀, ΔH = θH − θ₀, the shared adaptation Δ₊ = (ΔL + ΔH)/2 and the signed
physical direction Δ₋ = (ΔH − ΔL)/2. The merge line is θ(α) = θ₀ + Δ₊ + α·Δ₋; CCM
reads α from metadata (:meth:`CCM.from_coord`, optionally through a calibrated map)
or from an observed rollout prefix (:meth:`CCM.from_prefix`). More than two experts,
or experts on several physical axes, give the fitted merge surface of
:mod:`neuralop_merge.surface` (:meth:`CCM.from_experts` picks).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .coordinates import AffineMap, Transform, check_endpoints, normalized_coordinate, transformed
from .errors import StrategyError
from .merging import ModelLike, ReusedModel, prepare_inputs, realize
from .prefix import PrefixSearch, select_alpha
from .strategies.base import Plan
from .strategies.ccm_plane import CCMPlane
from .strategies.fixed_alpha import FixedAlpha, line_plan
from .surface import CCMSurface, PhysicalCoordinate, expert_coordinate


@dataclass(frozen=True)
class PrefixResult:
    """What :meth:`CCM.from_prefix` returns: the deployed model, its α and the score curve."""

    model: nn.Module
    alpha: float
    search: PrefixSearch


class CCM:
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
        self.inputs = prepare_inputs(anchor, [low, high])
        self.low_coord = float(low_coord)
        self.high_coord = float(high_coord)
        self.transform = transform
        self.output = output
        self.calibration: AffineMap | None = None
        self._strategy = FixedAlpha()

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
    def plan(self, alpha: float, info: Mapping[str, Any] | None = None, *, beta: float = 1.0) -> Plan:
        """The affine coefficients of (θ₀, θL, θH) at α (and β, off the line)."""
        coords = {"low_coord": self.low_coord, "high_coord": self.high_coord, **(info or {})}
        return line_plan(float(alpha), coords, beta=float(beta))

    def at(self, alpha: float, *, beta: float = 1.0) -> nn.Module:
        """θ(α, β) = θ₀ + β·Δ₊ + α·Δ₋ as a new model.

        On the merge line (β = 1, the default) α = −1 is θL, +1 is θH and 0 the average;
        β = 0, α = 0 is the anchor (the ``ccm_plane`` strategy).
        """
        if beta == 1.0:
            return self._model(self.plan(alpha), {"alpha": float(alpha)})
        plan = self.plan(alpha, beta=beta)
        return realize(CCMPlane(), self.inputs, plan, {"alpha": float(alpha), "beta": float(beta)}, output=self.output)

    def _model(self, plan: Plan, params: dict[str, Any]) -> nn.Module:
        return realize(self._strategy, self.inputs, plan, params, output=self.output)

    # -- CCM-Coord -----------------------------------------------------------------------
    def coordinate(self, mu: float) -> float:
        """c(μ): −1 at μL, +1 at μH, affine in the transformed parameter."""
        return normalized_coordinate(mu, self.low_coord, self.high_coord, self.transform)

    def alpha_for(self, mu: float) -> float:
        """α = g(c(μ)); g is the calibrated map once :meth:`calibrate` ran, else the identity."""
        mapping = self.calibration or AffineMap()
        return mapping(self.coordinate(mu))

    def from_coord(self, mu: float) -> nn.Module:
        """The merged model for a target regime μ, with α read from its coordinate."""
        alpha = self.alpha_for(mu)
        info = {"mu": float(mu), "coordinate": self.coordinate(mu), "calibrated": self.calibration is not None}
        return self._model(self.plan(alpha, info), {"mu": float(mu)})

    def calibrate(self, bank: Iterable[tuple[float, float]]) -> AffineMap:
        """Fit g(c) = a·c + b on a bank of (μ, best α) pairs; later :meth:`from_coord` uses it."""
        self.calibration = AffineMap.fit((self.coordinate(mu), alpha) for mu, alpha in bank)
        return self.calibration

    # -- CCM-Prefix ----------------------------------------------------------------------
    def from_prefix(
        self,
        frames: torch.Tensor,
        *,
        alpha_range: tuple[float, float] = (-3.0, 3.0),
        method: str = "fast",
        n_grid: int = 41,
        history: int = 1,
        data_processor: nn.Module | None = None,
    ) -> PrefixResult:
        """Pick α from the first frames of the target trajectory and deploy θ(α).

        Parameters
        ----------
        frames : torch.Tensor
            ``[B, k+1, C, ...]``: frame 0 is the rollout's start, frames 1..k are scored
        alpha_range : (float, float)
            the searched interval
        method : {"fast", "grid"}
            the bracketing search, or the exhaustive ``n_grid``-point reference
        n_grid : int
            points of the reference grid (its spacing is the fast search's resolution)
        history : int
            past frames the model takes as input
        data_processor : neuraloperator DataProcessor, optional
            the pipeline's normalizing processor: ``frames`` are in physical units
            and each rollout step is pre- and postprocessed by it
        """
        # Candidates are scored in one reused model: no copy or provenance per α.
        reused = ReusedModel(self._strategy, self.inputs)
        search = select_alpha(
            lambda alpha: reused(self.plan(alpha)), frames, alpha_range=alpha_range, method=method, n_grid=n_grid,
            history=history, data_processor=data_processor,
        )
        info = {"prefix_frames": int(frames.shape[1]), "search": method, "n_evaluations": search.n_evaluations}
        model = self._model(self.plan(search.alpha, info), {"frames": frames, "alpha_range": list(alpha_range)})
        return PrefixResult(model, search.alpha, search)


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
        warnings.warn(
            f"experts {unrecorded} record no anchor fingerprint (trained outside neuralop-merge), so they "
            "cannot be checked against the anchor: the merge assumes they were fine-tuned from it",
            stacklevel=3,
        )
