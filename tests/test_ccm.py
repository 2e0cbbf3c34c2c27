"""The CCM object: decomposition, coordinates, calibration and prefix selection."""

from __future__ import annotations

import pytest
import torch
from conftest import Scale, tensors

import neuralop_merge as nm
from neuralop_merge.rollout import rollout


def test_delta_shared_and_direction_match_their_definitions(fno_trio):
    anchor, low, high = fno_trio
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=2.0)
    t0, tl, th = tensors(anchor), tensors(low), tensors(high)
    key = "fno_blocks.convs.0.weight"
    dense = {k: v for k, v in t0.items()}
    assert set(ccm.delta_shared) == {k.removesuffix(".tensor") for k in dense}
    low_delta = tl[f"{key}.tensor"] - t0[f"{key}.tensor"]
    high_delta = th[f"{key}.tensor"] - t0[f"{key}.tensor"]
    torch.testing.assert_close(ccm.delta_shared[key], (low_delta + high_delta) / 2)
    torch.testing.assert_close(ccm.delta_direction[key], (high_delta - low_delta) / 2)
    # θL = θ₀ + Δ₊ − Δ₋ and θH = θ₀ + Δ₊ + Δ₋
    bias = "projection.fcs.1.bias"
    torch.testing.assert_close(t0[bias] + ccm.delta_shared[bias] - ccm.delta_direction[bias], tl[bias])
    torch.testing.assert_close(t0[bias] + ccm.delta_shared[bias] + ccm.delta_direction[bias], th[bias])


def test_at_minus_one_and_plus_one_are_the_endpoints(fno_trio):
    anchor, low, high = fno_trio
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=2.0)
    for alpha, expert in [(-1.0, low), (1.0, high)]:
        merged = tensors(ccm.at(alpha))
        assert all(torch.equal(merged[k], v) for k, v in tensors(expert).items())


@pytest.mark.parametrize(
    "transform,low,high,mu,expected",
    [("linear", 1.0, 3.0, 2.0, 0.0), ("linear", 1.0, 3.0, 5.0, 3.0), ("log", 1e-3, 1e-1, 1e-2, 0.0), ("log", 1e-3, 1e-1, 1.0, 2.0)],
)
def test_normalized_coordinate(fno_trio, transform, low, high, mu, expected):
    ccm = nm.CCM(*fno_trio, low_coord=low, high_coord=high, transform=transform)
    assert ccm.coordinate(mu) == pytest.approx(expected)
    assert ccm.coordinate(low) == pytest.approx(-1.0) and ccm.coordinate(high) == pytest.approx(1.0)


def test_callable_transform(fno_trio):
    ccm = nm.CCM(*fno_trio, low_coord=1.0, high_coord=2.0, transform=lambda mu: mu**2)
    assert ccm.coordinate(2.0) == pytest.approx(1.0)
    assert ccm.coordinate(0.0) == pytest.approx((0 - 1 - 4) / 3)


def test_calibration_is_kept_and_used_by_from_coord(fno_trio):
    ccm = nm.CCM(*fno_trio, low_coord=1.0, high_coord=3.0)
    mapping = ccm.calibrate([(1.0, -0.5), (3.0, 1.5), (5.0, 3.5)])  # alpha = c + 0.5
    assert mapping.slope == pytest.approx(1.0) and mapping.intercept == pytest.approx(0.5)
    model = ccm.from_coord(4.0)
    assert model.provenance["alpha"] == pytest.approx(2.5) and model.provenance["calibrated"] is True
    assert all(torch.equal(tensors(model)[k], v) for k, v in tensors(ccm.at(2.5)).items())


def test_calibration_needs_two_distinct_coordinates(fno_trio):
    ccm = nm.CCM(*fno_trio, low_coord=1.0, high_coord=3.0)
    with pytest.raises(nm.StrategyError, match="two distinct"):
        ccm.calibrate([(2.0, 0.1), (2.0, 0.3)])


@pytest.mark.parametrize("method", ["grid", "fast"])
def test_from_prefix_recovers_the_alpha_that_generated_the_trajectory(fno_trio, method):
    ccm = nm.CCM(*fno_trio, low_coord=1.0, high_coord=2.0)
    truth_alpha = 1.5  # on the 41-point grid over [-3, 3]
    torch.manual_seed(0)
    frames = rollout(ccm.at(truth_alpha), torch.randn(3, 1, 16, 16), 3)
    result = ccm.from_prefix(frames, method=method)
    assert result.alpha == pytest.approx(truth_alpha, abs=0.15)  # one spacing of the 41-point grid
    assert result.model.provenance["alpha"] == result.alpha


def test_grid_prefix_search_finds_the_exact_grid_point(fno_trio):
    ccm = nm.CCM(*fno_trio, low_coord=1.0, high_coord=2.0)
    torch.manual_seed(0)
    frames = rollout(ccm.at(0.75), torch.randn(2, 1, 16, 16), 2)
    search = ccm.from_prefix(frames, method="grid", n_grid=9)
    assert search.alpha == 0.75 and search.errors.min().item() < 1e-5
    assert search.alphas.tolist() == [-3.0, -2.25, -1.5, -0.75, 0.0, 0.75, 1.5, 2.25, 3.0]


