"""The weight-space view of a model that every merge strategy works on.

A model's ``state_dict`` is split into

* **mergeable** tensors (floating point or complex), with every factorized
  tensorly-torch weight replaced by its dense reconstruction under its module path
  (``fno_blocks.convs.0.weight``), so that merging happens in weight space;
* **carried** tensors (integer and boolean buffers such as counters), copied from
  the base model rather than averaged;
* neuraloperator's non-tensor ``_metadata`` entry, which is left to the model class.

A merged view is turned back into a model of the same class by :func:`build_model`.
"""

from __future__ import annotations

import copy
import hashlib
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import factorized, pages
from .warning_site import warn

METADATA_KEY = "_metadata"
OUTPUT_FORMATS = ("dense", "refactorize")


@dataclass
class ModelWeights:
    """A model together with its weight-space view.

    Parameters
    ----------
    model : nn.Module
        the source model; never modified
    label : str
        how messages name this input: ``"anchor"``, ``"expert[1]"`` or a file path
    tensors : dict[str, torch.Tensor]
        mergeable tensors, factorized weights reconstructed densely
    carried : dict[str, torch.Tensor]
        integer and boolean buffers, copied and never combined
    factorized_keys : frozenset[str]
        the keys of ``tensors`` that are reconstructions of (non-dense) factorized weights
    path : Path or None
        the checkpoint the model was read from, if any
    mapped : bool
        whether the tensors are memory-mapped from ``path`` by ``merge`` itself, which
        may then release their pages once read (see :mod:`neuralop_merge.pages`)
    """

    model: nn.Module
    label: str
    tensors: dict[str, torch.Tensor]
    carried: dict[str, torch.Tensor]
    factorized_keys: frozenset[str] = field(default_factory=frozenset)
    path: Path | None = None
    mapped: bool = False


def is_mergeable(tensor: torch.Tensor) -> bool:
    """Floating-point and complex tensors are combined; everything else is carried."""
    return tensor.is_floating_point() or tensor.is_complex()


def weights_of(model: nn.Module, label: str, path: Path | None = None, *, mapped: bool = False) -> ModelWeights:
    """Build the weight-space view of ``model`` without copying any tensor."""
    factorized_modules = factorized.factorized_modules(model)
    tensors: dict[str, torch.Tensor] = {}
    carried: dict[str, torch.Tensor] = {}
    for module_path, module in factorized_modules.items():
        tensors[module_path] = factorized.reconstruct(module)
    owned_prefixes = tuple(f"{p}." for p in factorized_modules)
    for key, value in model.state_dict(keep_vars=False).items():
        if key == METADATA_KEY or key.startswith(owned_prefixes):
            continue
        (tensors if is_mergeable(value) else carried)[key] = value.detach()
    dense_keys = {p for p, m in factorized_modules.items() if not factorized.is_dense(m)}
    return ModelWeights(model, label, tensors, carried, frozenset(dense_keys), path, mapped)


# Fingerprints are cached per model object and re-computed only when one of its
# tensors was replaced or modified in place (tensor version counters), because a
# CCM search builds dozens of merges from the same inputs.
_FINGERPRINTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[int, int], ...], str]] = (
    weakref.WeakKeyDictionary()
)


def fingerprint(source: nn.Module | Mapping[str, object], *, release: bool = False) -> str:
    """Hex sha256 of a model's (or state dict's) tensors.

    The digest covers every tensor's name, dtype, shape and bytes in sorted key order;
    neuraloperator's non-tensor ``_metadata`` entry is ignored, so the fingerprint of
    a model and of its reloaded checkpoint agree. With ``release``, the tensors are
    memory-mapped and read a chunk at a time, each chunk's pages released once hashed.
    """
    if not isinstance(source, nn.Module):
        return _digest(source, release)
    state = source.state_dict()
    # state_dict() hands out fresh detached views, so identify storage by address; a
    # view shares its version counter with the parameter, so in-place edits show.
    version = tuple((v.data_ptr(), v._version) for v in state.values() if torch.is_tensor(v))
    cached = _FINGERPRINTS.get(source)
    if cached is not None and cached[0] == version:
        return cached[1]
    digest = _digest(state, release)
    _FINGERPRINTS[source] = (version, digest)
    return digest


def _digest(state: Mapping[str, object], release: bool) -> str:
    digest = hashlib.sha256()
    for key in sorted(k for k, v in state.items() if torch.is_tensor(v)):
        tensor = state[key]
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        hash_tensor_bytes(digest, tensor, release=release)
    return digest.hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Hex sha256 of one tensor's bytes (in memory order of a contiguous CPU copy)."""
    digest = hashlib.sha256()
    hash_tensor_bytes(digest, tensor)
    return digest.hexdigest()


def hash_tensor_bytes(digest: hashlib._Hash, tensor: torch.Tensor, *, release: bool = False) -> None:
    """Feed ``tensor``'s bytes to ``digest`` a chunk at a time; with ``release``, each
    memory-mapped chunk's pages are released once hashed."""
    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    for part in pages.chunks(data):
        digest.update(memoryview(data[part].numpy()))
        if release:
            pages.release(data[part])


def combine(tensors: Sequence[torch.Tensor], coefficients: Sequence[float]) -> torch.Tensor:
    """Σ cᵢ·tᵢ into a fresh tensor, skipping zero coefficients.

    A single pass per term keeps the cost close to copying the inputs once; a
    coefficient of exactly 1 on a single term reproduces that input bit for bit.
    """
    terms = [(c, t) for c, t in zip(coefficients, tensors) if c != 0.0]
    if not terms:
        return torch.zeros_like(tensors[0])
    first_coefficient, first = terms[0]
    out = first.clone() if first_coefficient == 1.0 else torch.mul(first, first_coefficient)
    for coefficient, tensor in terms[1:]:
        out.add_(tensor, alpha=coefficient)
    return out


