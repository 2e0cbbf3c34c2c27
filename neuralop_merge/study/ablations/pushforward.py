"""Does training on the model's own predictions (the pushforward trick) make the surrogates competent?

The study's recipe fights rollout drift with 1 % input noise only. DiffReact's low expert stays
above the competence rule (0.3 × persistence) at every CPU scale, and the one ablation that
brings it within the rule (``direction_stability``'s ``data:4+steps:8``) needs four times the
endpoint data and eight times the steps. The pushforward trick (Brandstetter et al., 2022, the
issue's other suggested lever) lets a model roll its own input forward, without gradients, for
``n`` steps drawn from ``0 .. P`` before each training step, so that it learns to correct the
errors it makes itself, at the price of ``n`` forward passes per step and the same step caps.

Each variant refits one seed's line with one change and is scored like the reference line (the
study's recipe, cached):

``experts:1``, ``experts:2``   the endpoint experts refit from the reference anchor with P = 1 / 2;
``line:1``                     the anchor too trained with P = 1, and its own experts with P = 1;
``steps:4``                    the experts refit with P = 0 and four times the step cap (the
                               stopping rule scales), the control for
``experts:1+steps:4``          the experts refit with P = 1 and four times the step cap: does the
                               trick pay once the cap no longer binds?
``anchor_steps:2``             the anchor retrained with P = 0 and twice its step cap, and its own
                               experts (P = 0, the study's cap), the control for
``line:1+anchor_steps:2``      ``line:1`` with twice the anchor's step cap: does the trick pay for
                               the anchor, whose cap binds in every run above?

Each run is scored like every refit ablation's (:mod:`.refits`): the study's competence checks,
each expert against its anchor at its endpoint, and CCM-Prefix's OOD error with its cut of the
reference anchor's error on each side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .base import LINE_MODELS, AblationOutput, AblationSettings, Draw, SeedLine, cached_nets, scaled_caps, train_line
from .refits import low_expert_figure, run_refits

NAME = "pushforward"
FAMILIES = ("diffreact",)


class Variant(NamedTuple):
    """One refit of the reference line."""

    unrolls: int  #: the most unrolled steps P
    anchor_retrained: bool  #: the anchor is retrained with P too (else the reference anchor is kept)
    expert_steps: float = 1.0  #: factor on the experts' step cap
    anchor_steps: float = 1.0  #: factor on the anchor's step cap (with ``anchor_retrained``)


VARIANTS: dict[str, Variant] = {"experts:1": Variant(1, False), "experts:2": Variant(2, False), "line:1": Variant(1, True),
                                "steps:4": Variant(0, False, 4.0), "experts:1+steps:4": Variant(1, False, 4.0),
                                "anchor_steps:2": Variant(0, True, anchor_steps=2.0),
                                "line:1+anchor_steps:2": Variant(1, True, anchor_steps=2.0)}


def variant_line(settings: AblationSettings, line: SeedLine, key: str) -> SeedLine:
    """``line`` refit under variant ``key`` (cached), with the reference line's data and processor."""
    variant = VARIANTS[key]
    config = scaled_caps(line.config, anchor=variant.anchor_steps, experts=variant.expert_steps)
    nets = cached_nets(
        settings.folder(line.config, line.seed, f"pushforward-{key.replace(':', '-')}"), LINE_MODELS,
        lambda: train_line(config, line.seed, line.data, line.anchor.processor, settings=settings, pushforward=variant.unrolls,
                           anchor=None if variant.anchor_retrained else line.anchor.net))
    return line.with_nets(nets)


def run(settings: AblationSettings) -> AblationOutput:
    return run_refits(settings, FAMILIES, variant_line, VARIANTS)


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """Each run's low expert at its endpoint against 0.3 × persistence, per family, from ``results.json``'s content."""
    return {"pushforward": low_expert_figure(results, "pushforward: the low expert at c = −1")}
