"""Shallow-water dam break: conservation, well-balance, symmetry and positivity."""

import pytest
import torch

from neuralop_merge import families
from neuralop_merge.errors import SimulationError

FAMILY = families.get("dam_break")


def _rotate(state: torch.Tensor) -> torch.Tensor:
    """Rotate ``(h, hu, hv)`` fields by +90 degrees: positions and the velocity vector together.

    ``torch.rot90`` maps ``f(x, y)`` to ``f(y, -x)`` on the symmetric cell-centred grid,
    i.e. a counter-clockwise rotation, under which ``(u, v)`` becomes ``(-v, u)``.
    """
    h, hu, hv = (torch.rot90(state[..., c, :, :], 1, dims=(-2, -1)) for c in range(3))
    return torch.stack((h, -hv, hu), dim=-3)


def test_mass_is_conserved_to_round_off_while_the_bore_is_inside():
    initial = FAMILY.dam_state(64, torch.zeros(1, 2), 2.0, dtype=torch.float64)
    trajectory = FAMILY.simulate(initial, 2.0, n_frames=10)  # t = 0.5
    mass = trajectory[0, :, 0].sum(dim=(-2, -1))
    assert float(((mass - mass[0]) / mass[0]).abs().max()) < 1e-13


def test_lake_at_rest_stays_at_rest():
    lake = torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    lake[:, 0] = 1.7
    trajectory = FAMILY.simulate(lake, 1.7, n_frames=3)
    assert torch.equal(trajectory[0, -1], lake[0])


def test_centred_dam_stays_symmetric_under_90_degree_rotation():
    initial = FAMILY.dam_state(32, torch.zeros(1, 2), 2.0, dtype=torch.float64)
    trajectory = FAMILY.simulate(initial, 2.0, n_frames=6)
    assert float(trajectory[:, -1, 1:].abs().max()) > 0.1, "the dam must actually break"
    assert float((_rotate(trajectory) - trajectory).abs().max()) < 1e-12


def test_solver_commutes_with_rotation_for_off_centre_dams():
    initial = FAMILY.sample_initial(2, 32, seed=3, dtype=torch.float64)
    rotated_first = FAMILY.simulate(_rotate(initial), n_frames=3)
    rotated_after = _rotate(FAMILY.simulate(initial, n_frames=3))
    assert float((rotated_first - rotated_after).abs().max()) < 1e-12


@pytest.mark.parametrize("h_in", [0.02, 8.0])
def test_depth_stays_positive_for_strong_dams(h_in):
    initial = FAMILY.dam_state(32, torch.zeros(1, 2), {"h_in": h_in, "r0": 1.0})
    trajectory = FAMILY.simulate(initial, {"h_in": h_in, "r0": 1.0}, n_frames=10)
    assert float(trajectory[:, :, 0].min()) > 0
    assert torch.isfinite(trajectory).all()


def test_bore_height_and_reach_grow_with_the_inner_depth():
    """A higher dam sends out a higher, faster bore (radial profile along y = 0)."""
    radii, heights = [], []
    for h_in in (1.5, 3.0):
        initial = FAMILY.dam_state(64, torch.zeros(1, 2), h_in, dtype=torch.float64)
        profile = FAMILY.simulate(initial, h_in, n_frames=10)[0, -1, 0, 32:, 32]
        heights.append(float(profile.max()))
        radii.append(int(profile.argmax()))
    assert heights[1] > heights[0] > 1.0
    assert radii[1] > radii[0]


def test_initial_dam_is_deterministic_and_seed_only_moves_the_centre():
    x, y = FAMILY.grid(32, dtype=torch.float64)
    for seed in (0, 1):
        state = FAMILY.sample_initial(4, 32, param=2.5, seed=seed, dtype=torch.float64)
        volume = ((state[:, 0] - 1.0) * (x[1, 0] - x[0, 0]) ** 2).sum(dim=(-2, -1))
        # (h_in - 1) times the disc area, up to the sub-cell quadrature of the rim.
        assert torch.allclose(volume, torch.full_like(volume, 1.5 * torch.pi * 0.25), rtol=2e-2)
        assert torch.equal(state[:, 1:], torch.zeros_like(state[:, 1:]))
        centre_x = ((state[:, 0] - 1) * x).sum(dim=(-2, -1)) / (state[:, 0] - 1).sum(dim=(-2, -1))
        assert float(centre_x.abs().max()) <= FAMILY.centre_jitter + 0.02


def test_cfl_collapse_raises_naming_the_frame():
    initial = FAMILY.dam_state(32, torch.zeros(1, 2), 1e9)
    with pytest.raises(SimulationError, match=r"dam_break \(h_in=1e\+09, r0=0.5\): CFL step .* at frame 1"):
        FAMILY.simulate(initial, 1e9, n_frames=1)
