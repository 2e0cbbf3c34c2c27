"""Multi-expert CCM: the merge surface fitted through K experts on d physical axes.

K experts θᵢ fine-tuned from one anchor θ₀ at physical coordinates μᵢ (one value per
axis, e.g. ``{"Du": 1e-3, "k": 5e-3}``) are placed at normalized coordinates
cᵢ ∈ [−1, 1]^d: per axis, c = (2t(μ) − t(μ_min) − t(μ_max)) / (t(μ_max) − t(μ_min))
with the axis' transform t and the experts' range on that axis. Per tensor, the
residuals Δᵢ = θᵢ − θ₀ are fitted by least squares with

    θ(c) ≈ θ₀ + A + B·c  (+ Σ_{j≤k} Q_jk c_j c_k with ``quadratic=True``).

The fit is linear in the Δᵢ, so it is solved once for all tensors, in closed form:
with X the K×p design matrix of features φ(cᵢ) = [1, cᵢ, (cᵢⱼcᵢₖ)], the fitted
model is θ(c) = θ₀ + Σᵢ wᵢ(c)·Δᵢ with w(c) = φ(c)ᵀ(XᵀX)⁻¹Xᵀ. Because φ holds the
constant, Σᵢ wᵢ(c) = 1 for every c, so the anchor cancels and θ(c) = Σᵢ wᵢ(c)·θᵢ:
every point of the surface is an affine combination of the experts, a
:class:`~neuralop_merge.strategies.base.Plan` realized by :func:`~neuralop_merge.merging.realize`
without any per-tensor regression. With K = 2 experts on d = 1 axis (c = ±1) this
is exactly the two-endpoint line of :class:`~neuralop_merge.ccm.CCM`:
w(α) = ((1 − α)/2, (1 + α)/2).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from .coordinates import Transform, normalized_coordinate, transformed
from .errors import StrategyError
from .merging import ModelLike, ReusedModel, prepare_inputs, realize
from .metrics import prefix_error
from .prefix import select_alpha
from .strategies.base import MergeInputs, Plan, Strategy

#: One expert's (or target's) physical coordinate: a value of the single axis, or axis -> value.
PhysicalCoordinate = Union[float, Mapping[str, float]]
#: A point of the normalized coordinate box: a float when d = 1, else d floats in axis order.
NormalizedCoordinate = Union[float, Sequence[float], np.ndarray, torch.Tensor]

DEFAULT_AXIS = "mu"


# -- the closed-form least-squares fit ------------------------------------------------------
def n_features(n_axes: int, quadratic: bool) -> int:
    """p, the number of fitted terms: 1 + d, plus d(d+1)/2 quadratic ones."""
    return 1 + n_axes + (n_axes * (n_axes + 1) // 2 if quadratic else 0)


def features(coordinates: np.ndarray, quadratic: bool) -> np.ndarray:
    """The design rows φ(c) = [1, c₁..c_d, (c_j·c_k for j ≤ k)] of ``[n, d]`` coordinates."""
    coordinates = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
    columns = [np.ones(len(coordinates)), *coordinates.T]
    if quadratic:
        d = coordinates.shape[1]
        columns += [coordinates[:, j] * coordinates[:, k] for j in range(d) for k in range(j, d)]
    return np.stack(columns, axis=1)


class LeastSquaresFit:
    """The fit θ(c) ≈ θ₀ + A + B·c (+ quadratic) through experts at normalized coordinates.

    Parameters
    ----------
    coordinates : array ``[K, d]``
        the experts' normalized coordinates
    quadratic : bool or "auto"
        add the d(d+1)/2 quadratic terms; ``"auto"`` adds them when K allows (K ≥ p)

    Raises
    ------
    StrategyError
        with fewer experts than fitted terms, or coordinates that do not determine the
        fit (e.g. experts on two axes that all lie on one line)
    """

    def __init__(self, coordinates: np.ndarray, quadratic: bool | str = False) -> None:
        coordinates = np.atleast_2d(np.asarray(coordinates, dtype=np.float64))
        n_experts, n_axes = coordinates.shape
        if quadratic == "auto":
            quadratic = n_experts >= n_features(n_axes, True)
        elif not isinstance(quadratic, bool):
            raise StrategyError(f"quadratic must be True, False or 'auto', got {quadratic!r}")
        p = n_features(n_axes, quadratic)
        if n_experts < p:
            kind = "a quadratic" if quadratic else "an affine"
            raise StrategyError(f"{kind} fit on {n_axes} axis/axes has {p} terms and needs at least {p} experts, got {n_experts}")
        design = features(coordinates, quadratic)
        if np.linalg.matrix_rank(design) < p:
            raise StrategyError(
                "the experts' coordinates do not determine the fit (on several axes, they must not all lie "
                "on one line; for a quadratic term, on one conic); add an expert off that set"
            )
        self.coordinates = coordinates
        self.quadratic = bool(quadratic)
        self.design = design
        # (XᵀX)⁻¹Xᵀ by a solve: exact 0.5s for the two-endpoint case, so the line is reproduced bit for bit.
        self.projector = np.linalg.solve(design.T @ design, design.T)

    @property
    def n_axes(self) -> int:
        return self.coordinates.shape[1]

    def weights(self, coordinate: np.ndarray) -> tuple[float, ...]:
        """wᵢ(c) = φ(c)ᵀ(XᵀX)⁻¹Xᵀ: the expert coefficients of the fitted model at c (they sum to 1)."""
        row = features(np.asarray(coordinate, dtype=np.float64).reshape(1, self.n_axes), self.quadratic)[0]
        return tuple(float(sum(row[k] * self.projector[k, i] for k in range(len(row)))) for i in range(len(self.coordinates)))

    def hat(self) -> np.ndarray:
        """H = X(XᵀX)⁻¹Xᵀ, ``[K, K]``: row i gives the fitted model at cᵢ; I − H gives the residuals."""
        return self.design @ self.projector

    def plan(self, coordinate: np.ndarray, info: Mapping[str, Any] | None = None) -> Plan:
        """The fitted model at ``coordinate`` as a Plan; the anchor coefficient is 0 (it cancels)."""
        coordinate = np.asarray(coordinate, dtype=np.float64).reshape(self.n_axes)
        return Plan(0.0, self.weights(coordinate), {"coordinate": coordinate.tolist(), "quadratic": self.quadratic, **(info or {})})


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


# -- physical coordinates -------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """One physical axis: its transform and the experts' range (normalized to [−1, 1])."""

    name: str
    transform: Transform
    low: float
    high: float

    def normalize(self, value: float) -> float:
        return normalized_coordinate(value, self.low, self.high, self.transform)


