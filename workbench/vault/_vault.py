"""The :class:`Vault`: encrypted photos, consent, audit, behind one object."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
import threading
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import _imageio
from .._progress import progress_bar
from ..errors import (
    AccessDenied,
    AlreadyExists,
    ConflictError,
    ConsentError,
    IntegrityError,
    InvalidInput,
    NotFound,
    NoTerminal,
    WorkbenchError,
)
from . import _consent, _crypto, _index, _keys, _log
from ._files import TMP_SUFFIX, atomic_write, exclusive_now, fsync_dir, hold_shared, locked, read_input

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

Clock = Callable[[], datetime]

#: a checkpoint file outside the vault: checked on every open, and refreshed
#: after each consent withdrawal and user removal
CHECKPOINT_ENV = "WORKBENCH_CHECKPOINT"


@dataclass(frozen=True)
class AuditCheck:
    """Outcome of :meth:`Vault.verify_audit`.

    Attributes
    ----------
    ok : bool
        True when every record checks, every table matches the log, and the
        log extends what was verified before (and the checkpoint, if given).
    records : int
        Number of records read.
    first_bad : int or None
        Number of the first bad record, when one is to blame.
    reason : str
        What is wrong, in words, or ``"intact"``.
    signer : str or None
        The user a bad record claims as its author (whose key failed, or who
        was not allowed to write it).
    """

    ok: bool
    records: int
    first_bad: int | None
    reason: str
    signer: str | None = None


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


def _norm_patient(patient: str) -> bytes:
    if not isinstance(patient, str) or not patient.strip():
        raise InvalidInput("a patient id (MRN) must be a non-empty string")
    return patient.strip().upper().encode("utf-8")


@dataclass
class PhotoResult:
    """What happened to one input of :meth:`Vault.add_photo` or an ingest.

    ``status`` is ``"added"``, ``"duplicate"`` (already stored under the same
    patient), ``"error"`` or ``"skipped"`` (an ingest found the file but does
    not read files of its kind); ``error`` holds the ``WorkbenchError`` that
    says why, when it is ``"error"`` or ``"skipped"``. A file already stored
    under another patient is an ``"error"`` (a ``ConflictError``).
    """

    status: str
    photo_id: str | None = None
    error: WorkbenchError | None = None
    source: str | None = None
    source_removed: bool = False


@dataclass(frozen=True)
class _Prepared:
    """A photo whose files are written and verified, waiting for its index commit."""

    photo_id: str
    content_key: str
    info: "_imageio.ImageInfo"
    original_row: tuple
    preview_row: tuple | None
    sealed_identifiers: bytes

    @property
    def rows(self) -> list[tuple]:
        return [self.original_row] + ([self.preview_row] if self.preview_row else [])


@dataclass
class IngestReport:
    """Per-file results of an ingest, in input order."""

    results: list[PhotoResult] = field(default_factory=list)

    @property
    def added(self) -> list[PhotoResult]:
        return [r for r in self.results if r.status == "added"]

    @property
    def duplicates(self) -> list[PhotoResult]:
        return [r for r in self.results if r.status == "duplicate"]

    @property
    def errors(self) -> list[PhotoResult]:
        return [r for r in self.results if r.status == "error"]

    @property
    def skipped(self) -> list[PhotoResult]:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def ok(self) -> bool:
        """True when every file found is in the vault (none failed or was skipped)."""
        return not self.errors and not self.skipped

    def summary(self) -> str:
        """One line of counts, with the kinds of file skipped, e.g. ``1 skipped (not photos: 1 .dcm)``."""
        kinds = Counter(r.error.data.get("extension") or "no extension" for r in self.skipped if r.error)
        why = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        return (
            f"{len(self.added)} added, {len(self.duplicates)} duplicate, "
            f"{len(self.errors)} failed, {len(self.skipped)} skipped"
            + (f" (not photos: {why})" if why else "")
            + f", of {len(self.results)} files"
        )


def init_vault(
    path: str | os.PathLike,
    *,
    admin: str,
    passphrase: str | None = None,
    clock: Clock = _utcnow,
) -> "Vault":
    """Create a new, empty vault and return it opened by its admin.

    Parameters
    ----------
    path : path-like
        A folder that does not exist yet, or is empty.
    admin : str
        User name of the first administrator.
    passphrase : str, optional
        The admin's passphrase; asked for with a hidden prompt when omitted.
    clock : callable, optional
        Returns the current time (tests pass a fixed clock).

    Raises
    ------
    AlreadyExists
        When ``path`` holds anything already.
    """
    root = Path(path)
    admin = _keys.check_user_name(admin)
    if root.exists() and any(root.iterdir()):
        raise AlreadyExists(
            "that folder is not empty; choose a new folder for the vault", path=str(root)
        )
    if passphrase is None:
        passphrase = _ask_new_passphrase(admin)
    _keys.check_passphrase(passphrase, user=admin)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    (root / "blobs").mkdir()
    (root / "users").mkdir()
    vault_id = _crypto.random_id(16)
    keyset = _keys.generate_keyset()
    signing, public = _crypto.generate_signing_key()
    box, box_pub = _crypto.generate_keypair()
    created = _iso(clock())
    db = _index.connect(root / "index.db", keyset.keys["index"], create=True)
    # The genesis record: the first admin registers their own keys. Every
    # slot pins its hash, so a log rewritten from the start is refused.
    user_row = (admin, "admin", public.hex(), box_pub.hex(), "active", created, admin)
    genesis = _log.make_record(
        vault_id=vault_id, seq=1, prev=_log.GENESIS, time=created, user=admin, action="vault_init",
        detail={}, rows={"users": [user_row]}, signing_key=signing,
    )
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO meta VALUES ('vault_id', ?)", (vault_id,))
    db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)", user_row)
    db.execute("INSERT INTO log VALUES (?, ?, ?)", (1, genesis.body, genesis.sig))
    db.execute("COMMIT")
    db.close()
    _keys.write_grant(root, vault_id, admin, box_pub, [(1, keyset)])
    _keys.write_slot(root, vault_id, admin, "admin", signing=signing, box=box, genesis=genesis.hash,
                     passphrase=passphrase, replace=False)
    slot = _keys.Slot(((1, keyset),), signing, box, genesis.hash)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "vault_id": vault_id, "created": created}
    # Written last: a folder without VAULT.json is not a vault, so a crash
    # during init leaves nothing that looks usable.
    atomic_write(root / "VAULT.json", (json.dumps(header, indent=1) + "\n").encode())
    return Vault(root, admin, slot, vault_id, clock=clock)


def open_vault(
    path: str | os.PathLike,
    *,
    user: str,
    passphrase: str | None = None,
    clock: Clock = _utcnow,
) -> "Vault":
    """Open a vault as ``user``.

    Parameters
    ----------
    path : path-like
        The vault folder.
    user : str
        Your user name in this vault.
    passphrase : str, optional
        When omitted, ``WORKBENCH_PASSPHRASE`` is used if set (for scripts and
        tests only), else a hidden prompt asks for it.
    clock : callable, optional
        Returns the current time; consent is evaluated at this time.

    Raises
    ------
    NotFound
        ``path`` is not a vault.
    AccessDenied
        The user name or passphrase is wrong (which one is not said), or
        the account was removed.
    IntegrityError
        The index or the log is damaged, was rewritten, or no longer extends
        what this user verified before or the checkpoint named by
        ``WORKBENCH_CHECKPOINT``.
    """
    root = Path(path)
    header = _read_header(root)
    if passphrase is None:
        passphrase = os.environ.get("WORKBENCH_PASSPHRASE")
    if passphrase is None:
        passphrase = _ask_passphrase(f"Passphrase for {user}: ")
    slot = _keys.unlock_slot(root, header["vault_id"], user, passphrase)
    vault = Vault(root, user, slot, header["vault_id"], clock=clock)
    try:
        vault._record("vault_open", {"role": slot.role})
    except BaseException:
        vault.close()
        raise
    return vault


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


class Vault:
    """An opened vault. Create with :func:`init_vault` or :func:`open_vault`.

    Every method that reads protected data, changes consent or users, or
    queries photos appends a record, signed with the user's own key, to the
    vault's log. What a method can read depends on which tier keys the user's
    role unwrapped (a missing key raises ``AccessDenied``); what it can write
    depends on whether the log accepts the user's signature for it, which
    every reader checks.
    """

    def __init__(self, root: Path, user: str, slot: _keys.Slot, vault_id: str, *, clock: Clock):
        self.root = Path(root)
        self.user = user
        self._signing = slot.signing
        self._box = slot.box
        self._genesis = slot.genesis
        self.vault_id = vault_id
        self._clock = clock
        self._lock_path = self.root / ".lock"
        self._thread_lock = threading.RLock()
        self._lock_held = False
        self._pending: dict[str, list[tuple]] | None = None
        self._verified: set[str] = set()
        self._data_version: int | None = None
        self._blob_lock: int | None = None  # see _hold_blob_lock
        self._keys, self._epoch, self._db = self._connect(slot)
        try:
            stored = self._db.execute("SELECT value FROM meta WHERE key = 'vault_id'").fetchone()
            if stored is None or stored[0] != vault_id:
                raise _index.damaged()
            self._state = self._first_state()
            checkpoint = os.environ.get(CHECKPOINT_ENV)
            if checkpoint and Path(checkpoint).exists():
                self.check_checkpoint(checkpoint)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _exclusive(self):
        """Hold the vault's writer lock (re-entrant within this object)."""
        with self._thread_lock:
            if self._lock_held:
                yield
                return
            with locked(self._lock_path):
                self._lock_held = True
                try:
                    yield
                finally:
                    self._lock_held = False

    def _connect(self, slot: _keys.Slot):
        """The newest key set of the user's grant that opens the index, and the open index.

        A grant holds two key sets only while a key rotation is under way;
        whichever opens the index is the current one.
        """
        for epoch, keyset in slot.keysets:
            try:
                db = _index.connect(self.root / "index.db", keyset.get("index", "open the index"))
            except _index.WrongKey:
                continue
            self._index_id = _index_identity(self.root)
            return keyset, epoch, db
        if max(e for e, _ in slot.keysets) < int(_read_header(self.root).get("epoch", 1)):
            raise AccessDenied(
                "your keys no longer open this vault: your account was removed or its keys were "
                "replaced; ask an admin", user=self.user,
            )
        raise _index.damaged()

    # -- basics -------------------------------------------------------------

    @property
    def role(self) -> str:
        """The role of the user who opened the vault."""
        return self._keys.role

    def __repr__(self) -> str:
        return f"<Vault {self.root.name!r} user={self.user!r} role={self.role!r}>"

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remember the verified log head (this user's witness), checkpoint the index, close it."""
        db, self._db = getattr(self, "_db", None), None
        state = getattr(self, "_state", None)
        if state is not None and db is not None:
            _log.save_witness(self.vault_id, self.user, self._signing, state)
        if db is not None:
            with contextlib.suppress(_index.DatabaseError):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
        fd, self._blob_lock = getattr(self, "_blob_lock", None), None
        if fd is not None:
            os.close(fd)

    def now(self) -> datetime:
        """The vault's notion of the current time (its clock)."""
        return self._clock()

    def _conn(self):
        if self._db is None:
            raise InvalidInput("this vault was closed; open it again with wb.open_vault")
        return self._db

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except _index.DatabaseError as exc:
            raise _index.damaged() from exc

    # -- the signed log -------------------------------------------------------

    def _log_records(self, after: int) -> list[_log.Record]:
        rows = self._query("SELECT seq, body, sig FROM log WHERE seq > ? ORDER BY seq", (after,))
        return [_log.parse(seq, body, sig) for seq, body, sig in rows]

    def _log_hash(self, seq: int) -> str | None:
        rows = self._query("SELECT seq, body, sig FROM log WHERE seq = ?", (seq,))
        return _log.parse(*rows[0]).hash if rows else None

    def _replay(self, state: _log.State) -> _log.State:
        try:
            return _log.replay(self._log_records(state.seq), state, self.vault_id)
        except _log.Broken as exc:
            raise IntegrityError(
                f"the vault's log is broken at record {exc.seq} (signed as {exc.user}): {exc.reason}; "
                "run `workbench audit verify` and restore the vault from a backup",
                record=exc.seq,
            ) from None

    def _first_state(self) -> _log.State:
        """Verify the log (from this user's witness on, if they have one) and check the account."""
        witness = _log.load_witness(self.vault_id, self.user, self._signing)
        if witness is not None and witness.genesis == self._genesis:
            if self._log_hash(witness.seq) != witness.hash:
                raise IntegrityError(
                    f"the vault's log no longer extends what {self.user} verified before "
                    f"({witness.seq} records): it was cut short, rewritten or rolled back to an "
                    "older copy; do not use it, and ask an admin to compare it with a checkpoint",
                    record=witness.seq,
                )
            state = self._replay(witness)
        else:
            state = self._replay(_log.State())
        if state.genesis != self._genesis:
            raise IntegrityError(
                "the vault's log does not start with the genesis record your key slot pins: "
                "the log was replaced; restore the vault from a backup",
            )
        registered = state.registry.get(self.user)
        if (registered is None or registered[2] != "active" or registered[0] != self.role
                or registered[1] != _crypto.signing_public(self._signing).hex()
                or registered[3] != _crypto.public_from_private(self._box).hex()):
            raise AccessDenied(
                "this account was removed from the vault or its key was reset; ask an admin",
                user=self.user,
            )
        self._data_version = self._pragma_data_version()
        _log.save_witness(self.vault_id, self.user, self._signing, state)
        return state

    def _pragma_data_version(self) -> int:
        return int(self._query("PRAGMA data_version")[0][0])

    def _sync(self) -> None:
        """Take in what other connections wrote since we last looked (verified)."""
        if _index_identity(self.root) != self._index_id:
            raise AccessDenied(
                "the vault's keys were replaced since you opened it (a user was removed); "
                "open it again", user=self.user,
            )
        version = self._pragma_data_version()
        if version == self._data_version:
            return
        state = self._state
        if self._log_hash(state.seq) != (state.hash if state.seq else None):
            raise IntegrityError(
                f"the vault's log was cut short or rewritten while it was open (record {state.seq} "
                "changed); close it and run `workbench audit verify`",
                record=state.seq,
            )
        self._state = self._replay(state)
        self._verified.clear()
        self._data_version = version
        if self._state.seq != state.seq:
            _log.save_witness(self.vault_id, self.user, self._signing, self._state)

    def _check_tables(self, *tables: str) -> None:
        """Each table must hold exactly the rows the verified log added, in order."""
        with self._thread_lock:
            self._sync()
            for table in tables:
                if table in self._verified:
                    continue
                columns = ", ".join(_log.TABLES[table])
                rows = self._query(f"SELECT {columns} FROM {table} ORDER BY rowid")
                count, head = self._state.head(table)
                for values in (self._pending or {}).get(table, []):  # added by this write
                    count, head = count + 1, _log.fold(head, _log.row_digest(values))
                if _log.table_head(rows) != (count, head):
                    raise self._tampered(table, rows)
                self._verified.add(table)

    def _tampered(self, table: str, rows: list[tuple]) -> IntegrityError:
        """Name the first row of ``table`` that differs from what the log added."""
        expected = [values for record in self._log_records(0) for values in record.rows(table)]
        position = next(
            (n for n, (a, b) in enumerate(zip(rows, expected)) if tuple(a) != tuple(b)),
            min(len(rows), len(expected)),
        )
        if position < len(rows):
            what = f"its row {position + 1} ({_log.TABLES[table][0]} {rows[position][0]})"
        else:
            what = f"rows from {position + 1} on (deleted)"
        return IntegrityError(
            f"the index's {table} table differs from the signed log at {what}: it was edited "
            "outside the workbench; run `workbench audit verify` and restore index.db from a "
            "backup",
            table=table, row=position + 1,
        )

    def _insert(self, table: str, row: tuple, extra: tuple = ()) -> tuple:
        """Add one row inside the current write; it goes into the write's log record."""
        if self._pending is None:
            raise RuntimeError("rows are added only inside Vault._write")
        row = tuple(int(v) if isinstance(v, bool) else v for v in row)
        marks = ", ".join("?" * (len(row) + len(extra)))
        cur = self._conn().execute(f"INSERT INTO {table} VALUES ({marks})", row + tuple(extra))
        if table == "consent_events" and row[0] is None:
            row = (cur.lastrowid,) + row[1:]
        self._pending.setdefault(table, []).append(row)
        return row

    @contextlib.contextmanager
    def _write(self, action: str, detail: dict | None = None):
        """One transaction that ends with its signed log record.

        The rows added through :meth:`_insert` and the record that lists
        them commit together or not at all. The record is checked against
        the log's rules before commit, so a write the user's role may not
        make fails here, as it would for every later reader.
        """
        detail = {} if detail is None else detail
        with self._exclusive():
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
            except _index.DatabaseError as exc:
                raise _index.damaged() from exc
            self._pending = {}
            try:
                self._sync()
                yield detail
                state = self._state
                record = _log.make_record(
                    vault_id=self.vault_id, seq=state.seq + 1, prev=state.hash,
                    time=_iso(self._clock()), user=self.user, action=action, detail=detail,
                    rows=self._pending, signing_key=self._signing,
                )
                try:
                    new_state = _log.replay([record], state, self.vault_id)
                except _log.Broken as exc:
                    raise AccessDenied(
                        f"the {self.role} role cannot {action.replace('_', ' ')}; ask an admin "
                        "for a role that may", role=self.role,
                    ) from exc
                db.execute("INSERT INTO log VALUES (?, ?, ?)", (record.seq, record.body, record.sig))
                db.execute("COMMIT")
                self._state = new_state
            except BaseException as exc:
                with contextlib.suppress(_index.DatabaseError):
                    db.execute("ROLLBACK")
                if isinstance(exc, _index.DatabaseError):
                    raise _index.damaged() from exc
                raise
            finally:
                self._pending = None

    def _record(self, action: str, detail: dict) -> None:
        with self._write(action, detail):
            pass

    def _denied(self, action: str, tier: str, detail: dict | None = None) -> AccessDenied:
        """Record a refusal in the audit trail and return the error to raise."""
        self._record("denied", {"attempt": action, **(detail or {})})
        return AccessDenied(
            f"the {self.role} role cannot {action}; ask an admin for a role that may",
            role=self.role,
            tier=tier,
        )

    def _need(self, tier: str, action: str, detail: dict | None = None) -> bytes:
        if not self._keys.has(tier):
            raise self._denied(action, tier, detail)
        return self._keys.keys[tier]

    # -- users --------------------------------------------------------------

    def users(self) -> pd.DataFrame:
        """Active user names and roles, from the admin-signed registry."""
        self._check_tables("users")
        rows = self._query("SELECT user, role, status, changed FROM users ORDER BY rowid")
        latest = {user: (role, status, changed) for user, role, status, changed in rows}
        active = sorted((u, r, c) for u, (r, st, c) in latest.items() if st == "active")
        return pd.DataFrame(active, columns=["user", "role", "created"])

    def _registered(self, name: str) -> tuple[str, str] | None:
        """``(role, public key hex)`` of an active user, from the verified registry."""
        self._sync()
        entry = self._state.registry.get(name)
        return (entry[0], entry[1]) if entry and entry[2] == "active" else None

    def add_user(self, name: str, role: str, passphrase: str | None = None) -> None:
        """Create a user with ``role`` (admins only).

        The new slot wraps only the tier keys the role grants, and a new
        signing key whose public half the admin's record registers.
        """
        name = _keys.check_user_name(name)
        role = _keys.check_role(role)
        if self.role != "admin":
            raise self._denied("manage users", "admin")
        if self._registered(name) is not None or _keys.slot_path(self.root, name).exists():
            raise AlreadyExists("a user with this name already exists", user=name)
        if passphrase is None:
            passphrase = _ask_new_passphrase(name)
        _keys.check_passphrase(passphrase, user=name)
        with self._write("user_add", {"target": name, "role": role}):
            self._new_keys_for(name, role, passphrase, replace=False)

    def _new_keys_for(self, name: str, role: str, passphrase: str, *, replace: bool) -> None:
        """Inside a write: new own keys for ``name``, registered, slotted and granted the role's tiers."""
        signing, public = _crypto.generate_signing_key()
        box, box_pub = _crypto.generate_keypair()
        self._insert("users", (name, role, public.hex(), box_pub.hex(), "active", _iso(self._clock()),
                               self.user))
        _keys.write_grant(self.root, self.vault_id, name, box_pub,
                          [(self._epoch, self._keys.restricted_to(role))])
        _keys.write_slot(self.root, self.vault_id, name, role, signing=signing, box=box,
                         genesis=self._genesis, passphrase=passphrase, replace=replace)

    def set_passphrase(self, name: str, passphrase: str | None = None) -> None:
        """Change a user's passphrase: your own, or anyone's if you are an admin.

        An admin resetting someone else's passphrase gives them a new signing
        key too (the admin cannot know the old one); the registry records it.
        """
        name = _keys.check_user_name(name)
        entry = self._registered(name)
        if entry is None:
            raise NotFound("no such user in this vault", user=name)
        role = entry[0]
        if name != self.user and self.role != "admin":
            raise self._denied("change another user's passphrase", "admin")
        if passphrase is None:
            passphrase = _ask_new_passphrase(name)
        _keys.check_passphrase(passphrase, user=name)
        if name == self.user:
            with self._write("user_passwd", {"target": name}):
                _keys.write_slot(self.root, self.vault_id, name, role, signing=self._signing, box=self._box,
                                 genesis=self._genesis, passphrase=passphrase, replace=True)
            return
        with self._write("user_reset", {"target": name}):
            self._new_keys_for(name, role, passphrase, replace=True)

    def remove_user(self, name: str) -> None:
        """Remove a user and replace every key they could unwrap (admins only).

        The registry ends their signing key; every encryption tier is given a
        new key (originals, identities, derivatives and the index itself);
        every blob's wrapped key and every sealed identity record is re-done
        under the new keys in a re-keyed copy of the index, which then
        replaces the old one; each remaining user's grant is re-sealed to
        their box key. The removed user's slot and grant are deleted, and one
        put back opens nothing: their tier keys no longer open the index.
        Records they signed before stay valid. The pseudonym and lookup keys
        are kept (new ones would unlink every cohort and every patient
        lookup). Other sessions that have the vault open must open it again.
        The last admin cannot be removed.
        """
        name = _keys.check_user_name(name)
        if self.role != "admin":
            raise self._denied("manage users", "admin")
        entry = self._registered(name)
        if entry is None:
            raise NotFound("no such user in this vault", user=name)
        admins = sum(1 for e in self._state.registry.values() if e[0] == "admin" and e[2] == "active")
        if entry[0] == "admin" and admins <= 1:
            raise InvalidInput("refusing to remove the last admin; add another admin first")
        with self._exclusive():
            self._rotate_keys(name)
        self._auto_checkpoint()

    def _rotate_keys(self, removed: str) -> None:
        old, new = self._keys, _keys.rotated(self._keys)
        epoch = self._epoch + 1
        self._sync()
        registry = {u: e for u, e in self._state.registry.items() if e[2] == "active" and u != removed}
        # 1. every remaining user can open the new index before it exists
        for user, (role, _, _, box_pub) in registry.items():
            _keys.write_grant(self.root, self.vault_id, user, bytes.fromhex(box_pub),
                              [(epoch, new.restricted_to(role)), (self._epoch, old.restricted_to(role))])
        # 2. a re-keyed copy of the index with every wrapped key and sealed record re-done
        index, rotating = self.root / "index.db", self.root / "index.db.rotating"
        for path in (rotating, Path(f"{rotating}-wal"), Path(f"{rotating}-shm")):
            path.unlink(missing_ok=True)
        db = self._conn()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute(f"ATTACH DATABASE ? AS rotated KEY \"{_crypto.index_key_pragma(new.keys['index'])}\"",
                   (str(rotating),))
        db.execute("SELECT sqlcipher_export('rotated')")
        db.execute("DETACH DATABASE rotated")
        fresh = _index.connect(rotating, new.keys["index"])
        try:
            heads = _rekey_rows(fresh, old, new)
            self._db, self._keys = fresh, new
            self._data_version = self._pragma_data_version()
            entry = self._state.registry[removed]
            with self._write("user_remove", {"target": removed}):
                self._insert("users", (removed, entry[0], entry[1], entry[3], "removed",
                                       _iso(self._clock()), self.user))
            with self._write("key_rotation", {"epoch": epoch, "heads": heads}):
                pass
            fresh.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except BaseException:
            fresh.close()
            self._db, self._keys = db, old
            raise
        # 3. the new index replaces the old one (its WAL must not outlive it)
        db.close()
        fresh.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{index}{suffix}").unlink(missing_ok=True)
        os.replace(rotating, index)
        header = _read_header(self.root)
        header["epoch"] = epoch  # says which keys are current, for a clear error to old ones
        atomic_write(self.root / "VAULT.json", (json.dumps(header, indent=1) + "\n").encode(),
                     overwrite=True, sync_dir=False)
        fsync_dir(self.root)
        for suffix in ("-wal", "-shm"):
            Path(f"{rotating}{suffix}").unlink(missing_ok=True)
        self._db = _index.connect(index, new.keys["index"])
        self._index_id = _index_identity(self.root)
        self._data_version = self._pragma_data_version()
        self._epoch = epoch
        self._verified.clear()
        # 4. the old keys go; so do the removed user's slot and grant
        for user, (role, _, _, box_pub) in registry.items():
            _keys.write_grant(self.root, self.vault_id, user, bytes.fromhex(box_pub),
                              [(epoch, new.restricted_to(role))])
        with contextlib.suppress(NotFound):
            _keys.remove_slot(self.root, removed)

    # -- blobs --------------------------------------------------------------

    def _blob_path(self, blob_id: str) -> Path:
        return self.root / "blobs" / blob_id[:2] / blob_id

    def _store_blob(self, kind: str, tier: str, plaintext: bytes, photo_id: str | None) -> tuple:
        """Encrypt, write atomically, read back and check. Returns the index row.

        The row is inserted by the caller inside its transaction, so a blob
        whose row never committed is an unreachable orphan, never a visible
        half-written photo.
        """
        self._hold_blob_lock()
        blob_id = _crypto.random_id()
        data_key, file_bytes = _crypto.encrypt_blob(blob_id, kind, plaintext)
        aad = _crypto.blob_aad(blob_id, kind)
        if tier in ("originals", "identities"):
            wrapped = _crypto.seal_to_public(
                self._keys.get(tier + "_pub", f"add {kind} files"), data_key, aad
            )
        else:
            wrapped = _crypto.seal_symmetric(self._keys.get(tier, f"add {kind} files"), data_key, aad)
        path = self._blob_path(blob_id)
        atomic_write(path, file_bytes, sync_dir=False)
        # Count the write only once it decrypts back to the same bytes.
        stored = path.read_bytes()
        try:
            back = _crypto.decrypt_blob(data_key, blob_id, kind, stored)
        except _crypto.CryptoFailure:
            back = b""
        if back != plaintext:
            os.unlink(path)
            raise IntegrityError(
                "a file written to the vault did not read back intact; check the disk "
                "and run the ingest again"
            )
        return (blob_id, photo_id, kind, tier, len(plaintext), _crypto.sha256_hex(stored), wrapped)

    def _hold_blob_lock(self) -> None:
        """From this vault's first blob write until it closes, hold the writers' lock (shared).

        A blob file is written before the index row that refers to it, so
        :meth:`stale_files` cannot tell an uncommitted blob of a running
        ingest from one a killed ingest left; it looks only when no other open
        vault holds this lock (a killed process holds none).
        """
        if self._blob_lock is None:
            with self._thread_lock:
                if self._blob_lock is None:
                    self._blob_lock = hold_shared(self.root / BLOB_LOCK)

    def _insert_blob(self, row: tuple) -> None:
        """``row`` as :meth:`_store_blob` returns it; the wrapped key is not signed content."""
        self._insert("blobs", row[:6], (row[6],))

    def _open_blob(self, blob_id: str, action: str, detail: dict) -> bytes:
        self._check_tables("blobs")
        rows = self._query("SELECT kind, tier, wrapped_key, file_sha256 FROM blobs WHERE blob_id = ?", (blob_id,))
        if not rows or rows[0][2] is None:
            raise NotFound("that file is not in the vault (it may have been shredded)", blob_id=blob_id)
        kind, tier, wrapped, digest = rows[0]
        key = self._need(tier, action, detail)
        aad = _crypto.blob_aad(blob_id, kind)
        try:
            stored = self._blob_path(blob_id).read_bytes()
            # the signed digest: a file re-encrypted under another data key
            # by someone holding the tier key is not the file that was added
            if not _crypto.constant_time_equal(_crypto.sha256_hex(stored), digest):
                raise _crypto.CryptoFailure()
            if tier in ("originals", "identities"):
                data_key = _crypto.open_sealed(key, wrapped, aad)
            else:
                data_key = _crypto.open_symmetric(key, wrapped, aad)
            return _crypto.decrypt_blob(data_key, blob_id, kind, stored)
        except (_crypto.CryptoFailure, OSError):
            raise IntegrityError(
                "a vault file failed its integrity check (damaged, replaced or missing); "
                "restore the vault's blobs/ folder from a backup",
                blob_id=blob_id,
            ) from None

    def _seal_record(self, tier: str, payload: dict, label: str) -> bytes:
        pub = self._keys.get(tier + "_pub", "record identifiers")
        return _crypto.seal_to_public(pub, json.dumps(payload, default=str).encode(), label.encode())

    def _open_record(self, tier: str, sealed: bytes, label: str) -> dict:
        key = self._keys.get(tier, "read identifiers")
        try:
            return json.loads(_crypto.open_sealed(key, sealed, label.encode()))
        except (_crypto.CryptoFailure, ValueError):
            raise IntegrityError(
                "an identity record in the index failed its integrity check; restore "
                "index.db from a backup"
            ) from None

    # -- patients and consent -------------------------------------------------

    def _patient_lookup(self, patient: str) -> str:
        key = self._keys.get("lookup", "look patients up by id")
        return _crypto.keyed_digest(key, "patient", _norm_patient(patient))

    def _find_patient(self, patient: str) -> str | None:
        self._check_tables("patients")
        rows = self._query("SELECT patient_ref FROM patients WHERE lookup = ?", (self._patient_lookup(patient),))
        return rows[0][0] if rows else None

    def _create_patient(self, patient: str, name: str | None, birth_date: date | None) -> str:
        ref = "P" + _crypto.random_id(8)
        identity = {"patient_id": patient.strip(), "name": name, "birth_date": birth_date}
        self._insert("patients", (ref, self._patient_lookup(patient),
                                  self._seal_record("identities", identity, "patient:" + ref),
                                  _iso(self._clock())))
        return ref

    def patient_ref(self, patient: str) -> str:
        """The random reference used for a patient inside the vault.

        Raises ``NotFound`` for a patient the vault does not know.
        """
        ref = self._find_patient(patient)
        if ref is None:
            raise NotFound(
                "this patient has no record in the vault; record consent first with "
                "`workbench consent add --patient ID --scopes ...`"
            )
        return ref

    def patient_identity(self, patient_ref: str) -> dict:
        """The identifiable record (patient id, name, birth date) of a patient.

        Only roles holding the identities key (admin, clinician) may call this;
        each call is audited.
        """
        self._need("identities", "see patient identities", {"patient_ref": patient_ref})
        self._check_tables("patients")
        rows = self._query("SELECT identity FROM patients WHERE patient_ref = ?", (patient_ref,))
        if not rows:
            raise NotFound("no patient with that reference", patient_ref=patient_ref)
        self._record("identity_read", {"patient_ref": patient_ref})
        return self._open_record("identities", rows[0][0], "patient:" + patient_ref)

    def add_consent(
        self,
        patient: str,
        scopes: str | Iterable[str],
        *,
        expires: date | str | None = None,
        identifiable: bool = False,
        form: bytes | str | os.PathLike | None = None,
        effective: datetime | None = None,
        name: str | None = None,
        birth_date: date | str | None = None,
    ) -> int:
        """Record a consent grant for ``patient`` (created if new).

        Parameters
        ----------
        patient : str
            The patient's id (MRN). Stored only sealed and as a keyed lookup.
        scopes : str or iterable of str
            Any of ``care``, ``research``, ``education``, ``publication``.
        expires : date or 'YYYY-MM-DD', optional
            Last day on which the grant is valid.
        identifiable : bool
            Whether identifiable use (e.g. a visible face in teaching) was allowed.
        form : bytes or path, optional
            The scanned consent form; stored encrypted with the identities tier.
        effective : datetime, optional
            When the grant takes effect; defaults to now.
        name, birth_date : optional
            Identity details kept in the sealed identity record of a new patient.

        Returns
        -------
        int
            The consent record's sequence number.
        """
        scopes = _consent.parse_scopes(scopes)
        expires = _as_date(expires, "the expiry")
        birth_date = _as_date(birth_date, "the birth date")
        form_bytes = None
        if form is not None:
            form_bytes = form if isinstance(form, bytes) else read_input(form)
        return self._consent_event("grant", patient, scopes, expires, identifiable, form_bytes, effective, name, birth_date)

    def withdraw_consent(
        self,
        patient: str,
        scopes: str | Iterable[str] | None = None,
        *,
        effective: datetime | None = None,
        shred_derivatives: bool = False,
    ) -> int:
        """Record a withdrawal (all scopes when ``scopes`` is None); never deletes.

        With ``shred_derivatives`` the wrapped keys of the patient's
        de-identified derivatives are destroyed, which makes every copy of
        those files, backups included, unreadable.
        """
        scopes = _consent.parse_scopes(scopes)
        if self._find_patient(patient) is None:
            raise NotFound("this patient has no consent on record; nothing to withdraw")
        seq = self._consent_event("withdraw", patient, scopes, None, False, None, effective, None, None)
        if shred_derivatives:
            self.shred_derivatives(self.patient_ref(patient))
        self._auto_checkpoint()
        return seq

    def _consent_event(self, action, patient, scopes, expires, identifiable, form_bytes, effective, name, birth_date) -> int:
        self._keys.get("identities_pub", "record consent")
        self._keys.get("lookup", "record consent")
        effective = effective or self._clock()
        with self._write("consent_" + action) as detail:
            ref = self._find_patient(patient)
            if ref is None:
                ref = self._create_patient(patient, name, birth_date)
            form_blob = None
            if form_bytes is not None:
                row = self._store_blob("consent_form", "identities", form_bytes, None)
                self._insert_blob(row)
                form_blob = row[0]
            row = self._insert("consent_events", (
                None, ref, action, ",".join(sorted(scopes)), _iso(effective),
                expires.isoformat() if expires else None, int(bool(identifiable)),
                form_blob, self.user, _iso(self._clock())))
            detail.update(patient_ref=ref, scopes=sorted(scopes), consent_seq=row[0])
        return row[0]

    def _consent_events(self) -> dict[str, list[_consent.ConsentEvent]]:
        self._check_tables("consent_events")
        events: dict[str, list[_consent.ConsentEvent]] = {}
        for seq, ref, action, scopes, effective, expires, identifiable in self._query(
            "SELECT seq, patient_ref, action, scopes, effective, expires, identifiable FROM consent_events"
        ):
            events.setdefault(ref, []).append(
                _consent.ConsentEvent(
                    seq=seq, patient_ref=ref, action=action, scopes=frozenset(scopes.split(",")),
                    effective=_parse_time(effective),
                    expires=date.fromisoformat(expires) if expires else None,
                    identifiable=bool(identifiable),
                )
            )
        return events

    def consent_history(self, patient_ref: str | None = None) -> pd.DataFrame:
        """Every consent record (or one patient's), oldest first. Never identifying."""
        self._check_tables("consent_events")
        sql = ("SELECT seq, patient_ref, action, scopes, effective, expires, identifiable, "
               "form_blob IS NOT NULL, recorded_by, recorded FROM consent_events")
        args: tuple = ()
        if patient_ref is not None:
            sql += " WHERE patient_ref = ?"
            args = (patient_ref,)
        rows = self._query(sql + " ORDER BY seq", args)
        return pd.DataFrame(rows, columns=["seq", "patient_ref", "action", "scopes", "effective",
                                           "expires", "identifiable", "has_form", "recorded_by", "recorded"])

    def consent_status(self, patient_ref: str, purpose: str, at: datetime | None = None) -> bool:
        """Whether ``patient_ref`` is consented for ``purpose`` at ``at`` (default now)."""
        _consent.check_purpose(purpose)
        events = self._consent_events().get(patient_ref, [])
        return purpose in _consent.active_grants(events, at or self._clock())

    # -- photos -------------------------------------------------------------

    def add_photo(
        self,
        data: bytes,
        *,
        patient: str,
        body_site: str,
        laterality: str | None = None,
        diagnosis: str | None = None,
        original_name: str | None = None,
        allow_no_consent: bool = False,
    ) -> PhotoResult:
        """Encrypt one photo (file bytes, in memory) into the vault.

        The original is sealed to the originals tier. The photo counts as
        added only after its file was read back and decrypted to the same
        digest, and the index committed. A JPEG or PNG is validated from its
        structure (end-of-image marker, chunk checksums, header) and its
        preview is rendered later, by the first reader who may see it (see
        :meth:`render_previews`); other formats are decoded now, and their
        preview stored at once.

        Returns
        -------
        PhotoResult
            ``status`` ``"added"``, ``"duplicate"`` (the same file is already here,
            under this patient) or ``"error"`` (its ``error`` says why; a
            ``ConflictError`` when the file is stored under another patient).

        Raises
        ------
        ConsentError
            Unknown patient or none consent on record, unless ``allow_no_consent``.
        InvalidInput
            Corrupt, truncated or unsupported image, or a decompression bomb.
        """
        return next(iter(self.add_photos(
            [(data, original_name)], patient=patient, body_site=body_site, laterality=laterality,
            diagnosis=diagnosis, allow_no_consent=allow_no_consent, workers=0,
        )))

    def add_photos(
        self,
        items: Iterable[tuple[bytes | Callable[[], bytes], str | None]],
        *,
        patient: str,
        body_site: str,
        laterality: str | None = None,
        diagnosis: str | None = None,
        allow_no_consent: bool = False,
        workers: int = 2,
    ) -> Iterable[PhotoResult]:
        """Add many photos of one patient, overlapping decoding, encryption and I/O.

        ``items`` yields ``(data, original_name)``, where ``data`` is the file's
        bytes or a callable returning them. Results come back in input order,
        one per item; an error in one item is its result (``status="error"``),
        never the end of the batch. The same checks as :meth:`add_photo` apply.
        Validation, previews and sealing run on ``workers`` threads (the image
        decoder and the hashes release the GIL); the index and audit trail are
        written by the calling thread, one committed transaction per photo.
        """
        ref = self._require_patient(patient, allow_no_consent)
        fields = (
            _clean_field(body_site, "body site", required=True),
            _clean_field(laterality, "laterality"),
            _clean_field(diagnosis, "diagnosis"),
        )
        lookup_key = self._keys.get("lookup", "add photos")
        self._keys.get("originals_pub", "add photos")
        pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
        pending: deque = deque()

        def submit(data, name):
            if callable(data):
                data = data()
            content_key = _crypto.keyed_digest(lookup_key, "content", data)
            self._check_tables("photos")
            dup = self._query("SELECT photo_id, patient_ref FROM photos WHERE content_key = ?", (content_key,))
            if dup:
                return _duplicate(dup[0], ref)
            if pool is None:
                return self._prepare_photo(data, name, content_key)
            return pool.submit(self._prepare_photo, data, name, content_key)

        def finish(entry):
            nonlocal ref
            try:
                prepared = entry.result() if isinstance(entry, Future) else entry
                if isinstance(prepared, PhotoResult):
                    return prepared
                result, ref = self._commit_photo(prepared, patient, ref, fields)
                return result
            except WorkbenchError as exc:
                return PhotoResult("error", error=exc)

        try:
            for data, name in items:
                try:
                    pending.append(submit(data, name))
                except WorkbenchError as exc:
                    pending.append(PhotoResult("error", error=exc))
                # a short window keeps memory bounded (a 20 MP file is ~5 MB)
                while len(pending) > max(1, 2 * workers):
                    yield finish(pending.popleft())
            while pending:
                yield finish(pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _prepare_photo(self, data: bytes, original_name: str | None, content_key: str) -> "_Prepared":
        """Validate, seal and write the original (and a preview when one was made); no index access.

        Decoding a JPEG's Huffman data costs three times as much as storing
        the file, so JPEG and PNG files are validated from their structure
        and their previews are made later (:meth:`render_previews`); the
        photographer's role could not look at them anyway.
        """
        if _imageio.sniff_format(data) in _imageio.STRUCTURE_CHECKED:
            preview, info = None, _imageio.check(data)
        else:
            preview, info = _imageio.render_preview(data)
        photo_id = _crypto.random_id()
        original_row = self._store_blob("original", "originals", data, photo_id)
        preview_row = None
        if preview is not None:
            try:
                preview_row = self._store_blob("preview", "originals", preview, photo_id)
            except BaseException:
                os.unlink(self._blob_path(original_row[0]))
                raise
        identifiers = {
            "original_name": original_name,
            "capture_time": info.capture_time.isoformat() if info.capture_time else None,
            "camera_make": info.camera_make,
            "camera_model": info.camera_model,
            "camera_serial": info.camera_serial,
        }
        sealed = self._seal_record("identities", identifiers, "photo:" + photo_id)
        return _Prepared(photo_id, content_key, info, original_row, preview_row, sealed)

    def _commit_photo(self, p: "_Prepared", patient: str, ref: str | None, fields: tuple) -> tuple[PhotoResult, str]:
        body_site, laterality, diagnosis = fields
        dup = self._query("SELECT photo_id, patient_ref FROM photos WHERE content_key = ?", (p.content_key,))
        if dup:  # the same file twice in one batch, or stored meanwhile by another session
            for row in p.rows:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._blob_path(row[0]))
            return _duplicate(dup[0], ref), ref
        # the blob files are fsynced; make their directory entries durable
        # before the index refers to them
        for row in p.rows:
            fsync_dir(self._blob_path(row[0]).parent)
        capture_date = p.info.capture_time.date().isoformat() if p.info.capture_time else None
        with self._write("ingest", {"photo_id": p.photo_id, "format": p.info.format}) as detail:
            if ref is None:
                ref = self._create_patient(patient, None, None)
            detail["patient_ref"] = ref
            for row in p.rows:
                self._insert_blob(row)
            self._insert("photos", (
                p.photo_id, ref, p.content_key, p.info.format, p.info.width, p.info.height, body_site,
                laterality, diagnosis, capture_date, _iso(self._clock()), self.user,
                p.original_row[0], p.sealed_identifiers))
        return PhotoResult("added", photo_id=p.photo_id), ref

    def _require_patient(self, patient: str, allow_no_consent: bool) -> str | None:
        ref = self._find_patient(patient)
        if allow_no_consent:
            return ref
        self._check_tables("consent_events")
        if ref is None or not self._query("SELECT 1 FROM consent_events WHERE patient_ref = ? LIMIT 1", (ref,)):
            raise ConsentError(
                "this patient is unknown or has no consent on record; record consent first "
                "(`workbench consent add --patient ID --scopes ...`) or pass "
                "--allow-no-consent to store the photos for care only"
            )
        return ref

    def photos(self, purpose: str, *, include_identifiers: bool = False, **filters) -> pd.DataFrame:
        """Photos consented for ``purpose`` now, as a DataFrame.

        Parameters
        ----------
        purpose : str
            ``care``, ``research``, ``education`` or ``publication``. Only photos
            whose patient's consent for this purpose is active at the vault's
            current time are returned. For ``care``, photos of patients with no
            consent on record at all (ingested with ``allow_no_consent``) are
            included too.
        include_identifiers : bool
            Add identifying columns (patient id, name, birth date, original file
            name, capture time, camera). Needs the identities key.
        **filters
            Equality on any column (``body_site="forearm"``); a list or set means
            "any of"; a ``(low, high)`` tuple means an inclusive range
            (``capture_date=("2024-01-01", "2024-06-30")``).

        Raises
        ------
        ConsentError
            ``purpose`` is not a consent scope.
        AccessDenied
            ``include_identifiers`` for a role without the identities key.
        """
        purpose = _consent.check_purpose(purpose)
        _check_filters(filters)
        if include_identifiers:
            self._need("identities", "see identifiers", {"purpose": purpose})
        now = self._clock()
        events = self._consent_events()
        reviews = self._review_states()
        rows = self._query(
            "SELECT photo_id, patient_ref, body_site, laterality, diagnosis, capture_date, "
            "format, width, height, ingested, identifiers FROM photos ORDER BY ingested, photo_id"
        )
        records = []
        for (photo_id, ref, site, lat, dx, cdate, fmt, w, h, ingested, sealed) in rows:
            review = reviews.get(photo_id, "unreviewed")
            patient_events = events.get(ref, [])
            grants = _consent.active_grants(patient_events, now)
            if purpose in grants:
                identifiable = grants[purpose].identifiable
            elif purpose == "care" and not patient_events:
                identifiable = True
            else:
                continue
            rec = dict(photo_id=photo_id, patient_ref=ref, body_site=site, laterality=lat,
                       diagnosis=dx, capture_date=cdate, review_state=review, format=fmt,
                       width=w, height=h, identifiable_use=identifiable, ingested=ingested)
            if include_identifiers:
                rec["_sealed"] = sealed
            records.append(rec)
        frame = pd.DataFrame.from_records(records, columns=PHOTO_COLUMNS + (["_sealed"] if include_identifiers else []))
        frame = _apply_filters(frame, filters)
        frame = frame.reset_index(drop=True)
        if include_identifiers:
            frame = self._add_identifiers(frame)
        self._record("query", {"purpose": purpose, "rows": int(len(frame)),
                               "identifiers": bool(include_identifiers),
                               "filters": sorted(filters)})
        return frame

    def exclusions(self, purpose: str, **filters) -> pd.DataFrame:
        """Photos a query for ``purpose`` leaves out now, each with its reason.

        Reasons: ``no consent``, ``withdrawn``, ``expired``. ``filters`` as in
        :meth:`photos` (only photos matching them are considered). Columns:
        photo_id, patient_ref, reason. The call is audited like a query.
        """
        purpose = _consent.check_purpose(purpose)
        _check_filters(filters)
        now = self._clock()
        events = self._consent_events()
        reviews = self._review_states()
        out = []
        for (photo_id, ref, site, lat, dx, cdate, fmt, w, h, ingested) in self._query(
            "SELECT photo_id, patient_ref, body_site, laterality, diagnosis, capture_date, "
            "format, width, height, ingested FROM photos ORDER BY ingested, photo_id"
        ):
            review = reviews.get(photo_id, "unreviewed")
            patient_events = events.get(ref, [])
            if purpose == "care" and not patient_events:
                continue
            reason = _consent.explain(patient_events, purpose, now)
            if reason != "active":
                out.append(dict(photo_id=photo_id, patient_ref=ref, body_site=site, laterality=lat,
                                diagnosis=dx, capture_date=cdate, review_state=review, format=fmt,
                                width=w, height=h, identifiable_use=False, ingested=ingested,
                                reason=reason))
        frame = _apply_filters(pd.DataFrame.from_records(out, columns=PHOTO_COLUMNS + ["reason"]), filters)
        self._record("query_exclusions", {"purpose": purpose, "rows": int(len(frame)),
                                          "filters": sorted(filters)})
        return frame[["photo_id", "patient_ref", "reason"]].reset_index(drop=True)

    def consent_digest(self) -> str:
        """SHA-256 over every consent record: names the consent state a build used."""
        self._check_tables("consent_events")
        rows = self._query("SELECT seq, patient_ref, action, scopes, effective, expires, identifiable "
                           "FROM consent_events ORDER BY seq")
        return _crypto.sha256_hex(json.dumps(rows).encode())

    def photo_count(self) -> int:
        """How many photos the vault holds, whatever their consent."""
        self._check_tables("photos")
        return int(self._query("SELECT COUNT(*) FROM photos")[0][0])

    def _add_identifiers(self, frame: pd.DataFrame) -> pd.DataFrame:
        self._check_tables("patients")
        identity_cache: dict[str, dict] = {}
        extra = []
        for photo_id, ref, sealed in zip(frame["photo_id"], frame["patient_ref"], frame["_sealed"]):
            if ref not in identity_cache:
                row = self._query("SELECT identity FROM patients WHERE patient_ref = ?", (ref,))
                identity_cache[ref] = self._open_record("identities", row[0][0], "patient:" + ref)
            person = identity_cache[ref]
            ids = self._open_record("identities", sealed, "photo:" + photo_id)
            extra.append({
                "patient_id": person.get("patient_id"), "patient_name": person.get("name"),
                "birth_date": person.get("birth_date"), **ids,
            })
        ident = pd.DataFrame.from_records(extra, columns=IDENTIFIER_COLUMNS)
        return pd.concat([frame.drop(columns="_sealed"), ident], axis=1)

    def _photo_row(self, photo_id: str) -> tuple:
        """``(original blob, preview blob or None, patient_ref)`` of a photo (verified rows)."""
        self._check_tables("photos", "blobs")
        rows = self._query(
            "SELECT original_blob, (SELECT blob_id FROM blobs b WHERE b.photo_id = p.photo_id AND "
            "b.kind = 'preview' ORDER BY b.rowid DESC LIMIT 1), patient_ref FROM photos p "
            "WHERE photo_id = ?", (photo_id,))
        if not rows:
            raise NotFound("no photo with that id in this vault", photo_id=photo_id)
        return rows[0]

    def _review_states(self) -> dict[str, str]:
        """photo_id -> its latest review decision (photos never reviewed are absent)."""
        self._check_tables("reviews")
        return {photo_id: state for photo_id, state in
                self._query("SELECT photo_id, state FROM reviews ORDER BY rowid")}

    def read_original_file(self, photo_id: str) -> bytes:
        """The identifiable original file's bytes, metadata and all, decrypted in memory (audited).

        The file holds identifiers in its metadata (camera serial, owner,
        capture time, sometimes a name), so only roles that may see
        identities (admin, clinician) may have it; others see pixels through
        :meth:`load_original`.
        """
        original_blob, _, ref = self._photo_row(photo_id)
        detail = {"photo_id": photo_id, "patient_ref": ref}
        self._need("identities", "read original files with their metadata", detail)
        return self._read_original(photo_id, "read original photos")

    def _read_original(self, photo_id: str, action: str) -> bytes:
        original_blob, _, ref = self._photo_row(photo_id)
        detail = {"photo_id": photo_id, "patient_ref": ref}
        self._need("originals", action, detail)
        data = self._open_blob(original_blob, action, detail)
        self._record("decrypt_original", detail)
        return data

    def load_original(self, photo_id: str) -> np.ndarray:
        """Decrypted, identifiable RGB pixels of an original (EXIF orientation applied).

        Never written to disk. Raises ``AccessDenied`` for roles without the
        originals key (photographer, researcher, educator).
        """
        return _imageio.decode(self._read_original(photo_id, "read original photos"))

    def load_previews(self, photo_ids: Iterable[str]) -> dict[str, bytes]:
        """Small JPEG previews of originals (identifiable), decrypted in memory.

        One audit record covers the whole batch, so a gallery page costs one
        append, not one per thumbnail. A preview not rendered yet is rendered
        now from its original and stored (see :meth:`render_previews`).

        Raises
        ------
        AccessDenied
            The role has no originals key.
        NotFound
            An unknown photo id.
        InvalidInput
            An original whose pixel data cannot be decoded (it stays in the
            vault byte for byte as it was imported).
        """
        photo_ids = list(photo_ids)
        self._need("originals", "view previews of originals", {"photos": len(photo_ids)})
        rows = {photo_id: self._photo_row(photo_id) for photo_id in photo_ids}
        blobs = {photo_id: row[1] for photo_id, row in rows.items()}
        blobs.update(self._render_previews({p: row for p, row in rows.items() if row[1] is None}))
        out = {
            photo_id: self._open_blob(blobs[photo_id], "view previews", {"photo_id": photo_id})
            for photo_id in photo_ids
        }
        self._record("decrypt_previews", {"photo_ids": photo_ids})
        return out

    def render_previews(self, photo_ids: Iterable[str] | None = None, *, workers: int = 2) -> int:
        """Render and store the previews that ingest left for later.

        Ingest validates JPEG and PNG files from their structure and does not
        decode them (that would halve its speed); the first reader who holds
        the originals key renders the missing previews, either on first view
        (:meth:`load_previews`) or all at once here, e.g. after a card import.

        Parameters
        ----------
        photo_ids : iterable of str, optional
            Only these photos; by default every photo without a preview.
        workers : int, default 2
            Decoding threads (the decoder releases the GIL).

        Returns
        -------
        int
            How many previews were rendered.

        Raises
        ------
        AccessDenied
            The role has no originals key.
        InvalidInput
            An original whose pixel data cannot be decoded; previews rendered
            before it are kept.
        """
        if photo_ids is None:
            self._check_tables("photos", "blobs")
            todo = {r[0]: (r[1], None, r[2]) for r in self._query(
                "SELECT photo_id, original_blob, patient_ref FROM photos p WHERE NOT EXISTS (SELECT 1 "
                "FROM blobs b WHERE b.photo_id = p.photo_id AND b.kind = 'preview') ORDER BY photo_id")}
        else:
            rows = {p: self._photo_row(p) for p in dict.fromkeys(photo_ids)}
            todo = {p: row for p, row in rows.items() if row[1] is None}
        self._need("originals", "render previews of originals", {"photos": len(todo)})
        return len(self._render_previews(todo, workers=workers))

    def _render_previews(self, rows: dict[str, tuple], *, workers: int = 2) -> dict[str, str]:
        """Render previews for ``rows`` (photo id: its ``_photo_row``); return photo id: preview blob id."""
        if not rows:
            return {}

        def render(photo_id: str) -> tuple:
            original_blob, _, ref = rows[photo_id]
            detail = {"photo_id": photo_id, "patient_ref": ref}
            data = self._open_blob(original_blob, "render previews", detail)
            try:
                preview, _ = _imageio.render_preview(data)
            except InvalidInput as exc:
                raise type(exc)(
                    f"photo {photo_id} was stored as imported but its pixels cannot be decoded "
                    f"({exc}); read it with read_original_file to inspect it",
                    photo_id=photo_id,
                ) from None
            return self._store_blob("preview", "originals", preview, photo_id)

        done: list[tuple[str, tuple]] = []
        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                rendered = progress_bar(zip(rows, pool.map(render, rows)), total=len(rows), desc="previews")
                for photo_id, row in rendered:
                    done.append((photo_id, row))
        finally:  # keep what was rendered before a failure
            stored = self._commit_previews(done) if done else {}
        return stored

    def _commit_previews(self, done: list[tuple[str, tuple]]) -> dict[str, str]:
        for folder in {self._blob_path(row[0]).parent for _, row in done}:
            fsync_dir(folder)
        stored = {}
        with self._write("render_previews", {"photo_ids": [photo_id for photo_id, _ in done]}):
            for photo_id, row in done:
                current = self._photo_row(photo_id)[1]
                if current is not None:  # another reader rendered it meanwhile
                    os.unlink(self._blob_path(row[0]))
                    stored[photo_id] = current
                    continue
                self._insert_blob(row)
                stored[photo_id] = row[0]
        return stored

    def set_review_state(self, photo_id: str, state: str, *, reason: str | None = None) -> None:
        """Mark a photo's redaction review state (``unreviewed``, ``in_review``, ``approved``, ``rejected``).

        ``reason`` (e.g. why a redaction was rejected) goes into the audit record:
        a few words about the redaction, never an identifier.
        """
        if state not in REVIEW_STATES:
            raise InvalidInput(f"review state must be one of: {', '.join(REVIEW_STATES)}")
        self._need("originals", "review redactions", {"photo_id": photo_id})
        self._photo_row(photo_id)
        detail = {"photo_id": photo_id, "state": state, **({"reason": reason} if reason else {})}
        with self._write("review_state", detail):
            self._insert("reviews", (photo_id, state, reason, self.user, _iso(self._clock())))

    # -- derivatives --------------------------------------------------------

    def put_derivative(self, photo_id: str, kind: str, data: bytes) -> str:
        """Store a de-identified derivative of a photo, encrypted with the derivatives tier."""
        if not kind.isidentifier():
            raise InvalidInput("a derivative kind is a short name such as 'deid_jpeg'")
        _, _, ref = self._photo_row(photo_id)
        self._need("derivatives", "store derivatives", {"photo_id": photo_id})
        row = self._store_blob(kind, "derivatives", data, photo_id)
        with self._write("derivative_add", {"photo_id": photo_id, "kind": kind, "blob_id": row[0]}):
            self._insert_blob(row)
        return row[0]

    def _consented(self, purpose: str) -> dict[str, str]:
        """photo_id -> patient_ref of the photos whose patient's consent holds for ``purpose`` now."""
        purpose = _consent.check_purpose(purpose)
        self._check_tables("photos")
        events = self._consent_events()
        now = self._clock()
        out = {}
        for photo_id, ref in self._query("SELECT photo_id, patient_ref FROM photos"):
            patient_events = events.get(ref, [])
            if purpose in _consent.active_grants(patient_events, now) or (
                    purpose == "care" and not patient_events):
                out[photo_id] = ref
        return out

    def _shredded(self) -> set[str]:
        self._check_tables("shreds")
        return {blob for (blobs,) in self._query("SELECT blobs FROM shreds") for blob in json.loads(blobs)}

    def derivatives(self, photo_id: str, *, purpose: str) -> pd.DataFrame:
        """The derivative files of a photo (blob id, kind, size), if its consent holds for ``purpose``.

        A photo whose patient's consent for ``purpose`` is not active now
        (never given, withdrawn or expired) has none to list.
        """
        self._photo_row(photo_id)
        if photo_id not in self._consented(purpose):
            return pd.DataFrame([], columns=["blob_id", "kind", "size"])
        shredded = self._shredded()
        rows = self._query("SELECT blob_id, kind, size FROM blobs WHERE photo_id = ? AND tier = 'derivatives' "
                           "ORDER BY rowid", (photo_id,))
        return pd.DataFrame([r for r in rows if r[0] not in shredded], columns=["blob_id", "kind", "size"])

    def load_derivative(self, blob_id: str, *, purpose: str) -> bytes:
        """Decrypt a de-identified derivative in memory (audited).

        Raises
        ------
        ConsentError
            The photo's patient is not consented for ``purpose`` now.
        """
        self._check_tables("blobs")
        rows = self._query("SELECT photo_id FROM blobs WHERE blob_id = ? AND tier = 'derivatives'", (blob_id,))
        if not rows or blob_id in self._shredded():
            raise NotFound("no de-identified file with that id (it may have been shredded)", blob_id=blob_id)
        detail = {"blob_id": blob_id, "photo_id": rows[0][0], "purpose": purpose}
        if rows[0][0] not in self._consented(purpose):
            self._record("denied", {"attempt": "read derivatives", **detail})
            raise ConsentError(
                f"this photo's patient is not consented for {purpose} now (withdrawn, expired or "
                "never given); choose photos with vault.photos(purpose=...)",
                purpose=purpose, photo_id=rows[0][0],
            )
        data = self._open_blob(blob_id, "read derivatives", detail)
        self._record("decrypt_derivative", detail)
        return data

    def pseudonym_key(self, reason: str) -> bytes:
        """The vault's pseudonym key, for keyed pseudonyms outside the vault (audited)."""
        key = self._need("pseudonym", "use the pseudonym key")
        self._record("pseudonym_key_use", {"reason": reason})
        return key

    def store_deid(self, photo_id: str, result, policy_digest: str) -> str:
        """Store a de-identified version of a photo with its regions and verification.

        ``result`` is a :class:`workbench.deid.DeidResult`. Its bytes are
        encrypted with the derivatives tier; the regions (boxes and kinds
        only), the verification outcome and the policy digest go into the
        index, so that review and cohort builds can use them. Only roles that
        review redactions (admin, clinician, analyst) may store them.
        """
        _, _, ref = self._photo_row(photo_id)
        self._need("derivatives", "store de-identified photos", {"photo_id": photo_id})
        if self.role not in _log.REVIEW_ROLES:
            raise self._denied("store de-identified photos", "originals", {"photo_id": photo_id})
        row = self._store_blob("deid", "derivatives", result.data, photo_id)
        fsync_dir(self._blob_path(row[0]).parent)
        regions = json.dumps([r.to_json() for r in result.regions])
        with self._write("deid_store", {"photo_id": photo_id, "blob_id": row[0],
                                         "verified": bool(result.verified)}):
            self._insert_blob(row)
            self._insert("deid_results", (
                row[0], photo_id, policy_digest, result.ext, result.width, result.height, regions,
                int(bool(result.verified)), json.dumps(list(result.warnings)),
                _iso(self._clock()), self.user))
        return row[0]

    def deid_results(self, photo_ids: Iterable[str] | None = None, *, purpose: str) -> pd.DataFrame:
        """The latest de-identified version of each photo consented for ``purpose`` now.

        ``photo_ids`` narrows it to the photos named. A photo whose patient's
        consent for ``purpose`` is not active now is left out, as are shredded
        versions. Columns: photo_id, blob_id, policy_digest, ext, width,
        height, regions (a list of region dicts), verified, warnings, created,
        created_by.
        """
        consented = self._consented(purpose)
        shredded = self._shredded()
        self._check_tables("deid_results")
        rows = self._query(
            "SELECT photo_id, blob_id, policy_digest, ext, width, height, regions, verified, "
            "warnings, created, created_by FROM deid_results ORDER BY created, blob_id")
        latest: dict[str, tuple] = {}
        for row in rows:
            if row[1] not in shredded:
                latest[row[0]] = row
        wanted = None if photo_ids is None else set(photo_ids)
        records = [
            dict(photo_id=r[0], blob_id=r[1], policy_digest=r[2], ext=r[3], width=r[4], height=r[5],
                 regions=json.loads(r[6]), verified=bool(r[7]), warnings=json.loads(r[8]),
                 created=r[9], created_by=r[10])
            for pid, r in latest.items() if (wanted is None or pid in wanted) and pid in consented
        ]
        columns = ["photo_id", "blob_id", "policy_digest", "ext", "width", "height", "regions",
                   "verified", "warnings", "created", "created_by"]
        return pd.DataFrame.from_records(records, columns=columns)

    def shred_derivatives(self, patient_ref: str) -> int:
        """Destroy the wrapped keys (and files) of all of a patient's derivatives.

        What this destroys: the keys in this vault's index and the files in
        its blobs/ folder, so this vault can never decrypt them again. What it
        cannot reach: a backup or copy of the vault folder made before the
        shred still holds the old index with the wrapped keys, and anyone who
        can open that copy with a key of the derivatives tier can read them;
        shred such copies too, or rebuild them from this vault.
        """
        if self.role not in _log.CONSENT_ROLES:
            raise self._denied("shred derivatives", "consent", {"patient_ref": patient_ref})
        self._check_tables("photos", "blobs")
        shredded = self._shredded()
        rows = self._query(
            "SELECT b.blob_id FROM blobs b JOIN photos p ON b.photo_id = p.photo_id "
            "WHERE p.patient_ref = ? AND b.tier = 'derivatives' ORDER BY b.rowid", (patient_ref,))
        ids = [r[0] for r in rows if r[0] not in shredded]
        with self._write("shred", {"patient_ref": patient_ref, "blobs": len(ids)}):
            self._insert("shreds", (patient_ref, json.dumps(ids), self.user, _iso(self._clock())))
            self._conn().executemany("UPDATE blobs SET wrapped_key = NULL WHERE blob_id = ?",
                                     [(i,) for i in ids])
        for blob_id in ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._blob_path(blob_id))
        return len(ids)

    # -- audit and checks -----------------------------------------------------

    def verify_audit(self, checkpoint: str | os.PathLike | None = None) -> "AuditCheck":
        """Check the whole log and every table against it (and a checkpoint, when given).

        Needs no tier key: any user can check the vault.

        Every record's signature against its author's key in the registry as
        it stood then, every link, every author's right to what the record
        added, and that each table holds exactly the rows the log added. With
        ``checkpoint``, also that the log still extends it (it was not cut
        short or rolled back since).
        """
        state = _log.State()
        count = 0
        try:
            for record in self._log_records(0):
                count = record.seq
                _log.apply(state, record, self.vault_id)
        except _log.Broken as exc:
            return AuditCheck(False, count, exc.seq, exc.reason, exc.user)
        if state.genesis != self._genesis:
            return AuditCheck(False, count, 1, "the log does not start with the genesis record "
                                               "your key slot pins: it was replaced", None)
        if state.seq < self._state.seq or (self._log_hash(self._state.seq) != self._state.hash):
            return AuditCheck(False, count, state.seq + 1,
                              f"the log no longer extends the {self._state.seq} records verified "
                              "when this vault was opened: records were cut off", None)
        for table in _log.TABLES:
            columns = ", ".join(_log.TABLES[table])
            rows = self._query(f"SELECT {columns} FROM {table} ORDER BY rowid")
            if _log.table_head(rows) != state.head(table):
                error = self._tampered(table, rows)
                return AuditCheck(False, count, None, str(error).split(";")[0], None)
        if checkpoint is not None:
            try:
                self.check_checkpoint(checkpoint)
            except IntegrityError as exc:
                return AuditCheck(False, count, exc.data.get("checkpoint_records"),
                                  str(exc).split(";")[0], None)
        return AuditCheck(True, count, None, "intact", None)

    def audit_records(self, since: datetime | date | str | None = None) -> pd.DataFrame:
        """Log records as a DataFrame (after checking the log).

        Raises ``IntegrityError`` naming the first bad record if the log is broken.
        """
        check = self.verify_audit()
        if not check.ok:
            raise IntegrityError(
                f"the audit trail is broken at record {check.first_bad}: {check.reason}; "
                "restore the vault from a backup",
                record=check.first_bad,
            )
        records = [r.content for r in self._log_records(0)]
        frame = pd.DataFrame.from_records(
            [{k: r[k] for k in ("seq", "time", "user", "action", "detail")} for r in records],
            columns=["seq", "time", "user", "action", "detail"],
        )
        if since is not None:
            since_date = _as_date(since, "--since")
            frame = frame[frame["time"].str[:10] >= since_date.isoformat()].reset_index(drop=True)
        return frame

    def checkpoint(self) -> "_log.Checkpoint":
        """A signed checkpoint of the log as it stands (see :meth:`write_checkpoint`)."""
        with self._thread_lock:
            self._sync()
            return _log.make_checkpoint(self.vault_id, self._state, _iso(self._clock()), self.user,
                                        self._signing)

    def write_checkpoint(self, path: str | os.PathLike) -> "_log.Checkpoint":
        """Write a signed checkpoint to ``path``, which must be outside the vault folder.

        Keep it where the vault's users cannot change it (a removable drive,
        the admin's own folder, a printout): a vault that no longer extends it
        (cut short, or rolled back to an older copy) is then refused by
        ``audit verify --checkpoint`` and by opening with
        ``WORKBENCH_CHECKPOINT`` set to it.
        """
        path = _log.refuse_inside(Path(path), self.root)
        cp = self.checkpoint()
        atomic_write(path, cp.text().encode(), overwrite=True)
        self._record("checkpoint", {"records": cp.seq})
        return cp

    def check_checkpoint(self, path: str | os.PathLike) -> None:
        """Raise ``IntegrityError`` unless the vault's log still extends the checkpoint in ``path``."""
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            raise InvalidInput("cannot read that checkpoint file; check the path") from None
        cp = _log.parse_checkpoint(text)
        keys = lambda user: [bytes.fromhex(row[0]) for row in self._query(
            "SELECT sign_pub FROM users WHERE user = ? ORDER BY rowid", (user,))]
        self._check_tables("users")
        _log.check_checkpoint(cp, self.vault_id, self._log_hash, keys)

    def _auto_checkpoint(self) -> None:
        """After a withdrawal or a user removal, refresh the checkpoint named by ``WORKBENCH_CHECKPOINT``."""
        path = os.environ.get(CHECKPOINT_ENV)
        if path:
            self.write_checkpoint(path)

    def check_files(self) -> list[str]:
        """Blob ids whose stored file is missing, differs from what was written, or lost its key.

        Needs only the index key: it compares the SHA-256 of each encrypted file
        with the one the log recorded when it was written. Shredded files are
        not counted; a key erased without a shred on record is.
        """
        self._check_tables("blobs")
        shredded = self._shredded()
        bad = []
        for blob_id, digest, wrapped in self._query("SELECT blob_id, file_sha256, wrapped_key FROM blobs"):
            if blob_id in shredded:
                continue
            if wrapped is None:  # its key erased with no shred on record
                bad.append(blob_id)
                continue
            try:
                actual = _crypto.sha256_hex(self._blob_path(blob_id).read_bytes())
            except OSError:
                actual = ""
            if actual != digest:
                bad.append(blob_id)
        return bad

    @contextlib.contextmanager
    def _no_other_writers(self):
        """Hold the index's write lock and the writers' lock exclusively, or raise ``ConflictError``."""
        with self._exclusive(), \
                exclusive_now(self.root / BLOB_LOCK, self._blob_lock) as alone:
            if not alone:
                raise ConflictError(
                    "another session that wrote files to this vault is still open (an ingest, "
                    "previews, de-identification or a notebook kernel), so its files cannot be "
                    "told from stale ones; close it and run the check again"
                )
            yield

    def _stale_files(self) -> list[Path]:
        known = {r[0] for r in self._query("SELECT blob_id FROM blobs")}
        return sorted(
            path for path in (self.root / "blobs").glob("*/*")
            if path.is_file() and (path.name.endswith(TMP_SUFFIX) or path.name not in known)
        )

    def stale_files(self) -> list[Path]:
        """Files under ``blobs/`` that no index row refers to, and leftover temporary files.

        A killed ingest leaves them: blob files written before their index
        row committed, and half-written temporary files. They hold only
        ciphertext, and nothing reads them. Needs only the index key.

        Returns
        -------
        list of pathlib.Path
            The stale files, sorted; empty when there are none.

        Raises
        ------
        ConflictError
            Another open vault (in this or another process) has written files
            and may still commit them; close it first.
        """
        with self._no_other_writers():
            return self._stale_files()

    def remove_stale_files(self) -> int:
        """Delete the files :meth:`stale_files` lists; return how many (audited when any).

        Raises
        ------
        ConflictError
            Another open vault has written files and may still commit them.
        """
        with self._no_other_writers():
            stale = self._stale_files()
            for path in stale:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            for folder in {path.parent for path in stale}:
                fsync_dir(folder)
        if stale:
            self._record("stale_files_removed", {"files": len(stale)})
        return len(stale)

    def verify_photo(self, photo_id: str) -> bool:
        """True when a photo's files are present and match their recorded digests."""
        original_blob, preview_blob, _ = self._photo_row(photo_id)
        wanted = [b for b in (original_blob, preview_blob) if b is not None]
        rows = self._query("SELECT blob_id, file_sha256 FROM blobs WHERE blob_id IN (?, ?)", (original_blob, preview_blob))
        if len(rows) != len(wanted):
            return False
        for blob_id, digest in rows:
            try:
                if _crypto.sha256_hex(self._blob_path(blob_id).read_bytes()) != digest:
                    return False
            except OSError:
                return False
        return True


