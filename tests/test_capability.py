"""Child processes (papermill kernels) open the vault with a capability, never the passphrase."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest

import workbench as wb
from workbench.vault import CAPABILITY_ENV, capability

from conftest import ROLE_USERS, open_as, passphrase

CHILD = "import sys, workbench as wb; v = wb.open_vault(sys.argv[1], user=sys.argv[2]); print(v.role)"


def _child(path, user):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_PASSPHRASE")}
    return subprocess.run([sys.executable, "-c", CHILD, str(path), user], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_a_child_opens_the_vault_while_the_capability_lasts_and_not_after(vault_path, clock):
    user = ROLE_USERS["researcher"]
    with open_as(vault_path, "researcher") as v, capability(v):  # the real clock, as the child
        token = os.environ[CAPABILITY_ENV]
        path, _, key = token.rpartition(":")
        sealed = open(path, "rb").read()
        assert passphrase(user) not in token and passphrase(user).encode() not in sealed
        assert os.stat(path).st_mode & 0o077 == 0  # only this account can read it
        out = _child(vault_path, user)
        assert out.returncode == 0 and out.stdout.strip() == "researcher", out.stderr
        other = _child(vault_path, ROLE_USERS["clinician"])  # another user's name: refused
        assert other.returncode != 0 and "Traceback" in other.stderr
    assert CAPABILITY_ENV not in os.environ and not os.path.exists(path)
    os.environ[CAPABILITY_ENV] = token  # kept by someone: the file is gone with the run
    try:
        with pytest.raises(wb.AccessDenied, match="gone"):
            wb.open_vault(vault_path, user=user)
    finally:
        del os.environ[CAPABILITY_ENV]


def test_an_expired_capability_is_refused(vault_path, clock):
    user = ROLE_USERS["researcher"]
    with open_as(vault_path, "researcher", clock) as v, capability(v, minutes=5):
        clock.moment += timedelta(minutes=6)
        with pytest.raises(wb.AccessDenied, match="expired"):
            wb.open_vault(vault_path, user=user, clock=clock)
        clock.moment -= timedelta(minutes=6)
        with wb.open_vault(vault_path, user=user, clock=clock) as again:
            assert again.role == "researcher"