def expert_coordinate(name: str, model: nn.Module, coords: Mapping[str, PhysicalCoordinate] | None) -> dict[str, float]:
    """An expert's physical coordinate as ``{axis: value}``, from ``coords`` or its provenance.

    The training module records ``provenance["parameter"] = {"name": ..., "value": ...}``;
    a value that is itself a mapping is read as several axes.
    """
    if coords is not None:
        if name not in coords:
            raise StrategyError(f"coords has no entry for expert {name!r}")
        return as_axis_values(coords[name], DEFAULT_AXIS, f"coords[{name!r}]")
    try:
        parameter = model.provenance["parameter"]
        return as_axis_values(parameter["value"], str(parameter["name"]), f"expert {name!r}")
    except (AttributeError, KeyError, TypeError):
        raise StrategyError(f"expert {name!r} records no physical parameter in its provenance; pass coords=") from None


def as_axis_values(value: PhysicalCoordinate, default_axis: str, label: str) -> dict[str, float]:
    """``value`` as ``{axis: float}``; a bare number is a value of ``default_axis``."""
    pairs = value.items() if isinstance(value, Mapping) else [(default_axis, value)]
    try:
        result = {str(axis): float(v) for axis, v in pairs}
    except (TypeError, ValueError):
        raise StrategyError(f"{label}: coordinate must be a number or a mapping axis -> number, got {value!r}") from None
    if not result or not all(math.isfinite(v) for v in result.values()):
        raise StrategyError(f"{label}: coordinate must be finite and name at least one axis, got {value!r}")
    return result


