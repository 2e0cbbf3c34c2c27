"""Search a box of normalized coordinates for the smallest objective (CCM-Prefix on d ≥ 2 axes).

A uniform grid of ``n_grid`` points per axis is scored, then, unless ``method="grid"``,
a compass search refines from the best grid point: it tries ± one step along every
axis, moves to any improvement, halves the step when none, and stops below an eighth of
the grid spacing (staying inside the box).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .errors import StrategyError

Point = tuple[float, ...]


def check_box(box: Sequence[tuple[float, float]] | None, n_axes: int) -> list[tuple[float, float]]:
    """``box`` as finite (low, high) pairs, one per axis; (−3, 3) on each when omitted."""
    box = [(-3.0, 3.0)] * n_axes if box is None else [tuple(map(float, b)) for b in box]
    if len(box) != n_axes or any(not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) for lo, hi in box):
        raise StrategyError(f"box must give a finite (low, high) with low < high for each of the {n_axes} axes, got {box}")
    return box


def search_box(
    score: Callable[[Point], float], box: list[tuple[float, float]], n_grid: int, method: str
) -> dict[Point, float]:
    """Every point scored (each once): the grid over ``box``, then the compass refinement.

    Raises
    ------
    StrategyError
        for a method other than "fast" or "grid", or ``n_grid`` below 2
    """
    if method not in ("fast", "grid"):
        raise StrategyError(f"method must be 'fast' or 'grid' on several axes, got {method!r}")
    if not isinstance(n_grid, int) or n_grid < 2:
        raise StrategyError(f"n_grid must be an integer >= 2, got {n_grid!r}")
    cache: dict[Point, float] = {}

    def objective(point: Point) -> float:
        if point not in cache:
            cache[point] = score(point)
        return cache[point]

    axes_grid = [np.linspace(lo, hi, n_grid).tolist() for lo, hi in box]
    for point in np.array(np.meshgrid(*axes_grid, indexing="ij")).reshape(len(box), -1).T:
        objective(tuple(float(v) for v in point))
    if method == "fast":
        compass_search(objective, min(cache, key=cache.__getitem__), box, [(hi - lo) / (n_grid - 1) for lo, hi in box])
    return cache


def compass_search(
    objective: Callable[[Point], float],
    start: Point,
    box: Sequence[tuple[float, float]],
    spacing: Sequence[float],
    shrink_to: float = 1 / 8,
) -> Point:
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
