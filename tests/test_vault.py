"""Vault basics: opening, roles limited by keys, consent queries, identifiers, audit."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

import workbench as wb
from argon2.low_level import Type, hash_secret_raw

from workbench.vault import _crypto, _keys

from conftest import ROLE_USERS, jpeg_bytes, leave_stale_files, open_as, passphrase, png_bytes


def test_wrong_passphrase_and_unknown_user_look_the_same(vault_path):
    with pytest.raises(wb.AccessDenied) as wrong:
        wb.open_vault(vault_path, user="ada", passphrase="not-it")
    with pytest.raises(wb.AccessDenied) as unknown:
        wb.open_vault(vault_path, user="nobody", passphrase="not-it")
    assert str(wrong.value) == str(unknown.value)
    assert "not-it" not in str(wrong.value)


def test_not_a_vault(tmp_path):
    with pytest.raises(wb.NotFound):
        wb.open_vault(tmp_path, user="ada", passphrase="x" * 8)


def test_init_refuses_non_empty_folder(tmp_path):
    (tmp_path / "something").write_text("keep me")
    with pytest.raises(wb.AlreadyExists):
        wb.init_vault(tmp_path, admin="ada", passphrase=passphrase("ada"))
    assert (tmp_path / "something").read_text() == "keep me"


def test_slot_role_cannot_be_promoted_by_editing_the_file(vault_path):
    slot = vault_path / "users" / "res.slot"
    slot.write_text(slot.read_text().replace('"researcher"', '"admin"'))
    with pytest.raises(wb.AccessDenied):
        wb.open_vault(vault_path, user="res", passphrase=passphrase("res"))


def _slot(vault_path, user):
    return json.loads((vault_path / "users" / f"{user}.slot").read_text())


def _own_keys(vault_path, user):
    vault_id = json.loads((vault_path / "VAULT.json").read_text())["vault_id"]
    return vault_id, _slot(vault_path, user)["role"], _keys.unlock_slot(vault_path, vault_id, user, passphrase(user))


def _hand_written_slot(vault_path, user, own, version, cost, passphrase_):
    """A slot for ``user`` written here, not by the workbench: their own keys under ``cost``."""
    vault_id, role, old = own
    salt = _crypto.new_salt()
    t, m, p = cost
    kek = hash_secret_raw(passphrase_.encode(), salt, time_cost=t, memory_cost=m, parallelism=p,
                          hash_len=32, type=Type.ID)
    aad = f"workbench slot v{version}|{vault_id}|{user}|{role}"
    if version >= 3:
        aad += f"|argon2id m={m},t={t},p={p}"
    payload = json.dumps({"signing": _crypto.b64e(old.signing), "box": _crypto.b64e(old.box),
                          "genesis": old.genesis}).encode()
    doc = {"version": version, "user": user, "role": role, "salt": _crypto.b64e(salt),
           "wrapped": _crypto.b64e(_crypto.seal_symmetric(kek, payload, aad.encode()))}
    if version >= 3:
        doc["argon2id"] = {"m": m, "t": t, "p": p}
    (vault_path / "users" / f"{user}.slot").write_text(json.dumps(doc))


def test_a_new_slot_records_the_default_argon2_cost_unless_told(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_ARGON2", raising=False)
    with wb.init_vault(tmp_path / "v", admin="ada", passphrase=passphrase("ada")) as admin:
        admin.add_user("res", "researcher", passphrase("res"))
    assert _slot(tmp_path / "v", "res")["argon2id"] == {"m": 65536, "t": 3, "p": 4}
    monkeypatch.setenv("WORKBENCH_ARGON2", "m=131072,t=4,p=2")
    with wb.open_vault(tmp_path / "v", user="ada", passphrase=passphrase("ada")) as admin:
        admin.set_passphrase("ada", passphrase("ada") + "-new")
    assert _slot(tmp_path / "v", "ada")["argon2id"] == {"m": 131072, "t": 4, "p": 2}
    monkeypatch.delenv("WORKBENCH_ARGON2")
    # each slot opens with the cost it records, whatever the opener's setting
    with wb.open_vault(tmp_path / "v", user="ada", passphrase=passphrase("ada") + "-new") as admin:
        assert admin.role == "admin"
    with wb.open_vault(tmp_path / "v", user="res", passphrase=passphrase("res")) as res:
        assert res.role == "researcher"


@pytest.mark.parametrize("setting", ["m=8192,t=1,p=1", "m=19456,t=2", "m=19456,t=2,p=1,x=3", "fast",
                                     "m=19456,t=2,p=0", "m=4194304,t=2,p=1", "m=19456,t=true,p=1"])
def test_an_argon2_setting_below_the_floor_or_unreadable_writes_no_slot(vault_path, monkeypatch, setting):
    monkeypatch.setenv("WORKBENCH_ARGON2", setting)
    with open_as(vault_path, "admin") as admin:
        with pytest.raises(wb.InvalidInput, match="WORKBENCH_ARGON2 must read m=<KiB>,t=<passes>,p=<lanes>"):
            admin.add_user("newbie", "researcher", passphrase("newbie"))
    assert not (vault_path / "users" / "newbie.slot").exists()


def test_a_slot_written_before_version_3_opens_and_a_new_passphrase_makes_it_version_3(vault_path):
    _hand_written_slot(vault_path, "res", _own_keys(vault_path, "res"), 2, _crypto.ARGON2_COST, passphrase("res"))
    assert "argon2id" not in _slot(vault_path, "res")
    with open_as(vault_path, "admin") as admin:  # the admin's list says which slots to rewrite
        listed = admin.users().set_index("user")
    assert tuple(listed.loc["res", ["passphrase_kdf", "slot"]]) == ("argon2id m=65536,t=3,p=4",
                                                                     "version 2: run user passwd")
    # the suite's setting (conftest)
    assert tuple(listed.loc["cli", ["passphrase_kdf", "slot"]]) == ("argon2id m=19456,t=2,p=1", "version 3")
    with open_as(vault_path, "researcher") as res:
        res.set_passphrase("res", "a-new-researcher-phrase")
    assert _slot(vault_path, "res")["version"] == 3
    with open_as(vault_path, "admin") as admin:
        assert tuple(admin.users().set_index("user").loc["res", ["passphrase_kdf", "slot"]]) == (
            "argon2id m=19456,t=2,p=1", "version 3")
    with wb.open_vault(vault_path, user="res", passphrase="a-new-researcher-phrase") as res:
        assert res.role == "researcher"


def test_a_slot_whose_cost_is_edited_or_below_the_floor_does_not_open(vault_path):
    own = _own_keys(vault_path, "res")
    # the check below would pass a hand-made slot at the floor itself
    _hand_written_slot(vault_path, "res", own, 3, _crypto.ARGON2_FLOOR, passphrase("res"))
    with open_as(vault_path, "researcher") as res:
        assert res.role == "researcher"
    slot = vault_path / "users" / "res.slot"
    doc = _slot(vault_path, "res")
    doc["argon2id"]["t"] = 3  # a dearer cost: the key derived differs and so does the slot's AAD
    slot.write_text(json.dumps(doc))
    with pytest.raises(wb.AccessDenied):
        open_as(vault_path, "researcher")
    # a slot whose own cost is below the floor, made by someone who knew the passphrase
    _hand_written_slot(vault_path, "res", own, 3, (1, 8192, 1), passphrase("res"))
    with pytest.raises(wb.AccessDenied):
        open_as(vault_path, "researcher")
    # a version-2 slot is only ever read at the default cost
    _hand_written_slot(vault_path, "res", own, 2, _crypto.ARGON2_FLOOR, passphrase("res"))
    with pytest.raises(wb.AccessDenied):
        open_as(vault_path, "researcher")


def _ingest_one(path, clock, seed=1, patient="MRN-0001"):
    with open_as(path, "photographer", clock) as pho:
        result = pho.add_photo(jpeg_bytes(seed), patient=patient, body_site="forearm")
    assert result.status == "added"
    return result.photo_id


EXPECTED = {
    # role: (read originals, see identifiers, add photos, manage users)
    "admin": (True, True, True, True),
    "photographer": (False, False, True, False),
    "clinician": (True, True, True, False),
    "analyst": (True, False, False, False),
    "researcher": (False, False, False, False),
    "educator": (False, False, False, False),
}


@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_role_matrix(vault_path, clock, role):
    photo_id = _ingest_one(vault_path, clock)
    read_ok, ids_ok, add_ok, users_ok = EXPECTED[role]
    with open_as(vault_path, role, clock) as v:
        assert v.role == role
        # everybody can query non-identifying fields
        assert photo_id in set(v.photos("research")["photo_id"])
        if read_ok:
            pixels = v.load_original(photo_id)
            assert pixels.shape == (64, 96, 3) and pixels.dtype == np.uint8
            assert len(v.load_previews([photo_id])[photo_id]) > 100
        else:
            with pytest.raises(wb.AccessDenied):
                v.load_original(photo_id)
            with pytest.raises(wb.AccessDenied):
                v.load_previews([photo_id])
        if ids_ok:
            frame = v.photos("research", include_identifiers=True)
            assert frame.loc[0, "patient_id"] == "MRN-0001"
            assert frame.loc[0, "patient_name"] == "ZZTEST Alpha"
        else:
            with pytest.raises(wb.AccessDenied):
                v.photos("research", include_identifiers=True)
        if add_ok:
            assert v.add_photo(png_bytes(7), patient="MRN-0001", body_site="hand").status == "added"
        else:
            with pytest.raises(wb.AccessDenied):
                v.add_photo(png_bytes(7), patient="MRN-0001", body_site="hand")
        if users_ok:
            v.add_user("newbie", "researcher", passphrase("newbie"))
        else:
            with pytest.raises(wb.AccessDenied):
                v.add_user("newbie", "researcher", passphrase("newbie"))


@pytest.mark.parametrize("role", ["photographer", "researcher", "educator"])
def test_refusal_is_cryptographic(vault_path, clock, role):
    """Even calling the crypto layer directly, no key of these roles opens an original."""
    photo_id = _ingest_one(vault_path, clock)
    with open_as(vault_path, role, clock) as v:
        (blob_id, wrapped, kind), = v._query(
            "SELECT b.blob_id, b.wrapped_key, b.kind FROM blobs b JOIN photos p "
            "ON b.blob_id = p.pixels_blob WHERE p.photo_id = ?", (photo_id,))
        aad = _crypto.blob_aad(blob_id, kind)
        file_bytes = v._blob_path(blob_id).read_bytes()
        assert "originals" not in v._keys.keys
        for tier, key in v._keys.keys.items():
            for attempt in (_crypto.open_sealed, _crypto.open_symmetric):
                try:
                    data_key = attempt(key, wrapped, aad)
                except (_crypto.CryptoFailure, ValueError, TypeError):
                    continue
                with pytest.raises(_crypto.CryptoFailure):
                    _crypto.decrypt_blob(data_key, blob_id, kind, file_bytes)
                pytest.fail(f"the {tier} key of a {role} unwrapped an original's data key")


def test_identifiers_only_when_asked(vault_path, clock):
    _ingest_one(vault_path, clock)
    with open_as(vault_path, "clinician", clock) as v:
        plain = v.photos("research")
        assert not set(wb.vault.IDENTIFIER_COLUMNS) & set(plain.columns)
        assert "MRN-0001" not in plain.to_csv()


def test_purpose_must_be_a_scope(vault_path, clock):
    with open_as(vault_path, "researcher", clock) as v:
        with pytest.raises(wb.ConsentError):
            v.photos("marketing")


def test_consent_filtering_withdrawal_and_expiry(vault_path, clock):
    research = _ingest_one(vault_path, clock, seed=1, patient="MRN-0001")
    education = _ingest_one(vault_path, clock, seed=2, patient="MRN-0002")
    with open_as(vault_path, "admin", clock) as v:
        assert set(v.photos("research")["photo_id"]) == {research}
        assert set(v.photos("education")["photo_id"]) == {education}
        assert set(v.photos("care")["photo_id"]) == {research, education}
        assert v.photos("publication").empty
        v.add_consent("MRN-0002", "publication", expires="2026-06-10")
        assert set(v.photos("publication")["photo_id"]) == {education}
        clock.moment += timedelta(days=9)  # 2026-06-10: last valid day
        assert set(v.photos("publication")["photo_id"]) == {education}
        clock.moment += timedelta(days=1)
        assert v.photos("publication").empty
        v.withdraw_consent("MRN-0001", "research")
        assert v.photos("research").empty
        assert set(v.photos("care")["photo_id"]) == {research, education}
        history = v.consent_history()
        assert list(history["action"]) == ["grant", "grant", "grant", "withdraw"]


def test_unknown_patient_or_no_consent_is_refused(vault_path, clock):
    with open_as(vault_path, "photographer", clock) as v:
        with pytest.raises(wb.ConsentError):
            v.add_photo(jpeg_bytes(3), patient="MRN-9999", body_site="knee")
        result = v.add_photo(jpeg_bytes(3), patient="MRN-9999", body_site="knee", allow_no_consent=True)
        assert result.status == "added"
        # a patient with a record but no consent is still refused without the flag
        with pytest.raises(wb.ConsentError):
            v.add_photo(jpeg_bytes(4), patient="MRN-9999", body_site="knee")
    with open_as(vault_path, "admin", clock) as v:
        assert result.photo_id in set(v.photos("care")["photo_id"])
        for purpose in ("research", "education", "publication"):
            assert result.photo_id not in set(v.photos(purpose)["photo_id"])


def test_duplicates_are_reported_not_added(vault_path, clock):
    first = _ingest_one(vault_path, clock, seed=5)
    with open_as(vault_path, "photographer", clock) as v:
        again = v.add_photo(jpeg_bytes(5), patient="MRN-0001", body_site="forearm")
        assert again.status == "duplicate" and again.photo_id == first
    with open_as(vault_path, "admin", clock) as v:
        assert len(v.photos("care")) == 1


def test_filters(vault_path, clock):
    with open_as(vault_path, "photographer", clock) as v:
        a = v.add_photo(jpeg_bytes(1), patient="MRN-0001", body_site="Forearm", laterality="left").photo_id
        b = v.add_photo(jpeg_bytes(2), patient="MRN-0001", body_site="knee", diagnosis="L40.0").photo_id
    with open_as(vault_path, "researcher", clock) as v:
        assert set(v.photos("research", body_site="forearm")["photo_id"]) == {a}
        assert set(v.photos("research", body_site=["forearm", "knee"])["photo_id"]) == {a, b}
        assert set(v.photos("research", diagnosis="L40.0")["photo_id"]) == {b}
        with pytest.raises(wb.InvalidInput):
            v.photos("research", patient_name="x")


def test_withdrawal_can_shred_derivatives(vault_path, clock):
    photo_id = _ingest_one(vault_path, clock)
    with open_as(vault_path, "admin", clock) as v:
        blob_id = v.put_derivative(photo_id, "deid_jpeg", b"de-identified bytes")
        assert v.load_derivative(blob_id, purpose="research") == b"de-identified bytes"
        backup = v._blob_path(blob_id).read_bytes()
        v.withdraw_consent("MRN-0001", shred_derivatives=True)
        with pytest.raises(wb.NotFound):
            v.load_derivative(blob_id, purpose="care")
        assert v.derivatives(photo_id, purpose="care").empty
        assert b"de-identified" not in backup  # a backup copy holds only ciphertext
        # the consent history still shows the withdrawal; nothing was deleted
        assert list(v.consent_history()["action"])[-1] == "withdraw"


def test_audit_records_every_kind_of_access(vault_path, clock):
    photo_id = _ingest_one(vault_path, clock)
    with open_as(vault_path, "clinician", clock) as v:
        v.photos("research")
        v.load_original(photo_id)
        v.add_consent("MRN-0003", "research")
        with pytest.raises(wb.AccessDenied):
            v.add_user("x", "researcher", passphrase("x"))
        records = v.audit_records()
    actions = list(records["action"])
    for action in ("vault_init", "user_add", "consent_grant", "vault_open", "ingest",
                   "query", "decrypt_original", "denied"):
        assert action in actions, action
    query = records[records["action"] == "query"].iloc[-1]
    assert query["detail"]["purpose"] == "research"
    text = records.to_json()
    assert "MRN-0001" not in text and "MRN-0003" not in text and "ZZTEST" not in text


def test_user_management(vault_path, clock):
    with open_as(vault_path, "admin", clock) as v:
        v.set_passphrase("res", "a-new-phrase")
        v.remove_user("edu")
        with pytest.raises(wb.InvalidInput):
            v.remove_user("ada")  # the last admin
    with pytest.raises(wb.AccessDenied):
        wb.open_vault(vault_path, user="res", passphrase=passphrase("res"))
    with wb.open_vault(vault_path, user="res", passphrase="a-new-phrase") as v:
        assert v.role == "researcher"
        v.set_passphrase("res", "another-phrase")
        with pytest.raises(wb.AccessDenied):
            v.set_passphrase("ana", "hijacked-phrase")
    with pytest.raises(wb.AccessDenied):
        wb.open_vault(vault_path, user="edu", passphrase=passphrase("edu"))


@pytest.mark.parametrize("stop", ["before the index swap", "after the index swap"])
def test_a_removal_killed_at_the_index_swap_denies_the_removed_user_clearly(vault_path, stop):
    # The full crash test (test_crash) once killed a removal after the new
    # index was in place and before the header named the new epoch: the
    # removed user's keys then met an index they could not open, and opening
    # said the index was damaged instead of denying them. Here the process
    # dies (no clean-up runs, as under SIGKILL) just before or just after
    # the swap.
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        import workbench as wb
        real = os.replace
        def replace(src, dst):
            if Path(dst).name == "index.db":
                if {stop == "after the index swap"}:
                    real(src, dst)
                os._exit(137)
            return real(src, dst)
        os.replace = replace
        with wb.open_vault(sys.argv[1], user="ada", passphrase=sys.argv[2]) as v:
            v.remove_user("edu")
    """)
    killed = subprocess.run([sys.executable, "-c", script, str(vault_path), passphrase("ada")], capture_output=True)
    assert killed.returncode == 137, killed.stderr.decode()[-2000:]
    with open_as(vault_path, "admin") as v:  # every remaining user opens the vault
        assert v.verify_audit().ok
        done = "edu" not in set(v.users()["user"])
        assert done is (stop == "after the index swap")
        if not done:
            v.remove_user("edu")  # running it again completes it
    with open_as(vault_path, "researcher") as v:
        assert v.role == "researcher"
    with pytest.raises(wb.AccessDenied):
        wb.open_vault(vault_path, user="edu", passphrase=passphrase("edu"))


