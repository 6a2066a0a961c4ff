"""Tampering with any stored byte is detected: blobs, index pages, audit records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import workbench as wb

from conftest import jpeg_bytes, open_as, passphrase


@pytest.fixture
def filled(vault_path, clock):
    with open_as(vault_path, "photographer", clock) as v:
        ids = [v.add_photo(jpeg_bytes(s), patient="MRN-0001", body_site="arm").photo_id for s in (1, 2, 3)]
    with open_as(vault_path, "admin", clock) as v:
        v.add_consent("MRN-0004", "research", form=b"%PDF-1.4 scanned form ZZTEST")
        v.put_derivative(ids[0], "deid_jpeg", b"derivative bytes")
        assert v.render_previews() == 3  # ingest leaves JPEG previews for later
    return vault_path, ids


def _read_everything(v, ids):
    for photo_id in ids:
        v.read_original_file(photo_id)
    v.load_previews(ids)
    for photo_id in ids:
        for blob_id in v.derivatives(photo_id)["blob_id"]:
            v.load_derivative(blob_id)
    form_blobs = [r[0] for r in v._query("SELECT form_blob FROM consent_events WHERE form_blob IS NOT NULL")]
    for blob_id in form_blobs:
        v._open_blob(blob_id, "read forms", {})


def test_flipped_byte_in_every_blob_is_caught(filled, clock):
    path, ids = filled
    blobs = sorted((path / "blobs").glob("*/*"))
    assert len(blobs) == 3 * 2 + 2  # originals, previews, one form, one derivative
    with open_as(path, "admin", clock) as v:
        _read_everything(v, ids)  # untouched: all fine
        assert v.check_files() == []
        for blob in blobs:
            original = blob.read_bytes()
            for position in (0, 5, len(original) // 2, len(original) - 1):
                damaged = bytearray(original)
                damaged[position] ^= 0x01
                blob.write_bytes(bytes(damaged))
                with pytest.raises(wb.IntegrityError):
                    _read_everything(v, ids)
                assert v.check_files() == [blob.name]
            blob.write_bytes(original)
        _read_everything(v, ids)


def test_swapped_blobs_are_caught(filled, clock):
    path, ids = filled
    with open_as(path, "admin", clock) as v:
        a, b = (v._blob_path(v._photo_row(i)[0]) for i in ids[:2])
        tmp = a.with_name("swap")
        a.rename(tmp), b.rename(a), tmp.rename(b)
        for photo_id in ids[:2]:
            with pytest.raises(wb.IntegrityError):
                v.load_original(photo_id)
        assert v.load_original(ids[2]).shape == (64, 96, 3)


@pytest.mark.parametrize("offset", [100, 4096 + 100, -50])
def test_damaged_index_page_is_caught(filled, offset):
    path, _ = filled
    index = path / "index.db"
    data = bytearray(index.read_bytes())
    assert len(data) > 8192
    data[offset] ^= 0x40
    index.write_bytes(bytes(data))
    with pytest.raises(wb.IntegrityError):
        wb.open_vault(path, user="ada", passphrase=passphrase("ada"))


def _audit_lines(path):
    return (path / "audit.log").read_bytes().splitlines(keepends=True)


def _write_lines(path, lines):
    (path / "audit.log").write_bytes(b"".join(lines))


def _verify(path, clock):
    with open_as(path, "researcher", clock) as v:
        # opening appends a record; verify the chain as it was before that
        return v.verify_audit()


def test_intact_chain_verifies(filled, clock):
    path, _ = filled
    check = _verify(path, clock)
    assert check.ok and check.records > 10


def _edit(lines):
    record = json.loads(lines[3])
    record["action"] = "nothing_to_see"
    lines[3] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return lines, 4


def _delete(lines):
    del lines[3]
    return lines, 4


def _reorder(lines):
    lines[3], lines[4] = lines[4], lines[3]
    return lines, 4


def _truncate(lines):
    return lines[:-2], len(lines) - 1


@pytest.mark.parametrize("tamper", [_edit, _delete, _reorder, _truncate])
def test_audit_tampering_is_caught(filled, clock, tamper):
    path, _ = filled
    lines, first_bad = tamper(_audit_lines(path))
    _write_lines(path, lines)
    # the CLI names the first bad record and exits 1
    env = {"WORKBENCH_PASSPHRASE": passphrase("res"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "workbench", "--vault", str(path), "--user", "res", "audit", "verify"],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"record {first_bad}" in out.stderr
    assert "Traceback" not in out.stderr


def test_audit_show_refuses_a_broken_chain(filled, clock):
    path, _ = filled
    lines, _ = _delete(_audit_lines(path))
    _write_lines(path, lines)
    with open_as(path, "admin", clock) as v:
        with pytest.raises(wb.IntegrityError) as err:
            v.audit_records()
    assert err.value.record == 4
