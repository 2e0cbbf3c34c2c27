"""Per-family, per-scale configurations of the reproduction study, fixed before any test regime is seen.

Every regime is placed by its *normalized coordinate* c on the family's axis, the same coordinate
CCM uses: c = -1 at the low endpoint expert, +1 at the high one, affine in the transformed
parameter (log for viscosities and diffusivities). The anchor trains on the middle of the axis,
the experts at c = ±1, and the test splits are

``support``  the anchor's own regimes (fresh trajectories; the anchor's competence)
``id``       the endpoints themselves, c = ±1 (fresh trajectories)
``interp``   between the support and the endpoints, c = ±0.5
``ood``      beyond both ends, c = ±2 (extrapolation), each side reported on its own

Validation regimes (every choice: task arithmetic's λ, the fixed α, the calibration bank and the
CCM variant the headline reports) are distinct from every test regime.

The training recipe and its budget rule are the same for every family and every model: increment
prediction on per-channel normalized data, 1 % input noise, AdamW with a one-cycle learning rate
and gradient clipping; an evaluation of the rollout error on held-out trajectories of the model's
own training regimes every ``steps_per_epoch`` steps; training stops once that error has not
improved for 30 % of the step cap (``patience_fraction``; None runs every model to its cap), and
the best weights are kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..coordinates import from_normalized
from ..errors import NeuralopMergeError

#: Every scale with a one-line summary (``--scale``'s help adds each scale's seeds from :func:`scale_seeds`).
SCALE_SUMMARIES = {
    "quick": "the demo, minutes on a CPU",
    "small": "the committed CPU results",
    "small16": "small with 16 Fourier modes",
    "small16x2": "small16 with doubled step caps",
    "small16x2d4": "small16x2 with four times the training trajectories",
    "small16x2d4lr": "small16x2d4 with the experts' learning rate at 6e-3",
    "small16x2d4lrcap": "small16x2d4lr with every model trained to its step cap",
    "small16x2d4ex2": "small16x2d4lrcap with the experts' step cap doubled, at a 3e-3 peak rate",
    "small16x2d4ex2r": "small16x2d4ex2 with a quarter of the experts' pairs replayed from the support and their cap doubled",
    "small16x2d4ex2rs": "small16x2d4ex2r with CCM-Prefix's coarse scan one unit of α apart (the library's default)",
    "medium": "more data and steps, for one GPU",
    "medium16": "medium with 16 modes",
    "paper": "the study's sizes",
}
SCALES = tuple(SCALE_SUMMARIES)
FAMILIES = ("diffreact", "ns2d", "dam_break")
SPLITS = ("support", "id", "interp", "ood")

#: OOD error reductions vs the anchor reported by the CCM study (DiffReact, NS2D, dam break).
PUBLISHED_OOD_REDUCTION = {"diffreact": 54.2, "ns2d": 42.8, "dam_break": 13.8}
#: Each endpoint expert's name and its normalized coordinate c.
ENDPOINTS: tuple[tuple[str, float], ...] = (("low", -1.0), ("high", 1.0))
#: The endpoint experts' names, low first.
EXPERTS: tuple[str, ...] = tuple(name for name, _ in ENDPOINTS)
#: Competence targets (mean relative L2 over the scored frames of fresh trajectories).
COMPETENCE_TARGET = {"diffreact": 0.20, "ns2d": 0.10, "dam_break": 0.01}
#: Each model must also be at most this fraction of the persistence baseline's error.
COMPETENCE_VS_PERSISTENCE = 0.3


def seeds_give_interval(n_seeds: int) -> bool:
    """Whether a seed-clustered interval over ``n_seeds`` seeds is one: one seed's bootstrap is its mean twice."""
    return n_seeds > 1


class StudyConfigError(NeuralopMergeError):
    """An unknown family or scale, or an override that makes no sense."""


