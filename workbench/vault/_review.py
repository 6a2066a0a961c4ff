"""Review decisions and de-identified derivatives, consent-filtered, and shredding."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterable

import pandas as pd

from ..errors import ConsentError, InvalidInput, NotFound
from . import _log
from ._files import fsync_dir
from ._base import REVIEW_STATES, _iso


class ReviewMixin:
    """The :class:`~workbench.vault.Vault` methods that review decisions and de-identified derivatives, consent-filtered, and shredding."""

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

    def _review_states(self) -> dict[str, str]:
        """photo_id -> its latest review decision (photos never reviewed are absent)."""
        return {photo_id: state for photo_id, state, *_ in self._table_rows("reviews")}

    def put_derivative(self, photo_id: str, kind: str, data: bytes) -> str:
        """Store a de-identified derivative of a photo, encrypted with the derivatives tier."""
        if not kind.isidentifier():
            raise InvalidInput("a derivative kind is a short name such as 'deid_jpeg'")
        ref = self._photo_row(photo_id).patient_ref
        self._need("derivatives", "store derivatives", {"photo_id": photo_id})
        row = self._store_blob(kind, "derivatives", data, photo_id)
        with self._write("derivative_add", {"photo_id": photo_id, "kind": kind, "blob_id": row[0]}):
            self._insert_blob(row)
        return row[0]

    def _shredded(self) -> set[str]:
        self._check_tables("shreds")
        return {blob for (blobs,) in self._query("SELECT blobs FROM shreds") for blob in json.loads(blobs)}

    def derivatives(self, photo_id: str, *, purpose: str) -> pd.DataFrame:
        """The derivative files of a photo (blob id, kind, size), if its consent holds for ``purpose``.

        A photo whose patient's consent for ``purpose`` is not active now
        (never given, withdrawn or expired) has none to list.
        """
        if not self._consent_holds(self._photo_row(photo_id).patient_ref, purpose):
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
        self._require_consent({rows[0][0]: self._photo_row(rows[0][0]).patient_ref}, purpose, "read derivatives")
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
        ref = self._photo_row(photo_id).patient_ref
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
