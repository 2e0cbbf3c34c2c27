"""Limits that keep a hostile checkpoint from costing more than its own size.

``torch.load(weights_only=True)`` already refuses to run arbitrary pickled code.
Three cheaper attacks remain, and this module closes them:

* **Calls during unpickling.** The unpickler may call any allow-listed global. We
  therefore never hand it the real activation functions and layer classes: each name
  on the allow-list maps to a :class:`GlobalReference` whose call is refused, so no
  module is built and no function runs while a file is read. Genuine files only
  *name* these objects, and :func:`resolve_globals` swaps in the real ones after the
  structure passed :func:`check_structure`.
* **Structures that explode.** Pickle's memo lets a 1 KB file hold ``L = [L, L]``
  nested 40 deep, whose comparison or serialisation takes 2**40 steps, or nest
  thousands of levels deep and overflow the stack. :func:`check_structure` measures
  the size the structure has as a tree and its depth, in time linear in the file,
  and refuses anything beyond :data:`MAX_DEPTH` levels or :data:`MAX_NODES` nodes, and
  any cycle.
* **Tensors larger than the file.** A stride-0 tensor or a deflate-compressed zip
  entry makes a few kilobytes become gigabytes. :func:`check_archive` (before
  loading) and :func:`check_tensor_bytes` (after) refuse more than
  :data:`EXPANSION_LIMIT` times the file's size plus :data:`EXPANSION_SLACK` bytes,
  unless the caller opts in.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, UnsafeCheckpointError, first_line

#: Deepest nesting of containers accepted in a checkpoint's non-tensor content.
MAX_DEPTH = 32
#: Most nodes (containers and leaves) that content may have once shared references are expanded.
MAX_NODES = 100_000
#: Tensors may hold at most this many times the bytes of the file they come from ...
EXPANSION_LIMIT = 4
#: ... plus this many bytes, so that tiny files with zip padding are never refused.
EXPANSION_SLACK = 1 << 20


class GlobalReference:
    """What the unpickler builds for an allow-listed global: its name, never a call.

    Two uses of a reference mirror what genuine files contain and stay lazy: torch
    pickles ``torch.tanh`` as ``getattr(torch._C._VariableFunctionsClass, "tanh")``,
    which resolves to the reference of the attribute when that object is itself
    allow-listed; and an ``nn.Module`` instance (``nn.GELU()``) is pickled as
    ``cls.__new__(cls)`` plus its ``__dict__``, which becomes a :class:`PendingObject`
    built only after the checks. Any other call is refused.

    Parameters
    ----------
    name : str
        the dotted name the file asks for, e.g. ``"torch.nn.functional.gelu"``
    target : object
        the real object :func:`resolve_globals` substitutes once the file is checked
    allowed : dict
        ``id(target) -> reference`` for every allow-listed object of this load
    """

    __slots__ = ("name", "target", "allowed")

    def __new__(cls, *args: object) -> Any:
        # The unpickler's NEWOBJ runs ``reference.__new__(reference, *args)``, which
        # lands here with an instance in place of the class.
        if isinstance(cls, GlobalReference):
            return cls._pending_instance(args)
        return super().__new__(cls)

    def __init__(self, name: str, target: object, allowed: dict[int, GlobalReference]) -> None:
        self.name = name
        self.target = target
        self.allowed = allowed

    def __call__(self, *args: object, **kwargs: object) -> GlobalReference:
        if self.target is getattr and len(args) == 2 and not kwargs:
            return self._attribute(*args)
        raise UnsafeCheckpointError(f"it calls {self.name} while unpickling, which genuine checkpoints never do")

    def _attribute(self, owner: object, name: object) -> GlobalReference:
        """``getattr(owner, name)`` when both the owner and the attribute are allow-listed."""
        if isinstance(owner, GlobalReference) and isinstance(name, str):
            reference = self.allowed.get(id(getattr(owner.target, name, None)))
            if reference is not None:
                return reference
        raise UnsafeCheckpointError(f"it asks for getattr({owner!r}, {name!r}), which is outside the allow-list")

    def _pending_instance(self, args: tuple[object, ...]) -> PendingObject:
        if args or not isinstance(self.target, type):
            raise UnsafeCheckpointError(f"it constructs {self.name} with arguments while unpickling")
        return PendingObject(self)

    def __repr__(self) -> str:
        return f"<reference to {self.name}>"


class PendingObject:
    """An instance of an allow-listed class as a file describes it: built like pickle
    builds it (``cls.__new__(cls)``, then its state) once the content passed the checks."""

    __slots__ = ("reference", "state")

    def __init__(self, reference: GlobalReference) -> None:
        self.reference = reference
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def build(self) -> object:
        """The real instance, its state resolved first."""
        reference = getattr(self, "reference", None)
        if not isinstance(reference, GlobalReference):
            raise UnsafeCheckpointError("it builds an object of a class outside the allow-list")
        instance = reference.target.__new__(reference.target)
        state = resolve_globals(getattr(self, "state", None))
        if state is None:
            return instance
        if hasattr(instance, "__setstate__"):
            instance.__setstate__(state)
        else:
            instance.__dict__.update(state)
        return instance


def allowed_globals(targets: Iterable[Callable[..., Any] | type]) -> list[tuple[object, str]]:
    """``(object, dotted name)`` pairs for ``torch.serialization.safe_globals``: a fresh
    :class:`GlobalReference` per allow-listed object, and the pending-instance type."""
    allowed: dict[int, GlobalReference] = {}
    pairs: list[tuple[object, str]] = []
    for target in targets:
        name = f"{target.__module__}.{target.__qualname__}"
        allowed[id(target)] = GlobalReference(name, target, allowed)
        pairs.append((allowed[id(target)], name))
    pairs.append((PendingObject, f"{__name__}.{PendingObject.__qualname__}"))
    return pairs


def _children(value: Any) -> tuple[Any, ...]:
    if isinstance(value, PendingObject):
        return (getattr(value, "state", None),)
    if isinstance(value, Mapping):
        return (*value.keys(), *value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(value)
    return ()


def _is_container(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple, set, frozenset, PendingObject))


def check_structure(value: Any, source: Path | str) -> None:
    """Refuse cyclic, too deep or too large (as a tree) content, in linear time.

    Each distinct container is visited once; its size as a tree is the sum of its
    children's, so a shared reference costs one lookup however often it is reused.

    Raises
    ------
    CheckpointError
        naming ``source`` and the limit exceeded
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order walk: entries are (container, its children, next child index).
    stack: list[tuple[Any, tuple[Any, ...], int]] = []

    def enter(container: Any) -> None:
        if len(stack) >= MAX_DEPTH:
            raise CheckpointError(f"{source} nests containers deeper than {MAX_DEPTH} levels")
        on_path.add(id(container))
        stack.append((container, _children(container), 0))

    if not _is_container(value):
        return
    enter(value)
    while stack:
        container, children, index = stack[-1]
        if index < len(children):
            stack[-1] = (container, children, index + 1)
            child = children[index]
            if _is_container(child) and id(child) not in sizes:
                if id(child) in on_path:
                    raise CheckpointError(f"{source} holds a container that contains itself")
                enter(child)
            continue
        stack.pop()
        on_path.discard(id(container))
        size = 1 + sum(sizes.get(id(child), 1) for child in children)
        if size > MAX_NODES:
            raise CheckpointError(
                f"{source} holds {size}+ objects once shared references are expanded (limit {MAX_NODES})"
            )
        sizes[id(container)] = size