def _preview_blobs(v) -> dict:
    return {photo_id: v._photo_row(photo_id).preview for (photo_id,) in v._query("SELECT photo_id FROM photos")}


def test_previews_are_rendered_once_by_the_first_reader(vault_path, clock):
    """Ingest validates JPEG/PNG from structure only; the first originals-key reader renders previews."""
    from io import BytesIO

    from PIL import Image

    big = jpeg_bytes(5, size=(1200, 800))
    with open_as(vault_path, "photographer", clock) as pho:
        ids = [pho.add_photo(d, patient="MRN-0001", body_site="arm").photo_id
               for d in (jpeg_bytes(1), big, png_bytes(2))]
        assert set(_preview_blobs(pho).values()) == {None}
        with pytest.raises(wb.AccessDenied):
            pho.render_previews()
    with open_as(vault_path, "researcher", clock) as res:
        with pytest.raises(wb.AccessDenied):
            res.render_previews(ids)
    with open_as(vault_path, "analyst", clock) as ana:
        first = ana.load_previews(ids[:2])  # renders two on first view
        blobs = _preview_blobs(ana)
        assert blobs[ids[2]] is None and None not in (blobs[ids[0]], blobs[ids[1]])
        assert ana.render_previews() == 1 and ana.render_previews() == 0
        again = ana.load_previews(ids)
        assert _preview_blobs(ana) == {**blobs, ids[2]: _preview_blobs(ana)[ids[2]]}
        assert again[ids[0]] == first[ids[0]] and again[ids[1]] == first[ids[1]]
        assert Image.open(BytesIO(again[ids[1]])).size == (512, 341)
        assert all(ana.verify_photo(p) for p in ids)
        actions = list(ana.audit_records()["action"])
        assert actions.count("render_previews") == 2
    files = sorted((vault_path / "blobs").glob("*/*"))
    assert len(files) == 3 * len(ids)  # each file as imported, its pixels, its preview: no stray copies


