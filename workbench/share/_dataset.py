"""A cohort or teaching-set folder, verified against the vault's signed log before it is shared.

Sharing trusts nothing in the folder itself. The build of a cohort signs a
``cohort_build`` record (``workbench.cohort``) naming its run id, purpose,
the digest of its ``manifest.csv`` and ``DATACARD.md`` and the random refs of
its patients; the manifest names each image and its SHA-256. A folder may be
shared (bundled or served) only when

- it is a cohort folder (``provenance.json``, ``manifest.csv``) whose run
  id has exactly one signed build record in the vault's verified log;
- its manifest and data card still have the digests that record signed,
  every image the manifest lists is a regular file under ``images/`` with
  its digest, and ``images/`` holds nothing else;
- every patient it included is still consented for its purpose now
  (``withdrawn`` or ``expired`` otherwise): read from the signed consent
  records by patient ref, so this needs the index key and nothing else.

Only these files are ever shared: the images, ``manifest.csv`` and
``DATACARD.md``. Checking needs no key that decrypts anything, so the share
portal does it with its own account.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConsentError, IntegrityError, NotFound, NotVerified
from ..vault import Vault
from ..vault import _consent, _log
from . import _secrets

#: a manifest's image entry: images/<pseudonym>.<ext>, nothing else
_IMAGE_RE = re.compile(r"^images/([A-Za-z0-9_-]{1,80})\.(jpg|png)$")
_MIME = {"jpg": "image/jpeg", "png": "image/png"}


@dataclass(frozen=True)
class Image:
    """One image of a verified dataset, by its position in the manifest."""

    index: int
    image_id: str
    relpath: str
    sha256: str
    ext: str
    width: int
    height: int
    caption: str

    @property
    def mime(self) -> str:
        return _MIME[self.ext]


@dataclass(frozen=True)
class Dataset:
    """A verified, de-identified cohort or teaching-set folder."""

    path: Path
    name: str
    purpose: str
    run_id: str
    manifest_sha256: str
    datacard_sha256: str
    patient_refs: tuple[str, ...]
    images: tuple[Image, ...]

    def read_image(self, index: int) -> bytes:
        """The bytes of image ``index`` (manifest order), checked against its digest."""
        if not isinstance(index, int) or not 0 <= index < len(self.images):
            raise NotFound("no such image in this share", index=index)
        image = self.images[index]
        data = _read_regular(self.path / image.relpath)
        if data is None or not _secrets.equal(_secrets.sha256_hex(data), image.sha256):
            raise IntegrityError(
                "an image of this shared set no longer matches its manifest; the owner must "
                "check the folder and rebuild the cohort", dataset=self.name, index=index)
        return data

    def read_datacard(self) -> str:
        data = _read_regular(self.path / "DATACARD.md")
        if data is None or not _secrets.equal(_secrets.sha256_hex(data), self.datacard_sha256):
            raise IntegrityError("the data card of this shared set no longer matches its build record; "
                                 "the owner must rebuild the cohort", dataset=self.name)
        return data.decode("utf-8")

    def read_manifest(self) -> bytes:
        data = _read_regular(self.path / "manifest.csv")
        if data is None or not _secrets.equal(_secrets.sha256_hex(data), self.manifest_sha256):
            raise IntegrityError("the manifest of this shared set no longer matches its build record; "
                                 "the owner must rebuild the cohort", dataset=self.name)
        return data


def _read_regular(path: Path) -> bytes | None:
    """A regular file's bytes, never through a symbolic link; None when it is anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def verified_records(vault: Vault, known: list | None = None) -> list[_log.Record]:
    """Every log record up to the head ``vault`` verified, re-linked to that head.

    The vault verified every signature when it replayed the log; reading the
    records again, each must link to the one before and the last must be the
    verified head, so what is read is what was verified. With ``known`` (an
    earlier answer) only the records after it are read.
    """
    known = list(known or [])
    with vault._thread_lock:
        vault._sync()
        state = vault._state
        after = known[-1].seq if known else 0
        if after > state.seq:
            raise IntegrityError("the vault's log is shorter than before; run `workbench audit verify`")
        new = vault._log_records(after) if after < state.seq else []
    new = [r for r in new if r.seq <= state.seq]
    prev = known[-1].hash if known else _log.GENESIS
    for record in new:
        if record.content.get("prev") != prev:
            raise IntegrityError("the vault's log changed while it was read; run `workbench audit verify`")
        prev = record.hash
    records = known + new
    if len(records) != state.seq or prev != state.hash:
        raise IntegrityError("the vault's log changed while it was read; run `workbench audit verify`")
    return records


def build_record(records: list[_log.Record], run_id: str) -> dict:
    """The signed ``cohort_build`` detail of ``run_id`` (exactly one), or raise ``NotVerified``."""
    found = [r.content.get("detail", {}) for r in records
             if r.action == "cohort_build" and r.content.get("detail", {}).get("run_id") == run_id]
    if len(found) != 1 or "manifest_sha256" not in found[0] or "patient_refs" not in found[0]:
        raise NotVerified(
            "this folder was not built from this vault by this version of the workbench (no signed "
            "build record names it); only a cohort or teaching set built here can be shared: rebuild "
            "it with `workbench cohort rebuild`")
    return found[0]


