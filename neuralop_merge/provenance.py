"""Provenance records: what a saved model was made from, as plain JSON."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
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

def _known(*json_types: type) -> Any:
    """A field of :class:`Provenance`: absent (None) by default, with the JSON types it accepts."""
    return field(default=None, metadata={"json": json_types})


@dataclass(frozen=True)
class Provenance:
    """What a model was made from: the typed form of ``model.provenance`` and ``*_provenance.json``.

    On disk (and as the ``provenance`` attribute of a model) the record is one flat JSON
    object; :meth:`to_dict` and :meth:`from_dict` convert without changing that layout.
    Every key is optional; the keys neuralop-merge writes itself have the types below,
    and any other key (a merge plan's facts such as ``coordinate`` or ``curve``, a
    training run's ``losses`` and ``steps``, the user's own keys) is kept in
    :attr:`extra` as it is. A field that is None is absent from the JSON, unless the
    record was read with that key ``null`` or :meth:`with_keys` set it to None
    (``"trainable": null``, every parameter trained; ``"architecture": null``, none
    recordable): those stay ``null``.

    Attributes
    ----------
    kind : str
        ``"anchor"``, ``"expert"`` or ``"merge"``
    strategy : str
        the registered name of the merge strategy (merges)
    params : dict
        the strategy's parameters, JSON-encoded by :func:`jsonable` (merges)
    coefficients : dict
        ``{"anchor": c₀, "experts": [c₁, ...]}``, the affine combination applied (merges)
    alpha : float
        the merge-line position α (the CCM line strategies)
    inputs : list of dict
        per input: ``role``, ``label``, ``fingerprint`` (tensor sha256) and, for a file,
        ``file`` and ``file_sha256`` (merges)
    parameter : dict
        ``{"name": axis, "value": number or {axis: number}}``, an expert's physical coordinate
    anchor_fingerprint : str
        the fingerprint of the anchor an expert was fine-tuned from
    trainable : list of str
        the parameters an expert was fine-tuned on
    versions : dict
        package name -> installed version (or null)
    architecture : dict
        the class and init arguments that rebuild the model (see :mod:`neuralop_merge.architecture`)
    checkpoint : dict
        ``state_sha256`` and ``metadata_sha256`` of the files written with this record
    extra : dict
        every other key
    nulls : frozenset of str
        the known keys that are ``null`` (rather than absent) in the JSON

    Examples
    --------
    >>> record = Provenance.from_dict({"kind": "merge", "strategy": "fixed_alpha", "alpha": 0.5, "note": "x"})
    >>> record.strategy, record.extra
    ('fixed_alpha', {'note': 'x'})
    >>> record.to_dict() == {"kind": "merge", "strategy": "fixed_alpha", "alpha": 0.5, "note": "x"}
    True
    """

    kind: str | None = _known(str)
    strategy: str | None = _known(str)
    params: dict[str, Any] | None = _known(dict)
    coefficients: dict[str, Any] | None = _known(dict)
    alpha: float | None = _known(int, float)
    inputs: list[dict[str, Any]] | None = _known(list)
    parameter: dict[str, Any] | None = _known(dict)
    anchor_fingerprint: str | None = _known(str)
    trainable: list[str] | None = _known(list)
    versions: dict[str, str | None] | None = _known(dict)
    architecture: dict[str, Any] | None = _known(dict)
    checkpoint: dict[str, str | None] | None = _known(dict)
    extra: dict[str, Any] = field(default_factory=dict)
    nulls: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def from_dict(cls, record: Any, source: Path | str = "<provenance>") -> Provenance:
        """The typed record of a provenance object, checked.

        Raises
        ------
        CheckpointError
            one line naming ``source`` when ``record`` is not an object or a known key
            has the wrong type or content
        """
        if not isinstance(record, dict):
            raise CheckpointError(f"provenance {source} must be a JSON object, got {type(record).__name__}")
        known = {f.name: f for f in fields(cls) if "json" in f.metadata}
        for name, spec in known.items():
            value, types = record.get(name), spec.metadata["json"]
            if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
                expected = " or ".join(t.__name__ for t in types)
                raise CheckpointError(f"provenance {source}: {name!r} must be {expected}, got {type(value).__name__}")
        typed = cls(
            **{name: record.get(name) for name in known}, extra={k: v for k, v in record.items() if k not in known},
            nulls=frozenset(name for name in known if name in record and record[name] is None),
        )
        typed._check_contents(source)
        return typed

    @classmethod
    def of(cls, model: Any) -> Provenance:
        """The typed record of ``model.provenance`` (empty for a model without one)."""
        return cls.from_dict(getattr(model, "provenance", None) or {}, f"of {type(model).__name__}")

    def with_keys(self, **values: Any) -> Provenance:
        """A copy with the known keys ``values`` set; one set to None is written as ``null``."""
        nulls = (self.nulls - set(values)) | {name for name, value in values.items() if value is None}
        return replace(self, **values, nulls=frozenset(nulls))

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON object: the fields that are set (or null), then :attr:`extra`."""
        known = {f.name: getattr(self, f.name) for f in fields(self) if "json" in f.metadata}
        return {**{k: v for k, v in known.items() if v is not None or k in self.nulls}, **self.extra}

    def _check_contents(self, source: Path | str) -> None:
        if self.trainable is not None and (not self.trainable or not all(isinstance(n, str) and n for n in self.trainable)):
            raise CheckpointError(f"provenance {source}: 'trainable' must be a non-empty list of parameter names")
        if not all(isinstance(v, str) or v is None for v in (self.versions or {}).values()):
            raise CheckpointError(f"provenance {source}: 'versions' must map package names to strings")
        if not all(isinstance(i, dict) for i in self.inputs or []):
            raise CheckpointError(f"provenance {source}: 'inputs' must be a list of objects")
        _validate_checkpoint_hashes(self.checkpoint or {}, source)


def read_provenance(path: Path) -> Provenance:
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
    return Provenance.from_dict(record, path)


def _validate_checkpoint_hashes(hashes: dict[str, Any], source: Path | str) -> None:
    for key, value in hashes.items():
        if key not in CHECKPOINT_HASH_KEYS:
            raise CheckpointError(f"provenance {source}: unknown key {key!r} under 'checkpoint'")
        if not (value is None or (isinstance(value, str) and _SHA256.fullmatch(value))):
            raise CheckpointError(f"provenance {source}: 'checkpoint.{key}' must be a sha256 hex digest")


#: The files whose sha256 a checkpoint's provenance records, by role.
CHECKPOINT_HASH_KEYS = ("state_sha256", "metadata_sha256")
