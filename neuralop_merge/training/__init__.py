"""Training on top of neuraloperator's ``Trainer``: the family anchor and its endpoint experts.

``train_anchor`` trains the anchor on the support regimes; ``finetune_endpoints``
fine-tunes one copy of it per regime and returns experts whose ``provenance``
records where they came from, so that ``CCM.from_experts`` can check and place
them. Both reproduce from a seed, checkpoint and resume, validate on held-out
trajectories, and run data-parallel under ``torchrun``.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .lineage import check_expert_lineage
from .recipes import TrainingSettings, finetune_endpoints, train_anchor
from .trainer import FinetuneTrainer
from .validation import rollout_error

__all__ = [
    "FinetuneTrainer",
    "TrainingSettings",
    "check_expert_lineage",
    "finetune_endpoints",
    "load_checkpoint",
    "rollout_error",
    "save_checkpoint",
    "train_anchor",
]
