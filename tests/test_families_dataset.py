"""Regime data sets: pairs for neuralop's Trainer, parameter tags, seeding and the disk cache."""

import warnings

import pytest
import torch

from neuralop_merge import families
from neuralop_merge.families import dataset
from neuralop_merge.errors import SimulationError

FAMILY = families.get("diffreact")
REGIMES = [5e-4, 2e-3]
SIZE = dict(n_per_param=3, resolution=8, n_frames=4, dt_frame=0.25)


def _data(seed=0, cache_dir=None, params=REGIMES):
    return FAMILY.dataset(params, seed=seed, cache_dir=cache_dir, **SIZE)


def test_trajectories_pairs_and_parameter_tags_line_up():
    data = _data()
    assert data.trajectories.shape == (6, 5, 2, 8, 8)
    assert data.params.tolist() == [5e-4] * 3 + [2e-3] * 3
    assert data.regime.tolist() == [0, 0, 0, 1, 1, 1]
    pairs = data.pairs
    assert len(pairs) == 6 * 4 and data.pair_params.shape == (24,)
    item = pairs[4 * 4 + 2]  # trajectory 4, step 2
    assert set(item) == {"x", "y"}
    assert torch.equal(item["x"], data.trajectories[4, 2]) and torch.equal(item["y"], data.trajectories[4, 3])
    assert data.pair_params[4 * 4 + 2] == 2e-3
    # A regime's data is exactly what simulate gives for its own initial states.
    regime = data.by_regime(1)
    rerun = FAMILY.simulate(regime.trajectories[:, 0], 2e-3, n_frames=4, dt_frame=0.25)
    assert torch.equal(rerun, regime.trajectories)


def test_dict_regimes_tag_every_axis():
    data = _data(params=[{"Du": 1e-3, "k": 0.0}, {"Du": 1e-3, "k": 0.05}])
    assert data.params.shape == (6, 3) and data.axis_names == ("Du", "Dv", "k")
    assert data.params[3].tolist() == pytest.approx([1e-3, 5e-3, 0.05])
    chosen = data.subset([[1e-3, 5e-3, 0.05]])
    assert torch.equal(chosen.trajectories, data.trajectories[3:])
    assert not torch.allclose(data.trajectories[:3, -1], data.trajectories[3:, -1])


def test_subset_selects_regimes_and_rejects_missing_values():
    data = _data()
    assert torch.equal(data.subset([2e-3]).trajectories, data.trajectories[3:])
    with pytest.raises(SimulationError, match="no trajectories"):
        data.subset([1e-3])


def test_same_seed_same_data_other_seed_other_data():
    first, again, other = _data(seed=1), _data(seed=1), _data(seed=2)
    assert torch.equal(first.trajectories, again.trajectories)
    assert not torch.allclose(first.trajectories[:, 0], other.trajectories[:, 0])


def test_loader_batches_train_an_fno_with_neuralop_trainer():
    from neuralop.losses import LpLoss
    from neuralop.models import FNO
    from neuralop.training import Trainer

    data = _data()
    loader = data.loader(8, shuffle=True, seed=0)
    batch = next(iter(loader))
    assert set(batch) == {"x", "y"} and batch["x"].shape == (8, 2, 8, 8)
    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), in_channels=2, out_channels=2, hidden_channels=8, n_layers=1)
    trainer = Trainer(model=model, n_epochs=2, device="cpu", verbose=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    loss = LpLoss(d=2, p=2)
    with warnings.catch_warnings():
        # LpLoss warns that it ignores the batch's 'x'; that is neuralop's own contract.
        warnings.simplefilter("ignore", UserWarning)
        metrics = trainer.train(loader, {}, optimizer, scheduler, training_loss=loss)
    assert metrics["train_err"] == metrics["train_err"]  # finite, not NaN


def test_loader_seed_fixes_the_shuffle():
    data = _data()
    order = lambda seed: torch.cat([batch["x"] for batch in data.loader(5, shuffle=True, seed=seed)])
    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(3), order(4))


