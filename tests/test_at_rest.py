"""Nothing identifiable is at rest in plaintext: not in the vault, not in the temp folder."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import workbench as wb
from workbench import _synth

from conftest import passphrase

WINDOW = 32  # any 64-byte run of an original contains a 32-aligned 32-byte block of it


def _all_windows(data: bytes) -> set[bytes]:
    return {data[i:i + WINDOW] for i in range(len(data) - WINDOW + 1)}


def test_no_plaintext_at_rest(tmp_path):
    rng = np.random.default_rng(2026)
    card = tmp_path / "card"
    files = _synth.write_card(card, rng, count=6, width=320, height=240,
                              formats=("jpeg", "png", "tiff", "heif"))
    identity = files[0]["identity"]
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF-1.4 consent form of " + identity.name.encode() + b" " + identity.mrn.encode())
    vault_dir = tmp_path / "vault"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), WORKBENCH_PASSPHRASE=passphrase("ada"),
               WORKBENCH_VAULT=str(vault_dir), WORKBENCH_USER="ada")

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "workbench", *args], env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out

    cli("vault", "init", str(vault_dir), "--admin", "ada")
    cli("consent", "add", "--patient", identity.mrn, "--scopes", "care,research",
        "--name", identity.name, "--birth-date", identity.birth_date.isoformat(), "--form", str(form))
    cli("ingest", str(card), "--patient", identity.mrn, "--body-site", "forearm",
        "--diagnosis", "L40.0")
    assert "rendered" in cli("vault", "previews").stdout  # ingest leaves JPEG/PNG previews for later
    listing = cli("photos", "--purpose", "research", "--format", "csv").stdout
    assert listing.count("\n") == 1 + len(files)

    planted = {s for f in files for s in f["strings"]} | {identity.mrn, identity.name}
    originals = [f["path"].read_bytes() for f in files] + [form.read_bytes()]
    original_blocks = {o[i:i + WINDOW] for o in originals for i in range(0, len(o) - WINDOW + 1, WINDOW)}

    stored = [p for p in vault_dir.rglob("*") if p.is_file()]
    # each file as imported, its pixels and its preview, and the form
    assert len([p for p in stored if "blobs" in p.parts]) == 3 * len(files) + 1
    for path in stored + [p for p in tmpdir.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        for text in planted:
            for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
                assert text.encode(encoding) not in data, (path.name, "planted string")
        # signatures long enough (>= 5 bytes) that random ciphertext will not hold them by chance
        for magic in (b"\xff\xd8\xff\xe0\x00\x10JFIF", b"JFIF\x00", b"Exif\x00\x00", b"\x89PNG\r\n\x1a\n",
                      b"IHDR\x00", b"II*\x00\x08\x00", b"MM\x00*\x00\x00", b"ftypheic", b"ftypmif1", b"%PDF-"):
            assert magic not in data, (path.name, magic)
        assert not (_all_windows(data) & original_blocks), (path.name, "a run of an original")
    assert not any(tmpdir.iterdir()), "plaintext or temp files left in TMPDIR"

    # and the vault still gives the originals back, exactly, to a role that may read them
    with wb.open_vault(vault_dir, user="ada", passphrase=passphrase("ada")) as v:
        frame = v.photos("care", include_identifiers=True)
        got = {v.read_original_file(p) for p in frame["photo_id"]}
    assert got == set(originals[:-1])
    assert set(frame["original_name"]) == {f["path"].name for f in files}
    assert set(frame["camera_serial"].dropna()) <= {identity.serial for identity in {f["identity"] for f in files}}
