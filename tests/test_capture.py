"""Card import and tethered capture through real libgphoto2.

Imports go through libgphoto2's "Directory Browse" driver on a ``disk:`` port
over a folder of generated JPEGs, and through plain file I/O from the same
kind of folder. Capture and shutter events use the wheel's virtual camera
(``VCAMERADIR``, chosen when ``gphoto2`` is imported: in a subprocess). Test
doubles stand in only for what neither can do: a camera that drops off
mid-download, a busy camera, a full card.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import workbench as wb
from workbench import _synth

from conftest import STRONG_PASSPHRASE, open_as, passphrase

PATIENT = "MRN-0001"  # consented for care and research in the vault_path fixture


def _card(root: Path, count: int = 5, seed: int = 3) -> tuple[Path, dict[str, str]]:
    """A card of ``count`` small generated JPEGs; returns it and {relative path: sha256}."""
    files = _synth.write_card(root, np.random.default_rng(seed), count=count, width=160, height=120)
    return root, {str(f["path"].relative_to(root)): hashlib.sha256(f["path"].read_bytes()).hexdigest()
                  for f in files}


def _photos_on(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}


def _stored_digests(vault_path, clock) -> list[str]:
    with open_as(vault_path, "admin", clock) as v:
        return [hashlib.sha256(v.read_original_file(p)).hexdigest() for p in v.photos("care")["photo_id"]]


def _actions(vault_path, clock) -> list[str]:
    with open_as(vault_path, "admin", clock) as v:
        return list(v.audit_records()["action"])


# --- card import from a folder ----------------------------------------------------


def _cr3(seed: int) -> bytes:
    """A file with the container of a Canon CR3 (ISO media, ``crx`` brand) and generated content."""
    import struct

    body = np.random.default_rng(seed).bytes(4000)
    return struct.pack(">I", 24) + b"ftypcrx " + struct.pack(">I", 1) + b"crx isom" + \
        struct.pack(">I", 8 + len(body)) + b"mdat" + body


def test_folder_import_removes_only_verified_files_and_a_rerun_stores_nothing_twice(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card")
    folder = card / "DCIM" / "100CANON"
    raw = _cr3(1)
    (folder / "IMG_0001.CR3").write_bytes(raw)  # the pair of IMG_0001.JPG
    (folder / "IMG_0002.CR3").write_bytes(b"not a raw file")  # the pair of IMG_0002.JPG: refused
    (folder / "NOTES.TXT").write_text("not a photo")
    with open_as(vault_path, "photographer", clock) as pho:
        report = wb.import_card(pho, card, patient=PATIENT, body_site="forearm", remove=True)
    # five photos, and the raw file of the first kept with its JPEG's photo
    assert len(report.imported) == 6 and not report.left
    by_name = {f.file: f for f in report.files}
    pair = by_name["DCIM/100CANON/IMG_0001.CR3"]
    assert pair.photo_id == by_name["DCIM/100CANON/IMG_0001.JPG"].photo_id and pair.verified and pair.removed
    bad = by_name["DCIM/100CANON/IMG_0002.CR3"]
    assert [f.file for f in report.failed] == ["DCIM/100CANON/IMG_0002.CR3"] and not report.ok
    assert "not the CR3 raw file its name says" in str(bad.error)
    assert [f.file for f in report.skipped] == ["DCIM/100CANON/NOTES.TXT"]
    # every other photo went; a pair goes together, and the refused raw keeps its JPEG on the card
    assert len(report.removed) == 5
    assert _photos_on(card) == {"DCIM/100CANON/IMG_0002.CR3", "DCIM/100CANON/IMG_0002.JPG",
                                "DCIM/100CANON/NOTES.TXT"}
    assert sorted(_stored_digests(vault_path, clock)) == sorted(digests.values())
    for entry in report.imported:
        assert entry.verified and entry.photo_id
        assert entry.sha256 == digests.get(entry.file, hashlib.sha256(raw).hexdigest())
    assert "6 imported (1 of them raw files kept with their JPEG's photo)" in report.summary()
    assert "5 removed from the card" in report.summary()

    (folder / "IMG_0002.CR3").write_bytes(_cr3(2))  # the card's file, put right
    shutil.copy(folder / "IMG_0002.JPG", tmp_path / "kept.jpg")
    with open_as(vault_path, "photographer", clock) as pho:
        again = wb.import_card(pho, card, patient=PATIENT, body_site="forearm", remove=True)
        # the manifest names card files, and a raw file is the camera's whole file: both are
        # sealed to identities, which a photographer cannot open
        with pytest.raises(wb.AccessDenied):
            pho.read_import_manifest(report.manifest_id)
        with pytest.raises(wb.AccessDenied):
            pho.read_raw_companion(pair.photo_id)
    assert [f.file for f in again.imported] == ["DCIM/100CANON/IMG_0002.CR3"]
    assert [f.file for f in again.present] == ["DCIM/100CANON/IMG_0002.JPG"]
    assert len(_stored_digests(vault_path, clock)) == 5
    assert _photos_on(card) == {"DCIM/100CANON/NOTES.TXT"}

    # the same pair from another card: nothing stored twice
    (folder / "IMG_0001.JPG").write_bytes((tmp_path / "kept.jpg").read_bytes())
    (folder / "IMG_0001.JPG").rename(folder / "IMG_0009.JPG")
    (folder / "IMG_0009.CR3").write_bytes(_cr3(2))
    with open_as(vault_path, "photographer", clock) as pho:
        third = wb.import_card(pho, card, patient=PATIENT, body_site="forearm")
    assert [f.status for f in third.files if f.file.endswith((".JPG", ".CR3"))] == ["present", "present"]

    with open_as(vault_path, "admin", clock) as ada:
        manifest = ada.read_import_manifest(report.manifest_id)
        assert ada.read_raw_companion(pair.photo_id) == raw
        assert len(ada.raw_companions(by_name["DCIM/100CANON/IMG_0002.JPG"].photo_id)) == 1
        assert ada.verify_audit().ok
        records = ada.audit_records()
    with open_as(vault_path, "analyst", clock) as ana, pytest.raises(wb.AccessDenied):
        ana.read_raw_companion(pair.photo_id)
    by_file = {m["file"]: m for m in manifest}
    assert set(by_file) == {f.file for f in report.files}
    jpeg = by_file["DCIM/100CANON/IMG_0003.JPG"]
    assert jpeg["status"] == "imported" and jpeg["verified"] and jpeg["removed"]
    assert jpeg["sha256"] == digests["DCIM/100CANON/IMG_0003.JPG"] and jpeg["size"] > 0
    assert by_file["DCIM/100CANON/IMG_0001.CR3"]["removed"] and by_file["DCIM/100CANON/IMG_0002.CR3"]["status"] == "failed"
    # each run's deletions are a signed record naming the verified photos, and no record names a file
    deletes = records[records["action"] == "card_delete"]
    # first run: the three JPEGs on their own, then the pair; second run: the other pair
    assert [d["files"] for d in deletes["detail"]] == [3, 2, 2]
    assert sorted(p for d in deletes["detail"] for p in d["photo_ids"]) == sorted(
        {f.photo_id for f in report.removed} | {f.photo_id for f in again.removed})
    assert "IMG_" not in json.dumps(list(records["detail"]))
    assert list(records.loc[records["action"] == "raw_companion", "user"]) == ["pho", "pho"]
    imports = records[records["action"] == "card_import"]
    assert [d["removed"] for d in imports["detail"]] == [5, 2, 0]


def test_without_remove_the_card_is_untouched(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=3)
    with open_as(vault_path, "photographer", clock) as pho:
        report = wb.import_card(pho, card, patient=PATIENT, body_site="back")
    assert len(report.imported) == 3 and not report.removed
    assert _photos_on(card) == set(digests)


def test_a_patient_without_consent_is_refused_before_the_card_is_read(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=2)
    with open_as(vault_path, "photographer", clock) as pho, pytest.raises(wb.ConsentError):
        wb.import_card(pho, card, patient="MRN-NOBODY", body_site="back", remove=True)
    assert _photos_on(card) == set(digests)


def test_a_file_that_fails_verification_stays_on_the_card(vault_path, clock, tmp_path, monkeypatch):
    card, digests = _card(tmp_path / "card", count=2)
    with open_as(vault_path, "photographer", clock) as pho:
        monkeypatch.setattr(type(pho), "verify_photo", lambda self, photo_id: False)
        report = wb.import_card(pho, card, patient=PATIENT, body_site="back", remove=True)
    assert len(report.failed) == 2 and not report.removed
    assert all(isinstance(f.error, wb.IntegrityError) for f in report.failed)
    assert _photos_on(card) == set(digests)


def test_a_file_stored_under_another_patient_stays_on_the_card(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=2)
    with open_as(vault_path, "photographer", clock) as pho:
        wb.import_card(pho, card, patient="MRN-0002", body_site="back")
        report = wb.import_card(pho, card, patient=PATIENT, body_site="back", remove=True)
    assert len(report.failed) == 2 and all(isinstance(f.error, wb.ConflictError) for f in report.failed)
    assert _photos_on(card) == set(digests)


# --- card import through libgphoto2 (Directory Browse on a disk: port) ------------


def test_import_through_libgphoto2_directory_browse(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=4)
    with wb.open_camera(f"disk:{card}") as camera, open_as(vault_path, "photographer", clock) as pho:
        assert camera.model == "Directory Browse" and not camera.can_capture
        report = wb.import_card(pho, camera, patient=PATIENT, body_site="scalp", remove=True)
        assert len(report.imported) == 4 and len(report.removed) == 4
        assert {f.file for f in report.imported} == {"/" + name for name in digests}
        again = wb.import_card(pho, camera, patient=PATIENT, body_site="scalp", remove=True)
        assert again.files == []
    assert _photos_on(card) == set()  # libgphoto2 deleted them, each after its verification
    assert sorted(_stored_digests(vault_path, clock)) == sorted(digests.values())
    assert _actions(vault_path, clock).count("camera_delete") == 1  # one record for the run's batch


def test_directory_browse_cannot_capture_or_watch(vault_path, clock, tmp_path):
    """What libgphoto2's Directory Browse driver offers: list, download, delete; no capture, no events."""
    card, _ = _card(tmp_path / "card", count=1)
    with wb.open_camera(f"disk:{card}") as camera, open_as(vault_path, "photographer", clock) as pho:
        with pytest.raises(wb.CameraError, match="cannot do that"):
            wb.capture(pho, camera, patient=PATIENT, body_site="back")
        with pytest.raises(wb.CameraError, match="cannot do that"):
            camera.wait_for_file(0.1)
    assert len(_photos_on(card)) == 1


