"""Search for the merge coefficient that minimises the prefix error (CCM-Prefix).

CCM-Prefix picks, on the merge line ``theta(alpha)``, the ``alpha`` whose
rollout best reproduces an observed prefix of a trajectory. One evaluation
(build the merged model, roll it out over the prefix) costs as much as a short
rollout, so :func:`select_alpha` offers two searches:

``"grid"``
    the exhaustive reference: ``n_grid`` uniform points, both ends included.
``"fast"``
    a coarse subset of that grid, its points about one unit of α apart, then a
    safeguarded parabolic search over the grid's indices inside the bracket of
    the best coarse point, down to a local minimum of the grid. On a curve that
    is unimodal at the coarse resolution this is exactly the grid's choice, for
    a quarter to two fifths of the evaluations; otherwise the coarse grid is
    made twice as dense first, and every coarse basin is searched.
``"parabolic"``
    the same, except that on a curve unimodal at the coarse resolution it stops
    as soon as the parabola through a bracket at most :data:`LOCAL_BRACKET` grid
    steps wide puts the minimum within one grid step of the best point found:
    within one grid step of the grid's choice, typically after 7 to 10
    evaluations. :func:`search_line` pairs it with candidates written in place
    (:class:`~neuralop_merge.combination.LinearPath`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .combination import LinearPath, SearchModel
from .errors import NonFiniteError, StrategyError, first_line
from .metrics import prefix_error
from .strategies.base import MAX_COEFFICIENT, MergeInputs, Plan, Strategy

METHODS: tuple[str, ...] = ("fast", "grid", "parabolic")
# The defaults of every CCM-Prefix entry point (select_alpha, search_axis, CCM.from_prefix, the
# ccm_prefix strategy, CCMSurface.from_prefix), kept here so that the layers cannot drift apart.
#: Interval searched for α.
ALPHA_RANGE: tuple[float, float] = (-3.0, 3.0)
#: Points of the reference grid (41 over ±3: a step of 0.15).
N_GRID = 41
#: The bracketing search that makes the grid's own choice on a unimodal curve.
SEARCH_METHOD = "fast"
#: Widest side of a bracket, in grid steps, whose parabola ``"parabolic"`` trusts to put
#: the minimum within one step: narrower costs evaluations, wider misses on lopsided
#: curves (chosen on the prefix-error curves of the three study families).
LOCAL_BRACKET = 7
#: Widest gap, in units of α, between the points of the fast methods' coarse scan. One unit is the
#: distance from the average (α = 0) to an expert (α = ±1): a scan with gaps of 2 (5 points on ±4)
#: stepped over a deep basin next to the low expert on the prefix curves of the study's DiffReact
#: extrapolation (errors 0.70 at α = -2, 0.10 at -1.4, 0.24 at 0) and settled in a shallower one.
MAX_COARSE_STEP = 1.0
#: Most points of a search grid: 10 001 rollouts already take hours at the study's sizes.
MAX_GRID = 10_001

# Fraction of the golden section, used when a parabolic step is not trusted.
GOLDEN = (3.0 - math.sqrt(5.0)) / 2.0


@dataclass(frozen=True)
class PrefixSearch:
    """Outcome of a search over the merge coefficient.

    Attributes
    ----------
    alpha : float
        The evaluated coefficient with the smallest prefix error.
    alphas : Tensor
        Every evaluated coefficient, sorted, float64 ``[n_evaluations]``.
    errors : Tensor
        Prefix error at each of ``alphas``, float64 ``[n_evaluations]``.
    n_evaluations : int
        Number of merged models built and rolled out.
    method : str
        The search method, ``"fast"`` or ``"grid"``.
    """

    alpha: float
    alphas: Tensor
    errors: Tensor
    n_evaluations: int
    method: str


class _PrefixObjective:
    """Prefix error as a function of alpha, evaluated at most once per alpha."""

    def __init__(
        self,
        model_at: Callable[[float], nn.Module],
        frames: Tensor,
        *,
        history: int,
        max_batch: int | None,
        data_processor: nn.Module | None = None,
    ) -> None:
        self.model_at = model_at
        self.frames = frames
        self.history = history
        self.max_batch = max_batch
        self.data_processor = data_processor
        self.cache: dict[float, float] = {}

    def __call__(self, alpha: float) -> float:
        alpha = float(alpha)
        if alpha not in self.cache:
            model = self.model_at(alpha)
            if not self.cache:  # the first model: check the frames fit it before any rollout
                self.frames = fit_frames_to_model(self.frames, model, self.history)
            error = self._score(model)
            # A rollout that blew up is the worst candidate, not an unordered one.
            self.cache[alpha] = error if math.isfinite(error) else math.inf
        return self.cache[alpha]

    def _score(self, model: nn.Module) -> float:
        try:
            return prefix_error(
                model, self.frames, history=self.history, max_batch=self.max_batch, data_processor=self.data_processor
            )
        except RuntimeError as error:  # a shape the model's layers reject, found only by running it
            raise StrategyError(
                f"frames of shape {tuple(self.frames.shape)} do not fit the model: {first_line(error)}"
            ) from None

    def best(self) -> float:
        """The α with the smallest error; refused when every α scored non-finite."""
        if all(math.isinf(error) for error in self.cache.values()):
            largest = float(self.frames.abs().max())
            raise NonFiniteError(
                f"every candidate alpha gives a non-finite prefix error (largest |frame value| {largest:.3g}): "
                "the frames cannot be scored"
            )
        return min(self.cache, key=self.cache.__getitem__)


def check_frames(frames: object, history: int = 1) -> Tensor:
    """Refuse prefix frames that cannot be scored, before any model is built.

    ``frames`` must be a real floating tensor ``[B, k + history, C, *spatial]`` with
    ``B >= 1``, ``k >= 1``, at least one channel and one point, and finite values.
    """
    if not torch.is_tensor(frames):
        raise StrategyError(f"frames must be a tensor [B, k+{history}, C, ...], got {type(frames).__name__}")
    shape = tuple(frames.shape)
    if frames.dim() < 4 or frames.shape[1] <= history:
        raise StrategyError(f"frames must be [B, k+{history}, C, ...] with k >= 1, got shape {shape}")
    if frames.numel() == 0:
        raise StrategyError(f"frames of shape {shape} are empty")
    if not frames.is_floating_point() or frames.layout != torch.strided:
        raise StrategyError(f"frames must be a dense real floating-point tensor, got {frames.dtype} ({frames.layout})")
    bad = int((~torch.isfinite(frames)).sum())
    if bad:
        raise NonFiniteError(f"frames hold {bad} NaN/Inf value(s)")
    return frames


def fit_frames_to_model(frames: Tensor, model: nn.Module, history: int) -> Tensor:
    """``frames`` cast to ``model``'s dtype, after checking its channels and spatial axes.

    neuraloperator models record ``in_channels`` and ``n_dim``; other modules are
    checked by running them (a mismatch then surfaces in :class:`_PrefixObjective`).
    """
    in_channels, n_dim = getattr(model, "in_channels", None), getattr(model, "n_dim", None)
    channels, spatial = frames.shape[2], frames.dim() - 3
    if isinstance(in_channels, int) and channels * history != in_channels:
        raise StrategyError(
            f"frames have {channels} channel(s) (x history {history}) but the model takes {in_channels}"
        )
    if isinstance(n_dim, int) and spatial != n_dim:
        raise StrategyError(f"frames have {spatial} spatial axes but the model is {n_dim}-D")
    parameter = next((p for p in model.parameters() if p.is_floating_point()), None)
    if parameter is None or parameter.dtype == frames.dtype:
        return frames
    cast = frames.to(parameter.dtype)
    if not bool(torch.isfinite(cast).all()):
        raise NonFiniteError(f"frames overflow the model's dtype {parameter.dtype}")
    return cast


def select_alpha(
    model_at: Callable[[float], nn.Module],
    frames: Tensor,
    *,
    alpha_range: tuple[float, float] = ALPHA_RANGE,
    method: str = SEARCH_METHOD,
    n_grid: int = N_GRID,
    history: int = 1,
    n_coarse: int | None = None,
    max_batch: int | None = None,
    data_processor: nn.Module | None = None,
) -> PrefixSearch:
    """Choose the merge coefficient whose rollout best fits an observed prefix.

    Parameters
    ----------
    model_at : Callable[[float], nn.Module]
        Returns the merged model at a coefficient (e.g. ``CCM.at``).
    frames : Tensor
        Observed trajectories ``[B, k + history, C, *spatial]``, see
        :func:`neuralop_merge.metrics.prefix_error`.
    alpha_range : tuple of float, default (-3.0, 3.0)
        Closed interval searched.
    method : {"fast", "grid", "parabolic"}, default "fast"
        ``"grid"`` evaluates ``n_grid`` uniform points; ``"fast"`` finds a
        local minimum of the same grid, which is the grid's choice whenever
        the curve is unimodal at the coarse resolution, with a quarter to two
        fifths of the evaluations; ``"parabolic"`` stops within one grid step
        of it, with a little fewer.
    n_grid : int, default 41
        Size of the reference grid; its spacing sets the fast method's
        resolution.
    history : int, default 1
        Number of past frames the model sees.
    n_coarse : int, optional
        Number of grid points in the fast methods' first, coarse scan (>= 3).
        By default enough for points at most about :data:`MAX_COARSE_STEP`
        apart, and at least 5: 7 on the default range (−3, 3), 9 on (−4, 4).
    max_batch : int, optional
        Passed to the rollout to bound memory.
    data_processor : neuraloperator DataProcessor, optional
        Passed to the rollout, so that frames in physical units are compared with
        de-normalized predictions.

    Returns
    -------
    PrefixSearch
        The chosen coefficient and every evaluation made.
    """
    low, high = _check_search(alpha_range, method, n_grid, n_coarse)
    n_coarse = coarse_count(low, high) if n_coarse is None else n_coarse
    frames = check_frames(frames, history)
    objective = _PrefixObjective(
        model_at, frames, history=history, max_batch=max_batch, data_processor=data_processor
    )
    grid = torch.linspace(low, high, n_grid, dtype=torch.float64).tolist()
    if method == "grid" or n_grid <= n_coarse:
        for alpha in grid:
            objective(alpha)
    else:
        _fast_search(objective, grid, n_coarse, stop_within_a_step=method == "parabolic")
    return _summary(objective, method)


def coarse_count(low: float, high: float) -> int:
    """Points of the default coarse scan of ``[low, high]``: gaps of at most :data:`MAX_COARSE_STEP`, at least 5 points."""
    return max(5, math.ceil((high - low) / MAX_COARSE_STEP - 1e-9) + 1)


def search_axis(
    strategy: Strategy,
    inputs: MergeInputs,
    plan_at: Callable[[float], Plan],
    frames: Tensor,
    *,
    affine: bool,
    alpha_range: tuple[float, float] = ALPHA_RANGE,
    method: str = SEARCH_METHOD,
    n_grid: int = N_GRID,
    history: int = 1,
    n_coarse: int | None = None,
    max_batch: int | None = None,
    data_processor: nn.Module | None = None,
) -> tuple[PrefixSearch, SearchModel]:
    """:func:`select_alpha` over the merges ``plan_at(a)`` of ``inputs``, scored in one reused model.

    ``affine`` says that ``plan_at`` is affine in ``a`` (the CCM line, an affine surface):
    the ``"parabolic"`` method then writes each candidate in place along the line
    (:class:`~neuralop_merge.combination.LinearPath`). Returns the search and the
    search model, which :func:`neuralop_merge.merging.realize` may reuse for the result.
    """
    path = LinearPath(strategy, inputs, plan_at(0.0), plan_at(1.0)) if method == "parabolic" and affine else None
    candidates = path.search if path is not None else SearchModel(strategy, inputs)
    search = select_alpha(
        path or (lambda a: candidates(plan_at(a))), frames, alpha_range=alpha_range, method=method, n_grid=n_grid,
        history=history, n_coarse=n_coarse, max_batch=max_batch, data_processor=data_processor,
    )
    return search, candidates


def prefix_info(search: PrefixSearch, frames: Tensor) -> dict[str, Any]:
    """What a CCM-Prefix merge records of its search, whichever door it came through."""
    return {
        "prefix_frames": int(frames.shape[1]), "search": search.method, "n_evaluations": search.n_evaluations,
        "curve": {"alphas": search.alphas.tolist(), "errors": search.errors.tolist()},
    }


def _fast_search(objective: _PrefixObjective, grid: list[float], n_coarse: int, *, stop_within_a_step: bool) -> None:
    """Scan a coarse subset of the grid, then search every coarse basin.

    The search runs on grid indices and ends on local minima of the grid itself,
    so on a unimodal curve it lands exactly on the grid's choice. A curve with
    several basins at the coarse resolution gets a denser scan and then one
    bracketing search per coarse local minimum, since the deepest dip of the grid
    may sit next to a coarse point that is not the best one. With
    ``stop_within_a_step``, a single basin is searched only to within one grid step.
    """
    last = len(grid) - 1

    def error_at(index: int) -> float:
        return objective(grid[index])

    coarse = _spread(last, n_coarse)
    unimodal = _is_unimodal([error_at(i) for i in coarse])
    if not unimodal:
        coarse = _spread(last, 2 * n_coarse - 1)
    values = [error_at(i) for i in coarse]
    # One basin: within a grid step of its minimum is within a grid step of the grid's
    # choice. Several: the deepest must be found exactly to compare them.
    tolerance = 1 if stop_within_a_step and unimodal else 0
    for position in _local_minima(values):
        left = coarse[max(position - 1, 0)]
        right = coarse[min(position + 1, len(coarse) - 1)]
        _index_search(error_at, left, coarse[position], right, tolerance=tolerance)


def _local_minima(values: list[float]) -> list[int]:
    """Positions no larger than their neighbours (plateaus counted once, at their start)."""
    minima = []
    for position, value in enumerate(values):
        left_ok = position == 0 or value < values[position - 1]
        right_ok = position == len(values) - 1 or value <= values[position + 1]
        if left_ok and right_ok:
            minima.append(position)
    return minima


def _spread(last: int, count: int) -> list[int]:
    """``count`` evenly spread indices of ``0..last``, both ends included."""
    return sorted({round(k * last / (count - 1)) for k in range(count)})


def _index_search(
    error_at: Callable[[int], float], left: int, middle: int, right: int, *, tolerance: int = 0
) -> None:
    """Narrow a bracket of grid indices down to a local minimum of the grid.

    ``error_at(middle)`` is the smallest of the three; ``middle`` may equal an
    end of the range, which is then checked against its inner neighbour first.
    Every evaluation lies strictly inside the bracket and shrinks it, and the
    search stops once both neighbours of ``middle`` are known to be worse, or,
    with ``tolerance=1``, once the parabola through a bracket at most
    :data:`LOCAL_BRACKET` steps wide puts the minimum within one index of ``middle``.
    """
    if middle in (left, right):
        inward = middle + 1 if middle == left else middle - 1
        if error_at(inward) >= error_at(middle):
            return
        left, middle, right = (middle, inward, right) if middle == left else (left, inward, middle)
    while right - left > 2:
        candidate, fitted = _next_index(error_at, left, middle, right)
        if fitted and max(middle - left, right - middle) <= LOCAL_BRACKET and abs(candidate - middle) <= tolerance:
            return
        if error_at(candidate) < error_at(middle):
            left, right = (left, middle) if candidate < middle else (middle, right)
            middle = candidate
        elif candidate < middle:
            left = candidate
        else:
            right = candidate


def _next_index(error_at: Callable[[int], float], left: int, middle: int, right: int) -> tuple[int, bool]:
    """Next index to evaluate, and whether it is the parabolic guess (else a golden-section step).

    The parabola goes through the squared errors: a relative L2 error behaves
    like the square root of a quadratic in alpha near its minimum, so its
    square is close to a parabola.
    """
    vertex = _parabola_vertex(
        (left, middle, right), tuple(error_at(i) ** 2 for i in (left, middle, right))
    )
    fitted = left < vertex < right
    if not fitted:
        vertex = middle + _golden_step(left, middle, right)
    candidate = min(max(round(vertex), left + 1), right - 1)
    if candidate == middle:
        # Step to the neighbour on the vertex's side, or the other one if that
        # side of the bracket has no index left.
        candidate = middle + 1 if vertex >= middle else middle - 1
        if not left < candidate < right:
            candidate = 2 * middle - candidate
    return candidate, fitted


def _parabola_vertex(abscissae: tuple[int, int, int], values: tuple[float, ...]) -> float:
    """Abscissa of the vertex of the parabola through three points (nan if none)."""
    (left, middle, right), (f_left, f_middle, f_right) = abscissae, values
    to_left, to_right = middle - left, middle - right
    numerator = to_left**2 * (f_middle - f_right) - to_right**2 * (f_middle - f_left)
    denominator = to_left * (f_middle - f_right) - to_right * (f_middle - f_left)
    if denominator == 0.0 or not math.isfinite(denominator):
        return math.nan
    return middle - 0.5 * numerator / denominator


def _golden_step(left: float, middle: float, right: float) -> float:
    """Golden-section step from ``middle`` into the larger side of the bracket."""
    if right - middle > middle - left:
        return GOLDEN * (right - middle)
    return -GOLDEN * (middle - left)


def _is_unimodal(values: list[float]) -> bool:
    """Whether ``values`` never rise before their minimum nor fall after it."""
    best = min(range(len(values)), key=values.__getitem__)
    falling = all(a >= b for a, b in zip(values[:best], values[1 : best + 1]))
    rising = all(a <= b for a, b in zip(values[best:], values[best + 1 :]))
    return falling and rising


def _summary(objective: _PrefixObjective, method: str) -> PrefixSearch:
    alphas = sorted(objective.cache)
    return PrefixSearch(
        alpha=objective.best(),
        alphas=torch.tensor(alphas, dtype=torch.float64),
        errors=torch.tensor([objective.cache[a] for a in alphas], dtype=torch.float64),
        n_evaluations=len(alphas),
        method=method,
    )


def _check_search(
    alpha_range: tuple[float, float], method: str, n_grid: int, n_coarse: int | None
) -> tuple[float, float]:
    if method not in METHODS:
        raise StrategyError(f"method must be one of {METHODS}, got {method!r}")
    low, high = _alpha_range(alpha_range)
    counts = (("n_grid", n_grid, 2),) + ((("n_coarse", n_coarse, 3),) if n_coarse is not None else ())
    for name, value, smallest in counts:
        if isinstance(value, bool) or not isinstance(value, int) or not smallest <= value <= MAX_GRID:
            raise StrategyError(f"{name} must be an integer in [{smallest}, {MAX_GRID}], got {value!r}")
    return low, high


def _alpha_range(alpha_range: object) -> tuple[float, float]:
    """``(low, high)`` as finite floats within ±MAX_COEFFICIENT with low < high."""
    try:
        low, high = (float(a) for a in alpha_range)
    except (TypeError, ValueError):
        raise StrategyError(f"alpha_range must be two numbers (low, high), got {alpha_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise StrategyError(f"alpha_range must be finite with low < high, got {alpha_range!r}")
    if max(abs(low), abs(high)) > MAX_COEFFICIENT:
        raise StrategyError(f"alpha_range {alpha_range!r} leaves [-{MAX_COEFFICIENT:g}, {MAX_COEFFICIENT:g}]")
    return low, high
