"""Diagnostics: weight-space split, error along the line, coordinate law, wrong-sign control, plots, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import conv_experts, tensors

import neuralop_merge as nm
from neuralop_merge import plots
from neuralop_merge.cli import main
from neuralop_merge.diagnostics import (
    alpha_curves,
    coordinate_law,
    fit_report,
    inspect_report,
    layer_report,
    oracle_alphas,
    pearson_r,
    save_report,
    wrong_sign_control,
)
from neuralop_merge.metrics import prefix_error
from neuralop_merge.rollout import rollout
from neuralop_merge.surface import CCMSurface

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def conv_line(low_coord: float = 1.0, high_coord: float = 3.0) -> nm.CCM:
    anchor, experts = conv_experts(2)
    return nm.CCM(anchor, experts["e0"], experts["e1"], low_coord=low_coord, high_coord=high_coord)


def frames_at(ccm: nm.CCM, alpha: float, seed: int = 0, n_steps: int = 3) -> torch.Tensor:
    torch.manual_seed(seed)
    return rollout(ccm.at(alpha), torch.randn(2, 1, 16, 16), n_steps)


def test_layer_report_matches_hand_computation(toy_trio):
    anchor, low, high = toy_trio
    rows = {row.name: row for row in layer_report(nm.CCM(anchor, low, high, low_coord=0.0, high_coord=1.0))}
    t0, tl, th = tensors(anchor), tensors(low), tensors(high)
    totals = np.zeros(3)
    for key in ("linear.weight", "linear.bias", "spectral", "scale"):
        dl = (tl[key] - t0[key]).reshape(-1).to(torch.complex128).numpy()
        dh = (th[key] - t0[key]).reshape(-1).to(torch.complex128).numpy()
        plus, minus = (dl + dh) / 2, (dh - dl) / 2
        row = rows[key]
        assert row.shared_norm == pytest.approx(np.linalg.norm(plus), rel=1e-9, abs=1e-12)
        assert row.direction_norm == pytest.approx(np.linalg.norm(minus), rel=1e-9, abs=1e-12)
        if np.linalg.norm(dl) > 0:
            cosine = np.vdot(dl, dh).real / (np.linalg.norm(dl) * np.linalg.norm(dh))
            assert row.cosine == pytest.approx(cosine, rel=1e-9)
            share = np.linalg.norm(minus) ** 2 / (np.linalg.norm(plus) ** 2 + np.linalg.norm(minus) ** 2)
            assert row.direction_share == pytest.approx(share, rel=1e-9)
        else:  # the "scale" buffer never moved
            assert math.isnan(row.cosine) and math.isnan(row.direction_share)
        totals += [np.vdot(dl, dl).real, np.vdot(dh, dh).real, np.vdot(dl, dh).real]
    overall = rows["<overall>"]
    assert overall.numel == sum(rows[k].numel for k in rows if k != "<overall>")
    assert overall.cosine == pytest.approx(totals[2] / math.sqrt(totals[0] * totals[1]), rel=1e-9)


def test_alpha_curves_find_the_generating_alpha():
    ccm = conv_line()
    frames = frames_at(ccm, 0.5)
    curves = alpha_curves(ccm.at, {"target": frames}, [-1.0, 0.0, 0.5, 1.0])
    alphas, errors = curves["target"]
    assert alphas == [-1.0, 0.0, 0.5, 1.0]
    assert errors[2] < 1e-6 < min(errors[0], errors[1], errors[3])
    assert errors[0] == pytest.approx(prefix_error(ccm.at(-1.0), frames))
    assert oracle_alphas(curves) == {"target": 0.5}


def test_pearson_r_and_coordinate_law_match_numpy():
    c = [-1.5, -0.5, 0.2, 1.0, 2.4]
    alpha = [-1.1, -0.7, 0.4, 0.8, 2.9]
    assert pearson_r(c, alpha) == pytest.approx(np.corrcoef(c, alpha)[0, 1])
    law = coordinate_law(c, alpha)
    slope, intercept = np.polyfit(c, alpha, 1)
    assert (law.slope, law.intercept) == pytest.approx((slope, intercept))
    assert law.r == pytest.approx(np.corrcoef(c, alpha)[0, 1])
    assert math.isnan(pearson_r([1.0, 2.0], [3.0, 3.0]))
    with pytest.raises(nm.StrategyError, match="two distinct"):
        coordinate_law([1.0, 1.0], [0.0, 1.0])


def test_wrong_sign_control_flips_alpha_and_hurts():
    ccm = conv_line()  # c(2.5) = 0.5
    frames = frames_at(ccm, 0.5)
    (row,) = wrong_sign_control(ccm, {2.5: frames})
    assert (row.label, row.alpha, row.wrong_alpha) == ("2.5", 0.5, -0.5)
    assert row.error < 1e-6 and row.wrong_error == pytest.approx(prefix_error(ccm.at(-0.5), frames))
    assert row.wrong_error > 1e-3


def test_inspect_report_and_save_report(tmp_path):
    ccm = conv_line()
    regimes = {1.5: frames_at(ccm, -0.5, seed=1), 2.5: frames_at(ccm, 0.5, seed=2)}
    report = inspect_report(ccm, regimes, [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert report["oracle"] == {"1.5": -0.5, "2.5": 0.5}
    assert report["coordinate"] == {"1.5": -0.5, "2.5": 0.5} == report["coord_alpha"]
    law = report["coordinate_law"]
    assert (law["slope"], law["intercept"], law["r"]) == pytest.approx((1.0, 0.0, 1.0))
    assert [row["wrong_alpha"] for row in report["wrong_sign"]] == [0.5, -0.5]
    written = save_report(report, json_path=tmp_path / "r.json", plot_dir=tmp_path / "plots")
    names = {path.name for path in written}
    assert names == {"r.json", "layers.png", "alpha_curves.png", "wrong_sign.png", "coordinate_law.png"}
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
    parsed = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    assert parsed["curves"]["2.5"]["alphas"] == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_inspect_report_without_regimes_has_only_layers():
    report = inspect_report(conv_line())
    assert set(report) == {"layers"} and report["layers"][-1]["name"] == "<overall>"


def test_plots_take_plain_arrays(tmp_path):
    paths = [
        plots.plot_alpha_curves({"a": ([-1, 0, 1], [0.3, 0.1, 0.2]), "b": ([-1, 0, 1], [0.2, 0.25, 0.4])},
                                {"a": 0.0, "b": -1.0}, tmp_path / "curves.png"),
        plots.plot_coordinate_law([-1.0, 0.0, 2.0], [-0.8, 0.1, 1.7], (0.85, 0.05), tmp_path / "law.png",
                                  r=0.99, labels=["x", "y", "z"]),
        plots.plot_coordinate_law([-1.0, 1.0], [-1.0, 1.0], None, tmp_path / "sub" / "law_nofit.png"),
        plots.plot_layer_report([{"name": "w", "shared_norm": 1.0, "direction_norm": 0.5, "direction_share": 0.2}],
                                tmp_path / "layers.png"),
        plots.plot_wrong_sign(["1e-3", "4e-3"], [0.1, 0.2], [0.3, 0.5], tmp_path / "wrong.png"),
        plots.plot_fit_residuals(["w", "b"], [0.1, 0.0], tmp_path / "residuals.png"),
    ]
    for path in paths:
        assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_series_over_categories_names_each_tick(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path, overwrite: saved.append(figure))
    plots.plot_series(["support", "id", "ood"], {"ccm": [0.3, 0.2, 0.4]}, tmp_path / "splits.png")
    plots.plot_series([12, 24, 48], {"ccm": [0.3, 0.2, 0.4]}, tmp_path / "widths.png", logx=True)
    plots.plot_series([0.5, 1.0, 1.5], {"ccm": [0.3, 0.2, 0.4]}, tmp_path / "alpha.png")
    splits, widths, alpha = (figure.axes[0] for figure in saved)
    assert [label.get_text() for label in splits.get_xticklabels()] == ["support", "id", "ood"]
    assert list(splits.get_xticks()) == [0, 1, 2]
    assert [label.get_text() for label in widths.get_xticklabels()] == ["12", "24", "48"]  # not 2^k marks
    assert list(widths.get_xticks()) == [12, 24, 48]
    assert [line.get_xdata().tolist() for line in alpha.get_lines()] == [[0.5, 1.0, 1.5]]  # numbers stay where they are


def test_unordered_runs_are_points_with_error_bars_not_a_line(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path, overwrite: saved.append(figure))
    runs, series = ["reference", "replay:0.1", "replay:0.25"], {"a": [0.3, 0.2, 0.4], "b": [0.5, 0.6, 0.7]}
    bands = {"a": ([0.25, 0.1, 0.35], [0.4, 0.3, 0.45])}
    plots.plot_series(runs, series, tmp_path / "runs.png", bands=bands, joined=False)
    (axes,) = saved[0].axes
    markers = [line for line in axes.get_lines() if line.get_marker() == "o"]
    assert [line.get_linestyle() for line in markers] == ["None", "None"]  # nothing drawn between runs
    a, b = (line.get_xdata().tolist() for line in markers)
    assert a == pytest.approx([-0.04, 0.96, 1.96]) and b == pytest.approx([0.04, 1.04, 2.04])  # side by side at each run
    (bars,) = axes.containers[0].lines[2]  # the vertical bars of the first label (its band)
    assert [segment[:, 1].tolist() for segment in bars.get_segments()] == [[0.25, 0.4], [0.1, 0.3], [0.35, 0.45]]
    assert [label.get_text() for label in axes.get_xticklabels()] == runs


def test_many_long_category_names_are_tilted_and_end_at_their_tick(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(plots, "_save", lambda figure, path, overwrite: saved.append(figure))
    short, long = ["a", "b"], [f"perturbation:{i}" for i in range(8)]
    plots.plot_series(short, {"x": [1.0, 2.0]}, tmp_path / "short.png")
    plots.plot_series(long, {"x": [1.0] * len(long)}, tmp_path / "long.png")
    (short_axes,), (long_axes,) = (figure.axes for figure in saved)
    assert {label.get_rotation() for label in short_axes.get_xticklabels()} == {0}
    assert {(label.get_rotation(), label.get_horizontalalignment()) for label in long_axes.get_xticklabels()} == {(40, "right")}


def test_fit_report_is_the_surface_residual():
    anchor, experts = conv_experts(3)
    surface = CCMSurface(anchor, experts, {"e0": 1.0, "e1": 2.0, "e2": 4.0})
    rows = fit_report(surface)
    assert [row.name for row in rows] == ["conv.weight", "conv.bias", "<overall>"]
    assert rows[-1].relative_total > 0


def test_cli_inspect_with_regimes_writes_json_and_plots(tmp_path, fno_trio, capsys):
    anchor, low, high = fno_trio
    for name, model in zip(("anchor", "low", "high"), fno_trio):
        nm.save_model(model, tmp_path / name)
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=3.0)
    torch.manual_seed(0)
    x0 = torch.randn(2, 1, 16, 16)
    trajectories = torch.cat([rollout(ccm.at(a), x0, 2) for a in (-1.0, 1.0)])
    torch.save({"trajectories": trajectories, "params": torch.tensor([1.0, 1.0, 3.0, 3.0])}, tmp_path / "data.pt")
    args = ["inspect", "--anchor", tmp_path / "anchor", "--low", tmp_path / "low", "--high", tmp_path / "high",
            "--low-coord", "1", "--high-coord", "3", "--data", tmp_path / "data.pt", "--alphas=-1:1:3",
            "--plot", tmp_path / "plots", "--json", tmp_path / "layers.json"]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    assert "coordinate law: alpha = 1 c + 0, r = 1" in out and "<overall>" in out
    report = json.loads((tmp_path / "plots" / "report.json").read_text())
    assert report["oracle"] == {"1.0": -1.0, "3.0": 1.0}
    assert json.loads((tmp_path / "layers.json").read_text())[-1]["name"] == "<overall>"
    assert {p.name for p in (tmp_path / "plots").iterdir()} >= {"alpha_curves.png", "coordinate_law.png", "wrong_sign.png"}
    assert main([str(a) for a in args[:11] + ["--regimes", "1.0"]]) == 2
    assert "--regimes needs --family" in capsys.readouterr().err
