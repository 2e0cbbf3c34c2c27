"""Navier-Stokes on the torus: exact viscous decay, Euler steady states, forcing, initial field."""

import math

import pytest
import torch

from neuralop_merge import families
from neuralop_merge.families.ns2d import resample_spectrum, torus_wavenumbers

FAMILY = families.get("ns2d")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_single_fourier_mode_decays_at_the_viscous_rate(dtype):
    x, y = FAMILY.grid(32, dtype=torch.float64)
    wavevector = (2, -3)
    initial = torch.sin(2 * math.pi * (wavevector[0] * x + wavevector[1] * y)).view(1, 1, 32, 32)
    nu, dt_frame = 2e-3, 0.5
    trajectory = FAMILY.simulate(initial.to(dtype), nu, n_frames=4, dt_frame=dt_frame, forcing=False)
    for frame in range(1, 5):
        decay = math.exp(-nu * 4 * math.pi**2 * sum(k * k for k in wavevector) * frame * dt_frame)
        expected = decay * initial[0, 0]
        error = (trajectory[0, frame, 0].double() - expected).norm() / expected.norm()
        assert float(error) < 1e-5


def test_taylor_green_like_state_is_a_steady_state_of_the_euler_part():
    """Modes of one |k| shell have u . grad w = 0: only viscous decay remains, to round-off."""
    x, y = FAMILY.grid(32, dtype=torch.float64)
    two_pi = 2 * math.pi
    shell = torch.sin(two_pi * x) * torch.cos(2 * two_pi * y) + torch.cos(2 * two_pi * x) * torch.sin(two_pi * y)
    initial = 3.0 * shell
    nu, duration = 1e-3, 2.0
    trajectory = FAMILY.simulate(initial.view(1, 1, 32, 32), nu, n_frames=2, dt_frame=duration / 2, forcing=False)
    decay = math.exp(-nu * 4 * math.pi**2 * 5 * duration)
    error = (trajectory[0, -1, 0] - decay * initial).abs().max() / initial.abs().max()
    assert float(error) < 1e-10


def _equilibrium_drift(dt_frame: float) -> float:
    """Relative drift over t = 2 of w = f / (8 pi^2 nu), which balances the forcing exactly."""
    nu = 1e-2
    equilibrium = FAMILY.forcing(16, dtype=torch.float64) / (8 * math.pi**2 * nu)
    trajectory = FAMILY.simulate(equilibrium.view(1, 1, 16, 16), nu, n_frames=round(2 / dt_frame), dt_frame=dt_frame)
    return float((trajectory[0, -1, 0] - equilibrium).abs().max() / equilibrium.abs().max())


def test_forced_viscous_equilibrium_is_kept_at_high_order():
    """The integrating factor treats the forcing with SSP-RK3, so the equilibrium drifts at O(dt^3) or better."""
    # Frames short enough that neither the advective CFL nor the viscous exponent cap sets the step.
    drifts = [_equilibrium_drift(dt_frame) for dt_frame in (0.25, 0.125, 0.0625)]
    orders = [math.log2(coarse / fine) for coarse, fine in zip(drifts, drifts[1:])]
    print(f"ns2d forced-equilibrium drifts {drifts}, observed orders {orders}")
    assert drifts[-1] < 1e-7
    assert all(order > 2.8 for order in orders)


def test_forcing_drives_a_fluid_at_rest_at_the_forcing_rate():
    """From rest, w(t) = f (1 - exp(-8 pi^2 nu t)) / (8 pi^2 nu) since advection stays zero."""
    nu, dt_frame = 1e-3, 0.25
    at_rest = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    final = FAMILY.simulate(at_rest, nu, n_frames=4, dt_frame=dt_frame)[0, -1, 0]
    rate = 8 * math.pi**2 * nu
    expected = FAMILY.forcing(16, dtype=torch.float64) * (1 - math.exp(-rate * 4 * dt_frame)) / rate
    assert float((final - expected).abs().max() / expected.abs().max()) < 1e-9


def test_initial_vorticity_is_a_zero_mean_field_with_the_reference_spectrum():
    samples = FAMILY.sample_initial(64, 32, seed=0, dtype=torch.float64)[:, 0]
    assert float(samples.mean(dim=(-2, -1)).abs().max()) < 1e-12
    power = (torch.fft.rfft2(samples).abs() ** 2).mean(dim=0) / 32**4
    kx, ky = torus_wavenumbers(32, device=None, dtype=torch.float64)
    expected = 2 * 7.0**3 * (kx**2 + ky**2 + 49.0) ** -2.5
    # Interior rfft columns stand for two conjugate modes of the real field.
    for mode in [(1, 0), (0, 1), (2, 3), (5, 1)]:
        ratio = float(power[mode] / expected[mode])
        assert 0.5 < ratio < 1.6, (mode, ratio)


def test_spectral_resampling_is_exact_for_band_limited_fields():
    x, y = FAMILY.grid(16, dtype=torch.float64)
    field = torch.sin(2 * math.pi * (3 * x - 2 * y)) + torch.cos(2 * math.pi * 5 * y)
    fine = torch.fft.irfft2(resample_spectrum(torch.fft.rfft2(field), 48), s=(48, 48))
    fine_x, fine_y = FAMILY.grid(48, dtype=torch.float64)
    expected = torch.sin(2 * math.pi * (3 * fine_x - 2 * fine_y)) + torch.cos(2 * math.pi * 5 * fine_y)
    assert float((fine - expected).abs().max()) < 1e-12
    back = torch.fft.irfft2(resample_spectrum(torch.fft.rfft2(fine), 16), s=(16, 16))
    assert float((back - field).abs().max()) < 1e-12


def test_small_viscosity_is_simulated_on_a_finer_grid():
    assert FAMILY.simulation_resolution(32, 1e-3) == 32
    assert FAMILY.simulation_resolution(32, 1e-4) == 64
    assert FAMILY.simulation_resolution(32, 1e-5) == 128
    initial = FAMILY.sample_initial(1, 16, seed=0, dtype=torch.float64)
    coarse = FAMILY.simulate(initial, 1e-3, n_frames=1, sim_resolution=16)
    refined = FAMILY.simulate(initial, 1e-3, n_frames=1, sim_resolution=32)
    assert refined.shape == coarse.shape
    # 16^2 is coarse for nu = 1e-3; the refined run differs only by unresolved scales.
    assert float((refined - coarse).norm() / coarse.norm()) < 2e-2


@pytest.mark.parametrize("nu", [1e-3, 4e-3, 8e-3, 1.6e-2])
def test_float32_follows_float64_over_twenty_frames_at_every_viscosity(nu):
    # The integrating factor's half-step inverse exp(+nu |k|^2 dt / 2) amplifies round-off; the
    # viscous exponent cap keeps it small enough for float32 to follow the float64 solution.
    initial = FAMILY.sample_initial(1, 64, seed=0, dtype=torch.float64)
    exact = FAMILY.simulate(initial, nu, n_frames=20)
    single = FAMILY.simulate(initial.float(), nu, n_frames=20).double()
    assert float((single - exact).norm() / exact.norm()) <= 1e-4