def _duplicate(stored: tuple, ref: str | None) -> PhotoResult:
    """The result for a file whose content is stored already as ``stored`` (photo id, patient ref).

    Under the same patient it is a ``"duplicate"``; under another patient
    (or when this patient has no record yet) it is an ``"error"``: the file
    is not filed twice, and an ingest keeps its source.
    """
    photo_id, stored_ref = stored
    if stored_ref == ref:
        return PhotoResult("duplicate", photo_id=photo_id)
    return PhotoResult("error", error=ConflictError(
        "this file is already in the vault under another patient, so it was not stored again "
        "(an ingest keeps its source); check that the patient named is right, and if the "
        "earlier import filed the photo under the wrong patient, tell an admin",
        photo_id=photo_id,
    ))


def _index_identity(root: Path) -> tuple[int, int]:
    """Which file ``index.db`` is: a key rotation replaces it with another."""
    stat = os.stat(root / "index.db")
    return stat.st_dev, stat.st_ino


def _rekey_rows(db, old: _keys.KeySet, new: _keys.KeySet) -> dict[str, list]:
    """Re-wrap every blob key and re-seal every identity record of ``db`` under ``new``.

    Returns the new heads of the tables whose signed content changed.
    """
    def reseal(tier, sealed, label):
        plain = _crypto.open_sealed(old.keys[tier], sealed, label.encode())
        return _crypto.seal_to_public(new.keys[tier + "_pub"], plain, label.encode())

    db.execute("BEGIN IMMEDIATE")
    try:
        for blob_id, kind, tier, wrapped in db.execute(
                "SELECT blob_id, kind, tier, wrapped_key FROM blobs WHERE wrapped_key IS NOT NULL").fetchall():
            aad = _crypto.blob_aad(blob_id, kind)
            if tier in ("originals", "identities"):
                data_key = _crypto.open_sealed(old.keys[tier], wrapped, aad)
                wrapped = _crypto.seal_to_public(new.keys[tier + "_pub"], data_key, aad)
            else:
                data_key = _crypto.open_symmetric(old.keys[tier], wrapped, aad)
                wrapped = _crypto.seal_symmetric(new.keys[tier], data_key, aad)
            db.execute("UPDATE blobs SET wrapped_key = ? WHERE blob_id = ?", (wrapped, blob_id))
        for ref, sealed in db.execute("SELECT patient_ref, identity FROM patients").fetchall():
            db.execute("UPDATE patients SET identity = ? WHERE patient_ref = ?",
                       (reseal("identities", sealed, "patient:" + ref), ref))
        for photo_id, sealed in db.execute("SELECT photo_id, identifiers FROM photos").fetchall():
            db.execute("UPDATE photos SET identifiers = ? WHERE photo_id = ?",
                       (reseal("identities", sealed, "photo:" + photo_id), photo_id))
        heads = {}
        for table in _log.ROTATION_TABLES:
            columns = ", ".join(_log.TABLES[table])
            count, head = _log.table_head(db.execute(f"SELECT {columns} FROM {table} ORDER BY rowid"))
            heads[table] = [count, head.hex()]
        db.execute("COMMIT")
    except _crypto.CryptoFailure:
        db.execute("ROLLBACK")
        raise IntegrityError(
            "a wrapped key or identity record did not open during key rotation; nothing was "
            "changed; run `workbench audit verify` and `workbench vault check`"
        ) from None
    return heads


def _check_filters(filters: dict) -> None:
    for column in filters:
        if column not in PHOTO_COLUMNS:
            raise InvalidInput(
                f"cannot filter on {column!r}; filter on one of: {', '.join(PHOTO_COLUMNS)}"
            )


def _apply_filters(frame: pd.DataFrame, filters: dict) -> pd.DataFrame:
    """Equality, any-of (list/set) or inclusive range ((low, high) tuple) per column."""
    for column, wanted in filters.items():
        values = frame[column]
        if isinstance(wanted, tuple) and len(wanted) == 2:
            low, high = wanted
            mask = pd.Series(True, index=frame.index)
            if low is not None:
                mask &= values.notna() & (values.astype(str) >= str(low))
            if high is not None:
                mask &= values.notna() & (values.astype(str) <= str(high))
        elif isinstance(wanted, (list, set, frozenset)):
            mask = values.isin(list(wanted))
        else:
            mask = values == wanted
        frame = frame[mask]
    return frame


def _clean_field(value: str | None, what: str, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"the {what} is required (for example --body-site forearm)")
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput(f"the {what} must be a short text (at most 64 characters)")
    return value.strip().lower() if what != "diagnosis" else value.strip()
