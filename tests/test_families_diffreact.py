"""Diffusion-reaction: the diffusion operator's decay rates and the reaction ODE."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from neuralop_merge import families

DIFFUSIVITY = {"Du": 0.05, "Dv": 0.02}
MODES = {"Du": (2, 1), "Dv": (1, 3)}
DURATION = 1.0


def _neumann_modes(resolution: int) -> tuple[torch.Tensor, dict[str, float], dict[str, float]]:
    """Cosine modes of ``[-1, 1]^2`` as initial (u, v), their exact and discrete decay rates."""
    family = families.get("diffreact")
    x, y = family.grid(resolution, dtype=torch.float64)
    spacing = 2.0 / resolution
    fields, exact, discrete = [], {}, {}
    for name, (m, n) in MODES.items():
        kx, ky = m * math.pi / 2, n * math.pi / 2
        fields.append(torch.cos(kx * (x + 1)) * torch.cos(ky * (y + 1)))
        exact[name] = DIFFUSIVITY[name] * (kx**2 + ky**2)
        symbol = sum(math.sin(k * spacing / 2) ** 2 for k in (kx, ky))
        discrete[name] = DIFFUSIVITY[name] * (2 / spacing) ** 2 * symbol
    return torch.stack(fields).unsqueeze(0), exact, discrete


def _decay_rate_errors(resolution: int) -> tuple[dict[str, float], dict[str, float]]:
    """Relative error of the measured decay rate against the exact and the discrete rate."""
    family = families.get("diffreact")
    initial, exact, discrete = _neumann_modes(resolution)
    final = family.simulate(initial, DIFFUSIVITY, n_frames=1, dt_frame=DURATION, reaction=False)[0, -1]
    measured = {}
    for channel, name in enumerate(MODES):
        amplitude = float((final[channel] * initial[0, channel]).sum() / (initial[0, channel] ** 2).sum())
        measured[name] = -math.log(amplitude) / DURATION
    versus_exact = {name: abs(measured[name] - exact[name]) / exact[name] for name in MODES}
    versus_discrete = {name: abs(measured[name] - discrete[name]) / discrete[name] for name in MODES}
    return versus_exact, versus_discrete


def test_neumann_cosine_modes_decay_at_the_analytic_rate():
    """The stated order is 2 in space: the rate error is within (k dx)^2 / 12 of the exact rate."""
    resolution = 32
    versus_exact, versus_discrete = _decay_rate_errors(resolution)
    spacing = 2.0 / resolution
    for name, (m, n) in MODES.items():
        k_max = max(m, n) * math.pi / 2
        assert versus_exact[name] < (k_max * spacing) ** 2 / 12 * 1.05
        # What remains against the discrete operator's own rate is SSP-RK2's O(dt^2) error.
        assert versus_discrete[name] < 1e-4


def test_decay_rate_converges_at_second_order():
    errors = [_decay_rate_errors(resolution)[0]["Du"] for resolution in (16, 32, 64)]
    orders = [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]
    print(f"diffreact decay-rate errors {errors}, observed orders {orders}")
    assert all(1.9 < order < 2.1 for order in orders)


def _uniform_reaction_error(dt_frame: float) -> float:
    """Max error of a spatially uniform state against the reaction ODE solved to 1e-12."""
    family = families.get("diffreact")
    # Small enough that the stability limit never undercuts dt_frame: the step is exactly dt_frame.
    start = (0.6, -0.2)
    initial = torch.tensor(start, dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, 4, 4).contiguous()
    n_frames = round(2.0 / dt_frame)
    trajectory = family.simulate(initial, n_frames=n_frames, dt_frame=dt_frame)
    assert torch.equal(trajectory, trajectory[..., :1, :1].expand_as(trajectory)), "a uniform state stays uniform"
    k = family.extra_axes[1].default

    def reaction(_, state):
        u, v = state
        return [u - u**3 - k - v, u - v]

    times = np.arange(n_frames + 1) * dt_frame
    reference = solve_ivp(reaction, (0, times[-1]), start, t_eval=times, rtol=1e-12, atol=1e-12, method="DOP853")
    return float(np.abs(trajectory[0, :, :, 0, 0].numpy() - reference.y.T).max())


def test_uniform_state_follows_the_fitzhugh_nagumo_ode_at_second_order():
    coarse, fine = _uniform_reaction_error(0.1), _uniform_reaction_error(0.05)
    order = math.log2(coarse / fine)
    print(f"diffreact reaction ODE errors {coarse:.2e}, {fine:.2e}, observed order {order:.2f}")
    assert fine < 1e-3
    assert 1.7 < order < 2.3


def test_reaction_settles_noise_into_bounded_patterns():
    """Random normal data are pulled into the cubic's bounded range |u| < ~1.5 (no blow-up)."""
    family = families.get("diffreact")
    trajectory = family.simulate(family.sample_initial(2, 16, seed=0), n_frames=8)
    assert float(trajectory[:, 0, 0].abs().max()) > 2.0
    assert float(trajectory[:, -1, 0].abs().max()) < 1.5


def test_unstable_parameters_raise_with_the_frame():
    family = families.get("diffreact")
    with pytest.raises(Exception, match=r"diffreact \(Du=.*substeps.*frame 1"):
        family.simulate(family.sample_initial(1, 64), 100.0, n_frames=1)