def test_cli_import_card_from_a_folder_and_through_gphoto2(vault_path, tmp_path):
    card, digests = _card(tmp_path / "card", count=3)
    other, other_digests = _card(tmp_path / "other", count=2, seed=9)
    env = dict(os.environ, WORKBENCH_PASSPHRASE=passphrase("pho"))
    base = [sys.executable, "-m", "workbench", "--vault", str(vault_path), "--user", "pho", "import-card"]
    fields = ["--patient", PATIENT, "--body-site", "arm"]
    done = subprocess.run(base + [str(card), "--remove"] + fields, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 imported, 0 already present, 0 failed, 3 removed from the card, of 3 files" in done.stdout
    done = subprocess.run(base + ["--camera", f"disk:{other}"] + fields, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "2 imported" in done.stdout and "0 removed" in done.stdout
    assert _photos_on(card) == set() and _photos_on(other) == set(other_digests)
    done = subprocess.run(base + fields, env=env, capture_output=True, text=True)
    assert done.returncode == 8 and "not both" in done.stderr


# --- faults a virtual camera cannot produce: test doubles around real libgphoto2 ---


class _Flaky:
    """A real libgphoto2 camera handle whose calls fail on cue: ``faults[method] = [code or None, ...]``.

    ``short`` makes the n-th download come back truncated (the cable pulled mid-transfer).
    """

    def __init__(self, handle, faults=None, short=None):
        self._handle, self.faults, self.short = handle, faults or {}, short
        self.downloads = 0

    def __getattr__(self, name):
        real = getattr(self._handle, name)

        def call(*args):
            import gphoto2 as gp

            queue = self.faults.get(name)
            if queue:
                code = queue.pop(0)
                if code is not None:
                    raise gp.GPhoto2Error(code)
            if name == "file_get":
                self.downloads += 1
                if self.short == self.downloads:
                    return _Truncated(real(*args))
            return real(*args)
        return call


class _Truncated:
    def __init__(self, held):
        self.held = held

    def get_data_and_size(self):
        return memoryview(self.held.get_data_and_size())[:100]


def _flaky_camera(card, **kw):
    camera = wb.open_camera(f"disk:{card}", sleep=kw.pop("sleep", lambda s: None))
    camera._handle = _Flaky(camera._handle, **kw)
    return camera


@pytest.mark.parametrize("fault", ["unplugged", "short download"])
def test_a_camera_lost_mid_import_loses_nothing_and_a_rerun_completes(vault_path, clock, tmp_path, fault):
    card, digests = _card(tmp_path / "card", count=5)
    kw = {"faults": {"file_get": [None, None, -52]}} if fault == "unplugged" else {"short": 3}
    with _flaky_camera(card, **kw) as camera, open_as(vault_path, "photographer", clock) as pho:
        report = wb.import_card(pho, camera, patient=PATIENT, body_site="back", remove=True)
    # the two stored are verified but stay on the card: deletions go in a batch, and a camera
    # that stopped answering is asked for nothing more
    assert len(report.imported) == 2 and len(report.failed) == 3 and len(report.removed) == 0
    assert all(isinstance(f.error, wb.CameraError) for f in report.failed)
    assert "reconnect it and run the command again" in report.summary()
    # every file still on the card or stored and verified; the failed ones are all still there
    kept = _photos_on(card)
    assert {f.file.lstrip("/") for f in report.failed} <= kept
    stored = set(_stored_digests(vault_path, clock))
    assert all(digests[name] in stored for name in set(digests) - kept)
    with wb.open_camera(f"disk:{card}") as camera, open_as(vault_path, "photographer", clock) as pho:
        again = wb.import_card(pho, camera, patient=PATIENT, body_site="back", remove=True)
    assert len(again.imported) == 3 and len(again.present) == 2 and again.ok and _photos_on(card) == set()
    assert sorted(_stored_digests(vault_path, clock)) == sorted(digests.values())
    with open_as(vault_path, "admin", clock) as ada:
        assert ada.verify_audit().ok


def test_a_busy_camera_is_retried_with_backoff(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=2)
    waits = []
    with _flaky_camera(card, faults={"file_get": [-110, -110]}, sleep=waits.append) as camera, \
            open_as(vault_path, "photographer", clock) as pho:
        report = wb.import_card(pho, camera, patient=PATIENT, body_site="back", remove=True)
    assert report.ok and len(report.imported) == 2 and waits == [0.1, 0.2]


def test_a_camera_busy_for_too_long_fails_the_file_and_keeps_it(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=1)
    with _flaky_camera(card, faults={"file_get": [-110] * 10}) as camera, \
            open_as(vault_path, "photographer", clock) as pho:
        report = wb.import_card(pho, camera, patient=PATIENT, body_site="back", remove=True)
    assert len(report.failed) == 1 and "stayed busy" in str(report.failed[0].error)
    assert _photos_on(card) == set(digests)


class _Shutter(_Flaky):
    """Directory Browse with a shutter: ``capture`` returns the next file already on the card
    (as a camera that writes each shot to its card), or fails with ``faults["capture"]``."""

    def __init__(self, handle, folder, names, events=(), **kw):
        super().__init__(handle, **kw)
        self.folder, self.names, self.events = folder, list(names), list(events)

    @property
    def capture(self):
        def shoot(kind):
            import gphoto2 as gp

            queue = self.faults.get("capture")
            if queue and (code := queue.pop(0)) is not None:
                raise gp.GPhoto2Error(code)
            return SimpleNamespace(folder=self.folder, name=self.names.pop(0))
        return shoot

    def get_abilities(self):
        return self._handle.get_abilities()

    def wait_for_event(self, timeout):
        """A file added for each name in ``events`` (the shutter, or a raw file after its JPEG), then quiet."""
        import gphoto2 as gp

        if self.events:
            return gp.GP_EVENT_FILE_ADDED, SimpleNamespace(folder=self.folder, name=self.events.pop(0))
        return gp.GP_EVENT_TIMEOUT, None


def _shutter_camera(card, names=None, **kw):
    camera = wb.open_camera(f"disk:{card}", sleep=lambda s: None)
    names = sorted(p.name for p in (card / "DCIM" / "100CANON").iterdir()) if names is None else names
    camera._handle = _Shutter(camera._handle, "/DCIM/100CANON", names, **kw)
    return camera


def test_capture_stores_verifies_deletes_and_audits_each_shot(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=3)
    with _shutter_camera(card) as camera, open_as(vault_path, "photographer", clock) as pho:
        report = wb.capture(pho, camera, patient=PATIENT, body_site="wound", laterality="left", count=3)
    assert len(report.imported) == 3 and len(report.removed) == 3 and _photos_on(card) == set()
    actions = _actions(vault_path, clock)
    assert actions.count("camera_capture") == 3 and actions.count("camera_delete") == 3
    with open_as(vault_path, "admin", clock) as ada:
        frame = ada.photos("care")
        assert set(frame["laterality"]) == {"left"} and len(frame) == 3
        assert ada.verify_audit().ok


def test_a_raw_plus_jpeg_shot_is_one_photo_with_its_raw_file(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=2)
    folder = card / "DCIM" / "100CANON"
    (folder / "IMG_0001.CR3").write_bytes(_cr3(5))
    # the camera writes the JPEG, then its raw file, for the first shot; a JPEG alone for the second
    with _shutter_camera(card, ["IMG_0001.JPG", "IMG_0002.JPG"], events=["IMG_0001.CR3"]) as camera, \
            open_as(vault_path, "photographer", clock) as pho:
        report = wb.capture(pho, camera, patient=PATIENT, body_site="wound", count=2)
    assert [(f.file.rsplit("/", 1)[-1], f.status, f.removed) for f in report.files] == [
        ("IMG_0001.JPG", "imported", True), ("IMG_0001.CR3", "imported", True), ("IMG_0002.JPG", "imported", True)]
    assert report.files[0].photo_id == report.files[1].photo_id and _photos_on(card) == set()
    with open_as(vault_path, "admin", clock) as ada:
        assert len(ada.photos("care")) == 2
        assert ada.read_raw_companion(report.files[0].photo_id) == _cr3(5)


def test_capture_keep_on_camera(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=2)
    with _shutter_camera(card) as camera, open_as(vault_path, "photographer", clock) as pho:
        report = wb.capture(pho, camera, patient=PATIENT, body_site="wound", count=2, keep_on_camera=True)
    assert len(report.imported) == 2 and not report.removed and _photos_on(card) == set(digests)


def test_a_full_card_stops_capture_with_advice_and_loses_nothing(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=3)
    with _shutter_camera(card, faults={"capture": [None, -115]}) as camera, \
            open_as(vault_path, "photographer", clock) as pho:
        with pytest.raises(wb.CameraError, match="card is full") as caught:
            wb.capture(pho, camera, patient=PATIENT, body_site="wound", count=3)
    assert caught.value.code == -115
    assert len(_photos_on(card)) == 2  # the first shot went into the vault, then off the card
    assert len(_stored_digests(vault_path, clock)) == 1
    actions = _actions(vault_path, clock)
    # the shot taken before is in a sealed manifest; the audit chain is whole
    assert actions.count("camera_capture") == 1 and actions.count("card_import") == 1


def test_a_camera_unplugged_mid_capture_keeps_the_shot_and_an_import_picks_it_up(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=3)
    with _shutter_camera(card, faults={"file_get": [None, -52]}) as camera, \
            open_as(vault_path, "photographer", clock) as pho:
        with pytest.raises(wb.CameraError, match="reconnect it") as caught:
            wb.capture(pho, camera, patient=PATIENT, body_site="wound", count=3)
    assert caught.value.gone
    assert _photos_on(card) == {"DCIM/100CANON/IMG_0002.JPG", "DCIM/100CANON/IMG_0003.JPG"}
    with wb.open_camera(f"disk:{card}") as camera, open_as(vault_path, "photographer", clock) as pho:
        again = wb.import_card(pho, camera, patient=PATIENT, body_site="wound", remove=True)
    assert len(again.imported) == 2 and _photos_on(card) == set()
    assert sorted(_stored_digests(vault_path, clock)) == sorted(digests.values())


def test_a_shot_the_vault_refuses_stays_on_the_camera(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=1)
    with open_as(vault_path, "photographer", clock) as pho:
        wb.import_card(pho, card, patient="MRN-0002", body_site="wound")  # filed under another patient
    with _shutter_camera(card) as camera, open_as(vault_path, "photographer", clock) as pho:
        report = wb.capture(pho, camera, patient=PATIENT, body_site="wound")
    assert len(report.failed) == 1 and isinstance(report.failed[0].error, wb.ConflictError)
    assert _photos_on(card) == set(digests)
    assert _actions(vault_path, clock).count("camera_delete") == 0


def test_capture_refused_without_consent_that_covers_care(vault_path, clock, tmp_path):
    card, digests = _card(tmp_path / "card", count=1)
    with open_as(vault_path, "admin", clock) as ada:
        ada.add_consent("MRN-EDU", "education")
    for patient in ("MRN-NOBODY", "MRN-EDU"):
        with _shutter_camera(card) as camera, open_as(vault_path, "photographer", clock) as pho:
            with pytest.raises(wb.ConsentError):
                wb.capture(pho, camera, patient=patient, body_site="wound")
            assert camera._handle.names  # no picture was taken
    assert _photos_on(card) == set(digests)
    assert _actions(vault_path, clock).count("camera_capture") == 0


# --- the wheel's virtual camera (VCAMERADIR), in a subprocess ---------------------

VCAMERA = """
import json, sys
import gphoto2 as gp
import workbench as wb

vault_path, user, patient = sys.argv[1:4]
out = {"cameras": wb.list_cameras()}
with wb.open_vault(vault_path, user=user) as vault, wb.open_camera() as cam:
    out["status"] = cam.status()
    shots = wb.capture(vault, cam, patient=patient, body_site="wound", count=2)
    out["capture"] = [(f.status, f.removed) for f in shots.files]
    # the photographer presses the shutter: the camera adds a file, and watching pulls it in
    cam._handle.trigger_capture()
    watched = wb.capture(vault, cam, patient=patient, body_site="wound", count=1, watch=True, poll=0.5)
    out["watch"] = [(f.status, f.removed) for f in watched.files]
    out["quiet"] = [f.file for f in wb.capture(vault, cam, patient=patient, body_site="wound",
                                                count=None, watch=True, poll=0.2,
                                                stop=iter([False, False, True]).__next__).files]
print(json.dumps(out))
"""


def test_virtual_camera_capture_and_shutter_events(vault_path, clock, tmp_path):
    folder, digests = _card(tmp_path / "vcam", count=2)
    vcamdir = folder / "DCIM" / "100CANON"
    env = dict(os.environ, VCAMERADIR=str(vcamdir), WORKBENCH_PASSPHRASE=passphrase("pho"))
    done = subprocess.run([sys.executable, "-c", VCAMERA, str(vault_path), "pho", PATIENT],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert [m for m, _ in out["cameras"]] == ["Nikon DSC D750"]  # how the virtual camera names itself
    assert out["status"]["battery"] == "50%"
    # the virtual camera returns the same file for every shot (the first JPEG of its folder):
    # the second is recognised by its digest, stored once, and both leave the camera
    assert out["capture"] == [["imported", True], ["present", True]]
    assert out["watch"] == [["present", True]]
    assert out["quiet"] == []
    stored = _stored_digests(vault_path, clock)
    assert stored == [digests["DCIM/100CANON/IMG_0001.JPG"]]
    actions = _actions(vault_path, clock)
    assert actions.count("camera_capture") == 3 and actions.count("camera_delete") == 3
    assert _photos_on(vcamdir) == {"IMG_0001.JPG", "IMG_0002.JPG"}  # its deletions are in memory only


def test_cli_capture_with_the_virtual_camera(vault_path, clock, tmp_path):
    folder, digests = _card(tmp_path / "vcam", count=1)
    env = dict(os.environ, VCAMERADIR=str(folder / "DCIM" / "100CANON"), WORKBENCH_PASSPHRASE=passphrase("pho"))
    base = [sys.executable, "-m", "workbench", "--vault", str(vault_path), "--user", "pho"]
    done = subprocess.run(base + ["capture", "--patient", PATIENT, "--body-site", "wound", "--count", "2",
                                  "--camera", "D750"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 imported, 1 already present, 0 failed, 2 removed from the card, of 2 files" in done.stdout
    done = subprocess.run(base + ["capture", "--patient", "MRN-NOBODY", "--body-site", "wound"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 5 and "ConsentError" in done.stderr
    done = subprocess.run(base + ["cameras"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Nikon DSC D750\tusb:" in done.stdout
    # --watch runs until Ctrl+C, which ends it between files, with a summary
    proc = subprocess.Popen(base + ["capture", "--watch", "--patient", PATIENT, "--body-site", "wound"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "watching the camera" in proc.stderr.readline()
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "0 imported, 0 already present, 0 failed, 0 removed from the card, of 0 files" in out


# --- SIGKILL during a card import --------------------------------------------------

KILL_PHOTOS = 30
KILL_TRIALS = 6


def _import_cmd(card, vault):
    return [sys.executable, "-m", "workbench", "--vault", str(vault), "--user", "pho", "import-card",
            str(card), "--remove", "--patient", "MRN-KILL", "--body-site", "back"]


def _kill_env(vault):
    # each trial is a copy of one template vault: a witness of one copy would call the next a rollback
    return dict(os.environ, WORKBENCH_PASSPHRASE=STRONG_PASSPHRASE, XDG_STATE_HOME=f"{vault}-state")


def _check_after_kill(vault, card, digests) -> tuple[int, int]:
    """The vault opens and verifies; every photo gone from the card has its verified copy in the vault.

    Returns how many files left the card and how many photos the vault holds.
    """
    os.environ["XDG_STATE_HOME"] = f"{vault}-state"
    with wb.open_vault(vault, user="ada", passphrase=STRONG_PASSPHRASE) as v:
        assert v.verify_audit().ok
        stored = {}
        photo_ids = list(v.photos("care")["photo_id"])
        for photo_id in photo_ids:
            assert v.verify_photo(photo_id)
            stored[hashlib.sha256(v.read_original_file(photo_id)).hexdigest()] = photo_id
    assert len(stored) == len(photo_ids)  # no file stored twice
    gone = set(digests) - _photos_on(card)
    for name in gone:
        assert digests[name] in stored, f"{name} left the card without a verified vault copy"
    return len(gone), len(stored)


@pytest.mark.slow
def test_sigkill_during_a_card_import(tmp_path):
    source, digests = _card(tmp_path / "source", count=KILL_PHOTOS, seed=21)
    template = tmp_path / "template"
    with wb.init_vault(template, admin="ada", passphrase=STRONG_PASSPHRASE) as v:
        v.add_user("pho", "photographer", STRONG_PASSPHRASE)
        v.add_consent("MRN-KILL", "care")

    def trial(name):
        vault, card = tmp_path / f"{name}-vault", tmp_path / f"{name}-card"
        shutil.copytree(template, vault)
        shutil.copytree(source, card)
        proc = subprocess.Popen(_import_cmd(card, vault), env=_kill_env(vault),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        blobs = vault / "blobs"
        while proc.poll() is None and not any(blobs.glob("*/*")):
            time.sleep(0.002)
        return vault, card, proc, time.monotonic()

    vault, card, proc, started = trial("full")
    assert proc.wait() == 0
    work = max(time.monotonic() - started, 0.05)
    assert _check_after_kill(vault, card, digests) == (KILL_PHOTOS, KILL_PHOTOS)

    rng = np.random.default_rng(5)
    counts = []
    for n in range(KILL_TRIALS):
        vault, card, proc, _ = trial(f"kill{n}")
        time.sleep(float(rng.uniform(0.0, 0.9)) * work)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts.append(_check_after_kill(vault, card, digests))
        # a re-run finishes the import: every file stored once, the card empty
        done = subprocess.run(_import_cmd(card, vault), env=_kill_env(vault), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert _check_after_kill(vault, card, digests) == (KILL_PHOTOS, KILL_PHOTOS)
        os.environ["XDG_STATE_HOME"] = f"{vault}-state"
        with wb.open_vault(vault, user="ada", passphrase=STRONG_PASSPHRASE) as v:
            assert sorted(hashlib.sha256(v.read_original_file(p)).hexdigest()
                          for p in v.photos("care")["photo_id"]) == sorted(digests.values())
        shutil.rmtree(vault)
        shutil.rmtree(card)
    # the kills landed mid-import, not only before or after it (files leave the card in batches of
    # DELETE_BATCH, so the photos stored are the finer measure)
    assert any(0 < stored < KILL_PHOTOS for _, stored in counts), counts


# --- the capture panel (the notebook's widget) --------------------------------------


def test_the_capture_panel_takes_pictures_into_the_vault_and_keeps_no_identifier(vault_path, clock, tmp_path):
    from test_widgets import assert_state_is_clean, browser, capture as sent_to_browser
    from PIL import Image
    import io

    from workbench.widgets import CapturePanel

    card, digests = _card(tmp_path / "card", count=3)
    with _shutter_camera(card, events=[]) as camera, open_as(vault_path, "photographer", clock) as pho:
        panel = CapturePanel(pho, camera)
        sent = sent_to_browser(panel)
        assert panel.camera["model"] and panel.can_capture and "battery" in panel.status
        browser(panel, "capture", patient="MRN-NOBODY", body_site="wound")
        assert "no active consent that covers care" in panel.error and not panel.shots
        browser(panel, "capture", patient=PATIENT, body_site="", laterality="left")
        assert "body site" in panel.error and not panel.shots
        browser(panel, "capture", patient=PATIENT, body_site="wound", laterality="left")
        assert panel.error == "" and [(s["status"], s["verified"], s["removed"]) for s in panel.shots] == [
            ("imported", True, True)]
        content, buffers = sent[-1]
        assert content["slot"] == "last" and Image.open(io.BytesIO(buffers[0])).format == "JPEG"
        # the photographer's own shutter, watched in the background until stopped
        camera._handle.events = ["IMG_0002.JPG"]
        browser(panel, "watch", patient=PATIENT, body_site="wound")
        for _ in range(100):
            if len(panel.shots) == 2:
                break
            time.sleep(0.05)
        browser(panel, "stop")
        assert not panel.watching and [s["status"] for s in panel.shots] == ["imported", "imported"]
        assert_state_is_clean(panel)
        panel.close()
    assert _photos_on(card) == {"DCIM/100CANON/IMG_0003.JPG"}
    with open_as(vault_path, "admin", clock) as ada:
        frame = ada.photos("care")
    assert sorted(frame["laterality"].fillna("")) == ["", "left"]


def test_the_capture_panel_says_what_is_wrong_without_a_camera_or_the_role(vault_path, clock):
    from workbench.widgets import CapturePanel

    with open_as(vault_path, "researcher", clock) as res:
        panel = CapturePanel(res, "disk:/nowhere")
        assert not panel.can_capture and "cannot capture photos" in panel.error
    assert wb.list_cameras() == []  # real libgphoto2, no camera on this machine's USB
    with open_as(vault_path, "photographer", clock) as pho:
        panel = CapturePanel(pho)
        assert panel.error.startswith("no camera") and panel.camera == {}
        panel.capture(PATIENT, "wound")
        assert "no camera is connected" in panel.error