def test_preview_of_undecodable_original_fails_closed_and_keeps_it(vault_path, clock):
    """A JPEG whose structure is sound but whose pixels cannot be decoded is kept byte for byte."""
    good = jpeg_bytes(3, size=(640, 480))
    sos = good.index(b"\xff\xda")
    header_len = int.from_bytes(good[sos + 2:sos + 4], "big")
    # the scan header claims a Huffman table that was never defined
    bad = bytearray(good)
    bad[sos + 2 + header_len - 4] = 0x33  # last component: DC table 3, AC table 3
    bad = bytes(bad)
    with open_as(vault_path, "photographer", clock) as pho:
        photo_id = pho.add_photo(bad, patient="MRN-0001", body_site="arm").photo_id
    with open_as(vault_path, "analyst", clock) as ana:
        with pytest.raises(wb.InvalidInput, match="stored as imported"):
            ana.load_previews([photo_id])
        with pytest.raises(wb.AccessDenied):  # the file as imported is for roles that see identities
            ana.read_original_file(photo_id)
    with open_as(vault_path, "clinician", clock) as cli:
        assert cli.read_original_file(photo_id) == bad
    with open_as(vault_path, "analyst", clock) as ana:
        assert _preview_blobs(ana)[photo_id] is None


def test_stale_files_are_listed_then_removed_and_stored_photos_stay(vault_path, clock):
    photo_id = _ingest_one(vault_path, clock)
    stale = leave_stale_files(vault_path, clock)
    with open_as(vault_path, "admin", clock) as v:
        assert v.check_files() == []  # every file the index refers to is intact
        assert v.stale_files() == stale
        assert all(p.exists() for p in stale), "listing must not delete"
        assert v.remove_stale_files() == 2
        assert not any(p.exists() for p in stale)
        assert v.stale_files() == [] and v.check_files() == [] and v.verify_photo(photo_id)
        assert v.load_original(photo_id).shape == (64, 96, 3)
        assert "stale_files_removed" in set(v.audit_records()["action"])


