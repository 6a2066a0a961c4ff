"""The consent form: record and withdraw consent, with scopes, expiry and the scanned form."""

from __future__ import annotations

from typing import Callable

import traitlets

from ..errors import InvalidInput
from ..vault import SCOPES, Vault
from ..vault._log import CONSENT_ROLES
from ..review import role_advice
from ._base import _Widget, action, module

#: largest scanned form accepted (a few pages at 300 dpi)
MAX_FORM_BYTES = 20 * 1024 * 1024


class ConsentForm(_Widget):
    """Record a patient's consent, or its withdrawal, from a notebook.

    The patient's id, name and birth date and the scanned form go from the
    browser to the vault in one message and are not kept by the widget: its
    synced state (which a notebook can save) holds the scopes offered, the
    pseudonymous reference of the last patient recorded, that patient's
    consent history and messages, nothing identifying.

    Parameters
    ----------
    vault : Vault
        Opened by a role that records consent (admin, photographer, clinician).
    """

    _esm = module("consent.js")

    scopes = traitlets.List(list(SCOPES)).tag(sync=True)
    can_record = traitlets.Bool(False).tag(sync=True)
    #: the last event recorded: ``{"action", "patient_ref", "scopes", "expires", "seq", "form"}``
    last = traitlets.Dict().tag(sync=True)
    #: that patient's consent events (pseudonymous reference, scopes, dates)
    history = traitlets.List().tag(sync=True)

    def __init__(self, vault: Vault):
        super().__init__(role=vault.role)
        self._vault = vault
        self.can_record = vault.role in CONSENT_ROLES
        if not self.can_record:
            self.error = role_advice(vault, "record consent")
        else:
            self.status = "type the patient's id, choose scopes, and record"

    def on_record(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(last)`` after each grant or withdrawal (no identifier in it)."""
        self._on("record", fn)

    def _check(self, patient, scopes) -> list[str]:
        if not self.can_record:
            raise InvalidInput(role_advice(self._vault, "record consent"))
        if not isinstance(patient, str) or not patient.strip():
            raise InvalidInput("type the patient's id (MRN)")
        if isinstance(scopes, str):
            scopes = [s.strip() for s in scopes.split(",") if s.strip()]
        if not scopes or not all(s in SCOPES for s in scopes):
            raise InvalidInput(f"choose at least one scope of: {', '.join(SCOPES)}")
        return list(scopes)

    def _done(self, what: str, patient: str, scopes: list[str], seq: int, **extra) -> dict:
        ref = self._vault.patient_ref(patient)
        self.last = {"action": what, "patient_ref": ref, "scopes": scopes, "seq": seq, **extra}
        events = self._vault.consent_history(ref)
        self.history = [{k: (None if v != v else v) for k, v in row.items()}  # NaN -> None
                        for row in events.astype(object).to_dict("records")]
        self.status = f"{what} recorded for patient {ref}: {', '.join(scopes)}"
        self._fire("record", dict(self.last))
        return dict(self.last)

    @action
    def grant(self, patient: str, scopes, *, expires: str | None = None, identifiable: bool = False,
              name: str | None = None, birth_date: str | None = None, form: bytes | None = None,
              buffers: list[bytes] | None = None) -> dict | None:
        """Record a grant; ``form`` (or the browser's one buffer) is the scanned form's bytes."""
        scopes = self._check(patient, scopes)
        if buffers:
            form = buffers[0]
        if form is not None and (not isinstance(form, bytes) or not form or len(form) > MAX_FORM_BYTES):
            raise InvalidInput("the scanned form must be a file of at most 20 MB")
        seq = self._vault.add_consent(patient.strip(), scopes, expires=expires or None,
                                      identifiable=bool(identifiable), form=form,
                                      name=name or None, birth_date=birth_date or None)
        return self._done("grant", patient.strip(), scopes, seq, expires=expires or None, form=form is not None)

    @action
    def withdraw(self, patient: str, scopes=None) -> dict | None:
        """Record a withdrawal of ``scopes`` (default: all)."""
        scopes = self._check(patient, scopes or list(SCOPES))
        seq = self._vault.withdraw_consent(patient.strip(), scopes)
        return self._done("withdraw", patient.strip(), scopes, seq)
