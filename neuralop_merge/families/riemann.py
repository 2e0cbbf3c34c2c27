"""Exact solution of the one-dimensional shallow-water Riemann problem.

The reference against which the dam-break solver is tested and benchmarked:
a planar dam (depth ``h_left`` for ``x < 0`` and ``h_right`` for ``x > 0``,
velocities ``u_left`` and ``u_right``) breaks into a left and a right wave,
each a shock or a rarefaction, separated by a constant middle ("star")
state. Both sides must stay wet (no dry bed forms). Following Toro,
*Shock-Capturing Methods for Free-Surface Shallow Flows* (2001), chapter 5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: Bisection halvings of the star-depth bracket: far below float64 round-off.
_BISECTIONS = 200


@dataclass(frozen=True)
class RiemannProblem:
    """Left and right constant states ``(h, u)`` of a planar dam, with gravity ``g``."""

    h_left: float
    h_right: float
    u_left: float = 0.0
    u_right: float = 0.0
    gravity: float = 1.0

    def __post_init__(self) -> None:
        if not (self.h_left > 0 and self.h_right > 0 and self.gravity > 0):
            raise ValueError(f"depths and gravity must be positive, got {self}")
        if self.u_right - self.u_left >= 2 * (self._celerity(self.h_left) + self._celerity(self.h_right)):
            raise ValueError(f"the states separate fast enough to dry the bed, which is not handled: {self}")

    def _celerity(self, depth: float) -> float:
        return math.sqrt(self.gravity * depth)

    def _wave_function(self, depth: float, side_depth: float) -> float:
        """Velocity jump across a wave joining ``side_depth`` to ``depth`` (Toro's ``f_K``)."""
        if depth <= side_depth:
            return 2 * (self._celerity(depth) - self._celerity(side_depth))
        return (depth - side_depth) * math.sqrt(0.5 * self.gravity * (depth + side_depth) / (depth * side_depth))

    def star_state(self) -> tuple[float, float]:
        """Depth and velocity ``(h*, u*)`` between the two waves."""

        def mismatch(depth: float) -> float:
            return (
                self._wave_function(depth, self.h_left)
                + self._wave_function(depth, self.h_right)
                + self.u_right
                - self.u_left
            )

        # mismatch is increasing and negative at 0 (a wet star state exists); bracket then bisect.
        low, high = 0.0, max(self.h_left, self.h_right)
        while mismatch(high) < 0:
            low, high = high, 2 * high
        for _ in range(_BISECTIONS):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if mismatch(middle) < 0 else (low, middle)
        depth = 0.5 * (low + high)
        velocity = 0.5 * (self.u_left + self.u_right) + 0.5 * (
            self._wave_function(depth, self.h_right) - self._wave_function(depth, self.h_left)
        )
        return depth, velocity

    def sample(self, speed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Depth and velocity at the similarity coordinates ``speed = x / t`` (any shape, float64)."""
        star_depth, star_velocity = self.star_state()
        left = self._sample_side(speed, star_depth, star_velocity, side=-1)
        right = self._sample_side(speed, star_depth, star_velocity, side=+1)
        on_left = speed < star_velocity
        return torch.where(on_left, left[0], right[0]), torch.where(on_left, left[1], right[1])

    def _sample_side(
        self, speed: torch.Tensor, star_depth: float, star_velocity: float, side: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Solution on one side of the contact; ``side`` is -1 (left wave) or +1 (right wave).

        Mirroring ``x -> -x`` maps the right wave onto a left wave, so one
        formula serves both: positions and velocities change sign.
        """
        mirror = 1.0 if side < 0 else -1.0
        depth = self.h_left if side < 0 else self.h_right
        velocity = mirror * (self.u_left if side < 0 else self.u_right)
        star_u, xi = mirror * star_velocity, mirror * speed
        celerity, star_celerity = self._celerity(depth), self._celerity(star_depth)
        outer_h, outer_u = torch.full_like(xi, depth), torch.full_like(xi, velocity)
        inner_h, inner_u = torch.full_like(xi, star_depth), torch.full_like(xi, star_u)
        if star_depth > depth:  # shock
            shock_speed = velocity - celerity * math.sqrt(0.5 * (star_depth + depth) * star_depth / depth**2)
            outside = xi < shock_speed
            return torch.where(outside, outer_h, inner_h), mirror * torch.where(outside, outer_u, inner_u)
        # Rarefaction fan between its head and tail characteristics.
        head, tail = velocity - celerity, star_u - star_celerity
        fan_celerity = (velocity + 2 * celerity - xi) / 3
        fan_h, fan_u = fan_celerity**2 / self.gravity, (velocity + 2 * celerity + 2 * xi) / 3
        h = torch.where(xi < head, outer_h, torch.where(xi > tail, inner_h, fan_h))
        u = torch.where(xi < head, outer_u, torch.where(xi > tail, inner_u, fan_u))
        return h, mirror * u

    def cell_averages(
        self, lower: float, upper: float, resolution: int, time: float, subsamples: int = 16
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact ``(h, hu)`` averaged over each of ``resolution`` equal cells of ``[lower, upper]`` at ``time``.

        Averaging ``subsamples`` points per cell compares like with like: a
        finite-volume solver holds cell averages, not point values.
        """
        points = resolution * subsamples
        spacing = (upper - lower) / points
        x = lower + spacing * (torch.arange(points, dtype=torch.float64) + 0.5)
        depth, velocity = self.sample(x / time)
        return (
            depth.view(resolution, subsamples).mean(dim=1),
            (depth * velocity).view(resolution, subsamples).mean(dim=1),
        )
