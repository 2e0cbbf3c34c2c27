"""The written schema of what one seed of the study records, and its compact JSON form.

A :class:`SeedRecord` holds everything the report needs, per seed:

``seed``        the seed
``alphas``      the α grid of the sweeps
``selection``   :class:`Selection`, every choice made on the validation regimes
``regimes``     one :class:`RegimeRecord` per test regime (split, c, μ)
``steps``       optimizer steps of every trained model
``seconds``     wall time of every stage
``snapshot``    a few frames of one OOD trajectory, truth and rollouts as arrays (figures only;
                kept out of the JSON form, the pipeline saves it as ``snapshot.npz``)

Per-trajectory values are stored rounded to 5 significant digits, and the pipeline gzips the JSON
(:func:`~.pipeline.save_record`), so that a family's five records stay near 100 KB; a non-finite
error is stored as ``null`` and read back as ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

#: Method keys, in table order. ``ccm`` is filled in at aggregation: the CCM variant selected
#: on the validation regimes of all seeds.
METHODS: tuple[str, ...] = (
    "persistence", "anchor", "anchor_extra", "low", "high", "average", "task_arithmetic", "fixed_alpha",
    "ccm_coord", "ccm_coord_calibrated", "ccm_prefix", "oracle", "wrong_sign", "conditioned",
)
CCM_VARIANTS: tuple[str, ...] = ("ccm_coord", "ccm_coord_calibrated", "ccm_prefix")
#: The arrays of :attr:`SeedRecord.snapshot` (the first seed that has one), next to the records.
SNAPSHOT_FILE = "snapshot.npz"

LABELS = {
    "truth": "Truth",
    "persistence": "Persistence (last observed frame)",
    "anchor": "Anchor",
    "anchor_extra": "Anchor + the experts' steps",
    "low": "Low expert",
    "high": "High expert",
    "average": "Average",
    "task_arithmetic": "Task arithmetic (λ on val.)",
    "fixed_alpha": "Best fixed α (val.)",
    "ccm_coord": "CCM-Coord (identity)",
    "ccm_coord_calibrated": "CCM-Coord (calibrated)",
    "ccm_prefix": "CCM-Prefix (k=4)",
    "ccm": "**CCM (selected on val.)**",
    "oracle": "Oracle α (diagnostic)",
    "wrong_sign": "Wrong-sign CCM (−α, control)",
    "conditioned": "Parameter-conditioned FNO",
}


def compact(value: float) -> float | None:
    """``value`` rounded to 5 significant digits; None for a non-finite value."""
    return float(f"{value:.5g}") if math.isfinite(value) else None


def expand(values: list[float | None]) -> list[float]:
    """The inverse of :func:`compact` over a list (None -> inf)."""
    return [math.inf if value is None else float(value) for value in values]


@dataclass
class MethodScores:
    """One method on one regime: future-frame errors per trajectory, the mean per-frame curve, its α."""

    rel_l2: list[float]
    vrmse: list[float]
    curve: list[float]
    alpha: float | list[float] | None = None


@dataclass
class RegimeRecord:
    """All methods on one test regime of one seed.

    ``alpha_curve`` is the mean future-frame error per grid α, ``prefix_curve`` the mean error over the
    observed frames per grid α (what CCM-Prefix minimises); it is empty in records older than it.
    """

    split: str
    c: float
    mu: float
    alpha_curve: list[float]
    methods: dict[str, MethodScores]
    prefix_curve: list[float] = field(default_factory=list)


@dataclass
class Selection:
    """Every choice made on the validation regimes of one seed.

    ``variant_scores[v]`` is the mean log error ratio of CCM variant v against the anchor over the
    validation trajectories (the calibrated map scored leave-one-regime-out).
    """

    fixed_alpha: float
    ta_scale: float
    bank: list[tuple[float, float]]
    calibration: dict[str, float]
    variant_scores: dict[str, float]
    validation_best_alpha: dict[str, float] = field(default_factory=dict)


@dataclass
class SeedRecord:
    seed: int
    alphas: list[float]
    selection: Selection
    regimes: list[RegimeRecord]
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    #: Where the seed ran ("cpu", "cuda (NVIDIA H200)"); empty in records older than this field.
    device: str = ""

    def to_json(self) -> dict[str, Any]:
        """The compact JSON form (rounded per-trajectory values)."""
        record = asdict(self)
        record["snapshot"] = None
        for regime in record["regimes"]:
            for key in ("alpha_curve", "prefix_curve"):
                regime[key] = [compact(v) for v in regime[key]]
            for scores in regime["methods"].values():
                for key in ("rel_l2", "vrmse", "curve"):
                    scores[key] = [compact(v) for v in scores[key]]
        return record

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeedRecord:
        regimes = [
            RegimeRecord(
                r["split"], r["c"], r["mu"], expand(r["alpha_curve"]),
                {name: MethodScores(expand(m["rel_l2"]), expand(m["vrmse"]), expand(m["curve"]), m["alpha"])
                 for name, m in r["methods"].items()},
                expand(r.get("prefix_curve", [])),
            )
            for r in data["regimes"]
        ]
        selection = Selection(**{**data["selection"], "bank": [tuple(pair) for pair in data["selection"]["bank"]]})
        return cls(data["seed"], data["alphas"], selection, regimes, data["steps"], data["seconds"],
                   device=data.get("device", ""))


__all__ = ["CCM_VARIANTS", "LABELS", "METHODS", "SNAPSHOT_FILE", "MethodScores", "RegimeRecord", "Selection", "SeedRecord"]
