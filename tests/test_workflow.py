"""A neuraloperator user's own workflow: experts trained with neuraloperator's Trainer and a
normalizing DefaultDataProcessor, saved with save_checkpoint, merged through Python and the command
line, and read back with FNO.from_checkpoint; plus the command-line conveniences such users need."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from conftest import Toy
from neuralop.data.transforms.data_processors import DefaultDataProcessor
from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
from neuralop.losses import LpLoss
from neuralop.models import FNO
from neuralop.training import Trainer
from torch.utils.data import DataLoader, StackDataset

import neuralop_merge as nm
from neuralop_merge.cli import main
from neuralop_merge.errors import EvaluationError


def pairs(seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One-step pairs x -> y of a 1-D field, in physical units far from zero mean and unit variance."""
    x = 5.0 + 3.0 * torch.randn(16, 1, 16, generator=torch.Generator().manual_seed(seed))
    return x, scale * torch.roll(x, 1, dims=-1)


def processor(x: torch.Tensor, y: torch.Tensor) -> DefaultDataProcessor:
    in_normalizer, out_normalizer = UnitGaussianNormalizer(dim=[0, 2]), UnitGaussianNormalizer(dim=[0, 2])
    in_normalizer.fit(x)
    out_normalizer.fit(y)
    return DefaultDataProcessor(in_normalizer=in_normalizer, out_normalizer=out_normalizer)


