"""The merge-geometry engine: the CCM surface through K experts on d physical axes.

K experts θᵢ fine-tuned from one anchor θ₀ at physical coordinates μᵢ (one value per
axis, e.g. ``{"Du": 1e-3, "k": 5e-3}``, see :mod:`neuralop_merge.axes`) are placed at
normalized coordinates cᵢ ∈ [−1, 1]^d, and the merged model at any c is the
least-squares fit of :mod:`neuralop_merge.geometry` through them. :class:`CCMSurface`
reads c from a target's coordinate (through a calibrated map once :meth:`~CCMSurface.calibrate`
ran) or from an observed rollout prefix, and realizes the point with the strategy that
names it in provenance. The two-endpoint CCM line, :class:`neuralop_merge.ccm.CCM`, is its
K = 2, d = 1 case.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from .axes import DEFAULT_AXIS, PhysicalCoordinate, as_axis_values, build_axes, expert_coordinate
from .box_search import check_box, search_box
from .combination import SearchModel
from .coordinates import AffineMap, Transform
from .errors import StrategyError
from .geometry import LeastSquaresFit
from .merging import ModelLike, prepare_inputs, realize
from .metrics import prefix_error
from .prefix import N_GRID, SEARCH_METHOD, prefix_info, search_axis
from .residuals import FitResidual, fit_residuals
from .strategies.base import Plan, Strategy
from .strategies.ccm_fit import CCMFit

#: A point of the normalized coordinate box: a float when d = 1, else d floats in axis order.
NormalizedCoordinate = Union[float, Sequence[float], np.ndarray, torch.Tensor]


@dataclass(frozen=True)
class PrefixResult:
    """What ``from_prefix`` returns, on the CCM line and on a surface alike.

    Attributes
    ----------
    model : nn.Module
        the deployed merged model
    coordinate : tuple[float, ...]
        the chosen normalized coordinate (α on the CCM line)
    coordinates : torch.Tensor
        every evaluated coordinate, sorted, float64 ``[n_evaluations, d]``
    errors : torch.Tensor
        the prefix error at each, float64 ``[n_evaluations]``
    n_evaluations : int
    method : str
        the search method
    """

    model: nn.Module
    coordinate: tuple[float, ...]
    coordinates: torch.Tensor
    errors: torch.Tensor
    n_evaluations: int
    method: str

    @property
    def alpha(self) -> float:
        """The chosen coordinate of a one-axis search (α on the CCM line)."""
        if len(self.coordinate) != 1:
            raise StrategyError(f"alpha is the coordinate of a one-axis search; this one has {len(self.coordinate)} axes")
        return self.coordinate[0]

    @property
    def alphas(self) -> torch.Tensor:
        """Every evaluated coordinate of a one-axis search, ``[n_evaluations]``."""
        return self.coordinates[:, 0]


class CCMSurface:
    """The least-squares merge surface through K ≥ 2 experts on d ≥ 1 physical axes.

    Parameters
    ----------
    anchor : nn.Module or checkpoint path
        θ₀, the model every expert was fine-tuned from
    experts : Mapping[str, nn.Module or path]
        the named experts
    coords : Mapping[str, float or Mapping[str, float]]
        each expert's physical coordinate: a number (one axis) or ``{axis: value}``
    transform : "linear", "log", callable, or Mapping[str, those]
        per-axis transform (axes left out of a mapping are linear)
    quadratic : bool or "auto"
        add the quadratic terms (needs K ≥ 1 + d + d(d+1)/2); "auto" adds them when K allows
    output : {"dense", "refactorize"}
        what merged factorized (TFNO) weights become

    Examples
    --------
    >>> surface = CCMSurface(anchor, experts, {"a": {"Du": 1e-3, "k": 0.0}, ...},
    ...                      transform={"Du": "log"})  # doctest: +SKIP
    >>> model = surface.from_coord({"Du": 8e-3, "k": 0.01})  # doctest: +SKIP
    """

    def __init__(
        self,
        anchor: ModelLike,
        experts: Mapping[str, ModelLike],
        coords: Mapping[str, PhysicalCoordinate],
        *,
        transform: Transform | Mapping[str, Transform] = "linear",
        quadratic: bool | str = False,
        output: str = "dense",
    ) -> None:
        if not isinstance(experts, Mapping) or len(experts) < 2:
            raise StrategyError("CCMSurface needs a mapping of at least two named experts")
        self.expert_names = tuple(experts)
        self.inputs = prepare_inputs(anchor, list(experts.values()))
        self.expert_coords = {
            name: as_axis_values(coords[name], DEFAULT_AXIS, f"coords[{name!r}]") if name in coords
            else expert_coordinate(name, model, coords)
            for name, model in experts.items()
        }
        self.axes = build_axes(list(self.expert_coords.values()), transform)
        self.fit = LeastSquaresFit(
            np.array([self._box_coordinate(self.expert_coords[name]) for name in self.expert_names]), quadratic
        )
        self.output = output
        self.maps: tuple[AffineMap, ...] | None = None
        self.calibration_bank: list[tuple[dict[str, float], list[float]]] | None = None

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(axis.name for axis in self.axes)

    @property
    def normalized_coords(self) -> np.ndarray:
        """The experts' normalized coordinates, ``[K, d]`` in :attr:`expert_names` order."""
        return self.fit.coordinates

    # -- coordinates --------------------------------------------------------------------
    def physical(self, mu: PhysicalCoordinate | Sequence[float]) -> dict[str, float]:
        """``mu`` (a number when d = 1, ``{axis: value}``, or d values in :attr:`axis_names` order) as a dict."""
        if isinstance(mu, Mapping):
            if set(mu) != set(self.axis_names):
                raise StrategyError(f"a coordinate must give exactly the axes {list(self.axis_names)}; got {sorted(mu)}")
            return {name: float(mu[name]) for name in self.axis_names}
        values = np.asarray(mu, dtype=np.float64).reshape(-1).tolist()
        if len(values) != len(self.axes):
            raise StrategyError(f"a coordinate needs {len(self.axes)} value(s) ({list(self.axis_names)}), got {mu!r}")
        return dict(zip(self.axis_names, values))

    def coordinate(self, mu: PhysicalCoordinate | Sequence[float]) -> np.ndarray:
        """The normalized coordinate ``[d]`` of a physical one (see :meth:`physical`)."""
        return self._box_coordinate(mu)

    def _box_coordinate(self, mu: PhysicalCoordinate | Sequence[float]) -> np.ndarray:
        values = self.physical(mu)
        return np.array([axis.normalize(values[axis.name]) for axis in self.axes])

    def _normalized(self, c: NormalizedCoordinate) -> np.ndarray:
        array = np.asarray(c.detach().cpu() if torch.is_tensor(c) else c, dtype=np.float64).reshape(-1)
        if array.shape != (len(self.axes),) or not np.isfinite(array).all():
            raise StrategyError(f"a normalized coordinate needs {len(self.axes)} finite value(s), got {c!r}")
        return array

    # -- calibration --------------------------------------------------------------------
    def calibrate(self, bank: Iterable[tuple[PhysicalCoordinate, NormalizedCoordinate]]) -> tuple[AffineMap, ...]:
        """Fit, per axis, g(c) = a·c + b on a bank of (μ, best coordinate) pairs.

        Later :meth:`from_coord` deploys g(c(μ)) instead of c(μ). Each axis needs at
        least two distinct coordinates in the bank.

        Raises
        ------
        StrategyError
            with fewer than two distinct coordinates on an axis, or non-finite values
        """
        pairs = [(self.physical(mu), self._normalized(best)) for mu, best in bank]
        observed = [self._box_coordinate(mu) for mu, _ in pairs]
        self.maps = tuple(
            AffineMap.fit((c[j], best[j]) for c, (_, best) in zip(observed, pairs)) for j in range(len(self.axes))
        )
        self.calibration_bank = [(mu, best.tolist()) for mu, best in pairs]
        return self.maps

    def calibrated_coordinate(self, mu: PhysicalCoordinate | Sequence[float]) -> np.ndarray:
        """g(c(μ)) per axis once :meth:`calibrate` ran, else c(μ)."""
        coordinate = self._box_coordinate(mu)
        if self.maps is None:
            return coordinate
        return np.array([mapping(value) for mapping, value in zip(self.maps, coordinate)])

    # -- points of the surface ------------------------------------------------------------
    def weights(self, c: NormalizedCoordinate, *, beta: float = 1.0) -> tuple[float, ...]:
        """The expert coefficients wᵢ(c) of the fitted model at normalized coordinate c."""
        return self.fit.weights(self._normalized(c), beta=beta)

    def plan(self, c: NormalizedCoordinate, info: Mapping[str, Any] | None = None, *, beta: float = 1.0) -> Plan:
        """The fitted model at c (θ₀ + β·A + B·c off the surface) as affine coefficients of (θ₀, θ₁..θ_K)."""
        return self.fit.plan(self._normalized(c), {"axes": list(self.axis_names), **(info or {})}, beta=beta)

    def strategy(self, door: str, *, beta: float = 1.0) -> Strategy:
        """The strategy a merge through ``door`` ("at", "coord" or "prefix") records in provenance."""
        return CCMFit()

    def at(self, c: NormalizedCoordinate, *, beta: float = 1.0) -> nn.Module:
        """θ(c) as a new model; at an expert's coordinate, the fitted (not the expert's own) weights."""
        params = {"coordinate": self._normalized(c).tolist(), **({} if beta == 1.0 else {"beta": float(beta)})}
        return self.realize(self.strategy("at", beta=beta), self.plan(c, beta=beta), params)

    def realize(self, strategy: Strategy, plan: Plan, params: dict[str, Any], into: SearchModel | None = None) -> nn.Module:
        """The merged model of ``plan``, with provenance naming ``strategy`` (see :func:`neuralop_merge.merging.realize`)."""
        return realize(strategy, self.inputs, plan, params, output=self.output, into=into)

    def from_coord(self, mu: PhysicalCoordinate | Sequence[float]) -> nn.Module:
        """The merged model for a target regime, at its (calibrated) normalized coordinate."""
        physical = self.physical(mu)
        info = {"mu": physical, "calibrated": self.maps is not None}
        return self.realize(self.strategy("coord"), self.plan(self.calibrated_coordinate(physical), info), {"mu": physical})

    def fit_residuals(self) -> list[FitResidual]:
        """Per tensor, then overall: ‖Δᵢ − Δ̂(cᵢ)‖ of every expert.

        Zero when the experts are exactly affine (quadratic) in c, and trivially when K
        equals the number of fitted terms (the surface then interpolates the experts).
        """
        return fit_residuals(self.fit, self.inputs)

    # -- CCM-Prefix over the box ---------------------------------------------------------
    def from_prefix(
        self,
        frames: torch.Tensor,
        *,
        box: Sequence[tuple[float, float]] | None = None,
        n_grid: int | None = None,
        method: str = SEARCH_METHOD,
        history: int = 1,
        n_coarse: int | None = None,
        max_batch: int | None = None,
        data_processor: nn.Module | None = None,
    ) -> PrefixResult:
        """Pick the coordinate whose rollout best matches the first observed frames.

        With one axis this is :func:`neuralop_merge.prefix.select_alpha` over ``box[0]``
        (``method`` "fast", "grid" or "parabolic", ``n_grid`` points, 41 by default). With
        d > 1 axes, ``n_grid`` points per axis (9 by default, so 9^d evaluations) are
        scored over the box, then, unless ``method="grid"``, refined by the compass
        search of :mod:`neuralop_merge.box_search`.

        Parameters
        ----------
        frames : torch.Tensor
            ``[B, k + history, C, ...]``: the first ``history`` frames start the rollout,
            the following ``k`` are scored
        box : sequence of (low, high), optional
            the searched normalized range per axis, (−3, 3) on each by default
        n_coarse : int, optional
            points of the one-axis fast searches' coarse scan (see
            :func:`~neuralop_merge.prefix.select_alpha`); a box search has no such scan
        max_batch : int, optional
            bounds the rollout's memory
        data_processor : neuraloperator DataProcessor, optional
            the pipeline's normalizing processor: ``frames`` are in physical units and
            each rollout step is pre- and postprocessed by it
        """
        box = check_box(box, len(self.axes))
        strategy = self.strategy("prefix")
        scoring = {"history": history, "max_batch": max_batch, "data_processor": data_processor}
        if len(self.axes) == 1:
            best, evaluated, info, candidates = self._line_search(strategy, frames, box[0], n_grid, method,
                                                                  {**scoring, "n_coarse": n_coarse})
        elif n_coarse is not None:
            raise StrategyError(f"n_coarse sets a one-axis search's coarse scan; this search has {len(self.axes)} axes")
        else:
            best, evaluated, info, candidates = self._box_search(strategy, frames, box, n_grid, method, scoring)
        params = self.prefix_params(frames, box, method, n_grid, history, max_batch)
        if n_coarse is not None:
            params["n_coarse"] = n_coarse
        model = self.realize(strategy, self.plan(best, info), params, into=candidates)
        points = sorted(evaluated)
        return PrefixResult(
            model, best, torch.tensor(points, dtype=torch.float64),
            torch.tensor([evaluated[p] for p in points], dtype=torch.float64), len(points), method,
        )

    def prefix_params(
        self, frames: torch.Tensor, box: list[tuple[float, float]], method: str, n_grid: int | None, history: int,
        max_batch: int | None,
    ) -> dict[str, Any]:
        """The parameters a prefix merge records in provenance."""
        return {
            "frames": frames, "box": [list(b) for b in box], "method": method, "n_grid": n_grid, "history": history,
            "max_batch": max_batch,
        }

    def _line_search(
        self, strategy: Strategy, frames: torch.Tensor, interval: tuple[float, float], n_grid: int | None, method: str,
        scoring: dict[str, Any],
    ) -> tuple[tuple[float, ...], dict[tuple[float, ...], float], dict[str, Any], SearchModel]:
        search, candidates = search_axis(
            strategy, self.inputs, lambda a: self.plan(a), frames, affine=not self.fit.quadratic,
            alpha_range=interval, method=method, n_grid=N_GRID if n_grid is None else n_grid, **scoring,
        )
        evaluated = {(float(a),): float(e) for a, e in zip(search.alphas, search.errors)}
        return (search.alpha,), evaluated, prefix_info(search, frames), candidates

    def _box_search(
        self, strategy: Strategy, frames: torch.Tensor, box: list[tuple[float, float]], n_grid: int | None,
        method: str, scoring: dict[str, Any],
    ) -> tuple[tuple[float, ...], dict[tuple[float, ...], float], dict[str, Any], SearchModel]:
        candidates = SearchModel(strategy, self.inputs)
        score = functools.partial(prefix_error, frames=frames, **scoring)
        evaluated = search_box(lambda point: score(candidates(self.plan(point))), box, 9 if n_grid is None else n_grid, method)
        best = min(evaluated, key=evaluated.__getitem__)
        return best, evaluated, {"prefix_frames": int(frames.shape[1]), "search": method, "n_evaluations": len(evaluated)}, candidates
