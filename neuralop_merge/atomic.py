"""Crash-safe, race-free file writes: the one write path of the package.

Every file is written to a temporary name in its final folder, flushed and fsynced,
then committed by a rename:

* with ``overwrite=False`` the commit is ``os.link(temporary, final)``, which fails
  if ``final`` exists, so of two concurrent writers exactly one succeeds; there is
  no check-then-write window;
* with ``overwrite=True`` it is ``os.replace``, which swaps the name atomically.

Neither follows a symlink at the final name: a link there counts as an existing
file, or is itself replaced. Temporary files are created with mode ``0o666``, so the
process umask decides who can read the result. The folder is fsynced after the
commit so that the new names survive a power cut. A writer killed mid-write leaves
a temporary file whose name carries its process id; the next write into that folder
removes it once that process is gone.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import CheckpointError, OutputExistsError

Writer = Callable[[BinaryIO], object]

_TEMPORARY_SUFFIX = ".tmp"
# Filesystems that cannot hard-link (some network and FAT mounts) answer with one of these.
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK})


def _cannot_write(path: Path, error: OSError) -> CheckpointError:
    return CheckpointError(f"cannot write {path}: {error.strerror or error}")


def _exists_error(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its parents, or raise a one-line :class:`CheckpointError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CheckpointError(f"cannot create folder {folder}: a file of that name is in the way") from None
    except OSError as error:
        raise CheckpointError(f"cannot create folder {folder}: {error.strerror or error}") from None


def check_output_paths(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Fail fast, before any expensive work, on outputs that cannot be written.

    This is a courtesy, not the guarantee: the commit itself is atomic. Refused are an
    existing file (or symlink) without ``overwrite``, a folder path that runs through a
    regular file, and a folder that is read-only or on a read-only filesystem.
    """
    for path in paths:
        if not overwrite and os.path.lexists(path):
            raise _exists_error(path)
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise CheckpointError(f"cannot write {path}: {ancestor} is not a folder")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise CheckpointError(f"cannot write {path}: {ancestor} is not writable")


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, but another user's
        return False
    return False


def remove_stale_temporaries(folder: Path, final_name: str) -> None:
    """Delete temporary files for ``final_name`` left by writers that no longer run."""
    prefix = f".{final_name}."
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(_TEMPORARY_SUFFIX)):
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and _process_is_gone(int(pid_text)):
            Path(entry.path).unlink(missing_ok=True)


def _write_temporary(final: Path, writer: Writer) -> Path:
    """Write ``final``'s content to a fresh temporary file next to it, fsynced."""
    temporary = final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(6)}{_TEMPORARY_SUFFIX}")
    try:
        # 0o666 lets the umask decide the mode, as for any other file the user creates.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _cannot_write(final, error) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            writer(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _link_without_replacing(temporary: Path, final: Path) -> None:
    """Give ``temporary``'s content the name ``final`` only if that name is free."""
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise _exists_error(final) from None
    except OSError as error:
        if error.errno not in _NO_LINK_ERRNOS:
            raise _cannot_write(final, error) from None
        # No hard links here: reserve the name exclusively, then move the content in.
        try:
            os.close(os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise _exists_error(final) from None
        except OSError as reservation_error:
            raise _cannot_write(final, reservation_error) from None
        os.replace(temporary, final)
        return
    temporary.unlink()


def fsync_folder(folder: Path) -> None:
    """Make the folder's new entries durable (a no-op where folders cannot be fsynced)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class Staging:
    """Files written to temporary names, committed together by :func:`staged_writes`."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def add(self, final: str | os.PathLike, writer: Writer) -> Path:
        """Write ``final``'s content now (to a temporary file); return the temporary path.

        The content is complete and fsynced when this returns, so it can be hashed.
        """
        final = Path(final)
        make_folder(final.parent)
        remove_stale_temporaries(final.parent, final.name)
        temporary = _write_temporary(final, writer)
        self.pending.append((temporary, final))
        return temporary

    def discard(self) -> None:
        """Delete every temporary file not yet committed."""
        for temporary, _ in self.pending:
            temporary.unlink(missing_ok=True)
        self.pending.clear()

    def commit(self, *, overwrite: bool) -> None:
        """Rename every temporary file into place, in the order they were added.

        Without ``overwrite``, a name that is taken undoes the files committed so far,
        so a losing concurrent writer leaves nothing behind.
        """
        committed: list[Path] = []
        try:
            for temporary, final in self.pending:
                _commit_one(temporary, final, overwrite=overwrite)
                committed.append(final)
        except BaseException:
            if not overwrite:
                for final in committed:
                    final.unlink(missing_ok=True)
            self.discard()
            raise
        for folder in {final.parent for _, final in self.pending}:
            fsync_folder(folder)
        self.pending.clear()


def _commit_one(temporary: Path, final: Path, *, overwrite: bool) -> None:
    if not overwrite:
        _link_without_replacing(temporary, final)
        return
    try:
        os.replace(temporary, final)
    except OSError as error:
        raise _cannot_write(final, error) from None


@contextmanager
def staged_writes(*, overwrite: bool) -> Iterator[Staging]:
    """Write several files and commit them together at the end of the block.

    An exception inside the block deletes every temporary file and commits nothing.
    """
    staging = Staging()
    try:
        yield staging
    except BaseException:
        staging.discard()
        raise
    staging.commit(overwrite=overwrite)


def write_file(path: str | os.PathLike, writer: Writer, *, overwrite: bool) -> Path:
    """Write one file atomically: ``writer`` receives a binary handle to fill."""
    with staged_writes(overwrite=overwrite) as staging:
        staging.add(path, writer)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_file(path, lambda handle: handle.write(text.encode("utf-8")), overwrite=overwrite)
