"""Encrypted bundles of a verified cohort: an AES-256 zip (7-Zip opens it) or an age file.

A bundle holds exactly what the signed build record pins (see
:mod:`._dataset`): the images, ``manifest.csv`` and ``DATACARD.md``, under
one folder named after the cohort. The bytes written are the bytes that were
checked against their digests. Each bundle is an audit record
(``share_bundle``): who, which cohort (name, run id, manifest digest), for
whom, the format, and the bundle's SHA-256. The zip's passphrase is
generated, returned once and stored nowhere.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import AlreadyExists, InvalidInput
from ..vault import Vault
from ..vault._files import atomic_write
from . import _secrets
from ._dataset import Dataset, verify_dataset

FORMATS = ("zip", "age")


@dataclass(frozen=True, repr=False)
class BundleResult:
    """What :func:`bundle` wrote. ``passphrase`` is shown once and kept nowhere (None for age)."""

    path: Path
    format: str
    sha256: str
    images: int
    passphrase: str | None

    def __repr__(self) -> str:  # never the passphrase
        return f"BundleResult(path={str(self.path)!r}, format={self.format!r}, images={self.images})"


def _members(dataset: Dataset) -> list[tuple[str, bytes]]:
    base = dataset.path.name
    out = [(f"{base}/manifest.csv", dataset.read_manifest()),
           (f"{base}/DATACARD.md", dataset.read_datacard().encode("utf-8"))]
    out += [(f"{base}/{image.relpath}", dataset.read_image(image.index)) for image in dataset.images]
    return out


def _plain_zip(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _aes_zip(members, passphrase: str) -> bytes:
    import pyzipper

    buf = io.BytesIO()
    # WinZip AES-256 (AE-2): 7-Zip, WinZip and macOS's Archive Utility open it
    with pyzipper.AESZipFile(buf, "w", compression=pyzipper.ZIP_STORED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(passphrase.encode("utf-8"))
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _age(data: bytes, recipients: list[str]) -> bytes:
    import pyrage

    try:
        keys = [pyrage.x25519.Recipient.from_str(r.strip()) for r in recipients]
    except Exception:  # pyrage raises its own error types for a malformed key
        raise InvalidInput("an age recipient is an X25519 public key starting with 'age1'; check "
                           "what the collaborator sent (`age-keygen -y KEYFILE` prints it)") from None
    return pyrage.encrypt(data, keys)


def bundle(vault: Vault, dataset: str | os.PathLike, to: str | os.PathLike, *, collaborator: str,
           recipients: list[str] | None = None) -> BundleResult:
    """Write an encrypted bundle of a verified cohort or teaching set.

    Parameters
    ----------
    vault : Vault
        Opened by a role that may share (admin, researcher, educator).
    dataset : path-like
        The cohort folder; refused unless :func:`verify_dataset` accepts it
        (built here, files matching, every patient still consented).
    to : path-like
        The bundle file to write; never overwritten.
    collaborator : str
        Who it is for (recorded in the audit trail).
    recipients : list of str, optional
        age public keys (``age1...``): write an age file of a zip for them.
        Without: an AES-256 zip under a generated passphrase.

    Returns
    -------
    BundleResult
        Its ``passphrase`` (zip only) is the one copy: hand it over by
        another channel than the bundle.
    """
    from ..vault._log import SHARE_ROLES

    if vault.role not in SHARE_ROLES:
        raise vault._denied("bundle cohorts for sharing", "share")
    if not isinstance(collaborator, str) or not collaborator.strip() or len(collaborator) > 80:
        raise InvalidInput("name who the bundle is for (--for NAME, at most 80 characters)")
    out = Path(to)
    if out.exists():
        raise AlreadyExists("that bundle file exists already; choose another name", path=str(out))
    checked = verify_dataset(vault, dataset)
    members = _members(checked)
    passphrase = None
    if recipients:
        data, fmt = _age(_plain_zip(members), list(recipients)), "age"
    else:
        passphrase = _secrets.new_passphrase()
        data, fmt = _aes_zip(members, passphrase), "zip"
    digest = _secrets.sha256_hex(data)
    atomic_write(out, data)
    vault._record("share_bundle", {
        "cohort": checked.name, "run_id": checked.run_id, "manifest_sha256": checked.manifest_sha256,
        "images": len(checked.images), "for": collaborator.strip(), "format": fmt,
        "recipients": list(recipients or []), "sha256": digest,
    })
    return BundleResult(out, fmt, digest, len(checked.images), passphrase)
