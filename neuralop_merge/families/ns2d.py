"""2D incompressible Navier-Stokes in vorticity form on the unit torus (FNO's benchmark)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterator, Mapping

import torch

from ..errors import SimulationError
from ._numerics import regime_text, substep_count
from .base import Family, FrameRun, ParameterAxis

#: Advective CFL number; with the 2/3 rule the largest advective eigenvalue
#: times dt is then ``0.5 * 2 pi / 3 ~ 1.05``, inside SSP-RK3's imaginary-axis
#: stability interval ``|y| <= sqrt(3)``.
_CFL = 0.5
#: Largest ``nu |k|^2 dt`` allowed, so that the integrating factor's
#: half-step inverse ``exp(+nu |k|^2 dt / 2)`` cannot overflow in float32.
_MAX_VISCOUS_EXPONENT = 20.0


def torus_wavenumbers(
    resolution: int, *, device: torch.device | str | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angular wavenumbers ``(kx [N, 1], ky [1, N//2 + 1])`` of ``rfft2`` on the unit torus."""
    kx = 2 * math.pi * torch.fft.fftfreq(resolution, d=1.0 / resolution, device=device, dtype=dtype)
    ky = 2 * math.pi * torch.fft.rfftfreq(resolution, d=1.0 / resolution, device=device, dtype=dtype)
    return kx.view(-1, 1), ky.view(1, -1)


