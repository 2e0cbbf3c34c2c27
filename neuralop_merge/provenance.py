"""Provenance records: what a saved model was made from, as plain JSON."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

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
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
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
        data = value.detach().to("cpu").contiguous()
        digest = hashlib.sha256(memoryview(data.reshape(-1).view(torch.uint8).numpy())).hexdigest()
        return {"tensor": list(data.shape), "dtype": str(data.dtype), "sha256": digest}
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
