"""Tensor by tensor: a plan applied to the inputs of a merge, and the models a search scores.

:func:`merged_tensors` is the one place where a :class:`~neuralop_merge.strategies.base.Plan`
becomes weights. :class:`SearchModel` and :class:`LinearPath` hold one model object that a
search (CCM-Prefix) rewrites in place for each candidate, so that no candidate costs a
copy of the module or a provenance record; the chosen plan is realized afterwards, by
:func:`neuralop_merge.merging.realize`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from . import pages
from .checks import check_finite
from .errors import IncompatibleModelsError, NonFiniteError
from .strategies.base import MergeInputs, Plan, Strategy
from .weights import build_model, state_for


def merged_tensors(strategy: Strategy, inputs: MergeInputs, plan: Plan) -> dict[str, torch.Tensor]:
    """The merged weight-space view: ``plan`` applied tensor by tensor, checked finite.

    Memory-mapped inputs are streamed: an affine plan is applied a chunk at a time, and
    every chunk's pages are released once read, so the inputs never become resident
    at once.
    """
    base = inputs.anchor or inputs.experts[0]
    frozen = frozen_keys(inputs)
    views = [view for view in (inputs.anchor, *inputs.experts) if view is not None]
    mapped = any(view.mapped for view in views)
    combine = _combine_in_chunks if mapped and _is_affine(strategy) else _combine_checked
    merged = {}
    for key, base_tensor in base.tensors.items():
        if key in frozen:
            merged[key] = inputs.anchor.tensors[key].clone()
        else:
            anchor_tensor = inputs.anchor.tensors[key] if inputs.anchor is not None else None
            expert_tensors = [e.tensors[key].to(base_tensor.device) for e in inputs.experts]
            merged[key] = combine(strategy, key, anchor_tensor, expert_tensors, plan)
        for view in views:
            if view.mapped:
                pages.release(view.tensors[key])
    check_finite(merged, f"the {strategy.name} merge result")
    return merged


def _is_affine(strategy: Strategy) -> bool:
    """Whether ``strategy`` combines tensors with the plan's affine default."""
    return type(strategy).combine_tensor is Strategy.combine_tensor


def _combine_in_chunks(
    strategy: Strategy, key: str, anchor: torch.Tensor | None, experts: list[torch.Tensor], plan: Plan
) -> torch.Tensor:
    """:func:`_combine_checked` a chunk at a time (element-wise, so bit for bit the same),
    releasing each input chunk's pages once read."""
    sources = ([anchor] if anchor is not None else []) + experts
    if not all(source.is_contiguous() and source.device == experts[0].device for source in sources):
        return _combine_checked(strategy, key, anchor, experts, plan)
    merged = torch.empty_like(experts[0], memory_format=torch.contiguous_format)
    flat_sources, flat_merged = [source.reshape(-1) for source in sources], merged.view(-1)
    for part in pages.chunks(merged):
        pieces = [source[part] for source in flat_sources]
        anchor_piece, expert_pieces = (pieces[0], pieces[1:]) if anchor is not None else (None, pieces)
        flat_merged[part] = _combine_checked(strategy, key, anchor_piece, expert_pieces, plan)
        for piece in pieces:
            pages.release(piece)
    return merged


def _combine_checked(
    strategy: Strategy, key: str, anchor: torch.Tensor | None, experts: list[torch.Tensor], plan: Plan
) -> torch.Tensor:
    """One merged tensor; a coefficient too large for the tensor's dtype is a NonFiniteError."""
    try:
        return strategy.combine_tensor(key, anchor, experts, plan)
    except RuntimeError as error:
        if "overflow" not in str(error):
            raise
        raise NonFiniteError(
            f"tensor {key!r} of the {strategy.name} merge result overflows {experts[0].dtype} "
            f"(coefficients {plan.anchor_coefficient:.3g}, {', '.join(f'{c:.3g}' for c in plan.expert_coefficients)})"
        ) from None


