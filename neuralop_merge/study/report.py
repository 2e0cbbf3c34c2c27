"""Aggregation over seeds, the paired tests, results.json and results.md."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from .config import PUBLISHED_OOD_REDUCTION, SPLITS, StudyConfig
from .methods import LABELS, METHODS

#: (method, baseline) pairs of the paired Wilcoxon signed-rank tests.
PAIRED_TESTS: tuple[tuple[str, str], ...] = (
    ("ccm_coord", "anchor"),
    ("ccm_coord", "average"),
    ("ccm_coord_calibrated", "anchor"),
    ("ccm_prefix", "anchor"),
    ("ccm_prefix", "average"),
)
SPLIT_NAMES = {"id": "ID (endpoints)", "interp": "Interpolation", "ood": "OOD (extrapolation)"}


def _split_values(record: dict, split: str, method: str, metric: str) -> list[float]:
    """Per-trajectory values of one seed, regimes of the split concatenated (regime-major)."""
    return [v for regime in record["regimes"] if regime["split"] == split for v in regime["methods"][method][metric]]


def _summary(per_seed: list[float]) -> dict[str, Any]:
    values = np.asarray(per_seed, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "per_seed": [float(v) for v in values]}


def paired_test(method: list[float], baseline: list[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired per-trajectory errors (method − baseline)."""
    a, b = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    diff = a - b
    record: dict[str, Any] = {
        "n": int(len(diff)),
        "median_difference": float(np.median(diff)) if len(diff) else None,
        "fraction_better": float(np.mean(diff < 0)) if len(diff) else None,
        "statistic": None,
        "p_value": None,
    }
    if len(diff) >= 2 and np.any(diff != 0):
        result = stats.wilcoxon(a, b, alternative="two-sided")
        record["statistic"], record["p_value"] = float(result.statistic), float(result.pvalue)
    return record


