"""What every part of the vault shares: formats, columns, time, the header, passphrase prompts."""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import InvalidInput, NotFound, NoTerminal
from . import _keys

FORMAT_NAME = "workbench-vault"

FORMAT_VERSION = 2

#: shared by every open vault that wrote blob files; see Vault._hold_blob_lock
BLOB_LOCK = ".writers.lock"

#: columns every role may see, in the order ``photos()`` returns them
PHOTO_COLUMNS = [
    "photo_id",
    "patient_ref",
    "body_site",
    "laterality",
    "diagnosis",
    "capture_date",
    "review_state",
    "format",
    "width",
    "height",
    "identifiable_use",
    "ingested",
]

#: extra columns for roles holding the identities key, only when asked for
IDENTIFIER_COLUMNS = [
    "patient_id",
    "patient_name",
    "birth_date",
    "original_name",
    "capture_time",
    "camera_make",
    "camera_model",
    "camera_serial",
]

REVIEW_STATES = ("unreviewed", "in_review", "approved", "rejected")

#: what a person marks in review: the detectors' kinds, and what no detector
#: looks for (a tattoo, a birthmark, a name in marker ink on a drape: "other")
REGION_KINDS = ("face", "text", "barcode", "tattoo", "birthmark", "other")

Clock = Callable[[], datetime]

#: a checkpoint file outside the vault: checked on every open, and refreshed
#: after each consent withdrawal and user removal
CHECKPOINT_ENV = "WORKBENCH_CHECKPOINT"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _as_date(value: date | str | None, what: str) -> date | None:
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, datetime):
        return value.date()
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput(f"{what} must be a date written YYYY-MM-DD") from None


def _read_header(root: Path) -> dict:
    try:
        header = json.loads((root / "VAULT.json").read_text("utf-8"))
        if header.get("format") != FORMAT_NAME:
            raise ValueError
    except (OSError, ValueError, AttributeError):
        raise NotFound(
            "no workbench vault at that path; check --vault / WORKBENCH_VAULT or create "
            "one with `workbench vault init PATH --admin NAME`",
        ) from None
    if header.get("version") != FORMAT_VERSION:
        raise InvalidInput("this vault was made by another version of the workbench")
    return header


def _ask_passphrase(prompt: str) -> str:
    """Ask for a passphrase with a hidden prompt at the terminal.

    Raises
    ------
    NoTerminal
        There is no terminal to ask at (a script, a pipe, a scheduled job):
        getpass would fail with EOFError there, or read stdin in plain view.
    """
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        terminal = True
    except OSError:
        terminal = sys.stdin is not None and sys.stdin.isatty()
    if terminal:
        try:
            return getpass.getpass(prompt)
        except EOFError:
            pass
    raise NoTerminal(
        "a passphrase is needed and there is no terminal to ask for it; run the command in a "
        "terminal, or in a script pipe the passphrase in with --passphrase-stdin (or, for tests "
        "only, set WORKBENCH_PASSPHRASE)"
    )


def _ask_new_passphrase(user: str | None = None) -> str:
    env = os.environ.get("WORKBENCH_NEW_PASSPHRASE") or os.environ.get("WORKBENCH_PASSPHRASE")
    if env:
        return env
    try:
        first = _ask_passphrase("New passphrase: ")
    except NoTerminal:
        raise NoTerminal(
            "a new passphrase is needed and there is no terminal to ask for it; run the command "
            "in a terminal (`vault init` also takes --passphrase-stdin; for tests only, set "
            "WORKBENCH_NEW_PASSPHRASE)"
        ) from None
    # the strength rule before the repeat, so a weak one is not typed twice
    _keys.check_passphrase(first, user=user)
    if first != _ask_passphrase("Repeat passphrase: "):
        raise InvalidInput("the two passphrases differ; try again")
    return first


def _index_identity(root: Path) -> tuple[int, int]:
    """Which file ``index.db`` is: a key rotation replaces it with another."""
    stat = os.stat(root / "index.db")
    return stat.st_dev, stat.st_ino
