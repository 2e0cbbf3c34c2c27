"""How many observed frames CCM-Prefix needs: its future-only OOD error for k = 1, 2, 4, 8.

For each family and seed, CCM-Prefix picks α on each OOD test trajectory from its frames ``0..k``
(the study's search: the merge line, α in the study's range) and is scored on the frames it did
not see. Two scores per k:

``future``   frames ``k+1..T``, the study's own rule (the scored frames change with k);
``common``   frames ``9..T`` for every k, so that the curve compares one set of frames.

The anchor's error on the same frames is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ...plots import plot_series
from ..evaluation import predict, prefix_choice, score_prediction
from ..markdown import table_lines
from .base import AblationOutput, AblationSettings, Draw, SeedLine, interval, reduction, summary

NAME = "prefix_budget"
FAMILIES = ("diffreact", "ns2d", "dam_break")
BUDGETS = (1, 2, 4, 8)


def budget_errors(line: SeedLine, k: int, common_k: int) -> tuple[list[float], list[float], list[float]]:
    """Future and common-frame errors of CCM-Prefix with ``k`` observed frames, and its α, per OOD trajectory."""
    config, ccm = line.config, line.ccm()
    future, common, alphas = [], [], []
    for regime in line.tests("ood"):
        for row in range(regime.trajectories.shape[0]):
            x = regime.trajectories[row : row + 1]
            alpha, model = prefix_choice(ccm, x[:, : k + 1], config)
            pred = predict(model, x, "cpu")
            future.append(float(score_prediction(pred, x, k).rel_l2[0]))
            common.append(float(score_prediction(pred, x, common_k).rel_l2[0]))
            alphas.append(alpha)
    return future, common, alphas


def anchor_rollouts(line: SeedLine) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The anchor's rollout and the truth of each OOD regime: rolled out once, scored at every k."""
    return [(predict(line.anchor, regime.trajectories, "cpu"), regime.trajectories) for regime in line.tests("ood")]


def anchor_errors(rollouts: list[tuple[torch.Tensor, torch.Tensor]], k: int) -> list[float]:
    return [value for pred, truth in rollouts for value in score_prediction(pred, truth, k).rel_l2.tolist()]


def seed_budget(line: SeedLine) -> dict[str, Any]:
    """One seed's errors per k (``future``, ``common``, ``anchor``: ``[k][trajectory]``), its α and the anchor's on common frames."""
    common_k = max(BUDGETS)
    rollouts = anchor_rollouts(line)
    future, common, alphas = zip(*(budget_errors(line, k, common_k) for k in BUDGETS))
    return {"future": future, "common": common, "alpha": alphas, "anchor": [anchor_errors(rollouts, k) for k in BUDGETS],
            "anchor_common": anchor_errors(rollouts, common_k)}


def family_budget(settings: AblationSettings, family: str) -> dict[str, Any]:
    """Per k: CCM-Prefix's and the anchor's summaries over seeds, on future and common frames."""
    seeds = settings.map_lines(seed_budget, settings.config(family))
    detail = {name: [summary([seed[name][index] for seed in seeds]) for index in range(len(BUDGETS))]
              for name in ("future", "common", "anchor")}
    detail["anchor_common"] = summary([seed["anchor_common"] for seed in seeds])
    detail["alpha"] = [[a for seed in seeds for a in seed["alpha"][index]] for index in range(len(BUDGETS))]
    return detail


def run(settings: AblationSettings) -> AblationOutput:
    families = settings.families or FAMILIES
    details = {family: family_budget(settings, family) for family in families}
    results: dict[str, Any] = {"k": list(BUDGETS), "scored_frames": {"future": "k+1..T", "common": f"{max(BUDGETS) + 1}..T"}}
    results.update({family: [cell["mean"] for cell in detail["future"]] for family, detail in details.items()})
    results["details"] = details
    return AblationOutput(results, markdown(details))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """One figure per family, from ``results.json``'s content."""
    return {f"prefix_budget_{family}": figure(family, detail) for family, detail in results["details"].items()}


def figure(family: str, detail: dict[str, Any]):
    def draw(path):
        series = {"CCM-Prefix, frames k+1..T": [c["mean"] for c in detail["future"]],
                  f"CCM-Prefix, frames {max(BUDGETS) + 1}..T": [c["mean"] for c in detail["common"]],
                  "anchor, frames k+1..T": [c["mean"] for c in detail["anchor"]]}
        bands = {label: ([c["ci"][0] for c in cells], [c["ci"][1] for c in cells])
                 for label, cells in zip(series, (detail["future"], detail["common"], detail["anchor"]))}
        return plot_series(list(BUDGETS), series, path, bands=bands, logx=True, xlabel="observed frames k",
                           title=f"{family}: CCM-Prefix OOD error vs prefix budget (95 % CI over seeds)")
    return draw


def markdown(details: dict[str, dict[str, Any]]) -> str:
    columns = ["family", "k", "CCM-Prefix, frames k+1..T", "anchor, same frames", "reduction", "CCM-Prefix, common frames",
               "failures"]
    rows = [[family, k, interval(future), interval(anchor), f"{reduction(future, anchor):+.1f} %", interval(common),
             future["failures"]]
            for family, detail in details.items()
            for k, future, anchor, common in zip(BUDGETS, detail["future"], detail["anchor"], detail["common"])]
    return "\n".join([
        "CCM-Prefix on the OOD test trajectories (c = ±2) of each seed, α picked from frames 0..k.",
        f"Mean relative L2 [95 % CI over seeds]; 'common' scores frames {max(BUDGETS) + 1}..T for every k.", "",
        *table_lines(columns, rows),
    ])
