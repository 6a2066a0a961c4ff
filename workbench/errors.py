"""One exception family for the whole workbench.

Every failure a user can cause or meet (wrong passphrase, missing consent,
damaged file, corrupt image) raises a subclass of :class:`WorkbenchError`.
Messages say what happened and what to do next; they never contain a
passphrase, key, patient identifier or source file name. The ids involved
(random photo ids, pseudonymous patient references, record numbers) are kept
as attributes so that code can act on them.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""

    #: process exit status used by the command-line interface
    exit_code = 2

    def __init__(self, message: str, **data):
        super().__init__(message)
        self.data = data
        for key, value in data.items():
            setattr(self, key, value)


class AccessDenied(WorkbenchError):
    """The caller's keys do not allow this (wrong passphrase, or role lacks the tier)."""

    exit_code = 3


class IntegrityError(WorkbenchError):
    """Stored data failed an authenticity check: a blob, the index or the audit chain."""

    exit_code = 4


class ConsentError(WorkbenchError):
    """Consent is missing, withdrawn, expired, or the purpose is not a consent scope."""

    exit_code = 5


class NotFound(WorkbenchError):
    """A vault, user, patient or photo that was named does not exist."""

    exit_code = 6


class AlreadyExists(WorkbenchError):
    """Refusing to overwrite something that exists (a vault, a user, an output file)."""

    exit_code = 7


class InvalidInput(WorkbenchError):
    """An argument or input file is malformed: bad date, unknown role, corrupt image."""

    exit_code = 8


class NoTerminal(InvalidInput):
    """A passphrase is needed and there is no terminal to ask for it at."""


class UnsupportedFormat(InvalidInput):
    """The file is not an image format the workbench reads."""


class DecompressionBomb(InvalidInput):
    """The image header claims more pixels than the workbench will decode."""


class ModelUnavailable(WorkbenchError):
    """A detector model cannot be prepared or loaded (a broken or incomplete install)."""


class ConflictError(WorkbenchError):
    """What the vault holds or is doing conflicts with the request.

    A file already stored under another patient (``photo_id`` names the
    stored photo), or stale files looked for while another session may still
    be writing to the vault.
    """

    exit_code = 10


class CameraError(WorkbenchError):
    """A camera failed, filled up or went away during a capture or an import.

    ``code`` is libgphoto2's result code; ``gone`` is true when the camera
    stopped answering (the rest of the run is not attempted). Nothing on the
    camera is deleted after such a failure, so running the command again
    continues where it stopped.
    """

    exit_code = 11


class NotVerified(WorkbenchError):
    """An output failed verification and may not be exported."""

    exit_code = 9


__all__ = [
    "WorkbenchError",
    "AccessDenied",
    "IntegrityError",
    "ConsentError",
    "NotFound",
    "AlreadyExists",
    "ConflictError",
    "CameraError",
    "InvalidInput",
    "UnsupportedFormat",
    "DecompressionBomb",
    "NotVerified",
]
