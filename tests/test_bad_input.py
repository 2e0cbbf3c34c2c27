"""Every bad input is refused with one message naming the tensor, shape, value or file."""

from __future__ import annotations

import pytest
import torch
from conftest import Toy, tiny_fno

import neuralop_merge as nm
from neuralop_merge.errors import IncompatibleModelsError, NonFiniteError, StrategyError


def test_different_model_classes(fno_trio):
    with pytest.raises(IncompatibleModelsError, match="FNO.*Toy"):
        nm.merge("average", experts=[fno_trio[0], Toy()])


def test_different_architecture_arguments():
    with pytest.raises(IncompatibleModelsError, match="'hidden_channels'.*8.*16"):
        nm.merge("average", experts=[tiny_fno(0), tiny_fno(1, hidden_channels=16)])


def test_differing_keys():
    torch.manual_seed(0)
    other = Toy()
    other.register_buffer("extra", torch.zeros(1))
    with pytest.raises(IncompatibleModelsError, match="'extra'.*expert\\[1\\]"):
        nm.merge("average", experts=[Toy(), other])


def test_differing_shapes():
    torch.manual_seed(0)
    other = Toy()
    other.linear = torch.nn.Linear(3, 4)
    with pytest.raises(IncompatibleModelsError, match="'linear.weight' has shape \\(3, 3\\).*\\(4, 3\\)"):
        nm.merge("average", experts=[Toy(), other])


def test_differing_dtypes():
    torch.manual_seed(0)
    with pytest.raises(IncompatibleModelsError, match="'scale' has dtype torch.float32 in expert\\[0\\] but torch.float64"):
        nm.merge("average", experts=[Toy(), Toy().double()])


def test_nan_in_an_input(fno_trio):
    anchor, low, high = fno_trio
    with torch.no_grad():
        high.projection.fcs[1].bias[0] = float("nan")
    with pytest.raises(NonFiniteError, match="'projection.fcs.1.bias' of expert\\[1\\]"):
        nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.0)


def test_inf_in_the_result(fno_trio):
    anchor, low, high = fno_trio
    with torch.no_grad():
        low.projection.fcs[1].bias[0] = 3e38
        high.projection.fcs[1].bias[0] = 3e38
    with pytest.raises(NonFiniteError, match="merge result"):
        nm.merge("task_arithmetic", anchor=anchor, experts=[low, high], scale=1.0)


def test_missing_anchor(fno_trio):
    with pytest.raises(StrategyError, match="'fixed_alpha' needs an anchor"):
        nm.merge("fixed_alpha", experts=list(fno_trio[1:]), alpha=0.0)


def test_wrong_number_of_experts(fno_trio):
    with pytest.raises(StrategyError, match="exactly 2 experts, got 1"):
        nm.merge("fixed_alpha", anchor=fno_trio[0], experts=[fno_trio[1]], alpha=0.0)


def test_equal_endpoint_coordinates(fno_trio):
    anchor, low, high = fno_trio
    with pytest.raises(StrategyError, match="equal \\(2.0\\)"):
        nm.merge("ccm_coord", anchor=anchor, experts=[low, high], mu=1.0, low_coord=2.0, high_coord=2.0)
    with pytest.raises(StrategyError, match="equal"):
        nm.CCM(anchor, low, high, low_coord=2.0, high_coord=2.0)


def test_log_coordinate_of_a_non_positive_value(fno_trio):
    anchor, low, high = fno_trio
    ccm = nm.CCM(anchor, low, high, low_coord=1e-3, high_coord=1e-2, transform="log")
    with pytest.raises(StrategyError, match="mu=-1.0 must be positive"):
        ccm.coordinate(-1.0)


def test_unknown_strategy(fno_trio):
    with pytest.raises(StrategyError, match="unknown merge strategy 'averge'.*average"):
        nm.merge("averge", experts=list(fno_trio))


def test_unknown_parameter_is_never_silently_ignored(fno_trio):
    anchor, low, high = fno_trio
    with pytest.raises(StrategyError, match="no parameter 'alhpa' \\(accepted: alpha\\)"):
        nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alhpa=0.5)


def test_missing_required_parameter(fno_trio):
    anchor, low, high = fno_trio
    with pytest.raises(StrategyError, match="needs parameter 'alpha'"):
        nm.merge("fixed_alpha", anchor=anchor, experts=[low, high])


def test_non_numeric_parameter(fno_trio):
    anchor, low, high = fno_trio
    with pytest.raises(StrategyError, match="'alpha' must be a number, got 'big'"):
        nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha="big")


def test_average_weights_of_the_wrong_length(fno_trio):
    with pytest.raises(StrategyError, match="2 entries for 3 experts"):
        nm.merge("average", experts=list(fno_trio), weights=[1.0, 2.0])


def test_missing_checkpoint_file_is_named(tmp_path, fno_trio):
    with pytest.raises(nm.CheckpointError, match="nowhere"):
        nm.merge("average", experts=[fno_trio[0], tmp_path / "nowhere"])
