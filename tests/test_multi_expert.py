"""Multi-expert CCM: the least-squares merge surface through K experts on d axes."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import conv_experts, tensors, tiny_fno

import neuralop_merge as nm
from neuralop_merge.ccm import CCM
from neuralop_merge.errors import TrainingError
from neuralop_merge.geometry import LeastSquaresFit
from neuralop_merge.rollout import rollout
from neuralop_merge.strategies.ccm_fit import CCMFit
from neuralop_merge.surface import CCMSurface
from neuralop_merge.weights import fingerprint


def with_tensors(template, state: dict[str, torch.Tensor]):
    model = copy.deepcopy(template)
    model.load_state_dict(state, strict=False)
    return model


def polynomial_experts(coords: list[np.ndarray], quadratic_scale: float = 0.0, seed: int = 0):
    """θ0 and experts θᵢ = θ0 + A + B·cᵢ (+ s·Q·cᵢ₀²) with random A, B, Q; also the truth θ(c)."""
    anchor = tiny_fno(seed)
    base = tensors(anchor)
    generator = torch.Generator().manual_seed(seed + 100)
    d = len(coords[0])

    def randn_like(t):
        if t.is_complex():
            return torch.complex(*(torch.randn(t.shape, generator=generator) for _ in range(2))).to(t.dtype) * 0.1
        return torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.1

    terms = {k: (randn_like(v), [randn_like(v) for _ in range(d)], randn_like(v)) for k, v in base.items()}

    def truth(c) -> dict[str, torch.Tensor]:
        c = np.asarray(c, dtype=np.float64)
        return {
            k: base[k] + a + sum(float(cj) * bj for cj, bj in zip(c, b)) + quadratic_scale * float(c[0]) ** 2 * q
            for k, (a, b, q) in terms.items()
        }

    experts = {f"e{i}": with_tensors(anchor, truth(c)) for i, c in enumerate(coords)}
    return anchor, experts, truth


def assert_model_close(model, expected: dict[str, torch.Tensor], **tolerances) -> None:
    merged = tensors(model)
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, **tolerances)


# -- reduction to the two-endpoint line ---------------------------------------------------
@pytest.mark.parametrize("transform", ["linear", "log"])
def test_two_experts_on_one_axis_is_exactly_the_line(fno_trio, transform):
    anchor, low, high = fno_trio
    ccm = CCM(anchor, low, high, low_coord=1e-3, high_coord=4e-3, transform=transform)
    surface = CCMSurface(anchor, {"low": low, "high": high}, {"low": 1e-3, "high": 4e-3}, transform=transform)
    assert surface.normalized_coords.tolist() == [[-1.0], [1.0]]
    for alpha in (-1.0, 0.0, 0.37, 1.0, 2.5, -2.9):
        assert surface.plan(alpha).anchor_coefficient == 0.0
        assert surface.weights(alpha) == ccm.plan(alpha).expert_coefficients
        line, fitted = tensors(ccm.at(alpha)), tensors(surface.at(alpha))
        assert all(torch.equal(fitted[k], v) for k, v in line.items())
    for mu in (2e-3, 8e-3):
        assert surface.coordinate(mu)[0] == pytest.approx(ccm.coordinate(mu))
        assert all(torch.equal(tensors(surface.from_coord(mu))[k], v) for k, v in tensors(ccm.from_coord(mu)).items())
    residual = surface.fit_residuals()
    assert residual[-1].name == "<overall>" and residual[-1].relative_total == 0.0


def test_one_axis_prefix_search_matches_the_line():
    anchor, (low, high) = conv_experts(2)[0], conv_experts(2)[1].values()
    ccm = CCM(anchor, low, high, low_coord=1.0, high_coord=2.0)
    surface = CCMSurface(anchor, {"low": low, "high": high}, {"low": 1.0, "high": 2.0})
    torch.manual_seed(0)
    frames = rollout(ccm.at(0.75), torch.randn(2, 1, 16, 16), 2)
    line = ccm.from_prefix(frames, method="grid", n_grid=9)
    fitted = surface.from_prefix(frames, method="grid", n_grid=9)
    assert fitted.coordinate == (line.alpha,) == (0.75,)
    assert fitted.errors.tolist() == line.errors.tolist()


# -- exact recovery of affine and quadratic experts -----------------------------------------
def test_three_affine_experts_are_recovered_exactly_with_zero_residual():
    coords = [np.array([c]) for c in (-1.0, 0.2, 1.0)]
    anchor, experts, truth = polynomial_experts(coords)
    physical = {"e0": 1.0, "e1": 1.6, "e2": 2.0}  # linear axis: c = 2(μ − 1.5)/1 → −1, 0.2, 1
    surface = CCMSurface(anchor, experts, physical)
    np.testing.assert_allclose(surface.normalized_coords[:, 0], [-1.0, 0.2, 1.0], atol=1e-12)
    assert sum(surface.weights(2.7)) == pytest.approx(1.0)
    assert_model_close(surface.at(2.7), truth([2.7]), rtol=1e-5, atol=1e-5)
    assert_model_close(surface.from_coord(1.25), truth([-0.5]), rtol=1e-5, atol=1e-5)
    rows = surface.fit_residuals()
    assert {row.name for row in rows[:-1]} == {k.removesuffix(".tensor") for k in tensors(anchor)}
    assert all(row.relative_total < 1e-5 for row in rows)


def test_residual_is_positive_for_experts_off_the_line_and_matches_hand_least_squares():
    coords = [np.array([c]) for c in (-1.0, 0.0, 1.0)]
    anchor, experts, _ = polynomial_experts(coords, quadratic_scale=1.0)
    surface = CCMSurface(anchor, experts, {"e0": -1.0, "e1": 0.0, "e2": 1.0})
    rows = {row.name: row for row in surface.fit_residuals()}
    key = "projection.fcs.1.weight"
    deltas = np.stack([(tensors(e)[key] - tensors(anchor)[key]).double().reshape(-1).numpy() for e in experts.values()])
    design = np.array([[1.0, -1.0], [1.0, 0.0], [1.0, 1.0]])
    coefficients, *_ = np.linalg.lstsq(design, deltas, rcond=None)
    by_hand = np.linalg.norm(deltas - design @ coefficients, axis=1)
    np.testing.assert_allclose(rows[key].residual_norms, by_hand, rtol=1e-6)
    np.testing.assert_allclose(rows[key].relative, by_hand / np.linalg.norm(deltas, axis=1), rtol=1e-6)
    assert rows["<overall>"].relative_total > 0.01


def test_quadratic_option_recovers_quadratic_experts():
    coords = [np.array([c]) for c in (-1.0, 0.0, 1.0)]
    anchor, experts, truth = polynomial_experts(coords, quadratic_scale=1.0)
    physical = {"e0": -1.0, "e1": 0.0, "e2": 1.0}
    quadratic = CCMSurface(anchor, experts, physical, quadratic=True)
    assert_model_close(quadratic.at(2.0), truth([2.0]), rtol=1e-5, atol=1e-5)
    assert CCMSurface(anchor, experts, physical, quadratic="auto").fit.quadratic
    affine = CCMSurface(anchor, experts, physical)
    assert not torch.allclose(tensors(affine.at(2.0))["projection.fcs.1.weight"], truth([2.0])["projection.fcs.1.weight"])
    with pytest.raises(nm.StrategyError, match="needs at least 3 experts"):
        CCMSurface(anchor, {k: experts[k] for k in ("e0", "e2")}, physical, quadratic=True)


def test_quadratic_in_two_axes_needs_six_experts():
    fit = LeastSquaresFit(np.array([[-1, -1], [1, -1], [-1, 1], [1, 1], [0, 0], [0.5, -0.3]]), quadratic=True)
    c = np.array([0.3, -0.7])
    q = lambda p: 1 + 2 * p[0] - p[1] + 0.5 * p[0] * p[1] + p[0] ** 2 - 3 * p[1] ** 2  # noqa: E731
    assert sum(w * q(ci) for w, ci in zip(fit.weights(c), fit.coordinates)) == pytest.approx(q(c))
    assert not LeastSquaresFit(fit.coordinates[:5], quadratic="auto").quadratic


# -- two axes -----------------------------------------------------------------------------------
def two_axis_experts():
    # normalized corners of the box plus the centre; Du on a log axis, k linear
    coords = [np.array(c) for c in ([-1, -1], [1, -1], [-1, 1], [1, 1], [0, 0])]
    anchor, experts, truth = polynomial_experts(coords)
    du = {-1: 1e-3, 0: 2e-3, 1: 4e-3}
    k = {-1: 0.0, 0: 0.01, 1: 0.02}
    physical = {name: {"Du": du[int(c[0])], "k": k[int(c[1])]} for name, c in zip(experts, coords)}
    return anchor, experts, truth, physical


def test_two_axis_from_coord_with_per_axis_transforms():
    anchor, experts, truth, physical = two_axis_experts()
    surface = CCMSurface(anchor, experts, physical, transform={"Du": "log"})
    assert surface.axis_names == ("Du", "k")
    target = {"Du": 8e-3, "k": 0.005}  # c = (2, −0.5): extrapolates in Du
    np.testing.assert_allclose(surface.coordinate(target), [2.0, -0.5], atol=1e-12)
    model = surface.from_coord(target)
    assert_model_close(model, truth([2.0, -0.5]), rtol=1e-5, atol=1e-5)
    assert model.provenance["mu"] == target and model.provenance["strategy"] == "ccm_fit"
    np.testing.assert_allclose(surface.coordinate([8e-3, 0.005]), [2.0, -0.5], atol=1e-12)
    assert surface.fit_residuals()[-1].relative_total < 1e-5


def test_prefix_search_over_two_axes_recovers_a_known_coordinate():
    torch.manual_seed(0)
    anchor, experts = conv_experts(3)
    coords = {"e0": {"a": 0.0, "b": 0.0}, "e1": {"a": 1.0, "b": 0.0}, "e2": {"a": 0.0, "b": 1.0}}
    surface = CCMSurface(anchor, experts, coords)
    truth = (0.5, -1.0)  # off the 5-point grid in the first axis
    frames = rollout(surface.at(truth), torch.randn(2, 1, 16, 16), 3)
    result = surface.from_prefix(frames, box=[(-2, 2), (-2, 2)], n_grid=5)
    assert result.coordinate == pytest.approx(truth, abs=0.15)
    assert result.n_evaluations > 25 and result.coordinates.shape == (result.n_evaluations, 2)
    assert result.model.provenance["coordinate"] == list(result.coordinate)
    grid_only = surface.from_prefix(frames, box=[(-2, 2), (-2, 2)], n_grid=5, method="grid")
    assert grid_only.n_evaluations == 25 and grid_only.coordinate[1] == -1.0
    with pytest.raises(nm.StrategyError, match="n_coarse sets a one-axis search's coarse scan; this search has 2 axes"):
        surface.from_prefix(frames, box=[(-2, 2), (-2, 2)], n_coarse=5)


# -- construction from experts, and refusals -------------------------------------------------------
def provenance_experts(anchor, n: int, axes: bool = False):
    experts = {}
    for i in range(n):
        expert = tiny_fno(10 + i)
        value = {"Du": 1e-3 * 2**i, "k": 0.01 * (i % 2)} if axes else 1e-3 * 2**i
        expert.provenance = {"kind": "expert", "anchor_fingerprint": fingerprint(anchor),
                             "parameter": {"name": "Du", "value": value}, "regime": f"r{i}"}
        experts[f"r{i}"] = expert
    return experts


def test_from_experts_returns_the_line_for_two_and_the_surface_for_more():
    anchor = tiny_fno(0)
    two = CCM.from_experts(anchor, provenance_experts(anchor, 2), transform={"Du": "log"})
    assert isinstance(two, CCM) and two.transform == "log" and (two.low_coord, two.high_coord) == (1e-3, 2e-3)
    three = CCM.from_experts(anchor, provenance_experts(anchor, 3), transform="log")
    assert isinstance(three, CCMSurface) and three.axis_names == ("Du",)
    np.testing.assert_allclose(three.normalized_coords[:, 0], [-1.0, 0.0, 1.0], atol=1e-12)
    two_axes = CCM.from_experts(anchor, provenance_experts(anchor, 3, axes=True), transform={"Du": "log"})
    assert two_axes.axis_names == ("Du", "k")
    quadratic = CCM.from_experts(anchor, provenance_experts(anchor, 3), quadratic=True)
    assert isinstance(quadratic, CCMSurface) and quadratic.fit.quadratic
    with pytest.raises(TrainingError, match=fingerprint(anchor)):
        CCM.from_experts(tiny_fno(1), provenance_experts(anchor, 3))


def test_from_experts_accepts_multi_axis_coords():
    anchor, experts, truth, physical = two_axis_experts()
    for expert in experts.values():
        expert.provenance = {"anchor_fingerprint": fingerprint(anchor)}
    surface = CCM.from_experts(anchor, experts, coords=physical, transform={"Du": "log"})
    assert_model_close(surface.from_coord({"Du": 2e-3, "k": 0.01}), truth([0.0, 0.0]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "coords,kwargs,match",
    [
        ({"e0": {"a": 0, "b": 0}, "e1": {"a": 1, "b": 1}, "e2": {"a": 2, "b": 2}}, {}, "one line"),
        ({"e0": {"a": 0, "b": 1}, "e1": {"a": 1, "b": 1}, "e2": {"a": 2, "b": 1}}, {}, "constant axis"),
        ({"e0": {"a": 0}, "e1": {"b": 1}, "e2": {"a": 2}}, {}, "different axes"),
        ({"e0": 1.0, "e1": 2.0}, {}, "no entry for expert 'e2'"),
        ({"e0": 1.0, "e1": 2.0, "e2": 3.0}, {"transform": {"nu": "log"}}, "unknown axes"),
        ({"e0": 1.0, "e1": 2.0, "e2": 3.0}, {"quadratic": "yes"}, "quadratic must be"),
    ],
)
def test_surface_refuses_undetermined_or_malformed_coordinates(coords, kwargs, match):
    anchor, experts = tiny_fno(0), {f"e{i}": tiny_fno(i + 1) for i in range(3)}
    with pytest.raises(nm.StrategyError, match=match):
        CCMSurface(anchor, experts, coords, **kwargs)


def test_coordinates_must_name_every_axis():
    anchor, experts, _, physical = two_axis_experts()
    surface = CCMSurface(anchor, experts, physical, transform={"Du": "log"})
    with pytest.raises(nm.StrategyError, match="exactly the axes"):
        surface.from_coord({"Du": 1e-3})
    with pytest.raises(nm.StrategyError, match="2 finite value"):
        surface.at(0.5)


def test_ccm_fit_strategy_through_merge_matches_the_surface():
    anchor, experts = tiny_fno(0), [tiny_fno(i + 1) for i in range(3)]
    surface = CCMSurface(anchor, dict(zip("abc", experts)), {"a": 1.0, "b": 3.0, "c": 4.0})
    merged = nm.merge(CCMFit(), anchor=anchor, experts=experts, expert_coords=[1.0, 3.0, 4.0], target=6.0)
    expected = tensors(surface.from_coord(6.0))
    assert_model_close(merged, expected, rtol=1e-6, atol=1e-6)
    assert math.isclose(sum(merged.provenance["coefficients"]["experts"]), 1.0)


def test_surface_calibration_maps_each_axis_and_is_used_by_from_coord():
    anchor, experts, truth, physical = two_axis_experts()
    surface = CCMSurface(anchor, experts, physical, transform={"Du": "log"})
    # Best coordinates c' = (c_Du + 0.5, 2·c_k): an exact affine map per axis.
    bank = []
    for mu in ({"Du": 1e-3, "k": 0.0}, {"Du": 4e-3, "k": 0.01}, {"Du": 2e-3, "k": 0.005}):
        c = surface.coordinate(mu)
        bank.append((mu, [c[0] + 0.5, 2 * c[1]]))
    maps = surface.calibrate(bank)
    assert [(m.slope, m.intercept) for m in maps] == [pytest.approx((1.0, 0.5)), pytest.approx((2.0, 0.0))]
    target = {"Du": 8e-3, "k": 0.0025}
    expected = surface.coordinate(target) * np.array([1.0, 2.0]) + np.array([0.5, 0.0])
    np.testing.assert_allclose(surface.calibrated_coordinate(target), expected, atol=1e-12)
    model = surface.from_coord(target)
    assert model.provenance["calibrated"] is True
    assert_model_close(model, truth(expected.tolist()), rtol=1e-5, atol=1e-5)


def test_surface_calibration_needs_two_distinct_coordinates_per_axis():
    anchor, experts, _, physical = two_axis_experts()
    surface = CCMSurface(anchor, experts, physical, transform={"Du": "log"})
    with pytest.raises(nm.StrategyError, match="two distinct"):
        surface.calibrate([({"Du": 1e-3, "k": 0.0}, [0.0, 0.0]), ({"Du": 4e-3, "k": 0.0}, [1.0, 0.0])])