@dataclass(frozen=True)
class Regimes:
    """Where the regimes sit on the axis, in normalized coordinates.

    ``low`` and ``high`` are the physical values of the endpoint experts; ``transform`` is the
    family's axis transform ("linear" or "log").
    """

    low: float
    high: float
    transform: str = "linear"
    support: tuple[float, ...] = (-0.3, 0.0, 0.3)
    validation: tuple[float, ...] = (-1.5, -0.25, 0.25, 1.5)
    interp: tuple[float, ...] = (-0.5, 0.5)
    ood: tuple[float, ...] = (-2.0, 2.0)

    def value(self, c: float) -> float:
        """The physical parameter at normalized coordinate ``c``, rounded to 6 significant digits."""
        return float(f"{from_normalized(c, self.low, self.high, self.transform):.6g}")

    def values(self, coords: tuple[float, ...]) -> list[float]:
        return [self.value(c) for c in coords]

    @property
    def test(self) -> dict[str, tuple[float, ...]]:
        """Test coordinates per split."""
        return {"support": self.support, "id": (-1.0, 1.0), "interp": self.interp, "ood": self.ood}

    def check(self) -> None:
        test = {c for split, coords in self.test.items() if split != "support" for c in coords}
        overlap = (test | set(self.support)) & set(self.validation)
        if overlap:
            raise StudyConfigError(f"validation regimes {sorted(overlap)} coincide with training or test regimes")
        if len(set(self.validation)) < 3:
            raise StudyConfigError("selection by leave-one-out calibration needs at least three validation regimes")


@dataclass(frozen=True)
class ModelConfig:
    """The FNO of the anchor (and experts); the conditioned baseline gets one more input channel."""

    hidden_channels: int = 24
    n_modes: int = 8
    n_layers: int = 4


@dataclass(frozen=True)
class DataConfig:
    """Grid, horizon and trajectory counts per regime.

    ``n_frames``/``dt_frame`` None: the family's defaults. ``refine``: simulate on a grid that many
    times finer and block-average; ``spinup``: frames simulated and discarded before frame 0.
    ``n_holdout`` trajectories per training regime drive the stopping rule and nothing else.
    """

    resolution: int = 32
    n_frames: int | None = None
    dt_frame: float | None = None
    refine: int = 1
    spinup: int = 0
    n_support: int = 32
    n_endpoint: int = 32
    n_holdout: int = 4
    n_validation: int = 6
    n_test: int = 8


@dataclass(frozen=True)
class TrainConfig:
    """The recipe and the step caps of the budget rule (see the module docstring)."""

    anchor_max_steps: int = 1500
    expert_max_steps: int = 500
    steps_per_epoch: int = 100
    batch_size: int = 16
    lr: float = 3e-3
    expert_lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    noise: float = 0.01
    patience_fraction: float | None = 0.3
    #: Share of each expert's training pairs drawn from the anchor's support data (replay); 0 fine-tunes on the endpoint alone.
    expert_replay: float = 0.0

    def patience(self, max_steps: int) -> int | None:
        """Evaluations without improvement that end a run capped at ``max_steps``; None never ends one early."""
        if self.patience_fraction is None:
            return None
        return max(2, round(self.patience_fraction * max_steps / self.steps_per_epoch))


@dataclass(frozen=True)
class StudyConfig:
    family: str
    scale: str
    regimes: Regimes
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    prefix_k: int = 4
    n_grid: int = 41
    alpha_range: tuple[float, float] = (-4.0, 4.0)
    #: Points of CCM-Prefix's coarse scan. 5 (gaps of 2 on ±4) is what every registered protocol ran with;
    #: None takes the library's default, points about one unit of α apart, which finds basins 5 points step over.
    prefix_n_coarse: int | None = 5
    ta_scales: tuple[float, ...] = tuple(round(0.2 * i, 2) for i in range(8))

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["regime_values"] = {
            "low": self.regimes.low,
            "high": self.regimes.high,
            "validation": self.regimes.values(self.regimes.validation),
            **{split: self.regimes.values(coords) for split, coords in self.regimes.test.items()},
        }
        return record

    def check(self) -> None:
        """Refuse settings the protocol cannot run."""
        self.regimes.check()
        low, high = self.alpha_range
        grid = [low + (high - low) * i / (self.n_grid - 1) for i in range(self.n_grid)] if self.n_grid > 1 else []
        if not any(abs(a - 1) < 1e-9 for a in grid) or not any(abs(a + 1) < 1e-9 for a in grid):
            raise StudyConfigError(f"the α grid ({self.n_grid} points on {self.alpha_range}) must contain ±1 exactly")
        coarse = self.prefix_n_coarse
        if coarse is not None and (isinstance(coarse, bool) or not isinstance(coarse, int) or coarse < 3):
            raise StudyConfigError(f"prefix_n_coarse must be None or a whole number of at least 3, got {coarse!r}")
        if not 0.0 <= self.train.expert_replay < 1.0:
            raise StudyConfigError(f"expert_replay must lie in [0, 1), got {self.train.expert_replay}")
        frames = self.data.n_frames
        if frames is not None and frames <= self.prefix_k + 1:
            raise StudyConfigError(f"n_frames must exceed prefix_k + 1 = {self.prefix_k + 1}, got {frames}")

    def with_overrides(self, **overrides: Any) -> StudyConfig:
        """A copy with fields of the nested configs replaced by name (``seeds``, ``n_test``, ``anchor_max_steps``...).

        ``seeds=None`` keeps the scale's seeds; any other None is set as given (``patience_fraction=None``
        turns the stopping rule off, ``n_frames=None`` takes the family's own count).
        """
        parts: dict[str, Any] = {"data": self.data, "train": self.train, "model": self.model}
        top: dict[str, Any] = {}
        for name, value in overrides.items():
            if name == "seeds" and value is None:
                continue
            owner = next((key for key, part in parts.items() if name in part.__dataclass_fields__), None)
            if owner is not None:
                parts[owner] = replace(parts[owner], **{name: value})
            elif name in self.__dataclass_fields__ and name not in ("family", "scale", "regimes"):
                top[name] = tuple(value) if name == "seeds" else value
            else:
                raise StudyConfigError(f"unknown study setting {name!r}")
        config = replace(self, **parts, **top)
        config.check()
        return config


