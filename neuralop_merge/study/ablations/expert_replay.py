"""Does replaying the anchor's support data while fine-tuning keep the experts from diverging across the axis?

The study's no-divergence rule asks that no anchor, expert or CCM model diverges (relative L2 > 1 or
non-finite) on a support, endpoint or interpolation trajectory. In every 16-mode DiffReact protocol
the low expert breaks it at the other endpoint (c = +1), and the more its recipe specializes it at
its own endpoint, the more often: 4, 6, 8, 13 and 18 of the 40 trajectories at c = +1 (five seeds)
under small16x2, small16x2d4, small16x2d4lr, small16x2d4lrcap and small16x2d4ex2 (in-distribution
evidence: the ``id`` split of each committed study's records). Replay (rehearsal), the continual-learning remedy for forgetting,
mixes some of the data a model was trained on before into its fine-tuning batches.

Each variant refits the two experts from the reference anchor (the study's recipe, cached) with the
same stopping rule and learning rate, drawing a share of each expert's training pairs from the
anchor's support data:

``replay:0.25``          a quarter of the pairs from the support regimes, the rest from the endpoint;
``replay:0.5``           half of them;
``replay:0.1``           a tenth of them: the smallest dose, for the trade-off's other end;
``replay:0.25+steps:2``  a quarter, with twice the experts' step cap, so that the endpoint pairs an
                         expert sees are 1.5 times the reference's (every expert of the first two
                         variants ran to its cap).

The first two variants ran first; the last two were added (registered before any run of them) once
the first two had shown that replay removes every divergence but lifts the low expert above 0.3 ×
persistence at the reference's cap. Neither choice looked at an OOD regime.

Each run is scored like every refit ablation's (:mod:`.refits`): the study's competence checks
(including the no-divergence rule), each expert against its anchor at its own endpoint (replay
could dull what an expert adds there) and CCM-Prefix's OOD error with its cut of the reference
anchor's error on each side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .base import LINE_MODELS, AblationOutput, AblationSettings, Draw, SeedLine, cached_nets, scaled_caps, train_line
from .refits import low_expert_figure, run_refits

NAME = "expert_replay"
FAMILIES = ("diffreact",)


class Variant(NamedTuple):
    """One refit of the reference line's experts."""

    replay_share: float  #: share of each expert's training pairs drawn from the anchor's support data
    expert_steps: float = 1.0  #: factor on the experts' step cap


VARIANTS: dict[str, Variant] = {"replay:0.25": Variant(0.25), "replay:0.5": Variant(0.5), "replay:0.1": Variant(0.1),
                                "replay:0.25+steps:2": Variant(0.25, 2.0)}


def replay_line(settings: AblationSettings, line: SeedLine, key: str) -> SeedLine:
    """``line`` with both experts refit from its anchor under variant ``key`` (cached)."""
    variant = VARIANTS[key]
    config = scaled_caps(line.config, experts=variant.expert_steps)
    nets = cached_nets(
        settings.folder(line.config, line.seed, f"expert_replay-{key.replace(':', '-')}"), LINE_MODELS,
        lambda: train_line(config, line.seed, line.data, line.anchor.processor, settings=settings,
                           anchor=line.anchor.net, replay_share=variant.replay_share))
    return line.with_nets(nets)


def run(settings: AblationSettings) -> AblationOutput:
    return run_refits(settings, FAMILIES, replay_line, VARIANTS)


def figures(results: Mapping[str, Any]) -> dict[str, Draw]:
    """Each run's low expert at its endpoint against 0.3 × persistence, per family, from ``results.json``'s content."""
    return {"expert_replay": low_expert_figure(results, "expert replay: the low expert at c = −1")}