def trained(model: FNO, x: torch.Tensor, y: torch.Tensor, data_processor: DefaultDataProcessor) -> FNO:
    """``model`` after a few steps of neuraloperator's own Trainer."""
    loader = DataLoader(StackDataset(x=x, y=y), batch_size=8)
    trainer = Trainer(model=model, n_epochs=2, data_processor=data_processor, device="cpu", verbose=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    loss = LpLoss(d=1)
    trainer.train(loader, {}, optimizer, scheduler, training_loss=loss, eval_losses={"l2": loss})
    return model


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("neuralop-experts")
    torch.manual_seed(0)
    anchor = FNO(n_modes=(4,), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    x, y = pairs(0, 1.0)
    data_processor = processor(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained(anchor, x, y, data_processor).save_checkpoint(folder, "anchor")
        for name, scale in (("low", 0.5), ("high", 1.5)):
            expert = trained(copy.deepcopy(anchor), *pairs(1, scale), data_processor)
            expert.save_checkpoint(folder, name)  # three checkpoints in one folder
    return folder, data_processor


def test_trainer_experts_merge_in_python_and_the_cli_and_load_with_from_checkpoint(experts, tmp_path):
    folder, data_processor = experts
    low, high = nm.load_model(folder / "low"), nm.load_model(folder / "high")  # FOLDER/NAME prefixes
    with pytest.warns(UserWarning, match="record no anchor fingerprint"):
        ccm = nm.CCM.from_experts(folder / "anchor", {"low": low, "high": high}, coords={"low": 0.5, "high": 1.5})
    in_python = ccm.from_coord(2.0)
    nm.save_model(in_python, tmp_path / "python", name="merged")
    code = main(["merge", "ccm_coord", "--anchor", str(folder / "anchor"), "--low", str(folder / "low"),
                 "--high", str(folder / "high_state_dict.pt"), "--coord", "2", "--low-coord", "0.5",
                 "--high-coord", "1.5", "-o", str(tmp_path / "cli")])
    assert code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_python = FNO.from_checkpoint(tmp_path / "python", "merged")
        from_cli = FNO.from_checkpoint(tmp_path / "cli", "merged")
    assert nm.fingerprint(from_python) == nm.fingerprint(from_cli) == nm.fingerprint(in_python)
    x = pairs(2, 1.0)[0]
    physical = nm.rollout(from_cli, x, 1, data_processor=data_processor)[:, 1]
    data_processor.eval()
    with torch.no_grad():
        sample = data_processor.preprocess({"x": x.clone(), "y": x.clone()})
        expected = data_processor.out_normalizer.inverse_transform(from_cli.eval()(sample["x"]))
    torch.testing.assert_close(physical, expected)
    assert physical.mean().abs() > 1.0  # de-normalized: the data's units, not unit Gaussian


def test_prefix_search_with_a_data_processor_finds_the_generating_alpha(experts):
    folder, data_processor = experts
    with pytest.warns(UserWarning, match="record no anchor fingerprint"):
        ccm = nm.CCM.from_experts(folder / "anchor", {"low": folder / "low", "high": folder / "high"},
                                  coords={"low": 0.5, "high": 1.5})
    frames = nm.rollout(ccm.at(1.5), pairs(3, 1.0)[0], 3, data_processor=data_processor)
    picked = ccm.from_prefix(frames, method="grid", n_grid=13, data_processor=data_processor)
    assert picked.alpha == pytest.approx(1.5)
    experts = {"low": ccm.inputs.experts[0].model, "high": ccm.inputs.experts[1].model}
    surface = nm.CCMSurface(ccm.inputs.anchor.model, experts, {"low": 0.5, "high": 1.5})
    on_surface = surface.from_prefix(frames, method="grid", n_grid=13, data_processor=data_processor)
    assert on_surface.coordinate == pytest.approx((1.5,))
    unprocessed = surface.from_prefix(frames, method="grid", n_grid=13)  # normalized predictions vs physical frames
    assert unprocessed.errors.min() > 10 * on_surface.errors.min()


def test_rollout_refuses_frames_of_another_dtype(experts):
    folder, _ = experts
    with pytest.raises(EvaluationError, match=r"x0 is torch.float64 but the model's weights are torch.float32"):
        nm.rollout(nm.load_model(folder / "anchor"), torch.zeros(1, 1, 16, dtype=torch.float64), 1)


def test_cli_takes_prefixes_negative_values_and_recorded_coordinates(experts, tmp_path, capsys):
    folder, _ = experts
    for name, value in (("low", -2e-3), ("high", 1e-3)):
        model = nm.load_model(folder / name)
        model.provenance = {"parameter": {"name": "mu", "value": value}}
        nm.save_model(model, tmp_path / "experts", name=name)
    common = ["--anchor", str(folder / "anchor"), "--low", str(tmp_path / "experts" / "low"),
              "--high", str(tmp_path / "experts" / "high")]
    assert main(["merge", "ccm_coord", *common, "--coord", "-1e-3", "-o", str(tmp_path / "out")]) == 0
    merged = nm.load_model(tmp_path / "out")
    assert merged.provenance["params"]["low_coord"] == -2e-3 and merged.provenance["coordinate"] == pytest.approx(-1 / 3)
    assert main(["merge", "fixed_alpha", *common, "--alpha", "-1.5e0", "-o", str(tmp_path / "out"), "--name", "a"]) == 0


def test_cli_refuses_missing_coordinates_in_one_line(experts, capsys):
    folder, _ = experts
    code = main(["inspect", "--anchor", str(folder / "anchor"), "--low", str(folder / "low"),
                 "--high", str(folder / "high")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "give --low-coord" in err[0] and "records no physical parameter" in err[0]
    code = main(["merge", "ccm_coord", "--anchor", str(folder / "anchor"), "--low", str(folder / "missing"),
                 "--high", str(folder / "high"), "--coord", "1", "-o", str(folder / "never")])
    assert code == 2 and "checkpoint file not found" in capsys.readouterr().err and not (folder / "never").exists()


def test_a_folder_of_several_checkpoints_names_the_prefix_form(experts):
    folder, _ = experts
    with pytest.raises(nm.CheckpointError, match=r"pass name= or the path .*/NAME"):
        nm.load_model(folder)


def test_inspect_reads_recorded_coordinates_and_flags_a_two_regime_law(experts, tmp_path, capsys):
    folder, _ = experts
    for name, value in (("low", 0.5), ("high", 1.5)):
        model = nm.load_model(folder / name)
        model.provenance = {"parameter": {"name": "scale", "value": value}}
        nm.save_model(model, tmp_path / "experts", name=name)
    trajectories = torch.stack([pairs(seed, 1.0)[0][:3] for seed in range(4)])  # [N=4, T+1=3, C=1, 16]
    torch.save({"trajectories": trajectories, "params": torch.tensor([0.5, 0.5, 1.5, 1.5])}, tmp_path / "data.pt")
    code = main(["inspect", "--anchor", str(folder / "anchor"), "--low", str(tmp_path / "experts" / "low"),
                 "--high", str(tmp_path / "experts" / "high"), "--data", str(tmp_path / "data.pt"), "--alphas=-1:1:5"])
    out = capsys.readouterr().out
    assert code == 0 and "from only two regimes" in out
    assert "-1.000" in out and "1.000" in out  # c(0.5) = -1 and c(1.5) = +1 from the recorded coordinates


def test_cli_builds_a_plain_module_named_by_model_class(tmp_path, capsys):
    torch.manual_seed(0)
    for name in ("anchor", "low", "high"):
        nm.save_model(Toy(), tmp_path, name=name)
    common = ["merge", "fixed_alpha", "--anchor", str(tmp_path / "anchor"), "--low", str(tmp_path / "low"),
              "--high", str(tmp_path / "high"), "--alpha", "-1", "-o", str(tmp_path / "out")]
    assert main(common) == 2
    assert "pass model_class= or template= (CLI: --model-class MODULE:CLASS)" in capsys.readouterr().err
    assert main([*common, "--model-class", "conftest:Toy"]) == 0
    merged = nm.load_model(tmp_path / "out", model_class=Toy)
    assert nm.fingerprint(merged) == nm.fingerprint(nm.load_model(tmp_path / "low", model_class=Toy))
    assert main([*common, "--model-class", "conftest", "--name", "x"]) == 2
    assert "--model-class must be MODULE:CLASS" in capsys.readouterr().err


def test_experts_with_different_active_modes_are_merged_with_a_warning():
    torch.manual_seed(0)
    anchor = FNO(n_modes=(4,), max_n_modes=(4,), in_channels=1, out_channels=1, hidden_channels=4, n_layers=2)
    grown = copy.deepcopy(anchor)
    anchor.fno_blocks.convs[0].n_modes = (2,)  # an incremental FNO early in training (kept as 2 rfft modes)
    with pytest.warns(UserWarning, match=r"uses active n_modes \(3,\) in 'fno_blocks.convs.0', anchor uses \(2,\)") as caught:
        merged = nm.merge("task_arithmetic", anchor=anchor, experts=[grown, grown])
    assert [str(warning.message).split()[0] for warning in caught] == ["expert[0]", "expert[1]"]
    assert {warning.filename for warning in caught} == {__file__}
    assert tuple(merged.fno_blocks.convs[0].n_modes) == (2,)
