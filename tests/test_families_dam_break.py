"""Shallow-water dam break: exact Riemann solutions, conservation, well-balance, symmetry, positivity."""

import pytest
import torch

from neuralop_merge import families
from neuralop_merge.errors import SimulationError
from neuralop_merge.families.riemann import RiemannProblem

FAMILY = families.get("dam_break")


def _rotate(state: torch.Tensor) -> torch.Tensor:
    """Rotate ``(h, hu, hv)`` fields by +90 degrees: positions and the velocity vector together.

    ``torch.rot90`` maps ``f(x, y)`` to ``f(y, -x)`` on the symmetric cell-centred grid,
    i.e. a counter-clockwise rotation, under which ``(u, v)`` becomes ``(-v, u)``.
    """
    h, hu, hv = (torch.rot90(state[..., c, :, :], 1, dims=(-2, -1)) for c in range(3))
    return torch.stack((h, -hv, hu), dim=-3)


def _planar_dam(resolution: int, h_left: float, h_right: float) -> torch.Tensor:
    """A straight dam along x = 0 at rest: depth ``h_left`` for x < 0 and ``h_right`` for x > 0."""
    x, _ = FAMILY.grid(resolution, dtype=torch.float64)
    state = torch.zeros(1, 3, resolution, resolution, dtype=torch.float64)
    state[:, 0] = torch.where(x < 0, h_left, h_right)
    return state


def _planar_l1_error(resolution: int, h_left: float, h_right: float, n_frames: int) -> float:
    """L1 distance, integrated over x, of the depth along one grid line to the exact cell averages."""
    time = n_frames * FAMILY.default_dt_frame
    depth = FAMILY.simulate(_planar_dam(resolution, h_left, h_right), n_frames=n_frames)[0, -1, 0]
    exact, _ = RiemannProblem(h_left, h_right).cell_averages(*FAMILY.domain, resolution, time)
    # A planar wave must stay planar: every grid line along x carries the same profile.
    assert float((depth - depth[:, :1]).abs().max()) < 1e-12
    spacing = (FAMILY.domain[1] - FAMILY.domain[0]) / resolution
    return float((depth[:, 0] - exact).abs().sum()) * spacing


def test_exact_riemann_solution_obeys_the_jump_and_invariant_conditions():
    problem = RiemannProblem(2.0, 1.0)
    star_depth, star_velocity = problem.star_state()
    assert 1.0 < star_depth < 2.0 and star_velocity > 0
    # Left rarefaction: the Riemann invariant u + 2 sqrt(g h) is the same on both sides.
    assert abs(star_velocity + 2 * star_depth**0.5 - 2 * 2.0**0.5) < 1e-12
    # Right shock: mass and momentum fluxes balance in the shock's frame (Rankine-Hugoniot).
    speeds = torch.linspace(0.5, 2.0, 20001, dtype=torch.float64)
    depth, velocity = problem.sample(speeds)
    shock = float(speeds[int((depth > 1.0 + 1e-9).sum()) - 1])
    assert abs(shock * (star_depth - 1.0) - star_depth * star_velocity) < 1e-3
    momentum_jump = star_depth * star_velocity**2 + 0.5 * star_depth**2 - 0.5
    assert abs(shock * star_depth * star_velocity - momentum_jump) < 1e-3
    assert float(depth[-1]) == 1.0 and float(velocity[-1]) == 0.0


def test_exact_riemann_solution_mirrors_under_reflection():
    speeds = torch.linspace(-2.0, 2.0, 401, dtype=torch.float64)
    depth, velocity = RiemannProblem(2.0, 1.2, u_left=0.3, u_right=-0.1).sample(speeds)
    mirrored_depth, mirrored_velocity = RiemannProblem(1.2, 2.0, u_left=0.1, u_right=-0.3).sample(-speeds)
    assert torch.allclose(depth, mirrored_depth, atol=1e-12)
    assert torch.allclose(velocity, -mirrored_velocity, atol=1e-12)


def test_planar_dam_break_matches_the_exact_riemann_solution_at_128():
    """The issue's accuracy target: L1 <= 1.2e-2 at N = 128, t = 1 (the old minmod-HLLE scheme gave 3.5e-2)."""
    assert _planar_l1_error(128, 2.0, 1.0, n_frames=20) <= 1.2e-2


def test_planar_dam_break_error_halves_when_the_grid_is_refined():
    coarse, fine = _planar_l1_error(32, 3.0, 1.0, 10), _planar_l1_error(64, 3.0, 1.0, 10)
    assert fine < 0.6 * coarse


def test_planar_dam_break_along_y_is_the_rotated_x_solution():
    initial = _planar_dam(32, 2.0, 1.0)
    along_x = FAMILY.simulate(initial, n_frames=5)
    along_y = FAMILY.simulate(_rotate(initial), n_frames=5)
    assert float((_rotate(along_x) - along_y).abs().max()) < 1e-12


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
    initial = FAMILY.dam_state(32, torch.zeros(1, 2), 1e10)
    with pytest.raises(SimulationError, match=r"dam_break \(h_in=1e\+10, r0=0.5\): CFL step .* at frame 1"):
        FAMILY.simulate(initial, 1e10, n_frames=1)


def test_r0_range_draws_each_radius_from_the_seed_within_the_range():
    varied = families.get("dam_break", r0_range=(0.3, 0.8))
    x, _ = varied.grid(64, dtype=torch.float64)
    states = varied.sample_initial(16, 64, param=2.0, seed=5, dtype=torch.float64)
    area = ((states[:, 0] - 1.0) * (x[1, 0] - x[0, 0]) ** 2).sum(dim=(-2, -1))  # (h_in - 1) * pi r0^2
    radii = (area / torch.pi) ** 0.5
    assert float(radii.min()) > 0.3 - 0.02 and float(radii.max()) < 0.8 + 0.02
    assert float(radii.std()) > 0.05, "radii must differ between trajectories"
    assert torch.equal(states, varied.sample_initial(16, 64, param=2.0, seed=5, dtype=torch.float64))
    # The centres are drawn first, exactly as without a range.
    fixed = FAMILY.sample_initial(16, 64, param=2.0, seed=5, dtype=torch.float64)
    centre = ((states[:, 0] - 1) * x).sum(dim=(-2, -1)) / (states[:, 0] - 1).sum(dim=(-2, -1))
    fixed_centre = ((fixed[:, 0] - 1) * x).sum(dim=(-2, -1)) / (fixed[:, 0] - 1).sum(dim=(-2, -1))
    assert torch.allclose(centre, fixed_centre, atol=0.03)


def test_r0_range_is_part_of_the_data_set_cache_key(tmp_path):
    fixed = FAMILY.dataset([2.0], 2, 16, 1, seed=0, cache_dir=str(tmp_path))
    varied = families.get("dam_break", r0_range=(0.3, 0.8)).dataset([2.0], 2, 16, 1, seed=0, cache_dir=str(tmp_path))
    assert not torch.equal(fixed.trajectories, varied.trajectories)
    assert len(list(tmp_path.glob("dam_break-*.pt"))) == 2


@pytest.mark.parametrize("bad", [(0.8, 0.3), (0.0, 0.5), (0.3,), "wide"])
def test_invalid_r0_range_raises_one_line(bad):
    with pytest.raises(SimulationError, match=r"dam_break: (r0_range|parameter r0)"):
        families.get("dam_break", r0_range=bad)
