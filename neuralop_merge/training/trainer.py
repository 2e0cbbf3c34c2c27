"""neuraloperator's ``Trainer``, made reproducible, resumable and distributed-safe."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from neuralop.training import Trainer
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import CheckpointError, TrainingError
from ..rollout import forget_grids_elsewhere
from .checkpoint import load_checkpoint, save_checkpoint, tensor_state
from .distributed import is_main_process, require_process_group, unwrap, wrap_data_parallel
from .seeding import seed_epoch
from .processing import ProcessedModel
from .validation import rollout_error

ROLLOUT_METRIC = "val_rollout_l2"
LossFunction = Callable[..., torch.Tensor]


class EarlyStop(Exception):
    """Raised after an evaluation once the validation rollout error has stopped improving."""


class BestWeights:
    """The weights with the lowest validation rollout error so far, and how long ago they were seen.

    Parameters
    ----------
    patience : int or None
        Evaluations without improvement after which training stops; None never stops early.
    """

    def __init__(self, patience: int | None) -> None:
        self.patience = patience
        self.value = float("inf")
        self.epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.stale = 0

    def update(self, epoch: int, value: float, model: nn.Module) -> None:
        """Record an evaluation; keep a copy of the weights if they are the best so far."""
        if value < self.value:  # NaN never improves
            self.value, self.epoch, self.stale = value, epoch, 0
            self.state = {name: tensor.detach().clone() for name, tensor in tensor_state(model).items()}
        else:
            self.stale += 1

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.stale >= self.patience

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "epoch": self.epoch, "state": self.state, "stale": self.stale}

    def restore(self, record: dict[str, Any]) -> None:
        self.value, self.epoch, self.state, self.stale = record["value"], record["epoch"], record["state"], record["stale"]


class FinetuneTrainer(Trainer):
    """A neuraloperator ``Trainer`` with the guarantees fine-tuning needs.

    On top of the parent it

    * seeds every epoch from ``(seed, epoch)``, so runs are reproducible and a
      resumed run ends with exactly the weights of an uninterrupted one;
    * counts optimizer steps and shows them with the loss in a tqdm bar;
    * checkpoints (rank 0 only) and resumes with :mod:`.checkpoint`, which,
      unlike the parent's, loads under torch >= 2.6;
    * adds the rollout error on held-out trajectories to every evaluation;
    * wraps the model in DDP itself, so that gloo/CPU runs work too.

    Parameters
    ----------
    model : nn.Module
        Model to train, in place.
    n_epochs : int
        Total number of epochs, counting those done before a resume.
    seed : int
        Seed of the run; see :func:`.seeding.seed_epoch`.
    identity : dict
        What the run is (kind, regime, anchor fingerprint, seed). It is stored in
        checkpoints, and a checkpoint of another run is refused on resume.
    device : str or torch.device, default "cpu"
    use_distributed : bool, default False
        Train data-parallel over the initialised ``torch.distributed`` group.
    rollout_trajectories : torch.Tensor, optional
        Held-out trajectories ``[N, T+1, C, H, W]`` for the rollout metric.
    description : str, default ""
        Label of the progress bar.
    progress : bool, default True
        Show a progress bar (on rank 0 only).
    data_processor : DataProcessor, optional
        neuraloperator data processor, handed to the parent; rollouts for validation run
        through it (:class:`~.processing.ProcessedModel`), so they are in physical units.
    patience : int, optional
        With ``rollout_trajectories``: stop once the validation rollout error has not improved
        for ``patience`` evaluations. Whenever rollout trajectories are given, the weights with
        the lowest validation rollout error are restored at the end of training.
    pushforward : int, default 0
        Train on the model's own predictions (the pushforward trick of Brandstetter et al.,
        2022): before each batch, draw ``n`` uniformly from ``0 .. pushforward``, roll the
        input ``n`` steps forward with the model itself without gradients, and train the step
        from there to the true frame ``n + 1`` steps ahead. The loader's batches must then
        carry ``'ahead'`` frames (``PairDataset(..., lead=pushforward)``).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        n_epochs: int,
        seed: int,
        identity: dict[str, Any],
        device: str | torch.device = "cpu",
        use_distributed: bool = False,
        rollout_trajectories: torch.Tensor | None = None,
        description: str = "",
        progress: bool = True,
        data_processor: nn.Module | None = None,
        patience: int | None = None,
        pushforward: int = 0,
    ):
        if use_distributed:
            require_process_group()
        # The parent's own DDP wrapping is left off (see wrap_data_parallel).
        super().__init__(
            model=model, n_epochs=n_epochs, device=device, use_distributed=False, data_processor=data_processor
        )
        self.data_parallel = use_distributed
        self.seed = seed
        self.identity = identity
        self.rollout_trajectories = rollout_trajectories
        self.description = description
        self.show_progress = progress and is_main_process()
        self.progress_bar: tqdm | None = None
        self.step = 0
        self.best = BestWeights(patience)
        self.pushforward = pushforward
        self.last_metrics: dict[str, Any] = {}

    def train(
        self,
        train_loader: DataLoader,
        test_loaders: dict[str, DataLoader],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        **kwargs: Any,
    ) -> dict:
        """Train with the parent's loop; arguments as in ``neuralop.training.Trainer.train``.

        Returns
        -------
        dict
            Metrics of the last epoch (``avg_loss`` per sample, ``val_l2``, ...).
        """
        # The parent's ``model.to(device)`` leaves neuraloperator's cached positional grids behind: a model
        # that ran elsewhere (a worker's GPU, the CPU) would meet its old grid in the first forward pass.
        forget_grids_elsewhere(self.model, torch.device(self.device))
        if self.data_parallel:
            self.model = wrap_data_parallel(self.model, self.device)
        try:
            with warnings.catch_warnings():
                # The parent calls ``model(**batch)`` and ``loss(out, **batch)``, so neuraloperator's
                # models and losses warn, every batch, about the batch entry they do not use.
                warnings.filterwarnings("ignore", message=r".*received unexpected keyword arguments")
                metrics = super().train(train_loader, test_loaders, optimizer, scheduler, **kwargs)
        except EarlyStop:
            metrics = self.last_metrics
        finally:
            if self.progress_bar is not None:
                self.progress_bar.close()
            self.model = unwrap(self.model)
        if self.best.state is not None:
            self.model.load_state_dict(self.best.state, strict=False)
            metrics = {**metrics, "best_epoch": self.best.epoch, ROLLOUT_METRIC: self.best.value}
        return metrics

    def train_one_epoch(self, epoch: int, train_loader: DataLoader, training_loss: LossFunction) -> tuple:
        """Seed the epoch, open the progress bar on first use, then run the parent's epoch."""
        seed_epoch(train_loader, self.seed, epoch)
        if self.show_progress and self.progress_bar is None:
            self.progress_bar = tqdm(
                total=self.n_epochs * len(train_loader),
                initial=epoch * len(train_loader),
                desc=self.description,
                unit="step",
            )
        result = super().train_one_epoch(epoch, train_loader, training_loss)
        self.last_metrics = {"train_err": result[0], "avg_loss": result[1]}
        return result

    def train_one_batch(self, idx: int, sample: dict, training_loss: LossFunction) -> torch.Tensor:
        """The parent's batch loss (after any pushforward), counted as one optimizer step and shown per sample."""
        loss = super().train_one_batch(idx, self.pushed_forward(sample), training_loss)
        self.step += 1
        if self.progress_bar is not None:
            self.progress_bar.update()
            self.progress_bar.set_postfix(epoch=self.epoch, loss=f"{loss.item() / len(sample['y']):.4g}")
        return loss

    def pushed_forward(self, sample: dict) -> dict:
        """``sample`` with its input rolled forward by the model (see ``pushforward``), ``'ahead'`` removed.

        The unrolled steps carry no gradient: the model learns to correct the kind of error it
        makes itself, at the cost of a forward pass per unrolled step.
        """
        sample = dict(sample)
        ahead = sample.pop("ahead", None)
        if not self.pushforward:
            return sample
        if ahead is None or ahead.shape[1] < self.pushforward:
            given = "none" if ahead is None else ahead.shape[1]
            raise TrainingError(
                f"pushforward={self.pushforward} needs batches with that many 'ahead' frames (got {given}); "
                f"build the loader on PairDataset(trajectories, lead={self.pushforward})"
            )
        unrolls = int(torch.randint(0, self.pushforward + 1, ()))
        if unrolls == 0:
            return sample
        state, step = sample["x"], self.one_step_model()
        with torch.no_grad():
            for _ in range(unrolls):
                state = step(state.to(self.device))
        return {**sample, "x": state, "y": ahead[:, unrolls - 1]}

    def evaluate_all(
        self,
        epoch: int,
        eval_losses: dict,
        test_loaders: dict[str, DataLoader],
        eval_modes: dict[str, str],
        max_autoregressive_steps: int | None = None,
    ) -> dict:
        """The parent's one-step metrics, plus ``val_rollout_l2`` when trajectories were given."""
        metrics = super().evaluate_all(epoch, eval_losses, test_loaders, eval_modes, max_autoregressive_steps)
        if self.rollout_trajectories is not None:
            metrics[ROLLOUT_METRIC] = rollout_error(self.one_step_model(), self.rollout_trajectories, self.device)
            self.best.update(epoch, metrics[ROLLOUT_METRIC], unwrap(self.model))
        self.last_metrics.update(metrics)
        if self.best.exhausted:
            raise EarlyStop
        return metrics

    def one_step_model(self) -> nn.Module:
        """The model being trained as a one-step map in physical units."""
        model = unwrap(self.model)
        return model if self.data_processor is None else ProcessedModel(model, self.data_processor)

    def checkpoint(self, save_dir: str | Path) -> None:
        """Save model, optimizer, scheduler and progress after the current epoch; rank 0 only."""
        if not is_main_process():
            return
        save_checkpoint(
            save_dir,
            {
                "identity": self.identity,
                "epochs_done": self.epoch + 1,
                "step": self.step,
                "model": tensor_state(unwrap(self.model)),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "best": self.best.as_dict(),
            },
        )

    def resume_state_from_dir(self, save_dir: str | Path) -> None:
        """Restore a checkpoint written by :meth:`checkpoint` of the same run.

        Raises
        ------
        CheckpointError
            If the checkpoint belongs to another run (regime, anchor or seed).
        TrainingError
            If the checkpoint has already done all ``n_epochs`` epochs.
        """
        state = load_checkpoint(save_dir)
        if state["identity"] != self.identity:
            raise CheckpointError(
                f"checkpoint in {save_dir} is of run {state['identity']}, not of this run {self.identity}"
            )
        if state["epochs_done"] >= self.n_epochs:
            raise TrainingError(
                f"checkpoint in {save_dir} has already done {state['epochs_done']} epochs; "
                f"ask for more than that (n_epochs={self.n_epochs})"
            )
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = state["epochs_done"]
        self.step = state["step"]
        self.best.restore(state["best"])
