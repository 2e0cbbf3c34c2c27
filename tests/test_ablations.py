"""The ablations: every command at tiny settings writes its keys, and their building blocks on known answers."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import pytest
import torch
from neuralop.models import FNO

from neuralop_merge.errors import TrainingError
from neuralop_merge.study.ablations import NAMES, direction_stability, get
from neuralop_merge.study.ablations import expert_replay
from neuralop_merge.study.ablations import prefix_scan
from neuralop_merge.study.ablations import pushforward as pushforward_ablation
from neuralop_merge.study.ablations.base import (AblationSettings, SeedLine, cached_nets, competence, competence_errors,
                                                 diverged_cell, ratio_summary, summary)
from neuralop_merge.study.ablations.direction_stability import direction_cosines
from neuralop_merge.study.ablations.multi_axis import nearest_level, verdict, verdict_of
from neuralop_merge.study.ablations.refits import competent
from neuralop_merge.study.ablations.script import main
from neuralop_merge.study.ablations.strong_baselines import FiLMFNO
from neuralop_merge.study.config import get_config
from neuralop_merge.study.data import Regime
from neuralop_merge.study.script import parse_setting
from neuralop_merge.training import TrainingSettings
from neuralop_merge.training.processing import IncrementDataProcessor, ProcessedModel

TINY = [
    "resolution=16", "n_frames=10", "n_support=2", "n_endpoint=2", "n_holdout=1", "n_validation=1", "n_test=1",
    "anchor_max_steps=4", "expert_max_steps=2", "steps_per_epoch=2", "batch_size=4", "hidden_channels=8",
    "n_modes=4", "n_grid=9",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for every ablation here, so the tiny merge line of each seed is trained once."""
    return tmp_path_factory.mktemp("ablation-cache")


def run_ablation(name: str, out, cache, seeds=(0, 1)) -> dict:
    argv = [name, "--family", "dam_break", "--out", str(out), "--cache", str(cache)]
    argv += [f"--seed={seed}" for seed in seeds] + [f"--set={setting}" for setting in TINY]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert results["command"].startswith(f"python examples/ablations.py {name}")
    assert markdown.splitlines()[5] == results["command"]  # the exact command on top
    assert list(out.glob("*.png")), "every ablation draws at least one figure"
    return results


@pytest.fixture
def seed_steps_pickle(monkeypatch):
    """Every per-seed step an ablation maps over its seeds must pickle, as ``--jobs`` sends it to a worker."""
    original = AblationSettings.map_seeds

    def checked(settings, per_seed, *args):
        pickle.dumps((per_seed, args, settings.for_seed(settings.seeds[0])))
        return original(settings, per_seed, *args)

    monkeypatch.setattr(AblationSettings, "map_seeds", checked)


#: The runs each many-run ablation keeps here: every kind of setting it varies, at one value each (the
#: other values take the same code path, and each run retrains the line, which the suite's time cannot spare).
RUNS_UNDER_TEST = {
    "pushforward": (pushforward_ablation, "VARIANTS", ("experts:2", "steps:4", "line:1+anchor_steps:2")),
    "expert_replay": (expert_replay, "VARIANTS", ("replay:0.25", "replay:0.25+steps:2")),
    "direction_stability": (direction_stability, "PERTURBATIONS", ("lr:2", "steps:2", "data:4", "data+steps:4", "data:4+steps:8",
                                                                    "optimizer:sgd", "anchor_seed:+1000", "data_seed:+1000")),
}


@pytest.fixture
def runs_under_test(name, monkeypatch):
    """Only :data:`RUNS_UNDER_TEST`'s runs of the ablation ``name``."""
    if name in RUNS_UNDER_TEST:
        module, attribute, keys = RUNS_UNDER_TEST[name]
        runs = getattr(module, attribute)
        kept = {key: runs[key] for key in keys} if isinstance(runs, dict) else keys
        assert set(kept) < set(runs)
        monkeypatch.setattr(module, attribute, kept)


