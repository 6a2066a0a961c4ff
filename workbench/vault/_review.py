"""Review decisions and de-identified derivatives, consent-filtered, and shredding."""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from ..errors import ConflictError, ConsentError, InvalidInput, NotFound
from . import _consent, _log
from ._files import fsync_dir
from ._base import REGION_KINDS, REVIEW_STATES, _iso

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Review:
    """One saved review of a photo: its version, decision and the regions a person marked.

    Attributes
    ----------
    photo_id : str
    version : int
        1 for the first save, 2 for the next...; 0: never reviewed.
    state : str
        ``unreviewed``, ``in_review``, ``approved`` or ``rejected``.
    reason : str or None
    regions : tuple of dict
        ``{"kind", "box": [x, y, w, h], "author", "time"}`` each, in the
        upright photo's pixels; ``"dismissed": true`` on a detector's box
        that the reviewer judged not identifying (left visible).
    reviewed_by, reviewed : str or None
        Who saved this version, and when (ISO 8601, UTC).
    """

    photo_id: str
    version: int = 0
    state: str = "unreviewed"
    reason: str | None = None
    regions: tuple = ()
    reviewed_by: str | None = None
    reviewed: str | None = None

    def to_json(self) -> dict:
        """Plain JSON (what a widget holds)."""
        return {"photo_id": self.photo_id, "version": self.version, "state": self.state,
                "reason": self.reason, "regions": [dict(r, box=list(r["box"])) for r in self.regions],
                "reviewed_by": self.reviewed_by, "reviewed": self.reviewed}


def _review_from_row(row: tuple) -> Review:
    photo_id, version, state, reason, regions, user, time = row
    return Review(photo_id, int(version), state, reason, tuple(json.loads(regions)), user, time)


def region_key(region: dict) -> tuple:
    """What makes two regions the same: kind, box, and whether it hides or dismisses."""
    return region["kind"], tuple(region["box"]), bool(region.get("dismissed"))


def _short(key: tuple) -> dict:
    kind, box, dismissed = key
    return {"kind": kind, "box": list(box), **({"dismissed": True} if dismissed else {})}


def _check_regions(regions: Iterable[dict]) -> list[dict]:
    """``{"kind", "box", "dismissed"?}`` dicts with a known kind and four finite numbers."""
    out = []
    for n, region in enumerate(list(regions), start=1):
        if not isinstance(region, dict) or "box" not in region:
            raise InvalidInput(f'region {n} is not like {{"kind": "tattoo", "box": [x, y, w, h]}}', region=n)
        kind = region.get("kind")
        if kind not in REGION_KINDS:
            raise InvalidInput(f"region {n} has kind {kind!r}; use one of: {', '.join(REGION_KINDS)}",
                               region=n)
        box = region["box"]
        try:
            box = [float(v) for v in box]
        except (TypeError, ValueError):
            box = []
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise InvalidInput(f"region {n}'s box is not four numbers [x, y, width, height]", region=n)
        dismissed = region.get("dismissed", False)
        if not isinstance(dismissed, bool):
            raise InvalidInput(f"region {n}'s dismissed is true or false", region=n)
        out.append({"kind": kind, "box": box, **({"dismissed": True} if dismissed else {})})
    return out


def _clip(regions: list[dict], width: int, height: int) -> list[dict]:
    """Boxes turned right way round, rounded to pixels, clipped to the photo; empty ones dropped."""
    out, seen = [], set()
    for region in regions:
        x, y, w, h = region["box"]
        x0, x1 = sorted((x, x + w))
        y0, y1 = sorted((y, y + h))
        x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        x1, y1 = min(width, int(math.ceil(x1))), min(height, int(math.ceil(y1)))
        clipped = {**region, "box": [x0, y0, x1 - x0, y1 - y0]}
        if x1 > x0 and y1 > y0 and region_key(clipped) not in seen:
            seen.add(region_key(clipped))
            out.append(clipped)
    return out


def _attribute(regions: list[dict], previous: tuple, user: str, now: str) -> list[dict]:
    """Each region with the author and time of the save that first marked it as it is."""
    known = {region_key(r): r for r in previous}
    out = []
    for region in regions:
        old = known.get(region_key(region))
        out.append({**region, "author": old["author"] if old else user, "time": old["time"] if old else now})
    return out


def _change(before: Review, after: Review) -> dict:
    """What one save changed: who, when, the state, the regions added and removed."""
    old = {region_key(r) for r in before.regions}
    new = {region_key(r) for r in after.regions}
    return {"version": after.version, "reviewed_by": after.reviewed_by, "reviewed": after.reviewed,
            "state": after.state, "reason": after.reason,
            "regions_added": [_short(k) for k in sorted(new - old)],
            "regions_removed": [_short(k) for k in sorted(old - new)]}


