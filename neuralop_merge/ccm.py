"""Calibration-Conditioned Merge: the merge line through two endpoint experts.

θ₀ the family anchor, θL and θH experts fine-tuned from it at μL < μH,
ΔL = θL − θ₀, ΔH = θH − θ₀, the shared adaptation Δ₊ = (ΔL + ΔH)/2 and the signed
physical direction Δ₋ = (ΔH − ΔL)/2. The merge line is θ(α) = θ₀ + Δ₊ + α·Δ₋; CCM
reads α from metadata (:meth:`CCM.from_coord`, optionally through a calibrated map)
or from an observed rollout prefix (:meth:`CCM.from_prefix`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .coordinates import AffineMap, Transform, check_endpoints, normalized_coordinate
from .errors import StrategyError
from .merging import ModelLike, prepare_inputs, realize
from .prefix import PrefixSearch, select_alpha
from .strategies.base import Plan
from .strategies.fixed_alpha import FixedAlpha, line_plan


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
        coords: Mapping[str, float] | None = None,
        **kwargs: Any,
    ) -> CCM:
        """Build the merge line from named experts, e.g. ``finetune_endpoints``' output.

        Parameters
        ----------
        anchor : nn.Module or path
            the anchor every expert must have been fine-tuned from
        experts : Mapping[str, nn.Module or path]
            two named experts
        coords : Mapping[str, float], optional
            each expert's physical parameter; read from its provenance when omitted
        **kwargs
            passed to :class:`CCM` (``transform``, ``output``)

        Raises
        ------
        TrainingError
            when an expert records a different anchor fingerprint than ``anchor``'s
        """
        from .training import check_expert_lineage  # training pulls in the Trainer; import on use

        if len(experts) != 2:
            raise StrategyError(f"CCM takes exactly two endpoint experts, got {len(experts)}: {sorted(experts)}")
        loaded = prepare_inputs(anchor, list(experts.values()))
        for view in loaded.experts:
            check_expert_lineage(loaded.anchor.model, view.model)
        named = dict(zip(experts, (view.model for view in loaded.experts)))
        values = {name: _coordinate_of(name, model, coords) for name, model in named.items()}
        low, high = sorted(named, key=values.__getitem__)
        return cls(
            loaded.anchor.model, named[low], named[high], low_coord=values[low], high_coord=values[high], **kwargs
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
    def plan(self, alpha: float, info: Mapping[str, Any] | None = None) -> Plan:
        """The affine coefficients of (θ₀, θL, θH) at α."""
        return line_plan(float(alpha), {"low_coord": self.low_coord, "high_coord": self.high_coord, **(info or {})})

    def at(self, alpha: float) -> nn.Module:
        """θ(α) = θ₀ + Δ₊ + α·Δ₋ as a new model (α = −1: θL, +1: θH, 0: the average)."""
        return self._model(self.plan(alpha), {"alpha": float(alpha)})

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
        """
        search = select_alpha(
            self.at, frames, alpha_range=alpha_range, method=method, n_grid=n_grid, history=history
        )
        info = {"prefix_frames": int(frames.shape[1]), "search": method, "n_evaluations": search.n_evaluations}
        model = self._model(self.plan(search.alpha, info), {"frames": frames, "alpha_range": list(alpha_range)})
        return PrefixResult(model, search.alpha, search)


def _coordinate_of(name: str, model: nn.Module, coords: Mapping[str, float] | None) -> float:
    if coords is not None:
        if name not in coords:
            raise StrategyError(f"coords has no entry for expert {name!r}")
        return float(coords[name])
    try:
        return float(model.provenance["parameter"]["value"])
    except (AttributeError, KeyError, TypeError):
        raise StrategyError(f"expert {name!r} records no physical parameter in its provenance; pass coords=") from None
