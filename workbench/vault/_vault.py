"""The :class:`Vault`: opening a vault, its signed write path and its blob store.

What the vault keeps is in the mixins it is made of (``_users``,
``_patients``, ``_photos``, ``_review``, ``_checks``); this module holds
what they all stand on: unlocking, verifying the log on open and on every
change by others (``_sync``, ``_check_tables``), the one way to write
(``_write`` with ``_insert``), and encrypted files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path

from ..errors import AccessDenied, AlreadyExists, IntegrityError, InvalidInput, NotFound
from . import _crypto, _index, _keys, _log
from ._files import atomic_write, hold_shared, locked
from ._base import (
    BLOB_LOCK,
    CHECKPOINT_ENV,
    Clock,
    FORMAT_NAME,
    FORMAT_VERSION,
    _ask_new_passphrase,
    _ask_passphrase,
    _index_identity,
    _iso,
    _parse_time,
    _read_header,
    _utcnow,
)
from ._checks import ChecksMixin
from ._patients import PatientsMixin
from ._photos import PhotosMixin
from ._review import ReviewMixin
from ._users import UsersMixin


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
        When omitted: a capability handed down by the process that started
        this one (``WORKBENCH_CAPABILITY``, see :func:`capability`), else
        ``WORKBENCH_PASSPHRASE`` if set (for scripts and tests only), else a
        hidden prompt.
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
    slot = None
    if passphrase is None and os.environ.get(CAPABILITY_ENV):
        slot = _open_capability(root, header["vault_id"], user, clock)
    if slot is None and passphrase is None:
        passphrase = os.environ.get("WORKBENCH_PASSPHRASE")
    if slot is None and passphrase is None:
        passphrase = _ask_passphrase(f"Passphrase for {user}: ")
    if slot is None:
        slot = _keys.unlock_slot(root, header["vault_id"], user, passphrase)
    vault = Vault(root, user, slot, header["vault_id"], clock=clock)
    try:
        vault._record("vault_open", {"role": slot.role})
    except BaseException:
        vault.close()
        raise
    return vault


#: ``FILE:KEY`` of a capability (an unlocked slot, sealed, expiring) for a child process
CAPABILITY_ENV = "WORKBENCH_CAPABILITY"


@contextlib.contextmanager
def capability(vault: "Vault", *, minutes: int = 240):
    """Let child processes (papermill kernels) open ``vault`` as its user, without the passphrase.

    Within the block, ``WORKBENCH_CAPABILITY`` in this process's environment
    (which children inherit) names a file, readable only by this account,
    that holds the user's unlocked slot sealed under a one-time key, and the
    key. The file is deleted when the block ends, and the capability expires
    after ``minutes`` by the vault's clock anyway: it never outlives the run.
    """
    expires = _iso(vault.now() + timedelta(minutes=minutes))
    slot = _keys.Slot(((vault._epoch, vault._keys),), vault._signing, vault._box, vault._genesis)
    key, sealed = _keys.seal_capability(vault.vault_id, vault.user, slot, expires)
    folder = Path(tempfile.mkdtemp(prefix="workbench-capability-"))
    path = folder / "capability"
    previous = os.environ.get(CAPABILITY_ENV)
    try:
        atomic_write(path, sealed)
        os.environ[CAPABILITY_ENV] = f"{path}:{_crypto.b64e(key)}"
        vault._record("capability_issued", {"minutes": minutes})
        yield
    finally:
        if previous is None:
            os.environ.pop(CAPABILITY_ENV, None)
        else:
            os.environ[CAPABILITY_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)


def _open_capability(root: Path, vault_id: str, user: str, clock: Clock) -> "_keys.Slot | None":
    """The slot a parent process handed down, if it is for this vault and user and still valid."""
    path, _, key = os.environ[CAPABILITY_ENV].rpartition(":")
    try:
        sealed = Path(path).read_bytes()
        key_bytes = _crypto.b64d(key)
    except (OSError, _crypto.CryptoFailure):
        raise AccessDenied(
            "the vault capability handed to this process is gone (its run ended); open the "
            "vault with a passphrase"
        ) from None
    slot, expires = _keys.open_capability(root, vault_id, user, key_bytes, sealed)
    if _parse_time(expires) < clock():
        raise AccessDenied("the vault capability handed to this process has expired; run it again")
    return slot


def forget_witness(path: str | os.PathLike, *, user: str) -> bool:
    """Delete ``user``'s witness of the vault at ``path`` on this machine; True if there was one.

    A witness refuses a log shorter than what its user verified, which is
    also what a backup restored after a disk failure looks like. Forgetting it
    accepts the restored vault as it is: compare it with a checkpoint first.
    Needs no passphrase: the witness is the user's own file, outside the vault.
    """
    header = _read_header(Path(path))
    witness = _log.witness_path(header["vault_id"], _keys.check_user_name(user))
    try:
        witness.unlink()
    except FileNotFoundError:
        return False
    return True


class Vault(UsersMixin, PatientsMixin, PhotosMixin, ReviewMixin, ChecksMixin):
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
        self._rows: dict[str, list[tuple]] = {}  # verified rows of a table, while it stays verified
        self._data_version: int | None = None
        self._blob_lock: int | None = None  # see _hold_blob_lock
        # blob id -> (SHA-256, size, mtime) of the file as this session wrote and read it back
        # (see verify_photo)
        self._read_back: dict[str, tuple[str, int, int]] = {}
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
        self._rows.clear()
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
                pending = (self._pending or {}).get(table, [])
                for values in pending:  # added by this write
                    count, head = count + 1, _log.fold(head, _log.row_digest(values))
                digest = _log.table_digest(rows)
                if not pending and self._state.verified.get(table) == [head.hex(), digest] \
                        and len(rows) == count:
                    self._verified.add(table)  # the very rows this user checked against this head
                    self._rows[table] = rows
                    continue
                if _log.table_head(rows) != (count, head):
                    raise self._tampered(table, rows)
                if not pending:
                    self._state.verified[table] = [head.hex(), digest]
                    self._rows[table] = rows
                self._verified.add(table)

    def _table_rows(self, table: str) -> list[tuple]:
        """Every row of ``table`` (its signed columns, in insertion order), checked against the log."""
        with self._thread_lock:
            self._check_tables(table)
            if table in self._rows:
                return self._rows[table]
            # verified, and since changed only by this object's own writes (or
            # being changed by the current one): what is there now is trusted
            columns = ", ".join(_log.TABLES[table])
            rows = self._query(f"SELECT {columns} FROM {table} ORDER BY rowid")
            if not (self._pending or {}).get(table):
                self._rows[table] = rows
            return rows

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
                for table, rows in self._pending.items():  # exactly what this write added
                    if table in self._rows:
                        self._rows[table] = self._rows[table] + rows
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


    # -- blobs --------------------------------------------------------------

    def _blob_path(self, blob_id: str) -> Path:
        return self.root / "blobs" / blob_id[:2] / blob_id

    def _store_blob(self, kind: str, tier: str, plaintext: bytes, photo_id: str | None,
                    blob_id: str | None = None) -> tuple:
        """Encrypt, write atomically, read back and check. Returns the index row.

        The row is inserted by the caller inside its transaction, so a blob
        whose row never committed is an unreachable orphan, never a visible
        half-written photo. ``blob_id`` defaults to a random id.
        """
        self._hold_blob_lock()
        blob_id = blob_id or _crypto.random_id()
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
        digest = _crypto.sha256_hex(stored)
        if len(self._read_back) < 100_000:  # a bound on memory for very long sessions
            st = os.stat(path)
            self._read_back[blob_id] = (digest, st.st_size, st.st_mtime_ns)
        return (blob_id, photo_id, kind, tier, len(plaintext), digest, wrapped)

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

    def _query_in(self, sql: str, keys: list[str]) -> dict[str, tuple]:
        """Rows of ``sql`` (whose ``IN ({})`` takes ``keys``) by their first column, in chunks
        that stay below SQLite's limit on parameters."""
        found: dict[str, tuple] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            for key, *row in self._query(sql.format(", ".join("?" * len(chunk))), tuple(chunk)):
                found[key] = tuple(row)
        return found

    def _open_blob(self, blob_id: str, action: str, detail: dict) -> bytes:
        return self._open_blobs([blob_id], action, detail)[blob_id]

    def _open_blobs(self, blob_ids: list[str], action: str, detail: dict) -> dict[str, bytes]:
        """Decrypt files of the vault in memory (one index query for all of them)."""
        self._check_tables("blobs")
        wanted = list(dict.fromkeys(blob_ids))
        rows = self._query_in("SELECT blob_id, kind, tier, wrapped_key, file_sha256 FROM blobs "
                              "WHERE blob_id IN ({})", wanted)
        out = {}
        for blob_id in wanted:
            row = rows.get(blob_id)
            if row is None or row[2] is None:
                raise NotFound("that file is not in the vault (it may have been shredded)", blob_id=blob_id)
            out[blob_id] = self._decrypt_file(blob_id, *row, action=action, detail=detail)
        return out

    def _decrypt_file(self, blob_id: str, kind: str, tier: str, wrapped: bytes, digest: str, *,
                      action: str, detail: dict) -> bytes:
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


    # -- photos -------------------------------------------------------------


    # -- derivatives --------------------------------------------------------


    # -- audit and checks -----------------------------------------------------


