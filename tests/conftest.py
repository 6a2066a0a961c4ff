"""Shared fixtures: small generated photos and vaults with a user of every role."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image

import workbench as wb

ROLE_USERS = {
    "admin": "ada",
    "photographer": "pho",
    "clinician": "cli",
    "analyst": "ana",
    "researcher": "res",
    "educator": "edu",
}


#: a passphrase that meets the strength rule for new passphrases, for tests that need one
STRONG_PASSPHRASE = "tests-only-vault-passphrase"


def passphrase(user: str) -> str:
    """Each test user's own passphrase (strong enough for the rule on new passphrases)."""
    return f"pass-{user}-phrase"


class FixedClock:
    """A settable clock: consent and audit depend on time, never on sleeping."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def jpeg_bytes(seed: int, size=(96, 64), exif: Image.Exif | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def png_bytes(seed: int, size=(80, 60)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def clock():
    return FixedClock(datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
def vault_path(tmp_path, clock):
    """A vault with one user per role, and two consented patients."""
    path = tmp_path / "vault"
    with wb.init_vault(path, admin="ada", passphrase=passphrase("ada"), clock=clock) as admin:
        for role, user in ROLE_USERS.items():
            if role != "admin":
                admin.add_user(user, role, passphrase(user))
        admin.add_consent("MRN-0001", "care,research", name="ZZTEST Alpha", birth_date="1970-01-02")
        admin.add_consent("MRN-0002", "care,education")
    return path


def open_as(path, role: str, clock=None, **kw):
    user = ROLE_USERS[role]
    if clock is not None:
        kw["clock"] = clock
    return wb.open_vault(path, user=user, passphrase=passphrase(user), **kw)


def leave_stale_files(path, clock=None) -> list:
    """Leave what a killed ingest leaves: a blob written but never committed, and a temp file.

    Returns the two paths, sorted (as ``Vault.stale_files`` lists them).
    """
    with open_as(path, "photographer", clock) as pho:
        blob_id = pho._store_blob("original", "originals", jpeg_bytes(4141), "never-committed")[0]
    orphan = path / "blobs" / blob_id[:2] / blob_id
    half = orphan.with_name(f".{'0' * 32}.4242.tmp")
    half.write_bytes(b"half-written")
    return sorted([orphan, half])
