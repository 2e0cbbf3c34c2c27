"""Common interface of the PDE regime families.

A *family* is one PDE whose behaviour is controlled by a physical parameter
(the *axis*). Every family produces batched trajectories ``[n, T+1, C, H, W]``
in pure PyTorch on the device and in the dtype of its input, so that the same
code generates experts' training data on a laptop CPU and on a GPU.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, NamedTuple, Sequence, Union

import torch

from ..errors import SimulationError
from ._numerics import regime_text
from .dataset import RegimeData, build_regime_data

#: A regime: a value of the primary axis, a mapping ``{axis name: value}``
#: (axes left out keep their defaults), or ``None`` for all defaults.
ParamSpec = Union[float, Mapping[str, float], None]

_SUPPORTED_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class ParameterAxis:
    """A physical parameter along which a family's regimes are chosen.

    Parameters
    ----------
    name : str
        Name of the parameter, as used in ``{name: value}`` regime mappings.
    default : float
        Value of the public benchmark the family mirrors.
    transform : {"linear", "log"}
        Coordinate in which regimes are spaced and interpolated.
    low, high : float
        Open interval of valid values; anything outside raises
        :class:`~neuralop_merge.errors.SimulationError`.
    """

    name: str
    default: float
    transform: str = "linear"
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self) -> None:
        if self.transform not in ("linear", "log"):
            raise ValueError(f"axis {self.name}: transform must be 'linear' or 'log', got {self.transform!r}")
        if self.transform == "log" and self.low < 0:
            raise ValueError(f"axis {self.name}: a log axis needs low >= 0, got {self.low}")

    def check(self, value: float, family: str) -> float:
        """Return ``value`` as a float, or raise if it is not a valid value of this axis."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SimulationError(f"{family}: parameter {self.name} must be a number, got {value!r}") from None
        if not (math.isfinite(number) and self.low < number < self.high):
            raise SimulationError(
                f"{family}: parameter {self.name}={number!r} is outside its valid range ({self.low}, {self.high})"
            )
        return number

    def to_coordinate(self, value: float) -> float:
        """Map a physical value to the axis coordinate (identity or natural log)."""
        return math.log(value) if self.transform == "log" else float(value)

    def from_coordinate(self, coordinate: float) -> float:
        """Inverse of :meth:`to_coordinate`."""
        return math.exp(coordinate) if self.transform == "log" else float(coordinate)

    def spaced(self, start: float, stop: float, n: int) -> list[float]:
        """``n`` values from ``start`` to ``stop``, evenly spaced in the axis coordinate."""
        first, last = self.to_coordinate(start), self.to_coordinate(stop)
        if n == 1:
            return [float(start)]
        return [self.from_coordinate(first + (last - first) * i / (n - 1)) for i in range(n)]


class FrameRun(NamedTuple):
    """What one simulation asks of a family's time stepper (:meth:`Family._frames`)."""

    values: Mapping[str, float]
    n_frames: int
    dt_frame: float
    options: Mapping[str, Any]


