"""Regime data sets: generation, one-step pairs for ``neuralop``'s Trainer, disk cache."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..atomic import write_file
from ..errors import SimulationError
from ..warning_site import warn

if TYPE_CHECKING:
    from .base import Family, ParamSpec

#: Bumped whenever a change to a solver or to the generation changes the
#: numbers produced, so that stale cache files are never reused.
GENERATOR_VERSION = "families-3"


class PairDataset(Dataset):
    """One-step pairs ``{'x': frame t, 'y': frame t+1}`` of a set of trajectories.

    Items are dicts of ``[C, H, W]`` tensors, so the default collate function
    yields the ``{'x', 'y'}`` batches that ``neuralop.training.Trainer``
    passes as ``model(**batch)`` and ``loss(out, **batch)``. The regime tag is
    kept out of the dicts (``neuralop``'s models and losses warn about extra
    keys); it is :attr:`RegimeData.pair_params`, aligned with the item index.

    Parameters
    ----------
    trajectories : torch.Tensor
        ``[N, T+1, C, H, W]``; item ``k`` is trajectory ``k // S``, step ``k % S``,
        with ``S = T - lead`` steps per trajectory.
    lead : int, default 0
        Frames after ``y`` each item also carries, as ``'ahead'`` ``[lead, C, H, W]``
        (frames ``t+2 .. t+1+lead``): the targets of a pushforward step (see
        ``TrainingSettings.pushforward``). Steps whose frames would run past the end are left out.
    """

    def __init__(self, trajectories: torch.Tensor, lead: int = 0) -> None:
        if not 0 <= lead <= max(0, trajectories.shape[1] - 2):
            raise SimulationError(
                f"lead must be in [0, {trajectories.shape[1] - 2}] for trajectories of {trajectories.shape[1]} frames, got {lead}"
            )
        self.trajectories = trajectories
        self.lead = lead
        self.steps = trajectories.shape[1] - 1 - lead

    def __len__(self) -> int:
        return self.trajectories.shape[0] * self.steps

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"pair index {index} out of range for {len(self)} pairs")
        trajectory, step = divmod(index % len(self), self.steps)
        item = {"x": self.trajectories[trajectory, step], "y": self.trajectories[trajectory, step + 1]}
        if self.lead:
            item["ahead"] = self.trajectories[trajectory, step + 2 : step + 2 + self.lead]
        return item


@dataclass(frozen=True)
class RegimeData:
    """Trajectories of several regimes of one family, tagged with their parameters.

    Attributes
    ----------
    family : str
        Family name.
    axis_names : tuple of str
        Columns of :attr:`params` when it is two-dimensional.
    trajectories : torch.Tensor
        ``[N, T+1, C, H, W]`` on the CPU; regime ``r`` occupies rows
        ``r * n_per_param`` to ``(r + 1) * n_per_param``.
    params : torch.Tensor
        Physical parameter of every trajectory: ``[N]`` primary-axis values
        when the regimes were given as numbers, ``[N, d]`` values of all
        :attr:`axis_names` when any regime was given as a mapping.
    regime : torch.Tensor
        ``[N]`` int64 index of each trajectory's regime in the requested list.
    dt_frame : float
        Time between frames.
    """

    family: str
    axis_names: tuple[str, ...]
    trajectories: torch.Tensor
    params: torch.Tensor
    regime: torch.Tensor
    dt_frame: float

    def __len__(self) -> int:
        return self.trajectories.shape[0]

    @property
    def pairs(self) -> PairDataset:
        """All one-step pairs, trajectory-major (see :class:`PairDataset`)."""
        return PairDataset(self.trajectories)

    @property
    def pair_params(self) -> torch.Tensor:
        """Parameter of every item of :attr:`pairs`: ``[N*T]`` or ``[N*T, d]``."""
        return self.params.repeat_interleave(self.trajectories.shape[1] - 1, dim=0)

    def loader(self, batch_size: int, *, shuffle: bool = True, seed: int = 0, lead: int = 0) -> DataLoader:
        """A ``DataLoader`` of ``{'x', 'y'}`` pair batches; ``seed`` fixes the shuffling order.

        ``lead > 0`` adds the ``'ahead'`` frames a pushforward of up to ``lead`` steps trains on
        (see :class:`PairDataset`).
        """
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(PairDataset(self.trajectories, lead=lead), batch_size=batch_size, shuffle=shuffle, generator=generator)

    def subset(self, param_values: Sequence[float | Sequence[float]] | torch.Tensor) -> "RegimeData":
        """The trajectories whose parameter equals one of ``param_values``.

        Parameters
        ----------
        param_values : sequence or torch.Tensor
            Primary-axis values (``[M]``) or, for two-dimensional
            :attr:`params`, rows of all axis values (``[M, d]``).
        """
        wanted = torch.as_tensor(param_values, dtype=self.params.dtype)
        wanted = wanted.reshape(-1, *self.params.shape[1:])
        matches = torch.isclose(self.params.unsqueeze(0), wanted.unsqueeze(1), rtol=1e-9, atol=0.0)
        if matches.ndim == 3:
            matches = matches.all(dim=-1)
        found = matches.any(dim=1)
        if not found.all():
            missing = wanted[~found].tolist()
            raise SimulationError(f"{self.family}: no trajectories with parameter value(s) {missing}")
        keep = matches.any(dim=0)
        return replace(
            self, trajectories=self.trajectories[keep], params=self.params[keep], regime=self.regime[keep]
        )

    def by_regime(self, index: int) -> "RegimeData":
        """The trajectories of the ``index``-th requested regime."""
        keep = self.regime == index
        if not keep.any():
            raise SimulationError(f"{self.family}: no regime with index {index}")
        return replace(
            self, trajectories=self.trajectories[keep], params=self.params[keep], regime=self.regime[keep]
        )


def regime_seed(seed: int, index: int) -> int:
    """Independent seed of the ``index``-th regime derived from the data-set seed."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def build_regime_data(
    family: "Family",
    params: Sequence["ParamSpec"],
    n_per_param: int,
    resolution: int,
    n_frames: int,
    *,
    seed: int,
    dt_frame: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    refine: int = 1,
    spinup: int = 0,
) -> RegimeData:
    """Generate (or load from the cache) ``n_per_param`` trajectories per regime.

    Regime ``r`` draws its initial states with seed
    ``regime_seed(seed, r)``, so regimes do not share initial states and a
    regime's data do not depend on which other regimes are requested.

    Parameters
    ----------
    family : Family
        The family to simulate.
    params : sequence
        Regimes: numbers (primary axis) or ``{axis: value}`` mappings.
    n_per_param : int
        Trajectories per regime.
    resolution : int
        Grid size ``N``.
    n_frames : int
        Frames after the initial one.
    seed : int
        Non-negative data-set seed.
    dt_frame : float
        Time between frames.
    dtype : torch.dtype, default torch.float32
        Dtype of the simulation and of the stored data.
    device : torch.device or str, optional
        Where to simulate; the result is always on the CPU. The device is
        not part of the cache key (devices differ only by round-off).
    cache_dir : str or os.PathLike, optional
        Directory of the cache. A file is used only if its stored
        configuration and shapes match; otherwise it is regenerated and
        replaced atomically.
    refine : int, default 1
        Simulate on the ``refine`` times finer grid (initial states drawn
        there too) and block-average each frame down to ``resolution``. A
        solution whose initial state is white noise at grid scale depends on
        the grid; PDEBench's DiffReact data are generated at 128^2, so 32^2
        data follow them with ``refine=4``.
    spinup : int, default 0
        Frames simulated before frame 0 and discarded (the same transient
        removed for every method), so frame 0 is time ``spinup * dt_frame``.

    Returns
    -------
    RegimeData
    """
    if not params:
        raise SimulationError(f"{family.name}: dataset needs at least one regime")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SimulationError(f"{family.name}: dataset seed must be a non-negative integer, got {seed!r}")
    for name, value, least in (("refine", refine, 1), ("spinup", spinup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SimulationError(f"{family.name}: dataset {name} must be an integer >= {least}, got {value!r}")
    resolved = [family.resolve(param) for param in params]
    as_table = any(isinstance(param, Mapping) for param in params)
    config = {
        "family": family.name,
        "params": [values if as_table else values[family.parameter.name] for values in resolved],
        "n_per_param": n_per_param,
        "resolution": resolution,
        "n_frames": n_frames,
        "dt_frame": float(dt_frame),
        "seed": seed,
        "dtype": str(dtype),
        "refine": refine,
        "spinup": spinup,
        "version": GENERATOR_VERSION,
        **({"settings": family.settings} if family.settings else {}),
    }
    if cache_dir is None:
        return _generate(family, config, resolved, as_table, dtype, device)
    path = Path(cache_dir).expanduser() / f"{family.name}-{_config_hash(config)}.pt"
    cached = _load(path, family, config, len(resolved), dtype)
    if cached is not None:
        return cached
    data = _generate(family, config, resolved, as_table, dtype, device)
    _save_atomically(path, config, data)
    return data


def _generate(
    family: "Family",
    config: Mapping[str, Any],
    resolved: Sequence[Mapping[str, float]],
    as_table: bool,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> RegimeData:
    n_per_param = config["n_per_param"]
    trajectories = []
    for index, values in enumerate(resolved):
        initial = family.sample_initial(
            n_per_param,
            config["resolution"] * config["refine"],
            param=values,
            seed=regime_seed(config["seed"], index),
            device=device,
            dtype=dtype,
        )
        frames = config["n_frames"] + config["spinup"]
        rollout = family.simulate(initial, values, n_frames=frames, dt_frame=config["dt_frame"])
        trajectories.append(block_average(rollout[:, config["spinup"] :], config["refine"]).cpu())
    table = torch.tensor([[values[name] for name in family.axis_names] for values in resolved], dtype=torch.float64)
    per_regime = table if as_table else table[:, 0]
    return RegimeData(
        family=family.name,
        axis_names=family.axis_names,
        trajectories=torch.cat(trajectories),
        params=per_regime.repeat_interleave(n_per_param, dim=0),
        regime=torch.arange(len(resolved)).repeat_interleave(n_per_param),
        dt_frame=config["dt_frame"],
    )


def block_average(trajectories: torch.Tensor, factor: int) -> torch.Tensor:
    """Average ``[n, T, C, H, W]`` fields over ``factor x factor`` blocks (cell averages of a finer grid)."""
    if factor == 1:
        return trajectories
    n, frames = trajectories.shape[:2]
    coarse = torch.nn.functional.avg_pool2d(trajectories.flatten(0, 1), factor)
    return coarse.view(n, frames, *coarse.shape[1:])


def _config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:24]


def _load(
    path: Path, family: "Family", config: Mapping[str, Any], n_regimes: int, dtype: torch.dtype
) -> RegimeData | None:
    """The cached data set at ``path``, or ``None`` (with a warning) when it is absent or unusable."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        data = RegimeData(
            family=family.name,
            axis_names=family.axis_names,
            trajectories=payload["trajectories"],
            params=payload["params"],
            regime=payload["regime"],
            dt_frame=config["dt_frame"],
        )
        problem = _mismatch(payload["config"], config, data, family, n_regimes, dtype)
    except Exception as error:  # noqa: BLE001 - any unreadable file is simply regenerated
        problem = f"unreadable ({type(error).__name__}: {error})"
    if problem is None:
        return data
    warn(f"regenerating cache file {path}: {problem}")
    return None


def _mismatch(
    stored: Any, config: Mapping[str, Any], data: RegimeData, family: "Family", n_regimes: int, dtype: torch.dtype
) -> str | None:
    """Why a loaded payload cannot stand for ``config``, or ``None`` if it can."""
    if stored != config:
        return "stored configuration differs"
    n = n_regimes * config["n_per_param"]
    resolution = config["resolution"]
    expected = (n, config["n_frames"] + 1, len(family.channels), resolution, resolution)
    if tuple(data.trajectories.shape) != expected or data.trajectories.dtype != dtype:
        found = f"{tuple(data.trajectories.shape)} {data.trajectories.dtype}"
        return f"trajectories are {found}, expected {expected} {dtype}"
    if data.params.shape[0] != n or tuple(data.regime.shape) != (n,):
        return "parameter tags do not match the trajectories"
    if not torch.isfinite(data.trajectories).all():
        return "trajectories contain NaN or Inf"
    return None


def _save_atomically(path: Path, config: Mapping[str, Any], data: RegimeData) -> None:
    """Write the cache file through a temporary file so a crash never leaves a truncated cache."""
    payload = {
        "config": dict(config),
        "trajectories": data.trajectories,
        "params": data.params,
        "regime": data.regime,
    }
    write_file(path, lambda handle: torch.save(payload, handle), overwrite=True)


__all__ = ["GENERATOR_VERSION", "PairDataset", "RegimeData", "block_average", "build_regime_data", "regime_seed"]