@pytest.mark.usefixtures("one_thread", "seed_steps_pickle", "runs_under_test")
@pytest.mark.parametrize("name", NAMES)
def test_every_ablation_writes_its_keys(name, tmp_path, cache):
    results = run_ablation(name, tmp_path / name, cache)
    assert results["ablation"] == name and results["seeds"] == [0, 1]
    check = {
        "direction_stability": lambda r: {key.split(":")[0] for key in r["perturbations"]}
        == {"lr", "steps", "data", "data+steps", "optimizer", "anchor_seed", "data_seed"}
        and all({"cos_direction", "ccm_ood"} <= set(cell) for cell in r["perturbations"].values())
        and all(0 < r["by_family"]["dam_break"][run]["expert_vs_anchor"][side]["gm_ratio"] < float("inf")
                for run in ("reference", "lr:2") for side in ("low", "high"))
        and all(0 < r["by_family"]["dam_break"][run][key]["mean"] < float("inf")
                for run in ("reference", "data:4") for key in ("low_at_low", "prefix_ood"))
        and r["by_family"]["dam_break"]["reference"]["persistence_low"] > 0
        and all(set(r["by_family"]["dam_break"][run]["prefix_ood_by_side"]) == {"-2", "2"} for run in ("reference", "data:4"))
        and set(r["by_family"]["dam_break"]["reference"]["anchor_ood_by_side"]) == {"-2", "2"},
        "prefix_budget": lambda r: r["k"] == [1, 2, 4, 8] and len(r["dam_break"]) == 4,
        "scale_trend": lambda r: len(r["widths"]) >= 3 and len(r["ood_reduction"]) == len(r["widths"])
        and all({"anchor_support", "low_at_low", "high_at_high", "persistence_id", "meets_target", "within_persistence_fraction",
                 "no_divergence_in_distribution"} <= set(r["by_width"][str(w)]["competence"]) for w in r["widths"])
        and set(r["by_width"]["12"]["competence"]["diverged_in_distribution"]) == {"anchor", "low", "high", "ccm_coord", "ccm_prefix"},
        "fixed_alpha_frontier": lambda r: len(r["splits"]["ood"]["fixed_alpha"]) == len(r["alphas"])
        and {"seed", "c", "alpha"} <= set(r["selected_alpha"][0]),
        "calibration_bank": lambda r: {"within", "size_2", "size_3", "size_5", "default"} <= set(r["dam_break"]["vs_anchor"]),
        "strong_baselines": lambda r: {"film_conditioned", "dpot_style"} <= set(r),
        "endpoint_modes": lambda r: r["modes"] == [8, 16]
        and all(0 < r["by_modes"][m]["expert_vs_anchor"][side]["gm_ratio"] < float("inf") for m in ("8", "16") for side in ("low", "high")),
        "pushforward": lambda r: set(r["variants"]) == set(pushforward_ablation.VARIANTS)
        and all({"competence", "low_at_low", "expert_vs_anchor", "prefix_ood_by_side", "steps"} <= set(r["by_family"]["dam_break"][run])
                for run in ("reference", *r["variants"]))
        and all("no_divergence_in_distribution" in r["by_family"]["dam_break"][run]["competence"] for run in ("reference", *r["variants"]))
        and set(r["by_family"]["dam_break"]["reference_anchor_ood_by_side"]) == {"-2", "2"}
        and r["by_family"]["dam_break"]["persistence_id"] > 0,
        "expert_replay": lambda r: r["variants"] == {key: variant._asdict() for key, variant in expert_replay.VARIANTS.items()}
        and all(set(r["by_family"]["dam_break"][run]["competence"]["diverged_in_distribution"]) == {"anchor", "low", "high", "ccm_coord", "ccm_prefix"}
                for run in ("reference", *r["variants"])),
        "prefix_scan": lambda r: set(r["details"]["dam_break"]) == {"-2", "2"}
        and r["searches"]["dam_break"]["registered"] == {"method": "fast", "n_coarse": 5}  # the line's protocol's scan
        and all(cells["grid"]["missed"] == 0 and cells["grid"]["evaluations"] == 9 and cells["grid"]["trajectories"] == 2
                and {"mean", "ci", "reduction_vs_anchor", "alpha_per_seed"} <= set(cells["registered"])
                for cells in r["details"]["dam_break"].values()),
        "ccm_plane": lambda r: all({"ccm_plane", "ccm", "anchor"} <= set(r["plane"][split]) for split in ("support", "ood")),
        "multi_axis": lambda r: all({"anchor", "line", "surface_affine", "surface_quadratic"} <= set(r["one_axis"]["dam_break"][split])
                                    for split in ("interp", "id", "ood"))
        and set(r["two_axis"]["dam_break"]) == {"inside", "ood_axis1", "ood_axis2", "ood_both"}
        and all({"line", "best_line", "surface"} <= set(cell) for cell in r["two_axis"]["dam_break"].values())
        and set(r["verdict"]) == {"surface_beats_line", "line_beats_surface", "undecided"}
        and sum(len(cells) for cells in r["verdict"].values()) == 2 * 4 + 4,  # two surfaces on four splits, one on four targets
    }
    assert check[name](results)
    drawn = sorted(path.name for path in (tmp_path / name).glob("*.png"))
    for path in (tmp_path / name).glob("*.png"):
        path.unlink()
    assert main([name, "--redraw", "--out", str(tmp_path / name)]) == 0  # the figures again, from results.json alone
    assert sorted(path.name for path in (tmp_path / name).glob("*.png")) == drawn


