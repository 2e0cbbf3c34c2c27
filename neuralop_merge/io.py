"""Safe checkpoint reading and atomic writing in neuraloperator's layout.

neuraloperator's ``save_checkpoint`` writes ``<name>_state_dict.pt`` and
``<name>_metadata.pkl``; its loaders unpickle them with ``weights_only=False``, so a
crafted file runs code. We read both with ``torch.load(weights_only=True)`` and an
allow-list of exactly the non-tensor objects genuine files hold (activation
functions and layer classes in the ``_metadata`` init arguments), which the
unpickler may name but never call (see :mod:`neuralop_merge.safety`).

A checkpoint's files are written together (:mod:`neuralop_merge.atomic`), and its
provenance records the sha256 of the state and metadata files, so that a
checkpoint whose files come from different writes is refused when loaded.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models.base_model import BaseModel
from torch import nn

from .allowlist import EXTRA_SAFE_GLOBALS
from .architecture import architecture_record, holds_submodels, init_arguments, rebuild_arguments, uqno_arguments
from .atomic import check_output_paths, staged_writes
from .errors import CheckpointError, NeuralopMergeError, UnsafeCheckpointError, first_line
from .provenance import Provenance, file_sha256, jsonable, package_versions, read_provenance
from .safety import (
    allowed_globals,
    check_archive,
    check_structure,
    check_tensor_bytes,
    refusal_reason,
    resolve_globals,
)
from .weights import METADATA_KEY, instantiate, load_into_copy

STATE_SUFFIX = "_state_dict.pt"
METADATA_SUFFIX = "_metadata.pkl"
PROVENANCE_SUFFIX = "_provenance.json"

# Integer architecture arguments up to this bound are accepted whatever the file
# holds (see ``_check_init_kwargs``); beyond it they must not exceed the weight count.
MIN_ARCHITECTURE_INT_LIMIT = 1 << 16

# The objects neuraloperator stores in a model's ``_init_kwargs``: activation
# functions (``non_linearity``) and layer classes (``conv_module``, ``integral_operator``,
# ``operator_block``). Nothing else is ever unpickled.
SAFE_GLOBALS: tuple[Any, ...] = (
    F.gelu,
    F.relu,
    F.silu,
    F.tanh,
    F.sigmoid,
    F.leaky_relu,
    F.elu,
    F.softplus,
    torch.tanh,
    torch.sigmoid,
    SpectralConv,
    FNOBlocks,
) + EXTRA_SAFE_GLOBALS  # ATen and module activations, optional layer classes: see allowlist.py


def safe_load(
    path: Path,
    *,
    map_location: str | torch.device | None = None,
    allow_expansion: bool = False,
    mmap: bool = False,
) -> Any:
    """``torch.load`` that executes no pickled code and costs no more than the file's size.

    Only allow-listed globals are accepted, and only by name: none is called while the
    file is unpickled. The content is then checked for cycles, depth and size
    (:func:`~neuralop_merge.safety.check_structure`), and its tensors against the file's
    size.

    Parameters
    ----------
    path : Path
        the file
    map_location : optional
        as for ``torch.load``
    allow_expansion : bool, default False
        accept tensors (stride-0 views, compressed zip entries) larger than
        :data:`~neuralop_merge.safety.EXPANSION_LIMIT` times the file's size
    mmap : bool, default False
        map the tensors' bytes from the file instead of copying them into memory
        (zip-format files only; a legacy file is read normally)

    Raises
    ------
    UnsafeCheckpointError
        when the file asks for any other global (its name is in the message)
    CheckpointError
        when the file is missing, malformed, too large in memory or not a torch checkpoint
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    file_size = path.stat().st_size
    is_archive = check_archive(path, file_size, allow_expansion=allow_expansion)
    try:
        with torch.serialization.safe_globals(allowed_globals(SAFE_GLOBALS)):
            content = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and is_archive)
        check_structure(content, path)
        check_tensor_bytes(content, path, file_size, allow_expansion=allow_expansion)
        return resolve_globals(content)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"refusing to load {path}: {error}") from None
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(f"refusing to load {path}: {refusal_reason(str(error))}") from None
    except Exception as error:  # a malformed file can make torch raise any type
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a valid torch file ({type(error).__name__}: {first_line(error)})"
        ) from None


