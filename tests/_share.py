"""A small vault with two shared sets, built once per test module and copied per test.

``research``: a research cohort of 5 photos of two patients; ``teaching``: a
teaching set (gallery and deck too) of 3 photos of one of them. The vault
has an admin, a researcher, an educator and the portal's own account.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import workbench as wb
from workbench import _synth
from workbench.cohort import build_cohort
from workbench.teaching import build_teaching_set

from conftest import FixedClock, passphrase

USERS = {"admin": "ada", "researcher": "res", "educator": "edu", "photographer": "pho", "portal": "portal"}
START = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
NO_DETECT = {"detectors": []}


def build_template(root: Path) -> Path:
    """Vault and cohorts under ``root`` (``root/vault``, ``root/datasets/{research,teaching}``)."""
    clock = FixedClock(START)
    path = root / "vault"
    rng = np.random.default_rng(19)
    with wb.init_vault(path, admin="ada", passphrase=passphrase("ada"), clock=clock) as admin:
        for role, user in USERS.items():
            if role != "admin":
                admin.add_user(user, role, passphrase(user))
        admin.add_consent("MRN-0001", "care,research,education")
        admin.add_consent("MRN-0002", "care,research")
        for n, patient in enumerate(["MRN-0001"] * 3 + ["MRN-0002"] * 2):
            data, _ = _synth.synth_photo(rng, width=320, height=240)
            photo_id = admin.add_photo(data, patient=patient, body_site=["forearm", "knee"][n % 2],
                                       diagnosis="L40.0").photo_id
            admin.set_review_state(photo_id, "approved")
        build_cohort(admin, {"name": "research", "purpose": "research", "policy": NO_DETECT},
                     root / "datasets" / "research", workers=0)
        build_teaching_set(admin, {"name": "teaching", "policy": NO_DETECT}, root / "datasets" / "teaching",
                           workers=0)
    return root


def copy_template(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def open_user(root: Path, role: str, clock=None):
    user = USERS[role]
    return wb.open_vault(root / "vault", user=user, passphrase=passphrase(user),
                         clock=clock or FixedClock(START))


ROOT = Path(__file__).resolve().parents[1]


def csrf_of(response) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', response.text).group(1)


def start_server(root: Path, env: dict | None = None, args: tuple = ()):
    """``workbench share serve --port 0 [args]`` as the portal account; returns (process, base URL)."""
    environment = dict(os.environ, WORKBENCH_PASSPHRASE=passphrase("portal"), PYTHONPATH=str(ROOT),
                       **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "--vault", str(root / "vault"), "--user", "portal",
                             "share", "serve", "--port", "0", *args], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"(https?://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        pytest.fail(f"the portal did not start: {line} {proc.stderr.read()[-2000:]}")
    proc.banner = line
    return proc, match.group(1)


def http_login(base: str, account: str, password: str) -> dict:
    import httpx

    with httpx.Client(base_url=base, follow_redirects=True) as c:
        csrf = csrf_of(c.get("/login"))
        r = c.post("/login", data={"account": account, "password": password, "csrf": csrf})
        assert r.status_code == 200 and "/gallery" in str(r.url)
        return dict(c.cookies)