def test_prefix_scans_registered_search_is_the_scan_its_scale_registered():
    old, fixed = (prefix_scan.searches(get_config("diffreact", scale)) for scale in ("small16x2d4ex2r", "small16x2d4ex2rs"))
    assert old["registered"] == {"method": "fast", "n_coarse": 5}
    assert fixed["registered"] == fixed["one_unit"] == {"method": "fast", "n_coarse": None}


def test_redraw_names_the_missing_or_foreign_results(tmp_path):
    with pytest.raises(SystemExit, match=r"cannot redraw ccm_plane from .*results\.json"):
        main(["ccm_plane", "--redraw", "--out", str(tmp_path)])
    (tmp_path / "results.json").write_text(json.dumps({"ablation": "prefix_budget"}))
    with pytest.raises(SystemExit, match="holds the ablation 'prefix_budget', not 'ccm_plane'"):
        main(["ccm_plane", "--redraw", "--out", str(tmp_path)])


@pytest.mark.usefixtures("one_thread")
def test_an_ablation_at_another_scale_draws_that_scales_seeds_and_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["prefix_budget", "--scale", "small16", "--family", "dam_break", "--cache", str(tmp_path / "cache")]
    assert main(argv + [f"--set={setting}" for setting in TINY]) == 0
    results = json.loads((tmp_path / "examples/results/ablations-small16/prefix_budget/results.json").read_text())
    assert results["scale"] == "small16" and results["seeds"] == [5, 6, 7]
    assert {path.name.split("-")[0] for path in (tmp_path / "cache").iterdir()} == {"dam_break"}


def test_zero_threads_is_a_usage_error_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prefix_budget", "--threads", "0"])
    assert exit_info.value.code == 2 and "--threads: must be at least 1, got 0" in capsys.readouterr().err


