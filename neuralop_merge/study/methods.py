"""The evaluated methods and the evaluation protocol of one seed.

Protocol (the same for every method)
------------------------------------
* Every rollout starts from frame 0 of a test trajectory and runs ``T`` steps.
* Frames ``0..k`` (k = 4) are *observed*: CCM-Prefix may look at them. Every method
  is scored only on the future frames ``k+1..T`` (relative L2 per frame, averaged
  over frames, then over trajectories), so CCM-Prefix gains nothing from being
  scored on frames it saw.
* Choices are made on the *validation* regimes, never on test regimes: the λ of
  task arithmetic, the single fixed α (both: the grid value with the lowest mean
  validation error) and the calibration bank of the calibrated CCM map (the best
  α of each validation regime on the 41-point grid over [-3, 3]).
* The oracle is per test regime: the grid α with the lowest mean test error of
  that regime, in hindsight — a diagnostic bound, not a method.
* CCM-Prefix is per trajectory: ``CCM.from_prefix`` on that trajectory's frames
  0..k (the package's default "fast" search over [-3, 3] at the 41-point grid's
  resolution).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..ccm import CCM
from ..merging import merge
from ..metrics import future_error, relative_l2, vrmse
from ..rollout import rollout
from .config import SPLITS, StudyConfig

#: Method keys, in table order.
METHODS: tuple[str, ...] = (
    "anchor", "low", "high", "average", "task_arithmetic", "fixed_alpha", "ccm_coord",
    "ccm_coord_calibrated", "ccm_prefix", "oracle", "wrong_sign", "conditioned",
)

LABELS = {
    "anchor": "Anchor",
    "low": "Low expert",
    "high": "High expert",
    "average": "Average",
    "task_arithmetic": "Task arithmetic (λ on val.)",
    "fixed_alpha": "Best fixed α (val.)",
    "ccm_coord": "CCM-Coord (identity)",
    "ccm_coord_calibrated": "CCM-Coord (calibrated)",
    "ccm_prefix": "CCM-Prefix (k=4)",
    "oracle": "Oracle α (diagnostic)",
    "wrong_sign": "Wrong-sign CCM (−α, control)",
    "conditioned": "Parameter-conditioned FNO",
}


@dataclass
class Scored:
    """Errors of one method on a batch of trajectories."""

    rel_l2: torch.Tensor  # [n] future-frame relative L2 per trajectory
    vrmse: torch.Tensor  # [n] future-frame VRMSE per trajectory
    curve: torch.Tensor  # [n, T+1] relative L2 per frame

    @staticmethod
    def cat(parts: list[Scored]) -> Scored:
        return Scored(*(torch.cat([getattr(p, name) for p in parts]) for name in ("rel_l2", "vrmse", "curve")))


def predict(model: nn.Module, trajectories: torch.Tensor, device: str) -> torch.Tensor:
    """The model's rollout from frame 0 over the whole horizon of ``trajectories``."""
    return rollout(model, trajectories[:, 0], trajectories.shape[1] - 1, device=device)


def score(model: nn.Module, trajectories: torch.Tensor, k: int, device: str = "cpu") -> Scored:
    """Roll out from frame 0 and score the future frames ``k+1..T``."""
    return score_prediction(predict(model, trajectories, device), trajectories, k)


def score_prediction(pred: torch.Tensor, trajectories: torch.Tensor, k: int) -> Scored:
    observed = k + 1
    n, _, channels = trajectories.shape[:3]
    future_pred, future_true = pred[:, observed:], trajectories[:, observed:]
    per_frame = vrmse(future_pred.flatten(0, 1), future_true.flatten(0, 1), reduction="none")
    return Scored(
        rel_l2=future_error(pred, trajectories, observed, reduction="per_sample").double(),
        vrmse=per_frame.view(n, -1, channels).mean(dim=(1, 2)).double(),
        curve=relative_l2(pred, trajectories, reduction="none").double(),
    )


def alpha_grid(config: StudyConfig) -> list[float]:
    low, high = config.alpha_range
    return torch.linspace(low, high, config.n_grid, dtype=torch.float64).tolist()


