"""Statistics that respect how the study's numbers were made: trajectories are nested in seeds.

Trajectories of one seed share its data draw and its trained models, so they are not independent:
confidence intervals resample whole seeds (a clustered bootstrap), and the paired test works on one
value per (seed, regime) cell rather than on pooled trajectories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

#: Bootstrap resamples of the seeds.
N_BOOTSTRAP = 4000


def cluster_bootstrap_mean(groups: Sequence[Sequence[float]], *, level: float = 0.95, seed: int = 0) -> dict[str, object]:
    """Mean over all values and its percentile CI from resampling whole groups (seeds) with replacement.

    Parameters
    ----------
    groups : sequence of sequences of float
        The values of each cluster (one inner sequence per seed).
    level : float, default 0.95
        Coverage of the interval.
    seed : int, default 0
        Seed of the resampling, so a report is reproducible.

    Returns
    -------
    dict
        ``{"mean": float, "ci": [lo, hi]}``; with a single group the interval is that group's
        mean twice (a clustered bootstrap cannot see between-seed variation in one seed).
    """
    sums = np.array([float(np.sum(group)) for group in groups])
    counts = np.array([len(group) for group in groups], dtype=float)
    if counts.sum() == 0:
        raise ValueError("no values to summarize")
    mean = float(sums.sum() / counts.sum())
    picks = np.random.default_rng(seed).integers(0, len(groups), size=(N_BOOTSTRAP, len(groups)))
    resampled = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(resampled, [tail, 100.0 - tail])
    return {"mean": mean, "ci": [float(low), float(high)]}


def geometric_mean_ratio(log_ratios: Sequence[Sequence[float]], *, level: float = 0.95, seed: int = 0) -> dict[str, object]:
    """exp(mean log ratio) over all trajectories, with the clustered bootstrap CI (groups = seeds).

    A ratio below 1 means the method's error is smaller than the baseline's; 0.5 is a 50 % reduction
    of the typical trajectory's error.
    """
    summary = cluster_bootstrap_mean(log_ratios, level=level, seed=seed)
    return {"gm_ratio": math.exp(summary["mean"]), "ci": [math.exp(bound) for bound in summary["ci"]]}


def paired_cell_test(cell_means: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of per-cell mean log ratios against 0.

    One value per (seed, regime) cell, so the n of the test is the number of cells, not of
    trajectories. None with fewer than two cells; 1.0 when every cell is exactly 0.
    """
    values = np.asarray(cell_means, dtype=float)
    if len(values) < 2:
        return None
    if not np.any(values != 0):
        return 1.0
    return float(stats.wilcoxon(values, alternative="two-sided").pvalue)


__all__ = ["N_BOOTSTRAP", "cluster_bootstrap_mean", "geometric_mean_ratio", "paired_cell_test"]
