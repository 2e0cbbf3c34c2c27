"""Which anchor an expert was fine-tuned from."""

from __future__ import annotations

from torch import nn

from ..errors import TrainingError
from ..weights import fingerprint


def check_expert_lineage(anchor: nn.Module, expert: nn.Module) -> None:
    """Refuse an expert that was not fine-tuned from ``anchor``.

    Parameters
    ----------
    anchor : nn.Module
        The anchor the expert is to be merged with.
    expert : nn.Module
        A model whose ``provenance`` dict records ``anchor_fingerprint``, as the
        experts of :func:`finetune_endpoints` do.

    Raises
    ------
    TrainingError
        If the expert records no anchor fingerprint, or one that differs from
        the fingerprint of ``anchor``; the message names both fingerprints.
    """
    provenance = getattr(expert, "provenance", None) or {}
    recorded = provenance.get("anchor_fingerprint")
    actual = fingerprint(anchor)
    regime = provenance.get("regime", "<unnamed>")
    if recorded is None:
        raise TrainingError(
            f"expert {regime!r} records no anchor fingerprint, so it cannot be checked "
            f"against the anchor {actual}; fine-tune it with finetune_endpoints"
        )
    if recorded != actual:
        raise TrainingError(
            f"expert {regime!r} was fine-tuned from anchor {recorded}, "
            f"not from the given anchor {actual}"
        )