def sweep(
    model_at: Callable[[float], nn.Module],
    values: list[float],
    trajectories: torch.Tensor,
    k: int,
    *,
    device: str = "cpu",
    desc: str = "sweep",
    progress: bool = True,
) -> torch.Tensor:
    """Future-frame error of every trajectory at every value: ``[len(values), n]``."""
    errors = []
    for value in tqdm(values, desc=desc, unit="model", leave=False, disable=not progress):
        pred = predict(model_at(value), trajectories, device)
        errors.append(future_error(pred, trajectories, k + 1, reduction="per_sample").double())
    return torch.stack(errors)


def _regime_means(errors: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """``[m, n]`` errors → ``[m, n_regimes]`` means per regime (trajectories are regime-major)."""
    return torch.stack([part.mean(dim=1) for part in errors.split(sizes, dim=1)], dim=1)


def select_on_validation(
    config: StudyConfig, ccm: CCM, models: Any, validation: list[Any], *, device: str, progress: bool
) -> dict[str, Any]:
    """λ of task arithmetic, the fixed α and the calibration bank, from the validation regimes only."""
    k = config.prefix_k
    grid = alpha_grid(config)
    trajectories = torch.cat([regime.trajectories for regime in validation])
    sizes = [regime.trajectories.shape[0] for regime in validation]
    alpha_errors = _regime_means(
        sweep(ccm.at, grid, trajectories, k, device=device, desc="validation α sweep", progress=progress), sizes
    )  # [41, n_val_regimes]
    best = alpha_errors.argmin(dim=0)
    fixed_index = int(alpha_errors.mean(dim=1).argmin())

    def task_arithmetic(scale: float) -> nn.Module:
        return merge("task_arithmetic", anchor=models.anchor, experts=[models.low, models.high], scale=scale)

    scales = list(config.ta_scales)
    ta_errors = _regime_means(
        sweep(task_arithmetic, scales, trajectories, k, device=device, desc="validation λ sweep", progress=progress),
        sizes,
    )
    ta_index = int(ta_errors.mean(dim=1).argmin())
    bank = [(regime.mu, grid[int(index)]) for regime, index in zip(validation, best)]
    return {
        "fixed_alpha": grid[fixed_index],
        "ta_scale": scales[ta_index],
        "ta_curve": ta_errors.mean(dim=1).tolist(),
        "bank": bank,
        "validation": [
            {"c": regime.c, "mu": regime.mu, "best_alpha": grid[int(index)], "alpha_curve": alpha_errors[:, j].tolist()}
            for j, (regime, index) in enumerate(zip(validation, best))
        ],
    }


def evaluate_seed(config: StudyConfig, data: Any, models: Any, *, device: str = "cpu", progress: bool = True) -> dict:
    """Every method on every test regime of one seed; the raw per-trajectory record."""
    from .pipeline import Conditioned

    k = config.prefix_k
    grid = alpha_grid(config)
    coords = {"low": config.regimes.low, "high": config.regimes.high}
    ccm = CCM.from_experts(models.anchor, {"low": models.low, "high": models.high}, coords, transform=config.regimes.transform)
    calibrated = CCM.from_experts(
        models.anchor, {"low": models.low, "high": models.high}, coords, transform=config.regimes.transform
    )
    selection = select_on_validation(config, ccm, models, data.validation, device=device, progress=progress)
    mapping = calibrated.calibrate(selection["bank"])
    selection["calibration"] = {"slope": mapping.slope, "intercept": mapping.intercept}

    labelled = [(split, regime) for split in SPLITS for regime in data.test[split]]
    regimes = [regime for _, regime in labelled]
    trajectories = torch.cat([regime.trajectories for regime in regimes])
    sizes = [regime.trajectories.shape[0] for regime in regimes]
    curves = _regime_means(
        sweep(ccm.at, grid, trajectories, k, device=device, desc="test α sweep (oracle, figures)", progress=progress),
        sizes,
    )  # [41, n_regimes]

    shared = {
        "anchor": models.anchor,
        "low": models.low,
        "high": models.high,
        "average": merge("average", experts=[models.low, models.high]),
        "task_arithmetic": merge(
            "task_arithmetic", anchor=models.anchor, experts=[models.low, models.high], scale=selection["ta_scale"]
        ),
        "fixed_alpha": ccm.at(selection["fixed_alpha"]),
    }
    per_method: dict[str, list[Scored]] = {method: [] for method in METHODS}
    alphas: dict[str, list[Any]] = {m: [] for m in ("fixed_alpha", "ccm_coord", "ccm_coord_calibrated", "ccm_prefix", "oracle", "wrong_sign")}
    bar = tqdm(total=len(shared) + len(regimes), desc="methods", unit="eval", leave=False, disable=not progress)
    for method, model in shared.items():
        scored = score(model, trajectories, k, device)
        start = 0
        for size in sizes:
            per_method[method].append(Scored(scored.rel_l2[start : start + size], scored.vrmse[start : start + size], scored.curve[start : start + size]))
            start += size
        bar.update()
    snapshot = None
    snapshot_regime = max(data.test["ood"], key=lambda regime: regime.c)
    for index, regime in enumerate(regimes):
        x = regime.trajectories
        alpha_coord = ccm.alpha_for(regime.mu)
        alpha_cal = calibrated.alpha_for(regime.mu)
        oracle_alpha = grid[int(curves[:, index].argmin())]
        per_regime_models = {
            "ccm_coord": ccm.from_coord(regime.mu),
            "ccm_coord_calibrated": calibrated.from_coord(regime.mu),
            "oracle": ccm.at(oracle_alpha),
            "wrong_sign": ccm.at(-alpha_coord),
            "conditioned": Conditioned(models.conditioned_net, alpha_coord),
        }
        for method, model in per_regime_models.items():
            per_method[method].append(score(model, x, k, device))
        prefix_parts, prefix_alphas = [], []
        for row in range(x.shape[0]):
            found = ccm.from_prefix(x[row : row + 1, : k + 1], alpha_range=config.alpha_range, n_grid=config.n_grid)
            prefix_parts.append(score(found.model, x[row : row + 1], k, device))
            prefix_alphas.append(found.alpha)
        per_method["ccm_prefix"].append(Scored.cat(prefix_parts))
        alphas["fixed_alpha"].append(selection["fixed_alpha"])
        alphas["ccm_coord"].append(alpha_coord)
        alphas["ccm_coord_calibrated"].append(alpha_cal)
        alphas["ccm_prefix"].append(prefix_alphas)
        alphas["oracle"].append(oracle_alpha)
        alphas["wrong_sign"].append(-alpha_coord)
        if regime is snapshot_regime:
            snapshot = _snapshot(config, regime, shared["anchor"], shared["average"], per_regime_models["ccm_coord"], device)
        bar.update()
    bar.close()

    regime_records = []
    for index, regime in enumerate(regimes):
        regime_records.append({
            "split": labelled[index][0],
            "c": regime.c,
            "mu": regime.mu,
            "n": sizes[index],
            "alpha_curve": curves[:, index].tolist(),
            "alphas": {method: values[index] for method, values in alphas.items()},
            "methods": {
                method: {
                    "rel_l2": per_method[method][index].rel_l2.tolist(),
                    "vrmse": per_method[method][index].vrmse.tolist(),
                    "curve": per_method[method][index].curve.mean(dim=0).tolist(),
                }
                for method in METHODS
            },
        })
    return {"alphas": grid, "selection": selection, "regimes": regime_records, "snapshot": snapshot}


def _snapshot(config: StudyConfig, regime: Any, anchor: nn.Module, average: nn.Module, ccm_model: nn.Module, device: str) -> dict:
    """Channel 0 of the first trajectory of a regime: truth and three rollouts at a few frames."""
    x = regime.trajectories[:1]
    n_frames = x.shape[1] - 1
    frames = sorted({0, config.prefix_k, n_frames // 2, n_frames})
    fields = {"truth": x}
    for name, model in (("anchor", anchor), ("average", average), ("ccm_coord", ccm_model)):
        fields[name] = predict(model, x, device)
    return {
        "mu": regime.mu,
        "c": regime.c,
        "frames": frames,
        "fields": {name: value[0, frames, 0].float().tolist() for name, value in fields.items()},
    }