class SearchModel:
    """Evaluate many merges of the same inputs in one model object, for searches.

    The first call builds the model; later calls write the new merged tensors into
    it in place, which skips copying the module and recording provenance. The model
    returned by one call is therefore changed by the next: use it transiently (as
    the CCM-Prefix search does) and realize the chosen plan.
    """

    def __init__(self, strategy: Strategy, inputs: MergeInputs) -> None:
        self.strategy = strategy
        self.inputs = inputs
        self.model: nn.Module | None = None

    def __call__(self, plan: Plan) -> nn.Module:
        return self.load(merged_tensors(self.strategy, self.inputs, plan))

    def load(self, merged: dict[str, torch.Tensor], *, partial: bool = False) -> nn.Module:
        """The search model holding ``merged`` (a weight-space view keyed like the inputs);
        with ``partial``, ``merged`` replaces only the tensors it holds."""
        base = self.inputs.anchor or self.inputs.experts[0]
        if self.model is None:
            self.model, _ = build_model(base, merged)
        else:
            state, _ = state_for(self.model, base, merged)
            self.model.load_state_dict(state, strict=not partial)
        return self.model


class LinearPath:
    """The points θ(t) = θ(origin) + t·(θ(end) − θ(origin)) of a line of plans, written in place.

    Each call costs one fused multiply-add per tensor, straight into the model's
    parameters, instead of the strategy's full combination and a ``load_state_dict``.
    The rounding therefore differs from :func:`merged_tensors` at the last bit: use it
    to score candidates, and realize the chosen plan with the strategy. Only a plan
    affine in t (the CCM line, an affine surface along one axis) lies on such a path.
    """

    def __init__(self, strategy: Strategy, inputs: MergeInputs, origin: Plan, end: Plan) -> None:
        self.search = SearchModel(strategy, inputs)
        self.plans = (origin, end)
        self.origin: dict[str, torch.Tensor] = {}
        self.direction: dict[str, torch.Tensor] = {}
        self._targets: dict[str, torch.Tensor] = {}

    def __call__(self, t: float) -> nn.Module:
        if self.search.model is None:
            self._start()
        others = {}
        with torch.no_grad():
            for key, origin in self.origin.items():
                if key in self._targets:
                    torch.add(origin, self.direction[key], alpha=t, out=self._targets[key])
                else:
                    others[key] = torch.add(origin, self.direction[key], alpha=t)
        return self.search.load(others, partial=True) if others else self.search.model

    def _start(self) -> None:
        """Build the search model at the origin and find the tensors it holds as merged."""
        strategy, inputs = self.search.strategy, self.search.inputs
        self.origin = merged_tensors(strategy, inputs, self.plans[0])
        end = merged_tensors(strategy, inputs, self.plans[1])
        self.direction = {key: end[key] - value for key, value in self.origin.items()}
        # A fresh model takes its tensors without copying them: give it copies, so that
        # writing a candidate into the model leaves the origin intact.
        model = self.search.load({key: value.clone() for key, value in self.origin.items()})
        self._targets = _aliased_state(model, self.origin)


def _aliased_state(model: nn.Module, merged: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``model``'s state that hold a merged tensor as is (same key, shape and dtype).

    Factorized weights held densely are stored under other keys; those are loaded
    through :func:`~neuralop_merge.weights.state_for` instead.
    """
    state = model.state_dict()
    return {
        key: state[key] for key, value in merged.items()
        if key in state and state[key].shape == value.shape and state[key].dtype == value.dtype
    }


def frozen_keys(inputs: MergeInputs) -> set[str]:
    """Tensors no expert was trained on, kept bit for bit from the anchor.

    Experts fine-tuned on a subset of parameters record it as ``trainable`` in their
    provenance; the merge then moves only those, instead of re-deriving the frozen
    ones through a combination that equals them only up to rounding. A recorded
    pattern that matches no tensor of the anchor is refused: it would silently turn
    the merge into a copy of the anchor.
    """
    if inputs.anchor is None:
        return set()
    trainable: set[str] = set()
    for expert in inputs.experts:
        names = getattr(expert.model, "provenance", {}).get("trainable")
        if names is None:
            return set()
        trainable.update(_trained_keys(names, inputs.anchor.tensors, expert.label))
    return set(inputs.anchor.tensors) - trainable


def _trained_keys(names: Any, keys: Iterable[str], label: str) -> set[str]:
    """The tensor keys an expert's ``trainable`` parameter names cover (a factorized
    weight's key covers its factors ``key.core``, ``key.factors.0``, ...)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise IncompatibleModelsError(f"{label}: provenance 'trainable' must be a non-empty list of parameter names")
    keys = list(keys)
    trained: set[str] = set()
    for name in names:
        matched = {key for key in keys if name == key or (isinstance(name, str) and name.startswith(f"{key}."))}
        if not matched:
            raise IncompatibleModelsError(f"{label}: trainable parameter {name!r} in its provenance matches no tensor")
        trained |= matched
    return trained
