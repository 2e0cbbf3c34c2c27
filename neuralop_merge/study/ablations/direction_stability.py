"""Is the physical direction Δ₋ a property of the PDE, or of one training run?

The referee's objection to CCM: Δ₋ = (θH − θL)/2 might be an accident of the fine-tuning run. Each
perturbation refits the endpoint experts of a seed with one thing changed and compares its Δ₋
with the reference run's (the study's recipe), per tensor and over all weights (cosine of the
flattened update; complex spectral weights as real pairs), then scores the perturbed line's
identity CCM-Coord (α = c) and CCM-Prefix (α from each trajectory's observed frames) on the OOD
test regimes (CCM-Prefix also on each side, c = −2 and c = +2), and each of its experts against
its anchor at the expert's own endpoint (does the refit expert still carry physics the anchor
lacks?), with the low expert's own error there against the persistence baseline (the study's
competence rule):

``lr:0.5``, ``lr:2``            the experts' learning rate halved / doubled;
``steps:0.5``, ``steps:2``,     the experts' step cap halved / doubled / quadrupled (the stopping
``steps:4``                     rule scales);
``data:4``                      the experts fine-tuned on four times as many endpoint trajectories
                                (same step cap): is an expert short of data or of steps?
``data+steps:4``                four times the trajectories and four times the step cap;
``data:4+steps:8``              four times the trajectories and eight times the step cap (the
                                ``data+steps:4`` experts all ended at their cap);
``optimizer:sgd``               SGD with Nesterov momentum 0.9 at 10× the AdamW rate;
``anchor_seed:+1000``           a new anchor (another initialization and batch order, same data)
                                and its own experts: Δ₋ is then taken around a different θ₀;
``data_seed:+1000``             the experts fine-tuned on endpoint trajectories of another draw.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ...ccm import CCM
from ...plots import plot_series
from ..config import COMPETENCE_VS_PERSISTENCE, ENDPOINTS, EXPERTS, StudyConfig
from ..data import Regime, training_set
from ..markdown import captioned_table
from .base import (LINE_MODELS, AblationOutput, AblationSettings, Draw, SeedLine, cached_nets, endpoint_errors, endpoint_gain, errors,
                   interval, per_regime, persistence_errors, prefix_errors, reduction, scaled_caps, seed_line, summary,
                   train_line)

NAME = "direction_stability"
FAMILIES = ("diffreact", "ns2d")
PERTURBATIONS = ("lr:0.5", "lr:2", "steps:0.5", "steps:2", "steps:4", "data:4", "data+steps:4", "data:4+steps:8",
                 "optimizer:sgd", "anchor_seed:+1000", "data_seed:+1000")
SEED_OFFSET = 1000
SGD_LR_FACTOR = 10.0


def direction_cosines(first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Cosine of two update directions per tensor, and over all tensors (``"<overall>"``).

    Tensors where either direction is exactly zero (buffers a merge leaves alone) are skipped.
    """
    cosines, dot, norm_a, norm_b = {}, 0.0, 0.0, 0.0
    for name, a in first.items():
        a, b = real64(a), real64(second[name])
        na, nb = float(a.norm()), float(b.norm())
        if na == 0 or nb == 0:
            continue
        cross = float(a @ b)
        cosines[name] = cross / (na * nb)
        dot, norm_a, norm_b = dot + cross, norm_a + na**2, norm_b + nb**2
    cosines["<overall>"] = dot / math.sqrt(norm_a * norm_b) if norm_a and norm_b else float("nan")
    return cosines