def _pearson(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(stats.pearsonr(x, y).statistic)


def aggregate(config: StudyConfig, records: list[dict], *, command: str = "", device: str = "cpu") -> dict[str, Any]:
    """results.json's content from the raw per-seed records."""
    splits: dict[str, dict[str, Any]] = {}
    vrmse: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        splits[split] = {
            m: _summary([float(np.mean(_split_values(r, split, m, "rel_l2"))) for r in records]) for m in METHODS
        }
        vrmse[split] = {
            m: _summary([float(np.mean(_split_values(r, split, m, "vrmse"))) for r in records]) for m in METHODS
        }
    anchor_ood = splits["ood"]["anchor"]["mean"]
    reduction = {m: 100.0 * (1.0 - splits["ood"][m]["mean"] / anchor_ood) for m in METHODS}
    reduction_per_seed = {
        m: [100.0 * (1.0 - v / a) for v, a in zip(splits["ood"][m]["per_seed"], splits["ood"]["anchor"]["per_seed"])]
        for m in METHODS
    }
    # Robust to one seed's unstable rollouts: the medians of the per-trajectory OOD errors, seeds pooled.
    pooled_anchor = np.median([v for r in records for v in _split_values(r, "ood", "anchor", "rel_l2")])
    reduction_median = {
        m: 100.0 * (1.0 - float(np.median([v for r in records for v in _split_values(r, "ood", m, "rel_l2")])) / pooled_anchor)
        for m in METHODS
    }
    wilcoxon = {
        split: {
            f"{m}_vs_{b}": paired_test(
                [v for r in records for v in _split_values(r, split, m, "rel_l2")],
                [v for r in records for v in _split_values(r, split, b, "rel_l2")],
            )
            for m, b in PAIRED_TESTS
        }
        for split in SPLITS
    }
    test_points = [(reg["c"], reg["alphas"]["oracle"]) for r in records for reg in r["regimes"]]
    val_points = [(v["c"], v["best_alpha"]) for r in records for v in r["selection"]["validation"]]
    regimes = []
    for index, first in enumerate(records[0]["regimes"]):
        entry = {"split": first["split"], "c": first["c"], "mu": first["mu"], "methods": {}}
        for m in METHODS:
            entry["methods"][m] = float(np.mean([np.mean(r["regimes"][index]["methods"][m]["rel_l2"]) for r in records]))
        entry["oracle_alpha"] = [r["regimes"][index]["alphas"]["oracle"] for r in records]
        entry["ccm_coord_alpha"] = first["alphas"]["ccm_coord"]
        entry["ccm_calibrated_alpha"] = [r["regimes"][index]["alphas"]["ccm_coord_calibrated"] for r in records]
        entry["ccm_prefix_alpha_mean"] = [float(np.mean(r["regimes"][index]["alphas"]["ccm_prefix"])) for r in records]
        regimes.append(entry)
    return {
        "family": config.family,
        "scale": config.scale,
        "seeds": list(config.seeds),
        "command": command,
        "splits": splits,
        "ood_reduction_vs_anchor": reduction,
        # -- beyond the required layout ---------------------------------------------------------
        "published_ood_reduction_vs_anchor": PUBLISHED_OOD_REDUCTION.get(config.family),
        "ood_reduction_vs_anchor_per_seed": reduction_per_seed,
        "ood_reduction_vs_anchor_of_medians": reduction_median,
        "vrmse": vrmse,
        "wilcoxon": wilcoxon,
        "coordinate_law": {
            "test_points": test_points,
            "validation_points": val_points,
            "pearson_r_test": _pearson([c for c, _ in test_points], [a for _, a in test_points]),
            "pearson_r_all": _pearson(
                [c for c, _ in test_points + val_points], [a for _, a in test_points + val_points]
            ),
        },
        "regimes": regimes,
        "selection": [{"seed": r["seed"], **{k: v for k, v in r["selection"].items() if k != "validation"},
                       "validation_best_alpha": {str(v["mu"]): v["best_alpha"] for v in r["selection"]["validation"]}}
                      for r in records],
        "steps": [{"seed": r["seed"], **r["steps"]} for r in records],
        "seconds": [{"seed": r["seed"], **{k: round(v, 1) for k, v in r["seconds"].items()}} for r in records],
        "protocol": {
            "rollout": "from frame 0 over all T steps, for every method",
            "scored_frames": f"{config.prefix_k + 1}..T (frames 0..{config.prefix_k} are CCM-Prefix's observed prefix)",
            "metric": "relative L2 per frame (norm over channels and space), mean over frames, then trajectories",
            "selection": "task-arithmetic λ, fixed α and the calibration bank on validation regimes only",
            "oracle": "per test regime, best α of the 41-point grid on [-3, 3] in hindsight (diagnostic)",
            "ccm_prefix": "per trajectory, CCM.from_prefix(frames 0..k, method='fast')",
            "wilcoxon": "two-sided signed-rank over trajectories, pooled over seeds and the split's regimes",
            "std": "sample std over seeds of the per-seed split means",
        },
        "config": config.to_dict(),
        "device": device,
        "platform": platform.platform(),
    }


def _fmt(summary: dict[str, Any], digits: int = 4) -> str:
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2g}" if value >= 1e-3 else f"{value:.1e}"