# -- the axes --------------------------------------------------------------------------------------
# diffreact: Du in [3.1e-4, 7.8e-3] over c in [-2, 2], generated at 128^2 and block-averaged to 32^2
#   (PDEBench's grid), the first second (4 frames) discarded as spin-up.
# ns2d: the CCM study's medium-gap endpoints nu = 4e-5 and 2.2e-4 on its horizon t in [0, 5]
#   (20 frames of 0.25); nu < 1e-4 is simulated on 128^2 and spectrally truncated.
# dam_break: h_in in [1.4, 3.4] over c in [-2, 2] (the bore stays inside the domain for h_in <= 4).
AXES: dict[str, Regimes] = {
    "diffreact": Regimes(low=7e-4, high=3.5e-3),
    "ns2d": Regimes(low=4e-5, high=2.2e-4),
    "dam_break": Regimes(low=1.9, high=2.9),
}
FAMILY_DATA: dict[str, dict[str, Any]] = {
    "diffreact": {"refine": 4, "spinup": 4},
    "ns2d": {"dt_frame": 0.25, "n_frames": 20},
    "dam_break": {},
}


def _unknown_scale(scale: str) -> StudyConfigError:
    """The error for a scale no protocol registers."""
    return StudyConfigError(f"unknown scale {scale!r}; choose one of {SCALES}")