def test_stale_files_are_not_looked_for_while_another_vault_may_commit_its_files(vault_path, clock):
    writer = open_as(vault_path, "photographer", clock)
    try:
        # written, its index row not committed yet: a running ingest looks like this
        blob_id = writer._store_blob("original", "originals", jpeg_bytes(5), "in-flight")[0]
        pending = vault_path / "blobs" / blob_id[:2] / blob_id
        with open_as(vault_path, "admin", clock) as admin:
            with pytest.raises(wb.ConflictError):
                admin.stale_files()
            with pytest.raises(wb.ConflictError):
                admin.remove_stale_files()
        assert pending.exists()
        assert writer.stale_files() == [pending]  # its own files it may judge
        with open_as(vault_path, "admin", clock) as admin, pytest.raises(wb.ConflictError):
            admin.stale_files()  # and it still holds its lock after doing so
    finally:
        writer.close()
    with open_as(vault_path, "admin", clock) as admin:
        assert admin.stale_files() == [pending]


WEAK = ["demo", "pw", "short-one", "password1234", "aaaaaaaaaaaaaaaa", "123456789012", "qwertyuiopasdf"]


@pytest.mark.parametrize("weak", WEAK)
def test_a_new_vault_refuses_a_weak_passphrase(tmp_path, weak):
    with pytest.raises(wb.InvalidInput) as err:
        wb.init_vault(tmp_path / "v", admin="ada", passphrase=weak)
    assert weak not in str(err.value) and "12 characters" in str(err.value)
    assert not (tmp_path / "v").exists()


def test_new_passphrases_of_users_meet_the_rule_and_old_ones_still_open(vault_path, clock, monkeypatch):
    with open_as(vault_path, "admin", clock) as v:
        for weak in WEAK:
            with pytest.raises(wb.InvalidInput):
                v.add_user("newbie", "researcher", weak)
            with pytest.raises(wb.InvalidInput):
                v.set_passphrase("res", weak)
        assert "newbie" not in set(v.users()["user"])
        assert not (vault_path / "users" / "newbie.slot").exists()
    with open_as(vault_path, "researcher", clock) as v:  # the old passphrase still opens
        with pytest.raises(wb.InvalidInput):
            v.set_passphrase("res", "res-res-res-res")  # the user's own name, repeated
    # a slot made before the rule existed: unlocking never applies it
    from workbench.vault import _keys

    with monkeypatch.context() as m:
        m.setattr(_keys, "check_passphrase", lambda passphrase, **_: passphrase)
        with open_as(vault_path, "admin", clock) as v:
            v.add_user("old", "researcher", "pw")
    with wb.open_vault(vault_path, user="old", passphrase="pw", clock=clock) as v:
        assert v.role == "researcher"
