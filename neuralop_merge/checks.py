"""Input validation shared by every merge: one clear message per problem.

Each check names the offending input (``anchor``, ``expert[1]`` or its file), the
tensor, and the shape, dtype or value that is wrong, so that a user can act on a
single line of output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from . import pages
from .errors import IncompatibleModelsError, NonFiniteError
from .weights import ModelWeights

# Keys of neuraloperator's ``_init_kwargs`` that describe the saved object rather than
# the architecture.
_BOOKKEEPING_KWARGS = frozenset({"_version", "_name", "verbose"})


def check_compatible(inputs: Sequence[ModelWeights]) -> None:
    """Refuse inputs that differ in class, architecture, keys, shapes or dtypes."""
    reference = inputs[0]
    for other in inputs[1:]:
        _check_class(reference, other)
        _check_architecture(reference, other)
        _check_tensors(reference.tensors, other.tensors, reference, other)
        _check_tensors(reference.carried, other.carried, reference, other)


def _check_class(reference: ModelWeights, other: ModelWeights) -> None:
    if type(reference.model) is not type(other.model):
        raise IncompatibleModelsError(
            f"model classes differ: {reference.label} is {type(reference.model).__name__}, "
            f"{other.label} is {type(other.model).__name__}"
        )


def _check_architecture(reference: ModelWeights, other: ModelWeights) -> None:
    ours = getattr(reference.model, "_init_kwargs", {})
    theirs = getattr(other.model, "_init_kwargs", {})
    for key in sorted((set(ours) | set(theirs)) - _BOOKKEEPING_KWARGS):
        if key not in ours or key not in theirs or not _same_value(ours[key], theirs[key]):
            raise IncompatibleModelsError(
                f"architecture argument {key!r} differs: {reference.label} has {ours.get(key, '<unset>')!r}, "
                f"{other.label} has {theirs.get(key, '<unset>')!r}"
            )


def _same_value(a: object, b: object) -> bool:
    """Equality that also holds for tuples/lists, for functions reloaded by name, and for
    sub-models passed as arguments (UQNO's ``base_model``), compared by architecture:
    their weights are merged like every other tensor."""
    if isinstance(a, nn.Module) and isinstance(b, nn.Module):
        return type(a) is type(b) and repr(a) == repr(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if callable(a) and callable(b):
        return getattr(a, "__qualname__", a) == getattr(b, "__qualname__", b) and getattr(
            a, "__module__", None
        ) == getattr(b, "__module__", None)
    return a == b


def _check_tensors(
    ours: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor], reference: ModelWeights, other: ModelWeights
) -> None:
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    if missing or extra:
        which, owner = (missing[0], reference.label) if missing else (extra[0], other.label)
        raise IncompatibleModelsError(
            f"tensor {which!r} is in {owner} only ({len(missing) + len(extra)} keys differ between "
            f"{reference.label} and {other.label})"
        )
    for key, tensor in ours.items():
        theirs_tensor = theirs[key]
        if tensor.shape != theirs_tensor.shape:
            raise IncompatibleModelsError(
                f"tensor {key!r} has shape {tuple(tensor.shape)} in {reference.label} "
                f"but {tuple(theirs_tensor.shape)} in {other.label}"
            )
        if tensor.dtype != theirs_tensor.dtype:
            raise IncompatibleModelsError(
                f"tensor {key!r} has dtype {tensor.dtype} in {reference.label} but {theirs_tensor.dtype} in {other.label}"
            )


def check_finite(tensors: Mapping[str, torch.Tensor], label: str, *, release: bool = False) -> None:
    """Refuse NaN or Inf anywhere in ``tensors``, naming the first offending tensor.

    With ``release``, the tensors are memory-mapped and each one's pages are released
    once checked (see :mod:`neuralop_merge.pages`).
    """
    for key, tensor in tensors.items():
        # A NaN or Inf anywhere makes the sum non-finite, and one reduction is much
        # cheaper than an element-wise mask; only a suspect sum (which may merely have
        # overflowed) gets the exact element-wise check.
        suspect = not bool(torch.isfinite(tensor.sum()))
        bad = int((~torch.isfinite(tensor)).sum()) if suspect else 0
        if release:
            pages.release(tensor)
        if bad:
            raise NonFiniteError(f"tensor {key!r} of {label} has {bad} NaN/Inf value(s)")


def check_dense(tensors: Mapping[str, torch.Tensor], label: str) -> None:
    """Refuse sparse, quantized or other non-strided tensors, which cannot be combined."""
    for key, tensor in tensors.items():
        if tensor.layout != torch.strided or tensor.is_quantized:
            raise IncompatibleModelsError(
                f"tensor {key!r} of {label} has layout {tensor.layout}; only dense tensors can be merged"
            )
