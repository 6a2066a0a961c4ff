"""Tampering with any stored byte is detected: blobs, index pages, audit records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import workbench as wb

from conftest import insider_index, jpeg_bytes, open_as, passphrase


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
        v.load_original(photo_id)
    v.load_previews(ids)
    for photo_id in ids:
        for blob_id in v.derivatives(photo_id, purpose="research")["blob_id"]:
            v.load_derivative(blob_id, purpose="research")
    form_blobs = [r[0] for r in v._query("SELECT form_blob FROM consent_events WHERE form_blob IS NOT NULL")]
    for blob_id in form_blobs:
        v._open_blob(blob_id, "read forms", {})


def test_flipped_byte_in_every_blob_is_caught(filled, clock):
    path, ids = filled
    blobs = sorted((path / "blobs").glob("*/*"))
    assert len(blobs) == 3 * 3 + 2  # originals, their pixels, previews, one form, one derivative
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


@pytest.mark.parametrize("which, read", [("metadata", "read_original_file"), ("pixels", "load_original")])
def test_swapped_blobs_are_caught(filled, clock, which, read):
    path, ids = filled
    with open_as(path, "admin", clock) as v:
        a, b = (v._blob_path(getattr(v._photo_row(i), which)) for i in ids[:2])
        tmp = a.with_name("swap")
        a.rename(tmp), b.rename(a), tmp.rename(b)
        for photo_id in ids[:2]:
            with pytest.raises(wb.IntegrityError):
                getattr(v, read)(photo_id)
        assert v.load_original(ids[2]).shape == (64, 96, 3)
        assert v.read_original_file(ids[2])[:2] == b"\xff\xd8"


@pytest.mark.parametrize("offset", [100, 4096 + 100, -50])
def test_damaged_index_page_is_caught(filled, offset):
    path, _ = filled
    index = path / "index.db"
    data = bytearray(index.read_bytes())
    assert len(data) > 8192
    data[offset] ^= 0x40
    index.write_bytes(bytes(data))
    # caught when opening, or else by the first read of that page; `audit
    # verify` (and `vault check`) read every page
    with pytest.raises(wb.IntegrityError):
        with wb.open_vault(path, user="ada", passphrase=passphrase("ada")) as v:
            v.verify_audit()


def _verify(path, clock):
    with open_as(path, "admin", clock) as v:
        return v.verify_audit()


def test_intact_log_verifies(filled, clock):
    path, _ = filled
    check = _verify(path, clock)
    assert check.ok and check.records > 10


def _edit(db):
    seq, body = db.execute("SELECT seq, body FROM log WHERE seq = 4").fetchone()
    record = json.loads(body)
    record["action"] = "nothing_to_see"
    db.execute("UPDATE log SET body = ? WHERE seq = 4",
               (json.dumps(record, sort_keys=True, separators=(",", ":")).encode(),))
    return 4


def _delete(db):
    db.execute("DELETE FROM log WHERE seq = 4")
    return 4


def _reorder(db):
    a = db.execute("SELECT body, sig FROM log WHERE seq = 4").fetchone()
    b = db.execute("SELECT body, sig FROM log WHERE seq = 5").fetchone()
    db.execute("UPDATE log SET body = ?, sig = ? WHERE seq = 4", b)
    db.execute("UPDATE log SET body = ?, sig = ? WHERE seq = 5", a)
    return 4


@pytest.mark.parametrize("tamper", [_edit, _delete, _reorder])
def test_log_tampering_by_an_insider_is_caught(filled, clock, tamper):
    path, _ = filled
    db = insider_index(path, "researcher")  # every role holds the index key
    first_bad = tamper(db)
    db.close()
    # the CLI names the record, exits non-zero, shows no traceback
    env = {"WORKBENCH_PASSPHRASE": passphrase("res"), "PATH": "/usr/bin:/bin",
           "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"]}
    out = subprocess.run(
        [sys.executable, "-m", "workbench", "--vault", str(path), "--user", "res", "audit", "verify"],
        capture_output=True, text=True, env=env,
    )
    assert out.returncode != 0, out.stdout + out.stderr
    assert f"record {first_bad}" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_truncated_log_is_caught_by_the_users_who_saw_it(filled, clock):
    path, _ = filled
    with open_as(path, "researcher", clock) as v:
        seen = v._state.seq
    db = insider_index(path, "researcher")
    # cut the last records off, with their rows: what an older copy of index.db would be
    db.execute("DELETE FROM log WHERE seq > ?", (seen - 3,))
    db.close()
    with pytest.raises(wb.IntegrityError) as err:
        open_as(path, "researcher", clock)
    assert f"({seen} records)" in str(err.value)


def test_audit_verify_names_every_broken_record_and_its_signer(filled, clock):
    """Records edited behind a reader's witness: opening checks only what is new, `audit verify` all."""
    path, _ = filled
    with open_as(path, "admin", clock):
        pass  # the admin's witness now covers every record
    db = insider_index(path, "researcher")
    users = {}
    for seq in (4, 7):
        (body,) = db.execute("SELECT body FROM log WHERE seq = ?", (seq,)).fetchone()
        record = json.loads(body)
        users[seq] = record["user"]
        record["detail"] = {"edited": True}
        db.execute("UPDATE log SET body = ? WHERE seq = ?",
                   (json.dumps(record, sort_keys=True, separators=(",", ":")).encode(), seq))
    db.close()
    with open_as(path, "admin", clock) as v:
        check = v.verify_audit()
    assert not check.ok and check.first_bad == 4 and check.signer == users[4]
    named = {seq: (user, reason) for seq, user, reason in check.breaks}
    assert set(named) >= {4, 7}
    assert named[4][0] == users[4] and named[7][0] == users[7]
    assert "signature" in named[4][1] and "signature" in named[7][1]
