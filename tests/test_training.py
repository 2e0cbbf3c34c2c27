"""Tests of neuralop_merge.training: anchor training, endpoint fine-tuning, provenance, resume."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from conftest import GRID, HIGH, LOW, heat_loader, heat_trajectories, tiny_fno
from neuralop.losses import LpLoss
from neuralop.models import FNO
from torch import nn
from torch.utils.data import DataLoader

from neuralop_merge import load_model
from neuralop_merge.errors import CheckpointError, TrainingError
from neuralop_merge.families.dataset import PairDataset
from neuralop_merge.training import check_expert_lineage, finetune_endpoints, load_checkpoint, train_anchor
from neuralop_merge.weights import fingerprint

SPECTRAL_WEIGHTS = "fno_blocks.convs.*.weight*"


def one_step_loss(model: nn.Module, diffusivity: float) -> float:
    """Mean relative L2 one-step error on held-out pairs of a regime."""
    trajectories = heat_trajectories(diffusivity, 4, 2, seed=99)
    inputs, targets = trajectories[:, :-1].flatten(0, 1), trajectories[:, 1:].flatten(0, 1)
    with torch.no_grad():
        return LpLoss(d=2, reduction="sum")(model.eval()(inputs), targets).item() / len(inputs)


def states_equal(first: nn.Module, second: nn.Module) -> bool:
    return fingerprint(first) == fingerprint(second)


@pytest.fixture(scope="module")
def anchor() -> FNO:
    support = torch.cat([heat_trajectories(mu, 8, 2, seed=1) for mu in (LOW, HIGH)])
    loader = DataLoader(PairDataset(support), batch_size=8, shuffle=True, generator=torch.Generator())
    return train_anchor(tiny_fno(), loader, n_epochs=2, lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def experts(anchor: FNO) -> dict[str, nn.Module]:
    regimes = {"low": (LOW, heat_loader(LOW, seed=2)), "high": (HIGH, heat_loader(HIGH, seed=3))}
    validation = {"low": heat_trajectories(LOW, 2, 3, seed=4)}
    return finetune_endpoints(
        anchor, regimes, n_epochs=4, lr=1e-2, parameter="kappa", val_trajectories=validation, progress=False
    )


def test_anchor_records_its_training(anchor: FNO) -> None:
    provenance = anchor.provenance
    assert provenance["kind"] == "anchor"
    assert provenance["steps"] == 2 * 4  # 2 epochs of 32 pairs in batches of 8
    assert math.isfinite(provenance["losses"]["train"])


def test_finetuning_lowers_one_step_loss_on_each_regime(anchor: FNO, experts: dict[str, nn.Module]) -> None:
    for name, diffusivity in (("low", LOW), ("high", HIGH)):
        assert one_step_loss(experts[name], diffusivity) < one_step_loss(anchor, diffusivity)


def test_finetuning_leaves_the_anchor_unchanged(anchor: FNO) -> None:
    before = fingerprint(anchor)
    finetune_endpoints(anchor, {"low": (LOW, heat_loader(LOW, seed=2))}, n_epochs=1, lr=1e-2, progress=False)
    assert fingerprint(anchor) == before


def test_experts_carry_provenance(anchor: FNO, experts: dict[str, nn.Module]) -> None:
    low = experts["low"].provenance
    assert low["kind"] == "expert"
    assert low["anchor_fingerprint"] == fingerprint(anchor)
    assert low["parameter"] == {"name": "kappa", "value": LOW}
    assert low["regime"] == "low"
    assert low["optimizer"] == {"name": "AdamW", "lr": 1e-2, "weight_decay": 0.0, "grad_clip": None}
    assert low["scheduler"] == {"name": "CosineAnnealingLR", "T_max": 4}
    assert (low["steps"], low["epochs"], low["seed"], low["trainable"]) == (8, 4, 0, None)
    assert all(math.isfinite(low["losses"][key]) for key in ("train", "val", "val_rollout"))
    assert experts["high"].provenance["losses"]["val"] is None


def test_provenance_round_trips_through_save_and_load(experts: dict[str, nn.Module], tmp_path: Path) -> None:
    from neuralop_merge import load_model, save_model

    save_model(experts["high"], tmp_path, name="high")
    loaded = load_model(tmp_path, name="high")
    recorded = experts["high"].provenance
    assert {key: loaded.provenance[key] for key in recorded} == recorded
    assert states_equal(loaded, experts["high"])


def test_expert_of_a_foreign_anchor_is_refused(anchor: FNO, experts: dict[str, nn.Module]) -> None:
    check_expert_lineage(anchor, experts["low"])
    foreign_anchor = tiny_fno(seed=1)
    with pytest.raises(TrainingError) as refusal:
        check_expert_lineage(foreign_anchor, experts["low"])
    assert fingerprint(anchor) in str(refusal.value)
    assert fingerprint(foreign_anchor) in str(refusal.value)


def test_expert_without_provenance_is_refused(anchor: FNO) -> None:
    with pytest.raises(TrainingError, match="records no anchor fingerprint"):
        check_expert_lineage(anchor, tiny_fno(seed=2))


def test_trainable_subset_moves_only_the_selected_parameters(anchor: FNO) -> None:
    expert = finetune_endpoints(
        anchor,
        {"low": (LOW, heat_loader(LOW, seed=2))},
        n_epochs=1,
        lr=1e-2,
        trainable=[SPECTRAL_WEIGHTS],
        progress=False,
    )["low"]
    moved = {name for name, tensor in expert.state_dict().items()
             if torch.is_tensor(tensor) and not torch.equal(tensor, anchor.state_dict()[name])}
    assert moved == set(expert.provenance["trainable"]) == {
        "fno_blocks.convs.0.weight.tensor", "fno_blocks.convs.1.weight.tensor"
    }
    assert all(parameter.requires_grad for parameter in expert.parameters())


class InterruptedLoader(DataLoader):
    """A loader that raises KeyboardInterrupt when epoch ``interrupt_at`` starts, like a killed job."""

    def __init__(self, *args, interrupt_at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.interrupt_at = interrupt_at
        self.epochs_started = 0

    def __iter__(self):
        if self.epochs_started == self.interrupt_at:
            raise KeyboardInterrupt
        self.epochs_started += 1
        return super().__iter__()


def test_resume_gives_the_same_expert_as_an_uninterrupted_run(anchor: FNO, tmp_path: Path) -> None:
    pairs = PairDataset(heat_trajectories(LOW, 8, 2, seed=2))

    def finetune(loader: DataLoader, **checkpointing) -> nn.Module:
        regimes = {"low": (LOW, loader)}
        return finetune_endpoints(anchor, regimes, n_epochs=4, lr=1e-2, seed=7, progress=False, **checkpointing)["low"]

    def shuffled(**kwargs) -> DataLoader:
        return InterruptedLoader(pairs, batch_size=4, shuffle=True, generator=torch.Generator(), **kwargs)

    straight = finetune(shuffled(interrupt_at=-1))
    with pytest.raises(KeyboardInterrupt):
        finetune(shuffled(interrupt_at=2), checkpoint_dir=tmp_path)
    assert load_checkpoint(tmp_path / "low")["epochs_done"] == 2
    resumed = finetune(shuffled(interrupt_at=-1), checkpoint_dir=tmp_path, resume_from=tmp_path)
    assert states_equal(resumed, straight)
    assert resumed.provenance == straight.provenance
    assert load_checkpoint(tmp_path / "low")["epochs_done"] == 4
    # The folder also holds the finished expert in neuraloperator's layout, with its provenance.
    exported = load_model(tmp_path / "low" / "low_state_dict.pt")
    assert states_equal(exported, resumed) and exported.provenance["kind"] == "expert"
    assert type(FNO.from_checkpoint(tmp_path / "low", "low")) is FNO


def test_resume_refuses_a_checkpoint_of_another_run(anchor: FNO, tmp_path: Path) -> None:
    regimes = {"low": (LOW, heat_loader(LOW, seed=2))}
    finetune_endpoints(anchor, regimes, n_epochs=1, seed=0, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="not of this run"):
        finetune_endpoints(anchor, regimes, n_epochs=2, seed=1, resume_from=tmp_path, progress=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_epochs": 0}, "n_epochs"),
        ({"n_epochs": 1, "trainable": ["no_such_parameter*"]}, "match no parameter"),
        ({"n_epochs": 1, "val_trajectories": {"medium": torch.zeros(1, 2, 1, GRID, GRID)}}, "unknown regimes"),
        ({"n_epochs": 1, "scheduler": "linear"}, "unknown scheduler"),
    ],
)
def test_bad_settings_are_refused(anchor: FNO, options: dict, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        finetune_endpoints(anchor, {"low": (LOW, heat_loader(LOW, seed=2))}, progress=False, **options)


def test_cli_finetunes_from_data_files_and_refuses_to_overwrite(
    anchor: FNO, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuralop_merge import load_model, save_model
    from neuralop_merge.cli import main

    save_model(anchor, tmp_path / "anchor", name="anchor")
    trajectories = heat_trajectories(HIGH, 4, 2, seed=5)
    pairs_file = tmp_path / "high.pt"
    torch.save({"x": trajectories[:, :-1].flatten(0, 1), "y": trajectories[:, 1:].flatten(0, 1)}, pairs_file)
    command = [
        "finetune", "--data", f"high={pairs_file}", "--regime", f"high={HIGH}", "--anchor", str(tmp_path / "anchor"),
        "--out", str(tmp_path / "experts"), "--epochs", "1", "--batch-size", "4", "--parameter", "kappa",
        "--no-progress",
    ]
    assert main(command) == 0
    expert = load_model(tmp_path / "experts", name="high")
    assert expert.provenance["parameter"] == {"name": "kappa", "value": HIGH}
    check_expert_lineage(anchor, expert)

    assert main(command) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*command, "--overwrite"]) == 0


def test_experts_build_the_merge_line(anchor: FNO, experts: dict[str, nn.Module]) -> None:
    from neuralop_merge import CCM

    CCM.from_experts(anchor, experts)
    with pytest.raises(TrainingError, match=fingerprint(anchor)):
        CCM.from_experts(tiny_fno(seed=1), experts)


def test_a_model_that_last_ran_on_another_device_trains_here(anchor: FNO) -> None:
    # neuraloperator caches its positional grid where the model last ran, and Module.to leaves it there.
    # The meta device stands in for the GPU of a worker that trained the anchor.
    model = copy.deepcopy(anchor)
    model(heat_trajectories(LOW, 1, 1, seed=5)[:, 0])  # builds the cache here
    model.positional_embedding._grid = [grid.to("meta") for grid in model.positional_embedding._grid]
    expert = finetune_endpoints(model, {"low": (LOW, heat_loader(LOW, seed=2))}, n_epochs=1, lr=1e-2, progress=False)["low"]
    assert expert.provenance["steps"] > 0
    assert {grid.device.type for grid in expert.positional_embedding._grid} == {"cpu"}
