"""Shared fixtures: small generated photos and vaults with a user of every role."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
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


# Each user's witness of a vault's log lives outside the vault, under
# XDG_STATE_HOME: keep the suite's away from the home folder, and give each
# test its own, since fixtures copy vaults (same vault id) from a template.
_STATE = tempfile.TemporaryDirectory(prefix="workbench-state-")  # removed when the process ends
os.environ["XDG_STATE_HOME"] = _STATE.name

# With several test processes (`make test` runs two), one thread per model call in
# each, as `workbench evaluate --workers N` asks: a process per core with every
# model using every core oversubscribes the machine. Measured on a 2-core AMD EPYC
# (AVX2 only): test_hard_phantoms.py in two processes took 171 s with the
# libraries' default threads and 95 s with one. Subprocesses (the CLI, papermill's
# kernels) inherit it. A test that wants other threads sets its own.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("WORKBENCH_THREADS", "1")

# Key slots the suite writes use Argon2id's floor cost (OWASP's minimum: 2 passes,
# 19 MiB, 1 lane; 0.04 s) instead of the default (3 passes, 64 MiB, 4 lanes;
# 0.15-0.18 s on a 2-core AMD EPYC). Each slot records its cost, so subprocesses
# open them alike; test_vault.py checks the default cost and the floor themselves.
os.environ.setdefault("WORKBENCH_ARGON2", "m=19456,t=2,p=1")


@pytest.fixture(autouse=True)
def _own_witnesses(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))

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


@pytest.fixture(scope="session")
def _vault_template(tmp_path_factory):
    """The vault every test's ``vault_path`` starts as, made once (seven Argon2id slots cost ~2 s)."""
    path = tmp_path_factory.mktemp("template") / "vault"
    state = os.environ["XDG_STATE_HOME"]  # the witness of its making is no test's
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("template-state"))
    try:
        clock = FixedClock(datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc))
        with wb.init_vault(path, admin="ada", passphrase=passphrase("ada"), clock=clock) as admin:
            for role, user in ROLE_USERS.items():
                if role != "admin":
                    admin.add_user(user, role, passphrase(user))
            admin.add_consent("MRN-0001", "care,research", name="ZZTEST Alpha", birth_date="1970-01-02")
            admin.add_consent("MRN-0002", "care,education")
    finally:
        os.environ["XDG_STATE_HOME"] = state
    return path


@pytest.fixture
def vault_path(tmp_path, clock, _vault_template):
    """A vault with one user per role, and two consented patients (a copy of one made per session)."""
    path = tmp_path / "vault"
    shutil.copytree(_vault_template, path)
    return path


def open_as(path, role: str, clock=None, **kw):
    user = ROLE_USERS[role]
    if clock is not None:
        kw["clock"] = clock
    return wb.open_vault(path, user=user, passphrase=passphrase(user), **kw)


def insider_index(path, role: str):
    """The index opened as an insider would: with their own passphrase's index key, outside the workbench.

    The connection is autocommit; whatever it changes bypasses every Python
    check of the workbench.
    """
    import json as _json

    from workbench.vault import _index, _keys

    user = ROLE_USERS.get(role, role)
    vault_id = _json.loads((path / "VAULT.json").read_text())["vault_id"]
    slot = _keys.unlock_slot(path, vault_id, user, passphrase(user))
    db = _index.connect(path / "index.db", slot.keyset.keys["index"])
    db.execute("PRAGMA foreign_keys = OFF")
    return db

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


@pytest.fixture(scope="session")
def share_template(tmp_path_factory):
    """A vault with a research cohort and a teaching set, built once (see ``_share``); copy it to use it."""
    from _share import build_template

    return build_template(tmp_path_factory.mktemp("share-template"))