def resolve_globals(value: Any) -> Any:
    """``value`` with every :class:`GlobalReference` replaced by its real object.

    Containers without a reference are returned as they are (a state dict keeps its
    ``_metadata`` attribute). Call only after :func:`check_structure`, which bounds
    the recursion depth.
    """
    if isinstance(value, GlobalReference):
        return value.target
    if isinstance(value, PendingObject):
        return value.build()
    if torch.is_tensor(value) or not _is_container(value):
        return value
    children = _children(value)
    resolved = [resolve_globals(child) for child in children]
    if all(new is old for new, old in zip(resolved, children)):
        return value
    if isinstance(value, Mapping):
        half = len(resolved) // 2
        return type(value)(zip(resolved[:half], resolved[half:]))
    return type(value)(resolved)


def check_archive(path: Path, file_size: int, *, allow_expansion: bool) -> bool:
    """Whether ``path`` is a zip archive; refuse one whose entries unpack to far more than its size."""
    try:
        if not zipfile.is_zipfile(path):  # a legacy torch file stores its tensors raw
            return False
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except Exception as error:  # zipfile raises many types on a damaged directory
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line(error)}") from None
    limit = EXPANSION_LIMIT * file_size + EXPANSION_SLACK
    if unpacked > limit and not allow_expansion:
        raise CheckpointError(
            f"{path} unpacks to {unpacked} bytes from {file_size} (limit {limit}: compressed entries); "
            "pass allow_expansion=True if you trust it"
        )
    return True


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def check_tensor_bytes(value: Any, path: Path, file_size: int, *, allow_expansion: bool) -> None:
    """Refuse loaded tensors whose in-memory size is far beyond the file's (stride-0 tensors)."""
    if allow_expansion:
        return
    tensors = {id(v): v for v in _leaves(value) if torch.is_tensor(v)}
    total = sum(_tensor_bytes(t) for t in tensors.values())
    limit = EXPANSION_LIMIT * file_size + EXPANSION_SLACK
    if total > limit:
        largest = max(tensors.values(), key=_tensor_bytes)
        raise CheckpointError(
            f"{path} holds tensors of {total} bytes from a {file_size}-byte file (limit {limit}; a tensor of "
            f"shape {tuple(largest.shape)} has stride {tuple(largest.stride())}); pass allow_expansion=True if you trust it"
        )


def _leaves(value: Any) -> list[Any]:
    """Every non-container reachable from ``value``, each distinct container walked once."""
    seen: set[int] = set()
    leaves: list[Any] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if not _is_container(item):
            leaves.append(item)
        elif id(item) not in seen:
            seen.add(id(item))
            pending.extend(_children(item))
    return leaves


_GLOBAL_NAME = re.compile(r"GLOBAL (\S+)")
_TORCH_ADVICE = ("weights_only", "Weights only", "https://", "add_safe_globals", "safe_globals")


def refusal_reason(message: str) -> str:
    """The offending global (or the unpickler's own complaint) from torch's error text.

    torch's message advises re-running with ``weights_only=False``; that advice is
    dropped, since following it would run the file's code.
    """
    match = _GLOBAL_NAME.search(message)
    if match:
        return f"it needs the global {match.group(1).rstrip('.')}, which is outside the allow-list"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    plain = [line for line in lines if not any(marker in line for marker in _TORCH_ADVICE)]
    reason = plain[0] if plain else "its pickle uses an unsupported instruction"
    return reason.removeprefix("WeightsUnpickler error: ")