def locate(path: Path, name: str | None = None) -> tuple[Path, Path | None, Path | None]:
    """(state file, metadata file or None, provenance file or None) for ``path``.

    ``path`` is a folder (holding one checkpoint, or ``name``), a state file, or the
    prefix ``FOLDER/NAME`` of ``FOLDER/NAME_state_dict.pt``.
    """
    prefixed = path.with_name(f"{path.name}{STATE_SUFFIX}")
    if not path.exists() and name is None and prefixed.is_file():
        path = prefixed
    if path.is_dir():
        if name is None:
            found = sorted(path.glob(f"*{STATE_SUFFIX}"))
            if len(found) != 1:
                listed = ", ".join(p.name for p in found) or "none"
                raise CheckpointError(
                    f"{path} must hold exactly one *{STATE_SUFFIX} (found: {listed}); pass name= or the path {path}/NAME"
                )
            name = found[0].name[: -len(STATE_SUFFIX)]
        state_file = path / f"{name}{STATE_SUFFIX}"
    else:
        state_file = path
    if not state_file.name.endswith(STATE_SUFFIX):
        return state_file, None, None
    stem = state_file.name[: -len(STATE_SUFFIX)]
    metadata = state_file.with_name(f"{stem}{METADATA_SUFFIX}")
    provenance = state_file.with_name(f"{stem}{PROVENANCE_SUFFIX}")
    return state_file, metadata if metadata.is_file() else None, provenance if provenance.is_file() else None


def recorded_provenance(path: str | os.PathLike, name: str | None = None) -> Any:
    """The provenance record of the checkpoint at ``path`` (as :func:`load_model` finds it), or None.

    Raises
    ------
    CheckpointError
        when there is no checkpoint at ``path``, or its provenance is not JSON
    """
    state_file, _, provenance_file = locate(Path(path), name)
    if not state_file.is_file():
        raise CheckpointError(f"checkpoint file not found: {state_file}")
    return None if provenance_file is None else read_provenance(provenance_file).to_dict()


def load_model(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    template: nn.Module | None = None,
    model_class: type[nn.Module] | None = None,
    map_location: str | torch.device | None = None,
    allow_expansion: bool = False,
    mmap: bool = False,
) -> nn.Module:
    """Load a model safely from neuraloperator's checkpoint layout or a state-dict file.

    Parameters
    ----------
    path : path
        a folder written by ``save_checkpoint`` / :func:`save_model`, a
        ``<name>_state_dict.pt`` file, its prefix ``<folder>/<name>``, or any file
        holding a state dict
    name : str, optional
        the checkpoint name inside a folder holding several
    template : nn.Module, optional
        a model of the right architecture, for plain ``nn.Module`` state dicts that carry
        no neuraloperator ``_metadata`` and no architecture record; it is not modified
    model_class : type, optional
        the class to rebuild when the provenance's architecture record names a class
        outside neuraloperator (a plain ``nn.Module`` of your own), see
        :mod:`neuralop_merge.architecture`
    map_location : optional
        as for ``torch.load``
    allow_expansion : bool, default False
        accept tensors far larger in memory than the file (see :func:`safe_load`)
    mmap : bool, default False
        map the weights from the file instead of copying them (see :func:`safe_load`);
        the model's tensors then read the file's pages on demand

    Returns
    -------
    nn.Module
        the model, with a ``provenance`` dict attribute when a provenance record exists

    Raises
    ------
    CheckpointError
        for a missing, malformed or unsafe file, or when the provenance records a
        sha256 that the state or metadata file does not have (files from different writes)
    """
    if name is not None:
        check_name(name)
    state_file, metadata_file, provenance_file = locate(Path(path), name)
    provenance = read_provenance(provenance_file) if provenance_file is not None else None
    if provenance is not None:
        _verify_files(provenance, state_file, metadata_file, provenance_file)
    options = {"map_location": map_location, "allow_expansion": allow_expansion}
    state, tensors = _read_state(state_file, options, mmap=mmap)
    source = _Source(state, metadata_file, options, provenance, state_file, model_class)
    model = _build(tensors, template, source)
    if provenance is not None:
        model.provenance = provenance.to_dict()
    return model


def _verify_files(
    provenance: Provenance, state_file: Path, metadata_file: Path | None, provenance_file: Path
) -> None:
    """Refuse state or metadata files whose sha256 is not the one the provenance records."""
    recorded = provenance.checkpoint or {}
    for key, file in (("state_sha256", state_file), ("metadata_sha256", metadata_file)):
        if key not in recorded:
            continue
        actual = file_sha256(file) if file is not None else None
        if actual != recorded[key]:
            shown = file if file is not None else f"the missing metadata file of {state_file.name}"
            raise CheckpointError(
                f"{shown} does not match {provenance_file.name} (sha256 differs): "
                "the checkpoint's files come from different writes"
            )


