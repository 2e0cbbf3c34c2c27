"""Reading memory-mapped checkpoints a window at a time.

``merge`` maps its input checkpoints (``mmap=True`` in the weights-only safe loader),
so their tensors are read from the page cache on demand instead of being copied into
memory. Pages a process has touched stay in its resident set, though, until it lets
them go; :func:`release` does that for a tensor once it has been read, with
``madvise(MADV_DONTNEED)``. For a private file mapping whose pages were never written,
dropping them loses nothing: the next read faults them in from the file again.

It is called only on tensors of models that ``merge`` itself loaded with ``mmap=True``
and never writes to, and it checks ``/proc/self/maps`` on every call, so it can never
touch anonymous memory (where dropping pages would zero them). Elsewhere (no ``/proc``,
no ``madvise``) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
from collections.abc import Callable, Iterator

import torch

#: Bytes of an input tensor read (and then released) at a time by the streaming passes.
CHUNK_BYTES = 2 << 20

_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


def _madvise() -> Callable[[int, int, int], int] | None:
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


_MADVISE = _madvise()


def _in_private_file_mapping(first: int, last: int) -> bool:
    """Whether ``[first, last)`` lies inside one private, file-backed mapping of this process."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                if start <= first and last <= end:
                    # "start-end perms offset device inode path": perms end in "p" for a
                    # private mapping, and inode 0 means anonymous memory.
                    return len(fields) >= 6 and fields[1].endswith("p") and fields[4] != "0"
    except OSError:
        return False
    return False


def release(tensor: torch.Tensor) -> None:
    """Drop the resident pages of a read-only, file-mapped CPU tensor (a no-op for any other)."""
    if _MADVISE is None or tensor.device.type != "cpu" or tensor.numel() == 0:
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    # Only whole pages: a boundary page may also hold the neighbouring tensor.
    first, last = -(-start // _PAGE) * _PAGE, end // _PAGE * _PAGE
    if last > first and _in_private_file_mapping(first, last):
        _MADVISE(first, last - first, _MADV_DONTNEED)


def chunks(tensor: torch.Tensor) -> Iterator[slice]:
    """Slices of ``tensor.reshape(-1)`` of about :data:`CHUNK_BYTES` each."""
    step = max(CHUNK_BYTES // max(tensor.element_size(), 1), 1)
    for start in range(0, tensor.numel(), step):
        yield slice(start, min(start + step, tensor.numel()))
