"""The study's PNG figures (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .config import SPLITS  # noqa: E402
from .methods import LABELS  # noqa: E402

COLORS = {
    "anchor": "tab:gray", "average": "tab:orange", "ccm_coord": "tab:blue", "ccm_coord_calibrated": "tab:cyan",
    "ccm_prefix": "tab:green", "oracle": "black", "conditioned": "tab:purple", "wrong_sign": "tab:red",
    "fixed_alpha": "tab:brown", "task_arithmetic": "tab:pink", "low": "tab:olive", "high": "gold",
}


def save_records(records: list[dict], path: Path) -> None:
    """The raw per-seed records (per-trajectory errors, α curves, snapshot), to redraw without rerunning."""
    import json

    try:
        path.write_text(json.dumps(records))
    except (TypeError, ValueError, OSError) as error:  # never lose the results for a side file
        print(f"warning: could not save {path}: {error}")


def plot_alpha_curves(results: dict, records: list[dict], path: Path) -> Path:
    """Error vs α along the merge line, one panel per test regime, the chosen α marked."""
    regimes = records[0]["regimes"]
    alphas = np.asarray(records[0]["alphas"])
    n = len(regimes)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for index, regime in enumerate(regimes):
        ax = axes[index // cols][index % cols]
        curves = np.asarray([r["regimes"][index]["alpha_curve"] for r in records])
        for curve in curves:
            ax.plot(alphas, curve, color="tab:blue", alpha=0.25, lw=0.8)
        ax.plot(alphas, curves.mean(axis=0), color="tab:blue", lw=2, label="θ(α), mean over seeds")
        agg = results["regimes"][index]
        ax.axhline(agg["methods"]["anchor"], color=COLORS["anchor"], ls="--", lw=1, label="anchor")
        ax.axhline(agg["methods"]["conditioned"], color=COLORS["conditioned"], ls=":", lw=1, label="conditioned FNO")
        marks = (
            ("ccm_coord", agg["ccm_coord_alpha"], "o"),
            ("ccm_coord_calibrated", float(np.mean(agg["ccm_calibrated_alpha"])), "s"),
            ("oracle", float(np.mean(agg["oracle_alpha"])), "*"),
            ("ccm_prefix", float(np.mean(agg["ccm_prefix_alpha_mean"])), "^"),
        )
        for method, alpha, marker in marks:
            ax.axvline(alpha, color=COLORS[method], lw=0.8, alpha=0.6)
            y = np.interp(alpha, alphas, curves.mean(axis=0))
            ax.plot([alpha], [y], marker=marker, color=COLORS[method], ms=8, ls="none", label=f"{LABELS[method]} α")
        ax.set_title(f"{regime['split']}: μ={regime['mu']:g} (c={regime['c']:+.2f})", fontsize=9)
        ax.set_xlabel("α")
        ax.set_ylabel("rel. L2 (future frames)")
        top = np.percentile(curves.mean(axis=0), 85)
        ax.set_ylim(0, max(top, agg["methods"]["anchor"]) * 1.15)
    for extra in range(n, rows * cols):
        axes[extra // cols][extra % cols].axis("off")
    title = f"{results['family']}: error along the merge line θ(α) = θ₀ + Δ₊ + αΔ₋"
    return _save_panels(fig, axes, title, path, rect=(0, 0.08, 1, 0.96))


def plot_coordinate_law(results: dict, path: Path) -> Path:
    """Normalized physical coordinate c(μ) vs the oracle α, with the identity and calibrated maps."""
    law = results["coordinate_law"]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    test = np.asarray(law["test_points"])
    val = np.asarray(law["validation_points"])
    ax.scatter(test[:, 0], test[:, 1], label="test regimes: oracle α", color="tab:blue", zorder=3)
    if len(val):
        ax.scatter(val[:, 0], val[:, 1], label="validation: best α (calibration bank)", color="tab:orange", marker="s", zorder=3)
    c = np.linspace(min(test[:, 0].min(), -2.2), max(test[:, 0].max(), 2.2), 50)
    ax.plot(c, c, color="gray", ls="--", label="identity α = c")
    for i, sel in enumerate(results["selection"]):
        cal = sel["calibration"]
        ax.plot(c, cal["slope"] * c + cal["intercept"], color="tab:cyan", lw=0.8, label="calibrated g(c)" if i == 0 else None)
    r = law["pearson_r_test"]
    ax.set_title(f"{results['family']}: coordinate law (r = {r:.2f})" if r is not None else f"{results['family']}: coordinate law")
    ax.set_xlabel("normalized coordinate c(μ)")
    ax.set_ylabel("α")
    ax.set_ylim(-3.2, 3.2)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_snapshots(records: list[dict], path: Path, family: str) -> Path | None:
    """Truth / anchor / average / CCM-Coord on one OOD trajectory (channel 0), seed of the first record."""
    snap = records[0].get("snapshot")
    if not snap:
        return None
    names = ("truth", "anchor", "average", "ccm_coord")
    frames = snap["frames"]
    fig, axes = plt.subplots(len(names), len(frames), figsize=(2.2 * len(frames), 2.2 * len(names)), squeeze=False)
    truth = np.asarray(snap["fields"]["truth"])
    for i, name in enumerate(names):
        field = np.asarray(snap["fields"][name])
        for j, frame in enumerate(frames):
            ax = axes[i][j]
            # One colour scale per frame (the truth's range), so late, smoother frames stay readable.
            low, high = float(truth[j].min()), float(truth[j].max())
            ax.imshow(field[j], vmin=low, vmax=high, cmap="RdBu_r", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"frame {frame}", fontsize=9)
            if j == 0:
                ax.set_ylabel(LABELS.get(name, name), fontsize=8)
    fig.suptitle(f"{family}: OOD rollout at μ={snap['mu']:g} (c={snap['c']:+.1f}), seed {records[0]['seed']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_vs_time(results: dict, records: list[dict], path: Path, prefix_k: int) -> Path:
    """Mean relative L2 per frame, per split, averaged over regimes and seeds."""
    methods = ("anchor", "average", "ccm_coord", "ccm_prefix", "oracle", "conditioned", "wrong_sign")
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(4.3 * len(SPLITS), 3.4), squeeze=False)
    for ax, split in zip(axes[0], SPLITS):
        for method in methods:
            curves = [
                np.asarray(reg["methods"][method]["curve"]) for r in records for reg in r["regimes"] if reg["split"] == split
            ]
            curve = np.mean(curves, axis=0)[1:]  # frame 0 is the given initial state (error 0)
            ax.plot(np.arange(1, len(curve) + 1), curve, color=COLORS[method], label=LABELS[method], lw=1.5)
        ax.axvspan(1, prefix_k, color="gray", alpha=0.12, label=f"observed prefix (k={prefix_k})")
        ax.set_title(split)
        ax.set_xlabel("frame")
        ax.set_ylabel("rel. L2")
        ax.set_yscale("log")
    return _save_panels(fig, axes, f"{results['family']}: error vs time", path, rect=(0, 0.12, 1, 0.95))


def _save_panels(fig: plt.Figure, axes: np.ndarray, title: str, path: Path, *, rect: tuple[float, ...]) -> Path:
    """One legend below the panels (from the first), the title, then save and close."""
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(results: dict, records: list[dict], out: Path) -> list[Path]:
    out = Path(out)
    save_records(records, out / "records.json")
    drawn = [
        plot_alpha_curves(results, records, out / "alpha_curves.png"),
        plot_coordinate_law(results, out / "coordinate_law.png"),
        plot_error_vs_time(results, records, out / "error_vs_time.png", results["config"]["prefix_k"]),
    ]
    snap = plot_snapshots(records, out / "snapshots.png", results["family"])
    if snap is not None:
        drawn.append(snap)
    return drawn