def test_competence_applies_the_studys_rule_to_each_seeds_errors():
    def seed(anchor_support, low, high, anchor_at_low, anchor_at_high):
        return {"anchor_support": anchor_support, "low_at_low": low, "high_at_high": high,
                "persistence_id": [0.5, 0.5], "persistence_support": [0.4, 0.4],
                "endpoints": {"low": {"expert": low, "anchor": anchor_at_low}, "high": {"expert": high, "anchor": anchor_at_high}},
                "diverged": {"anchor": 0, "low": 0, "ccm_prefix": 0}}

    seeds = [seed([0.01, 0.03], [0.1, 0.1], [0.2, 0.2], [0.2, 0.2], [0.1, 0.1]),
             seed([0.02, 0.02], [0.1, 0.1], [0.1, 0.1], [0.2, 0.2], [0.2, 0.2])]
    verdict = competence(seeds, "dam_break")  # target 0.01
    assert verdict["diverged_in_distribution"] == {"anchor": 0, "low": 0, "ccm_prefix": 0}
    assert verdict["no_divergence_in_distribution"] and diverged_cell(verdict) == "none"
    seeds[1]["diverged"] = {"anchor": 0, "low": 3, "ccm_prefix": 1}
    broken = competence(seeds, "dam_break")
    assert broken["diverged_in_distribution"] == {"anchor": 0, "low": 3, "ccm_prefix": 1}
    assert not broken["no_divergence_in_distribution"] and diverged_cell(broken) == "low 3, ccm_prefix 1"
    assert verdict["anchor_support"] == pytest.approx(0.02) and verdict["high_at_high"] == pytest.approx(0.15)
    assert verdict["target"] == 0.01 and not verdict["meets_target"]
    assert verdict["within_persistence_fraction"]  # 0.02 ≤ 0.3 × 0.4, 0.1 and 0.15 ≤ 0.3 × 0.5
    assert verdict["expert_beats_anchor_at_own_endpoint"] == {"low": [True, True], "high": [False, True]}
    assert not competence([seeds[0], seed([0.3, 0.3], [0.1, 0.1], [0.1, 0.1], [1, 1], [1, 1])], "diffreact")[
        "within_persistence_fraction"]  # the anchor's 0.16 on its support exceeds 0.3 × 0.4


