"""The front door: ``merge(strategy, anchor=..., experts=[...], **params)``."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from torch import nn

from .checks import check_compatible, check_dense, check_finite
from .combination import SearchModel, merged_tensors
from .errors import StrategyError
from .io import load_model, locate
from .provenance import Provenance, file_sha256, jsonable, package_versions
from .registry import get_strategy
from .strategies.base import MergeInputs, Plan, Strategy
from .warning_site import warn
from .weights import ModelWeights, build_model, fingerprint, weights_of

ModelLike = Union[nn.Module, str, os.PathLike]


def as_weights(model: ModelLike, label: str, *, mmap: bool = False) -> ModelWeights:
    """The weight-space view of a model, or of the checkpoint at a path.

    With ``mmap``, a checkpoint's tensors are mapped from its file rather than copied
    (for short-lived views only: a file rewritten in place under a live mapping can
    crash the process).
    """
    if isinstance(model, nn.Module):
        return weights_of(model, label)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        return weights_of(load_model(path, mmap=mmap), str(path), path, mapped=mmap)
    raise StrategyError(f"{label} must be an nn.Module or a checkpoint path, got {type(model).__name__}")


def prepare_inputs(anchor: ModelLike | None, experts: Sequence[ModelLike], *, mmap: bool = False) -> MergeInputs:
    """Load, view and validate the inputs of a merge (compatibility, finiteness);
    ``mmap`` maps checkpoints given as paths (see :func:`as_weights`)."""
    if isinstance(experts, (str, os.PathLike, nn.Module)):
        raise StrategyError("experts must be a list of models or checkpoint paths")
    views = tuple(as_weights(e, f"expert[{i}]", mmap=mmap) for i, e in enumerate(experts))
    anchor_view = None if anchor is None else as_weights(anchor, "anchor", mmap=mmap)
    every = ([anchor_view] if anchor_view is not None else []) + list(views)
    if len(every) > 1:
        check_compatible(every)
    for view in every:
        check_dense({**view.tensors, **view.carried}, view.label)
        check_finite(view.tensors, view.label, release=view.mapped)
    warn_on_active_modes(every)
    return MergeInputs(anchor_view, views)


def active_modes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The Fourier modes each spectral layer of ``model`` uses now.

    An incremental FNO grows ``n_modes`` during training up to the stored weights'
    ``max_n_modes``: layers with equal weights may then compute with different modes.
    """
    return {
        path: tuple(module.n_modes)
        for path, module in model.named_modules()
        if isinstance(getattr(module, "n_modes", None), (list, tuple)) and hasattr(module, "max_n_modes")
    }


def warn_on_active_modes(views: Sequence[ModelWeights]) -> None:
    """Warn when the inputs' spectral layers use different active modes: the merge takes the
    first input's (the anchor's) modes."""
    reference = active_modes(views[0].model)
    for view in views[1:]:
        differing = [p for p, modes in active_modes(view.model).items() if reference.get(p) != modes]
        if differing:
            warn(
                f"{view.label} uses active n_modes {active_modes(view.model)[differing[0]]} in {differing[0]!r}, "
                f"{views[0].label} uses {reference.get(differing[0])}; the merged model keeps {views[0].label}'s"
            )


def merge(
    strategy: str | Strategy,
    *,
    anchor: ModelLike | None = None,
    experts: Sequence[ModelLike],
    output: str = "dense",
    **params: Any,
) -> nn.Module:
    """Merge ``experts`` (and the ``anchor`` they were fine-tuned from) into a new model.

    Parameters
    ----------
    strategy : str or Strategy
        a name from :func:`neuralop_merge.available_strategies` or a strategy instance
    anchor : nn.Module or path, optional
        the shared model the experts were fine-tuned from (required by anchor-based strategies)
    experts : sequence of nn.Module or paths
        the fine-tuned experts; ``[low, high]`` for the endpoint strategies
    output : {"dense", "refactorize"}
        for factorized (TFNO) weights: a dense-weight model of the same architecture
        (exact), or re-factorized at the source rank with the error in the provenance
    **params
        the strategy's parameters; an unknown one is refused

    Returns
    -------
    nn.Module
        a new model of the same class and architecture, on the anchor's (else the
        first expert's) device and dtype, with a ``provenance`` dict attribute;
        the inputs are not modified

    Notes
    -----
    Checkpoints given as paths are memory-mapped and read a chunk at a time (checks,
    affine combination, fingerprints), each chunk's pages released once read, so the
    peak memory is about the output plus a few chunks, not the sum of the inputs.
    """
    strategy = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    strategy.check_params(params)
    strategy.check_inputs(anchor is not None, len(experts))
    # One merge reads each input once, so checkpoints given as paths are mapped and
    # streamed rather than copied into memory (see neuralop_merge.pages).
    inputs = prepare_inputs(anchor, experts, mmap=True)
    return realize(strategy, inputs, strategy.plan(inputs, **params), params, output=output)


def realize(
    strategy: Strategy,
    inputs: MergeInputs,
    plan: Plan,
    params: dict[str, Any],
    *,
    output: str = "dense",
    into: SearchModel | None = None,
) -> nn.Module:
    """Apply ``plan`` to every tensor of ``inputs`` and build the merged model.

    ``into``, the dense search model a search scored its candidates in, is reused
    for the result (it must not be used for scoring afterwards): the plan's tensors
    are written into it, which saves building a second model.
    """
    base = inputs.anchor or inputs.experts[0]
    merged = merged_tensors(strategy, inputs, plan)
    if into is not None and into.model is not None and output == "dense":
        model, refit_errors = into.load(merged), {}
        model.train(base.model.training)  # a rollout may have left the search model in eval mode
    else:
        model, refit_errors = build_model(base, merged, output=output)
    model.provenance = merge_provenance(strategy, inputs, plan, params, refit_errors)
    return model


def describe_input(view: ModelWeights, role: str) -> dict[str, Any]:
    """What provenance records of one input: role, label, tensor sha256, file sha256."""
    record: dict[str, Any] = {
        "role": role, "label": view.label, "fingerprint": fingerprint(view.model, release=view.mapped)
    }
    if view.path is not None:
        record["file"] = str(view.path)
        state_file = locate(view.path)[0]
        record["file_sha256"] = file_sha256(state_file) if state_file.is_file() else None
    return record


def merge_provenance(
    strategy: Strategy, inputs: MergeInputs, plan: Plan, params: dict[str, Any], refit_errors: dict[str, float]
) -> dict[str, Any]:
    """The provenance record of a merge result, in the JSON form of :class:`~neuralop_merge.provenance.Provenance`."""
    roles = [(inputs.anchor, "anchor")] if inputs.anchor is not None else []
    roles += [(expert, f"expert[{i}]") for i, expert in enumerate(inputs.experts)]
    # Hashing is most of a first merge's cost; hashlib releases the GIL on large
    # buffers, so the inputs are hashed in parallel.
    with ThreadPoolExecutor() as pool:
        described = list(pool.map(lambda role: describe_input(*role), roles))
    # The plan's facts first: a fact named like a key the merge itself records cannot replace it.
    record = {
        **jsonable(plan.info),
        "kind": "merge",
        "strategy": strategy.name,
        "params": jsonable(params),
        "coefficients": {"anchor": plan.anchor_coefficient, "experts": list(plan.expert_coefficients)},
        "inputs": described,
        "versions": package_versions(),
    }
    if refit_errors:
        record["refactorization_error"] = refit_errors
    return Provenance.from_dict(record, f"of the {strategy.name} merge").to_dict()