def _conflict_message(photo_id: str, based_on: int, current: Review, changes: list[dict]) -> str:
    said = "; ".join(
        f"version {c['version']} by {c['reviewed_by']} at {c['reviewed']}: {c['state']}, "
        f"{len(c['regions_added'])} region(s) added, {len(c['regions_removed'])} removed"
        for c in changes)
    return (f"photo {photo_id} was saved by someone else after version {based_on}, which your save was "
            f"based on ({said}); nothing of yours was written and your regions and decision are kept "
            f"in this error's `refused`: look at the changes, then save again based on version "
            f"{current.version}")


class ReviewMixin:
    """The :class:`~workbench.vault.Vault` methods that review decisions and de-identified derivatives, consent-filtered, and shredding."""

    def set_review_state(self, photo_id: str, state: str, *, reason: str | None = None) -> None:
        """Mark a photo's redaction review state (``unreviewed``, ``in_review``, ``approved``, ``rejected``).

        A shortcut for :meth:`save_review` that keeps the photo's marked
        regions as they are and takes no version check (scripts, the demo).
        ``reason`` (e.g. why a redaction was rejected) goes into the signed
        record: a few words about the redaction, never an identifier.

        Raises
        ------
        InvalidInput
            ``state`` is not a review state.
        ConsentError
            ``approved`` for a photo whose patient withdrew consent.
        """
        current = self.review(photo_id)
        self.save_review(photo_id, state=state, reason=reason, based_on=current.version)

    def review(self, photo_id: str) -> Review:
        """The latest saved review of a photo (version 0, ``unreviewed``, when none was saved).

        Any role may read it: it holds boxes, kinds, staff user names and
        times, nothing identifying.
        """
        self._photo_row(photo_id)
        latest = None
        for row in self._table_rows("reviews"):
            if row[0] == photo_id:
                latest = row
        return Review(photo_id) if latest is None else _review_from_row(latest)

    def save_review(
        self,
        photo_id: str,
        *,
        based_on: int,
        state: str = "in_review",
        regions: Iterable[dict] | None = None,
        reason: str | None = None,
    ) -> Review:
        """Save a person's review of a photo: the regions they marked and their decision.

        One signed record, by a role that reviews redactions (admin,
        clinician, analyst). Regions are in the upright photo's pixels;
        a box partly outside the photo is clipped to it, an empty one (or
        one wholly outside) is dropped, and a box drawn right-to-left is
        turned round. Each region keeps the author and time of the save
        that first marked it; a new or changed one gets yours.

        Parameters
        ----------
        photo_id : str
        based_on : int
            The :attr:`Review.version` this save was made from (0 for a
            photo never reviewed). When another save landed since, this one
            is refused and nothing is written.
        state : str, default ``"in_review"``
            ``unreviewed``, ``in_review`` (a draft), ``approved`` or ``rejected``.
        regions : iterable of dict, optional
            ``{"kind": "tattoo", "box": [x, y, w, h]}`` each, kind one of
            :data:`REGION_KINDS`; the whole set for the photo (omitted:
            keep the regions of version ``based_on``). With
            ``"dismissed": true`` a region names a detector's box (as the
            editor showed it) that is *not* identifying, such as a "face"
            on a wound: builds leave that detection visible and say so
            (see :func:`workbench.deid.deidentify`'s ``dismissed``).
        reason : str, optional
            Why (a rejection's cause): a few words, never an identifier.

        Returns
        -------
        Review
            The new version.

        Raises
        ------
        ConflictError
            Another save landed after ``based_on``. ``changes`` lists each
            (who, when, state, regions added and removed) and ``refused``
            holds this save's content (state, reason, regions), so nothing
            is lost: look at the changes and save again from
            ``version``.
        ConsentError
            ``approved`` for a photo whose patient's consent was withdrawn
            or has expired for every purpose (``refused`` holds the save).
        AccessDenied
            The role does not review redactions.
        InvalidInput
            An unknown state or kind, or a box that is not four numbers.
        """
        if state not in REVIEW_STATES:
            raise InvalidInput(f"review state must be one of: {', '.join(REVIEW_STATES)}", state=state)
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            raise InvalidInput("a review reason is a short text (at most 500 characters)")
        reason = reason.strip() or None if isinstance(reason, str) else None
        if not isinstance(based_on, int) or isinstance(based_on, bool) or based_on < 0:
            raise InvalidInput("based_on is the version of the review you started from (0 for none)",
                               based_on=based_on)
        ref = self._photo_row(photo_id).patient_ref
        if self.role not in _log.REVIEW_ROLES:
            raise self._denied("review redactions", "originals", {"photo_id": photo_id})
        width, height = self._photo_size(photo_id)
        given = None if regions is None else _check_regions(regions)
        with self._write("review_state", {"photo_id": photo_id, "state": state,
                                          **({"reason": reason} if reason else {})}) as detail:
            history = [_review_from_row(r) for r in self._table_rows("reviews") if r[0] == photo_id]
            current = history[-1] if history else Review(photo_id)
            base = next((r for r in history if r.version == based_on), Review(photo_id))
            wanted = list(base.regions) if given is None else given
            refused = {"state": state, "reason": reason, "regions": [dict(r) for r in wanted]}
            if based_on != current.version:
                changes = [_change(old, new) for old, new in zip([base] + history[based_on:], history[based_on:])]
                raise ConflictError(_conflict_message(photo_id, based_on, current, changes),
                                    photo_id=photo_id, based_on=based_on, version=current.version,
                                    changes=changes, refused=refused)
            if state == "approved":
                events = self._consent_events().get(ref, [])
                if events and not _consent.active_grants(events, self._clock()):
                    raise ConsentError(
                        "this photo's patient withdrew consent (or it expired) for every purpose, so "
                        "its redaction cannot be approved for any use; save it as rejected or leave it",
                        photo_id=photo_id, patient_ref=ref, refused=refused)
            now = _iso(self._clock())
            kept = _attribute(_clip(wanted, width, height), current.regions, self.user, now)
            detail["version"] = current.version + 1
            detail["regions"] = len(kept)
            row = self._insert("reviews", (photo_id, current.version + 1, state, reason,
                                           json.dumps(kept, sort_keys=True), self.user, now))
        return _review_from_row(row)

    def review_history(self, photo_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Every saved review, oldest first: who decided what, when, with which regions.

        Columns: photo_id, version, state, reason, regions (a list of
        region dicts), reviewed_by, reviewed. ``photo_ids`` narrows it.
        """
        import pandas as pd

        wanted = None if photo_ids is None else set(photo_ids)
        rows = [_review_from_row(r) for r in self._table_rows("reviews") if wanted is None or r[0] in wanted]
        columns = ["photo_id", "version", "state", "reason", "regions", "reviewed_by", "reviewed"]
        return pd.DataFrame.from_records(
            [(r.photo_id, r.version, r.state, r.reason, [dict(x) for x in r.regions], r.reviewed_by,
              r.reviewed) for r in rows], columns=columns)

    def manual_regions(self, photo_ids: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """The regions people marked on each photo, in its latest review, for :func:`deidentify`.

        Every photo with at least one marked region, as ``{"kind", "box",
        "score": 1.0, "detector": "manual"}`` dicts, and ``"dismissed":
        true`` on the detector boxes a reviewer dismissed. A draft's regions
        to hide count too (whatever a person marked to hide is hidden); a
        dismissal counts only once the photo is approved, so a detection is
        left visible only by a decision that was made.
        """
        wanted = None if photo_ids is None else set(photo_ids)
        latest: dict[str, tuple] = {}
        for row in self._table_rows("reviews"):
            if wanted is None or row[0] in wanted:
                latest[row[0]] = row
        out = {}
        for photo_id, row in latest.items():
            approved = row[2] == "approved"
            regions = [{"kind": r["kind"], "box": list(r["box"]), "score": 1.0, "detector": "manual",
                        **({"dismissed": True} if r.get("dismissed") else {})}
                       for r in json.loads(row[4]) if approved or not r.get("dismissed")]
            if regions:
                out[photo_id] = regions
        return out

    def _review_states(self) -> dict[str, str]:
        """photo_id -> its latest review decision (photos never reviewed are absent)."""
        return {row[0]: row[2] for row in self._table_rows("reviews")}

    def _reviewers(self) -> dict[str, tuple[str, str]]:
        """photo_id -> (user, time) of the save that set its current state to approved."""
        out: dict[str, tuple[str, str]] = {}
        state: dict[str, str] = {}
        for row in self._table_rows("reviews"):
            photo_id, new = row[0], row[2]
            if new == "approved" and state.get(photo_id) != "approved":
                out[photo_id] = (row[5], row[6])
            elif new != "approved":
                out.pop(photo_id, None)
            state[photo_id] = new
        return out

    def _photo_size(self, photo_id: str) -> tuple[int, int]:
        """The upright width and height of a photo (verified rows)."""
        columns = _log.TABLES["photos"]
        at, w, h = columns.index("photo_id"), columns.index("width"), columns.index("height")
        for row in self._table_rows("photos"):
            if row[at] == photo_id:
                return int(row[w]), int(row[h])
        raise NotFound("no photo with that id in this vault", photo_id=photo_id)

    def put_derivative(self, photo_id: str, kind: str, data: bytes) -> str:
        """Store a de-identified derivative of a photo, encrypted with the derivatives tier."""
        if not kind.isidentifier():
            raise InvalidInput("a derivative kind is a short name such as 'deid_jpeg'")
        self._photo_row(photo_id)  # NotFound for a photo this vault does not hold
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
        import pandas as pd

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
        self._photo_row(photo_id)  # NotFound for a photo this vault does not hold
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
        import pandas as pd

        consented = self._consented(purpose)
        shredded = self._shredded()
        self._check_tables("deid_results")
        # latest = last stored: rows are only ever appended, in log order; two
        # stored at the same instant (a fixed clock, a coarse one) must not be
        # told apart by their random blob ids
        rows = self._query(
            "SELECT photo_id, blob_id, policy_digest, ext, width, height, regions, verified, "
            "warnings, created, created_by FROM deid_results ORDER BY rowid")
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
        # typed even when empty: a mask of an empty object column would select columns, not rows
        return pd.DataFrame.from_records(records, columns=columns).astype({"verified": bool})

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
