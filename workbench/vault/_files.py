"""Durable file operations: atomic writes and an inter-process lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ..errors import AlreadyExists, InvalidInput

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, overwrite: bool = False, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing.

    The bytes go to a temporary file in the same folder, are fsynced, then
    renamed over the target (or linked, when ``overwrite`` is false, so an
    existing file is never replaced silently) and the folder is fsynced
    (``sync_dir=False`` leaves that to a caller that batches it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise AlreadyExists(
                    "refusing to overwrite an existing file; remove it first or choose "
                    "another destination"
                ) from None
            os.unlink(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if sync_dir:
        fsync_dir(path.parent)


def read_input(path: str | os.PathLike) -> bytes:
    """Read an input file whole; any failure is an ``InvalidInput`` with advice."""
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise InvalidInput("this is a folder with no photos in it") from None
    except FileNotFoundError:
        raise InvalidInput("no such file; check the path") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read this file ({exc.strerror}); check permissions") from None


@contextlib.contextmanager
def locked(lock_path: Path):
    """Hold an exclusive advisory lock on ``lock_path`` (one writer at a time)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def hold_shared(lock_path: Path) -> int:
    """Take a shared advisory lock on ``lock_path``; return its descriptor (close it to let go)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def exclusive_now(lock_path: Path, held: int | None = None):
    """Take an exclusive lock on ``lock_path`` if no one else holds it; yield whether it was taken.

    ``held`` is this process's own shared lock on the file (a descriptor from
    :func:`hold_shared`): it is turned exclusive for the block and shared again
    after (flock converts a lock by dropping and retaking it).
    """
    fd = held if held is not None else os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            taken = True
        except BlockingIOError:
            taken = False
        yield taken
    finally:
        if held is None:
            os.close(fd)
        else:
            fcntl.flock(fd, fcntl.LOCK_SH)
