"""Sharing, part one: encrypted bundles, and shares as signed records of the vault's log.

A bundle must reopen with standard tools (an AES-256 zip with its passphrase,
an age file with the collaborator's identity) and hold exactly the verified
files; anything that is not a verified cohort whose files match its signed
build record, or whose patients are not all still consented, is refused with
nothing written. Every bundle and share is an audit record, and neither the
portal's account nor an insider editing the index can make or change one.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import zipfile

import pandas as pd
import pytest

import workbench as wb
from workbench import share
from workbench.cli import main
from workbench.cohort import rebuild_cohort
from workbench.vault import _keys

from _share import copy_template, open_user
from conftest import insider_index, passphrase


@pytest.fixture
def root(share_template, tmp_path):
    return copy_template(share_template, tmp_path / "work")


def _manifest(folder):
    return pd.read_csv(folder / "manifest.csv", dtype=str)


def _expected_members(folder):
    m = _manifest(folder)
    names = {f"{folder.name}/{p}": h for p, h in zip(m["image"], m["sha256"])}
    names[f"{folder.name}/manifest.csv"] = hashlib.sha256((folder / "manifest.csv").read_bytes()).hexdigest()
    names[f"{folder.name}/DATACARD.md"] = hashlib.sha256((folder / "DATACARD.md").read_bytes()).hexdigest()
    return names


def _zip_digests(zf):
    return {name: hashlib.sha256(zf.read(name)).hexdigest() for name in zf.namelist()}


def _all_vault_bytes(root):
    return b"".join(p.read_bytes() for p in (root / "vault").rglob("*") if p.is_file())


def test_a_zip_bundle_reopens_with_its_passphrase_only_and_is_audited(root, tmp_path):
    import pyzipper

    folder = root / "datasets" / "research"
    with open_user(root, "researcher") as res:
        result = share.bundle(res, folder, tmp_path / "out.zip", collaborator="Dr Ng, Lyon")
        records = res.audit_records()
    assert result.format == "zip" and result.images == 5 and len(result.passphrase) >= 30
    assert result.passphrase not in repr(result)
    data = (tmp_path / "out.zip").read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.sha256
    with pyzipper.AESZipFile(io.BytesIO(data)) as zf:
        assert all(info.flag_bits & 0x1 for info in zf.infolist())  # every member encrypted
        zf.setpassword(result.passphrase.encode())
        assert _zip_digests(zf) == _expected_members(folder)  # exactly the verified files
    with pyzipper.AESZipFile(io.BytesIO(data)) as zf:
        zf.setpassword(b"not-the-passphrase")
        with pytest.raises(RuntimeError):
            zf.read(zf.namelist()[0])
    # no member readable without a passphrase, and no plain image bytes in the file
    first = (folder / _manifest(folder)["image"][0]).read_bytes()
    assert first[:2000] not in data
    bundles = records[records["action"] == "share_bundle"]
    assert len(bundles) == 1
    detail = bundles.iloc[0]["detail"]
    assert bundles.iloc[0]["user"] == "res" and detail["for"] == "Dr Ng, Lyon"
    assert detail["sha256"] == result.sha256 and detail["cohort"] == "research" and detail["format"] == "zip"
    # the passphrase is stored nowhere: not in the log, not in any file of the vault
    assert result.passphrase.encode() not in _all_vault_bytes(root)
    assert result.passphrase not in json.dumps(records["detail"].tolist())


def test_7zip_opens_the_zip_bundle(root, tmp_path):
    seven = shutil.which("7z") or shutil.which("7za") or shutil.which("7zz")
    if not seven:
        pytest.skip("7-Zip (7z) is not installed: `apt-get install 7zip` to check that it opens bundles")
    with open_user(root, "researcher") as res:
        result = share.bundle(res, root / "datasets" / "teaching", tmp_path / "t.zip", collaborator="x")
    out = tmp_path / "unpacked"
    run = subprocess.run([seven, "x", f"-p{result.passphrase}", f"-o{out}", str(tmp_path / "t.zip")],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in out.rglob("*") if p.is_file()}
    assert got == _expected_members(root / "datasets" / "teaching")


def test_an_age_bundle_opens_with_the_collaborators_identity_only(root, tmp_path):
    import pyrage

    identity, other = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    folder = root / "datasets" / "teaching"  # a teaching set bundles like a cohort
    with open_user(root, "educator") as edu:
        result = share.bundle(edu, folder, tmp_path / "t.age", collaborator="Prof Ito",
                              recipients=[str(identity.to_public())])
        with pytest.raises(wb.InvalidInput):
            share.bundle(edu, folder, tmp_path / "bad.age", collaborator="x", recipients=["age1nonsense"])
        detail = edu.audit_records().query("action == 'share_bundle'").iloc[-1]["detail"]
    assert result.passphrase is None and result.format == "age"
    data = (tmp_path / "t.age").read_bytes()
    assert data.startswith(b"age-encryption.org/v1")
    with zipfile.ZipFile(io.BytesIO(pyrage.decrypt(data, [identity]))) as zf:
        assert _zip_digests(zf) == _expected_members(folder)
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(data, [other])
    assert detail["recipients"] == [str(identity.to_public())] and detail["sha256"] == result.sha256
    assert not (tmp_path / "bad.age").exists()


def _tamper_image(folder):
    path = folder / _manifest(folder)["image"][0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _swap_consistently(folder):
    """Replace an image and fix its digest in the manifest (and provenance): only the signed record knows."""
    m = _manifest(folder)
    path = folder / m["image"][0]
    path.write_bytes((folder / m["image"][1]).read_bytes())
    m.loc[0, "sha256"] = m.loc[1, "sha256"]
    m.to_csv(folder / "manifest.csv", index=False, lineterminator="\n")
    prov = json.loads((folder / "provenance.json").read_text())
    prov["manifest_sha256"] = hashlib.sha256((folder / "manifest.csv").read_bytes()).hexdigest()
    (folder / "provenance.json").write_text(json.dumps(prov))


def _extra_file(folder):
    (folder / "images" / "IM-extra.jpg").write_bytes((folder / _manifest(folder)["image"][0]).read_bytes())


def _missing_file(folder):
    (folder / _manifest(folder)["image"][0]).unlink()


def _symlinked_image(folder):
    path = folder / _manifest(folder)["image"][0]
    target = folder.parent / "elsewhere.jpg"
    shutil.copyfile(path, target)
    path.unlink()
    path.symlink_to(target)


def _other_run(folder):
    prov = json.loads((folder / "provenance.json").read_text())
    prov["run_id"] = "0" * 32
    (folder / "provenance.json").write_text(json.dumps(prov))


def _edited_datacard(folder):
    with open(folder / "DATACARD.md", "a") as handle:
        handle.write("\nPatient: ZZTEST Alpha\n")


def _not_a_cohort(folder):
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"\xff\xd8 not a cohort")


@pytest.mark.parametrize("spoil, error", [
    (_tamper_image, wb.IntegrityError),
    (_swap_consistently, wb.IntegrityError),
    (_extra_file, wb.IntegrityError),
    (_missing_file, wb.IntegrityError),
    (_symlinked_image, wb.IntegrityError),
    (_edited_datacard, wb.IntegrityError),
    (_other_run, wb.NotVerified),
    (_not_a_cohort, wb.NotFound),
])
def test_a_folder_that_is_not_a_verified_cohort_is_refused_and_nothing_is_written(root, tmp_path, spoil, error):
    folder = root / "datasets" / "research"
    spoil(folder)
    with open_user(root, "researcher") as res:
        with pytest.raises(error) as caught:
            share.bundle(res, folder, tmp_path / "out.zip", collaborator="x")
        with pytest.raises(error):
            share.create_share(res, folder, account="ng")
        actions = set(res.audit_records()["action"])
    assert not (tmp_path / "out.zip").exists()
    assert "share_bundle" not in actions and "share_create" not in actions
    assert "rebuild" in str(caught.value) or "cohort" in str(caught.value)


def test_a_withdrawn_patient_blocks_bundles_until_the_cohort_is_rebuilt(root, tmp_path):
    folder = root / "datasets" / "research"
    with open_user(root, "admin") as admin:
        admin.withdraw_consent("MRN-0002", "research")
    with open_user(root, "researcher") as res:
        with pytest.raises(wb.ConsentError, match="withdrawn"):
            share.bundle(res, folder, tmp_path / "out.zip", collaborator="x")
        assert not (tmp_path / "out.zip").exists()
        rebuilt = rebuild_cohort(res, folder, workers=0)
        result = share.bundle(res, rebuilt.path, tmp_path / "v2.zip", collaborator="x")
    assert rebuilt.images == 3 and result.images == 3


def test_only_sharing_roles_may_bundle_or_share_and_the_portal_decrypts_nothing(root, tmp_path):
    folder = root / "datasets" / "research"
    with open_user(root, "photographer") as pho:
        with pytest.raises(wb.AccessDenied):
            share.bundle(pho, folder, tmp_path / "out.zip", collaborator="x")
    with open_user(root, "portal") as portal:
        assert portal.role == "portal" and set(portal._keys.keys) == {"index"}
        with pytest.raises(wb.AccessDenied):
            share.bundle(portal, folder, tmp_path / "out.zip", collaborator="x")
        with pytest.raises(wb.AccessDenied):
            share.create_share(portal, folder, account="ng")
        # signing a share record itself is refused by the log's rules, as every reader would
        for action in ("share_create", "share_revoke", "share_bundle", "cohort_build", "consent_withdraw"):
            with pytest.raises(wb.AccessDenied):
                portal._record(action, {"share": "x"})
        blob_id = portal._query("SELECT blob_id FROM blobs WHERE kind = 'deid' LIMIT 1")[0][0]
        with pytest.raises(wb.AccessDenied):
            portal.load_derivative(blob_id, purpose="research")
        with pytest.raises(wb.AccessDenied):
            portal._need("pseudonym", "make pseudonyms")
        # but it can still check a dataset: no key needed
        assert len(share.verify_dataset(portal, folder).images) == 5
    assert not (tmp_path / "out.zip").exists()
    assert _keys.ROLES["portal"] == frozenset({"index"})


def test_shares_are_signed_records_that_an_insider_cannot_edit(root):
    folder = root / "datasets" / "research"
    with open_user(root, "researcher") as res:
        new = share.create_share(res, folder, account="ng", expires=7)
        assert new.share.created_by == "res" and not new.share.download
        listed = share.list_shares(res)
    assert listed.loc[0, "status"] == "active" and new.secret not in listed.to_string()
    assert new.secret.encode() not in _all_vault_bytes(root)  # only its Argon2id hash is kept
    # an insider with the index key turns downloads on in the record itself
    db = insider_index(root / "vault", "res")
    seq, body = db.execute("SELECT seq, body FROM log WHERE body LIKE '%share_create%'").fetchone()
    db.execute("UPDATE log SET body = ? WHERE seq = ?", (bytes(body).replace(b'"download":false', b'"download":true'), seq))
    db.commit()
    db.close()
    with pytest.raises(wb.IntegrityError):
        with open_user(root, "portal") as portal:
            share.list_shares(portal)


def test_revocation_and_expiry_show_in_the_list(root):
    folder = root / "datasets" / "research"
    with open_user(root, "researcher") as res:
        a = share.create_share(res, folder, account="ng", expires=3)
        b = share.create_share(res, folder, link=True, expires="2026-06-20")
        with pytest.raises(wb.AlreadyExists):
            share.create_share(res, folder, account="ng")
        with pytest.raises(wb.InvalidInput):
            share.create_share(res, folder, account="x2", expires=400)
        with pytest.raises(wb.InvalidInput):
            share.create_share(res, folder, account="x2", expires="2020-01-01")
        share.revoke_share(res, a.share.share_id)
        with pytest.raises(wb.AlreadyExists):
            share.revoke_share(res, a.share.share_id)
        with pytest.raises(wb.NotFound):
            share.revoke_share(res, "0000")
        status = dict(zip(*share.list_shares(res)[["share", "status"]].T.values))
    assert status == {a.share.share_id: "revoked", b.share.share_id: "active"}
    assert b.link_path == f"/l/{b.share.share_id}/{b.secret}"


def _cli(args, capsys, monkeypatch, user="res", role="researcher"):
    monkeypatch.setenv("WORKBENCH_PASSPHRASE", passphrase(user))
    code = main(["--user", user, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_bundles_shares_and_refuses_in_one_line(root, tmp_path, capsys, monkeypatch):
    vault = str(root / "vault")
    folder = str(root / "datasets" / "research")
    code, out, err = _cli(["--vault", vault, "share", "bundle", folder, "--to", str(tmp_path / "b.zip"),
                           "--for", "Dr Ng"], capsys, monkeypatch)
    assert code == 0 and "passphrase (shown once" in out
    phrase = out.strip().splitlines()[-1].rsplit(" ", 1)[1]
    import pyzipper

    with pyzipper.AESZipFile(tmp_path / "b.zip") as zf:
        zf.setpassword(phrase.encode())
        assert len(zf.namelist()) == 7
    # refused: exists already; then a tampered folder; one line each, no traceback
    code, out, err = _cli(["--vault", vault, "share", "bundle", folder, "--to", str(tmp_path / "b.zip"),
                           "--for", "x"], capsys, monkeypatch)
    assert code == wb.AlreadyExists.exit_code and len(err.strip().splitlines()) == 1
    _tamper_image(root / "datasets" / "research")
    code, out, err = _cli(["--vault", vault, "share", "bundle", folder, "--to", str(tmp_path / "c.zip"),
                           "--for", "x"], capsys, monkeypatch)
    assert code == wb.IntegrityError.exit_code and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not (tmp_path / "c.zip").exists()
    folder = str(root / "datasets" / "teaching")
    code, out, err = _cli(["--vault", vault, "share", "create", folder, "--account", "ito", "--download"],
                          capsys, monkeypatch, "edu")
    assert code == 0 and "password (shown once" in out
    share_id = out.split()[2]
    code, out, err = _cli(["--vault", vault, "share", "list", "--format", "json"], capsys, monkeypatch, "edu")
    rows = json.loads(out)
    assert rows[0]["share"] == share_id and rows[0]["download"] is True and "argon2" not in out
    code, out, err = _cli(["--vault", vault, "share", "revoke", share_id], capsys, monkeypatch)
    assert code == 0
    code, out, err = _cli(["--vault", vault, "share", "serve", "--port", "1"], capsys, monkeypatch, "res")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