def resample_spectrum(spectrum: torch.Tensor, resolution: int) -> torch.Tensor:
    """Re-grid an ``rfft2`` spectrum ``[..., M, M//2+1]`` to an ``N x N`` grid.

    Modes resolved on both grids (``|n| < min(M, N) / 2``) are kept and the
    rest are zero, so this is exact zero-padding when refining and a sharp
    spectral truncation when coarsening; the amplitude is rescaled for
    ``irfft2``'s ``1 / N^2`` normalisation.
    """
    source = spectrum.shape[-2]
    if source == resolution:
        return spectrum
    kept = min(source, resolution)
    positive, negative = (kept + 1) // 2, (kept - 1) // 2
    result = spectrum.new_zeros(*spectrum.shape[:-2], resolution, resolution // 2 + 1)
    result[..., :positive, :positive] = spectrum[..., :positive, :positive]
    if negative:
        result[..., -negative:, :positive] = spectrum[..., -negative:, :positive]
    return result * (resolution / source) ** 2


class NavierStokes2D(Family):
    r"""Vorticity-form incompressible Navier-Stokes on the unit torus.

    .. math::

        w_t + u \cdot \nabla w = \nu \Delta w + f, \quad
        f = 0.1 \, (\sin 2\pi(x + y) + \cos 2\pi(x + y)), \quad
        u = (\partial_y \psi, -\partial_x \psi), \ -\Delta \psi = w,

    on the grid ``x_i = i / N`` (channel ``w``), as in the FNO benchmark.
    Initial vorticity is the FNO reference generator's zero-mean Gaussian
    random field ``N(0, 7^{3/2} (-Delta + 49 I)^{-2.5})``, where ``7^{3/2}``
    scales the standard deviation of each Fourier mode (the reference code's
    convention).

    Discretisation: pseudo-spectral with the 2/3 dealiasing rule on the
    advection term, exact integrating factor on diffusion and SSP-RK3 on
    advection and forcing, with a CFL-adaptive step chosen every frame.
    Small viscosities are simulated on a finer grid and spectrally truncated
    to the saved one (see :meth:`simulation_resolution`).

    The axis is the viscosity ``nu`` (log coordinate, default ``1e-3``).
    Defaults ``dt_frame = 1`` and 20 frames follow the FNO data (one frame
    per time unit): the forcing builds up the ``(1, 1)`` mode towards its
    viscous equilibrium ``|f| / (8 pi^2 nu)`` on the time scale
    ``1 / (8 pi^2 nu)``, so over 20 frames ``nu = 1e-2`` saturates early at
    small amplitude, ``nu = 1e-3`` saturates near ``t ~ 13`` and
    ``nu <= 1e-4`` keeps growing and develops finer filaments.

    Options of :meth:`simulate`: ``forcing`` (default ``True``) and
    ``sim_resolution`` (``None`` picks :meth:`simulation_resolution`).
    """

    name: ClassVar[str] = "ns2d"
    channels: ClassVar[tuple[str, ...]] = ("w",)
    parameter: ClassVar[ParameterAxis] = ParameterAxis("nu", 1e-3, "log", low=0.0)
    default_dt_frame: ClassVar[float] = 1.0
    default_n_frames: ClassVar[int] = 20
    options: ClassVar[Mapping[str, Any]] = {"forcing": True, "sim_resolution": None}
    min_resolution: ClassVar[int] = 8

    def grid(
        self, resolution: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid points ``(x, y) = (i / N, j / N)`` of the unit torus."""
        points = torch.arange(self.check_resolution(resolution), device=device, dtype=torch.float64) / resolution
        x, y = torch.meshgrid(points, points, indexing="ij")
        return x.to(dtype), y.to(dtype)

    @staticmethod
    def simulation_resolution(resolution: int, nu: float) -> int:
        """Grid on which a viscosity is simulated before truncation to ``resolution``.

        The dissipative scale shrinks with ``nu``; 64^2 resolves
        ``nu >= 1e-4`` and 128^2 ``nu >= 1e-5`` over the default horizon, so
        coarser saved grids are computed on those and truncated.
        """
        if nu >= 1e-3:
            return resolution
        return max(resolution, 64 if nu >= 1e-4 else 128)

    def forcing(
        self, resolution: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The forcing ``f`` on the ``N x N`` grid, ``[N, N]``."""
        x, y = self.grid(resolution, device=device, dtype=torch.float64)
        phase = 2 * math.pi * (x + y)
        return (0.1 * (torch.sin(phase) + torch.cos(phase))).to(dtype)

    def _initial(
        self, n: int, resolution: int, values: Mapping[str, float], generator: torch.Generator
    ) -> torch.Tensor:
        # Real white noise has E|fft|^2 = N^2 per mode, so scaling by N / N^2
        # gives Fourier coefficients of variance 2 * sigma^2 * s_k^2 each.
        noise = torch.randn(n, 1, resolution, resolution, generator=generator, dtype=torch.float64)
        kx, ky = torus_wavenumbers(resolution, device=None, dtype=torch.float64)
        tau, alpha = 7.0, 2.5
        amplitude = math.sqrt(2.0) * tau**1.5 * (kx**2 + ky**2 + tau**2) ** (-alpha / 2)
        amplitude[0, 0] = 0.0  # zero mean
        return resolution * torch.fft.irfft2(torch.fft.rfft2(noise) * amplitude, s=(resolution, resolution))

    def _frames(self, initial: torch.Tensor, run: FrameRun) -> Iterator[torch.Tensor]:
        values, n_frames, dt_frame, options = run
        saved = initial.shape[-1]
        nu = values["nu"]
        fine = options["sim_resolution"] or self.simulation_resolution(saved, nu)
        if isinstance(fine, bool) or not isinstance(fine, int) or fine < saved:
            raise SimulationError(f"{self.name}: sim_resolution must be an integer >= {saved}, got {fine!r}")
        kx, ky = torus_wavenumbers(fine, device=initial.device, dtype=initial.dtype)
        operators = _SpectralOperators(kx, ky, nu, fine)
        forcing = torch.fft.rfft2(self.forcing(fine, device=initial.device, dtype=initial.dtype))
        if not options["forcing"]:
            forcing = torch.zeros_like(forcing)
        spectrum = resample_spectrum(torch.fft.rfft2(initial), fine)
        for frame in range(1, n_frames + 1):
            dt_stable = min(operators.advective_step(spectrum), _MAX_VISCOUS_EXPONENT / (nu * operators.max_k2))
            count = substep_count(dt_frame, dt_stable, family=self.name, regime=regime_text(values), frame=frame)
            spectrum = operators.advance(spectrum, forcing, dt_frame / count, count)
            yield torch.fft.irfft2(resample_spectrum(spectrum, saved), s=(saved, saved))


class _SpectralOperators:
    """Derivatives, dealiasing and the integrating-factor SSP-RK3 step on one grid."""

    def __init__(self, kx: torch.Tensor, ky: torch.Tensor, nu: float, resolution: int) -> None:
        self.kx, self.ky, self.nu, self.resolution = kx, ky, nu, resolution
        self.k2 = kx**2 + ky**2
        self.max_k2 = float(self.k2.max())
        # psi_hat = w_hat / |k|^2; the mean mode carries no velocity.
        self.inverse_k2 = torch.where(self.k2 > 0, 1.0 / self.k2.clamp_min(1e-30), torch.zeros_like(self.k2))
        cutoff = 2 * math.pi * resolution / 3
        self.dealias = ((kx.abs() < cutoff) & (ky.abs() < cutoff)).to(kx.dtype)

    def _velocity_and_gradient(self, spectrum: torch.Tensor) -> torch.Tensor:
        """``(u, v, w_x, w_y)`` on the grid, stacked on a new leading dim (one batched inverse FFT)."""
        i = 1j
        stream = spectrum * self.inverse_k2
        fields = torch.stack(
            (i * self.ky * stream, -i * self.kx * stream, i * self.kx * spectrum, i * self.ky * spectrum)
        )
        return torch.fft.irfft2(fields, s=(self.resolution, self.resolution))

    def advective_step(self, spectrum: torch.Tensor) -> float:
        """Largest stable step for the current velocity (CFL on ``|u| + |v|``)."""
        u, v = self._velocity_and_gradient(spectrum)[:2]
        speed = float((u.abs() + v.abs()).max())
        return _CFL / (self.resolution * speed) if speed > 0 else math.inf

    def _tendency(self, spectrum: torch.Tensor, forcing: torch.Tensor) -> torch.Tensor:
        u, v, w_x, w_y = self._velocity_and_gradient(spectrum)
        return self.dealias * torch.fft.rfft2(-(u * w_x + v * w_y)) + forcing

    def advance(self, spectrum: torch.Tensor, forcing: torch.Tensor, dt: float, count: int) -> torch.Tensor:
        """``count`` integrating-factor SSP-RK3 steps of size ``dt``.

        With ``E(s) = exp(-nu |k|^2 s)`` the stages live at ``t + dt``,
        ``t + dt / 2`` and ``t + dt``; diffusion is integrated exactly, so a
        mode with no advection decays at exactly ``exp(-nu |k|^2 t)``.
        """
        full = torch.exp(-self.nu * self.k2 * dt)
        half = torch.exp(-self.nu * self.k2 * dt / 2)
        half_inverse = torch.exp(self.nu * self.k2 * dt / 2)
        for _ in range(count):
            stage1 = full * (spectrum + dt * self._tendency(spectrum, forcing))
            stage2 = 0.75 * half * spectrum + 0.25 * half_inverse * (stage1 + dt * self._tendency(stage1, forcing))
            spectrum = full * spectrum / 3 + 2 / 3 * half * (stage2 + dt * self._tendency(stage2, forcing))
        return spectrum
