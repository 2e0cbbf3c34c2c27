"""The merge semantics, checked against independent hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import Toy, tensors, tiny_fno
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralop_merge as nm

ALPHAS = st.floats(min_value=-4.0, max_value=4.0, allow_nan=False)


def assert_state(model, expected: dict[str, torch.Tensor]) -> None:
    got = tensors(model)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)


def hand_line(anchor, low, high, alpha: float, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """θ₀ + β·Δ₊ + αΔ₋ written out from the definitions; integer buffers from the anchor."""
    t0, tl, th = tensors(anchor), tensors(low), tensors(high)
    out = {}
    for key in t0:
        if not (t0[key].is_floating_point() or t0[key].is_complex()):
            out[key] = t0[key]
            continue
        d_low, d_high = tl[key] - t0[key], th[key] - t0[key]
        out[key] = t0[key] + beta * (d_low + d_high) / 2 + alpha * (d_high - d_low) / 2
    return out


@settings(max_examples=15, deadline=None)
@given(alpha=ALPHAS)
def test_fixed_alpha_matches_hand_computation_on_plain_module(alpha):
    torch.manual_seed(0)
    anchor, low, high = Toy(), Toy(), Toy()
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=alpha)
    assert_state(merged, hand_line(anchor, low, high, alpha))
    assert merged.steps.item() == 7 and merged.steps.dtype == torch.int64


def test_fixed_alpha_endpoints_and_midpoint(fno_trio):
    anchor, low, high = fno_trio
    assert_state(nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=-1.0), tensors(low))
    assert_state(nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=1.0), tensors(high))
    average = nm.merge("average", experts=[low, high])
    assert_state(nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.0), tensors(average))


def test_fixed_alpha_extrapolates_beyond_the_endpoints(fno_trio):
    anchor, low, high = fno_trio
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=2.5)
    assert_state(merged, hand_line(anchor, low, high, 2.5))
    key = "fno_blocks.convs.0.weight.tensor"
    assert torch.is_complex(tensors(merged)[key])


@settings(max_examples=10, deadline=None)
@given(weights=st.lists(st.floats(min_value=0.1, max_value=5.0), min_size=3, max_size=3))
def test_weighted_average_normalizes_weights(weights):
    models = [tiny_fno(seed) for seed in range(3)]
    merged = nm.merge("average", experts=models, weights=weights)
    states = [tensors(m) for m in models]
    total = sum(weights)
    expected = {k: sum(w / total * s[k] for w, s in zip(weights, states)) for k in states[0]}
    assert_state(merged, expected)


def test_uniform_average_is_the_mean(fno_trio):
    states = [tensors(m) for m in fno_trio]
    merged = nm.merge("average", experts=list(fno_trio))
    assert_state(merged, {k: (states[0][k] + states[1][k] + states[2][k]) / 3 for k in states[0]})


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(min_value=-2.0, max_value=2.0, allow_nan=False))
def test_task_arithmetic_matches_hand_computation(scale):
    anchor, first, second = tiny_fno(0), tiny_fno(1), tiny_fno(2)
    t0, t1, t2 = tensors(anchor), tensors(first), tensors(second)
    merged = nm.merge("task_arithmetic", anchor=anchor, experts=[first, second], scale=scale)
    assert_state(merged, {k: t0[k] + scale * ((t1[k] - t0[k]) + (t2[k] - t0[k])) for k in t0})


def test_task_arithmetic_default_scale_is_one(fno_trio):
    anchor, low, high = fno_trio
    default = nm.merge("task_arithmetic", anchor=anchor, experts=[low, high])
    explicit = nm.merge("task_arithmetic", anchor=anchor, experts=[low, high], scale=1.0)
    assert_state(default, tensors(explicit))


@pytest.mark.parametrize("transform,mu,expected", [("linear", 3.0, 3.0), ("log", 8.0, 2.0), ("linear", 1.5, 0.0)])
def test_ccm_coord_reads_alpha_from_the_normalized_coordinate(fno_trio, transform, mu, expected):
    anchor, low, high = fno_trio
    low_coord, high_coord = (1.0, 2.0) if transform == "linear" else (1.0, 4.0)
    merged = nm.merge(
        "ccm_coord", anchor=anchor, experts=[low, high], mu=mu, low_coord=low_coord, high_coord=high_coord,
        transform=transform,
    )
    assert merged.provenance["alpha"] == pytest.approx(expected)
    assert_state(merged, hand_line(anchor, low, high, expected))


def test_ccm_coord_with_calibration_bank_applies_the_fitted_affine_map(fno_trio):
    anchor, low, high = fno_trio
    # bank on coordinates c = -1, 1, 3 (mu = 1, 2, 3) with alpha = 0.5c + 0.25 exactly
    bank = [(1.0, -0.25), (2.0, 0.75), (3.0, 1.75)]
    merged = nm.merge(
        "ccm_coord", anchor=anchor, experts=[low, high], mu=4.0, low_coord=1.0, high_coord=2.0, calibration=bank
    )
    assert merged.provenance["alpha"] == pytest.approx(0.5 * 5.0 + 0.25)


def test_merge_never_modifies_its_inputs(fno_trio):
    before = [tensors(m) for m in fno_trio]
    anchor, low, high = fno_trio
    for strategy, params in [("fixed_alpha", {"alpha": 1.7}), ("task_arithmetic", {"scale": 0.3})]:
        merged = nm.merge(strategy, anchor=anchor, experts=[low, high], **params)
        with torch.no_grad():
            for parameter in merged.parameters():
                parameter.add_(1.0)  # the result must not share storage with an input
    for model, state in zip(fno_trio, before):
        for key, value in tensors(model).items():
            assert torch.equal(value, state[key]), key


def test_result_has_the_class_device_dtype_and_mode_of_the_anchor(fno_trio):
    anchor, low, high = (m.eval() for m in fno_trio)
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.2)
    assert type(merged) is type(anchor) and not merged.training
    assert {k: v.dtype for k, v in tensors(merged).items()} == {k: v.dtype for k, v in tensors(anchor).items()}
    assert {t.device for t in tensors(merged).values()} == {torch.device("cpu")}
    assert torch.isfinite(merged(torch.randn(2, 1, 16, 16))).all()


def test_frozen_tensors_stay_bit_identical_when_experts_record_their_trainable_subset(fno_trio):
    anchor, low, high = fno_trio
    trainable = ["fno_blocks.convs.0.weight.tensor"]
    frozen_low, frozen_high = tensors(anchor), tensors(anchor)
    frozen_low[trainable[0]] = tensors(low)[trainable[0]]
    frozen_high[trainable[0]] = tensors(high)[trainable[0]]
    low.load_state_dict(frozen_low)
    high.load_state_dict(frozen_high)
    for expert in (low, high):
        expert.provenance = {"trainable": trainable}
    merged = tensors(nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=2.7))
    for key, value in tensors(anchor).items():
        if key != trainable[0]:
            assert torch.equal(merged[key], value), key
    assert not torch.equal(merged[trainable[0]], tensors(anchor)[trainable[0]])


def test_provenance_records_strategy_coefficients_and_input_fingerprints(fno_trio):
    anchor, low, high = fno_trio
    merged = nm.merge("fixed_alpha", anchor=anchor, experts=[low, high], alpha=0.5)
    record = merged.provenance
    assert record["strategy"] == "fixed_alpha" and record["alpha"] == 0.5
    assert record["coefficients"] == {"anchor": 0.0, "experts": [0.25, 0.75]}
    assert [i["fingerprint"] for i in record["inputs"]] == [nm.fingerprint(m) for m in fno_trio]
    assert math.isclose(sum(record["coefficients"]["experts"]) + record["coefficients"]["anchor"], 1.0)
