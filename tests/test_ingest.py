"""Ingest from files, folders and card trees; bad files fail one by one, never silently."""

from __future__ import annotations

import importlib
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
    assert "5 added, 0 duplicate, 1 failed, 0 skipped, of 6 files" in out.stdout
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
        blob = v._blob_path(v._photo_row(v.photos("care")["photo_id"][0]).metadata)
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


def _photos_of(vault_path, clock, patient):
    with open_as(vault_path, "clinician", clock) as v:
        frame = v.photos("care", include_identifiers=True)
    return frame[frame["patient_id"] == patient]


def test_a_file_stored_under_another_patient_is_refused_and_its_source_kept(vault_path, clock, card, tmp_path):
    root, files = card
    first = files[0]["path"]
    with open_as(vault_path, "photographer", clock) as v:
        assert wb.ingest(v, [first], patient="MRN-0001", body_site="arm").ok
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(first.read_bytes())
    with open_as(vault_path, "photographer", clock) as v:
        report = wb.ingest(v, [copy], patient="MRN-0002", body_site="arm", remove_source=True)
    (result,) = report.results
    assert result.status == "error" and isinstance(result.error, wb.ConflictError)
    assert copy.exists() and not result.source_removed, "the source must be kept"
    assert not report.ok and "1 failed" in report.summary()
    message = str(result.error)
    assert "another patient" in message and "MRN" not in message and "copy.jpg" not in message
    with open_as(vault_path, "admin", clock) as v:  # the refusal is on the record, naming no one
        refused = v.audit_records().query("action == 'ingest_refused'")
        assert list(refused["user"]) == ["pho"]
        assert "MRN" not in refused.to_csv() and "copy.jpg" not in refused.to_csv()
    assert len(_photos_of(vault_path, clock, "MRN-0002")) == 0, "filed under the second patient"
    assert len(_photos_of(vault_path, clock, "MRN-0001")) == 1
    # under the same patient it is still a duplicate, removed once verified
    with open_as(vault_path, "photographer", clock) as v:
        again = wb.ingest(v, [copy], patient="MRN-0001", body_site="arm", remove_source=True)
    assert again.results[0].status == "duplicate" and not copy.exists() and again.ok


def test_the_same_file_twice_for_a_new_patient_is_a_duplicate(vault_path, clock, card, tmp_path):
    # the patient has no record until the first photo commits: the second copy
    # is checked against the patient the first one created, not refused
    root, files = card
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(files[0]["path"].read_bytes())
    with open_as(vault_path, "photographer", clock) as v:
        report = wb.ingest(v, [files[0]["path"], copy], patient="MRN-NEW", body_site="arm",
                           allow_no_consent=True)
    assert [r.status for r in report.results] == ["added", "duplicate"], report.summary()


def test_cli_refuses_a_file_of_another_patient_and_keeps_it(vault_path, card, tmp_path):
    root, files = card
    env = dict(os.environ, WORKBENCH_PASSPHRASE=passphrase("pho"))
    base = [sys.executable, "-m", "workbench", "--vault", str(vault_path), "--user", "pho", "ingest"]
    first = files[0]["path"]
    subprocess.run(base + [str(first), "--patient", "MRN-0001", "--body-site", "leg"], env=env, check=True,
                   capture_output=True)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(first.read_bytes())
    out = subprocess.run(base + [str(copy), "--patient", "MRN-0002", "--body-site", "leg", "--remove-source"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1 and copy.exists()
    assert "0 added, 0 duplicate, 1 failed, 0 skipped, of 1 files; 0 source files removed" in out.stdout
    assert "copy.jpg: ConflictError:" in out.stderr and "another patient" in out.stderr
    assert "Traceback" not in out.stderr and "MRN-000" not in out.stderr


def _card_with_other_files(root):
    """Files a card or a folder holds beside the photos: some reported, some left alone."""
    reported = {"scan.dcm": b"DICM-not-read", "clip.MOV": b"movie", "README": b"no extension"}
    alone = {".hidden.txt": b"x", "DCIM/CANONMSC/M0100.CTG": b"catalogue", "DCIM/100CANON/MVI_0001.THM": b"t",
             "MISC/AUTPRINT.MRK": b"dpof", ".Trashes/501/junk.bin": b"x", ".Spotlight-V100/Store-V2/x": b"x",
             "System Volume Information/IndexerVolumeGuid": b"x", "Thumbs.db": b"x"}
    for name, data in {**reported, **alone}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return reported, alone


def test_files_that_are_not_photos_are_reported_not_read_and_kept(vault_path, clock, card, monkeypatch):
    root, files = card
    reported, alone = _card_with_other_files(root)
    read = []
    module = importlib.import_module("workbench.ingest")  # `wb.ingest` is the function
    real_read = module.read_input
    monkeypatch.setattr(module, "read_input", lambda p: read.append(p.name) or real_read(p))
    with open_as(vault_path, "photographer", clock) as v:
        report = wb.ingest(v, [root], patient="MRN-0001", body_site="arm", remove_source=True)
    status = {os.path.basename(r.source): r for r in report.results}
    assert set(status) == {f["path"].name for f in files} | set(reported), "hidden and catalogue files stay unreported"
    for name in reported:
        assert status[name].status == "skipped", name
        assert isinstance(status[name].error, wb.UnsupportedFormat)
        assert (root / name).exists(), "a skipped file must never be removed"
        assert name not in read, "a skipped file must not be read"
    assert status["scan.dcm"].error.extension == ".dcm" and status["README"].error.extension == ""
    assert "scan.dcm" not in str(status["scan.dcm"].error)
    assert sorted(read) == sorted(f["path"].name for f in files), "only the photos are read"
    for name in alone:
        assert (root / name).exists()
    assert len(report.added) == len(files) and not report.ok
    assert "3 skipped (not photos: 1 .dcm, 1 .mov, 1 no extension)" in report.summary()


def test_cli_shows_skipped_files(vault_path, card):
    root, files = card
    (root / "DCIM" / "100CANON" / "IMG_0099.dcm").write_bytes(b"DICM")
    env = dict(os.environ, WORKBENCH_PASSPHRASE=passphrase("pho"))
    cmd = [sys.executable, "-m", "workbench", "--vault", str(vault_path), "--user", "pho",
           "ingest", str(root), "--patient", "MRN-0001", "--body-site", "leg", "--remove-source"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "5 added, 0 duplicate, 0 failed, 1 skipped (not photos: 1 .dcm), of 6 files" in out.stdout
    assert "IMG_0099.dcm: skipped: not a photo the vault takes (.dcm)" in out.stderr
    assert (root / "DCIM" / "100CANON" / "IMG_0099.dcm").exists() and "Traceback" not in out.stderr