def lost_consent(vault: Vault, patient_refs, purpose: str) -> dict[str, str]:
    """Patient ref -> ``withdrawn``/``expired``/``no consent`` for those no longer consented for ``purpose``."""
    events = vault._consent_events()
    now = vault.now()
    out = {}
    for ref in patient_refs:
        history = events.get(ref, [])
        if not _consent.holds(history, purpose, now):
            out[ref] = _consent.explain(history, purpose, now)
    return out


def verify_dataset(vault: Vault, path: str | os.PathLike, *, records: list | None = None,
                   check_consent: bool = True) -> Dataset:
    """Check a cohort or teaching-set folder for sharing; return it, or raise why not.

    Parameters
    ----------
    vault : Vault
        Opened by any role (the portal's own account holds the index key only).
    path : path-like
        The cohort folder (``datasets/<name>``).
    records : list, optional
        Verified log records (:func:`verified_records`), to save reading them again.
    check_consent : bool
        Also refuse when a patient's consent for the cohort's purpose ended.

    Raises
    ------
    NotFound
        Not a cohort folder.
    NotVerified
        No signed build record names it (not built from this vault).
    IntegrityError
        Its manifest, data card or an image no longer matches; or a file is
        missing, added, or not a regular file.
    ConsentError
        A patient it included withdrew (or their consent for its purpose
        expired): the owner must rebuild it (``workbench cohort rebuild``).
    """
    folder = Path(path)
    if folder.is_symlink() or not folder.is_dir():
        raise NotFound("that is not a cohort folder; give a folder under datasets/ built by "
                       "`workbench cohort build` or `workbench teaching`", path=str(folder))
    folder = folder.resolve()
    prov_bytes = _read_regular(folder / "provenance.json")
    manifest_bytes = _read_regular(folder / "manifest.csv")
    if prov_bytes is None or manifest_bytes is None:
        raise NotFound("that is not a cohort folder (no provenance.json / manifest.csv); give a folder "
                       "built by `workbench cohort build` or `workbench teaching`", path=str(folder))
    try:
        provenance = json.loads(prov_bytes)
        run_id = str(provenance["run_id"])
        rows = list(csv.DictReader(io.StringIO(manifest_bytes.decode("utf-8"))))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise NotFound("that folder's provenance.json or manifest.csv is not a cohort's", path=str(folder)) from None
    if records is None:
        records = verified_records(vault)
    build = build_record(records, run_id)
    manifest_sha = _secrets.sha256_hex(manifest_bytes)
    if not _secrets.equal(manifest_sha, str(build["manifest_sha256"])):
        raise IntegrityError("this cohort's manifest.csv differs from the one its build signed; it was "
                             "edited: rebuild the cohort", dataset=folder.name)
    datacard_sha = str(build.get("datacard_sha256", ""))
    card = _read_regular(folder / "DATACARD.md")
    if card is None or not _secrets.equal(_secrets.sha256_hex(card), datacard_sha):
        raise IntegrityError("this cohort's DATACARD.md differs from the one its build signed; rebuild "
                             "the cohort", dataset=folder.name)
    images = []
    from ..teaching import caption

    for n, row in enumerate(rows):
        match = _IMAGE_RE.match(row.get("image") or "")
        if not match or match.group(1) != row.get("image_id"):
            raise IntegrityError("this cohort's manifest names a file outside images/; rebuild the cohort",
                                 dataset=folder.name)
        images.append(Image(n, row["image_id"], row["image"], row["sha256"], match.group(2),
                            int(row["width"]), int(row["height"]), caption(row)))
    if len(images) != int(build.get("images", -1)):
        raise IntegrityError("this cohort's manifest lists another number of images than its build "
                             "signed; rebuild the cohort", dataset=folder.name)
    listed = {i.relpath.split("/", 1)[1] for i in images}
    present = set(os.listdir(folder / "images")) if (folder / "images").is_dir() else set()
    if present != listed:
        raise IntegrityError(
            f"this cohort's images/ folder holds {len(present - listed)} files its manifest does not list "
            f"and lacks {len(listed - present)} it does; rebuild the cohort", dataset=folder.name)
    dataset = Dataset(folder, str(provenance.get("cohort", folder.name)), str(build["purpose"]), run_id,
                      manifest_sha, datacard_sha, tuple(build["patient_refs"]), tuple(images))
    for image in images:
        dataset.read_image(image.index)
    if check_consent:
        lost = lost_consent(vault, dataset.patient_refs, dataset.purpose)
        if lost:
            reasons = sorted(set(lost.values()))
            raise ConsentError(
                f"{len(lost)} patients in this cohort are no longer consented for {dataset.purpose} "
                f"({', '.join(reasons)}); it cannot be shared: rebuild it with `workbench cohort rebuild`",
                purpose=dataset.purpose, patients=len(lost))
    return dataset
