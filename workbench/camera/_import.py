"""Card import: from a camera in storage mode or a mounted card folder into the vault.

Files are read into memory only and go through the vault's own ingest
(:meth:`Vault.add_photos`: encrypt, write, read back, keyed-digest
duplicates). A card file is deleted only when asked, and only after its photo's
vault files were checked against their recorded digests
(:meth:`Vault.verify_photo`) and the file on the card is still the one that
was read. Deletions go in batches (:data:`DELETE_BATCH`); each batch is a
signed log record, written just before its files go, so no deletion is ever
unrecorded (a deletion that then fails is reported, and the next run deletes
the file again). At the end, a manifest
of every file (name, size, digest, photo id, verified, removed) is sealed to
the identities tier and recorded (action ``card_import``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .._progress import progress_bar
from ..errors import CameraError, IntegrityError, InvalidInput, UnsupportedFormat, WorkbenchError
from ..ingest import CATALOGUE_EXTENSIONS, CATALOGUE_NAMES, PHOTO_EXTENSIONS, SYSTEM_FOLDERS, collect
from ..vault._files import read_input
from ._device import Camera, CameraFile

#: verified card files deleted under one signed record (one index commit instead of one each)
DELETE_BATCH = 16
#: raw formats a camera writes beside a JPEG of the same shot (RAW+JPEG mode)
RAW_EXTENSIONS = frozenset({".cr3", ".cr2", ".dng"})
_JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})

_RAW_WITHOUT_JPEG = ("the JPEG of this RAW+JPEG shot (same folder and name) was not stored, so its raw "
                     "file was not taken in either and both stay on the card; see the JPEG's entry, "
                     "then run the import again")


@dataclass
class ImportedFile:
    """What an import did with one file on the card or camera.

    ``status`` is ``"imported"`` (a new photo), ``"present"`` (the vault
    already holds this file under this patient), ``"failed"`` (``error`` says
    why; the file stays on the card), ``"left"`` (the raw file of a RAW+JPEG
    pair whose JPEG was not stored: both stay on the card) or ``"skipped"``
    (not a photo; never read). The raw file of a pair has its JPEG's
    ``photo_id``: it is kept with that photo.
    ``file`` is its name on the card: an identifier, shown to the operator
    and sealed in the manifest, never logged.
    """

    file: str
    status: str | None = None
    size: int | None = None
    sha256: str | None = None
    photo_id: str | None = None
    verified: bool = False
    removed: bool = False
    error: WorkbenchError | None = None
    _digest: Future | None = field(default=None, repr=False, compare=False)  # the SHA-256, being taken

    def manifest_entry(self) -> dict:
        return {"file": self.file, "status": self.status, "size": self.size, "sha256": self.sha256,
                "photo_id": self.photo_id, "verified": self.verified, "removed": self.removed,
                "error": None if self.error is None else f"{type(self.error).__name__}: {self.error}"}


@dataclass
class ImportReport:
    """Every file an import or capture run met, in order, and the id of its sealed manifest."""

    files: list[ImportedFile] = field(default_factory=list)
    manifest_id: str | None = None

    def _with(self, status: str) -> list[ImportedFile]:
        return [f for f in self.files if f.status == status]

    @property
    def imported(self) -> list[ImportedFile]:
        return self._with("imported")

    @property
    def present(self) -> list[ImportedFile]:
        return self._with("present")

    @property
    def failed(self) -> list[ImportedFile]:
        return self._with("failed")

    @property
    def left(self) -> list[ImportedFile]:
        return self._with("left")

    @property
    def skipped(self) -> list[ImportedFile]:
        return self._with("skipped")

    @property
    def removed(self) -> list[ImportedFile]:
        return [f for f in self.files if f.removed]

    @property
    def ok(self) -> bool:
        """True when no file failed (left raw files and skipped non-photos are not failures)."""
        return not self.failed

    def summary(self) -> str:
        """Counts, then one line per kind of failure with its advice (no file names)."""
        parts = [f"{len(self.imported)} imported", f"{len(self.present)} already present",
                 f"{len(self.failed)} failed"]
        raws = sum(os.path.splitext(f.file)[1].lower() in RAW_EXTENSIONS for f in self.imported)
        if raws:
            parts[0] += f" ({raws} of them raw files kept with their JPEG's photo)"
        if self.left:
            parts.append(f"{len(self.left)} left (raw files whose JPEG was not stored, on the card with it)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (not photos)")
        parts.append(f"{len(self.removed)} removed from the card")
        line = ", ".join(parts) + f", of {len(self.files)} files"
        reasons = Counter(f"{type(f.error).__name__}: {f.error}" for f in self.failed if f.error)
        return "\n".join([line] + [f"  failed ({n}): {why}" for why, n in reasons.most_common()])


# --- sources ------------------------------------------------------------------


class _FolderSource:
    """A mounted card (or any folder): files read with plain file I/O."""

    kind = "folder"

    def __init__(self, root: Path):
        self.root = root
        self._stat: dict[str, os.stat_result] = {}

    def listing(self) -> list[tuple[CameraFile, str | None]]:
        if not self.root.is_dir():
            raise InvalidInput("the card folder does not exist or is not a folder; check the "
                               "mount point (e.g. /media/$USER/EOS_DIGITAL)")
        return [(CameraFile(str(p.parent), p.name, None), skip) for p, skip in collect([self.root])]

    def display(self, f: CameraFile) -> str:
        return str(Path(f.path).relative_to(self.root))

    def read(self, f: CameraFile) -> bytes:
        before = os.stat(f.path)
        data = read_input(f.path)
        self._stat[f.path] = before
        return data

    def unchanged(self, f: CameraFile, size: int) -> bool:
        try:
            now = os.stat(f.path)
        except OSError:
            return False
        before = self._stat.get(f.path)
        return before is not None and now.st_size == size and now.st_mtime_ns == before.st_mtime_ns

    def remove(self, f: CameraFile) -> None:
        os.unlink(f.path)


class _CameraSource:
    """A camera (or a card through libgphoto2's Directory Browse driver): files downloaded to memory."""

    kind = "camera"

    def __init__(self, camera: Camera):
        self.camera = camera

    def listing(self) -> list[tuple[CameraFile, str | None]]:
        out = []
        for f in self.camera.files("/"):
            ext = os.path.splitext(f.name)[1].lower()
            folders = [p for p in f.folder.split("/") if p]
            hidden = f.name.startswith(".") or any(p.startswith(".") or p.lower() in SYSTEM_FOLDERS
                                                   for p in folders)
            if ext in PHOTO_EXTENSIONS:
                if not f.name.startswith("."):
                    out.append((f, None))
            elif not (hidden or ext in CATALOGUE_EXTENSIONS or f.name.lower() in CATALOGUE_NAMES):
                out.append((f, ext))
        return out

    def display(self, f: CameraFile) -> str:
        return f.path

    def read(self, f: CameraFile) -> bytes:
        return self.camera.download(f)

    def unchanged(self, f: CameraFile, size: int) -> bool:
        try:
            return self.camera.size(f) == size
        except CameraError:
            return False

    def remove(self, f: CameraFile) -> None:
        self.camera.delete(f)


def _stem(f: CameraFile) -> tuple[str, str]:
    """What ties the files of one shot together: folder and name without extension."""
    return f.folder, os.path.splitext(f.name)[0].lower()


def _ext(f: CameraFile) -> str:
    return os.path.splitext(f.name)[1].lower()


def _pairs(listing: list[tuple[CameraFile, str | None]]) -> set[tuple[str, str]]:
    """The shots of ``listing`` that have both a JPEG and a raw file (RAW+JPEG mode)."""
    photos = [f for f, skip in listing if skip is None]
    jpegs = {_stem(f) for f in photos if _ext(f) in _JPEG_EXTENSIONS}
    return {_stem(f) for f in photos if _ext(f) in RAW_EXTENSIONS and _stem(f) in jpegs}


# --- the run --------------------------------------------------------------------


class _Importer:
    """One import or capture run: files in, photos verified, card copies removed, manifest sealed."""

    def __init__(self, vault, source, *, patient: str, body_site: str, laterality: str | None,
                 diagnosis: str | None, allow_no_consent: bool, remove: bool, workers: int,
                 progress: Callable[[int, int, ImportedFile], None] | None, desc: str,
                 preview: Callable[[str, bytes], None] | None = None):
        self.vault, self.source, self.remove = vault, source, remove
        self.preview = preview
        self.fields = dict(patient=patient, body_site=body_site, laterality=laterality,
                           diagnosis=diagnosis, allow_no_consent=allow_no_consent)
        self.workers, self.progress, self.desc = workers, progress, desc
        self.report = ImportReport()
        self.gone: CameraError | None = None  # the camera stopped answering: attempt no more
        self.paired: set[tuple[str, str]] = set()  # shots of RAW+JPEG pairs
        self._doomed: list[list[tuple[CameraFile, ImportedFile]]] = []  # verified, to delete next
        self._hasher: ThreadPoolExecutor | None = None

    def run(self, listing: list[tuple[CameraFile, str | None]]) -> None:
        """Import ``listing`` (files with ``None``, or the extension of a non-photo to skip).

        The raw file of a RAW+JPEG shot is kept with the photo made from its
        JPEG (:meth:`Vault.add_raw_companion`), after the JPEG; the pair
        leaves the card together, once both are verified in the vault.
        """
        self.paired = _pairs(listing)
        todo: list[tuple[CameraFile, ImportedFile]] = []
        raws: list[tuple[CameraFile, ImportedFile]] = []
        for f, skip in listing:
            entry = ImportedFile(self.source.display(f), size=f.size)
            if skip is not None:
                entry.status = "skipped"
                entry.error = UnsupportedFormat(
                    f"not a photo ({skip or 'no extension'}): not read, left on the card", extension=skip)
            elif _stem(f) in self.paired and _ext(f) in RAW_EXTENSIONS:
                raws.append((f, entry))
                continue
            todo.append((f, entry))
        readable = [(f, entry) for f, entry in todo if entry.status is None]
        results = iter(self.vault.add_photos(
            ((self._fetch(f, entry), f.name) for f, entry in readable),
            workers=self.workers, **self.fields))
        total = len(todo) + len(raws)
        jpegs: dict[tuple[str, str], tuple[CameraFile, ImportedFile]] = {}
        self._hasher = ThreadPoolExecutor(max_workers=1)  # hashlib releases the GIL: a core of its own
        bar = progress_bar(total=total, desc=self.desc)
        try:
            for number, (f, entry) in enumerate(todo + raws, start=1):
                if number == len(todo) + 1:
                    self._flush()  # the JPEGs' batch, before their raw files are read
                if number > len(todo):
                    self._companion(f, entry, *jpegs.get(_stem(f), (None, None)))
                elif entry.status is None:
                    self._settle(f, entry, next(results))
                    if _stem(f) in self.paired:
                        jpegs[_stem(f)] = (f, entry)
                if entry._digest is not None:
                    entry.sha256, entry._digest = entry._digest.result(), None
                self.report.files.append(entry)
                bar.update(1)
                if self.progress is not None:
                    self.progress(number, total, entry)
        finally:
            try:
                if self.gone is None:
                    self._flush()
            finally:
                bar.close()
                self._hasher.shutdown(wait=True)

    def _fetch(self, f: CameraFile, entry: ImportedFile) -> Callable[[], bytes]:
        """Read the file into memory; its SHA-256 (for the manifest) is taken beside the ingest's own hashing."""
        def fetch() -> bytes:
            if self.gone is not None:
                raise CameraError("not attempted: the camera had stopped answering earlier in this "
                                  "run; reconnect it and run the command again", code=self.gone.code,
                                  gone=True)
            try:
                data = self.source.read(f)
            except CameraError as exc:
                if exc.data.get("gone"):
                    self.gone = exc
                raise
            entry.size = len(data)
            entry._digest = self._hasher.submit(lambda: hashlib.sha256(data).hexdigest())
            if self.preview is not None:
                self.preview(_ext(f), data)
            return data
        return fetch

    def _companion(self, f: CameraFile, entry: ImportedFile, jpeg: CameraFile | None,
                   photo: ImportedFile | None) -> None:
        """Keep a raw file with its JPEG's photo; remove both from the card once both are verified."""
        if photo is None or photo.status not in ("imported", "present") or not photo.verified:
            entry.status, entry.error = "left", InvalidInput(_RAW_WITHOUT_JPEG)
            return
        entry.photo_id = photo.photo_id
        try:
            data = self._fetch(f, entry)()
            status, _ = self.vault.add_raw_companion(photo.photo_id, data, _ext(f))
        except WorkbenchError as exc:
            entry.status, entry.error = "failed", exc
            return
        if not self._verified(entry, photo.photo_id, "added" if status == "added" else "duplicate",
                              "the pair was kept on the card"):
            return
        if self.remove:  # the raw file first: a JPEG left alone is picked up as present next time
            self._remove((f, entry), (jpeg, photo))

    def _verified(self, entry: ImportedFile, photo_id: str, status: str, kept: str) -> bool:
        """Mark the entry imported or present, and verified; or failed, saying what was kept."""
        entry.status = "imported" if status == "added" else "present"
        entry.verified = self.vault.verify_photo(photo_id)
        if not entry.verified:
            entry.status = "failed"
            entry.error = IntegrityError(
                f"stored, but its vault copy did not verify, so {kept}; run "
                "`workbench vault check` and then this import again", photo_id=photo_id)
        return entry.verified

    def _settle(self, f: CameraFile, entry: ImportedFile, result) -> None:
        """Turn one ingest result into the entry; verify, and remove the card copy if asked."""
        entry.photo_id = result.photo_id
        if result.status not in ("added", "duplicate"):
            entry.status, entry.error = "failed", result.error
            return
        if not self._verified(entry, result.photo_id, result.status, "the card copy was kept"):
            return
        if not self.remove or _stem(f) in self.paired:
            return  # the JPEG of a RAW+JPEG pair goes with its raw file (_companion)
        self._remove((f, entry))

    def _remove(self, *files: tuple[CameraFile, ImportedFile]) -> None:
        """Delete verified files from the card, in order (a pair: raw file, then JPEG), in the next batch.

        A file is deleted only if it is still the file that was read. The
        batch's signed record (one per :data:`DELETE_BATCH` files) is written
        just before its files go, so no deletion is ever unrecorded; a
        deletion that then fails is reported, and the next run deletes the
        file again.
        """
        group = []
        for f, entry in files:
            if not self.source.unchanged(f, entry.size):
                entry.status = "failed"
                entry.error = InvalidInput(
                    "the file on the card changed (or went) after it was read, so it was not deleted; "
                    "run the import again", photo_id=entry.photo_id)
                break  # what comes after it (a pair's JPEG) stays with it
            group.append((f, entry))
        if group:
            self._doomed.append(group)
        if sum(map(len, self._doomed)) >= DELETE_BATCH:
            self._flush()

    def _flush(self) -> None:
        """Record the batch of deletions, then delete its files (see :meth:`_remove`)."""
        groups, self._doomed = self._doomed, []
        if not groups:
            return
        entries = [entry for group in groups for _, entry in group]
        action = "camera_delete" if self.source.kind == "camera" else "card_delete"
        self.vault._record(action, {"photo_ids": sorted({e.photo_id for e in entries}),
                                    "files": len(entries), "verified": True})
        for group in groups:
            for f, entry in group:
                try:
                    self.source.remove(f)
                except (OSError, CameraError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                    entry.status = "failed"
                    entry.error = InvalidInput(f"stored and verified, but not deleted from the card ({reason}); "
                                               "run the import again to delete it", photo_id=entry.photo_id)
                    break  # a pair's JPEG stays with its raw file
                entry.removed = True

    def finish(self) -> ImportReport:
        """Seal the manifest of every file met (if any) and return the report."""
        files = self.report.files
        if files:
            counts = Counter(f.status for f in files)
            detail = {"source": self.source.kind, "run": self.desc, "files": len(files),
                      **{k: counts.get(k, 0) for k in ("imported", "present", "failed", "left", "skipped")},
                      "removed": sum(f.removed for f in files)}
            self.report.manifest_id = self.vault._store_import_manifest(
                [f.manifest_entry() for f in files], detail)
        return self.report


def import_card(
    vault,
    card: str | os.PathLike | Camera,
    *,
    patient: str,
    body_site: str,
    laterality: str | None = None,
    diagnosis: str | None = None,
    remove: bool = False,
    allow_no_consent: bool = False,
    progress: Callable[[int, int, ImportedFile], None] | None = None,
    workers: int = 2,
) -> ImportReport:
    """Import every photo on a memory card or camera into the vault, for one patient.

    Files are read into memory only (never written to disk in plaintext) and
    stored through the vault's ingest. Running it again is safe: files the
    vault holds already (found by a keyed digest of their content) are
    ``"present"``, not stored twice, and with ``remove`` they are deleted
    from the card then. A file is deleted from the card only after its vault
    copy was verified and only if the card still holds the very file that
    was read; a failed, left or skipped file is never deleted. A RAW+JPEG
    pair (same folder and name, e.g. ``IMG_0001.CR3`` beside
    ``IMG_0001.JPG``) is one photo: the JPEG is imported and the raw file
    kept with it, sealed to the identities tier
    (:meth:`Vault.read_raw_companion`); the pair leaves the card together,
    once both are verified. A manifest of every
    file is sealed to the identities tier (:meth:`Vault.read_import_manifest`).

    Parameters
    ----------
    vault : Vault
        An open vault whose role may add photos.
    card : path-like or Camera
        A mounted card folder (its root or ``DCIM``), or a camera in storage
        mode from :func:`open_camera` (``open_camera("disk:/media/card")``
        reads a folder through libgphoto2).
    patient : str
        The patient's id (MRN).
    body_site, laterality, diagnosis : str
        Non-identifying fields stored with each photo.
    remove : bool
        Delete each file from the card once its photo is verified in the vault.
    allow_no_consent : bool
        Store photos of a patient with no consent on record (care use only).
    progress : callable, optional
        Called as ``progress(done, total, imported_file)`` after each file.
    workers : int
        Threads that validate and encrypt ahead of the index writer.

    Returns
    -------
    ImportReport
        One entry per file found, and the id of the sealed manifest.

    Raises
    ------
    ConsentError
        Before anything is read: an unknown patient, or one with no consent
        on record (unless ``allow_no_consent``).
    CameraError
        The camera could not be listed. A camera that fails later fails the
        files it touches (each entry says why) and nothing more is attempted
        once it stops answering; nothing is deleted from it after that.
    """
    vault._require_patient(patient, allow_no_consent)
    source = _CameraSource(card) if isinstance(card, Camera) else _FolderSource(Path(card))
    importer = _Importer(vault, source, patient=patient, body_site=body_site, laterality=laterality,
                         diagnosis=diagnosis, allow_no_consent=allow_no_consent, remove=remove,
                         workers=workers, progress=progress, desc="import")
    listing = source.listing()
    try:
        importer.run(listing)
    finally:
        report = importer.finish()
    return report
