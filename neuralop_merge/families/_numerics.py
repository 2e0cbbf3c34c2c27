"""Numerical building blocks shared by the families.

Finite-volume pieces (cell-centred grids, ghost cells, the Neumann Laplacian,
the monotonised-central limiter) and the time-stepping helpers (SSP-RK2, the substep
budget) live here so that the diffusion-reaction and shallow-water solvers
use one implementation of each.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from ..errors import SimulationError

#: Most solver steps allowed between two saved frames; beyond this the time
#: step has collapsed (a CFL blow-up) and waiting longer would not help.
MAX_SUBSTEPS_PER_FRAME = 20_000


def cell_centred_grid(
    resolution: int,
    lower: float,
    upper: float,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``(x, y)``, each ``[N, N]``, of ``N x N`` cells covering ``[lower, upper]^2``."""
    spacing = (upper - lower) / resolution
    centres = lower + spacing * (torch.arange(resolution, device=device, dtype=torch.float64) + 0.5)
    x, y = torch.meshgrid(centres, centres, indexing="ij")
    return x.to(dtype), y.to(dtype)


def zero_gradient_pad(field: torch.Tensor, width: int, dims: tuple[int, ...] = (-2, -1)) -> torch.Tensor:
    """Add ``width`` ghost cells copying the boundary cell along the last two dims (or one of them).

    Copying the boundary value is both the homogeneous Neumann (no-flux)
    condition of a cell-centred diffusion scheme and the transmissive
    (outflow) condition of a finite-volume hyperbolic scheme.
    """
    pad_last = (width, width) if -1 in dims else (0, 0)
    pad_second_last = (width, width) if -2 in dims else (0, 0)
    return F.pad(field, pad_last + pad_second_last, mode="replicate")


def neumann_laplacian(field: torch.Tensor, spacing: float) -> torch.Tensor:
    """Five-point Laplacian of ``[..., N, N]`` cell averages with no-flux boundaries.

    Second-order accurate; the discrete Neumann cosine modes
    ``cos(m pi (x - a) / L)`` are exact eigenvectors with eigenvalue
    ``-(2 / dx)^2 sin^2(m pi dx / (2 L))`` per direction.
    """
    padded = zero_gradient_pad(field, 1)
    centre = padded[..., 1:-1, 1:-1]
    neighbours = padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:]
    return (neighbours - 4.0 * centre) / spacing**2


def monotonised_central(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Van Leer's monotonised-central (MC) limited slope from the one-sided differences.

    ``minmod(2 left, 2 right, (left + right) / 2)``: the central slope where
    the data are smooth, at most twice either one-sided slope near steep
    fronts (sharper than minmod, still TVD), and zero at extrema. Since it
    never exceeds twice the smaller difference, a cell's face values stay
    between its neighbours' averages, so positive data give positive faces.
    """
    steepest = 2 * torch.minimum(left.abs(), right.abs())
    slope = torch.sign(left) * torch.minimum(steepest, 0.5 * (left + right).abs())
    return torch.where(left * right > 0, slope, torch.zeros_like(slope))


def ssp_rk2_step(
    state: torch.Tensor, rate: Callable[[torch.Tensor], torch.Tensor], dt: float
) -> torch.Tensor:
    """One step of the strong-stability-preserving Runge-Kutta 2 (Heun) method.

    Being a convex combination of forward-Euler steps, it keeps every
    property forward Euler has under the same step (positivity, TVD).
    """
    predictor = state + dt * rate(state)
    return 0.5 * (state + predictor + dt * rate(predictor))


def substep_count(
    dt_frame: float, dt_stable: float, *, family: str, regime: str, frame: int
) -> int:
    """Number of equal substeps covering ``dt_frame`` with steps no longer than ``dt_stable``.

    Raises
    ------
    SimulationError
        If the stable step is not a positive number or needs more than
        :data:`MAX_SUBSTEPS_PER_FRAME` substeps.
    """
    if not (math.isfinite(dt_stable) and dt_stable > 0):
        raise blow_up(family, regime, frame, f"stable time step is {dt_stable!r}")
    # The tiny shrink keeps a ratio that is an integer up to round-off from costing one more substep.
    count = max(1, math.ceil(dt_frame / dt_stable * (1 - 1e-12)))
    if count > MAX_SUBSTEPS_PER_FRAME:
        raise blow_up(
            family, regime, frame, f"CFL limit needs {count} substeps per frame (cap {MAX_SUBSTEPS_PER_FRAME})"
        )
    return count


def blow_up(family: str, regime: str, frame: int, reason: str) -> SimulationError:
    """The one-line error of a simulation that cannot continue at ``frame``."""
    return SimulationError(f"{family} ({regime}): {reason} at frame {frame}")


def regime_text(values: Mapping[str, float]) -> str:
    """``name=value`` text of a resolved regime, for error messages."""
    return ", ".join(f"{name}={value:g}" for name, value in values.items())