def build_axes(values: Sequence[Mapping[str, float]], transform: Transform | Mapping[str, Transform]) -> tuple[Axis, ...]:
    """The axes spanned by the experts, each with its transform and the experts' range."""
    names = list(values[0])
    for value in values[1:]:
        if set(value) != set(names):
            raise StrategyError(f"experts name different axes: {sorted(names)} and {sorted(value)}")
    if isinstance(transform, Mapping):
        unknown = sorted(set(transform) - set(names))
        if unknown:
            raise StrategyError(f"transform names unknown axes {unknown}; the axes are {names}")
    axes = []
    for name in names:
        axis_transform = transform.get(name, "linear") if isinstance(transform, Mapping) else transform
        ordered = sorted((v[name] for v in values), key=lambda mu: transformed(mu, axis_transform, name))
        low, high = ordered[0], ordered[-1]
        if transformed(low, axis_transform, name) == transformed(high, axis_transform, name):
            raise StrategyError(f"every expert has {name}={low!r}: a constant axis cannot be fitted; leave it out")
        axes.append(Axis(name, axis_transform, low, high))
    return tuple(axes)


# -- the surface --------------------------------------------------------------------------
@dataclass(frozen=True)
class FitResidual:
    """How far one tensor's (or the whole model's) experts lie from the fitted surface.

    Attributes
    ----------
    name : str
        the tensor key, or ``"<overall>"``
    numel : int
    residual_norms : tuple[float, ...]
        ‖Δᵢ − Δ̂(cᵢ)‖ per expert
    relative : tuple[float, ...]
        ‖Δᵢ − Δ̂(cᵢ)‖ / ‖Δᵢ‖ per expert (NaN where Δᵢ = 0)
    relative_total : float
        √(Σᵢ‖Δᵢ − Δ̂(cᵢ)‖² / Σᵢ‖Δᵢ‖²), the share of the update norm the fit misses
    """

    name: str
    numel: int
    residual_norms: tuple[float, ...]
    relative: tuple[float, ...]
    relative_total: float