class Family(abc.ABC):
    """A PDE family: initial states, a batched solver and a regime data set.

    Subclasses set the class attributes below and implement
    :meth:`_initial` and :meth:`_frames`; validation, option checking,
    blow-up detection and data-set building are shared here.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"diffreact"``.
    channels : tuple of str
        Names of the state channels, in channel order.
    parameter : ParameterAxis
        The primary physical axis.
    extra_axes : tuple of ParameterAxis
        Further axes that may be set through ``{name: value}`` regimes.
    default_dt_frame : float
        Time between saved frames when ``dt_frame`` is not given.
    default_n_frames : int
        Number of saved frames after the initial one when ``n_frames`` is not given.
    options : Mapping[str, Any]
        Keyword options of :meth:`simulate` and their defaults.
    min_resolution : int
        Smallest grid the scheme runs on.
    """

    name: ClassVar[str]
    channels: ClassVar[tuple[str, ...]]
    parameter: ClassVar[ParameterAxis]
    extra_axes: ClassVar[tuple[ParameterAxis, ...]] = ()
    default_dt_frame: ClassVar[float]
    default_n_frames: ClassVar[int]
    options: ClassVar[Mapping[str, Any]] = {}
    min_resolution: ClassVar[int] = 4

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, parameter={self.parameter.name!r})"

    @property
    def settings(self) -> dict[str, Any]:
        """Constructor settings that change the generated data; part of the data-set cache key."""
        return {}

    @property
    def axes(self) -> tuple[ParameterAxis, ...]:
        """The primary axis followed by the extra axes."""
        return (self.parameter, *self.extra_axes)

    @property
    def axis_names(self) -> tuple[str, ...]:
        """Names of :attr:`axes`, the column order of dict-regime parameter tables."""
        return tuple(axis.name for axis in self.axes)

    def resolve(self, param: ParamSpec) -> dict[str, float]:
        """Complete a regime to a checked ``{axis name: value}`` mapping.

        Parameters
        ----------
        param : float, mapping or None
            A primary-axis value, a partial ``{axis name: value}`` mapping
            (missing axes take their defaults), or ``None`` for all defaults.
        """
        if param is None:
            given: Mapping[str, Any] = {}
        elif isinstance(param, Mapping):
            given = param
        else:
            given = {self.parameter.name: param}
        unknown = sorted(set(given) - set(self.axis_names))
        if unknown:
            raise SimulationError(f"{self.name}: unknown parameter(s) {unknown}; axes are {list(self.axis_names)}")
        return {axis.name: axis.check(given.get(axis.name, axis.default), self.name) for axis in self.axes}

    def check_resolution(self, resolution: int) -> int:
        """Return ``resolution`` if the scheme can run on an ``N x N`` grid of that size, else raise."""
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < self.min_resolution:
            raise SimulationError(
                f"{self.name}: resolution must be an integer >= {self.min_resolution}, got {resolution!r}"
            )
        return resolution

    @abc.abstractmethod
    def grid(
        self, resolution: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coordinates ``(x, y)`` of the grid points, each ``[N, N]``, indexed ``[i, j] -> (x_i, y_j)``."""

    def sample_initial(
        self,
        n: int,
        resolution: int,
        *,
        param: ParamSpec = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw ``n`` initial states.

        Random numbers are always drawn on the CPU in float64 and then moved,
        so a seed gives the same states on every device and in every dtype.

        Parameters
        ----------
        n : int
            Number of trajectories.
        resolution : int
            Grid size ``N`` of the ``N x N`` grid.
        param : float, mapping or None, optional
            Regime; only families whose initial state depends on it use it.
        seed : int, default 0
            Seed of the ``torch.Generator`` that draws the states.
        device : torch.device or str, optional
            Device of the result (CPU by default).
        dtype : torch.dtype, default torch.float32
            float32 or float64.

        Returns
        -------
        torch.Tensor
            ``[n, C, N, N]``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SimulationError(f"{self.name}: the number of initial states must be a positive integer, got {n!r}")
        self._check_dtype(dtype)
        generator = torch.Generator().manual_seed(int(seed))
        states = self._initial(n, self.check_resolution(resolution), self.resolve(param), generator)
        return states.to(device=device, dtype=dtype)

    def simulate(
        self,
        initial: torch.Tensor,
        param: ParamSpec = None,
        *,
        n_frames: int | None = None,
        dt_frame: float | None = None,
        **options: Any,
    ) -> torch.Tensor:
        """Integrate a batch of initial states.

        Parameters
        ----------
        initial : torch.Tensor
            ``[n, C, N, N]`` float32 or float64, on any device.
        param : float, mapping or None, optional
            Regime (see :meth:`resolve`).
        n_frames : int, optional
            Number of saved frames after the initial one (default :attr:`default_n_frames`).
        dt_frame : float, optional
            Time between saved frames (default :attr:`default_dt_frame`).
        **options
            Family-specific switches listed in :attr:`options`; any other keyword raises.

        Returns
        -------
        torch.Tensor
            ``[n, n_frames + 1, C, N, N]`` in the dtype and on the device of
            ``initial``; frame 0 is ``initial`` and frame ``j`` is time ``j * dt_frame``.
        """
        values = self.resolve(param)
        self._check_state(initial)
        n_frames = self.default_n_frames if n_frames is None else n_frames
        dt_frame = self.default_dt_frame if dt_frame is None else dt_frame
        if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 0:
            raise SimulationError(f"{self.name}: n_frames must be a non-negative integer, got {n_frames!r}")
        if not (isinstance(dt_frame, (int, float)) and math.isfinite(dt_frame) and dt_frame > 0):
            raise SimulationError(f"{self.name}: dt_frame must be a positive number, got {dt_frame!r}")
        chosen = self._check_options(options)
        frames = [initial]
        for frame, state in enumerate(self._frames(initial, FrameRun(values, n_frames, float(dt_frame), chosen)), start=1):
            if not torch.isfinite(state).all():
                raise SimulationError(
                    f"{self.name} ({regime_text(values)}): non-finite values at frame {frame} "
                    f"(t={frame * dt_frame:g})"
                )
            frames.append(state)
        return torch.stack(frames, dim=1)

    def dataset(
        self,
        params: Sequence[ParamSpec],
        n_per_param: int,
        resolution: int,
        n_frames: int | None = None,
        *,
        seed: int,
        dt_frame: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        cache_dir: str | None = None,
        refine: int = 1,
        spinup: int = 0,
    ) -> "RegimeData":
        """Trajectories of several regimes, as one-step pairs and full rollouts.

        See :func:`neuralop_merge.families.dataset.build_regime_data` for the
        parameters, seeding and caching rules.
        """
        return build_regime_data(
            self,
            params,
            n_per_param,
            resolution,
            self.default_n_frames if n_frames is None else n_frames,
            seed=seed,
            dt_frame=self.default_dt_frame if dt_frame is None else dt_frame,
            dtype=dtype,
            device=device,
            cache_dir=cache_dir,
            refine=refine,
            spinup=spinup,
        )

    def _check_dtype(self, dtype: torch.dtype) -> None:
        if dtype not in _SUPPORTED_DTYPES:
            raise SimulationError(f"{self.name}: dtype must be float32 or float64, got {dtype}")

    def _check_state(self, state: torch.Tensor) -> None:
        if not isinstance(state, torch.Tensor) or state.ndim != 4:
            raise SimulationError(f"{self.name}: the initial state must be a tensor [n, C, H, W]")
        self._check_dtype(state.dtype)
        n, channels, height, width = state.shape
        if channels != len(self.channels) or height != width or n == 0:
            raise SimulationError(
                f"{self.name}: the initial state must be [n>0, {len(self.channels)}, N, N] "
                f"with channels {self.channels}, got {list(state.shape)}"
            )
        self.check_resolution(height)
        if not torch.isfinite(state).all():
            raise SimulationError(f"{self.name}: the initial state contains NaN or Inf")

    def _check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise SimulationError(
                f"{self.name}: unknown simulate option(s) {unknown}; known options are {sorted(self.options)}"
            )
        return {**self.options, **options}

    @abc.abstractmethod
    def _initial(
        self, n: int, resolution: int, values: Mapping[str, float], generator: torch.Generator
    ) -> torch.Tensor:
        """``n`` initial states ``[n, C, N, N]`` in float64 on the CPU, drawn with ``generator``."""

    @abc.abstractmethod
    def _frames(self, initial: torch.Tensor, run: FrameRun) -> Iterator[torch.Tensor]:
        """Yield the ``run.n_frames`` states after ``initial``, ``run.dt_frame`` apart, shaped like ``initial``."""
