"""The fine-tuning workflow: train the family anchor, then fine-tune one expert per regime."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

import torch
from neuralop.losses import LpLoss
from torch import nn
from torch.utils.data import DataLoader

from ..errors import TrainingError
from ..io import save_model
from ..weights import fingerprint
from .checkpoint import checkpoint_exists
from .distributed import is_main_process, mean_over_ranks, shard_loader
from .seeding import derive_seed
from .trainer import ROLLOUT_METRIC, FinetuneTrainer
from .validation import check_trajectories, one_step_loader

SchedulerName = Literal["cosine", "constant", "onecycle"]
SCHEDULERS = ("cosine", "constant", "onecycle")
OptimizerName = Literal["adamw", "sgd"]
OPTIMIZERS = ("adamw", "sgd")
REGIME_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation settings shared by :func:`train_anchor` and :func:`finetune_endpoints`.

    Parameters
    ----------
    n_epochs : int
        Number of epochs.
    lr : float, default 1e-3
        Learning rate.
    weight_decay : float, default 0.0
        Weight decay (decoupled for AdamW, L2 for SGD).
    scheduler : {"cosine", "constant", "onecycle"}, default "cosine"
        Learning-rate schedule over the epochs (neuraloperator's ``Trainer`` steps it once per
        epoch). "onecycle" warms up to ``lr`` over the first 30 % of the epochs, then anneals.
    seed : int, default 0
        Base seed; each run derives its own from it and its name.
    device : str, default "cpu"
    use_distributed : bool, default False
        Train data-parallel over the initialised ``torch.distributed`` group.
    progress : bool, default True
        Show a tqdm progress bar with the loss.
    grad_clip : float, optional
        Clip the global gradient norm to this value before every optimizer step.
    patience : int, optional
        With validation trajectories: stop after this many evaluations (one per epoch)
        without improvement of the validation rollout error. With validation trajectories the
        weights of the best evaluation are restored at the end either way.
    optimizer : {"adamw", "sgd"}, default "adamw"
        AdamW, or SGD with Nesterov momentum ``momentum`` (for ablations of the recipe).
    momentum : float, default 0.9
        SGD momentum; unused by AdamW.
    pushforward : int, default 0
        Most steps the model rolls its own input forward (without gradients) before a training
        step; see :class:`~.trainer.FinetuneTrainer`. The training loader must carry that many
        ``'ahead'`` frames (``PairDataset(trajectories, lead=pushforward)``).
    """

    n_epochs: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: SchedulerName = "cosine"
    seed: int = 0
    device: str = "cpu"
    use_distributed: bool = False
    progress: bool = True
    grad_clip: float | None = None
    patience: int | None = None
    optimizer: OptimizerName = "adamw"
    momentum: float = 0.9
    pushforward: int = 0

    def __post_init__(self) -> None:
        if self.n_epochs < 1:
            raise TrainingError(f"n_epochs must be at least 1, got {self.n_epochs}")
        if not self.lr > 0:
            raise TrainingError(f"lr must be positive, got {self.lr}")
        if self.scheduler not in SCHEDULERS:
            raise TrainingError(f"unknown scheduler {self.scheduler!r}; choose one of {SCHEDULERS}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise TrainingError(f"grad_clip must be positive, got {self.grad_clip}")
        if self.patience is not None and self.patience < 1:
            raise TrainingError(f"patience must be at least 1, got {self.patience}")
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if not 0 <= self.momentum < 1:
            raise TrainingError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (isinstance(self.pushforward, int) and self.pushforward >= 0):
            raise TrainingError(f"pushforward must be a non-negative integer, got {self.pushforward!r}")

    def optimizer_record(self) -> dict[str, Any]:
        """The optimizer settings as recorded in provenance."""
        record = {"lr": self.lr, "weight_decay": self.weight_decay, "grad_clip": self.grad_clip}
        if self.optimizer == "sgd":
            return {"name": "SGD", **record, "momentum": self.momentum, "nesterov": True}
        return {"name": "AdamW", **record}

    def scheduler_record(self) -> dict[str, Any]:
        """The scheduler settings as recorded in provenance."""
        if self.scheduler == "cosine":
            return {"name": "CosineAnnealingLR", "T_max": self.n_epochs}
        if self.scheduler == "onecycle":
            return {"name": "OneCycleLR", "max_lr": self.lr, "total_steps": self.n_epochs + 1, "pct_start": 0.3}
        return {"name": "ConstantLR"}

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over the parameters of ``model`` that require gradients, clipping gradients if asked.

        neuraloperator's ``Trainer`` calls ``backward`` and ``step`` itself, so the clipping runs as
        a step pre-hook of the optimizer: after the gradients exist, before they are applied.
        """
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        if self.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                trainable, lr=self.lr, momentum=self.momentum, nesterov=True, weight_decay=self.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(trainable, lr=self.lr, weight_decay=self.weight_decay)
        if self.grad_clip is not None:
            limit = self.grad_clip

            def clip(*_: Any) -> None:
                nn.utils.clip_grad_norm_(trainable, limit)

            optimizer.register_step_pre_hook(clip)
        return optimizer

    def build_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        """The epoch-wise learning-rate schedule of ``optimizer``."""
        if self.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.n_epochs)
        if self.scheduler == "onecycle":
            # One more step than epochs: the Trainer also steps after the last epoch.
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.lr, total_steps=self.n_epochs + 1, pct_start=0.3
            )
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


@dataclass(frozen=True)
class RunResult:
    """What one training run reports: optimizer steps and final losses."""

    steps: int
    losses: dict[str, float | None]


def run_training(
    model: nn.Module,
    train_loader: DataLoader,
    settings: TrainingSettings,
    *,
    identity: dict[str, Any],
    data_processor: nn.Module | None = None,
    loss: Any = None,
    val_trajectories: torch.Tensor | None = None,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
) -> RunResult:
    """Train ``model`` in place with :class:`FinetuneTrainer` and report steps and losses.

    Parameters
    ----------
    model : nn.Module
        Model to train; only its parameters that require gradients move.
    train_loader : DataLoader
        Loader of ``{'x', 'y'}`` batches; sharded over ranks when distributed.
    settings : TrainingSettings
    identity : dict
        Identity of the run (kind, regime, ...); the run's seed is derived from it.
    data_processor : DataProcessor, optional
        neuraloperator data processor the ``Trainer`` applies to every batch.
    loss : callable, optional
        Training loss ``loss(out, **batch)`` summed over the batch; default
        ``LpLoss`` over the data's spatial dimensions.
    val_trajectories : torch.Tensor, optional
        Held-out trajectories ``[N, T+1, C, ...]`` for one-step and rollout validation.
    checkpoint_dir : Path, optional
        Directory to checkpoint into after every epoch (rank 0 only).
    resume_from : Path, optional
        Checkpoint directory of an interrupted run of the same identity to continue.

    Returns
    -------
    RunResult
    """
    run_seed = derive_seed(settings.seed, *identity.values())
    if settings.use_distributed:
        train_loader = shard_loader(train_loader, run_seed)
    optimizer = settings.build_optimizer(model)
    trainer = FinetuneTrainer(
        model=model,
        n_epochs=settings.n_epochs,
        seed=run_seed,
        identity=identity,
        device=settings.device,
        use_distributed=settings.use_distributed,
        rollout_trajectories=val_trajectories,
        description=str(identity.get("regime", identity["kind"])),
        progress=settings.progress,
        data_processor=data_processor,
        patience=settings.patience,
        pushforward=settings.pushforward,
    )
    test_loaders = {}
    if val_trajectories is not None:
        test_loaders["val"] = one_step_loader(val_trajectories, train_loader.batch_size)
    checkpointing = {} if checkpoint_dir is None else {"save_every": 1, "save_dir": checkpoint_dir}
    metrics = trainer.train(
        train_loader,
        test_loaders,
        optimizer,
        settings.build_scheduler(optimizer),
        training_loss=loss if loss is not None else default_loss(train_loader),
        resume_from_dir=resume_from,
        **checkpointing,
    )
    return RunResult(steps=trainer.step, losses=final_losses(metrics))


def default_loss(loader: DataLoader) -> LpLoss:
    """Relative L2 over the spatial dimensions of the loader's samples (``x`` is ``[C, ...]``)."""
    return LpLoss(d=loader.dataset[0]["x"].ndim - 1)


def final_losses(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Per-sample relative L2 losses of the last epoch, as recorded in provenance."""

    def optional_float(key: str) -> float | None:
        return None if key not in metrics else float(metrics[key])

    return {
        # Each rank only sees its shard; the mean is what the whole data set saw.
        "train": mean_over_ranks(float(metrics["avg_loss"])),
        "val": optional_float("val_l2"),
        "val_rollout": optional_float(ROLLOUT_METRIC),
    }


def train_anchor(
    model: nn.Module,
    support_loader: DataLoader,
    *,
    n_epochs: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: SchedulerName = "cosine",
    seed: int = 0,
    settings: TrainingSettings | None = None,
    data_processor: nn.Module | None = None,
    loss: Any = None,
    val_trajectories: torch.Tensor | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    device: str = "cpu",
    use_distributed: bool = False,
    progress: bool = True,
) -> nn.Module:
    """Train the family anchor on the support regimes.

    Parameters
    ----------
    model : nn.Module
        The anchor, trained in place.
    support_loader : DataLoader
        ``{'x', 'y'}`` one-step batches pooled over the support regimes.
    n_epochs, lr, weight_decay, scheduler, seed, device, use_distributed, progress
        See :class:`TrainingSettings`.
    settings : TrainingSettings, optional
        All optimisation settings as one object; when given, it replaces the
        keywords above (which must then be left at their defaults).
    data_processor : DataProcessor, optional
        neuraloperator data processor (normalizers, increments, ...) applied to
        every batch by the ``Trainer``; ``model`` is the bare network it feeds.
    loss : callable, optional
        Training loss; default ``LpLoss`` over the data's spatial dimensions.
    val_trajectories : torch.Tensor, optional
        Held-out trajectories ``[N, T+1, C, ...]``; one-step and rollout
        errors are evaluated after every epoch, the best weights restored.
    checkpoint_dir : str or Path, optional
        Directory to checkpoint into after every epoch (rank 0 writes).
    resume_from : str or Path, optional
        Checkpoint directory of an interrupted run to continue; with the same
        seed the result equals that of an uninterrupted run.

    Returns
    -------
    nn.Module
        ``model``, with ``model.provenance`` recording ``kind="anchor"``, the
        optimizer and scheduler settings, steps, epochs, pushforward, seed and final losses.
    """
    settings = settings or TrainingSettings(
        _required_epochs(n_epochs), lr, weight_decay, scheduler, seed, device, use_distributed, progress
    )
    if val_trajectories is not None:
        check_trajectories(val_trajectories)
    result = run_training(
        model,
        support_loader,
        settings,
        identity={"kind": "anchor", "seed": settings.seed},
        data_processor=data_processor,
        loss=loss,
        val_trajectories=val_trajectories,
        checkpoint_dir=optional_path(checkpoint_dir),
        resume_from=optional_path(resume_from),
    )
    model.provenance = {"kind": "anchor", **run_record(settings, result)}
    export_model(model, optional_path(checkpoint_dir), "anchor")
    return model


def run_record(settings: TrainingSettings, result: RunResult) -> dict[str, Any]:
    """The provenance fields shared by anchors and experts."""
    return {
        "optimizer": settings.optimizer_record(),
        "scheduler": settings.scheduler_record(),
        "steps": result.steps,
        "epochs": settings.n_epochs,
        "pushforward": settings.pushforward,
        "seed": settings.seed,
        "losses": result.losses,
    }


def finetune_endpoints(
    anchor: nn.Module,
    regimes: Mapping[str, tuple[float, DataLoader]],
    *,
    n_epochs: int | None = None,
    parameter: str = "mu",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: SchedulerName = "cosine",
    seed: int = 0,
    settings: TrainingSettings | None = None,
    data_processor: nn.Module | None = None,
    loss: Any = None,
    trainable: Sequence[str] | None = None,
    val_trajectories: Mapping[str, torch.Tensor] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | None = None,
    device: str = "cpu",
    use_distributed: bool = False,
    progress: bool = True,
) -> dict[str, nn.Module]:
    """Fine-tune one copy of the anchor per regime; the anchor itself is never modified.

    Parameters
    ----------
    anchor : nn.Module
        The family anchor.
    regimes : mapping of str to (float, DataLoader)
        Regime name -> (value of the physical parameter, loader of that
        regime's ``{'x', 'y'}`` one-step batches). Any number of regimes.
    n_epochs, lr, weight_decay, scheduler, seed, device, use_distributed, progress
        See :class:`TrainingSettings`. Each regime trains with its own seed,
        derived from ``seed`` and its name, so results do not depend on the
        order or number of regimes. With ``use_distributed`` every regime is
        trained data-parallel over all ranks, one after the other.
    settings, data_processor, loss
        As in :func:`train_anchor`; the experts share the data processor.
    parameter : str, default "mu"
        Name of the physical parameter the regimes differ in.
    trainable : sequence of str, optional
        ``fnmatch`` patterns of the parameter names to fine-tune, e.g.
        ``["fno_blocks.convs.*.weight*"]`` for the spectral weights only; the
        other parameters keep the anchor's values, so a merge moves only these.
        All parameters by default.
    val_trajectories : mapping of str to torch.Tensor, optional
        Regime name -> held-out trajectories ``[N, T+1, C, H, W]`` for one-step
        and rollout validation; regimes left out are not validated.
    checkpoint_dir : str or Path, optional
        Directory to checkpoint into, one sub-directory per regime (rank 0 writes).
    resume_from : str or Path, optional
        A ``checkpoint_dir`` of an interrupted call: each regime with a
        checkpoint there continues from it, the others start afresh.

    Returns
    -------
    dict of str to nn.Module
        Regime name -> expert. Each expert's ``provenance`` holds ``kind="expert"``,
        ``anchor_fingerprint``, ``parameter`` (name, value), ``regime``, optimizer
        and scheduler settings, ``steps``, ``epochs``, ``pushforward``, ``seed``, final ``losses``
        and the ``trainable`` parameter names (None for all).
    """
    settings = settings or TrainingSettings(
        _required_epochs(n_epochs), lr, weight_decay, scheduler, seed, device, use_distributed, progress
    )
    val_trajectories = dict(val_trajectories or {})
    check_regimes(regimes, val_trajectories)
    anchor_fingerprint = fingerprint(anchor)
    experts = {}
    for regime, (value, loader) in regimes.items():
        identity = {"kind": "expert", "regime": regime, "anchor_fingerprint": anchor_fingerprint, "seed": settings.seed}
        expert = copy.deepcopy(anchor)
        trainable_names = select_parameters(expert, trainable)
        with only_trainable(expert, trainable_names):
            result = run_training(
                expert, loader, settings, identity=identity, data_processor=data_processor, loss=loss,
                val_trajectories=val_trajectories.get(regime), checkpoint_dir=regime_dir(checkpoint_dir, regime),
                resume_from=regime_checkpoint(resume_from, regime),
            )
        expert.provenance = {
            "kind": "expert",
            "anchor_fingerprint": anchor_fingerprint,
            "parameter": {"name": parameter, "value": float(value)},
            "regime": regime,
            **run_record(settings, result),
            "trainable": trainable_names,
        }
        export_model(expert, regime_dir(checkpoint_dir, regime), regime)
        experts[regime] = expert
    return experts


def export_model(model: nn.Module, folder: Path | None, name: str) -> None:
    """Also leave the trained model in neuraloperator's layout next to the training state (rank 0).

    ``load_model``, the command line (``--anchor ckpt/anchor``) and ``FNO.from_checkpoint`` read it;
    the training state beside it is only for resuming.
    """
    if folder is not None and is_main_process():
        save_model(model, folder, name=name, overwrite=True)


def _required_epochs(n_epochs: int | None) -> int:
    if n_epochs is None:
        raise TrainingError("give n_epochs or settings=TrainingSettings(...)")
    return n_epochs


def optional_path(path: str | Path | None) -> Path | None:
    """``path`` as a Path, keeping None."""
    return None if path is None else Path(path)


def regime_dir(folder: str | Path | None, regime: str) -> Path | None:
    """The sub-directory of ``folder`` holding the checkpoint of ``regime``."""
    return None if folder is None else Path(folder) / regime


def regime_checkpoint(resume_from: str | Path | None, regime: str) -> Path | None:
    """The checkpoint directory ``regime`` resumes from, or None to start afresh."""
    folder = regime_dir(resume_from, regime)
    return folder if folder is not None and checkpoint_exists(folder) else None


def check_regimes(
    regimes: Mapping[str, tuple[float, DataLoader]], val_trajectories: Mapping[str, torch.Tensor]
) -> None:
    """Raise :class:`TrainingError` on an empty or malformed regime table."""
    if not regimes:
        raise TrainingError("no regimes to fine-tune on")
    for name, entry in regimes.items():
        if not REGIME_NAME.fullmatch(name):
            raise TrainingError(f"regime name {name!r} must be letters, digits, '_', '.' or '-' (it names files)")
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], DataLoader)):
            raise TrainingError(f"regime {name!r} must map to (parameter value, DataLoader)")
    unknown = sorted(set(val_trajectories) - set(regimes))
    if unknown:
        raise TrainingError(f"validation trajectories given for unknown regimes {unknown}")
    for trajectories in val_trajectories.values():
        check_trajectories(trajectories)


def select_parameters(model: nn.Module, patterns: Sequence[str] | None) -> list[str] | None:
    """Names of the parameters of ``model`` matching any of ``patterns`` (None: all of them).

    Raises
    ------
    TrainingError
        If a pattern matches no parameter, which is almost always a typo.
    """
    if patterns is None:
        return None
    names = [name for name, _ in model.named_parameters()]
    unmatched = [pattern for pattern in patterns if not any(fnmatch(name, pattern) for name in names)]
    if unmatched:
        raise TrainingError(f"trainable patterns {unmatched} match no parameter of {type(model).__name__}")
    return [name for name in names if any(fnmatch(name, pattern) for pattern in patterns)]


@contextmanager
def only_trainable(model: nn.Module, names: list[str] | None) -> Iterator[None]:
    """Freeze every parameter not in ``names`` (None: freeze none) and restore the flags on exit."""
    flags = {name: parameter.requires_grad for name, parameter in model.named_parameters()}
    if names is not None:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in names)
    try:
        yield
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(flags[name])