def _read_state(
    state_file: Path, options: Mapping[str, Any], *, mmap: bool
) -> tuple[Mapping[str, Any], dict[str, torch.Tensor]]:
    """The content of ``state_file`` and its dense tensors; ``options`` are
    :func:`safe_load`'s ``map_location`` and ``allow_expansion``."""
    state = safe_load(state_file, mmap=mmap, **options)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{state_file} does not hold a state dict of tensors")
    tensors = {}
    for key, value in state.items():
        if key == METADATA_KEY:
            continue
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise CheckpointError(f"{state_file} does not hold a state dict of tensors (entry {key!r})")
        if value.layout != torch.strided:
            raise CheckpointError(f"tensor {key!r} in {state_file} is {value.layout}; only dense tensors can be merged")
        tensors[key] = value
    return state, tensors


@dataclass(frozen=True)
class _Source:
    """Where a checkpoint's architecture can come from: its metadata or its provenance's record."""

    state: Mapping[str, Any]
    metadata_file: Path | None
    options: Mapping[str, Any]
    provenance: Provenance | None
    state_file: Path
    model_class: type[nn.Module] | None


def _build(tensors: dict[str, torch.Tensor], template: nn.Module | None, source: _Source) -> nn.Module:
    """The model holding ``tensors``: a copy of ``template`` or rebuilt from the checkpoint's architecture."""
    try:
        if template is not None:
            return load_into_copy(template, tensors)
        return _rebuilt(tensors, source)
    except NeuralopMergeError:
        raise
    except Exception as error:  # a hostile architecture argument can make a constructor raise anything
        raise CheckpointError(f"{source.state_file} does not fit the model: {first_line(error)}") from None


def _rebuilt(tensors: dict[str, torch.Tensor], source: _Source) -> nn.Module:
    """The model described by neuraloperator's metadata or else by the provenance's architecture record.

    The record is the fallback for models without metadata (UNO, plain modules) and for
    a model whose arguments are sub-models (UQNO), whose metadata pickles whole modules
    that no safe loader reads; UQNO's own checkpoints are read from their state file
    (:func:`~neuralop_merge.architecture.uqno_arguments`). Any other unsafe metadata
    file is refused.
    """
    record = source.provenance.architecture if source.provenance is not None else None
    state = source.state
    try:
        metadata_file = source.metadata_file
        init_kwargs = safe_load(metadata_file, **source.options) if metadata_file is not None else state.get(METADATA_KEY)
    except UnsafeCheckpointError:
        own_uqno = uqno_arguments(state) if record is None else None
        if own_uqno is not None:
            return _own_uqno(own_uqno, tensors, source.state_file)
        if not holds_submodels(record):
            raise
        init_kwargs = None
    if isinstance(init_kwargs, Mapping) and "_name" in init_kwargs:
        return _from_init_kwargs(init_kwargs, tensors, source.state_file)
    if record is not None:
        return instantiate(*rebuild_arguments(record, str(source.state_file), source.model_class), tensors)
    raise CheckpointError(
        f"{source.state_file} holds no architecture metadata (a plain nn.Module state dict); pass template="
    )


def _own_uqno(arguments: tuple, tensors: dict[str, torch.Tensor], state_file: Path) -> nn.Module:
    """A UQNO from its own ``save_checkpoint`` output, or a one-line error saying how to load it.

    Only the base model's arguments are readable safely (see
    :func:`~neuralop_merge.architecture.uqno_arguments`); a residual model of another
    architecture exists only in the pickled metadata, which is never unpickled.
    """
    try:
        return instantiate(*arguments, tensors)
    except Exception as error:
        raise CheckpointError(
            f"{state_file}: a UQNO whose residual model differs from its base model ({first_line(error)}); "
            "neuraloperator records that residual model only in pickled metadata, which is never unpickled: "
            "pass template=UQNO(base_model=..., residual_model=...), or save it with neuralop_merge.save_model"
        ) from None


def _from_init_kwargs(init_kwargs: Mapping[str, Any], tensors: dict[str, torch.Tensor], source: Path) -> nn.Module:
    _check_init_kwargs(init_kwargs, tensors, source)
    model_name = init_kwargs["_name"].lower()
    model_class = BaseModel._models.get(model_name)
    if model_class is None:
        raise CheckpointError(f"{source} is a {init_kwargs['_name']!r} model, which neuraloperator does not define")
    args, kwargs = init_arguments(init_kwargs)
    return instantiate(model_class, args, kwargs, tensors)