def real64(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    return (torch.view_as_real(tensor) if tensor.is_complex() else tensor).double().flatten()


def perturbation_parts(key: str) -> list[tuple[str, str]]:
    """The ``(kind, value)`` parts of a perturbation key, joined by ``+``.

    A part without a value takes the next part's: ``data+steps:4`` is ``[("data", "4"), ("steps", "4")]``,
    ``data:4+steps:8`` is ``[("data", "4"), ("steps", "8")]``.
    """
    parts, value = [], ""
    for part in reversed(re.split(r"\+(?=[A-Za-z_])", key)):  # a "+" before a kind, not a sign (+1000)
        kind, _, own = part.partition(":")
        value = own or value
        if not re.fullmatch(r"[A-Za-z_]+", kind) or not value:
            raise ValueError(f"perturbation {key!r} is not of the form kind:value[+kind:value]")
        parts.append((kind, value))
    return parts[::-1]


def perturbation_folder(parts: list[tuple[str, str]]) -> str:
    """The cache folder name of a perturbation; one shared value is written once (``direction-data+steps-4``)."""
    values = {value for _, value in parts}
    if len(values) == 1:
        return f"direction-{'+'.join(kind for kind, _ in parts)}-{values.pop()}"
    return "direction-" + "+".join(f"{kind}-{value}" for kind, value in parts)


def perturbed_nets(settings: AblationSettings, line: SeedLine, key: str) -> dict:
    """Anchor and experts of one perturbation of ``line``'s run (cached; trained with the line's processor); see :func:`perturbation_parts`."""
    parts = perturbation_parts(key)
    config, seed, data = line.config, line.seed, line.data
    options: dict[str, Any] = {"anchor": line.anchor.net}
    for kind, value in parts:
        if kind == "lr":
            config = config.with_overrides(expert_lr=config.train.expert_lr * float(value))
        elif kind == "steps":
            config = scaled_caps(config, experts=float(value))
        elif kind == "optimizer":
            config = config.with_overrides(expert_lr=config.train.expert_lr * SGD_LR_FACTOR)
            options["optimizer"] = value
        elif kind == "anchor_seed":  # a new anchor replaces the line's
            del options["anchor"]
            options["anchor_seed"] = seed + SEED_OFFSET
        elif kind == "data":
            data = replace(data, **endpoint_sets(settings, config, seed, round(config.data.n_endpoint * float(value))))
        elif kind == "data_seed":
            data = replace(data, **endpoint_sets(settings, config, seed + SEED_OFFSET, config.data.n_endpoint))
        else:
            raise ValueError(f"unknown perturbation {kind!r} in {key!r}")
    folder = settings.folder(line.config, seed, perturbation_folder(parts))
    return cached_nets(folder, LINE_MODELS,
                       lambda: train_line(config, seed, data, line.anchor.processor, settings=settings, **options))


def endpoint_sets(settings: AblationSettings, config: StudyConfig, seed: int, n: int) -> dict[str, Any]:
    """The endpoint training sets of ``seed``'s data with ``n`` trajectories per endpoint."""
    folder = settings.folder(config, seed, "data")
    return {role: training_set(config, seed, role, (c,), n, settings.device, folder) for role, c in ENDPOINTS}


def ood_errors(ccm: CCM, line: SeedLine) -> dict[str, Any]:
    """The line's OOD errors under the identity CCM-Coord and under CCM-Prefix, the latter also per side."""
    prefix_by_side = per_ood_side(lambda regime: prefix_errors(ccm, [regime], line.config), line)
    return {"coord": per_regime(lambda regime: ccm.at(regime.c), line.tests("ood"), line.config.prefix_k),
            "prefix": pooled(prefix_by_side), "prefix_by_side": prefix_by_side}


def per_ood_side(errors_at: Callable[[Regime], list[float]], line: SeedLine) -> dict[str, list[float]]:
    """``errors_at(regime)`` for each of ``line``'s OOD regimes, keyed by side.

    The key is the regime's coordinate as ``results.json`` writes it elsewhere (``"-2"``, ``"2"``).
    """
    return {f"{regime.c:g}": errors_at(regime) for regime in line.tests("ood")}


def pooled(by_side: Mapping[str, list[float]]) -> list[float]:
    """Per-side errors as one list, in the regimes' order."""
    return [value for values in by_side.values() for value in values]


def by_side(seeds: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Per side, the summary over seeds of per-side error lists."""
    return {key: summary([seed[key] for seed in seeds]) for key in seeds[0]}


def seed_results(settings: AblationSettings, family: str, seed: int) -> dict[str, Any]:
    """Reference and perturbed OOD errors, direction cosines and endpoint errors of one seed."""
    line = seed_line(settings, settings.config(family), seed)
    reference = line.ccm()
    anchor_by_side = per_ood_side(lambda regime: errors(line.anchor, [regime], line.config.prefix_k), line)
    out: dict[str, Any] = {
        "reference": ood_errors(reference, line), "anchor_by_side": anchor_by_side, "anchor": pooled(anchor_by_side),
        "reference_endpoints": endpoint_errors(line, line.models()),
        "persistence_low": persistence_errors([regime for regime in line.tests("id") if regime.c == -1.0], line.config.prefix_k),
    }
    for key in PERTURBATIONS:
        settings.log(f"  {family} seed {seed}: {key}")
        perturbed = line.with_nets(perturbed_nets(settings, line, key))
        ccm = perturbed.ccm()
        out[key] = {"cos": direction_cosines(reference.delta_direction, ccm.delta_direction), "ood": ood_errors(ccm, line),
                    "endpoints": endpoint_errors(line, perturbed.models()), "steps": perturbed.steps()}
    return out


def family_results(settings: AblationSettings, family: str) -> dict[str, Any]:
    seeds = settings.map_seeds(seed_results, family)
    table: dict[str, Any] = {"reference": {"ccm_ood": summary([s["reference"]["coord"] for s in seeds]),
                                           "prefix_ood": summary([s["reference"]["prefix"] for s in seeds]),
                                           "prefix_ood_by_side": by_side([s["reference"]["prefix_by_side"] for s in seeds]),
                                           "anchor_ood": summary([s["anchor"] for s in seeds]),
                                           "anchor_ood_by_side": by_side([s["anchor_by_side"] for s in seeds]),
                                           "expert_vs_anchor": endpoint_gain([s["reference_endpoints"] for s in seeds]),
                                           "low_at_low": low_error([s["reference_endpoints"] for s in seeds]),
                                           "persistence_low": float(np.mean([s["persistence_low"] for s in seeds]))}}
    for key in PERTURBATIONS:
        layers = seeds[0][key]["cos"].keys()
        table[key] = {
            "cos_direction": float(np.mean([s[key]["cos"]["<overall>"] for s in seeds])),
            "cos_by_layer": {name: float(np.mean([s[key]["cos"][name] for s in seeds])) for name in layers},
            "ccm_ood": summary([s[key]["ood"]["coord"] for s in seeds]),
            "prefix_ood": summary([s[key]["ood"]["prefix"] for s in seeds]),
            "prefix_ood_by_side": by_side([s[key]["ood"]["prefix_by_side"] for s in seeds]),
            "expert_vs_anchor": endpoint_gain([s[key]["endpoints"] for s in seeds]),
            "low_at_low": low_error([s[key]["endpoints"] for s in seeds]),
            "steps": [s[key]["steps"] for s in seeds],
        }
    return table


def low_error(endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """The low expert's own error at c = −1, summarized over seeds (the rule it misses on DiffReact)."""
    return summary([seed["low"]["expert"] for seed in endpoints])


def run(settings: AblationSettings) -> AblationOutput:
    families = settings.families or FAMILIES
    by_family = {family: family_results(settings, family) for family in families}
    perturbations = {key: {"cos_direction": {f: by_family[f][key]["cos_direction"] for f in families},
                           "ccm_ood": {f: by_family[f][key]["ccm_ood"] for f in families}} for key in PERTURBATIONS}
    results = {"perturbations": perturbations, "reference": {f: by_family[f]["reference"] for f in families},
               "by_family": by_family}
    return AblationOutput(results, markdown(by_family))


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """cos(Δ₋, Δ₋ reference) per perturbation and family, from ``results.json``'s content.

    The perturbations are those of the run that wrote ``results`` (older runs lack the later ones,
    such as ``data:4``), so its figure can be redrawn as it was.
    """
    keys = list(results["perturbations"])
    by_family = results["by_family"]
    return {"direction_stability": lambda path: plot_series(
        keys, {f: [table[key]["cos_direction"] for key in keys] for f, table in by_family.items()},
        path, logy=False, ylabel="cos(Δ₋, Δ₋ reference)", xlabel="perturbation",
        title="stability of the physical direction")}


def markdown(by_family: dict[str, Any]) -> str:
    caption = ("cos(Δ₋, Δ₋ of the reference run) over all weights (mean over seeds), the perturbed line's "
               "identity CCM-Coord and CCM-Prefix OOD errors (mean relative L2 [95 % CI over seeds]; failures: "
               "CCM-Coord's trajectories with relative L2 > 1), CCM-Prefix's cut of the anchor's mean OOD error on each "
               "side (c = −2 / c = +2), each expert against its "
               "anchor at the expert's own endpoint (geometric mean of per-trajectory error ratios on the ID test "
               "trajectories; below 1: the expert is better), and the low expert's own error there (mean relative "
               f"L2 [95 % CI]; the competence rule asks for at most {COMPETENCE_VS_PERSISTENCE} × persistence: "
               + ", ".join(f"{family} {COMPETENCE_VS_PERSISTENCE * table['reference']['persistence_low']:.4f}"
                           for family, table in by_family.items())
               + ").")
    columns = ["family", "run", "cos(Δ₋)", "CCM-Coord OOD", "failures", "CCM-Prefix OOD", "CCM-Prefix cut −2 / +2",
               "low / anchor at c = −1",
               "high / anchor at c = +1", "low at c = −1"]
    rows = []
    for family, table in by_family.items():
        reference = table["reference"]
        rows.append([family, "anchor", "—", interval(reference["anchor_ood"]), reference["anchor_ood"]["failures"], "—", "—", "—",
                     "—", "—"])
        for key, row in (("reference", reference), *((key, table[key]) for key in PERTURBATIONS)):
            cosine = 1 if key == "reference" else f"{row['cos_direction']:.3f}"
            rows.append([family, key, cosine, interval(row["ccm_ood"]), row["ccm_ood"]["failures"], interval(row["prefix_ood"]),
                         side_cuts(row["prefix_ood_by_side"], reference["anchor_ood_by_side"]),
                         *gains(row["expert_vs_anchor"]), interval(row["low_at_low"])])
    return captioned_table(caption, columns, rows)


def side_cuts(method: dict[str, Any], anchor: dict[str, Any]) -> str:
    """``"40.1 % / 52.3 %"``: the reduction of the anchor's mean error on each OOD side, low side first."""
    return " / ".join(f"{reduction(method[key], anchor[key]):.1f} %" for key in sorted(anchor, key=float))


def gains(cells: dict[str, Any]) -> list[str]:
    return [interval(cells[side], digits=3) for side in EXPERTS]
