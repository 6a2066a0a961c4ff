"""Keyed pseudonyms and per-patient date shifts.

Pseudonyms are HMAC-SHA256 of the real id under a secret key and a domain
label: the same key and domain always give the same pseudonym, so a cohort is
consistent; without the key nobody can link a pseudonym back, and another key
(or domain) gives unlinkable pseudonyms.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from pathlib import Path

from ..errors import AlreadyExists, InvalidInput
from ..vault import _crypto
from ..vault._files import atomic_write

_KEY_HEADER = "workbench pseudonym key v1"


def generate_key() -> bytes:
    """A fresh random pseudonym key (never derive one from a typed string)."""
    return _crypto.random_key()


def save_key(path: str | os.PathLike, key: bytes) -> None:
    """Write a key file (mode 600); refuses to overwrite an existing file."""
    path = Path(path)
    if path.exists():
        raise AlreadyExists("that key file exists already; choose another name")
    atomic_write(path, f"{_KEY_HEADER}\n{key.hex()}\n".encode())


def load_key(path: str | os.PathLike) -> bytes:
    """Read a key file written by :func:`save_key` (``workbench key new``)."""
    try:
        lines = Path(path).read_text("ascii").split()
    except (OSError, UnicodeDecodeError):
        raise InvalidInput("cannot read the key file; check --key-file") from None
    try:
        if lines[:4] != _KEY_HEADER.split():
            raise ValueError
        key = bytes.fromhex(lines[4])
        if len(key) < 32:
            raise ValueError
    except (ValueError, IndexError):
        raise InvalidInput(
            "that is not a workbench key file; create one with `workbench key new FILE`"
        ) from None
    return key


class Pseudonyms:
    """Pseudonyms and date shifts under one key and domain.

    Parameters
    ----------
    key : bytes
        At least 32 random bytes (the vault's pseudonym tier, or a key file).
    domain : str
        Separates uses: two cohorts with different domains cannot be linked.
    date_shift_days : (int, int)
        Inclusive range of the per-patient shift.
    """

    def __init__(self, key: bytes, domain: str = "default", date_shift_days: tuple[int, int] = (-365, -1)):
        if not isinstance(key, bytes) or len(key) < 32:
            raise InvalidInput("a pseudonym key must be at least 32 random bytes")
        self._key = key
        self.domain = domain
        self.date_shift_days = tuple(date_shift_days)

    def __repr__(self) -> str:
        return f"Pseudonyms(domain={self.domain!r})"

    def _digest(self, kind: str, value: str | bytes) -> str:
        if isinstance(value, str):
            value = value.encode("utf-8")
        return _crypto.keyed_digest(self._key, f"{self.domain}|{kind}", value)

    def patient(self, patient_id: str) -> str:
        """``PT-`` and 12 hex digits."""
        return "PT-" + self._digest("patient", patient_id)[:12]

    def photo(self, photo_id: str) -> str:
        """``IM-`` and 16 hex digits."""
        return "IM-" + self._digest("photo", photo_id)[:16]

    def file_stem(self, content: bytes) -> str:
        """An output file name stem derived from the file's content, never its name."""
        return self._digest("file", _crypto.sha256_hex(content))[:20]

    def uid_key(self) -> bytes:
        """A key for deterministic DICOM UID replacement in this domain."""
        return bytes.fromhex(self._digest("dicom-uid", b""))

    def date_shift(self, patient_id: str) -> int:
        """The patient's shift in days: fixed per patient, so intervals are kept."""
        low, high = self.date_shift_days
        span = high - low + 1
        return low + int(self._digest("date-shift", patient_id), 16) % span

    def shift(self, value: date | datetime, patient_id: str) -> date | datetime:
        """Shift a date or datetime by the patient's shift."""
        return value + timedelta(days=self.date_shift(patient_id))
