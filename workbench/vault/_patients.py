"""Patients and consent: who the photos belong to, and what each purpose may use."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from typing import TYPE_CHECKING, Iterable

from ..errors import ConsentError, InvalidInput, NotFound
from . import _consent, _crypto, _log
from ._files import read_input
from ._base import _as_date, _iso, _parse_time

if TYPE_CHECKING:
    import pandas as pd


def _norm_patient(patient: str) -> bytes:
    if not isinstance(patient, str) or not patient.strip():
        raise InvalidInput("a patient id (MRN) must be a non-empty string")
    return patient.strip().upper().encode("utf-8")



def _event(row: tuple) -> _consent.ConsentEvent:
    """A ``consent_events`` row (its signed columns, in order) as a :class:`ConsentEvent`."""
    seq, ref, action, scopes, effective, expires, identifiable = row[:7]
    return _consent.ConsentEvent(
        seq=seq, patient_ref=ref, action=action, scopes=frozenset(scopes.split(",")),
        effective=_parse_time(effective), expires=date.fromisoformat(expires) if expires else None,
        identifiable=bool(identifiable),
    )

class PatientsMixin:
    """The :class:`~workbench.vault.Vault` methods that patients and consent."""

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
        events: dict[str, list[_consent.ConsentEvent]] = {}
        for row in self._table_rows("consent_events"):
            events.setdefault(row[1], []).append(_event(row))
        return events

    def consent_history(self, patient_ref: str | None = None) -> pd.DataFrame:
        """Every consent record (or one patient's), oldest first. Never identifying."""
        import pandas as pd

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

    def consent_digest(self) -> str:
        """SHA-256 over every consent record: names the consent state a build used."""
        self._check_tables("consent_events")
        rows = self._query("SELECT seq, patient_ref, action, scopes, effective, expires, identifiable "
                           "FROM consent_events ORDER BY seq")
        return _crypto.sha256_hex(json.dumps(rows).encode())

    def _require_consent(self, patient_refs: dict[str, str], purpose: str, action: str) -> None:
        """Raise ``ConsentError`` (audited) unless every photo's patient is consented for ``purpose`` now.

        ``patient_refs`` maps photo id -> patient_ref. ``care`` also covers
        photos stored with ``allow_no_consent`` (no consent on record at all).
        """
        holds: dict[str, bool] = {}  # a page of photos comes from a few patients
        for photo_id, ref in patient_refs.items():
            if ref not in holds:
                holds[ref] = self._consent_holds(ref, purpose)
            if holds[ref]:
                continue
            self._record("denied", {"attempt": action, "photo_id": photo_id, "purpose": purpose})
            raise ConsentError(
                f"this photo's patient is not consented for {purpose} now (withdrawn, expired or never "
                "given); choose photos with vault.photos(purpose=...)",
                purpose=purpose, photo_id=photo_id,
            )

    def _consent_holds(self, patient_ref: str, purpose: str) -> bool:
        """Whether one patient's consent for ``purpose`` is active now (``care``: or none on record)."""
        purpose = _consent.check_purpose(purpose)
        self._check_tables("consent_events")
        columns = ", ".join(_log.TABLES["consent_events"])
        rows = self._query(f"SELECT {columns} FROM consent_events WHERE patient_ref = ?", (patient_ref,))
        return _consent.holds(map(_event, rows), purpose, self._clock())

    def _consented(self, purpose: str) -> dict[str, str]:
        """photo_id -> patient_ref of the photos whose patient's consent holds for ``purpose`` now."""
        purpose = _consent.check_purpose(purpose)
        self._check_tables("photos")
        events = self._consent_events()
        now = self._clock()
        out = {}
        for photo_id, ref in self._query("SELECT photo_id, patient_ref FROM photos"):
            if _consent.holds(events.get(ref, []), purpose, now):
                out[photo_id] = ref
        return out

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
