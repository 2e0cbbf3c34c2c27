"""2D shallow-water circular dam break, as in PDEBench's radial dam-break set."""

from __future__ import annotations

from typing import Any, ClassVar, Iterator, Mapping

import torch

from ._numerics import (
    MAX_SUBSTEPS_PER_FRAME,
    blow_up,
    cell_centred_grid,
    monotonised_central,
    regime_text,
    zero_gradient_pad,
)
from ..errors import SimulationError
from .base import Family, FrameRun, ParamSpec, ParameterAxis

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

    Discretisation: cell-centred finite volumes with dimensional splitting.
    Each 1-D sweep is MUSCL-Hancock: reconstruction of ``(h, u, v)`` with the
    monotonised-central (MC) limiter, a half-step predictor, and Roe's flux
    with Harten's entropy fix, falling back to HLLE (Einfeldt's bounds) at
    faces where Roe's middle state would be dry. A step averages the
    x-then-y and y-then-x sweep orders, which is second order in time and
    exactly symmetric in x and y. The step has Courant number ``cfl = 0.9``
    per sweep, recomputed every step from the fastest wave. On the planar
    dam break ``h = 2 | 1`` at ``N = 128``, ``t = 1``, the L1 error of the
    depth's cell averages against the exact Riemann solution
    (:mod:`neuralop_merge.families.riemann`) is about 1.1e-2.

    The primary axis is the inner depth ``h_in`` (linear, default 2.0, the
    public data set's value); ``r0`` (linear, default 0.5) is an extra axis.
    ``sample_initial`` shifts each trajectory's dam centre uniformly within
    ``[-0.25, 0.25]^2`` (seeded), so trajectories of one regime differ while
    the regime is still set by ``(h_in, r0)`` alone; use :meth:`dam_state`
    for a dam at a chosen centre. With ``r0_range=(low, high)``, as in
    PDEBench's data set, ``sample_initial`` also draws each trajectory's
    radius uniformly from that range with the same seeded generator, and the
    regime's ``r0`` is not used (the dynamics do not depend on it). Defaults ``dt_frame = 0.05`` and 20 frames
    cover PDEBench's ``t in [0, 1]``: the outgoing bore's height and speed
    and the depth of the central depression grow with ``h_in``, and the
    front does not reach the boundary before ``t = 1`` for ``h_in <= 4``.
    Mass is conserved to round-off until the bore's numerical precursor
    reaches the outflow boundary (afterwards it leaves the domain: a
    relative loss below 1e-9 at 32^2 by ``t = 1`` for the default dam).
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
    cfl: ClassVar[float] = 0.9

    def __init__(self, r0_range: tuple[float, float] | None = None) -> None:
        """
        Parameters
        ----------
        r0_range : (float, float), optional
            Draw each trajectory's dam radius uniformly from ``[low, high]``
            (valid ``r0`` values, ``low <= high``); ``None`` keeps the regime's ``r0``.
        """
        if r0_range is not None:
            if isinstance(r0_range, str) or not hasattr(r0_range, "__len__") or len(r0_range) != 2:
                raise SimulationError(f"{self.name}: r0_range must be a pair (low, high), got {r0_range!r}")
            low, high = (self.extra_axes[0].check(value, self.name) for value in r0_range)
            if low > high:
                raise SimulationError(f"{self.name}: r0_range must have low <= high, got {r0_range!r}")
            r0_range = (low, high)
        self.r0_range = r0_range

    def __repr__(self) -> str:
        return f"{type(self).__name__}(r0_range={self.r0_range!r})"

    @property
    def settings(self) -> dict[str, Any]:
        """``{"r0_range": [low, high]}`` when radii are drawn per trajectory, else empty."""
        return {} if self.r0_range is None else {"r0_range": list(self.r0_range)}

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
        radii = torch.full((centres.shape[0],), values["r0"], dtype=torch.float64)
        return self._dams(self.check_resolution(resolution), centres, values["h_in"], radii).to(
            device=device, dtype=dtype
        )

    def _dams(self, resolution: int, centres: torch.Tensor, inner_depth: float, radii: torch.Tensor) -> torch.Tensor:
        """Float64 dams of depth ``inner_depth`` and per-dam ``radii`` at ``centres``, as cell averages."""
        fine_x, fine_y = cell_centred_grid(resolution * _SUBSAMPLES, *self.domain, dtype=torch.float64)
        centres = centres.to(torch.float64).view(-1, 2, 1, 1)
        distance_squared = (fine_x - centres[:, :1]) ** 2 + (fine_y - centres[:, 1:]) ** 2
        inside = distance_squared < radii.view(-1, 1, 1, 1) ** 2
        fraction = torch.nn.functional.avg_pool2d(inside.to(torch.float64), _SUBSAMPLES)
        depth = self.outer_depth + (inner_depth - self.outer_depth) * fraction
        return torch.cat((depth, torch.zeros_like(depth), torch.zeros_like(depth)), dim=1)

    def _initial(
        self, n: int, resolution: int, values: Mapping[str, float], generator: torch.Generator
    ) -> torch.Tensor:
        shifts = (2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1) * self.centre_jitter
        if self.r0_range is None:
            radii = torch.full((n,), values["r0"], dtype=torch.float64)
        else:
            # Drawn after the shifts, so a fixed-radius family's states do not change.
            low, high = self.r0_range
            radii = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
        return self._dams(resolution, shifts, values["h_in"], radii)

    def _frames(self, initial: torch.Tensor, run: FrameRun) -> Iterator[torch.Tensor]:
        values, n_frames, dt_frame, _ = run
        spacing = (self.domain[1] - self.domain[0]) / initial.shape[-1]
        state = initial
        for frame in range(1, n_frames + 1):
            state = self._advance(state, dt_frame, spacing, regime_text(values), frame)
            yield state

    def _advance(self, state: torch.Tensor, duration: float, spacing: float, regime: str, frame: int) -> torch.Tensor:
        """Integrate for ``duration`` with CFL-adaptive steps, checking depth positivity each step."""
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
            state = self._step(state, dt / spacing)
            elapsed, step = elapsed + dt, step + 1
            speed, depth = self._fastest_wave_and_min_depth(state)

    def _fastest_wave_and_min_depth(self, state: torch.Tensor) -> tuple[float, float]:
        depth = state[:, 0]
        speed = state[:, 1:].abs().amax(dim=1) / depth + torch.sqrt(self.gravity * depth.clamp_min(0))
        # The step's only host synchronisation, for both numbers.
        fastest, shallowest = torch.stack((speed.max(), depth.min())).tolist()
        return fastest, shallowest

    def _step(self, state: torch.Tensor, ratio: float) -> torch.Tensor:
        """Advance by ``ratio * spacing`` time: the mean of the x-then-y and y-then-x sweep orders.

        Either order alone would single out one axis; their mean is second
        order in time and commutes with 90-degree rotations, and it stays
        conservative and well balanced because each sweep is.
        """
        x_first = self._sweep_y(self._sweep_x(state, ratio), ratio)
        y_first = self._sweep_x(self._sweep_y(state, ratio), ratio)
        return 0.5 * (x_first + y_first)

    def _sweep_y(self, state: torch.Tensor, ratio: float) -> torch.Tensor:
        """The y sweep: the x sweep of the transposed grid with ``hu`` and ``hv`` swapped.

        One code path serves both directions; the copy to contiguous memory
        makes the sweep's many elementwise operations fast.
        """
        return _swap_axes(self._sweep_x(_swap_axes(state), ratio))

    def _sweep_x(self, state: torch.Tensor, ratio: float) -> torch.Tensor:
        """One MUSCL-Hancock step along x of conserved ``(h, h u_n, h u_t)`` with ``ratio = dt / dx``."""
        depth = state[:, :1]
        primitive = torch.cat((depth, state[:, 1:] / depth), dim=1)
        padded = zero_gradient_pad(primitive, 2, dims=(-2,))
        jumps = padded[..., 1:, :] - padded[..., :-1, :]
        slopes = monotonised_central(jumps[..., :-1, :], jumps[..., 1:, :])
        cells = self._half_step(padded[..., 1:-1, :], slopes, ratio)
        flux = self._roe_flux((cells + 0.5 * slopes)[..., :-1, :], (cells - 0.5 * slopes)[..., 1:, :])
        return state - ratio * (flux[..., 1:, :] - flux[..., :-1, :])

    def _half_step(self, cells: torch.Tensor, slopes: torch.Tensor, ratio: float) -> torch.Tensor:
        """Primitive ``(h, u_n, u_t)`` evolved by half a step with the linearised 1-D equations.

        This predictor makes the scheme second order in time with a single
        flux evaluation per sweep. Cells whose evolved face depth would not
        be positive keep their time-level values (a first-order-in-time
        predictor there), so the faces stay wet.
        """
        depth, normal, tangential = cells.split(1, dim=1)
        depth_slope, normal_slope, tangential_slope = slopes.split(1, dim=1)
        rate = torch.cat(
            (
                normal * depth_slope + depth * normal_slope,
                normal * normal_slope + self.gravity * depth_slope,
                normal * tangential_slope,
            ),
            dim=1,
        )
        evolved = cells - 0.5 * ratio * rate
        wet = evolved[:, :1] > 0.5 * depth_slope.abs()
        return torch.where(wet, evolved, cells)

    def _roe_flux(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Roe flux of ``(h, h u_n, h u_t)`` between primitive ``left`` and ``right`` face values.

        Roe's linearisation gives each wave only its own dissipation, sharper
        than HLLE; an entropy fix opens transonic rarefactions. Where Roe's
        middle state would be dry (strong rarefactions) the face takes
        Einfeldt's HLLE dissipation instead, which keeps the depth positive.
        The flux is ``(F_l + F_r) / 2 - D / 2`` with either dissipation ``D``;
        the channels are handled one by one, which avoids most temporaries.
        """
        depth_l, normal_l, tangential_l = left.unbind(dim=1)
        depth_r, normal_r, tangential_r = right.unbind(dim=1)
        root_l, root_r = depth_l.sqrt(), depth_r.sqrt()
        normal = (root_l * normal_l + root_r * normal_r) / (root_l + root_r)
        tangential = (root_l * tangential_l + root_r * tangential_r) / (root_l + root_r)
        celerity = (0.5 * self.gravity * (depth_l + depth_r)).sqrt()
        celerity_l, celerity_r = (self.gravity * depth_l).sqrt(), (self.gravity * depth_r).sqrt()
        discharge_l, discharge_r = depth_l * normal_l, depth_r * normal_r
        flux_l = (discharge_l, discharge_l * normal_l + 0.5 * self.gravity * depth_l**2, discharge_l * tangential_l)
        flux_r = (discharge_r, discharge_r * normal_r + 0.5 * self.gravity * depth_r**2, discharge_r * tangential_r)
        jump = (depth_r - depth_l, discharge_r - discharge_l, depth_r * tangential_r - depth_l * tangential_l)
        slow_strength = ((normal + celerity) * jump[0] - jump[1]) / (2 * celerity)
        fast_strength = jump[0] - slow_strength
        slow = _entropy_fixed(normal - celerity, normal_l - celerity_l, normal_r - celerity_r) * slow_strength
        fast = _entropy_fixed(normal + celerity, normal_l + celerity_l, normal_r + celerity_r) * fast_strength
        roe_dissipation = (
            slow + fast,
            slow * (normal - celerity) + fast * (normal + celerity),
            (slow + fast) * tangential + normal.abs() * (jump[2] - tangential * jump[0]),
        )
        slowest = torch.minimum(normal_l - celerity_l, normal - celerity).clamp(max=0)
        fastest = torch.maximum(normal_r + celerity_r, normal + celerity).clamp(min=0)
        spread = fastest - slowest
        flux_weight, jump_weight = (fastest + slowest) / spread, 2 * fastest * slowest / spread
        roe_is_wet = depth_l + slow_strength > 0
        return torch.stack(
            [
                0.5 * (f_l + f_r - torch.where(roe_is_wet, roe, flux_weight * (f_r - f_l) - jump_weight * j))
                for f_l, f_r, roe, j in zip(flux_l, flux_r, roe_dissipation, jump)
            ],
            dim=1,
        )


def _swap_axes(state: torch.Tensor) -> torch.Tensor:
    """Transpose the grid of ``(h, hu, hv)`` and swap ``hu`` and ``hv``: x and y trade places."""
    return state[:, [0, 2, 1]].transpose(-2, -1).contiguous()


def _entropy_fixed(speed: torch.Tensor, speed_left: torch.Tensor, speed_right: torch.Tensor) -> torch.Tensor:
    """``|speed|``, raised near sonic points by an entropy fix of Harten's kind.

    Where the characteristic speed spreads across the face (a rarefaction,
    ``speed_left < speed_right``), the wave gets at least half that spread as
    its dissipation, so a transonic rarefaction does not stall as an
    entropy-violating standing shock; in shocks the spread is negative and
    ``|speed|`` is kept.
    """
    return torch.maximum(speed.abs(), 0.5 * (speed_right - speed_left))