def test_a_loader_with_lead_carries_the_frames_after_y():
    data = _data()
    batch = next(iter(data.loader(32, shuffle=False, lead=2)))
    assert batch["ahead"].shape == (6 * 2, 2, 2, 8, 8)  # two steps per trajectory keep two frames after y
    assert torch.equal(batch["ahead"][1], data.trajectories[0, 3:5])


def test_cache_hit_skips_simulation(tmp_path, monkeypatch):
    stored = _data(cache_dir=tmp_path)
    assert len(list(tmp_path.glob("diffreact-*.pt"))) == 1

    def forbidden(*args, **kwargs):
        raise AssertionError("a cache hit must not simulate")

    monkeypatch.setattr(type(FAMILY), "simulate", forbidden)
    loaded = _data(cache_dir=tmp_path)
    assert torch.equal(loaded.trajectories, stored.trajectories)
    assert torch.equal(loaded.params, stored.params)


def test_cache_dir_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _data(cache_dir="~/.cache/neuralop-merge")
    assert len(list((tmp_path / "home" / ".cache" / "neuralop-merge").glob("diffreact-*.pt"))) == 1
    assert not (tmp_path / "~").exists()


def test_other_configuration_gets_its_own_cache_file(tmp_path):
    _data(cache_dir=tmp_path)
    _data(seed=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("diffreact-*.pt"))) == 2


def test_truncated_cache_file_is_regenerated(tmp_path):
    fresh = _data(cache_dir=tmp_path)
    (path,) = tmp_path.glob("diffreact-*.pt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.warns(UserWarning, match="regenerating cache file") as caught:
        regenerated = _data(cache_dir=tmp_path)
    assert caught[0].filename == __file__  # the warning names the caller's line, not the package's
    assert torch.equal(regenerated.trajectories, fresh.trajectories)
    assert torch.load(path, weights_only=True)["trajectories"].shape == fresh.trajectories.shape
    assert not list(tmp_path.glob("*.tmp")), "no temporary file may be left behind"


def test_cache_file_with_foreign_content_is_not_used(tmp_path):
    fresh = _data(cache_dir=tmp_path)
    (path,) = tmp_path.glob("diffreact-*.pt")
    payload = torch.load(path, weights_only=True)
    payload["trajectories"] = torch.zeros_like(payload["trajectories"])[:2]
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="trajectories are"):
        regenerated = _data(cache_dir=tmp_path)
    assert torch.equal(regenerated.trajectories, fresh.trajectories)


def test_bad_dataset_arguments_raise():
    with pytest.raises(SimulationError, match="seed"):
        _data(seed=-1)
    with pytest.raises(SimulationError, match="at least one regime"):
        _data(params=[])


def test_refined_data_are_block_averages_of_the_fine_simulation():
    family = families.get("diffreact")
    coarse = family.dataset([1e-3], 2, 8, 3, seed=4, refine=2)
    initial = family.sample_initial(2, 16, param=1e-3, seed=dataset.regime_seed(4, 0))
    fine = family.simulate(initial, 1e-3, n_frames=3)
    expected = torch.nn.functional.avg_pool2d(fine.flatten(0, 1), 2).view(2, 4, 2, 8, 8)
    torch.testing.assert_close(coarse.trajectories, expected)


def test_spinup_frames_are_simulated_and_dropped():
    family = families.get("dam_break")
    kept = family.dataset([2.0], 1, 16, 3, seed=1, spinup=2)
    initial = family.sample_initial(1, 16, param=2.0, seed=dataset.regime_seed(1, 0))
    whole = family.simulate(initial, 2.0, n_frames=5)
    torch.testing.assert_close(kept.trajectories, whole[:, 2:])
    with pytest.raises(SimulationError, match="refine"):
        family.dataset([2.0], 1, 16, 3, seed=1, refine=0)
