"""The reproduction study at a tiny scale, end to end (seconds on 2 CPU cores)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neuralop_merge import CCM
from neuralop_merge.cli import main
from neuralop_merge.study import METHODS, SPLITS, get_config
from neuralop_merge.study.config import StudyConfigError
from neuralop_merge.study.methods import evaluate_seed, score
from neuralop_merge.study.pipeline import generate_data, train_models
from neuralop_merge.study.report import aggregate

TINY = dict(steps=4, n_train=2, n_test=2, resolution=16, n_frames=8, hidden_channels=8, n_modes=4, n_grid=9)


@pytest.fixture(autouse=True)
def one_thread():
    """One thread is much faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_run():
    torch.set_num_threads(1)
    config = get_config("diffreact", "quick").with_overrides(seeds=(0,), **TINY)
    data = generate_data(config, 0, progress=False)
    models = train_models(config, data, 0, progress=False, log=lambda _: None)
    record = evaluate_seed(config, data, models, progress=False)
    record.update(seed=0, steps=models.steps, seconds={"total": 0.0})
    return config, data, models, record


def test_every_method_gives_a_finite_error_on_every_regime(tiny_run):
    config, _, _, record = tiny_run
    assert {regime["split"] for regime in record["regimes"]} == set(SPLITS)
    for regime in record["regimes"]:
        assert set(regime["methods"]) == set(METHODS)
        for method, values in regime["methods"].items():
            assert len(values["rel_l2"]) == config.data.n_test, method
            assert all(math.isfinite(v) for v in values["rel_l2"] + values["vrmse"] + values["curve"]), method


def test_the_oracle_is_never_worse_than_any_single_alpha_on_its_regime(tiny_run):
    _, _, _, record = tiny_run
    for regime in record["regimes"]:
        oracle = sum(regime["methods"]["oracle"]["rel_l2"]) / regime["n"]
        assert oracle == pytest.approx(min(regime["alpha_curve"]), rel=1e-6)
        assert all(oracle <= value + 1e-9 for value in regime["alpha_curve"])
        fixed = sum(regime["methods"]["fixed_alpha"]["rel_l2"]) / regime["n"]
        assert oracle <= fixed + 1e-9
        assert regime["alphas"]["oracle"] in record["alphas"]


def test_alpha_plus_minus_one_reproduces_the_endpoint_experts(tiny_run):
    config, data, models, _ = tiny_run
    ccm = CCM.from_experts(models.anchor, {"low": models.low, "high": models.high},
                           {"low": config.regimes.low, "high": config.regimes.high}, transform="log")
    trajectories = torch.cat([regime.trajectories for regime in data.test["ood"]])
    for alpha, expert in ((-1.0, models.low), (1.0, models.high)):
        on_line = score(ccm.at(alpha), trajectories, config.prefix_k)
        direct = score(expert, trajectories, config.prefix_k)
        torch.testing.assert_close(on_line.rel_l2, direct.rel_l2, rtol=1e-4, atol=1e-6)


def test_selection_uses_validation_regimes_only(tiny_run):
    config, _, _, record = tiny_run
    test_values = {regime["mu"] for regime in record["regimes"]}
    bank = record["selection"]["bank"]
    assert {mu for mu, _ in bank} == set(config.regimes.values(config.regimes.validation))
    assert not test_values & {mu for mu, _ in bank}
    assert record["selection"]["fixed_alpha"] in record["alphas"]
    assert record["selection"]["ta_scale"] in config.ta_scales


def test_conditioned_baseline_gets_the_same_step_budget(tiny_run):
    _, _, models, _ = tiny_run
    budget = models.steps["anchor"] + models.steps["experts"]
    assert abs(models.steps["conditioned"] - budget) <= budget / 2


def test_aggregate_has_the_documented_layout(tiny_run):
    config, _, _, record = tiny_run
    results = aggregate(config, [record, record], command="x")
    assert {"family", "scale", "seeds", "command", "splits", "ood_reduction_vs_anchor"} <= set(results)
    for split in SPLITS:
        for method in METHODS:
            entry = results["splits"][split][method]
            assert set(entry) == {"mean", "std", "per_seed"} and len(entry["per_seed"]) == 2
    assert results["ood_reduction_vs_anchor"]["anchor"] == 0.0
    assert "ccm_coord_vs_anchor" in results["wilcoxon"]["ood"]


def test_regime_layout_keeps_validation_apart_from_test():
    for family in ("diffreact", "ns2d", "dam_break"):
        config = get_config(family, "small")
        test = {v for coords in config.regimes.test.values() for v in config.regimes.values(coords)}
        assert not test & set(config.regimes.values(config.regimes.validation))
        assert config.regimes.value(-1.0) == pytest.approx(config.regimes.low)
        assert config.regimes.value(1.0) == pytest.approx(config.regimes.high)
    with pytest.raises(StudyConfigError):
        get_config("diffreact", "huge")


def test_demo_cli_runs_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--no-progress", "--scale", "quick", "--device", "cpu", "--seed", "3"]
    argv += ["--steps", "2", "--n-train", "2", "--n-test", "1", "--resolution", "16", "--n-frames", "7",
             "--hidden-channels", "8", "--n-modes", "4", "--n-grid", "5"]
    assert main(argv) == 0
    for name in ("results.json", "results.md", "alpha_curves.png", "coordinate_law.png", "error_vs_time.png", "snapshots.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [3] and results["scale"] == "quick" and results["family"] == "diffreact"
    assert results["command"].startswith("neuralop-merge demo")
    assert (out / "results.md").read_text().startswith("# CCM reproduction study")
    printed = capsys.readouterr().out
    assert "CCM-Coord" in printed and "results.md" in printed
    # A second run into the same folder is refused rather than silently replacing the results.
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err