def _small16x2_settings(scale: str) -> tuple[ModelConfig, DataConfig, TrainConfig, tuple[int, ...]]:
    """The CPU protocols registered one after another from ``small16x2``, each on fresh seeds."""
    if scale == "small16x2":  # small16 with both step caps doubled, on seeds no earlier run has drawn
        # Registered after small16 before any run of it, from in-distribution evidence only: every
        # DiffReact anchor and expert of small16 stopped at its step cap (the stopping rule never
        # fired) and the low expert sat at 0.203 against the 0.20 target. Sized for 2 CPU cores.
        model, data, train, _ = _scale_settings("small16")
        caps = {"anchor_max_steps": 2 * train.anchor_max_steps, "expert_max_steps": 2 * train.expert_max_steps}
        return model, data, replace(train, **caps), (15, 16, 17, 18, 19)
    if scale == "small16x2d4":  # small16x2 with four times the training trajectories, on fresh seeds
        # Registered after small16x2 before any run of it, from in-distribution evidence only: in a
        # throwaway check on seed 15's small16x2 data (the issue tracker's note; no committed run),
        # three times the support trajectories at the same 3000 steps roughly halved a DiffReact
        # anchor's error on its support, which twice the steps had not; direction_stability's data:4
        # had cut the low expert's error at its own endpoint at the same cap. Data cost minutes on a
        # CPU; the step caps set the time.
        model, data, train, _ = _scale_settings("small16x2")
        data = replace(data, n_support=4 * data.n_support, n_endpoint=4 * data.n_endpoint)
        return model, data, train, (20, 21, 22, 23, 24)
    if scale == "small16x2d4lr":  # small16x2d4 with the experts' peak learning rate at 6e-3, on fresh seeds
        # Registered after small16x2d4 (whose DiffReact low expert sat at 0.138 against its 0.108 rule,
        # at its 1000-step cap) before any run of it, from in-distribution evidence only: in a throwaway
        # check on seed 15's small16x2d4 data (the issue tracker's note; no committed run), the low
        # expert's error at its own endpoint fell as the experts' learning rate rose at the same cap,
        # reaching at 6e-3 nearly what four times the steps at 1e-3 reached, and no lower at 1e-2.
        # The cost stays small16x2d4's.
        model, data, train, _ = _scale_settings("small16x2d4")
        return model, data, replace(train, expert_lr=6e-3), (25, 26, 27, 28, 29)
    if scale == "small16x2d4lrcap":  # small16x2d4lr with the stopping rule off, on fresh seeds
        # Registered after small16x2d4lr's DiffReact run, from in-distribution evidence only: its low
        # expert met its rule in four seeds, and in the fifth (0.156) the stopping rule had ended it at
        # 500 of its 1000 steps, before the one-cycle rate annealed; at 6e-3 the rollout error rises
        # during the warm-up, so the rule can fire before the annealing where the error falls. Every
        # model now runs to its cap and keeps its best evaluation's weights; the caps are small16x2d4lr's,
        # now always spent in full.
        model, data, train, _ = _scale_settings("small16x2d4lr")
        return model, data, replace(train, patience_fraction=None), (30, 31, 32, 33, 34)
    if scale == "small16x2d4ex2":  # small16x2d4lrcap with twice the experts' steps at 3e-3, on fresh seeds
        # Registered after small16x2d4lrcap's DiffReact run, from in-distribution evidence only: its low
        # expert ended at its own endpoint 0.0004 above its 0.3 x persistence rule, with every expert
        # run to its 1000-step cap. In the throwaway check on seed 15's small16x2d4 data (the issue
        # tracker's note; no committed run), 2000 steps at a 3e-3 peak rate gave the lowest error at
        # both endpoints of every cap and rate tried (low 0.096 against 0.099 at 1000 steps and 6e-3;
        # high 0.050 against 0.053). The anchor is unchanged; since `anchor_extra` and the conditioned
        # FNO follow the experts' steps, a seed trains 18000 steps instead of 12000.
        model, data, train, _ = _scale_settings("small16x2d4lrcap")
        experts = {"expert_max_steps": 2 * train.expert_max_steps, "expert_lr": 3e-3}
        return model, data, replace(train, **experts), (35, 36, 37, 38, 39)
    if scale == "small16x2d4ex2r":  # small16x2d4ex2 with replay and twice the experts' steps, on fresh seeds
        # Registered before any run of it, from in-distribution evidence only: the expert_replay ablation
        # (seeds 35-37 of small16x2d4ex2, examples/results/ablations-small16x2d4ex2/expert_replay/).
        # There a quarter of each expert's pairs replayed from the support, with twice the experts' cap,
        # kept every model from diverging in distribution (small16x2d4ex2's low expert fails on 18 of
        # 40 trajectories at c = +1) and left the low expert within 0.3 x persistence on the mean
        # (0.105 against 0.109). The same ablation measured CCM-Prefix's OOD cut on those seeds falling
        # to 19.1 / 44.1 % (c = -2 / +2); this protocol asks whether that holds on fresh seeds. With
        # `anchor_extra` and the conditioned FNO following the experts' steps, a seed trains 30000 steps.
        model, data, train, _ = _scale_settings("small16x2d4ex2")
        experts = {"expert_max_steps": 2 * train.expert_max_steps, "expert_replay": 0.25}
        return model, data, replace(train, **experts), (40, 41, 42, 43, 44)
    if scale == "small16x2d4ex2rs":  # small16x2d4ex2r with the library's coarse scan (SCALE_EVALUATION), on fresh seeds
        model, data, train, _ = _scale_settings("small16x2d4ex2r")
        return model, data, train, (45, 46, 47, 48, 49)
    raise _unknown_scale(scale)


