"""The training recipe's parts: increment data processor, deployed model, early stopping, clipping."""

from __future__ import annotations

import pytest
import torch
from neuralop.models import FNO
from torch import nn

from neuralop_merge import merge
from neuralop_merge.errors import SimulationError, TrainingError
from neuralop_merge.families.dataset import PairDataset
from neuralop_merge.training import TrainingSettings, rollout_error, train_anchor
from neuralop_merge.training.processing import IncrementDataProcessor, ProcessedModel
from neuralop_merge.training.trainer import BestWeights, FinetuneTrainer


def trajectories(n: int = 3, frames: int = 5, channels: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    steps = torch.randn(n, frames, channels, 8, 8).cumsum(dim=1)
    return steps * torch.tensor([1.0, 50.0][:channels]).view(1, 1, -1, 1, 1)


class Oracle(nn.Module):
    """Outputs a fixed normalized increment, to see what the processor makes of it."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        return self.output


def test_the_processor_normalizes_increments_per_channel():
    data = trajectories()
    processor = IncrementDataProcessor.fit(data)
    sample = processor.preprocess({"x": data[:, 0].clone(), "y": data[:, 1].clone()})
    increment = processor.out_normalizer.inverse_transform(sample["y"])
    torch.testing.assert_close(increment, data[:, 1] - data[:, 0], rtol=1e-4, atol=1e-3)
    # Both channels arrive at unit scale although their raw scales differ fifty-fold.
    assert processor.in_normalizer.std[0, 1].item() > 20 * processor.in_normalizer.std[0, 0].item()


def test_the_deployed_model_predicts_the_next_state_in_physical_units():
    data = trajectories()
    processor = IncrementDataProcessor.fit(data)
    truth = processor.out_normalizer.transform(data[:, 1] - data[:, 0])
    model = ProcessedModel(Oracle(truth), processor)
    model.train()  # the deployed model never adds training noise, whatever its mode
    torch.testing.assert_close(model(data[:, 0]), data[:, 1], rtol=1e-4, atol=1e-3)


def test_conditioning_channels_pass_through_unchanged():
    data = trajectories(channels=2)
    data[:, :, 1] = 0.7  # a constant conditioning channel
    processor = IncrementDataProcessor.fit(data, state_channels=1)
    model = ProcessedModel(Oracle(torch.zeros(3, 1, 8, 8)), processor)
    out = model(data[:, 0])
    assert out.shape == data[:, 0].shape
    assert torch.equal(out[:, 1], data[:, 0, 1])


def test_training_noise_moves_the_input_and_the_target_together():
    data = trajectories()
    processor = IncrementDataProcessor.fit(data, noise=0.5)
    processor.train()
    torch.manual_seed(1)
    sample = processor.preprocess({"x": data[:, 0].clone(), "y": data[:, 1].clone()})
    noisy = processor.in_normalizer.inverse_transform(sample["x"])
    assert not torch.allclose(noisy, data[:, 0])
    # The target is the increment from the noisy state, so it pulls the perturbation back.
    target = processor.out_normalizer.inverse_transform(sample["y"])
    torch.testing.assert_close(noisy + target, data[:, 1], rtol=1e-4, atol=1e-3)


def test_merging_processed_models_leaves_the_shared_normalizers_exact():
    data = trajectories()
    processor = IncrementDataProcessor.fit(data)
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(ProcessedModel(FNO(n_modes=(4, 4), in_channels=2, out_channels=2, hidden_channels=8, n_layers=1), processor))
    merged = merge("average", experts=models)
    for name, tensor in processor.state_dict().items():
        assert torch.equal(merged.state_dict()[f"processor.{name}"], tensor), name


def test_best_weights_stop_after_patience_and_keep_the_best_state():
    net = nn.Linear(1, 1)
    tracker = BestWeights(patience=2)
    for epoch, value in enumerate([3.0, 1.0, 2.0]):
        with torch.no_grad():
            net.weight.fill_(value)
        tracker.update(epoch, value, net)
    assert not tracker.exhausted and tracker.epoch == 1 and tracker.state["weight"].item() == 1.0
    tracker.update(3, float("nan"), net)  # NaN never counts as an improvement
    assert tracker.exhausted


def test_gradients_are_clipped_before_each_step():
    net = nn.Linear(4, 1)
    optimizer = TrainingSettings(n_epochs=1, grad_clip=1e-3).build_optimizer(net)
    (net(torch.full((2, 4), 1e3)).sum() * 1e3).backward()
    optimizer.step()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in net.parameters()))
    assert norm.item() == pytest.approx(1e-3, rel=1e-3)


def test_training_with_a_processor_restores_the_best_validation_weights():
    data = trajectories(n=4, frames=4, channels=1)
    processor = IncrementDataProcessor.fit(data)
    torch.manual_seed(0)
    net = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)
    loader = torch.utils.data.DataLoader(PairDataset(data[:3]), batch_size=3)
    settings = TrainingSettings(n_epochs=6, lr=5e-2, scheduler="onecycle", progress=False, grad_clip=1.0, patience=2)
    trained = train_anchor(net, loader, settings=settings, data_processor=processor, val_trajectories=data[3:])
    assert trained.provenance["scheduler"]["name"] == "OneCycleLR"
    # The weights left in the model are those whose validation rollout error was recorded as best.
    best = trained.provenance["losses"]["val_rollout"]
    assert rollout_error(ProcessedModel(trained, processor), data[3:]) == pytest.approx(best, rel=1e-5)
    assert trained.provenance["steps"] <= 6 * len(loader)


@pytest.mark.parametrize("space", [(16,), (8, 8, 8)])
def test_training_with_a_processor_works_in_one_and_three_dimensions(space):
    torch.manual_seed(0)
    data = torch.randn(3, 3, 1, *space).cumsum(dim=1)
    processor = IncrementDataProcessor.fit(data)
    net = FNO(n_modes=(4,) * len(space), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    loader = torch.utils.data.DataLoader(PairDataset(data[:2]), batch_size=2)
    settings = TrainingSettings(n_epochs=2, progress=False)
    trained = train_anchor(net, loader, settings=settings, data_processor=processor, val_trajectories=data[2:])
    assert trained.provenance["steps"] == 4 and trained.provenance["losses"]["val_rollout"] > 0
    assert ProcessedModel(trained, processor)(data[:, 0]).shape == data[:, 0].shape


def test_pair_dataset_carries_the_frames_a_pushforward_trains_on():
    data = trajectories(n=2, frames=5)
    pairs = PairDataset(data, lead=2)
    assert len(pairs) == 2 * 2  # steps 0 and 1 of each trajectory still have two frames after y
    item = pairs[3]  # trajectory 1, step 1
    torch.testing.assert_close(item["x"], data[1, 1])
    torch.testing.assert_close(item["y"], data[1, 2])
    torch.testing.assert_close(item["ahead"], data[1, 3:5])
    assert "ahead" not in PairDataset(data)[0]
    with pytest.raises(SimulationError, match="lead must be in \\[0, 3\\]"):
        PairDataset(data, lead=4)


class AddOne(nn.Module):
    """A one-step model whose n-step rollout is known: x + n."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        return x + 1 + self.weight


def test_pushforward_rolls_the_input_with_the_model_and_targets_the_matching_frame():
    trainer = FinetuneTrainer(model=AddOne(), n_epochs=1, seed=0, identity={"kind": "anchor"}, progress=False, pushforward=2)
    x, y = torch.zeros(3, 1, 4), torch.full((3, 1, 4), 10.0)
    ahead = torch.stack([torch.full((3, 1, 4), 20.0), torch.full((3, 1, 4), 30.0)], dim=1)
    seen = set()
    torch.manual_seed(0)
    for _ in range(30):
        sample = trainer.pushed_forward({"x": x, "y": y, "ahead": ahead})
        assert "ahead" not in sample
        unrolls = int(sample["x"][0, 0, 0])  # x + n after n steps of AddOne
        torch.testing.assert_close(sample["x"], x + unrolls)
        torch.testing.assert_close(sample["y"], y if unrolls == 0 else ahead[:, unrolls - 1])
        assert not sample["x"].requires_grad
        seen.add(unrolls)
    assert seen == {0, 1, 2}


def test_pushforward_without_ahead_frames_names_the_loader_to_build():
    trainer = FinetuneTrainer(model=AddOne(), n_epochs=1, seed=0, identity={"kind": "anchor"}, progress=False, pushforward=1)
    with pytest.raises(TrainingError, match=r"PairDataset\(trajectories, lead=1\)"):
        trainer.pushed_forward({"x": torch.zeros(2, 1, 4), "y": torch.zeros(2, 1, 4)})


@pytest.mark.parametrize("value", [-1, 1.5])
def test_pushforward_must_be_a_non_negative_integer(value):
    with pytest.raises(TrainingError, match="pushforward"):
        TrainingSettings(n_epochs=1, pushforward=value)


def test_pushforward_training_is_reproducible_and_recorded():
    data = trajectories(n=4, frames=5, channels=1)
    processor = IncrementDataProcessor.fit(data)

    def train(pushforward: int) -> nn.Module:
        torch.manual_seed(0)
        net = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)
        loader = torch.utils.data.DataLoader(PairDataset(data[:3], lead=1), batch_size=3, shuffle=True)
        settings = TrainingSettings(n_epochs=3, lr=1e-2, progress=False, pushforward=pushforward)
        return train_anchor(net, loader, settings=settings, data_processor=processor, val_trajectories=data[3:])

    first, again, plain = train(1), train(1), train(0)
    assert first.provenance["pushforward"] == 1 and plain.provenance["pushforward"] == 0
    for (name, a), b, c in zip(first.state_dict().items(), again.state_dict().values(), plain.state_dict().values()):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, msg=name)
    assert any(isinstance(a, torch.Tensor) and not torch.equal(a, c) for a, c in zip(first.state_dict().values(), plain.state_dict().values()))