def summary_table(results: dict[str, Any]) -> str:
    """The markdown table: relative L2 per split and the OOD reduction vs the anchor."""
    lines = [
        "| Method | ID | Interp | OOD | OOD reduction vs anchor |",
        "|---|---|---|---|---|",
    ]
    for m in METHODS:
        row = [LABELS[m]] + [_fmt(results["splits"][s][m]) for s in SPLITS]
        row.append("—" if m == "anchor" else f"{results['ood_reduction_vs_anchor'][m]:+.1f} %")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def verdict(results: dict[str, Any]) -> str:
    ood = results["splits"]["ood"]
    lines = []
    for m in ("ccm_coord", "ccm_coord_calibrated", "ccm_prefix"):
        better_anchor = ood[m]["mean"] < ood["anchor"]["mean"]
        better_average = ood[m]["mean"] < ood["average"]["mean"]
        seeds = sum(v < a for v, a in zip(ood[m]["per_seed"], ood["anchor"]["per_seed"]))
        lines.append(
            f"- **{LABELS[m]}** {'beats' if better_anchor else 'does NOT beat'} the anchor OOD "
            f"({results['ood_reduction_vs_anchor'][m]:+.1f} %, better in {seeds}/{len(ood[m]['per_seed'])} seeds) "
            f"and {'beats' if better_average else 'does NOT beat'} plain averaging "
            f"({ood[m]['mean']:.4f} vs {ood['average']['mean']:.4f})."
        )
    cond = ood["conditioned"]["mean"]
    lines.append(
        f"- The parameter-conditioned FNO scores {cond:.4f} OOD "
        f"({'better' if cond < ood['ccm_coord']['mean'] else 'worse'} than CCM-Coord)."
    )
    ws = ood["wrong_sign"]["mean"] > ood["ccm_coord"]["mean"]
    lines.append(f"- The wrong-sign control is {'worse' if ws else 'NOT worse'} than CCM-Coord OOD, as it must be"
                 f"{'' if ws else ' — the merge direction carries no useful physical signal here'}.")
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path, figures: list[str]) -> None:
    cfg = results["config"]
    rv = cfg["regime_values"]
    name = {"diffreact": "Du", "ns2d": "nu", "dam_break": "h_in"}.get(results["family"], "mu")
    published = results["published_ood_reduction_vs_anchor"]
    steps = results["steps"][0]
    out = [
        f"# CCM reproduction study — `{results['family']}` at the `{results['scale']}` scale",
        "",
        "Command:",
        "",
        "```",
        results["command"] or "(library call)",
        "```",
        "",
        f"Seeds {results['seeds']}, device `{results['device']}`; errors are relative L2 on the future frames "
        f"{cfg['prefix_k'] + 1}..T of rollouts from frame 0 (mean ± sample std over seeds of the per-seed means).",
        "",
        "## Setup",
        "",
        f"- Axis `{name}` ({cfg['regimes']['transform']} coordinate); endpoint experts at {rv['low']:g} and {rv['high']:g}.",
        f"- Anchor support: {rv['support']}; validation (λ, fixed α, calibration bank): {rv['validation']}.",
        f"- Test: ID {rv['id']}, interpolation {rv['interp']}, OOD {rv['ood']}; "
        f"{cfg['data']['n_test']} trajectories per test regime and seed.",
        f"- FNO hidden {cfg['model']['hidden_channels']}, {cfg['model']['n_modes']} modes, {cfg['model']['n_layers']} layers, "
        f"{cfg['data']['resolution']}² grid; steps (seed {steps['seed']}): anchor {steps['anchor']}, "
        f"experts {steps['experts']} (both), conditioned FNO {steps['conditioned']} on the pooled support + endpoint data.",
        "",
        "## Relative L2 by split",
        "",
        summary_table(results),
        "",
        "## VRMSE by split",
        "",
        "| Method | ID | Interp | OOD |",
        "|---|---|---|---|",
        *("| " + " | ".join([LABELS[m]] + [_fmt(results["vrmse"][s][m]) for s in SPLITS]) + " |" for m in METHODS),
        "",
        "## OOD reduction vs the anchor",
        "",
        "Mean: from the split means (the table above); per seed: the same per seed; median: from the medians "
        "of the per-trajectory OOD errors, seeds pooled (robust to one seed's unstable rollouts).",
        "",
        "| Method | this run (mean) | per seed | median | published (CCM) |",
        "|---|---|---|---|---|",
    ]
    for m in ("ccm_coord", "ccm_coord_calibrated", "ccm_prefix", "average", "conditioned", "oracle"):
        per_seed = ", ".join(f"{v:+.1f}" for v in results["ood_reduction_vs_anchor_per_seed"][m])
        pub = f"{published} %" if (m == "ccm_coord" and published is not None) else ""
        median = results["ood_reduction_vs_anchor_of_medians"][m]
        out.append(f"| {LABELS[m]} | {results['ood_reduction_vs_anchor'][m]:+.1f} % | {per_seed} | {median:+.1f} % | {pub} |")
    out += [
        "",
        "## Paired Wilcoxon signed-rank tests (over trajectories, seeds pooled)",
        "",
        "| Split | Comparison | n | median diff. | fraction better | p |",
        "|---|---|---|---|---|---|",
    ]
    for split in SPLITS:
        for key, test in results["wilcoxon"][split].items():
            method, baseline = key.split("_vs_")
            med = "—" if test["median_difference"] is None else f"{test['median_difference']:+.4f}"
            frac = "—" if test["fraction_better"] is None else f"{test['fraction_better']:.2f}"
            out.append(f"| {split} | {LABELS[method]} vs {LABELS[baseline]} | {test['n']} | {med} | {frac} | {_p(test['p_value'])} |")
    law = results["coordinate_law"]
    r_test = "—" if law["pearson_r_test"] is None else f"{law['pearson_r_test']:.3f}"
    out += [
        "",
        "## Per regime (mean over seeds) and the chosen α",
        "",
        f"| Split | {name} | c | anchor | average | CCM-Coord | CCM-Prefix | conditioned | oracle | α coord | α calibrated | α oracle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for reg in results["regimes"]:
        m = reg["methods"]
        cal = np.mean(reg["ccm_calibrated_alpha"])
        ora = ", ".join(f"{a:+.2f}" for a in reg["oracle_alpha"])
        out.append(
            f"| {reg['split']} | {reg['mu']:g} | {reg['c']:+.2f} | {m['anchor']:.4f} | {m['average']:.4f} | "
            f"{m['ccm_coord']:.4f} | {m['ccm_prefix']:.4f} | {m['conditioned']:.4f} | {m['oracle']:.4f} | "
            f"{reg['ccm_coord_alpha']:+.2f} | {cal:+.2f} | {ora} |"
        )
    out += [
        "",
        "Selections on validation regimes, per seed: " + "; ".join(
            f"seed {s['seed']}: λ = {s['ta_scale']:.2f}, fixed α = {s['fixed_alpha']:+.2f}, "
            f"g(c) = {s['calibration']['slope']:.2f}·c {s['calibration']['intercept']:+.2f}"
            for s in results["selection"]
        ) + ".",
        "",
        f"Coordinate law: Pearson r between c(μ) and the oracle α over the test regimes and seeds = {r_test}.",
        "",
        "## Verdict",
        "",
        verdict(results),
        "",
        "## Figures",
        "",
        *(f"![{Path(f).stem}]({f})" for f in figures),
        "",
        "Runtime per seed (s): " + "; ".join(
            f"seed {s['seed']}: " + ", ".join(f"{k} {v:g}" for k, v in s.items() if k != "seed")
            for s in results["seconds"]
        ) + ".",
        "",
    ]
    path.write_text("\n".join(out))


def write_outputs(results: dict[str, Any], records: list[dict], config: StudyConfig, out: Path, *, figures: bool = True) -> list[Path]:
    """results.json, results.md and (optionally) the PNG figures; returns the written paths."""
    from .figures import draw_all

    drawn = draw_all(results, records, out) if figures else []
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_finite(results), indent=1))
    md_path = out / "results.md"
    write_markdown(results, md_path, [p.name for p in drawn])
    return [json_path, md_path, *drawn]


def _finite(value: Any) -> Any:
    """JSON without NaN/Infinity (they become null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def rerender(out: str | Path) -> dict[str, Any]:
    """Rewrite results.json, results.md and the figures of a finished run from its records.json."""
    from .config import get_config

    out = Path(out)
    old = json.loads((out / "results.json").read_text())
    records = json.loads((out / "records.json").read_text())
    config = get_config(old["family"], old["scale"]).with_overrides(seeds=tuple(old["seeds"]))
    results = aggregate(config, records, command=old["command"], device=old.get("device", "cpu"))
    results["config"] = old["config"]  # the configuration the run actually used
    write_outputs(results, records, config, out)
    return results

