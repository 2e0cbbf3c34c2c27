"""The strategy plugin interface.

A strategy decides *how much* of each input goes into the merged weights. Most
weight-space merges are affine combinations θ = c₀·θ₀ + Σ cᵢ·θᵢ of the anchor θ₀ and
the experts θᵢ, so a strategy implements :meth:`Strategy.plan`, which returns the
coefficients; one that combines tensors non-linearly also overrides
:meth:`Strategy.combine_tensor`. Everything else (loading, validation, building the
model, provenance) is done once, by :func:`neuralop_merge.merge`.

A third-party package registers a subclass under the entry-point group
``neuralop_merge.strategies``; see ``CONTRIBUTING.md``.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..errors import StrategyError
from ..weights import ModelWeights, combine


@dataclass(frozen=True)
class Plan:
    """The coefficients of an affine merge, plus what provenance should record.

    Parameters
    ----------
    anchor_coefficient : float
        c₀, the weight of the anchor (0 when there is none)
    expert_coefficients : tuple[float, ...]
        cᵢ, one per expert, in the order the experts were given
    info : dict
        JSON-serialisable facts about the decision (α, coordinates, score curves)
    """

    anchor_coefficient: float
    expert_coefficients: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MergeInputs:
    """The validated inputs a strategy plans with."""

    anchor: ModelWeights | None
    experts: tuple[ModelWeights, ...]


class Strategy(abc.ABC):
    """Base class of merge strategies.

    Subclasses set :attr:`name`, :attr:`needs_anchor` and :attr:`n_experts`, and
    implement :meth:`plan`, whose keyword-only arguments are the strategy's
    parameters: an unknown keyword is refused, never ignored.
    """

    name: ClassVar[str] = ""
    needs_anchor: ClassVar[bool] = False
    #: exact number of experts required, or ``None`` for "two or more"
    n_experts: ClassVar[int | None] = None

    @abc.abstractmethod
    def plan(self, inputs: MergeInputs, **params: Any) -> Plan:
        """Decide the merge coefficients for ``inputs``."""

    def combine_tensor(
        self, key: str, anchor: torch.Tensor | None, experts: Sequence[torch.Tensor], plan: Plan
    ) -> torch.Tensor:
        """Merge one tensor; the default is the affine combination the plan describes."""
        if anchor is None:
            return combine(experts, plan.expert_coefficients)
        return combine([anchor, *experts], [plan.anchor_coefficient, *plan.expert_coefficients])

    # -- validation shared by all strategies -------------------------------------------
    def parameter_names(self) -> list[str]:
        """The keyword parameters :meth:`plan` accepts."""
        signature = inspect.signature(self.plan)
        return [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def check_params(self, params: dict[str, Any]) -> None:
        """Refuse unknown or missing parameters, naming them and the accepted ones."""
        accepted = self.parameter_names()
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise StrategyError(
                f"strategy {self.name!r} has no parameter {unknown[0]!r} (accepted: {', '.join(accepted) or 'none'})"
            )
        signature = inspect.signature(self.plan)
        missing = [
            name
            for name in accepted
            if signature.parameters[name].default is inspect.Parameter.empty and name not in params
        ]
        if missing:
            raise StrategyError(f"strategy {self.name!r} needs parameter {missing[0]!r}")

    def check_inputs(self, has_anchor: bool, n_experts: int) -> None:
        """Refuse a missing anchor or a wrong number of experts."""
        if self.needs_anchor and not has_anchor:
            raise StrategyError(f"strategy {self.name!r} needs an anchor (the model the experts were fine-tuned from)")
        if self.n_experts is not None and n_experts != self.n_experts:
            raise StrategyError(f"strategy {self.name!r} takes exactly {self.n_experts} experts, got {n_experts}")
        if self.n_experts is None and n_experts < 2:
            raise StrategyError(f"strategy {self.name!r} takes two or more experts, got {n_experts}")


#: Largest accepted magnitude of a merge coefficient (α, a task-vector scale, an
#: average weight, the ends of a searched α range): beyond it the merged weights lie
#: a million expert-to-expert distances away, which is a typo, not a model.
MAX_COEFFICIENT = 1e6


def finite_float(value: Any, name: str, *, limit: float | None = None) -> float:
    """``value`` as a finite float (of magnitude at most ``limit``), or a StrategyError naming the parameter."""
    if isinstance(value, bool):
        raise StrategyError(f"parameter {name!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise StrategyError(f"parameter {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise StrategyError(f"parameter {name!r} must be finite, got {value!r}")
    if limit is not None and abs(number) > limit:
        raise StrategyError(f"parameter {name!r} = {number:g} is outside [-{limit:g}, {limit:g}]")
    return number


def coefficient(value: Any, name: str) -> float:
    """A merge coefficient: finite and within ±:data:`MAX_COEFFICIENT`."""
    return finite_float(value, name, limit=MAX_COEFFICIENT)


def sequence(value: Any, name: str) -> list[Any]:
    """``value`` as a list, refusing strings, numbers and other non-sequences."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise StrategyError(f"parameter {name!r} must be a list, got {value!r}")
    return list(value)
