"""2D FitzHugh-Nagumo diffusion-reaction, as in PDEBench's 2D diffusion-reaction set."""

from __future__ import annotations

from typing import Any, ClassVar, Iterator, Mapping

import torch

from ._numerics import cell_centred_grid, neumann_laplacian, regime_text, ssp_rk2_step, substep_count
from .base import Family, FrameRun, ParameterAxis


class DiffusionReaction(Family):
    r"""FitzHugh-Nagumo activator-inhibitor system on :math:`[-1, 1]^2`.

    .. math::

        u_t = D_u \Delta u + u - u^3 - k - v, \qquad v_t = D_v \Delta v + u - v,

    with homogeneous Neumann (no-flux) boundaries and a standard-normal random
    initial state per cell (channels ``(u, v)``), PDEBench's defaults
    ``Du = 1e-3, Dv = 5e-3, k = 5e-3``.

    Discretisation: cell-centred five-point Laplacian with mirrored ghost
    cells (second order in space) and SSP-RK2 (second order in time) with a
    step chosen from the grid, the diffusivities and the current amplitude
    of ``u`` (half the forward-Euler stability limit).

    The primary axis is ``Du`` (log coordinate); ``Dv`` (log) and ``k``
    (linear) are extra axes. The default frame spacing ``dt_frame = 0.25``
    with 20 frames covers PDEBench's ``t in [0, 5]``: at 32^2 the diffusive
    length ``sqrt(Du t)`` reaches one cell only after ``t ~ 4`` for
    ``Du = 1e-3``, so regimes ``Du in [2.5e-4, 1e-2]`` differ visibly over
    those 20 frames (the ``u`` patterns coarsen faster for larger ``Du``),
    while shorter horizons make ``Du`` nearly irrelevant.

    Options of :meth:`simulate`: ``reaction`` (default ``True``); ``False``
    leaves pure diffusion, used to verify the diffusion operator.
    """

    name: ClassVar[str] = "diffreact"
    channels: ClassVar[tuple[str, ...]] = ("u", "v")
    parameter: ClassVar[ParameterAxis] = ParameterAxis("Du", 1e-3, "log", low=0.0)
    extra_axes: ClassVar[tuple[ParameterAxis, ...]] = (
        ParameterAxis("Dv", 5e-3, "log", low=0.0),
        ParameterAxis("k", 5e-3, "linear"),
    )
    default_dt_frame: ClassVar[float] = 0.25
    default_n_frames: ClassVar[int] = 20
    options: ClassVar[Mapping[str, Any]] = {"reaction": True}
    domain: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def grid(
        self, resolution: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres ``(x, y)`` of the ``N x N`` cells covering ``[-1, 1]^2``."""
        return cell_centred_grid(self.check_resolution(resolution), *self.domain, device=device, dtype=dtype)

    def _initial(
        self, n: int, resolution: int, values: Mapping[str, float], generator: torch.Generator
    ) -> torch.Tensor:
        return torch.randn(n, 2, resolution, resolution, generator=generator, dtype=torch.float64)

    def _frames(self, initial: torch.Tensor, run: FrameRun) -> Iterator[torch.Tensor]:
        values, n_frames, dt_frame, options = run
        spacing = (self.domain[1] - self.domain[0]) / initial.shape[-1]
        diffusivity = torch.tensor([values["Du"], values["Dv"]], device=initial.device, dtype=initial.dtype)
        diffusivity = diffusivity.view(1, 2, 1, 1)
        reaction = bool(options["reaction"])

        def rate(state: torch.Tensor) -> torch.Tensor:
            diffusion = diffusivity * neumann_laplacian(state, spacing)
            if not reaction:
                return diffusion
            u, v = state[:, :1], state[:, 1:]
            return diffusion + torch.cat((u - u**3 - values["k"] - v, u - v), dim=1)

        state = initial
        for frame in range(1, n_frames + 1):
            dt_stable = self._stable_step(state, spacing, max(values["Du"], values["Dv"]), reaction)
            count = substep_count(dt_frame, dt_stable, family=self.name, regime=regime_text(values), frame=frame)
            for _ in range(count):
                state = ssp_rk2_step(state, rate, dt_frame / count)
            yield state

    @staticmethod
    def _stable_step(state: torch.Tensor, spacing: float, max_diffusivity: float, reaction: bool) -> float:
        """Half the SSP-RK2 limit ``2 / |lambda|`` for the stiffest mode of the current state.

        The discrete Laplacian's spectrum reaches ``-8 D / dx^2``; the reaction
        Jacobian's row sums are bounded by ``3 u^2 + 2``, so the sum bounds
        the spectral radius of the whole right-hand side.
        """
        stiffness = 8.0 * max_diffusivity / spacing**2
        if reaction:
            stiffness += 3.0 * float(state[:, 0].abs().max()) ** 2 + 2.0
        return 1.0 / stiffness