@dataclass(frozen=True)
class SurfacePrefixResult:
    """What :meth:`CCMSurface.from_prefix` returns.

    Attributes
    ----------
    model : nn.Module
        the deployed merged model
    coordinate : tuple[float, ...]
        the chosen normalized coordinate
    coordinates : torch.Tensor
        every evaluated coordinate, float64 ``[n_evaluations, d]``
    errors : torch.Tensor
        the prefix error at each, float64 ``[n_evaluations]``
    n_evaluations : int
    """

    model: nn.Module
    coordinate: tuple[float, ...]
    coordinates: torch.Tensor
    errors: torch.Tensor
    n_evaluations: int


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
            np.array([self.coordinate(self.expert_coords[name]) for name in self.expert_names]), quadratic
        )
        self.output = output
        self._strategy = CCMFit()

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
        values = self.physical(mu)
        return np.array([axis.normalize(values[axis.name]) for axis in self.axes])

    def _normalized(self, c: NormalizedCoordinate) -> np.ndarray:
        array = np.asarray(c.detach().cpu() if torch.is_tensor(c) else c, dtype=np.float64).reshape(-1)
        if array.shape != (len(self.axes),) or not np.isfinite(array).all():
            raise StrategyError(f"a normalized coordinate needs {len(self.axes)} finite value(s), got {c!r}")
        return array

    # -- points of the surface ------------------------------------------------------------
    def weights(self, c: NormalizedCoordinate) -> tuple[float, ...]:
        """The expert coefficients wᵢ(c) of the fitted model at normalized coordinate c."""
        return self.fit.weights(self._normalized(c))

    def plan(self, c: NormalizedCoordinate, info: Mapping[str, Any] | None = None) -> Plan:
        """The fitted model at c as affine coefficients of (θ₀, θ₁..θ_K)."""
        return self.fit.plan(self._normalized(c), {"axes": list(self.axis_names), **(info or {})})

    def at(self, c: NormalizedCoordinate) -> nn.Module:
        """θ(c) as a new model; at an expert's coordinate, the fitted (not the expert's own) weights."""
        return self._model(self.plan(c), {"coordinate": self._normalized(c).tolist()})

    def _model(self, plan: Plan, params: dict[str, Any]) -> nn.Module:
        return realize(self._strategy, self.inputs, plan, params, output=self.output)

    def from_coord(self, mu: PhysicalCoordinate | Sequence[float]) -> nn.Module:
        """The merged model for a target regime, at its normalized coordinate."""
        physical = self.physical(mu)
        return self._model(self.plan(self.coordinate(physical), {"mu": physical}), {"mu": physical})

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
        method: str = "fast",
        history: int = 1,
        max_batch: int | None = None,
        data_processor: nn.Module | None = None,
    ) -> SurfacePrefixResult:
        """Pick the coordinate whose rollout best matches the first observed frames.

        With one axis this is :func:`neuralop_merge.prefix.select_alpha` over ``box[0]``
        (``method`` "fast" or "grid", ``n_grid`` points, 41 by default), as in
        :meth:`CCM.from_prefix`. With d > 1 axes, ``n_grid`` points per axis (9 by
        default, so 9^d evaluations) are scored over the box, then, unless
        ``method="grid"``, a compass search refines from the best grid point: it tries
        ± one step along every axis, moves to any improvement, halves the step when
        none, and stops below an eighth of the grid spacing (staying inside the box).

        Parameters
        ----------
        frames : torch.Tensor
            ``[B, k + history, C, ...]``: the first ``history`` frames start the rollout,
            the following ``k`` are scored
        box : sequence of (low, high), optional
            the searched normalized range per axis, (−3, 3) on each by default
        data_processor : neuraloperator DataProcessor, optional
            the pipeline's normalizing processor: ``frames`` are in physical units and
            each rollout step is pre- and postprocessed by it
        """
        d = len(self.axes)
        box = [(-3.0, 3.0)] * d if box is None else [tuple(map(float, b)) for b in box]
        if len(box) != d or any(not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) for lo, hi in box):
            raise StrategyError(f"box must give a finite (low, high) with low < high for each of the {d} axes, got {box}")
        # Candidates are scored in one reused model: no copy or provenance per point.
        reused = ReusedModel(self._strategy, self.inputs)
        if d == 1:
            search = select_alpha(
                lambda a: reused(self.plan([a])), frames, alpha_range=box[0], method=method,
                n_grid=41 if n_grid is None else n_grid, history=history, max_batch=max_batch,
                data_processor=data_processor,
            )
            evaluated = {(float(a),): float(e) for a, e in zip(search.alphas, search.errors)}
        else:
            score = functools.partial(
                prefix_error, frames=frames, history=history, max_batch=max_batch, data_processor=data_processor
            )
            evaluated = self._box_search(reused, score, box, 9 if n_grid is None else n_grid, method)
        best = min(evaluated, key=evaluated.__getitem__)
        points = sorted(evaluated)
        info = {"prefix_frames": int(frames.shape[1]), "search": method, "n_evaluations": len(points)}
        model = self._model(self.plan(best, info), {"frames": frames, "box": [list(b) for b in box]})
        return SurfacePrefixResult(
            model, best, torch.tensor(points, dtype=torch.float64),
            torch.tensor([evaluated[p] for p in points], dtype=torch.float64), len(points),
        )

    def _box_search(
        self, reused: ReusedModel, score: Callable[[nn.Module], float], box: list[tuple[float, float]], n_grid: int,
        method: str,
    ) -> dict[tuple[float, ...], float]:
        if method not in ("fast", "grid"):
            raise StrategyError(f"method must be 'fast' or 'grid', got {method!r}")
        if not isinstance(n_grid, int) or n_grid < 2:
            raise StrategyError(f"n_grid must be an integer >= 2, got {n_grid!r}")
        cache: dict[tuple[float, ...], float] = {}

        def objective(point: tuple[float, ...]) -> float:
            if point not in cache:
                cache[point] = score(reused(self.plan(point)))
            return cache[point]

        axes_grid = [np.linspace(lo, hi, n_grid).tolist() for lo, hi in box]
        for point in np.array(np.meshgrid(*axes_grid, indexing="ij")).reshape(len(box), -1).T:
            objective(tuple(float(v) for v in point))
        if method == "fast":
            compass_search(objective, min(cache, key=cache.__getitem__), box, [(hi - lo) / (n_grid - 1) for lo, hi in box])
        return cache


