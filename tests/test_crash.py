"""Crash safety: an ingest killed with SIGKILL at random moments never leaves a broken vault.

After every kill the vault opens, the audit chain verifies, every photo in the
index is complete and decrypts to exactly one of the source files, and
running the ingest again completes the set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import workbench as wb
from workbench import _synth

from conftest import STRONG_PASSPHRASE

PHOTOS = 50
TRIALS = 6  # each kill lands at a random moment; each trial takes about 5 s on two busy cores
PASS = STRONG_PASSPHRASE


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(7)
    card = root / "card"
    files = _synth.write_card(card, rng, count=PHOTOS, width=640, height=480)
    digests = {hashlib.sha256(f["path"].read_bytes()).hexdigest() for f in files}
    assert len(digests) == PHOTOS
    vault = root / "template"
    with wb.init_vault(vault, admin="ada", passphrase=PASS) as v:
        v.add_user("pho", "photographer", PASS)
        v.add_consent("MRN-CRASH", "care,research")
    return root, card, vault, digests


def _ingest_cmd(card, vault):
    return [sys.executable, "-m", "workbench", "--vault", str(vault), "--user", "pho",
            "ingest", str(card), "--patient", "MRN-CRASH", "--body-site", "back"]


def _env(vault):
    # each trial is a copy of the same template (one vault id): a user's
    # witness of one copy would rightly call the next a rollback
    return dict(os.environ, WORKBENCH_PASSPHRASE=PASS, XDG_STATE_HOME=f"{vault}-state")


def _check(vault, digests):
    os.environ["XDG_STATE_HOME"] = f"{vault}-state"  # as _env
    with wb.open_vault(vault, user="ada", passphrase=PASS) as v:
        audit = v.verify_audit()
        assert audit.ok, audit.reason
        frame = v.photos("care")
        seen = set()
        for photo_id in frame["photo_id"]:
            assert v.verify_photo(photo_id)
            digest = hashlib.sha256(v.read_original_file(photo_id)).hexdigest()
            assert digest in digests
            seen.add(digest)
            assert len(v.load_previews([photo_id])[photo_id]) > 0
        assert len(seen) == len(frame)  # no photo twice
        return len(frame)


def _wait_for_first_blob(proc, vault) -> float:
    """Wait until the ingest in ``proc`` wrote its first file into ``vault``; return when."""
    blobs = vault / "blobs"
    while proc.poll() is None and not any(blobs.glob("*/*")):
        time.sleep(0.002)
    return time.monotonic()


@pytest.mark.slow
def test_sigkill_during_ingest(template, tmp_path):
    root, card, template_vault, digests = template
    # one uninterrupted run tells how long an ingest's writing takes here:
    # from its first file in blobs/ (after the interpreter started and the
    # vault opened, which take longer than the writing itself) to its end
    full = tmp_path / "full"
    shutil.copytree(template_vault, full)
    proc = subprocess.Popen(_ingest_cmd(card, full), env=_env(full),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writing = _wait_for_first_blob(proc, full)
    assert proc.wait() == 0
    work = max(time.monotonic() - writing, 0.05)
    assert _check(full, digests) == PHOTOS

    rng = np.random.default_rng(11)
    partial_counts = []
    for trial in range(TRIALS):
        vault = tmp_path / f"trial{trial}"
        shutil.copytree(template_vault, vault)
        proc = subprocess.Popen(_ingest_cmd(card, vault), env=_env(vault),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_first_blob(proc, vault)
        time.sleep(float(rng.uniform(0.0, 0.9)) * work)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial_counts.append(_check(vault, digests))
        with wb.open_vault(vault, user="ada", passphrase=PASS) as v:
            v.stale_files()  # the killed ingest holds no lock: its leftovers can be judged at once
        # running it again completes the set, with nothing added twice
        subprocess.run(_ingest_cmd(card, vault), env=_env(vault), check=True, capture_output=True)
        assert _check(vault, digests) == PHOTOS
        with wb.open_vault(vault, user="ada", passphrase=PASS) as v:
            v.remove_stale_files()
            assert v.check_files() == []
        shutil.rmtree(vault)
    # the kills really landed mid-ingest, not only before or after it
    assert any(0 < n < PHOTOS for n in partial_counts), partial_counts


def _filled(template, tmp_path, users):
    """A copy of the template with the card ingested and ``users`` ({name: role}) added."""
    root, card, template_vault, digests = template
    filled = tmp_path / "filled"
    shutil.copytree(template_vault, filled)
    subprocess.run(_ingest_cmd(card, filled), env=_env(filled), check=True, capture_output=True)
    os.environ["XDG_STATE_HOME"] = f"{filled}-state"
    with wb.open_vault(filled, user="ada", passphrase=PASS) as v:
        for name, role in users.items():
            v.add_user(name, role, PASS)
    return filled


def _run_time(command, filled, tmp_path) -> float:
    """How long ``command + [vault]`` takes, uninterrupted, on a copy of ``filled``."""
    full = tmp_path / "full"
    shutil.copytree(filled, full)
    started = time.monotonic()
    subprocess.run(command + [str(full)], env=_env(full), check=True, capture_output=True)
    return time.monotonic() - started


@pytest.mark.slow
def test_sigkill_during_user_removal_and_key_rotation(template, tmp_path):
    """A removal killed at any moment leaves a vault that every remaining user opens and verifies."""
    digests = template[3]
    filled = _filled(template, tmp_path, {"gone": "researcher", "cli": "clinician"})

    def remove_cmd(vault):
        return [sys.executable, "-m", "workbench", "--user", "ada", "user", "remove", "gone",
                "--vault", str(vault)]

    duration = _run_time(remove_cmd(filled)[:-1], filled, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    started = time.monotonic()
    subprocess.run(_ingest_cmd(empty, filled), env=_env(filled), capture_output=True)
    startup = time.monotonic() - started
    rng = np.random.default_rng(13)
    outcomes = []
    for trial in range(6):
        vault = tmp_path / f"removal{trial}"
        shutil.copytree(filled, vault)
        proc = subprocess.Popen(remove_cmd(vault), env=_env(vault),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(startup + float(rng.uniform(0.0, 1.0)) * max(duration - startup, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        os.environ["XDG_STATE_HOME"] = f"{vault}-state"
        for user in ("ada", "cli"):
            with wb.open_vault(vault, user=user, passphrase=PASS) as v:
                assert v.verify_audit().ok
                removed = "gone" not in set(v.users()["user"])
                assert len(v.photos("care")) == PHOTOS
                for photo_id in list(v.photos("care")["photo_id"])[:5]:
                    assert hashlib.sha256(v.read_original_file(photo_id)).hexdigest() in digests
        outcomes.append(removed)
        if not removed:  # running it again completes it
            subprocess.run(remove_cmd(vault), env=_env(vault), check=True, capture_output=True)
        with pytest.raises(wb.AccessDenied):
            wb.open_vault(vault, user="gone", passphrase=PASS)
        shutil.rmtree(vault)


REVIEW = """
import sys, workbench as wb
with wb.open_vault(sys.argv[1], user="ana") as v:
    for n, photo_id in enumerate(sorted(v.photos("care")["photo_id"])):
        v.set_review_state(photo_id, "approved" if n % 2 else "rejected", reason="trial")
"""


@pytest.mark.slow
def test_sigkill_during_review(template, tmp_path):
    """Review decisions killed mid-way: every decision made is whole, signed and readable."""
    filled = _filled(template, tmp_path, {"ana": "analyst"})
    command = [sys.executable, "-c", REVIEW]
    duration = _run_time(command, filled, tmp_path)
    rng = np.random.default_rng(17)
    decided = []
    for trial in range(5):
        vault = tmp_path / f"review{trial}"
        shutil.copytree(filled, vault)
        proc = subprocess.Popen(command + [str(vault)], env=_env(vault),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.3, 1.0)) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        os.environ["XDG_STATE_HOME"] = f"{vault}-state"
        with wb.open_vault(vault, user="ada", passphrase=PASS) as v:
            assert v.verify_audit().ok
            states = v.photos("care")["review_state"]
            assert set(states) <= {"unreviewed", "approved", "rejected"}
            decided.append(int((states != "unreviewed").sum()))
        shutil.rmtree(vault)
    assert max(decided) <= PHOTOS
