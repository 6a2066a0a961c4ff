"""Bring photos into a vault from files, folders and memory cards."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

from ._progress import progress_bar
from .errors import InvalidInput, UnsupportedFormat
from .vault import IngestReport, PhotoResult, Vault
from .vault._files import read_input

#: extensions read when a folder (or a card's DCIM tree) is given
PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".hif", ".avif",
     ".cr3", ".cr2", ".dng"}
)
#: files that cameras keep beside the photos for themselves: Canon's CANONMSC
#: catalogue (.CTG), video thumbnails (.THM), DPOF print orders (MISC/AUTPRINT.MRK),
#: GoPro's low-resolution video copies (.LRV), Nikon's file list, Windows' caches
CATALOGUE_EXTENSIONS = frozenset({".ctg", ".thm", ".mrk", ".lrv"})
CATALOGUE_NAMES = frozenset({"nc_fllst.dat", "thumbs.db", "desktop.ini"})
#: folders an operating system keeps on a card (besides hidden ones such as .Trashes)
SYSTEM_FOLDERS = frozenset({"system volume information", "$recycle.bin"})


def collect(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, str | None]]:
    """Expand files and folders into the files an ingest reports on, in a stable order.

    Files named explicitly are always read (one the vault cannot take becomes
    a per-file error). Inside folders, files with a photo extension are read;
    other files are reported as skipped, with their extension, and never read.
    Left alone without a report: hidden files (a name starting with ``.``);
    the catalogue files cameras keep for themselves (``CATALOGUE_EXTENSIONS``
    and ``CATALOGUE_NAMES``, e.g. ``CANONMSC/*.CTG``, ``*.THM``,
    ``MISC/AUTPRINT.MRK``); and files other than photos inside hidden or system
    folders (``.Trashes``, ``.Spotlight-V100``, ``System Volume Information``).

    Parameters
    ----------
    paths : iterable of path-like
        Files, folders or a memory card's mount point.

    Returns
    -------
    list of (pathlib.Path, str or None)
        Each file with ``None`` when it is to be read, or its lower-case
        extension (``""`` when it has none) when it is to be skipped.
    """
    out: list[tuple[Path, str | None]] = []
    for item in paths:
        path = Path(item)
        if not path.is_dir():
            out.append((path, None))
            continue
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            ext = file.suffix.lower()
            if ext in PHOTO_EXTENSIONS:
                if not file.name.startswith("."):
                    out.append((file, None))
                continue
            folders = file.relative_to(path).parts[:-1]
            system = any(f.startswith(".") or f.lower() in SYSTEM_FOLDERS for f in folders)
            if not (file.name.startswith(".") or system or ext in CATALOGUE_EXTENSIONS
                    or file.name.lower() in CATALOGUE_NAMES):
                out.append((file, ext))
    return out


def _skipped(ext: str) -> PhotoResult:
    return PhotoResult("skipped", error=UnsupportedFormat(
        f"not a photo the vault takes ({ext or 'no extension'}): not read or stored, and left "
        "where it is; if it is a photo with an unusual extension, name the file itself",
        extension=ext,
    ))


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
    and the rest go on, and so does a file already stored under another
    patient (a ``ConflictError``). Files in folders that are not photos are
    ``"skipped"`` results, never read (see :func:`collect`). With
    ``remove_source`` a source file is deleted only after its photo is
    verified in the vault (also for a duplicate already there under the same
    patient); a failed or skipped file is never removed.

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
        One result per file that :func:`collect` reports, in its order.

    Raises
    ------
    ConsentError
        Before any file is read, for an unknown patient or one with no consent
        on record (unless ``allow_no_consent``).
    """
    vault._require_patient(patient, allow_no_consent)
    files = collect(paths)
    report = IngestReport()
    items = ((lambda p=path: read_input(p), path.name) for path, skip in files if skip is None)
    results = iter(vault.add_photos(
        items, patient=patient, body_site=body_site, laterality=laterality,
        diagnosis=diagnosis, allow_no_consent=allow_no_consent, workers=workers,
    ))
    bar = progress_bar(files, total=len(files), desc="ingest")
    for number, (path, skip) in enumerate(bar, start=1):
        result = next(results) if skip is None else _skipped(skip)
        result.source = str(path)
        if (remove_source and result.status in ("added", "duplicate")
                and vault.verify_photo(result.photo_id)):
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

