"""The reproduction study: does composing experts along the physical direction beat the anchor,
plain averaging and a parameter-conditioned network out of distribution, on real PDE rollouts?

>>> from neuralop_merge.study import get_config, run_study
>>> results = run_study(get_config("diffreact", "quick"), "out/diffreact")  # doctest: +SKIP

``examples/<family>.py`` and ``neuralop-merge demo`` are thin wrappers of :func:`run_study`.
Modules, in pipeline order: :mod:`.config` (the pre-registered protocol), :mod:`.data`,
:mod:`.models` (the training recipe), :mod:`.evaluation`, :mod:`.records` (the per-seed schema),
:mod:`.stats` (clustered bootstrap, paired tests), :mod:`.report` and :mod:`.figures`.
"""

from __future__ import annotations

from ..lazy import lazy_getattr
from .config import FAMILIES, PUBLISHED_OOD_REDUCTION, SCALES, SPLITS, StudyConfig, StudyConfigError, get_config

# The pipeline and the records import torch; the configuration does not. They load on first use
# (PEP 562), so that ``neuralop-merge demo --help`` builds its options without torch.
_LAZY = {"run_seed": "pipeline", "run_study": "pipeline", "METHODS": "records"}

__getattr__ = lazy_getattr(__name__, _LAZY)

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
]
