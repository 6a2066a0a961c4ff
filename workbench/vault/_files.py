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