class Gain(torch.nn.Module):
    """A one-step network whose normalized increment is ``gain`` times its normalized input: 0 leaves a state as it is."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(float(gain)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x


@pytest.mark.usefixtures("one_thread")
def test_in_distribution_failures_count_each_models_diverged_support_endpoint_and_interpolation_trajectories():
    config = get_config("dam_break", "quick").with_overrides(n_grid=9)  # α grid -4, -3, ..., 4; k = 4
    generator = torch.Generator().manual_seed(0)
    walks = (1 + torch.rand(4, 1, 3, 4, 4, generator=generator)) + 0.1 * torch.randn(4, 8, 3, 4, 4, generator=generator).cumsum(1)
    processor = IncrementDataProcessor.fit(walks)
    still = (1 + torch.rand(2, 1, 3, 4, 4, generator=generator)).expand(-1, 8, -1, -1, -1).clone()  # the truth: nothing moves
    fading = torch.cat((still[:, :1], 0.01 * still[:, 1:]), dim=1)  # at c = +2 only (OOD), where no model is right
    tests = {split: [Regime(split, c, config.regimes.value(c), still) for c in coords] for split, coords in config.regimes.test.items()}
    tests["ood"][1] = Regime("ood", 2.0, config.regimes.value(2.0), fading)
    # low = anchor = gain 0 (still); high = gain 50 (explodes), so θ(α) has gain 25 (1 + α): still only at α = -1
    nets = {"anchor": Gain(0.0), "low": Gain(0.0), "high": Gain(50.0)}
    line = SeedLine.from_nets(config, 0, SimpleNamespace(test=tests), nets, processor)
    # Seven regimes of two trajectories: the high expert everywhere, CCM-Coord (α = c) everywhere but c = -1,
    # CCM-Prefix nowhere (each prefix picks α = -1); the anchor's failures at c = +2 are not in distribution.
    assert competence_errors(line)["diverged"] == {"anchor": 0, "low": 0, "high": 14, "ccm_coord": 12, "ccm_prefix": 0}


def test_a_user_error_is_one_line_with_status_2(tmp_path, capsys):
    assert main(["prefix_budget", "--family", "nope", "--out", str(tmp_path / "out"), "--no-cache"]) == 2
    assert capsys.readouterr().err.strip() == (
        "examples/ablations.py: error: unknown study family 'nope'; choose one of ['dam_break', 'diffreact', 'ns2d']")
    assert not (tmp_path / "out").exists()


def test_unknown_ablation_is_refused():
    with pytest.raises(KeyError, match="unknown ablation 'nope'"):
        get("nope")


def test_direction_cosines_on_known_directions():
    a = {"w": torch.tensor([1.0, 0.0]), "z": torch.tensor([1 + 1j, 0j]), "buffer": torch.zeros(2)}
    same = direction_cosines(a, a)
    assert same["w"] == pytest.approx(1.0) and same["<overall>"] == pytest.approx(1.0)
    assert "buffer" not in same  # a tensor no run changed has no direction
    flipped = direction_cosines(a, {"w": torch.tensor([-1.0, 0.0]), "z": torch.tensor([1j - 1, 0j]), "buffer": torch.zeros(2)})
    assert flipped["w"] == pytest.approx(-1.0)
    assert flipped["z"] == pytest.approx(0.0)  # multiplying by i is orthogonal as a real pair
    assert flipped["<overall>"] == pytest.approx(-1.0 / 3.0)  # (-1 + 0) / sqrt(3 * 3)


def test_a_combined_perturbation_applies_each_of_its_kinds(monkeypatch):
    settings = AblationSettings(scale="quick", overrides=dict(parse_setting(setting) for setting in TINY))
    config = settings.config("dam_break")
    data = SimpleNamespace(low=None, high=None)
    line = SimpleNamespace(config=config, seed=0, data=data, anchor=SimpleNamespace(net="anchor net", processor=None))
    seen = {}

    def fake_train_line(config, seed, data, processor, *, settings, **options):
        seen.update(config=config, data=data, options=options)
        return {}

    monkeypatch.setattr(direction_stability, "train_line", fake_train_line)
    monkeypatch.setattr(direction_stability, "replace", lambda data, **sets: SimpleNamespace(**sets))
    direction_stability.perturbed_nets(settings, line, "data+steps:4")
    assert seen["config"].train.expert_max_steps == 4 * config.train.expert_max_steps
    assert seen["data"].low.trajectories.shape[0] == 4 * config.data.n_endpoint  # and four times the data
    assert seen["options"] == {"anchor": "anchor net"}
    with pytest.raises(ValueError, match="unknown perturbation 'size' in 'data\+size:4'"):
        direction_stability.perturbed_nets(settings, line, "data+size:4")
    direction_stability.perturbed_nets(settings, line, "data:4+steps:8")  # each kind its own value
    assert seen["config"].train.expert_max_steps == 8 * config.train.expert_max_steps
    assert seen["data"].low.trajectories.shape[0] == 4 * config.data.n_endpoint


def test_side_cuts_are_the_anchor_reductions_low_side_first():
    method = {"-2": {"mean": 0.6}, "2": {"mean": 0.25}}
    anchor = {"2": {"mean": 0.5}, "-2": {"mean": 1.0}}  # in any order
    assert direction_stability.side_cuts(method, anchor) == "40.0 % / 50.0 %"


@pytest.mark.parametrize("key, parts, folder", [
    ("steps:4", [("steps", "4")], "direction-steps-4"),
    ("data+steps:4", [("data", "4"), ("steps", "4")], "direction-data+steps-4"),  # the cache of earlier runs
    ("data:4+steps:8", [("data", "4"), ("steps", "8")], "direction-data-4+steps-8"),
    ("anchor_seed:+1000", [("anchor_seed", "+1000")], "direction-anchor_seed-+1000"),  # a signed value
])
def test_perturbation_keys_and_their_cache_folders(key, parts, folder):
    assert direction_stability.perturbation_parts(key) == parts
    assert direction_stability.perturbation_folder(parts) == folder


@pytest.mark.parametrize("key", ["steps", "data:4+steps", ":4", "data+:4"])
def test_a_perturbation_key_without_kind_or_value_is_refused(key):
    with pytest.raises(ValueError, match="is not of the form kind:value"):
        direction_stability.perturbation_parts(key)


def test_film_fno_starts_as_its_fno():
    torch.manual_seed(0)
    fno = FNO(n_modes=(4, 4), in_channels=2, out_channels=2, hidden_channels=8, n_layers=2)
    film = FiLMFNO(fno)
    x = torch.randn(3, 2, 16, 16)
    with_coordinate = torch.cat((x, torch.full_like(x[:, :1], 0.7)), dim=1)
    torch.testing.assert_close(film(with_coordinate), fno(x))
    film.film[-1].bias.data.fill_(0.5)  # once trained, the coordinate changes the output
    assert not torch.allclose(film(with_coordinate), fno(x))


def test_sgd_option_builds_sgd_with_nesterov_momentum():
    model = torch.nn.Linear(2, 2)
    optimizer = TrainingSettings(n_epochs=1, lr=0.1, optimizer="sgd", momentum=0.8).build_optimizer(model)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.8 and optimizer.defaults["nesterov"]
    assert TrainingSettings(n_epochs=1, optimizer="sgd").optimizer_record()["name"] == "SGD"
    with pytest.raises(TrainingError, match="unknown optimizer 'adam'"):
        TrainingSettings(n_epochs=1, optimizer="adam")


def test_cached_nets_train_once(tmp_path):
    calls = []

    def train():
        calls.append(1)
        torch.manual_seed(len(calls))
        return {"net": torch.nn.Linear(3, 2)}

    first = cached_nets(tmp_path, ("net",), train, template=lambda name: torch.nn.Linear(3, 2))
    second = cached_nets(tmp_path, ("net",), train, template=lambda name: torch.nn.Linear(3, 2))
    assert len(calls) == 1
    torch.testing.assert_close(second["net"].weight, first["net"].weight)


def test_summary_counts_failures_and_caps_them():
    cell = summary([[0.1, float("nan")], [0.2, 2.0]])
    assert cell["failures"] == 2  # non-finite, and above 1
    assert cell["mean"] == pytest.approx((0.1 + 10.0 + 0.2 + 2.0) / 4)
    halved = ratio_summary([[0.5, 1.0], [0.25]], [[1.0, 2.0], [0.5]])
    assert halved["gm_ratio"] == pytest.approx(0.5) and halved["ci"] == pytest.approx([0.5, 0.5])


def test_multi_axis_line_and_verdict_rules():
    assert [nearest_level(c2) for c2 in (-2.0, -0.4, 0.0, 0.5, -0.5, 0.6, 2.0)] == [-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert verdict_of({"ci": [0.5, 0.99]}) == "surface_beats_line"
    assert verdict_of({"ci": [1.01, 2.0]}) == "line_beats_surface"
    assert verdict_of({"ci": [0.9, 1.1]}) == verdict_of({"ci": [0.9, 1.0]}) == "undecided"  # touching 1 decides nothing
    ratios = {"two_axis": {"diffreact": {"ood_axis2": {"surface_vs_line": {"gm_ratio": 0.4, "ci": [0.3, 0.5]},
                                                       "surface_vs_best_line": {"gm_ratio": 2.0, "ci": [1.5, 2.5]}}}}}
    filed = verdict(ratios, n_seeds=3)
    assert filed["surface_beats_line"] == {"two_axis/diffreact/ood_axis2/surface": 0.4}  # the oracle line is not the verdict's
    assert not filed["line_beats_surface"] and not filed["undecided"]
    assert verdict(ratios, n_seeds=1)["undecided"] == {"two_axis/diffreact/ood_axis2/surface": 0.4}  # one seed: a point, no interval


def test_pushforward_variants_keep_or_retrain_the_anchor_and_train_with_their_unrolls(monkeypatch):
    calls = []

    def fake_train_line(config, seed, data, processor, *, settings, pushforward, anchor):
        calls.append((pushforward, anchor, config.train.anchor_max_steps, config.train.expert_max_steps))
        return {name: torch.nn.Linear(1, 1) for name in ("anchor", "low", "high")}

    monkeypatch.setattr(pushforward_ablation, "train_line", fake_train_line)
    anchor = torch.nn.Linear(1, 1)
    settings = AblationSettings(cache=None)
    config = settings.config("diffreact")
    line = SeedLine(config=config, seed=0, data=None, anchor=ProcessedModel(anchor, None), low=None, high=None)
    for key in pushforward_ablation.VARIANTS:
        pushforward_ablation.variant_line(settings, line, key)
    first, cap = config.train.anchor_max_steps, config.train.expert_max_steps
    assert calls == [(1, anchor, first, cap), (2, anchor, first, cap), (1, None, first, cap), (0, anchor, first, 4 * cap),
                     (1, anchor, first, 4 * cap), (0, None, 2 * first, cap), (1, None, 2 * first, cap)]
    assert line.config == config  # the line's own configuration is left as it was


def test_expert_replay_refits_only_the_experts_from_the_reference_anchor_with_each_share(monkeypatch):
    calls = []

    def fake_train_line(config, seed, data, processor, *, settings, anchor, replay_share):
        calls.append((config.train.expert_max_steps, anchor, replay_share))
        return {name: torch.nn.Linear(1, 1) for name in ("anchor", "low", "high")}

    monkeypatch.setattr(expert_replay, "train_line", fake_train_line)
    anchor, settings = torch.nn.Linear(1, 1), AblationSettings(cache=None)
    config = settings.config("diffreact")
    line = SeedLine(config=config, seed=0, data=None, anchor=ProcessedModel(anchor, None), low=None, high=None)
    refits = [expert_replay.replay_line(settings, line, key) for key in expert_replay.VARIANTS]
    cap = config.train.expert_max_steps
    assert calls == [(cap, anchor, 0.25), (cap, anchor, 0.5), (cap, anchor, 0.1), (2 * cap, anchor, 0.25)]  # the reference anchor
    assert line.config == config  # the line's own configuration is left as it was
    assert all(refit.config == config and refit.seed == 0 for refit in refits)


def test_competent_needs_every_check_and_every_seed():
    checks = {"meets_target": True, "within_persistence_fraction": True, "no_divergence_in_distribution": True,
              "expert_beats_anchor_at_own_endpoint": {"low": [True, True], "high": [True, True]}}
    assert competent(checks)
    assert not competent({**checks, "no_divergence_in_distribution": False})
    assert not competent({**checks, "within_persistence_fraction": False})
    assert not competent({**checks, "expert_beats_anchor_at_own_endpoint": {"low": [True, False], "high": [True, True]}})


@pytest.mark.usefixtures("one_thread")
def test_jobs_run_the_seeds_in_workers_and_give_the_same_results_as_a_run_here_without_the_cache(tmp_path):
    runs = {"here, no cache": (1, ["--no-cache"]), "workers": (2, ["--cache", str(tmp_path / "cache")])}
    results = {}
    for run, (jobs, cache) in runs.items():
        out = tmp_path / run
        argv = ["ccm_plane", "--family", "dam_break", "--out", str(out), *cache, "--seed=0", "--seed=1", f"--jobs={jobs}",
                *(f"--set={setting}" for setting in TINY)]
        assert main(argv) == 0
        results[run] = json.loads((out / "results.json").read_text())
        del results[run]["command"]
    assert results["here, no cache"] == results["workers"]
    assert [path.name.split("-")[-1] for path in sorted((tmp_path / "cache").iterdir())] == ["seed0", "seed1"]  # each worker's line
