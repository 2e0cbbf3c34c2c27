"""The evaluation protocol of one seed.

* Every rollout starts from frame 0 of a trajectory and runs ``T`` steps. Frames ``0..k``
  (k = ``prefix_k``) are *observed*: CCM-Prefix may look at them, persistence repeats frame k.
  Every method is scored on the future frames ``k+1..T`` only (relative L2 per frame, norms over
  channels and space, averaged over frames), so no method gains from frames it saw.
* Every choice is made on the *validation* regimes: task arithmetic's λ and the fixed α (lowest
  mean log error), the calibration bank (best grid α per validation regime) and the score of each
  CCM variant against the anchor, from which the report selects the headline ``ccm`` row. The
  calibrated map is scored leave-one-regime-out, so it is not judged on the regime it was fitted on.
* The oracle is per test regime, the grid α of lowest mean test error in hindsight: a diagnostic
  bound, not a method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..ccm import CCM
from ..coordinates import AffineMap
from ..merging import merge
from ..metrics import future_error, relative_l2, vrmse
from ..rollout import rollout
from .config import Regimes, StudyConfig
from .data import Regime, StudyData
from .models import Conditioned, Models
from .records import MethodScores, RegimeRecord, SeedRecord, Selection

#: Rollout errors above this (or non-finite) count as failures and enter log ratios at this value.
FAILURE_ERROR = 1.0
ERROR_CAP = 10.0


def count_failures(errors: Iterable[float | None]) -> int:
    """How many of ``errors`` are failures: non-finite (or missing), or above :data:`FAILURE_ERROR`."""
    return sum(1 for value in errors if not (value is not None and math.isfinite(value) and value <= FAILURE_ERROR))


@dataclass
class Scores:
    """Errors of one method on a batch of trajectories (tensors, before the record's lists)."""

    rel_l2: torch.Tensor  # [n] future-frame relative L2 per trajectory
    vrmse: torch.Tensor  # [n] future-frame VRMSE per trajectory
    curve: torch.Tensor  # [n, T+1] relative L2 per frame

    def prefix_error(self, k: int) -> torch.Tensor:
        """``[n]`` mean relative L2 over the observed frames ``1..k``: what CCM-Prefix minimises."""
        return self.curve[:, 1 : k + 1].mean(dim=1)

    def rows(self, part: slice) -> Scores:
        return Scores(self.rel_l2[part], self.vrmse[part], self.curve[part])

    @staticmethod
    def cat(parts: list[Scores]) -> Scores:
        return Scores(*(torch.cat([getattr(p, name) for p in parts]) for name in ("rel_l2", "vrmse", "curve")))

    def record(self, alpha: float | list[float] | None = None) -> MethodScores:
        curve = self.curve.mean(dim=0).tolist()
        return MethodScores(self.rel_l2.tolist(), self.vrmse.tolist(), curve, alpha)


def predict(model: nn.Module, trajectories: torch.Tensor, device: str) -> torch.Tensor:
    """The model's rollout from frame 0 over the whole horizon of ``trajectories``."""
    return rollout(model, trajectories[:, 0], trajectories.shape[1] - 1, device=device)


def persistence(trajectories: torch.Tensor, k: int) -> torch.Tensor:
    """The observed frames, then the last observed frame (k) repeated over the future."""
    future = trajectories[:, k : k + 1].expand(-1, trajectories.shape[1] - k - 1, *trajectories.shape[2:])
    return torch.cat((trajectories[:, : k + 1], future), dim=1)


def score_prediction(pred: torch.Tensor, trajectories: torch.Tensor, k: int) -> Scores:
    """Future-frame errors (frames ``k+1..T``) of a predicted trajectory batch."""
    n, _, channels = trajectories.shape[:3]
    per_frame = vrmse(pred[:, k + 1 :].flatten(0, 1), trajectories[:, k + 1 :].flatten(0, 1), reduction="none")
    return Scores(
        rel_l2=future_error(pred, trajectories, k + 1, reduction="per_sample").double(),
        vrmse=per_frame.view(n, -1, channels).mean(dim=(1, 2)).double(),
        curve=relative_l2(pred, trajectories, reduction="none").double(),
    )


def score(model: nn.Module, trajectories: torch.Tensor, k: int, device: str = "cpu") -> Scores:
    return score_prediction(predict(model, trajectories, device), trajectories, k)


def alpha_grid(config: StudyConfig) -> list[float]:
    low, high = config.alpha_range
    # + 0.0 turns the -0.0 that rounding leaves at the centre into 0.0, which tables print as "0.0"
    return [round(value, 10) + 0.0 for value in torch.linspace(low, high, config.n_grid, dtype=torch.float64).tolist()]


def sweep(model_at: Callable[[float], nn.Module], values: list[float], trajectories: torch.Tensor, k: int,
          *, device: str = "cpu", desc: str = "sweep", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Future-frame and prefix error of every trajectory at every value: two ``[len(values), n]`` tensors.

    The prefix error (frames ``1..k``, :meth:`Scores.prefix_error`) is read off the same rollouts, so
    the records can show what CCM-Prefix saw along the line next to what it was scored on.
    """
    future, prefix = [], []
    for value in tqdm(values, desc=desc, unit="model", leave=False, disable=not progress):
        scores = score(model_at(value), trajectories, k, device)
        future.append(scores.rel_l2)
        prefix.append(scores.prefix_error(k))
    return torch.stack(future), torch.stack(prefix)


def log_error(errors: torch.Tensor) -> torch.Tensor:
    """``log`` of errors, with non-finite or huge errors entering at :data:`ERROR_CAP`."""
    capped = torch.where(torch.isfinite(errors), errors, torch.full_like(errors, ERROR_CAP))
    return capped.clamp(1e-12, ERROR_CAP).log()


def regime_means(errors: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """``[m, n]`` errors -> ``[m, n_regimes]`` mean log errors per regime (trajectories regime-major)."""
    return torch.stack([part.mean(dim=1) for part in log_error(errors).split(sizes, dim=1)], dim=1)


def prefix_choice(ccm: CCM, frames: torch.Tensor, config: StudyConfig) -> tuple[float, nn.Module]:
    """CCM-Prefix as the study runs it: the α of the lowest error over the observed ``frames`` (the fast
    search over the study's α grid, its coarse scan of ``config.prefix_n_coarse`` points), and θ(α)."""
    found = ccm.from_prefix(frames, alpha_range=config.alpha_range, n_grid=config.n_grid, n_coarse=config.prefix_n_coarse)
    return float(found.alpha), found.model


def prefix_scores(ccm: CCM, trajectories: torch.Tensor, config: StudyConfig, device: str) -> tuple[Scores, list[float]]:
    """CCM-Prefix per trajectory: α from frames ``0..k``, then that one model scored on the future."""
    k, parts, alphas = config.prefix_k, [], []
    for row in range(trajectories.shape[0]):
        alpha, model = prefix_choice(ccm, trajectories[row : row + 1, : k + 1], config)
        parts.append(score(model, trajectories[row : row + 1], k, device))
        alphas.append(alpha)
    return Scores.cat(parts), alphas


def loo_calibrated_alphas(ccm: CCM, validation: list[Regime], best: list[float]) -> list[float]:
    """α of the calibrated map at each validation regime, the map fitted on the other regimes only."""
    alphas = []
    for index, regime in enumerate(validation):
        bank = [(ccm.coordinate(other.mu), best[j]) for j, other in enumerate(validation) if j != index]
        alphas.append(AffineMap.fit(bank)(ccm.coordinate(regime.mu)))
    return alphas


def select_on_validation(config: StudyConfig, ccm: CCM, models: Models, validation: list[Regime],
                         *, device: str, progress: bool) -> Selection:
    """λ of task arithmetic, the fixed α, the calibration bank and each CCM variant's score."""
    k, grid = config.prefix_k, alpha_grid(config)
    trajectories = torch.cat([regime.trajectories for regime in validation])
    sizes = [regime.trajectories.shape[0] for regime in validation]
    along_line, _ = sweep(ccm.at, grid, trajectories, k, device=device, desc="validation α", progress=progress)
    alpha_logs = regime_means(along_line, sizes)
    best = [grid[int(index)] for index in alpha_logs.argmin(dim=0)]

    def task_arithmetic(scale: float) -> nn.Module:
        return merge("task_arithmetic", anchor=models.anchor, experts=[models.low, models.high], scale=scale)

    scales = list(config.ta_scales)
    along_scale, _ = sweep(task_arithmetic, scales, trajectories, k, device=device, desc="validation λ", progress=progress)
    ta_logs = regime_means(along_scale, sizes)
    mapping = AffineMap.fit((ccm.coordinate(regime.mu), alpha) for regime, alpha in zip(validation, best))
    return Selection(
        fixed_alpha=grid[int(alpha_logs.mean(dim=1).argmin())],
        ta_scale=scales[int(ta_logs.mean(dim=1).argmin())],
        bank=[(regime.mu, alpha) for regime, alpha in zip(validation, best)],
        calibration={"slope": mapping.slope, "intercept": mapping.intercept},
        variant_scores=variant_scores(config, ccm, models.anchor, validation, best, device),
        validation_best_alpha={str(regime.c): alpha for regime, alpha in zip(validation, best)},
    )


def variant_scores(config: StudyConfig, ccm: CCM, anchor: nn.Module, validation: list[Regime],
                   best: list[float], device: str) -> dict[str, float]:
    """Mean log error ratio against the anchor of each CCM variant over the validation trajectories."""
    k, totals = config.prefix_k, {"ccm_coord": [], "ccm_coord_calibrated": [], "ccm_prefix": []}
    calibrated = loo_calibrated_alphas(ccm, validation, best)
    for regime, alpha_calibrated in zip(validation, calibrated):
        x = regime.trajectories
        reference = log_error(score(anchor, x, k, device).rel_l2)
        candidates = {
            "ccm_coord": score(ccm.at(ccm.coordinate(regime.mu)), x, k, device),
            "ccm_coord_calibrated": score(ccm.at(alpha_calibrated), x, k, device),
            "ccm_prefix": prefix_scores(ccm, x, config, device)[0],
        }
        for name, scores in candidates.items():
            totals[name].append(log_error(scores.rel_l2) - reference)
    return {name: float(torch.cat(values).mean()) for name, values in totals.items()}


def select_variant(variant_scores: list[dict[str, float]]) -> str:
    """The CCM variant with the lowest validation score summed over seeds (ties: the first in order)."""
    names = list(variant_scores[0])
    totals = [sum(scores[name] for scores in variant_scores) for name in names]
    return names[min(range(len(names)), key=lambda i: (totals[i] if math.isfinite(totals[i]) else math.inf, i))]


def shared_predictions(ccm: CCM, models: Models, selection: Selection) -> dict[str, nn.Module]:
    """The methods that deploy one model for every regime."""
    experts = [models.low, models.high]
    return {
        "anchor": models.anchor,
        "anchor_extra": models.anchor_extra,
        "low": models.low,
        "high": models.high,
        "average": merge("average", experts=experts),
        "task_arithmetic": merge("task_arithmetic", anchor=models.anchor, experts=experts, scale=selection.ta_scale),
        "fixed_alpha": ccm.at(selection.fixed_alpha),
    }


def regime_methods(config: StudyConfig, ccm: CCM, calibrated: CCM, models: Models, regime: Regime,
                   oracle_alpha: float, device: str) -> dict[str, MethodScores]:
    """The methods that depend on the target regime (its coordinate, its prefix, or hindsight)."""
    x, k = regime.trajectories, config.prefix_k
    alpha, alpha_calibrated = ccm.alpha_for(regime.mu), calibrated.alpha_for(regime.mu)
    c = ccm.coordinate(regime.mu)
    per_regime = {
        "ccm_coord": (ccm.at(alpha), alpha),
        "ccm_coord_calibrated": (ccm.at(alpha_calibrated), alpha_calibrated),
        "oracle": (ccm.at(oracle_alpha), oracle_alpha),
        "wrong_sign": (ccm.at(-alpha), -alpha),
        "conditioned": (Conditioned(models.conditioned, c), None),
    }
    scored = {name: score(model, x, k, device).record(value) for name, (model, value) in per_regime.items()}
    prefix, alphas = prefix_scores(ccm, x, config, device)
    scored["ccm_prefix"] = prefix.record(alphas)
    scored["persistence"] = score_prediction(persistence(x, k), x, k).record()
    return scored


def merge_line(regimes: Regimes, anchor: nn.Module, low: nn.Module, high: nn.Module) -> CCM:
    """The merge line θ(α) through ``low`` and ``high``, reading coordinates on the study's axis."""
    return CCM(anchor, low, high, low_coord=regimes.low, high_coord=regimes.high, transform=regimes.transform)


def evaluate_seed(config: StudyConfig, data: StudyData, models: Models, seed: int, *,
                  device: str = "cpu", progress: bool = True) -> SeedRecord:
    """Every method on every test regime of one seed."""
    regimes = config.regimes
    ccm = merge_line(regimes, models.anchor, models.low, models.high)
    selection = select_on_validation(config, ccm, models, data.validation, device=device, progress=progress)
    # Its own object: calibrate() changes how the line reads coordinates.
    calibrated = merge_line(regimes, models.anchor, models.low, models.high)
    calibrated.calibrate(selection.bank)
    tests = [regime for split in regimes.test for regime in data.test[split]]
    records = test_records(config, ccm, calibrated, models, selection, tests, device, progress)
    ood = max(data.test["ood"], key=lambda regime: regime.c)
    return SeedRecord(seed, alpha_grid(config), selection, records, snapshot=snapshot(config, ood, ccm, calibrated, models, device))


def test_records(config: StudyConfig, ccm: CCM, calibrated: CCM, models: Models, selection: Selection,
                 tests: list[Regime], device: str, progress: bool) -> list[RegimeRecord]:
    """One record per test regime: the α sweep, the shared methods and the per-regime ones."""
    k, grid = config.prefix_k, alpha_grid(config)
    trajectories = torch.cat([regime.trajectories for regime in tests])
    sizes = [regime.trajectories.shape[0] for regime in tests]
    curves, prefix_curves = sweep(ccm.at, grid, trajectories, k, device=device, desc="test α (oracle, figures)",
                                  progress=progress)
    shared = {name: score(model, trajectories, k, device) for name, model in shared_predictions(ccm, models, selection).items()}
    records, start = [], 0
    for regime, size in tqdm(list(zip(tests, sizes)), desc="regimes", leave=False, disable=not progress):
        rows = slice(start, start + size)
        curve = log_error(curves[:, rows]).mean(dim=1)
        oracle_alpha = grid[int(curve.argmin())]
        methods = {name: scores.rows(rows).record() for name, scores in shared.items()}
        methods["fixed_alpha"].alpha = selection.fixed_alpha
        methods.update(regime_methods(config, ccm, calibrated, models, regime, oracle_alpha, device))
        mean_curve, mean_prefix = curves[:, rows].mean(dim=1).tolist(), prefix_curves[:, rows].mean(dim=1).tolist()
        records.append(RegimeRecord(regime.role.removeprefix("test-"), regime.c, regime.mu, mean_curve, methods, mean_prefix))
        start += size
    return records


def snapshot(config: StudyConfig, regime: Regime, ccm: CCM, calibrated: CCM, models: Models, device: str) -> dict:
    """Every channel of the first trajectory of ``regime`` at frames k, T/2 and T: truth and rollouts."""
    x = regime.trajectories[:1]
    frames = sorted({config.prefix_k, (x.shape[1] - 1) // 2, x.shape[1] - 1})
    _, prefix_model = prefix_choice(ccm, x[:, : config.prefix_k + 1], config)
    fields = {
        "truth": x,
        "anchor": predict(models.anchor, x, device),
        "ccm_coord": predict(ccm.from_coord(regime.mu), x, device),
        "ccm_coord_calibrated": predict(calibrated.from_coord(regime.mu), x, device),
        "ccm_prefix": predict(prefix_model, x, device),
    }
    arrays = {name: value[0, frames].float().numpy() for name, value in fields.items()}
    return {"mu": regime.mu, "c": regime.c, "frames": frames, "fields": arrays}


__all__ = [
    "FAILURE_ERROR", "Scores", "alpha_grid", "count_failures", "evaluate_seed", "merge_line", "persistence", "prefix_choice",
    "score", "select_variant",
]
