"""2D shallow-water circular dam break, as in PDEBench's radial dam-break set."""

from __future__ import annotations

from typing import Any, ClassVar, Iterator, Mapping

import torch

from ._numerics import (
    MAX_SUBSTEPS_PER_FRAME,
    blow_up,
    cell_centred_grid,
    minmod,
    regime_text,
    ssp_rk2_step,
    zero_gradient_pad,
)
from .base import Family, ParamSpec, ParameterAxis

#: Sub-cell samples per direction when averaging the dam's indicator over a
#: cell: a smooth function of centre and radius rather than a staircase.
_SUBSAMPLES = 4


class DamBreak(Family):
    r"""Shallow-water equations with flat bottom on :math:`[-2.5, 2.5]^2`.

    .. math::

        h_t + (hu)_x + (hv)_y = 0, \quad
        (hu)_t + (hu^2 + g h^2 / 2)_x + (huv)_y = 0, \quad
        (hv)_t + (huv)_x + (hv^2 + g h^2 / 2)_y = 0,

    with ``g = 1``, transmissive (outflow) boundaries and channels
    ``(h, hu, hv)``. At rest initially: depth ``h_in`` inside a circle of
    radius ``r0`` and ``1`` outside.

    Discretisation: cell-centred finite volumes, MUSCL reconstruction of
    ``(h, u, v)`` with the minmod limiter, HLLE flux (Einfeldt's wave-speed
    bounds, which keep the depth positive), SSP-RK2 with a step of CFL
    number 0.25 recomputed every step from the fastest wave.

    The primary axis is the inner depth ``h_in`` (linear, default 2.0, the
    public data set's value); ``r0`` (linear, default 0.5) is an extra axis.
    ``sample_initial`` shifts each trajectory's dam centre uniformly within
    ``[-0.25, 0.25]^2`` (seeded), so trajectories of one regime differ while
    the regime is still set by ``(h_in, r0)`` alone; use :meth:`dam_state`
    for a dam at a chosen centre. Defaults ``dt_frame = 0.05`` and 20 frames
    cover PDEBench's ``t in [0, 1]``: the outgoing bore's height and speed
    and the depth of the central depression grow with ``h_in``, and the
    front does not reach the boundary before ``t = 1`` for ``h_in <= 4``.
    Mass is conserved to round-off until the bore's numerical precursor
    reaches the outflow boundary (afterwards it leaves the domain: a
    relative loss below 5e-6 at 32^2 by ``t = 1`` for the default dam).
    """

    name: ClassVar[str] = "dam_break"
    channels: ClassVar[tuple[str, ...]] = ("h", "hu", "hv")
    parameter: ClassVar[ParameterAxis] = ParameterAxis("h_in", 2.0, "linear", low=0.0)
    extra_axes: ClassVar[tuple[ParameterAxis, ...]] = (ParameterAxis("r0", 0.5, "linear", low=0.0, high=2.5),)
    default_dt_frame: ClassVar[float] = 0.05
    default_n_frames: ClassVar[int] = 20
    gravity: ClassVar[float] = 1.0
    outer_depth: ClassVar[float] = 1.0
    domain: ClassVar[tuple[float, float]] = (-2.5, 2.5)
    centre_jitter: ClassVar[float] = 0.25
    cfl: ClassVar[float] = 0.25

    def grid(
        self, resolution: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres ``(x, y)`` of the ``N x N`` cells covering ``[-2.5, 2.5]^2``."""
        return cell_centred_grid(self.check_resolution(resolution), *self.domain, device=device, dtype=dtype)

    def dam_state(
        self,
        resolution: int,
        centres: torch.Tensor,
        param: ParamSpec = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Dams at rest centred at ``centres`` (``[n, 2]``), as cell averages ``[n, 3, N, N]``."""
        values = self.resolve(param)
        resolution = self.check_resolution(resolution)
        fine_x, fine_y = cell_centred_grid(resolution * _SUBSAMPLES, *self.domain, dtype=torch.float64)
        centres = centres.to(torch.float64).view(-1, 2, 1, 1)
        inside = (fine_x - centres[:, :1]) ** 2 + (fine_y - centres[:, 1:]) ** 2 < values["r0"] ** 2
        fraction = torch.nn.functional.avg_pool2d(inside.to(torch.float64), _SUBSAMPLES)
        depth = self.outer_depth + (values["h_in"] - self.outer_depth) * fraction
        state = torch.cat((depth, torch.zeros_like(depth), torch.zeros_like(depth)), dim=1)
        return state.to(device=device, dtype=dtype)

    def _initial(
        self, n: int, resolution: int, values: Mapping[str, float], generator: torch.Generator
    ) -> torch.Tensor:
        shifts = (2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1) * self.centre_jitter
        return self.dam_state(resolution, shifts, values, dtype=torch.float64)

    def _frames(
        self,
        initial: torch.Tensor,
        values: Mapping[str, float],
        n_frames: int,
        dt_frame: float,
        options: Mapping[str, Any],
    ) -> Iterator[torch.Tensor]:
        spacing = (self.domain[1] - self.domain[0]) / initial.shape[-1]
        state = initial
        for frame in range(1, n_frames + 1):
            state = self._advance(state, dt_frame, spacing, regime_text(values), frame)
            yield state

    def _advance(self, state: torch.Tensor, duration: float, spacing: float, regime: str, frame: int) -> torch.Tensor:
        """Integrate for ``duration`` with CFL-adaptive SSP-RK2 steps, checking depth positivity each step."""
        elapsed, step = 0.0, 0
        speed, depth = self._fastest_wave_and_min_depth(state)
        while True:
            if not depth > 0:
                raise blow_up(self.name, regime, frame, f"depth {depth:.3g} is not positive after step {step}")
            remaining = duration - elapsed
            if remaining <= 1e-12 * duration:
                return state
            dt = min(self.cfl * spacing / speed, remaining)
            # Fail as soon as the current step predicts the cap, not after burning through it.
            if step + remaining / dt > MAX_SUBSTEPS_PER_FRAME:
                raise blow_up(
                    self.name, regime, frame, f"CFL step {dt:.3g} at step {step} needs more than "
                    f"{MAX_SUBSTEPS_PER_FRAME} steps per frame"
                )
            state = ssp_rk2_step(state, lambda current: self._rate(current, spacing), dt)
            elapsed, step = elapsed + dt, step + 1
            speed, depth = self._fastest_wave_and_min_depth(state)

    def _fastest_wave_and_min_depth(self, state: torch.Tensor) -> tuple[float, float]:
        depth = state[:, 0]
        speed = state[:, 1:].abs().amax(dim=1) / depth + torch.sqrt(self.gravity * depth.clamp_min(0))
        # One host synchronisation per step for both numbers.
        fastest, shallowest = torch.stack((speed.max(), depth.min())).tolist()
        return fastest, shallowest

    def _rate(self, state: torch.Tensor, spacing: float) -> torch.Tensor:
        """``d(h, hu, hv)/dt`` from the flux balance of every cell."""
        depth = state[:, :1]
        primitive = torch.cat((depth, state[:, 1:] / depth), dim=1)
        along_x = self._flux_difference(primitive)
        # The y sweep is the x sweep on the transposed grid with u and v swapped,
        # so both directions share one code path (and 90-degree symmetry holds);
        # the copy to contiguous memory makes the sweep's many elementwise ops fast.
        swap = [0, 2, 1]
        transposed = primitive[:, swap].transpose(-2, -1).contiguous()
        along_y = self._flux_difference(transposed).transpose(-2, -1)[:, swap]
        return -(along_x + along_y) / spacing

    def _flux_difference(self, primitive: torch.Tensor) -> torch.Tensor:
        """Difference of the x-face fluxes of every cell for primitive ``(h, u_normal, u_tangential)``."""
        padded = zero_gradient_pad(primitive, 2, dims=(-2,))
        jumps = padded[..., 1:, :] - padded[..., :-1, :]
        slopes = minmod(jumps[..., :-1, :], jumps[..., 1:, :])
        cells = padded[..., 1:-1, :]
        left = (cells + 0.5 * slopes)[..., :-1, :]
        right = (cells - 0.5 * slopes)[..., 1:, :]
        flux = self._hlle_flux(left, right)
        return flux[..., 1:, :] - flux[..., :-1, :]

    def _hlle_flux(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """HLLE flux of conserved ``(h, h u_n, h u_t)`` across faces between primitive ``left`` and ``right``."""
        depth_l, normal_l, _ = left.split(1, dim=1)
        depth_r, normal_r, _ = right.split(1, dim=1)
        root_l, root_r = depth_l.sqrt(), depth_r.sqrt()
        celerity_l, celerity_r = (self.gravity * depth_l).sqrt(), (self.gravity * depth_r).sqrt()
        roe_velocity = (root_l * normal_l + root_r * normal_r) / (root_l + root_r)
        roe_celerity = (0.5 * self.gravity * (depth_l + depth_r)).sqrt()
        slowest = torch.minimum(normal_l - celerity_l, roe_velocity - roe_celerity).clamp(max=0)
        fastest = torch.maximum(normal_r + celerity_r, roe_velocity + roe_celerity).clamp(min=0)
        conserved_l, conserved_r = self._conserved(left), self._conserved(right)
        flux_l, flux_r = self._physical_flux(left), self._physical_flux(right)
        return (
            fastest * flux_l - slowest * flux_r + slowest * fastest * (conserved_r - conserved_l)
        ) / (fastest - slowest)

    @staticmethod
    def _conserved(primitive: torch.Tensor) -> torch.Tensor:
        depth = primitive[:, :1]
        return torch.cat((depth, depth * primitive[:, 1:]), dim=1)

    def _physical_flux(self, primitive: torch.Tensor) -> torch.Tensor:
        depth, normal, tangential = primitive.split(1, dim=1)
        discharge = depth * normal
        return torch.cat(
            (discharge, discharge * normal + 0.5 * self.gravity * depth**2, discharge * tangential), dim=1
        )
