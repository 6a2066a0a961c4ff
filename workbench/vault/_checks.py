"""Checks: the log and tables verified whole, checkpoints, stored files, stale files."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConflictError, IntegrityError, InvalidInput
from . import _crypto, _index, _log
from ._files import TMP_SUFFIX, atomic_write, exclusive_now, fsync_dir
from ._base import BLOB_LOCK, CHECKPOINT_ENV, _as_date, _iso

if TYPE_CHECKING:
    import pandas as pd


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
    breaks: tuple = ()
    """Every bad record found, as ``(record, signer, reason)``: after a bad
    record the check carries on from it, so that each break is named."""


class ChecksMixin:
    """The :class:`~workbench.vault.Vault` methods that check the whole vault."""

    def verify_audit(self, checkpoint: str | os.PathLike | None = None) -> "AuditCheck":
        """Check the whole log and every table against it (and a checkpoint, when given).

        Needs no tier key: any user can check the vault. Every page of the
        index is authenticated first (a damaged page raises ``IntegrityError``).

        Every record's signature against its author's key in the registry as
        it stood then, every link, every author's right to what the record
        added, and that each table holds exactly the rows the log added. With
        ``checkpoint``, also that the log still extends it (it was not cut
        short or rolled back since).
        """
        with self._thread_lock:
            _index.check_pages(self._conn())
        state = _log.State()
        count = 0
        breaks = []
        for record in self._log_records(0):
            count = record.seq
            try:
                _log.apply(state, record, self.vault_id)
            except _log.Broken as exc:
                breaks.append((exc.seq, exc.user, exc.reason))
                state.seq, state.hash = record.seq, record.hash  # carry on from it
        if breaks:
            seq, user, reason = breaks[0]
            return AuditCheck(False, count, seq, reason, user, tuple(breaks))
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
        import pandas as pd

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
        self._check_tables("blobs")  # a row deleted by hand must not make its file look stale
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
