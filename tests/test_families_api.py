"""Registry, parameter axes, validation and determinism shared by all families."""

import math

import pytest
import torch

from neuralop_merge import families
from neuralop_merge.errors import SimulationError
from neuralop_merge.families import Family, ParameterAxis

NAMES = ["diffreact", "ns2d", "dam_break"]
CHANNELS = {"diffreact": 2, "ns2d": 1, "dam_break": 3}


def test_registry_lists_three_families():
    assert families.available() == sorted(NAMES)
    assert all(isinstance(families.get(name), Family) for name in NAMES)
    with pytest.raises(SimulationError, match="unknown family"):
        families.get("burgers")


def test_parameter_axes_follow_the_issue():
    axes = {name: families.get(name).parameter for name in NAMES}
    assert (axes["diffreact"].name, axes["diffreact"].default, axes["diffreact"].transform) == ("Du", 1e-3, "log")
    assert (axes["ns2d"].name, axes["ns2d"].default, axes["ns2d"].transform) == ("nu", 1e-3, "log")
    assert (axes["dam_break"].name, axes["dam_break"].default) == ("h_in", 2.0)
    assert families.get("diffreact").axis_names == ("Du", "Dv", "k")
    assert families.get("dam_break").axis_names == ("h_in", "r0")


def test_spaced_values_are_even_in_the_axis_coordinate():
    axis = ParameterAxis("nu", 1e-3, "log", low=0.0)
    values = axis.spaced(1e-4, 1e-2, 3)
    assert values == pytest.approx([1e-4, 1e-3, 1e-2], rel=1e-12)
    assert axis.from_coordinate(axis.to_coordinate(3e-3)) == pytest.approx(3e-3)


@pytest.mark.parametrize(
    "name, param, pattern",
    [
        ("ns2d", -1e-3, "nu=-0.001"),
        ("dam_break", 0.0, "h_in=0.0"),
        ("dam_break", {"r0": 3.0}, "r0=3.0"),
        ("diffreact", {"Dk": 1.0}, "unknown parameter"),
        ("diffreact", math.nan, "Du=nan"),
    ],
)
def test_bad_parameters_name_family_and_parameter(name, param, pattern):
    family = families.get(name)
    initial = family.sample_initial(1, 8)
    with pytest.raises(SimulationError, match=pattern) as error:
        family.simulate(initial, param, n_frames=1)
    assert name in str(error.value)


@pytest.mark.parametrize("name", NAMES)
def test_bad_resolution_options_and_state_are_rejected(name):
    family = families.get(name)
    with pytest.raises(SimulationError, match="resolution"):
        family.sample_initial(2, 2)
    initial = family.sample_initial(1, 8)
    with pytest.raises(SimulationError, match="unknown simulate option"):
        family.simulate(initial, n_frames=1, substeps=3)
    with pytest.raises(SimulationError, match="channels"):
        family.simulate(torch.zeros(1, 5, 8, 8), n_frames=1)
    with pytest.raises(SimulationError, match="float32 or float64"):
        family.simulate(initial.half(), n_frames=1)


@pytest.mark.parametrize("name", NAMES)
def test_simulate_shape_dtype_and_frame_zero(name):
    family = families.get(name)
    for dtype in (torch.float32, torch.float64):
        initial = family.sample_initial(2, 16, seed=1, dtype=dtype)
        trajectory = family.simulate(initial, n_frames=2, dt_frame=family.default_dt_frame / 4)
        assert trajectory.shape == (2, 3, CHANNELS[name], 16, 16)
        assert trajectory.dtype == dtype
        assert torch.equal(trajectory[:, 0], initial)
        assert not torch.equal(trajectory[:, 1], initial)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_make_data_reproducible_and_distinct(name):
    family = families.get(name)
    first = family.sample_initial(3, 16, seed=5)
    assert torch.equal(first, family.sample_initial(3, 16, seed=5))
    assert not torch.allclose(first, family.sample_initial(3, 16, seed=6))
    assert not torch.allclose(first[0], first[1]), "trajectories of one regime must differ"
    rollout = family.simulate(first, n_frames=1, dt_frame=family.default_dt_frame / 4)
    assert torch.equal(rollout, family.simulate(first, n_frames=1, dt_frame=family.default_dt_frame / 4))


@pytest.mark.parametrize(
    "name, low, high",
    [("diffreact", 2.5e-4, 4e-3), ("ns2d", 1e-3, 1e-2), ("dam_break", 1.5, 3.0)],
)
def test_primary_parameter_visibly_changes_default_frames(name, low, high):
    """Over the default frame spacing at 32^2 the regimes differ by more than 5 %.

    The same seed is used for both regimes (dam_break's h_in enters through the initial state).
    """
    family = families.get(name)
    n_frames = 8
    slow, fast = (
        family.simulate(family.sample_initial(2, 32, param=value, seed=0), value, n_frames=n_frames)[:, -1]
        for value in (low, high)
    )
    difference = float((slow - fast).norm() / slow.norm())
    print(f"{name}: relative difference after {n_frames} default frames = {difference:.3f}")
    assert difference > 0.05