def compass_search(
    objective: Callable[[tuple[float, ...]], float],
    start: tuple[float, ...],
    box: Sequence[tuple[float, float]],
    spacing: Sequence[float],
    shrink_to: float = 1 / 8,
) -> tuple[float, ...]:
    """Local refinement from a grid point: steps of half the spacing, halved until ``shrink_to``·spacing."""
    best, best_value = start, objective(start)
    scale = 0.5
    while scale >= shrink_to:
        moved = False
        for axis, (lo, hi) in enumerate(box):
            for sign in (-1.0, 1.0):
                candidate = list(best)
                candidate[axis] = min(max(best[axis] + sign * scale * spacing[axis], lo), hi)
                candidate = tuple(candidate)
                value = objective(candidate)
                if value < best_value:
                    best, best_value, moved = candidate, value, True
        if not moved:
            scale /= 2
    return best


def fit_residuals(fit: LeastSquaresFit, inputs: MergeInputs) -> list[FitResidual]:
    """Per tensor and overall: how far each expert lies from the fitted surface at its own coordinate."""
    residual_matrix = torch.from_numpy(np.eye(len(fit.coordinates)) - fit.hat())
    anchor = inputs.anchor.tensors
    rows, totals, delta_totals, numel = [], np.zeros(len(fit.coordinates)), np.zeros(len(fit.coordinates)), 0
    for key, base in anchor.items():
        dtype = torch.complex128 if base.is_complex() else torch.float64
        deltas = torch.stack([(e.tensors[key].to(base.device) - base).reshape(-1).to(dtype) for e in inputs.experts])
        residuals = residual_matrix.to(dtype) @ deltas.cpu()
        residual_sq = residuals.abs().square().sum(dim=1).numpy()
        delta_sq = deltas.abs().square().sum(dim=1).cpu().numpy()
        rows.append(_residual_row(key, base.numel(), residual_sq, delta_sq))
        totals, delta_totals, numel = totals + residual_sq, delta_totals + delta_sq, numel + base.numel()
    rows.append(_residual_row("<overall>", numel, totals, delta_totals))
    return rows


def _residual_row(name: str, numel: int, residual_sq: np.ndarray, delta_sq: np.ndarray) -> FitResidual:
    relative = tuple(float(math.sqrt(r / d)) if d > 0 else math.nan for r, d in zip(residual_sq, delta_sq))
    total = float(delta_sq.sum())
    return FitResidual(
        name, numel, tuple(float(math.sqrt(r)) for r in residual_sq), relative,
        float(math.sqrt(residual_sq.sum() / total)) if total > 0 else math.nan,
    )

