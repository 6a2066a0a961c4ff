"""Photos: ingest, consent-filtered queries, originals and their previews."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple

import numpy as np

from .. import _imageio
from .._progress import progress_bar
from ..errors import (
    ConflictError,
    InvalidInput,
    NotFound,
    WorkbenchError,
)
from . import _consent, _crypto, _log
from ._files import fsync_dir
from ._base import IDENTIFIER_COLUMNS, PHOTO_COLUMNS, _iso

if TYPE_CHECKING:
    import pandas as pd


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
    metadata_row: tuple
    pixels_row: tuple
    preview_row: tuple | None
    sealed_identifiers: bytes

    @property
    def rows(self) -> list[tuple]:
        return [self.metadata_row, self.pixels_row] + ([self.preview_row] if self.preview_row else [])


class _PhotoFiles(NamedTuple):
    """A photo's files (blob ids) and its patient, from verified rows.

    The file as imported is split (:func:`workbench._imageio.split_metadata`):
    ``pixels`` decodes to its pixels and holds nothing else; ``metadata``
    holds the rest, identifiers and all, and how to join the two again.
    """

    metadata: str          # identities tier
    pixels: str            # originals tier
    preview: str | None    # None until rendered
    patient_ref: str


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


def _check_filters(filters: dict) -> None:
    for column in filters:
        if column not in PHOTO_COLUMNS:
            raise InvalidInput(
                f"cannot filter on {column!r}; filter on one of: {', '.join(PHOTO_COLUMNS)}"
            )


def _apply_filters(frame: pd.DataFrame, filters: dict) -> pd.DataFrame:
    """Equality, any-of (list/set) or inclusive range ((low, high) tuple) per column."""
    import pandas as pd

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


class PhotosMixin:
    """The :class:`~workbench.vault.Vault` methods that photos."""

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

        The file is split (:func:`workbench._imageio.split_metadata`): a file
        holding its pixels alone is sealed to the originals tier, which the
        roles that review redactions hold, and the rest (its metadata, which
        can name the patient, the camera and the clinic, and how to join the
        two again) to the identities tier. The photo counts as
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
        self._keys.get("identities_pub", "add photos")
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
                    result = prepared
                else:
                    result, ref = self._commit_photo(prepared, patient, ref, fields)
            except WorkbenchError as exc:
                return PhotoResult("error", error=exc)
            if isinstance(result.error, ConflictError):  # someone may be filing under the wrong patient
                self._record("ingest_refused", {"photo_id": result.error.data.get("photo_id"),
                                                "reason": "stored under another patient"})
            return result

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
            info = _imageio.check(data)
            pixels, rest = _imageio.split_metadata(data)
            preview = None
        else:  # decoded once, for the pixels file and the preview alike
            pixels, rest, preview, info = _imageio.split_with_preview(data)
        photo_id = _crypto.random_id()
        stored: list[tuple] = []
        try:
            for kind, tier, plaintext in (("metadata", "identities", rest), ("pixels", "originals", pixels),
                                          ("preview", "originals", preview)):
                if plaintext is not None:
                    stored.append(self._store_blob(kind, tier, plaintext, photo_id))
        except BaseException:
            for row in stored:
                os.unlink(self._blob_path(row[0]))
            raise
        metadata_row, pixels_row, preview_row = stored + [None] * (3 - len(stored))
        identifiers = {
            "original_name": original_name,
            "capture_time": info.capture_time.isoformat() if info.capture_time else None,
            "camera_make": info.camera_make,
            "camera_model": info.camera_model,
            "camera_serial": info.camera_serial,
        }
        sealed = self._seal_record("identities", identifiers, "photo:" + photo_id)
        return _Prepared(photo_id, content_key, info, metadata_row, pixels_row, preview_row, sealed)

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
                p.metadata_row[0], p.pixels_row[0], p.sealed_identifiers))
        return PhotoResult("added", photo_id=p.photo_id), ref

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
        import pandas as pd

        purpose = _consent.check_purpose(purpose)
        _check_filters(filters)
        if include_identifiers:
            self._need("identities", "see identifiers", {"purpose": purpose})
        now = self._clock()
        events = self._consent_events()
        reviews = self._review_states()
        records = []
        for (photo_id, ref, site, lat, dx, cdate, fmt, w, h, ingested, sealed) in self._photo_listing():
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
        import pandas as pd

        purpose = _consent.check_purpose(purpose)
        _check_filters(filters)
        now = self._clock()
        events = self._consent_events()
        reviews = self._review_states()
        out = []
        for (photo_id, ref, site, lat, dx, cdate, fmt, w, h, ingested, _) in self._photo_listing():
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

    def photo_count(self) -> int:
        """How many photos the vault holds, whatever their consent."""
        self._check_tables("photos")
        return int(self._query("SELECT COUNT(*) FROM photos")[0][0])

    def _add_identifiers(self, frame: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

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

    def _photo_listing(self) -> list[tuple]:
        """Every photo as ``(photo_id, patient_ref, body_site, laterality, diagnosis, capture_date,
        format, width, height, ingested, sealed identifiers)``, by ingest time (verified rows)."""
        c = {name: n for n, name in enumerate(_log.TABLES["photos"])}
        rows = sorted(self._table_rows("photos"), key=lambda r: (r[c["ingested"]], r[c["photo_id"]]))
        keys = [c[k] for k in ("photo_id", "patient_ref", "body_site", "laterality", "diagnosis",
                               "capture_date", "format", "width", "height", "ingested", "identifiers")]
        return [tuple(r[k] for k in keys) for r in rows]

    def _photo_row(self, photo_id: str) -> _PhotoFiles:
        """A photo's files and patient (verified rows)."""
        return self._photo_rows([photo_id])[photo_id]

    def _photo_rows(self, photo_ids: list[str]) -> dict[str, _PhotoFiles]:
        """:meth:`_photo_row` of many photos in one query; ``NotFound`` for an unknown one."""
        self._check_tables("photos", "blobs")
        wanted = list(dict.fromkeys(photo_ids))
        found = self._query_in(
            "SELECT photo_id, metadata_blob, pixels_blob, (SELECT blob_id FROM blobs b "
            "WHERE b.photo_id = p.photo_id AND b.kind = 'preview' ORDER BY b.rowid DESC LIMIT 1), "
            "patient_ref FROM photos p WHERE photo_id IN ({})", wanted)
        for photo_id in wanted:
            if photo_id not in found:
                raise NotFound("no photo with that id in this vault", photo_id=photo_id)
        return {photo_id: _PhotoFiles(*row) for photo_id, row in found.items()}

    def read_original_file(self, photo_id: str, *, purpose: str = "care") -> bytes:
        """The identifiable original file's bytes, metadata and all, decrypted in memory (audited).

        Refused (``ConsentError``) when the patient is not consented for
        ``purpose`` now; ``care`` by default, which also covers photos stored
        without consent.

        The file holds identifiers in its metadata (camera serial, owner,
        capture time, sometimes a name), which ingest sealed to the
        identities tier, apart from its pixels: only roles that may see
        identities (admin, clinician) can put it back together, through the
        workbench or around it. Others see its pixels through
        :meth:`load_original`.
        """
        opened = self._open_photo_files(photo_id, ("metadata", "pixels"),
                                        "read original files with their metadata", purpose)
        return _imageio.join_metadata(opened["pixels"], opened["metadata"])

    def _read_pixels_file(self, photo_id: str, action: str, purpose: str = "care") -> bytes:
        """The original's pixels-only file (a JPEG or PNG that decodes to the same upright pixels)."""
        return self._open_photo_files(photo_id, ("pixels",), action, purpose)["pixels"]

    def _open_photo_files(self, photo_id: str, kinds: tuple[str, ...], action: str, purpose: str) -> dict:
        """Decrypt a photo's ``pixels`` and/or ``metadata`` file, refused (audited) without the tier
        each is sealed to (the ingest rule's) or without consent for ``purpose``; one audit record."""
        files = self._photo_row(photo_id)
        detail = {"photo_id": photo_id, "patient_ref": files.patient_ref}
        for kind in kinds:
            self._need(_log.RULES["ingest"].files[kind], action, detail)
        self._require_consent({photo_id: files.patient_ref}, purpose, action)
        opened = self._open_blobs([getattr(files, kind) for kind in kinds], action, detail)
        self._record("decrypt_original", detail)
        return {kind: opened[getattr(files, kind)] for kind in kinds}

    def load_original(self, photo_id: str, *, purpose: str = "care") -> np.ndarray:
        """Decrypted, identifiable RGB pixels of an original (EXIF orientation applied).

        Never written to disk. Raises ``AccessDenied`` for roles without the
        originals key (photographer, researcher, educator).
        """
        return _imageio.decode(self._read_pixels_file(photo_id, "read original photos", purpose))

    def load_previews(self, photo_ids: Iterable[str], *, purpose: str = "care") -> dict[str, bytes]:
        """Small JPEG previews of originals (identifiable), decrypted in memory.

        One audit record covers the whole batch, so a gallery page costs one
        append, not one per thumbnail. A preview not rendered yet is rendered
        now from its original and stored (see :meth:`render_previews`).

        ``purpose`` is why you look (``care`` by default: reviewing the
        patient's own record, which also covers photos stored without
        consent); a photo whose patient is not consented for it now is
        refused, never shown.

        Raises
        ------
        AccessDenied
            The role has no originals key.
        ConsentError
            A photo's patient is not consented for ``purpose`` now.
        NotFound
            An unknown photo id.
        InvalidInput
            An original whose pixel data cannot be decoded (it stays in the
            vault byte for byte as it was imported).
        """
        photo_ids = list(photo_ids)
        self._need("originals", "view previews of originals", {"photos": len(photo_ids)})
        rows = self._photo_rows(photo_ids)
        self._require_consent({p: row.patient_ref for p, row in rows.items()}, purpose, "view previews of originals")
        blobs = {photo_id: row.preview for photo_id, row in rows.items()}
        blobs.update(self._render_previews({p: row for p, row in rows.items() if row.preview is None}))
        files = self._open_blobs([blobs[p] for p in photo_ids], "view previews", {"photos": len(photo_ids)})
        out = {photo_id: files[blobs[photo_id]] for photo_id in photo_ids}
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
            todo = {r[0]: _PhotoFiles(r[1], r[2], None, r[3]) for r in self._query(
                "SELECT photo_id, metadata_blob, pixels_blob, patient_ref FROM photos p WHERE NOT EXISTS "
                "(SELECT 1 FROM blobs b WHERE b.photo_id = p.photo_id AND b.kind = 'preview') ORDER BY photo_id")}
        else:
            rows = {p: self._photo_row(p) for p in dict.fromkeys(photo_ids)}
            todo = {p: row for p, row in rows.items() if row.preview is None}
        self._need("originals", "render previews of originals", {"photos": len(todo)})
        return len(self._render_previews(todo, workers=workers))

    def _render_previews(self, rows: dict[str, _PhotoFiles], *, workers: int = 2) -> dict[str, str]:
        """Render previews for ``rows`` (photo id: its ``_photo_row``); return photo id: preview blob id."""
        if not rows:
            return {}

        def render(photo_id: str) -> tuple:
            files = rows[photo_id]
            detail = {"photo_id": photo_id, "patient_ref": files.patient_ref}
            data = self._open_blob(files.pixels, "render previews", detail)
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
                current = self._photo_row(photo_id).preview
                if current is not None:  # another reader rendered it meanwhile
                    os.unlink(self._blob_path(row[0]))
                    stored[photo_id] = current
                    continue
                self._insert_blob(row)
                stored[photo_id] = row[0]
        return stored

    def _store_import_manifest(self, entries: list[dict], detail: dict) -> str:
        """Seal an import's manifest to the identities tier and record it (action ``card_import``)."""
        data = json.dumps({"files": entries}, sort_keys=True).encode()
        row = self._store_blob("import_manifest", "identities", data, None)
        fsync_dir(self._blob_path(row[0]).parent)
        with self._write("card_import", {**detail, "manifest": row[0]}):
            self._insert_blob(row)
        return row[0]

    def read_import_manifest(self, manifest_id: str) -> list[dict]:
        """The files of one card import or capture run, as its manifest recorded them (audited).

        Each entry has ``file`` (its name on the card or camera), ``size``,
        ``sha256``, ``status``, ``photo_id``, ``verified``, ``removed`` and
        ``error``. Card file names are identifiers, so the manifest is sealed
        to the identities tier: admins and clinicians may read it.

        Raises
        ------
        AccessDenied
            The role has no identities key.
        NotFound
            No manifest with that id.
        """
        self._check_tables("blobs")
        rows = self._query("SELECT kind FROM blobs WHERE blob_id = ?", (manifest_id,))
        if not rows or rows[0][0] != "import_manifest":
            raise NotFound("no import manifest with that id", manifest_id=manifest_id)
        detail = {"manifest": manifest_id}
        self._need("identities", "read import manifests", detail)
        data = self._open_blob(manifest_id, "read import manifests", detail)
        self._record("read_import_manifest", detail)
        return json.loads(data)["files"]

    def add_raw_companion(self, photo_id: str, data: bytes, extension: str) -> tuple[str, str]:
        """Keep the raw file of a RAW+JPEG shot (CR3, CR2, DNG) with the photo made from its JPEG.

        The raw file is stored whole, as the camera wrote it: its metadata
        (serial numbers, owner, capture time) cannot be split from its
        pixels as a JPEG's can, so it is sealed to the identities tier
        (admins and clinicians read it back with :meth:`read_raw_companion`).
        Adding the same raw file again stores nothing: its blob id is a keyed
        digest of its content.

        Returns
        -------
        (status, blob_id)
            ``"added"`` or ``"present"``, and the raw file's id.

        Raises
        ------
        UnsupportedFormat
            The bytes are not a raw file of the kind ``extension`` names.
        NotFound
            No photo with that id.
        AccessDenied
            The role may not add photos.
        """
        if self.role not in _log.INGEST_ROLES:
            raise self._denied("add raw files", "originals", {"photo_id": photo_id})
        _imageio.check_raw(data, extension)
        self._photo_row(photo_id)
        lookup_key = self._keys.get("lookup", "add raw files")
        blob_id = _crypto.keyed_digest(lookup_key, "raw", data)[:32]
        self._check_tables("blobs")
        if self._query("SELECT 1 FROM blobs WHERE blob_id = ? AND kind = 'raw' AND photo_id = ?",
                       (blob_id, photo_id)):
            return "present", blob_id
        row = self._store_blob("raw", "identities", data, photo_id, blob_id=blob_id)
        fsync_dir(self._blob_path(row[0]).parent)
        with self._write("raw_companion", {"photo_id": photo_id, "raw": blob_id, "size": len(data)}):
            self._insert_blob(row)
        return "added", blob_id

    def raw_companions(self, photo_id: str) -> list[str]:
        """The ids of the raw files kept with a photo (see :meth:`add_raw_companion`)."""
        self._check_tables("blobs")
        return [r[0] for r in self._query(
            "SELECT blob_id FROM blobs WHERE photo_id = ? AND kind = 'raw' ORDER BY rowid", (photo_id,))]

    def read_raw_companion(self, photo_id: str, *, purpose: str = "care") -> bytes:
        """The raw file kept with a photo, byte for byte as the camera wrote it (audited).

        Raises
        ------
        AccessDenied
            The role has no identities key.
        NotFound
            The photo has no raw file.
        ConsentError
            The photo's patient is not consented for ``purpose`` now.
        """
        files = self._photo_row(photo_id)
        detail = {"photo_id": photo_id, "patient_ref": files.patient_ref}
        self._need("identities", "read raw files", detail)
        self._require_consent({photo_id: files.patient_ref}, purpose, "read raw files")
        raws = self.raw_companions(photo_id)
        if not raws:
            raise NotFound("this photo has no raw file kept with it", photo_id=photo_id)
        data = self._open_blobs(raws[-1:], "read raw files", detail)[raws[-1]]
        self._record("decrypt_original", {**detail, "file": "raw"})
        return data

    def verify_photo(self, photo_id: str) -> bool:
        """True when a photo's files (raw companions included) are present and match their recorded digests.

        A file this session wrote was read back then, decrypted to the very
        bytes written and hashed (:meth:`_store_blob`); while its size and
        modification time are still those it had then and that digest is
        the one recorded, it is not hashed a second time (on a 20 MP photo
        that was a fifth of an import's time on one core). Any change to the
        file since makes it hashed again.
        """
        files = self._photo_row(photo_id)
        wanted = [b for b in (files.metadata, files.pixels, files.preview) if b is not None]
        wanted += self.raw_companions(photo_id)
        rows = self._query(f"SELECT blob_id, file_sha256 FROM blobs WHERE blob_id IN ({', '.join('?' * len(wanted))})",
                           tuple(wanted))
        if len(rows) != len(wanted):
            return False
        for blob_id, digest in rows:
            path = self._blob_path(blob_id)
            try:
                st = os.stat(path)
                if self._read_back.get(blob_id) == (digest, st.st_size, st.st_mtime_ns):
                    continue
                if _crypto.sha256_hex(path.read_bytes()) != digest:
                    return False
            except OSError:
                return False
        return True