def _meta_copy(model: nn.Module) -> nn.Module:
    """Deep-copy ``model`` with every parameter and buffer replaced by a meta placeholder.

    The copy keeps the class, sub-modules and plain attributes of ``model`` but
    allocates no tensor memory: the real tensors are assigned afterwards, so the
    peak memory of a merge is the inputs plus one output.
    """
    memo: dict[int, object] = {}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"), parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def _has_meta_tensors(model: nn.Module) -> bool:
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def load_into_copy(template: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``template`` holding the tensors of ``state`` (strict), ``template`` untouched."""
    return _assigned(_meta_copy(template), state, template)


def _assigned(skeleton: nn.Module, state: Mapping[str, torch.Tensor], template: nn.Module) -> nn.Module:
    """``skeleton`` (a meta copy of ``template``'s architecture) holding the tensors of ``state``.

    The tensors are assigned, not copied. tltorch's complex weights (SFNO) accept only
    a complex tensor on assignment but store its real view, so no state can be assigned
    to them: the skeleton is then materialised and the state copied in. Non-persistent
    buffers are not in ``state``; they are taken from ``template``.
    """
    try:
        skeleton.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError:
        device = next((t.device for t in state.values()), torch.device("cpu"))
        skeleton.to_empty(device=device)
        skeleton.load_state_dict(dict(state), strict=True)
    template_modules = dict(template.named_modules())
    for module_path, module in skeleton.named_modules():
        for name in module._non_persistent_buffers_set:
            if module._buffers.get(name) is not None:
                module._buffers[name] = template_modules[module_path]._buffers[name].clone()
    return skeleton


def dense_skeleton(base: ModelWeights) -> nn.Module | None:
    """A meta copy of ``base.model`` whose factorized weights are dense, or None (with a
    warning) when a layer cannot take a dense weight; the merge is then re-factorized."""
    skeleton = _meta_copy(base.model)
    try:
        factorized.densify(skeleton)
    except ValueError as error:
        warn(f"{base.label}: {error}; re-factorizing the merged weights instead")
        return None
    return skeleton


def instantiate(
    model_class: type[nn.Module], args: tuple, kwargs: Mapping[str, object], state: Mapping[str, torch.Tensor]
) -> nn.Module:
    """``model_class(*args, **kwargs)`` holding the tensors of ``state``.

    The model is built on the meta device so no throw-away random initialisation is
    allocated. A class that keeps non-persistent buffers, or that cannot be built on
    the meta device at all (LocalNO's DISCO layers precompute CPU tensors), is built
    normally instead.
    """
    try:
        with torch.device("meta"):
            model = model_class(*args, **kwargs)
        model.load_state_dict(dict(state), strict=True, assign=True)
        if not _has_meta_tensors(model):
            return model
    except (RuntimeError, NotImplementedError):  # torch's own error for layers the meta device cannot build
        pass  # the normal build below reports a genuine mismatch again, with its own message
    model = model_class(*args, **kwargs)
    model.load_state_dict(dict(state), strict=True)
    return model


def build_model(
    base: ModelWeights, merged: Mapping[str, torch.Tensor], *, output: str = "dense"
) -> tuple[nn.Module, dict[str, float]]:
    """Turn a merged weight-space view back into a model of ``base``'s class.

    Parameters
    ----------
    base : ModelWeights
        the input whose class, architecture and carried buffers the result takes
    merged : Mapping[str, torch.Tensor]
        merged tensors, keyed like ``base.tensors``
    output : {"dense", "refactorize"}
        what becomes of factorized weights: ``"dense"`` builds the same architecture with
        dense spectral weights (exact); ``"refactorize"`` keeps the source format and rank
        and reports each weight's relative reconstruction error

    Returns
    -------
    (model, refactorization_errors)
        the new model, and the relative error per re-factorized weight (empty otherwise)
    """
    if output not in OUTPUT_FORMATS:
        raise ValueError(f"output must be one of {OUTPUT_FORMATS}, got {output!r}")
    skeleton = dense_skeleton(base) if base.factorized_keys and output == "dense" else None
    if skeleton is not None:
        state, errors = state_for(skeleton, base, merged)
        model = _assigned(skeleton, state, base.model)
    else:
        state, errors = state_for(base.model, base, merged)
        model = load_into_copy(base.model, state)
    model.train(base.model.training)
    return model, errors


def state_for(
    model: nn.Module, base: ModelWeights, merged: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The state dict that loads ``merged`` (plus carried buffers) into ``model``.

    ``model`` has ``base``'s architecture; factorized weights it holds in a dense
    format take the merged tensor, the others are re-factorized at ``base``'s rank.
    Returns the state and the relative re-factorization error per weight.
    """
    # Carried buffers are copied: the result must not alias (or keep mapped) an input.
    state: dict[str, torch.Tensor] = {key: tensor.clone() for key, tensor in base.carried.items()}
    errors: dict[str, float] = {}
    target_factorized = factorized.factorized_modules(model)
    for key, tensor in merged.items():
        module = target_factorized.get(key)
        if module is None:
            state[key] = tensor
        elif factorized.is_dense(module):
            state.update({f"{key}.{name}": value for name, value in factorized.dense_state(module, tensor).items()})
        else:
            parameters, errors[key] = factorized.refactorize(tensor, factorized.factorized_modules(base.model)[key])
            state.update({f"{key}.{name}": value for name, value in parameters.items()})
    return state, errors
