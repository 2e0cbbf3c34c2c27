"""Provenance records: what a saved model was made from, as plain JSON."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .safety import check_structure
from .weights import tensor_sha256

_PACKAGES = ("neuralop-merge", "neuraloperator", "torch", "tensorly", "tensorly-torch")


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str | None], ...]:
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return tuple(versions.items())


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a merge result depends on (read once per process)."""
    return dict(_installed_versions())


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks.

    A merge hashes each input twice (checked against its provenance when loaded,
    recorded in the result's provenance), so digests are remembered per file
    identity: device, inode, size and modification time, any of which a rewrite changes.
    """
    status = os.stat(path)
    return _sha256_of(os.fspath(path), (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, identity: tuple[int, int, int, int]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` made JSON-serialisable: tensors become a shape/dtype/sha256 summary,
    callables their qualified name, non-finite floats strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if torch.is_tensor(value):
        if value.numel() == 1:
            return jsonable(value.item())
        return {"tensor": list(value.shape), "dtype": str(value.dtype), "sha256": tensor_sha256(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, complex):
        return [value.real, value.imag]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


#: Largest provenance file read; genuine records are a few kilobytes.
MAX_PROVENANCE_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")

# Types of the keys neuralop-merge writes itself; any other key belongs to the user
# and may hold any JSON value.
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "strategy": (str,),
    "params": (dict,),
    "coefficients": (dict,),
    "inputs": (list,),
    "versions": (dict,),
    "trainable": (list, type(None)),
    "alpha": (int, float),
    "checkpoint": (dict,),
}


def read_provenance(path: Path) -> dict[str, Any]:
    """Read and validate a ``*_provenance.json`` file.

    Raises
    ------
    CheckpointError
        one line naming ``path`` when the file is too large, not UTF-8 JSON, too
        deeply nested, or a known key has the wrong type
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PROVENANCE_BYTES + 1)
    except OSError as error:
        raise CheckpointError(f"cannot read provenance {path}: {error.strerror or error}") from None
    if len(raw) > MAX_PROVENANCE_BYTES:
        raise CheckpointError(f"provenance {path} is larger than {MAX_PROVENANCE_BYTES} bytes")
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"provenance {path} is not valid JSON: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise CheckpointError(f"provenance {path} nests too deeply") from None
    check_structure(record, path)
    validate_provenance(record, path)
    return record


def validate_provenance(record: Any, source: Path | str) -> None:
    """Refuse a provenance record whose known keys have the wrong types."""
    if not isinstance(record, dict):
        raise CheckpointError(f"provenance {source} must be a JSON object, got {type(record).__name__}")
    for key, types in _KEY_TYPES.items():
        value = record.get(key)
        if key in record and (not isinstance(value, types) or isinstance(value, bool)):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise CheckpointError(f"provenance {source}: {key!r} must be {expected}, got {type(value).__name__}")
    trainable = record.get("trainable")
    if trainable is not None and (not trainable or not all(isinstance(n, str) and n for n in trainable)):
        raise CheckpointError(f"provenance {source}: 'trainable' must be a non-empty list of parameter names")
    if not all(isinstance(v, str) or v is None for v in record.get("versions", {}).values()):
        raise CheckpointError(f"provenance {source}: 'versions' must map package names to strings")
    if not all(isinstance(i, dict) for i in record.get("inputs", [])):
        raise CheckpointError(f"provenance {source}: 'inputs' must be a list of objects")
    _validate_checkpoint_hashes(record.get("checkpoint", {}), source)


def _validate_checkpoint_hashes(hashes: dict[str, Any], source: Path | str) -> None:
    for key, value in hashes.items():
        if key not in CHECKPOINT_HASH_KEYS:
            raise CheckpointError(f"provenance {source}: unknown key {key!r} under 'checkpoint'")
        if not (value is None or (isinstance(value, str) and _SHA256.fullmatch(value))):
            raise CheckpointError(f"provenance {source}: 'checkpoint.{key}' must be a sha256 hex digest")


#: The files whose sha256 a checkpoint's provenance records, by role.
CHECKPOINT_HASH_KEYS = ("state_sha256", "metadata_sha256")
