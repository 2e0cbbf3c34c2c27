"""Safe checkpoint reading and atomic writing in neuraloperator's layout.

neuraloperator's ``save_checkpoint`` writes ``<name>_state_dict.pt`` and
``<name>_metadata.pkl``; its loaders unpickle them with ``weights_only=False``, so a
crafted file runs code. We read both with ``torch.load(weights_only=True)`` and an
allow-list of exactly the non-tensor objects genuine files hold (activation
functions and layer classes in the ``_metadata`` init arguments).
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from neuralop.layers.fno_block import FNOBlocks
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models.base_model import BaseModel
from torch import nn

from .allowlist import EXTRA_SAFE_GLOBALS
from .architecture import architecture_record, holds_submodels, rebuild_arguments, uqno_arguments
from .errors import CheckpointError, UnsafeCheckpointError
from .provenance import jsonable, package_versions
from .weights import METADATA_KEY, instantiate, load_into_copy

STATE_SUFFIX = "_state_dict.pt"
METADATA_SUFFIX = "_metadata.pkl"
PROVENANCE_SUFFIX = "_provenance.json"

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


def safe_load(path: Path, *, map_location: str | torch.device | None = None) -> Any:
    """``torch.load`` that executes no pickled code and builds only allow-listed objects.

    Raises
    ------
    UnsafeCheckpointError
        when the file asks for any other global (its name is in the message)
    CheckpointError
        when the file is missing, truncated or not a torch checkpoint
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()
        detail = next((line.strip() for line in reason if "GLOBAL" in line or "global" in line), reason[0] if reason else "")
        raise UnsafeCheckpointError(f"refusing to load {path}: it needs objects outside the allow-list ({detail})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(error).splitlines()[0]}") from None


def _locate(path: Path, name: str | None) -> tuple[Path, Path | None, Path | None]:
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
    state_file, _, provenance_file = _locate(Path(path), name)
    if not state_file.is_file():
        raise CheckpointError(f"checkpoint file not found: {state_file}")
    return None if provenance_file is None else _read_provenance(provenance_file)


def _read_provenance(provenance_file: Path) -> Any:
    try:
        return json.loads(provenance_file.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read provenance {provenance_file}: {str(error).splitlines()[0]}") from None


def load_model(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    template: nn.Module | None = None,
    model_class: type[nn.Module] | None = None,
    map_location: str | torch.device | None = None,
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

    Returns
    -------
    nn.Module
        the model, with a ``provenance`` dict attribute when a provenance record exists
    """
    state_file, metadata_file, provenance_file = _locate(Path(path), name)
    state = safe_load(state_file, map_location=map_location)
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for k, v in state.items() if k != METADATA_KEY):
        raise CheckpointError(f"{state_file} does not hold a state dict of tensors")
    tensors = {k: v for k, v in state.items() if k != METADATA_KEY}
    provenance = _read_provenance(provenance_file) if provenance_file is not None else None
    try:
        if template is not None:
            model = load_into_copy(template, tensors)
        else:
            model = _rebuilt(state, tensors, metadata_file, provenance, state_file, model_class)
    except (RuntimeError, TypeError, KeyError, ValueError) as error:
        raise CheckpointError(f"{state_file} does not fit the model: {str(error).splitlines()[0]}") from None
    if provenance is not None:
        model.provenance = provenance
    return model


def _rebuilt(
    state: Mapping[str, Any],
    tensors: dict[str, torch.Tensor],
    metadata_file: Path | None,
    provenance: Any,
    state_file: Path,
    model_class: type[nn.Module] | None,
) -> nn.Module:
    """The model described by neuraloperator's metadata or else by the provenance's architecture record.

    The record is the fallback for models without metadata (UNO, plain modules) and for
    a model whose arguments are sub-models (UQNO), whose metadata pickles whole modules
    that no safe loader reads; UQNO's own checkpoints are read from their state file
    (:func:`~neuralop_merge.architecture.uqno_arguments`). Any other unsafe metadata
    file is refused.
    """
    record = provenance.get("architecture") if isinstance(provenance, Mapping) else None
    try:
        init_kwargs = safe_load(metadata_file) if metadata_file is not None else state.get(METADATA_KEY)
    except UnsafeCheckpointError:
        own_uqno = uqno_arguments(state) if record is None else None
        if own_uqno is not None:
            return instantiate(*own_uqno, tensors)
        if not holds_submodels(record):
            raise
        init_kwargs = None
    if isinstance(init_kwargs, Mapping) and "_name" in init_kwargs:
        return _from_init_kwargs(init_kwargs, tensors, state_file)
    if record is not None:
        return instantiate(*rebuild_arguments(record, str(state_file), model_class), tensors)
    raise CheckpointError(
        f"{state_file} holds no architecture metadata (a plain nn.Module state dict); pass template="
    )


def _from_init_kwargs(init_kwargs: Mapping[str, Any], tensors: dict[str, torch.Tensor], source: Path) -> nn.Module:
    model_name = str(init_kwargs["_name"]).lower()
    model_class = BaseModel._models.get(model_name)
    if model_class is None:
        raise CheckpointError(f"{source} is a {init_kwargs['_name']!r} model, which neuraloperator does not define")
    kwargs = {k: v for k, v in init_kwargs.items() if k not in ("_version", "_name", "args")}
    return instantiate(model_class, tuple(init_kwargs.get("args", ())), kwargs, tensors)


@contextmanager
def _staged(folder: Path) -> Iterator[list[tuple[Path, Path]]]:
    """Collect (temporary, final) file pairs; rename them all at the end, or delete them all."""
    staged: list[tuple[Path, Path]] = []
    try:
        yield staged
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged:
        os.replace(temporary, final)


def _write(staged: list[tuple[Path, Path]], final: Path, writer: Callable[[Any], None]) -> None:
    handle = tempfile.NamedTemporaryFile(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp", delete=False)
    staged.append((Path(handle.name), final))
    with handle:
        writer(handle)
        handle.flush()
        os.fsync(handle.fileno())


def checkpoint_files(folder: str | os.PathLike, name: str) -> dict[str, Path]:
    """The files :func:`save_model` writes for ``name`` in ``folder``."""
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
    ``provenance`` attribute updated with ``provenance`` and the package versions.
    Every file is written to a temporary name and renamed into place at the end, so a
    failure leaves nothing behind.

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
    FileExistsError
        when any of the files exists and ``overwrite`` is false
    """
    files = checkpoint_files(folder, name)
    if not overwrite:
        for existing in (p for p in files.values() if p.exists()):
            raise FileExistsError(f"{existing} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    record = jsonable({**getattr(model, "provenance", {}), **(provenance or {})})
    record["versions"] = package_versions()
    record["architecture"] = architecture_record(model, init_kwargs)
    if init_kwargs is not None and record["architecture"] is None:
        warnings.warn(f"init_kwargs do not rebuild this {type(model).__name__}; {name} needs template= to load")
    metadata = getattr(model, "_init_kwargs", None)
    files["state"].parent.mkdir(parents=True, exist_ok=True)
    with _staged(files["state"].parent) as staged:
        _write(staged, files["state"], lambda handle: torch.save(model.state_dict(), handle))
        if metadata is not None:
            _write(staged, files["metadata"], lambda handle: torch.save(metadata, handle))
        _write(staged, files["provenance"], lambda handle: handle.write(json.dumps(record, indent=2).encode()))
    return files["state"]
