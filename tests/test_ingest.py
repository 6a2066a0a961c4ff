"""Ingest from files, folders and card trees; bad files fail one by one, never silently."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import workbench as wb
from workbench import _synth

from conftest import open_as, passphrase


def _png_bomb() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def card(tmp_path):
    rng = np.random.default_rng(3)
    files = _synth.write_card(tmp_path / "card", rng, count=5, width=300, height=200,
                              formats=("jpeg", "png", "tiff", "heif", "webp"))
    return tmp_path / "card", files


def test_card_tree_all_formats(vault_path, clock, card):
    root, files = card
    (root / "DCIM" / "CANONMSC").mkdir()
    (root / "DCIM" / "CANONMSC" / "M0100.CTG").write_bytes(b"catalogue")  # not a photo: left alone
    with open_as(vault_path, "photographer", clock) as v:
        report = wb.ingest(v, [root], patient="MRN-0001", body_site="forearm", laterality="left")
    assert report.ok and len(report.added) == len(files), report.summary()
    with open_as(vault_path, "clinician", clock) as v:
        frame = v.photos("research", include_identifiers=True)
        assert sorted(frame["format"]) == sorted(["jpeg", "png", "tiff", "heif", "webp"])
        jpeg = frame[frame["format"] == "jpeg"].iloc[0]
        source = next(f for f in files if f["path"].name == jpeg["original_name"])
        assert jpeg["camera_model"] == "Canon EOS R6"
        assert jpeg["camera_serial"] == source["identity"].serial
        assert jpeg["capture_date"] == source["capture_time"].date().isoformat()
        for photo_id in frame["photo_id"]:
            assert v.load_original(photo_id).shape == (200, 300, 3)


def test_bad_files_fail_one_by_one(vault_path, clock, card, tmp_path):
    root, files = card
    good = files[0]["path"].read_bytes()
    bad = {
        "empty.jpg": b"",
        "truncated.jpg": good[: len(good) // 2],
        "corrupt.jpg": good[:200] + bytes(len(good) - 200),
        "notes.txt": b"just some text, not a photo",
        "bomb.png": _png_bomb(),
        "mislabelled.jpg": files[1]["path"].read_bytes(),  # a PNG named .jpg: read by content
    }
    paths = []
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    paths.append(files[0]["path"])
    with open_as(vault_path, "photographer", clock) as v:
        report = wb.ingest(v, paths, patient="MRN-0001", body_site="arm", remove_source=True)
    status = {os.path.basename(r.source): r for r in report.results}
    for name in ("empty.jpg", "truncated.jpg", "corrupt.jpg", "notes.txt", "bomb.png"):
        assert status[name].status == "error", name
        assert isinstance(status[name].error, wb.InvalidInput), name
        assert (tmp_path / name).exists(), "a failed file must never be removed"
    assert isinstance(status["bomb.png"].error, wb.DecompressionBomb)
    assert isinstance(status["empty.jpg"].error, wb.UnsupportedFormat)
    assert status["mislabelled.jpg"].status == "added"
    assert status[files[0]["path"].name].status == "added"
    assert not files[0]["path"].exists() and not (tmp_path / "mislabelled.jpg").exists()
    assert not report.ok and "5 failed" in report.summary()


def test_cli_ingest_exit_code_and_summary(vault_path, card, tmp_path):
    root, files = card
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    env = dict(os.environ, WORKBENCH_PASSPHRASE=passphrase("pho"))
    cmd = [sys.executable, "-m", "workbench", "--vault", str(vault_path), "--user", "pho",
           "ingest", str(root), str(tmp_path / "broken.jpg"), "--patient", "MRN-0001",
           "--body-site", "leg", "--remove-source"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "5 added, 0 duplicate, 1 failed, of 6 files" in out.stdout
    assert "5 source files removed" in out.stdout
    assert "broken.jpg" in out.stderr and "Traceback" not in out.stderr
    # the same again: only duplicates and the broken file
    for f in files:
        assert not f["path"].exists()


def test_duplicate_with_remove_source_removes_only_after_verifying(vault_path, clock, card, tmp_path):
    root, files = card
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(files[0]["path"].read_bytes())
    with open_as(vault_path, "photographer", clock) as v:
        wb.ingest(v, [files[0]["path"]], patient="MRN-0001", body_site="arm")
        blob = v._blob_path(v._photo_row(v.photos("care")["photo_id"][0])[0])
        blob.write_bytes(b"damaged")  # the stored copy is no longer good
        report = wb.ingest(v, [copy], patient="MRN-0001", body_site="arm", remove_source=True)
    assert report.results[0].status == "duplicate"
    assert copy.exists(), "a source must survive when the vault copy does not verify"


def test_unknown_patient_refused_before_reading(vault_path, clock, card):
    root, files = card
    with open_as(vault_path, "photographer", clock) as v:
        with pytest.raises(wb.ConsentError):
            wb.ingest(v, [root], patient="MRN-NOPE", body_site="arm", remove_source=True)
    assert all(f["path"].exists() for f in files)