def _scale_settings(scale: str) -> tuple[ModelConfig, DataConfig, TrainConfig, tuple[int, ...]]:
    if scale == "quick":  # the demo: one seed, under 10 minutes on 2 CPU cores
        return (
            ModelConfig(),
            DataConfig(n_support=16, n_endpoint=16, n_holdout=2, n_validation=3, n_test=4),
            TrainConfig(anchor_max_steps=1000, expert_max_steps=300),
            (0,),
        )
    if scale == "small":  # the committed CPU results: five seeds
        return ModelConfig(), DataConfig(), TrainConfig(), (0, 1, 2, 3, 4)
    if scale == "small16":  # the small scale with 16 Fourier modes, on seeds no earlier run has drawn
        # Registered after the endpoint_modes ablation (small scale, seeds 0-2) showed that 8 modes
        # leave NS2D's low expert no better than its anchor and DiffReact's anchor above its target.
        # Fresh seeds, so that no test trajectory of this protocol has been looked at.
        return ModelConfig(n_modes=16), DataConfig(), TrainConfig(), (5, 6, 7, 8, 9)
    if scale.startswith("small16x2"):
        return _small16x2_settings(scale)
    if scale == "medium":  # the small scale's model with 2-3x its data and step caps, sized for one GPU
        # Fixed before any medium run, from in-distribution evidence only: at the small scale every
        # anchor of DiffReact and NS2D stopped at its step cap (the stopping rule never fired), and
        # 4 held-out trajectories per regime made the experts' early stopping noisy.
        return (
            ModelConfig(),
            DataConfig(n_support=64, n_endpoint=64, n_holdout=8, n_validation=8, n_test=16),
            TrainConfig(anchor_max_steps=4000, expert_max_steps=1500),
            (0, 1, 2, 3, 4),
        )
    if scale == "medium16":  # the medium scale with 16 Fourier modes, on seeds no earlier run has drawn
        # Registered after small16 (all five seeds) before any run of it: 16 modes made NS2D and dam
        # break competent and left DiffReact's low expert at 0.203 with every anchor at its step cap,
        # so this gives the 16-mode model medium's data and caps. For one GPU.
        model, data, train, _ = _scale_settings("medium")
        return replace(model, n_modes=16), data, train, (10, 11, 12, 13, 14)
    if scale == "paper":  # the study's sizes, for a GPU
        return (
            ModelConfig(hidden_channels=64, n_modes=16, n_layers=4),
            DataConfig(resolution=64, n_support=128, n_endpoint=128, n_holdout=16, n_validation=16, n_test=32),
            TrainConfig(anchor_max_steps=20000, expert_max_steps=5000, steps_per_epoch=500, batch_size=32),
            (0, 1, 2, 3, 4),
        )
    raise _unknown_scale(scale)


#: The top-level settings (evaluation, not training) a scale changes from :class:`StudyConfig`'s defaults.
SCALE_EVALUATION: dict[str, dict[str, Any]] = {
    # Registered before any run of it and before any future error of the one-unit scan was read, from
    # the records' own criterion alone: on small16x2d4ex2r's DiffReact at c = -2 the registered 5-point
    # scan ended, on 4 of 5 seeds, at an α whose error over the observed frames was above that of a
    # single α the line also recorded (0.228 against 0.104 on seed 42), and the scan one unit apart finds
    # that α on the same curve (tests/test_prefix.py). Training is small16x2d4ex2r's.
    "small16x2d4ex2rs": {"prefix_n_coarse": None},
}


def scale_seeds(scale: str) -> tuple[int, ...]:
    """The seeds ``scale`` runs (the same for every family)."""
    return _scale_settings(scale)[3]


def get_config(family: str, scale: str = "quick") -> StudyConfig:
    """The study configuration of ``family`` at ``scale`` (one of :data:`SCALES`)."""
    if family not in AXES:
        raise StudyConfigError(f"unknown study family {family!r}; choose one of {sorted(AXES)}")
    from ..families import get as get_family

    regimes = replace(AXES[family], transform=get_family(family).parameter.transform)
    model, data, train, seeds = _scale_settings(scale)
    config = StudyConfig(
        family=family, scale=scale, regimes=regimes, model=model, data=replace(data, **FAMILY_DATA[family]),
        train=train, seeds=seeds, **SCALE_EVALUATION.get(scale, {}),
    )
    config.check()
    return config
