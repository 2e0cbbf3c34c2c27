"""The reproduction study: its statistics on known answers, its protocol, and a tiny end-to-end run."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from neuralop.models import FNO

from neuralop_merge.cli import main
from neuralop_merge.study import SPLITS, get_config
from neuralop_merge.study.config import FAMILIES, SCALES, StudyConfigError, scale_seeds
from neuralop_merge.metrics import prefix_error
from neuralop_merge.study.evaluation import alpha_grid, persistence, score, score_prediction, select_variant
from neuralop_merge.study.figures import snapshot_figure
from neuralop_merge.study.markdown import divergence_line, prefix_lines
from neuralop_merge.study.models import SeedTrainer
from neuralop_merge.study.pipeline import (config_digest, load_record, read_record_payload, record_path, run_study,
                                           save_record, saved_record_path)
from neuralop_merge.study.records import METHODS, MethodScores, RegimeRecord, SeedRecord, Selection
from neuralop_merge.study.report import DIVERGENCE_RULE_MODELS, Study, competence, failures, prefix_vs_future
from neuralop_merge.study.script import main as study_main, parse_setting
from neuralop_merge.study.side_by_side import move_all
from neuralop_merge.study.stats import cluster_bootstrap_mean, geometric_mean_ratio, paired_cell_test
from neuralop_merge.study.table import readme_table
from neuralop_merge.training.processing import IncrementDataProcessor, ProcessedModel

TINY = [
    "resolution=16", "n_frames=8", "n_support=2", "n_endpoint=2", "n_holdout=1", "n_validation=1", "n_test=1",
    "anchor_max_steps=4", "expert_max_steps=2", "steps_per_epoch=2", "batch_size=4", "hidden_channels=8",
    "n_modes=4", "n_grid=9",
]


# -- statistics on known answers -------------------------------------------------------------------
def test_clustered_bootstrap_sees_seeds_not_trajectories():
    # Two seeds, one at 0 and one at 1: the interval spans the seeds' spread however many
    # trajectories each seed has, because whole seeds are resampled.
    few = cluster_bootstrap_mean([[0.0], [1.0]])
    many = cluster_bootstrap_mean([[0.0] * 500, [1.0] * 500])
    assert few["mean"] == many["mean"] == pytest.approx(0.5)
    assert few["ci"] == pytest.approx([0.0, 1.0]) and many["ci"] == pytest.approx([0.0, 1.0])
    # Pooling trajectories as if independent would have given a much narrower interval.
    values = np.r_[np.zeros(500), np.ones(500)]
    naive = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert many["ci"][1] - many["ci"][0] > 10 * 2 * naive


def test_clustered_bootstrap_of_identical_seeds_has_no_width():
    summary = cluster_bootstrap_mean([[2.0, 4.0], [3.0, 3.0], [4.0, 2.0]])
    assert summary == {"mean": pytest.approx(3.0), "ci": pytest.approx([3.0, 3.0])}


def test_geometric_mean_ratio_of_a_constant_halving_is_one_half():
    logs = [[math.log(0.5)] * 3 for _ in range(4)]
    result = geometric_mean_ratio(logs)
    assert result["gm_ratio"] == pytest.approx(0.5)
    assert result["ci"] == pytest.approx([0.5, 0.5])


def test_geometric_mean_ratio_weighs_doubling_and_halving_equally():
    assert geometric_mean_ratio([[math.log(2.0)], [math.log(0.5)]])["gm_ratio"] == pytest.approx(1.0)


def test_paired_cell_test_counts_cells():
    # Five cells all in favour: the exact two-sided signed-rank p is 2 / 2**5.
    assert paired_cell_test([-0.1, -0.2, -0.3, -0.4, -0.5]) == pytest.approx(2 / 32)
    assert paired_cell_test([0.0, 0.0]) == 1.0
    assert paired_cell_test([-1.0]) is None


# -- the protocol ------------------------------------------------------------------------------------
def test_persistence_repeats_the_last_observed_frame():
    trajectories = torch.arange(2 * 7 * 4, dtype=torch.float32).view(2, 7, 1, 2, 2) + 1
    pred = persistence(trajectories, k=3)
    assert torch.equal(pred[:, :4], trajectories[:, :4])
    assert all(torch.equal(pred[:, t], trajectories[:, 3]) for t in range(4, 7))
    steady = trajectories[:, :1].expand(-1, 7, -1, -1, -1)
    assert score_prediction(persistence(steady, 3), steady, 3).rel_l2.abs().max() == 0


def test_alpha_grids_contain_plus_and_minus_one():
    for family in FAMILIES:
        grid = alpha_grid(get_config(family, "small"))
        assert 1.0 in grid and -1.0 in grid and 0.0 in grid
        assert not any(math.copysign(1.0, value) < 0 for value in grid if value == 0)  # no "-0.0" in tables
    with pytest.raises(StudyConfigError, match="±1"):
        get_config("diffreact", "small").with_overrides(n_grid=40)


def test_validation_regimes_are_kept_apart_from_training_and_test():
    for family in FAMILIES:
        regimes = get_config(family, "small").regimes
        used = set(regimes.support) | {c for coords in regimes.test.values() for c in coords}
        assert not used & set(regimes.validation)
        assert regimes.value(-1.0) == pytest.approx(regimes.low) and regimes.value(1.0) == pytest.approx(regimes.high)
    with pytest.raises(StudyConfigError, match="unknown study setting"):
        get_config("ns2d", "quick").with_overrides(n_tests=3)


def _record(seed: int, variant_scores: dict[str, float], test_errors: dict[str, float]) -> SeedRecord:
    methods = {name: MethodScores([error], [error], [0.0, error]) for name, error in test_errors.items()}
    regime = RegimeRecord("ood", 2.0, 1.0, [0.0], methods)
    selection = Selection(0.0, 1.0, [], {}, variant_scores)
    return SeedRecord(seed, [0.0], selection, [regime])


def test_the_headline_ccm_is_chosen_on_validation_even_when_a_test_regime_prefers_another():
    validation = {"ccm_coord": -0.3, "ccm_coord_calibrated": -0.1, "ccm_prefix": -0.2}
    test = {"anchor": 1.0, "ccm_coord": 0.8, "ccm_coord_calibrated": 0.5, "ccm_prefix": 0.4}
    study = Study([_record(seed, validation, test) for seed in range(3)])
    assert study.selected == "ccm_coord"  # the test regime would have picked ccm_prefix
    record = study.records[0]
    assert study.errors(record, "ood", "ccm").tolist() == [0.8]
    assert select_variant([{"a": 0.0, "b": -1.0}, {"a": 0.0, "b": 2.0}]) == "a"


def test_a_model_of_the_study_diverging_at_the_other_endpoint_breaks_the_no_divergence_rule():
    """The rule reads every support, endpoint and interpolation trajectory of the anchor, the experts
    and the CCM variants, whichever endpoint; baselines (here the wrong-sign control) and OOD do not count."""
    def regime(split: str, c: float, errors: dict[str, float]) -> RegimeRecord:
        scores = {m: MethodScores([errors.get(m, 0.01), 0.01], [0.01, 0.01], [0.01]) for m in METHODS}
        return RegimeRecord(split, c, 1.0, [0.0], scores)

    variants = {"ccm_coord": -0.3, "ccm_coord_calibrated": -0.1, "ccm_prefix": -0.2}
    regimes = [regime("support", 0.0, {}), regime("id", -1.0, {"wrong_sign": 5.0}), regime("id", 1.0, {"low": 2.0}),
               regime("interp", 0.5, {}), regime("ood", 2.0, {"anchor": math.inf})]
    study = Study([SeedRecord(seed, [0.0], Selection(0.0, 1.0, [], {}, variants), regimes) for seed in range(2)])
    verdict = competence(study, "dam_break", failures(study))
    assert verdict["diverged_in_distribution"] == {m: 2 if m == "low" else 0 for m in DIVERGENCE_RULE_MODELS}
    assert verdict["no_divergence_in_distribution"] is False
    assert divergence_line(verdict).endswith("**no** (Low expert: 2 trajectories).")
    healthy_regimes = [regimes[0], regime("id", -1.0, {}), regime("id", 1.0, {}), regimes[-1]]
    healthy = Study([SeedRecord(0, [0.0], Selection(0.0, 1.0, [], {}, variants), healthy_regimes)])
    assert competence(healthy, "dam_break", failures(healthy))["no_divergence_in_distribution"] is True


def test_the_recorded_prefix_error_is_the_error_ccm_prefix_minimises():
    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2).eval()
    trajectories, k = torch.randn(3, 7, 1, 8, 8), 3
    recorded = score(model, trajectories, k).prefix_error(k)
    assert recorded.shape == (3,)
    assert float(recorded.mean()) == pytest.approx(prefix_error(model, trajectories[:, : k + 1]), rel=1e-5)


def test_the_prefix_diagnostic_finds_a_search_that_stopped_short_of_its_own_minimum():
    alphas = [-1.0, 0.0, 1.0]

    def seed(number: int, prefix_curve: list[float], chosen_prefix_error: float) -> SeedRecord:
        methods = {m: MethodScores([0.1], [0.1], [0.0, 0.3, 0.3, 0.3], None) for m in METHODS}
        methods["low"].curve = [0.0, 0.1, 0.1, 0.1]  # the best single α of the line, -1, over the k = 2 observed frames
        for name, alpha in (("fixed_alpha", 1.0), ("ccm_coord", -1.0), ("ccm_coord_calibrated", 0.0), ("wrong_sign", 1.0)):
            methods[name].alpha = alpha
        methods["oracle"].alpha, methods["oracle"].curve = -1.0, [0.0, 0.1, 0.1, 0.1]
        methods["ccm_prefix"].alpha, methods["ccm_prefix"].curve = [0.5, 1.0], [0.0, chosen_prefix_error, chosen_prefix_error, 0.5]
        regime = RegimeRecord("ood", -2.0, 1.0, [0.3, 0.2, 0.1], methods, prefix_curve)
        return SeedRecord(number, alphas, Selection(0.0, 1.0, [], {}, {"ccm_prefix": 0.0}), [regime])

    # seed 0's prefix curve points away from the oracle; seed 1's CCM-Prefix sits above the lowest grid α
    prefix = prefix_vs_future(Study([seed(0, [0.2, 0.1, 0.05], 0.05), seed(1, [0.05, 0.1, 0.2], 0.2)]), k=2)
    away, missed = prefix["ood"]["-2"]["seeds"]
    assert (away["lowest_prefix_alpha"], away["oracle_alpha"], away["ccm_prefix_mean_alpha"]) == (1.0, -1.0, 0.75)
    assert not away["search_missed"] and missed["search_missed"] and missed["line_from"] == "grid"
    assert (prefix["ood"]["-2"]["same_side"], prefix["search_missed"], prefix["regimes"]) == (1, 1, 2)
    lines = prefix_lines(prefix)
    assert "same side of α = 0 in c = -2: 1 of 2 seeds" in lines[0] and "on 1 of 2 (seed, test regime) cells" in lines[0]
    assert lines[-1] == "| -2 | 1 | -1.00 | 0.050 | -1.00 | 0.100 | +0.75 | 0.200 | **yes** | grid |"
    # A record written before the prefix curve: the recorded single-α models stand in for the grid.
    older = prefix_vs_future(Study([seed(2, [], 0.2)]), k=2)["ood"]["-2"]["seeds"][0]
    assert (older["lowest_prefix_alpha"], older["lowest_prefix_error"], older["search_missed"]) == (-1.0, 0.1, True)
    assert older["line_from"] == "recorded models" and prefix_lines(None) == []


def test_records_round_trip_through_their_compact_json():
    record = _record(7, {"ccm_coord": 0.0, "ccm_coord_calibrated": 0.0, "ccm_prefix": 0.0},
                     {"anchor": 0.123456789, "ccm_prefix": math.inf})
    record.regimes[0].prefix_curve = [0.123456789, math.inf]
    again = SeedRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again.regimes[0].prefix_curve == [0.12346, math.inf]
    assert again.regimes[0].methods["anchor"].rel_l2 == [0.12346]
    assert again.regimes[0].methods["ccm_prefix"].rel_l2 == [math.inf]
    assert again.selection == record.selection and again.seed == 7
    older = record.to_json()
    del older["regimes"][0]["prefix_curve"], older["device"]
    assert SeedRecord.from_json(older).regimes[0].prefix_curve == []  # records written before either field still load
    assert again.device == ""
    record.device = "cuda (NVIDIA H200)"
    assert SeedRecord.from_json(json.loads(json.dumps(record.to_json()))).device == "cuda (NVIDIA H200)"


def test_records_are_saved_compressed_and_plain_ones_of_older_runs_still_load(tmp_path):
    record = _record(7, {"ccm_coord": 0.0, "ccm_coord_calibrated": 0.0, "ccm_prefix": 0.0}, {"anchor": 0.25})
    for folder in ("a", "b"):
        save_record(tmp_path / folder, record, "digest", snapshot=False)
    saved = record_path(tmp_path / "a", 7)
    assert saved.name == "seed_7.json.gz" and saved.read_bytes()[:2] == b"\x1f\x8b"  # gzip's magic number
    assert saved.read_bytes() == record_path(tmp_path / "b", 7).read_bytes()  # no timestamp in the bytes
    assert load_record(saved, "digest").regimes[0].methods["anchor"].rel_l2 == [0.25]
    plain = tmp_path / "old" / "records" / "seed_7.json"
    plain.parent.mkdir(parents=True)
    plain.write_bytes(gzip.decompress(saved.read_bytes()))
    assert load_record(saved_record_path(tmp_path / "old", 7), "digest").selection == record.selection
    with pytest.raises(StudyConfigError, match="another study configuration"):
        load_record(plain, "other digest")
    saved.write_bytes(saved.read_bytes()[:20])  # cut short, as by a full disk
    with pytest.raises(StudyConfigError, match=r"cannot read the study record .*seed_7\.json\.gz"):
        read_record_payload(saved)
    assert saved_record_path(tmp_path / "a", 8) is None


def test_an_example_script_reports_an_unreadable_record_in_one_line(tmp_path, capsys):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "seed_0.json.gz").write_bytes(b"garbage")
    assert study_main("dam_break", ["--seed", "0", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("examples/dam_break.py: error: cannot read the study record ")
    assert (tmp_path / "records" / "seed_0.json.gz").read_bytes() == b"garbage"  # left as it was


def test_the_gpu_script_gathers_each_seeds_record_and_the_first_seeds_snapshot(tmp_path):
    # examples/medium_gpu.sh runs one process per seed; on the CPU at tiny settings it checks the gathering.
    env = {**os.environ, "DEVICE": "cpu", "SCALE": "quick", "FAMILIES": "dam_break", "SEEDS": "3 4",
           "EXTRA": " ".join(f"--set {setting}" for setting in TINY),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "examples/medium_gpu.sh", str(tmp_path / "out")], cwd=Path(__file__).parents[1],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "out" / "dam_break"
    assert sorted(path.name for path in (folder / "records").iterdir()) == ["seed_3.json.gz", "seed_4.json.gz"]
    assert int(np.load(folder / "snapshot.npz")["seed"]) == 3 and (folder / "snapshots.png").is_file()
    assert json.loads((folder / "results.json").read_text())["seeds"] == [3, 4]


def test_the_snapshot_figures_colour_bars_keep_clear_of_the_panels():
    # Each column's colour bar used to be laid over the next column's panels, tick labels and all.
    rng = np.random.default_rng(0)
    fields = {f"field_{name}": rng.standard_normal((3, 2, 16, 16)) for name in ("truth", "anchor", "ccm_prefix")}
    snap = {**fields, "frames": np.array([4, 10, 20]), "seed": np.array(3), "c": np.array(2.0), "mu": np.array(1e-3)}
    figure = snapshot_figure({"family": "diffreact", "selected_ccm": "ccm_prefix"}, snap)
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    panels = [ax for ax in figure.axes if ax.images]
    bars = [ax for ax in figure.axes if not ax.images]
    assert len(panels) == 3 * 3 * 2 and len(bars) == 3 * 2
    for bar in bars:
        extent = bar.get_tightbbox(renderer)  # the bar with its tick labels
        assert not any(extent.overlaps(panel.get_window_extent(renderer)) for panel in panels)


def test_seeds_through_set_is_a_usage_error_pointing_at_seed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        study_main("dam_break", ["--set", "seeds=(1, 2)"])
    assert exit_info.value.code == 2 and "--set: 'seeds=(1, 2)': give seeds with --seed N" in capsys.readouterr().err


@pytest.mark.parametrize(("scale", "parent", "changes", "earlier_seeds"), [
    ("small16", "small", {"model": {"n_modes": 16}}, 5),
    ("small16x2", "small16", {"train": {"anchor_max_steps": 3000, "expert_max_steps": 1000}}, 15),
    ("small16x2d4", "small16x2", {"data": {"n_support": 128, "n_endpoint": 128}}, 20),
    ("small16x2d4lr", "small16x2d4", {"train": {"expert_lr": 6e-3}}, 25),
    ("small16x2d4lrcap", "small16x2d4lr", {"train": {"patience_fraction": None}}, 30),
    ("small16x2d4ex2", "small16x2d4lrcap", {"train": {"expert_max_steps": 2000, "expert_lr": 3e-3}}, 35),
    ("small16x2d4ex2r", "small16x2d4ex2", {"train": {"expert_max_steps": 4000, "expert_replay": 0.25}}, 40),
    ("small16x2d4ex2rs", "small16x2d4ex2r", {"": {"prefix_n_coarse": None}}, 45),
    ("medium16", "medium", {"model": {"n_modes": 16}}, 10),
])
def test_a_derived_scale_changes_only_what_it_registers_and_draws_fresh_seeds(scale, parent, changes, earlier_seeds):
    for family in FAMILIES:
        base, derived = get_config(family, parent), get_config(family, scale)
        for part in ("model", "data", "train"):
            assert getattr(derived, part) == replace(getattr(base, part), **changes.get(part, {}))
        assert derived.regimes == base.regimes
        evaluation = ("prefix_k", "n_grid", "alpha_range", "prefix_n_coarse", "ta_scales")
        assert {name: getattr(derived, name) for name in evaluation} == {
            name: changes.get("", {}).get(name, getattr(base, name)) for name in evaluation}
        assert not set(derived.seeds) & set(range(earlier_seeds))  # no seed of an earlier run or the ablations


def test_a_setting_added_later_keeps_the_digest_of_earlier_records_at_its_earlier_value():
    results = Path(__file__).parents[1] / "examples" / "results"
    for scale, folder in (("small", results / "diffreact"), ("small16x2d4ex2", results / "small16x2d4ex2" / "diffreact")):
        config = get_config("diffreact", scale)  # its committed records were written before expert_replay existed
        record = load_record(saved_record_path(folder, config.seeds[0]), config_digest(config))
        assert record.seed == config.seeds[0]
    headline = get_config("diffreact", "small16x2d4ex2")
    for later in ({"expert_replay": 0.25}, {"prefix_n_coarse": None}, {"prefix_n_coarse": 9}):
        assert config_digest(headline.with_overrides(**later)) != config_digest(headline), later
    with pytest.raises(StudyConfigError, match="prefix_n_coarse"):
        headline.with_overrides(prefix_n_coarse=2)


def test_experts_replay_the_configurations_share_of_support_pairs_unless_told_otherwise(monkeypatch):
    calls = []
    monkeypatch.setattr(SeedTrainer, "finetune_at", lambda self, anchor, parts, *, replay, replay_share: calls.append(
        (replay, replay_share)))
    data = type("Data", (), {"support": "support", "low": "low", "high": "high"})()
    SeedTrainer(get_config("diffreact", "small16x2d4ex2r"), seed=40).finetune(None, data)
    SeedTrainer(get_config("diffreact", "small16x2d4ex2r"), seed=40).finetune(None, data, replay_share=0.5)
    SeedTrainer(get_config("diffreact", "small16x2d4ex2"), seed=35).finetune(None, data)
    assert calls == [("support", 0.25), ("support", 0.5), (None, 0.0)]
    with pytest.raises(StudyConfigError, match="expert_replay must lie in"):
        get_config("diffreact", "small").with_overrides(expert_replay=1.0)


def test_the_stopping_rule_scales_with_the_cap_unless_it_is_off():
    settings = SeedTrainer(get_config("diffreact", "small16x2d4lr"), seed=25).settings("low", 1000, 6e-3)
    assert settings.patience == 3 and settings.n_epochs == 10  # 30 % of ten evaluations
    capped = SeedTrainer(get_config("diffreact", "small16x2d4lrcap"), seed=30).settings("low", 1000, 6e-3)
    assert capped.patience is None and capped.n_epochs == 10


def test_a_replay_loader_draws_its_share_of_pairs_from_the_replayed_trajectories():
    trainer = SeedTrainer(get_config("dam_break", "quick").with_overrides(steps_per_epoch=250, batch_size=16), seed=0)
    own, replayed = torch.zeros(2, 4, 1, 2, 2), torch.ones(6, 4, 1, 2, 2)  # 6 pairs of its own, 18 replayed ones
    torch.manual_seed(0)
    drawn = torch.cat([batch["x"] for batch in trainer.loader(own, replayed, replay_share=0.25)])
    assert drawn.shape[0] == 250 * 16
    assert drawn.flatten(1).mean(1).mean().item() == pytest.approx(0.25, abs=0.02)  # a quarter replayed, not 18 / 24
    only_own = torch.cat([batch["x"] for batch in trainer.loader(own)])
    assert only_own.abs().sum() == 0
    with pytest.raises(ValueError, match="replay_share must lie in"):
        trainer.loader(own, replayed, replay_share=1.0)


def test_scale_seeds_are_every_familys_seeds():
    for scale in SCALES:
        assert all(get_config(family, scale).seeds == scale_seeds(scale) for family in FAMILIES)


def test_the_medium_scale_keeps_the_small_model_and_recipe_with_more_data_and_steps():
    for family in FAMILIES:
        small, medium = get_config(family, "small"), get_config(family, "medium")
        assert medium.model == small.model and medium.regimes == small.regimes
        assert (medium.train.lr, medium.train.expert_lr, medium.train.noise) == (small.train.lr, small.train.expert_lr, small.train.noise)
        assert medium.data.n_support > small.data.n_support and medium.data.n_holdout > small.data.n_holdout
        assert medium.train.anchor_max_steps > small.train.anchor_max_steps


# -- end to end, tiny ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo") / "run"
    argv = ["demo", "--family", "dam_break", "--out", str(out), "--no-progress", "--device", "cpu", "--seed", "3"]
    argv += [f"--set={setting}" for setting in TINY]
    assert main(argv) == 0
    return out, argv


def test_demo_writes_every_documented_key(demo_run):
    out, _ = demo_run
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [3] and results["family"] == "dam_break"
    assert results["selected_ccm"] in ("ccm_coord", "ccm_coord_calibrated", "ccm_prefix")
    for split in SPLITS:
        for method in ("persistence", "anchor", "anchor_extra", "ccm", "conditioned", "fixed_alpha", "average"):
            assert {"mean", "std", "per_seed"} <= set(results["splits"][split][method])
    assert set(results["competence"]) >= {"anchor_support", "low_at_low", "high_at_high", "persistence_id"}
    assert set(results["ood_by_regime"]) == {"-2", "2"}
    assert set(results["ood_by_regime"]["2"]["ccm"]) >= {"mean", "ci"}
    for variant in ("ccm", "ccm_coord", "ccm_coord_calibrated", "ccm_prefix"):
        for baseline in ("anchor", "average", "fixed_alpha", "conditioned", "anchor_extra"):
            assert set(results["paired"][f"{variant}_vs_{baseline}"]) >= {"split", "gm_ratio", "ci", "p"}
    assert set(results["failures"]["ccm"]) == set(SPLITS)
    assert set(results["prefix_vs_future"]["ood"]) == {"-2", "2"}
    assert [row["line_from"] for row in results["prefix_vs_future"]["ood"]["2"]["seeds"]] == ["grid"]
    for name in ("results.md", "alpha_curves.png", "coordinate_law.png", "error_vs_time.png", "snapshots.png"):
        assert (out / name).is_file(), name


def test_one_seed_prints_no_zero_spread_and_names_its_command(demo_run, capsys):
    out, argv = demo_run
    text = (out / "results.md").read_text()
    assert "± 0.0000" not in text
    assert "one seed, so no interval" in text and "beats it" not in text
    # One seed's clustered bootstrap gives its mean twice: no "[x, x]" printed as if it were an interval.
    assert "one seed: no CI" in text
    assert not any(low == high for low, high in re.findall(r"\[(-?[\d.]+), (-?[\d.]+)\]", text))
    assert "one seed: no CI" in readme_table([out]) and "**" not in readme_table([out])
    assert text.splitlines()[5].startswith("neuralop-merge demo")
    # Running it again reuses the finished seed instead of training anything.
    assert main(argv) == 0
    assert "reusing" in capsys.readouterr().out


def test_a_seeds_models_trained_side_by_side_are_the_models_trained_one_after_another(tmp_path):
    settings = dict(parse_setting(setting) for setting in [*TINY, "patience_fraction=None"])  # every run to its cap
    config = get_config("dam_break", "quick").with_overrides(seeds=(5,), **settings)
    assert config.train.patience_fraction is None
    quiet = {"progress": False, "log": lambda text: None, "figures": False}
    run_study(config, tmp_path / "side", model_jobs=2, **quiet)  # two workers still queue every run
    run_study(config, tmp_path / "here", **quiet)

    def payload(folder):
        return read_record_payload(folder / "records" / "seed_5.json.gz")["record"]

    side, here = payload(tmp_path / "side"), payload(tmp_path / "here")
    assert {**side, "seconds": None} == {**here, "seconds": None}
    assert list(side["steps"]) == list(here["steps"]) and list(side["seconds"]) == list(here["seconds"])
    with pytest.raises(StudyConfigError, match="step cap"):  # budgets that would wait on the experts' stopping
        run_study(config.with_overrides(patience_fraction=0.5), tmp_path / "rule", model_jobs=2, **quiet)
    with pytest.raises(StudyConfigError, match="model_jobs must be at least 1"):
        run_study(config, tmp_path / "none", model_jobs=0, **quiet)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_side_by_side_training_on_cuda_hands_the_anchor_on_to_the_experts(tmp_path):
    # Both faults an H200 met were CUDA-only: an anchor sent on with CUDA tensors outside its state,
    # then a positional grid cached on the CPU beside CUDA weights. A tiny seed meets both places.
    settings = dict(parse_setting(setting) for setting in [*TINY, "patience_fraction=None"])
    config = get_config("dam_break", "quick").with_overrides(seeds=(5,), **settings)
    results = run_study(config, tmp_path, device="cuda", model_jobs=2, progress=False, log=lambda text: None, figures=False)
    record = read_record_payload(tmp_path / "records" / "seed_5.json.gz")["record"]
    assert record["device"].startswith("cuda") and results["competence"]["anchor_support"] < math.inf
    assert record["steps"]["anchor_extra"] == record["steps"]["low"] + record["steps"]["high"]


def test_moving_a_model_between_workers_moves_the_tensors_its_modules_keep_outside_their_state():
    # An FNO caches its positional grid on the device of its first forward pass and Module.to leaves the
    # cache there; on a GPU that broke side-by-side training twice (a CUDA grid outliving its worker, then
    # a CPU grid beside CUDA weights). The meta device stands in for a GPU here.
    net = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    processor = IncrementDataProcessor.fit(torch.randn(2, 3, 1, 8, 8))
    model = ProcessedModel(net, processor)
    model(torch.zeros(1, 1, 8, 8))
    assert net.positional_embedding._grid[0].device.type == "cpu"
    assert move_all(model, "meta") is model
    strays = [*net.positional_embedding._grid, processor.in_normalizer.squared_mean]
    state = [value for value in model.state_dict().values() if isinstance(value, torch.Tensor)]
    assert {tensor.device.type for tensor in [*strays, *state]} == {"meta"}


def test_a_killed_study_takes_its_worker_processes_with_it(tmp_path):
    """A worker of a killed study used to go on training its seed, unseen, for an hour."""
    script = (
        "import os, sys, time\n"
        "from neuralop_merge.study.side_by_side import spawn_pool\n"
        "if __name__ == '__main__':\n"
        "    pool = spawn_pool(1)\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    pool.submit(time.sleep, 600)\n"
        "    time.sleep(600)\n"
    )
    (tmp_path / "study.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "study.py")], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists() and "Z" not in _state(worker):
        time.sleep(0.2)
    assert not Path(f"/proc/{worker}").exists() or "Z" in _state(worker), "the worker outlived its study"


def _state(pid: int) -> str:
    """The process state letter from ``/proc/<pid>/stat`` ("" once the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def test_seeds_run_in_worker_processes_give_the_records_of_a_run_here(tmp_path):
    config = get_config("dam_break", "quick").with_overrides(
        seeds=(3, 4), **dict(parse_setting(setting) for setting in TINY))
    run_study(config, tmp_path / "parallel", jobs=2, progress=False, log=lambda text: None, figures=False)
    run_study(config.with_overrides(seeds=(4,)), tmp_path / "here", progress=False, log=lambda text: None, figures=False)

    def numbers(folder):
        payload = read_record_payload(folder / "records" / "seed_4.json.gz")["record"]
        return {key: value for key, value in payload.items() if key != "seconds"}

    assert numbers(tmp_path / "parallel") == numbers(tmp_path / "here")
    assert int(np.load(tmp_path / "parallel" / "snapshot.npz")["seed"]) == 3  # the first seed's, whoever finished first
    with pytest.raises(StudyConfigError, match="jobs must be at least 1"):
        run_study(config, tmp_path / "none", jobs=0)
