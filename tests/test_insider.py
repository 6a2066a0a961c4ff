"""The vault against its own users.

Each test is an attack by an insider who holds only what their account gives
them: their passphrase (so their own slot's keys, including the index key and
their signing key), an open SQLCipher connection to the index outside the
workbench, and file access to the vault folder. Each attack either cannot be
done with those keys, or is caught by the next read, `vault check`,
`audit verify`, a user's witness or a checkpoint.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest

import workbench as wb
from workbench.vault import _keys, _log

from conftest import ROLE_USERS, insider_index, jpeg_bytes, open_as, passphrase, png_bytes


@pytest.fixture
def two_patients(vault_path, clock):
    """Photos of MRN-0001 (research) and MRN-0003 (research), with derivatives; MRN-0003 withdraws."""
    with open_as(vault_path, "admin", clock) as v:
        v.add_consent("MRN-0003", "care,research")
        a = v.add_photo(jpeg_bytes(1), patient="MRN-0001", body_site="arm").photo_id
        b = v.add_photo(jpeg_bytes(2), patient="MRN-0003", body_site="leg").photo_id
        da = v.put_derivative(a, "deid_jpeg", b"derivative of a")
        db = v.put_derivative(b, "deid_jpeg", b"derivative of b")
    clock.moment += timedelta(days=1)
    with open_as(vault_path, "clinician", clock) as v:
        v.withdraw_consent("MRN-0003")
    clock.moment += timedelta(days=1)
    return vault_path, {"a": a, "b": b, "da": da, "db": db}


def _insider_slot(path, role):
    user = ROLE_USERS.get(role, role)
    vault_id = json.loads((path / "VAULT.json").read_text())["vault_id"]
    return vault_id, _keys.unlock_slot(path, vault_id, user, passphrase(user))


def test_deleting_a_withdrawal_row_is_caught_by_the_next_query(two_patients, clock):
    path, ids = two_patients
    db = insider_index(path, "researcher")
    db.execute("DELETE FROM consent_events WHERE action = 'withdraw'")
    db.close()
    with open_as(path, "researcher", clock) as v:
        with pytest.raises(wb.IntegrityError, match="consent_events"):
            v.photos("research")  # never the withdrawn patient's photo as if nothing happened
        assert not v.verify_audit().ok
    with open_as(path, "admin", clock) as v:
        with pytest.raises(wb.IntegrityError):
            v.consent_history()


def test_swapping_originals_between_patients_is_caught(two_patients, clock):
    path, ids = two_patients
    db = insider_index(path, "researcher")
    (blob_a,) = db.execute("SELECT pixels_blob FROM photos WHERE photo_id = ?", (ids["a"],)).fetchone()
    (blob_b,) = db.execute("SELECT pixels_blob FROM photos WHERE photo_id = ?", (ids["b"],)).fetchone()
    db.execute("UPDATE photos SET pixels_blob = ? WHERE photo_id = ?", (blob_b, ids["a"]))
    db.execute("UPDATE photos SET pixels_blob = ? WHERE photo_id = ?", (blob_a, ids["b"]))
    db.close()
    with open_as(path, "clinician", clock) as v:
        with pytest.raises(wb.IntegrityError, match="photos"):
            v.read_original_file(ids["a"])
        check = v.verify_audit()
    assert not check.ok and "photos" in check.reason


def test_a_review_decision_cannot_be_set_by_sql_or_signed_by_a_researcher(two_patients, clock):
    path, ids = two_patients
    # 1. a plain row: the log does not list it
    db = insider_index(path, "researcher")
    db.execute("INSERT INTO reviews VALUES (?, 1, 'approved', NULL, '[]', 'ana', '2026-06-03')", (ids["a"],))
    db.close()
    with open_as(path, "admin", clock) as v:
        with pytest.raises(wb.IntegrityError, match="reviews"):
            v.photos("research")
    db = insider_index(path, "researcher")
    db.execute("DELETE FROM reviews")
    # 2. a row with a log record signed with the researcher's own key: the log refuses the author
    vault_id, slot = _insider_slot(path, "researcher")
    seq, body, sig = db.execute("SELECT seq, body, sig FROM log ORDER BY seq DESC LIMIT 1").fetchone()
    row = (ids["a"], 1, "approved", None, "[]", "res", "2026-06-03T00:00:00+00:00")
    record = _log.make_record(vault_id=vault_id, seq=seq + 1, prev=_log.parse(seq, body, sig).hash,
                              time=row[6], user="res", action="review_state", detail={},
                              rows={"reviews": [row]}, signing_key=slot.signing)
    db.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    db.execute("INSERT INTO log VALUES (?, ?, ?)", (record.seq, record.body, record.sig))
    db.close()
    with pytest.raises(wb.IntegrityError, match="may not review state"):
        open_as(path, "admin", clock)


def test_a_researcher_cannot_shred_and_a_shred_by_sql_is_reported(two_patients, clock):
    path, ids = two_patients
    with open_as(path, "researcher", clock) as v:
        ref = v.photos("research").set_index("photo_id").loc[ids["a"], "patient_ref"]
        with pytest.raises(wb.AccessDenied):
            v.shred_derivatives(ref)
    db = insider_index(path, "researcher")
    db.execute("UPDATE blobs SET wrapped_key = NULL WHERE blob_id = ?", (ids["da"],))
    db.close()
    (path / "blobs" / ids["da"][:2] / ids["da"]).unlink()
    with open_as(path, "admin", clock) as v:
        assert ids["da"] in v.check_files()


def test_a_rewritten_history_is_caught_by_a_checkpoint_and_by_witnesses(two_patients, clock, tmp_path, monkeypatch):
    """The researcher drops the withdrawal and re-signs every later record as themselves."""
    path, ids = two_patients
    checkpoint = tmp_path / "removable" / "checkpoint.txt"
    with open_as(path, "admin", clock) as v:
        v.write_checkpoint(checkpoint)
    db = insider_index(path, "researcher")
    vault_id, slot = _insider_slot(path, "researcher")
    records = [_log.parse(*r) for r in db.execute("SELECT seq, body, sig FROM log ORDER BY seq")]
    (drop,) = [r for r in records if r.action == "consent_withdraw"]
    db.execute("DELETE FROM consent_events WHERE action = 'withdraw'")
    db.execute("DELETE FROM log WHERE seq >= ?", (drop.seq,))
    prev = records[drop.seq - 2].hash
    for n, old in enumerate(records[drop.seq:], start=drop.seq):
        if old.content.get("rows"):
            continue
        c = old.content
        new = _log.make_record(vault_id=vault_id, seq=n, prev=prev, time=c["time"], user="res",
                               action=c["action"], detail=c["detail"], rows={}, signing_key=slot.signing)
        db.execute("INSERT INTO log VALUES (?, ?, ?)", (new.seq, new.body, new.sig))
        prev = new.hash
    db.close()
    # a reader with no witness and no checkpoint sees a consistent log ...
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "fresh"))
    with open_as(path, "educator", clock) as v:
        assert v.verify_audit().ok
        # ... but not against the checkpoint kept outside the vault
        check = v.verify_audit(checkpoint=checkpoint)
        assert not check.ok and "checkpoint" in check.reason
    monkeypatch.setenv(wb.vault.CHECKPOINT_ENV, str(checkpoint))
    with pytest.raises(wb.IntegrityError, match="checkpoint"):
        open_as(path, "educator", clock)


def test_an_older_index_put_back_is_caught(two_patients, clock, tmp_path, monkeypatch):
    path, ids = two_patients
    old_index = tmp_path / "index-before.db"
    with open_as(path, "admin", clock) as v:
        v.close()
    shutil.copy(path / "index.db", old_index)
    checkpoint = tmp_path / "cp.txt"
    monkeypatch.setenv(wb.vault.CHECKPOINT_ENV, str(checkpoint))
    with open_as(path, "admin", clock) as v:
        v.withdraw_consent("MRN-0001")  # writes the configured checkpoint
    assert checkpoint.exists()
    for suffix in ("-wal", "-shm"):
        (path / f"index.db{suffix}").unlink(missing_ok=True)
    shutil.copy(old_index, path / "index.db")
    # the admin's own witness (outside the vault) catches it
    monkeypatch.delenv(wb.vault.CHECKPOINT_ENV)
    with pytest.raises(wb.IntegrityError, match="verified before"):
        open_as(path, "admin", clock)
    # and so does the checkpoint, for a user who never opened it before
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "fresh"))
    monkeypatch.setenv(wb.vault.CHECKPOINT_ENV, str(checkpoint))
    with pytest.raises(wb.IntegrityError, match="checkpoint"):
        open_as(path, "researcher", clock)


def test_a_whole_vault_folder_rolled_back_past_a_removal_is_caught(vault_path, clock, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    with open_as(vault_path, "admin", clock):
        pass
    shutil.copytree(vault_path, copy)
    checkpoint = tmp_path / "cp.txt"
    monkeypatch.setenv(wb.vault.CHECKPOINT_ENV, str(checkpoint))
    with open_as(vault_path, "admin", clock) as v:
        v.remove_user("edu")  # writes the configured checkpoint
    shutil.rmtree(vault_path)
    shutil.copytree(copy, vault_path)  # slots, grants, index: all as before the removal
    with pytest.raises(wb.IntegrityError, match="checkpoint"):
        open_as(vault_path, "educator", clock)
    monkeypatch.delenv(wb.vault.CHECKPOINT_ENV)
    with pytest.raises(wb.IntegrityError, match="verified before"):
        open_as(vault_path, "admin", clock)


def test_a_removed_user_putting_their_slot_back_is_refused(vault_path, clock):
    """Their keys were replaced: the old slot and grant open neither the index nor a new file."""
    users = vault_path / "users"
    kept = {name: (users / name).read_bytes() for name in ("res.slot", "res.grant")}
    _, old = _insider_slot(vault_path, "researcher")
    with open_as(vault_path, "photographer", clock) as v:
        before = v.add_photo(jpeg_bytes(7), patient="MRN-0001", body_site="arm").photo_id
    with open_as(vault_path, "admin", clock) as v:
        old_wrapped = v._query("SELECT wrapped_key FROM blobs WHERE photo_id = ? AND kind = 'pixels'", (before,))[0][0]
        v.remove_user("res")
        blob = v.put_derivative(before, "deid_jpeg", b"made after the removal")
        assert v.load_derivative(blob, purpose="research") == b"made after the removal"
        new_wrapped = v._query("SELECT wrapped_key FROM blobs WHERE blob_id = ?", (blob,))[0][0]
        assert v._query("SELECT wrapped_key FROM blobs WHERE photo_id = ? AND kind = 'pixels'",
                        (before,))[0][0] != old_wrapped  # re-wrapped
    for name, data in kept.items():
        (users / name).write_bytes(data)
    with pytest.raises(wb.AccessDenied, match="removed"):
        open_as(vault_path, "researcher", clock)
    from workbench.vault import _crypto

    with pytest.raises(_crypto.CryptoFailure):  # their old derivatives key opens nothing new
        _crypto.open_symmetric(old.keyset.keys["derivatives"], new_wrapped,
                               _crypto.blob_aad(blob, "deid_jpeg"))
    for role in ("clinician", "educator", "photographer", "analyst"):
        with open_as(vault_path, role, clock) as v:  # everyone else still opens it
            assert v.verify_audit().ok


def test_a_withdrawn_patients_derivatives_are_not_listed_or_loaded(two_patients, clock):
    path, ids = two_patients
    with open_as(path, "researcher", clock) as v:
        assert v.derivatives(ids["b"], purpose="research").empty
        with pytest.raises(wb.ConsentError):
            v.load_derivative(ids["db"], purpose="research")
        assert set(v.deid_results(purpose="research")["photo_id"]) <= {ids["a"]}
        assert v.load_derivative(ids["da"], purpose="research") == b"derivative of a"


def test_shredding_does_what_its_documentation_says(two_patients, clock, tmp_path):
    """This vault can never decrypt them again; a copy made before the shred still can."""
    path, ids = two_patients
    backup = tmp_path / "backup"
    shutil.copytree(path, backup)
    with open_as(path, "clinician", clock) as v:
        ref = v.photos("care").set_index("photo_id").loc[ids["a"], "patient_ref"]
        assert v.shred_derivatives(ref) == 1
        with pytest.raises(wb.NotFound):
            v.load_derivative(ids["da"], purpose="research")
        (wrapped,) = v._query("SELECT wrapped_key FROM blobs WHERE blob_id = ?", (ids["da"],))[0]
        assert wrapped is None and not v._blob_path(ids["da"]).exists()
    from pathlib import Path

    said = "a backup or copy of the vault folder made before the shred still"
    assert said in " ".join(wb.Vault.shred_derivatives.__doc__.split())
    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert said in " ".join(readme.read_text().split())
    with open_as(backup, "researcher", clock) as v:  # the statement, proven
        assert v.load_derivative(ids["da"], purpose="research") == b"derivative of a"


def test_an_analyst_gets_pixels_but_not_the_file_with_its_metadata(vault_path, clock):
    from PIL import Image

    exif = Image.Exif()
    exif[0x013B] = "ZZTEST Artist Name"  # Artist
    with open_as(vault_path, "photographer", clock) as v:
        photo_id = v.add_photo(jpeg_bytes(5, exif=exif), patient="MRN-0001", body_site="arm").photo_id
    with open_as(vault_path, "analyst", clock) as v:
        with pytest.raises(wb.AccessDenied):
            v.read_original_file(photo_id)
        assert v.load_original(photo_id).shape[:2] == (64, 96)
    with open_as(vault_path, "clinician", clock) as v:
        assert b"ZZTEST Artist Name" in v.read_original_file(photo_id)


def test_a_table_put_back_as_a_reader_last_verified_it_is_still_caught(vault_path, clock):
    """Readers skip re-hashing rows they verified against the same head; a newer head needs the new rows."""
    with open_as(vault_path, "researcher", clock) as v:
        v.photos("research")  # the researcher's witness now remembers the photos table it checked
    with open_as(vault_path, "photographer", clock) as v:
        added = v.add_photo(jpeg_bytes(9), patient="MRN-0001", body_site="arm").photo_id
    db = insider_index(vault_path, "researcher")
    db.execute("DELETE FROM photos WHERE photo_id = ?", (added,))  # back to what was verified
    db.close()
    with open_as(vault_path, "researcher", clock) as v:
        with pytest.raises(wb.IntegrityError, match="photos"):
            v.photos("research")


def test_a_restored_backup_is_refused_until_its_user_forgets_their_witness(vault_path, clock, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(vault_path, backup)
    with open_as(vault_path, "admin", clock) as v:
        v.add_consent("MRN-0009", "care")
    shutil.rmtree(vault_path)
    shutil.copytree(backup, vault_path)  # the disk failed; the last backup comes back
    with pytest.raises(wb.IntegrityError, match="verified before"):
        open_as(vault_path, "admin", clock)
    assert wb.vault.forget_witness(vault_path, user=ROLE_USERS["admin"])
    assert not wb.vault.forget_witness(vault_path, user=ROLE_USERS["admin"])
    with open_as(vault_path, "admin", clock) as v:
        assert v.verify_audit().ok
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "workbench", "--vault", str(vault_path), "--user",
                          ROLE_USERS["admin"], "vault", "forget-witness"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, env={**os.environ, "WORKBENCH_PASSPHRASE": ""})
    assert out.returncode == 0 and "forgot" in out.stdout, out.stderr  # opening above made a new one


# --- every byte a role can obtain --------------------------------------------

#: identifiers planted in every place a camera or a hospital system writes them
PLANTED = {
    "patient name": b"ZZPLANT Ngata",
    "patient number": b"ZZMRN-4242",
    "birth date": b"1931-07-19",
    "camera serial": b"ZZSERIAL-0731",
    "camera model": b"ZZMODEL-R6",
    "artist": b"ZZARTIST Koru",
    "description": b"ZZDESC ward 9",
    "xmp": b"ZZXMP Moana",
    "iptc": b"ZZIPTC Tane",
    "comment": b"ZZCOMMENT bed 4",
    "application segment": b"ZZAPP15 Rangi",
    "after the image": b"ZZTRAILER Papa",
    "png text": b"ZZPNGTEXT Hine",
    "png compressed text": b"ZZPNGZTXT Tama",
    "png international text": b"ZZPNGITXT Aroha",
    "file name": b"ZZFILENAME Wiremu",
    "raw file": b"ZZRAWOWNER Kahu",
}


def _planted_cr3() -> bytes:
    """A file with a Canon CR3's container whose metadata names its owner (a RAW+JPEG shot's raw file)."""
    body = b"CMT1 owner " + PLANTED["raw file"] + bytes(2000)
    return (24).to_bytes(4, "big") + b"ftypcrx " + (1).to_bytes(4, "big") + b"crx isom" + \
        (8 + len(body)).to_bytes(4, "big") + b"mdat" + body


def _segment(code: int, body: bytes) -> bytes:
    return bytes((0xFF, code)) + (len(body) + 2).to_bytes(2, "big") + body


def _planted_jpeg(seed: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0110] = PLANTED["camera model"].decode()
    exif[0x013B] = PLANTED["artist"].decode()
    exif[0x010E] = PLANTED["description"].decode()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0xA431] = PLANTED["camera serial"].decode()
    plain = jpeg_bytes(seed, exif=exif)
    xmp = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + PLANTED["xmp"] + b"</x:xmpmeta>")
    iptc = _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10\x1c\x02\x05\x00\x0b"
                    + PLANTED["iptc"])
    extra = xmp + iptc + _segment(0xEF, PLANTED["application segment"]) + _segment(0xFE, PLANTED["comment"])
    return plain[:2] + extra + plain[2:] + PLANTED["after the image"]


def _planted_png(seed: int) -> bytes:
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", PLANTED["png text"].decode())
    info.add_text("Comment", PLANTED["png compressed text"].decode() * 20, zip=True)
    info.add_itxt("Description", PLANTED["png international text"].decode(), zip=True)
    exif = Image.Exif()
    exif[0x013B] = PLANTED["artist"].decode()
    out = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(seed))).save(out, "PNG", pnginfo=info, exif=exif)
    return out.getvalue()


def _planted_webp(seed: int) -> bytes:
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x013B] = PLANTED["artist"].decode()
    out = io.BytesIO()
    Image.open(io.BytesIO(png_bytes(seed))).save(out, "WEBP", lossless=True, exif=exif)
    return out.getvalue()


def _expanded(data: bytes) -> list[bytes]:
    """``data``, and the inflated content of every compressed PNG chunk in it (text hides there)."""
    import zlib

    out = [data]
    for start in range(len(data)):
        if data[start:start + 4] in (b"zTXt", b"iTXt", b"iCCP") and start >= 4:
            end = start + 4 + int.from_bytes(data[start - 4:start], "big")
            for offset in range(start + 4, min(end, start + 120)):
                try:
                    out.append(zlib.decompress(data[offset:end]))
                    break
                except zlib.error:
                    continue
    return out


def _everything_obtainable(path, role: str) -> list[bytes]:
    """Every byte ``role``'s account can reach: each file of the vault folder as it is, every row
    of the index (opened with their own index key), and whatever their own keys of every epoch
    decrypt: files and sealed records, tried with every key they hold."""
    from workbench.vault import _crypto

    vault_id, slot = _insider_slot(path, role)
    keys = [key for _, keyset in slot.keysets for key in keyset.keys.values()]
    found = [p.read_bytes() for p in path.rglob("*") if p.is_file()]

    def opened(sealed: bytes, aad: bytes):
        for key in keys:
            for attempt in (_crypto.open_sealed, _crypto.open_symmetric):
                try:
                    return attempt(key, sealed, aad)
                except Exception:  # noqa: BLE001 - any failure is "this key does not open it"
                    continue
        return None

    db = insider_index(path, role)
    try:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            found += [repr(row).encode() for row in db.execute(f"SELECT * FROM {table}")]
        for blob_id, kind, wrapped in db.execute("SELECT blob_id, kind, wrapped_key FROM blobs"):
            data_key = opened(wrapped, _crypto.blob_aad(blob_id, kind)) if wrapped else None
            if data_key is not None:
                stored = (path / "blobs" / blob_id[:2] / blob_id).read_bytes()
                found.append(_crypto.decrypt_blob(data_key, blob_id, kind, stored))
        for label, sealed in [("patient:" + r, s) for r, s in db.execute("SELECT patient_ref, identity FROM patients")] \
                + [("photo:" + p, s) for p, s in db.execute("SELECT photo_id, identifiers FROM photos")]:
            found.append(opened(sealed, label.encode()) or b"")
    finally:
        db.close()
    return [part for data in found for part in _expanded(data)]


@pytest.fixture
def planted(vault_path, clock):
    """A vault whose photos, patient, consent form and file names carry every :data:`PLANTED` identifier."""
    with open_as(vault_path, "photographer", clock) as v:
        v.add_consent(PLANTED["patient number"].decode(), "care,research", name=PLANTED["patient name"].decode(),
                      birth_date=PLANTED["birth date"].decode(),
                      form=b"%PDF-1.4 consent of " + PLANTED["patient name"])
        ids = [v.add_photo(make(seed), patient=PLANTED["patient number"].decode(), body_site="arm",
                           original_name=PLANTED["file name"].decode() + ext).photo_id
               for seed, make, ext in ((1, _planted_jpeg, ".jpg"), (2, _planted_png, ".png"),
                                       (3, _planted_webp, ".webp"))]
        v.add_raw_companion(ids[0], _planted_cr3(), ".cr3")
    with open_as(vault_path, "analyst", clock) as v:
        v.render_previews()
        for photo_id in ids:
            v.put_derivative(photo_id, "deid_png", v.load_previews([photo_id], purpose="research")[photo_id])
    with open_as(vault_path, "admin", clock) as v:  # the share portal's own account
        v.add_user("portal", "portal", passphrase("portal"))
    return vault_path, ids


@pytest.mark.parametrize("role", ["analyst", "researcher", "educator", "photographer", "portal"])
def test_no_identifier_in_any_byte_a_role_without_identities_can_obtain(planted, clock, role):
    """The analyst's originals key opens pixels, never the file with its metadata: searched in
    every byte each role can reach around the workbench (and through it, for the analyst)."""
    path, ids = planted
    reachable = _everything_obtainable(path, role)
    if role == "analyst":
        with open_as(path, role, clock) as v:
            for photo_id in ids:
                pixels = v._read_pixels_file(photo_id, "test")
                assert pixels in reachable  # the search covers what the workbench gives them
                assert v.load_original(photo_id).shape[2] == 3
    leaks = sorted(name for name, value in PLANTED.items() if any(value in data for data in reachable))
    assert leaks == []


def test_the_search_for_identifiers_finds_them_where_identities_are_held(planted, clock):
    """The same search, as a clinician, finds every identifier: it can fail."""
    path, ids = planted
    reachable = _everything_obtainable(path, "clinician")
    missed = sorted(name for name, value in PLANTED.items() if not any(value in data for data in reachable))
    assert missed == []
    with open_as(path, "analyst", clock) as v, open_as(path, "clinician", clock) as c:
        for photo_id in ids:  # the same upright pixels, whichever file they come from
            from workbench import _imageio

            assert (_imageio.decode(c.read_original_file(photo_id)) == v.load_original(photo_id)).all()


def test_a_photographer_cannot_file_a_photo_whose_original_the_originals_key_opens(vault_path, clock):
    """An ingest record signed with a photographer's own key that seals the file as imported to the
    originals tier (so that analysts could read its metadata) breaks the log at the next open."""
    photo_id = "f" * 24
    data = _planted_jpeg(7)
    with open_as(vault_path, "photographer", clock) as v:
        blobs = [v._store_blob(kind, "originals", data, photo_id) for kind in ("metadata", "pixels")]
        ref = v._require_patient("MRN-0001", False)
        sealed = v._seal_record("identities", {}, "photo:" + photo_id)
    when = "2026-06-01T00:00:00+00:00"
    photo = (photo_id, ref, "k" * 64, "jpeg", 96, 64, "arm", None, None, None, when, "pho",
             blobs[0][0], blobs[1][0], sealed)
    vault_id, slot = _insider_slot(vault_path, "photographer")
    db = insider_index(vault_path, "photographer")
    seq, body, sig = db.execute("SELECT seq, body, sig FROM log ORDER BY seq DESC LIMIT 1").fetchone()
    record = _log.make_record(vault_id=vault_id, seq=seq + 1, prev=_log.parse(seq, body, sig).hash,
                              time=when, user="pho", action="ingest", detail={"photo_id": photo_id},
                              rows={"blobs": [b[:6] for b in blobs], "photos": [photo]},
                              signing_key=slot.signing)
    for b in blobs:
        db.execute("INSERT INTO blobs VALUES (?, ?, ?, ?, ?, ?, ?)", b)
    db.execute(f"INSERT INTO photos VALUES ({', '.join('?' * len(photo))})", photo)
    db.execute("INSERT INTO log VALUES (?, ?, ?)", (record.seq, record.body, record.sig))
    db.close()
    with pytest.raises(wb.IntegrityError, match="metadata file of the originals tier"):
        open_as(vault_path, "analyst", clock)
