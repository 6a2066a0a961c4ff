"""Bring photos into a vault from files, folders and memory cards."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from ._progress import progress_bar
from .errors import InvalidInput
from .vault import IngestReport, PhotoResult, Vault
from .vault._files import read_input

#: extensions picked up when a folder (or a card's DCIM tree) is given
PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".hif", ".avif",
     ".cr3", ".cr2", ".dng"}
)


def collect(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into the list of files to ingest, in a stable order.

    Files named explicitly are always taken (an unsupported one becomes a
    per-file error); inside folders only photo extensions are taken, so a
    card's catalogue files and movies are left alone.
    """
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = [
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS and not p.name.startswith(".")
            ]
            out.extend(sorted(found))
        else:
            out.append(path)
    return out


def ingest(
    vault: Vault,
    paths: Iterable[str | os.PathLike],
    *,
    patient: str,
    body_site: str,
    laterality: str | None = None,
    diagnosis: str | None = None,
    remove_source: bool = False,
    allow_no_consent: bool = False,
    progress: Callable[[int, int, PhotoResult], None] | None = None,
    workers: int = 2,
) -> IngestReport:
    """Ingest files and folders for one patient.

    Each file is read, validated by decoding, encrypted, written, read back
    and compared before it counts; a bad file becomes an ``"error"`` result
    and the rest go on. With ``remove_source`` a source file is deleted only
    after its photo is verified in the vault (also for a duplicate that is
    already there).

    Parameters
    ----------
    vault : Vault
        An open vault whose role may add photos.
    paths : iterable of path-like
        Files, folders or a memory card's mount point.
    patient : str
        The patient's id (MRN).
    body_site, laterality, diagnosis : str
        Non-identifying fields stored with each photo.
    remove_source : bool
        Delete each source file once its photo is verified in the vault.
    allow_no_consent : bool
        Store photos of a patient with no consent on record (care use only).
    progress : callable, optional
        Called as ``progress(done, total, result)`` after each file.
    workers : int
        Threads that validate and encrypt ahead of the
        index writer (0: do everything in the calling thread).

    Returns
    -------
    IngestReport

    Raises
    ------
    ConsentError
        Before any file is read, for an unknown patient or one with no consent
        on record (unless ``allow_no_consent``).
    """
    vault._require_patient(patient, allow_no_consent)
    files = collect(paths)
    report = IngestReport()
    items = ((lambda p=path: read_input(p), path.name) for path in files)
    results = vault.add_photos(
        items, patient=patient, body_site=body_site, laterality=laterality,
        diagnosis=diagnosis, allow_no_consent=allow_no_consent, workers=workers,
    )
    bar = progress_bar(zip(files, results), total=len(files), desc="ingest")
    for number, (path, result) in enumerate(bar, start=1):
        result.source = str(path)
        if remove_source and result.status != "error" and vault.verify_photo(result.photo_id):
            try:
                os.unlink(path)
                result.source_removed = True
            except OSError as exc:
                result.status = "error"
                result.error = InvalidInput(
                    f"stored and verified, but the source could not be removed ({exc.strerror})"
                )
        report.results.append(result)
        if progress is not None:
            progress(number, len(files), result)
    return report

