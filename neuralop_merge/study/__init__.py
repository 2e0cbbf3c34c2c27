"""The reproduction study: does composing experts along the physical direction beat the anchor
and plain averaging, out of distribution, on real PDE rollouts?

>>> from neuralop_merge.study import get_config, run_study
>>> results = run_study(get_config("diffreact", "quick"), "out/diffreact")  # doctest: +SKIP

``examples/<family>.py`` and ``neuralop-merge demo`` are thin wrappers of :func:`run_study`.
"""

from .config import FAMILIES, PUBLISHED_OOD_REDUCTION, SCALES, SPLITS, StudyConfig, StudyConfigError, get_config
from .methods import METHODS
from .pipeline import run_seed, run_study
from .report import summary_table

__all__ = [
    "FAMILIES",
    "METHODS",
    "PUBLISHED_OOD_REDUCTION",
    "SCALES",
    "SPLITS",
    "StudyConfig",
    "StudyConfigError",
    "get_config",
    "run_seed",
    "run_study",
    "summary_table",
]