def test_ccm_prefix_strategy_matches_the_ccm_object(fno_trio):
    anchor, low, high = fno_trio
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=2.0)
    torch.manual_seed(1)
    frames = rollout(ccm.at(-0.5), torch.randn(2, 1, 16, 16), 2)
    merged = nm.merge("ccm_prefix", anchor=anchor, experts=[low, high], frames=frames, method="grid", n_grid=13)
    assert merged.provenance["alpha"] == pytest.approx(-0.5, abs=1e-9)
    assert len(merged.provenance["curve"]["alphas"]) == 13


def test_ccm_prefix_refuses_a_malformed_prefix(fno_trio):
    anchor, low, high = fno_trio
    with pytest.raises(nm.StrategyError, match="frames"):
        nm.merge("ccm_prefix", anchor=anchor, experts=[low, high], frames=torch.zeros(2, 1, 16, 16))


def test_from_coord_and_the_ccm_coord_strategy_give_the_same_weights_and_provenance(fno_trio):
    anchor, low, high = fno_trio
    ccm = nm.CCM(anchor, low, high, low_coord=1e-3, high_coord=4e-3, transform="log")
    through = {"mu": 9e-3, "low_coord": 1e-3, "high_coord": 4e-3, "transform": "log"}
    for bank in (None, [(1e-3, -0.8), (2e-3, 0.1), (8e-3, 2.5)]):
        if bank is not None:
            ccm.calibrate(bank)
            through["calibration"] = [list(pair) for pair in bank]
        door = ccm.from_coord(9e-3)
        strategy = nm.merge("ccm_coord", anchor=anchor, experts=[low, high], **through)
        assert all(torch.equal(v, tensors(strategy)[k]) for k, v in tensors(door).items())
        for key in ("strategy", "params", "alpha", "coordinate", "calibrated", "map", "coefficients"):
            assert door.provenance[key] == strategy.provenance[key], key
    assert door.provenance["strategy"] == "ccm_coord" and door.provenance["calibrated"] is True


def test_each_door_of_the_line_records_the_strategy_merge_names(fno_trio):
    anchor, low, high = fno_trio
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=2.0)
    torch.manual_seed(2)
    frames = rollout(ccm.at(0.6), torch.randn(1, 1, 16, 16), 2)
    assert ccm.at(0.3).provenance["strategy"] == "fixed_alpha"
    assert ccm.at(0.3, beta=0.5).provenance["strategy"] == "ccm_plane"
    door = ccm.from_prefix(frames, method="grid", n_grid=11, history=1, max_batch=1)
    strategy = nm.merge(
        "ccm_prefix", anchor=anchor, experts=[low, high], frames=frames, method="grid", n_grid=11, max_batch=1
    )
    assert door.model.provenance["strategy"] == strategy.provenance["strategy"] == "ccm_prefix"
    assert door.alpha == strategy.provenance["alpha"] == pytest.approx(0.6)
    assert door.model.provenance["curve"] == strategy.provenance["curve"]
    assert all(torch.equal(v, tensors(strategy)[k]) for k, v in tensors(door.model).items())


def test_the_coarse_scan_is_chosen_through_both_doors_and_recorded():
    anchor, low, high = Scale(1.0), Scale(0.9), Scale(1.1)
    ccm = nm.CCM(anchor, low, high, low_coord=1.0, high_coord=2.0)
    torch.manual_seed(3)
    frames = rollout(ccm.at(1.35), torch.rand(2, 1, 4, 4) + 0.5, 4)
    found = {}
    for n_coarse in (3, 21):
        door = ccm.from_prefix(frames, n_coarse=n_coarse)
        strategy = nm.merge("ccm_prefix", anchor=anchor, experts=[low, high], frames=frames, n_coarse=n_coarse)
        assert door.model.provenance["params"]["n_coarse"] == strategy.provenance["params"]["n_coarse"] == n_coarse
        assert door.model.provenance["curve"] == strategy.provenance["curve"]
        assert door.alpha == pytest.approx(1.35, abs=1e-9)
        found[n_coarse] = door
    assert set(torch.linspace(-3.0, 3.0, 21, dtype=torch.float64).tolist()) <= set(found[21].alphas.tolist())
    assert found[3].n_evaluations < 21 <= found[21].n_evaluations


@pytest.mark.parametrize("truth_alpha", [-2.85, -0.45, 1.35, 3.0])
def test_parabolic_search_is_within_a_grid_step_of_the_grid_on_a_unimodal_curve(truth_alpha):
    # x -> w·x along w(α) = 1 + 0.1·α: the prefix error is unimodal in α, zero at the truth.
    ccm = nm.CCM(Scale(1.0), Scale(0.9), Scale(1.1), low_coord=1.0, high_coord=2.0)
    torch.manual_seed(3)
    frames = rollout(ccm.at(truth_alpha), torch.rand(2, 1, 4, 4) + 0.5, 4)
    grid = ccm.from_prefix(frames, method="grid")
    fast = ccm.from_prefix(frames)
    result = ccm.from_prefix(frames, method="parabolic")
    assert grid.alpha == fast.alpha == pytest.approx(truth_alpha, abs=1e-9)
    assert abs(result.alpha - grid.alpha) <= 6.0 / 40 + 1e-9
    # The same evaluations as "fast" up to its early stop, so never more of them.
    assert result.n_evaluations <= min(fast.n_evaluations, 9)
    # Candidates were written in place; the deployed weights are the strategy's own at the chosen α.
    assert torch.equal(result.model.factor, ccm.at(result.alpha).factor)
    assert result.model.provenance["search"] == "parabolic" and result.model.provenance["strategy"] == "ccm_prefix"
