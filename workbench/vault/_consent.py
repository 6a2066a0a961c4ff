"""Consent as a history of dated events, and what is active at a moment.

Consent is never edited or deleted: a grant, a withdrawal or an expiry is a
record, and the state at any time is computed by replaying the records up to
that time. This module is pure (no I/O), so that the rule can be tested
exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable

from ..errors import ConsentError, InvalidInput

SCOPES = ("care", "research", "education", "publication")


def check_purpose(purpose: str) -> str:
    """Return ``purpose`` if it is a consent scope, else raise ``ConsentError``."""
    if purpose not in SCOPES:
        raise ConsentError(
            f"{purpose!r} is not a consent purpose; use one of: {', '.join(SCOPES)}",
            purpose=purpose,
        )
    return purpose


def parse_scopes(scopes: str | Iterable[str] | None) -> frozenset[str]:
    """Parse ``"research,education"`` or an iterable of scope names."""
    if scopes is None:
        return frozenset(SCOPES)
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    scopes = frozenset(scopes)
    if not scopes:
        raise InvalidInput("name at least one consent scope: " + ", ".join(SCOPES))
    for scope in scopes:
        if scope not in SCOPES:
            raise ConsentError(
                f"{scope!r} is not a consent scope; use one of: {', '.join(SCOPES)}",
                purpose=scope,
            )
    return scopes


@dataclass(frozen=True)
class ConsentEvent:
    """One consent record.

    Attributes
    ----------
    seq : int
        Order of recording (breaks ties between events at the same moment).
    patient_ref : str
        Random reference of the patient (never the MRN).
    action : str
        ``"grant"`` or ``"withdraw"``.
    scopes : frozenset of str
        Scopes granted or withdrawn.
    effective : datetime
        When the event takes effect.
    expires : date or None
        Last day a grant is valid (grants only).
    identifiable : bool
        Whether identifiable use was allowed (grants only).
    """

    seq: int
    patient_ref: str
    action: str
    scopes: frozenset[str]
    effective: datetime
    expires: date | None = None
    identifiable: bool = False


def active_grants(events: Iterable[ConsentEvent], now: datetime) -> dict[str, ConsentEvent]:
    """Scope -> the grant that makes it active at ``now`` (absent scopes are inactive).

    Events take effect in order of ``(effective, seq)``; events after ``now``
    are ignored. A grant replaces an earlier grant of the same scope, a
    withdrawal ends it, and a grant whose ``expires`` day has passed is
    inactive (the expiry day itself is still valid).
    """
    state: dict[str, ConsentEvent] = {}
    for event in sorted(events, key=lambda e: (e.effective, e.seq)):
        if event.effective > now:
            break
        for scope in event.scopes:
            if event.action == "grant":
                state[scope] = event
            else:
                state.pop(scope, None)
    today = now.date()
    return {
        scope: grant
        for scope, grant in state.items()
        if grant.expires is None or today <= grant.expires
    }


def holds(events: Iterable[ConsentEvent], purpose: str, now: datetime) -> bool:
    """Whether a patient's ``events`` allow ``purpose`` at ``now``.

    ``care`` also holds for a patient with no consent on record at all
    (photos stored with ``allow_no_consent`` are for care only).
    """
    events = list(events)
    return purpose in active_grants(events, now) or (purpose == "care" and not events)


def explain(events: Iterable[ConsentEvent], scope: str, now: datetime) -> str:
    """Why a scope is or is not active at ``now``.

    Returns one of ``"active"``, ``"no consent"`` (never granted, or granted
    only from a later date), ``"withdrawn"`` or ``"expired"``.
    """
    last = None
    for event in sorted(events, key=lambda e: (e.effective, e.seq)):
        if event.effective > now:
            break
        if scope in event.scopes:
            last = event
    if last is None:
        return "no consent"
    if last.action == "withdraw":
        return "withdrawn"
    if last.expires is not None and now.date() > last.expires:
        return "expired"
    return "active"