def _check_init_kwargs(init_kwargs: Mapping[str, Any], tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse init arguments that cannot describe ``tensors``, before any constructor runs.

    An integer argument (a channel count, mode count or number of layers) larger than
    the number of weights in the file cannot describe that file, and could make the
    constructor loop for hours even on the meta device.
    """
    if not all(isinstance(key, str) for key in init_kwargs) or not isinstance(init_kwargs["_name"], str):
        raise CheckpointError(f"{source}: the architecture metadata must map argument names to values")
    if not isinstance(init_kwargs.get("args", ()), (list, tuple)):
        raise CheckpointError(f"{source}: the architecture metadata's 'args' must be a list")
    weights = sum(t.numel() for t in tensors.values())
    limit = max(weights, MIN_ARCHITECTURE_INT_LIMIT)
    for key, value in init_kwargs.items():
        for number in _integers(value):
            if abs(number) > limit:
                raise CheckpointError(
                    f"{source}: architecture argument {key!r} = {number} cannot describe a file of {weights} "
                    f"weights (limit {limit})"
                )


def _integers(value: Any) -> list[int]:
    """Every integer in ``value`` and in the lists, tuples and dicts inside it."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, Mapping):
        return [n for item in value.values() for n in _integers(item)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _integers(item)]
    return []


def check_name(name: str) -> None:
    """Refuse a checkpoint name that is empty, hidden or holds a path separator."""
    separators = {os.sep, os.altsep or os.sep, "/", "\0"}
    if not isinstance(name, str) or not name or name.startswith(".") or any(s in name for s in separators):
        raise CheckpointError(
            f"checkpoint name {name!r} must be a plain file name: not empty, no path separator, not starting with '.'"
        )


def checkpoint_files(folder: str | os.PathLike, name: str) -> dict[str, Path]:
    """The files :func:`save_model` writes for ``name`` in ``folder``."""
    check_name(name)
    folder = Path(folder)
    return {
        "state": folder / f"{name}{STATE_SUFFIX}",
        "metadata": folder / f"{name}{METADATA_SUFFIX}",
        "provenance": folder / f"{name}{PROVENANCE_SUFFIX}",
    }


def save_model(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    name: str = "model",
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    init_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` in neuraloperator's layout, plus a provenance record.

    Writes ``<folder>/<name>_state_dict.pt`` and (for a neuraloperator ``BaseModel``)
    ``<name>_metadata.pkl``, loadable by :func:`load_model` and by
    ``FNO.from_checkpoint(folder, name)``, and ``<name>_provenance.json``: the model's
    ``provenance`` attribute updated with ``provenance``, the package versions and the
    sha256 of the other two files. The files are written to temporary names and
    committed together at the end (state, metadata, provenance last), so a failure
    leaves nothing behind, and a crash between two renames leaves a checkpoint that
    :func:`load_model` refuses rather than one that mixes two writes.

    The provenance also holds an architecture record (class and init arguments, see
    :mod:`neuralop_merge.architecture`), so that models without neuraloperator metadata
    (UNO, plain ``nn.Module``s) load without a template. ``init_kwargs`` gives the init
    arguments of a model that does not keep them as attributes (CODANO); they are
    checked against the model and ignored with a warning when they do not rebuild it.

    Returns
    -------
    Path
        the state-dict file

    Raises
    ------
    OutputExistsError
        (a ``FileExistsError``) when any of the files exists and ``overwrite`` is false,
        also when a concurrent writer took the name first
    CheckpointError
        for an invalid ``name`` or a folder that cannot be written
    """
    files = checkpoint_files(folder, name)
    metadata = getattr(model, "_init_kwargs", None)
    metadata_files = [files["metadata"]] if metadata is not None else []
    check_output_paths([files["state"], *metadata_files, files["provenance"]], overwrite=overwrite)
    given = Provenance.from_dict(jsonable({**getattr(model, "provenance", {}), **(provenance or {})}), name)
    record = given.with_keys(versions=package_versions(), architecture=architecture_record(model, init_kwargs))
    if init_kwargs is not None and record.architecture is None:
        warnings.warn(f"init_kwargs do not rebuild this {type(model).__name__}; {name} needs template= to load")
    with staged_writes(overwrite=overwrite) as staging:
        state = staging.add(files["state"], lambda handle: torch.save(model.state_dict(), handle))
        hashes: dict[str, str | None] = {"state_sha256": file_sha256(state), "metadata_sha256": None}
        if metadata is not None:
            written = staging.add(files["metadata"], lambda handle: torch.save(metadata, handle))
            hashes["metadata_sha256"] = file_sha256(written)
        text = json.dumps(record.with_keys(checkpoint=hashes).to_dict(), indent=2)
        staging.add(files["provenance"], lambda handle: handle.write(text.encode()))
    return files["state"]
