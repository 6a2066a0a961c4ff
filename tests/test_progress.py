"""Long work shows progress (count and rate) on stderr, without identifiers, only when wanted."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import jpeg_bytes, open_as, passphrase


def run(args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")} | env
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          env=full, stdin=subprocess.DEVNULL, timeout=120)


def _final(stderr: str, desc: str) -> str:
    """The last state the bar named ``desc`` drew (bars redraw with carriage returns)."""
    frames = [f for f in re.split(r"[\r\n]", stderr) if f.startswith(desc + ":")]
    assert frames, stderr
    return frames[-1]


@pytest.fixture
def cli_env(tmp_path):
    path = tmp_path / "v"
    assert run(["vault", "init", str(path), "--admin", "ada"], WORKBENCH_NEW_PASSPHRASE=passphrase("ada")).returncode == 0
    env = dict(WORKBENCH_VAULT=str(path), WORKBENCH_USER="ada", WORKBENCH_PASSPHRASE=passphrase("ada"))
    assert run(["consent", "add", "--patient", "MRN-7", "--scopes", "care,research"], **env).returncode == 0
    files = []
    for n in range(3):
        files.append(tmp_path / f"IMG_SECRET_{n}.jpg")
        files[-1].write_bytes(jpeg_bytes(n))
    return env, files


def test_ingest_previews_and_deid_show_a_count_and_a_rate_without_names(cli_env, tmp_path):
    env, files = cli_env
    forced = dict(env, WORKBENCH_PROGRESS="1")
    out = run(["ingest", *map(str, files), "--patient", "MRN-7", "--body-site", "hand"], **forced)
    assert out.returncode == 0 and "3 added" in out.stdout
    assert re.search(r"100%.* 3/3 \[.*photo/s\]", _final(out.stderr, "ingest"))
    previews = run(["vault", "previews"], **forced)
    assert "rendered 3 previews" in previews.stdout
    assert re.search(r"3/3 \[.*photo/s\]", _final(previews.stderr, "previews"))
    key = tmp_path / "k.key"
    assert run(["key", "new", str(key)]).returncode == 0
    deid = run(["deid", *map(str, files), "--out", str(tmp_path / "clean"), "--no-detect",
                "--key-file", str(key)], WORKBENCH_PROGRESS="1")
    assert deid.returncode == 0, deid.stderr
    assert re.search(r"3/3 \[.*file/s\]", _final(deid.stderr, "de-identify"))
    for out in (out, previews, deid):
        assert "SECRET" not in out.stderr and "MRN-7" not in out.stderr


def test_no_bar_when_not_wanted(cli_env):
    env, files = cli_env
    # stderr here is a pipe, not a terminal: quiet by default; 0 keeps it off everywhere
    for photo, extra in zip(files, ({}, {"WORKBENCH_PROGRESS": "0"})):
        out = run(["ingest", str(photo), "--patient", "MRN-7", "--body-site", "hand"], **env, **extra)
        assert out.returncode == 0 and "1 added" in out.stdout and out.stderr == ""


def test_cohort_derivatives_show_progress(vault_path, clock, monkeypatch, capsys):
    from workbench.cohort import prepare_derivatives
    from workbench.deid import Policy

    with open_as(vault_path, "admin", clock) as v:
        ids = [v.add_photo(jpeg_bytes(n), patient="MRN-0001", body_site="hand").photo_id for n in range(2)]
    monkeypatch.setenv("WORKBENCH_PROGRESS", "1")
    with open_as(vault_path, "analyst", clock) as v:
        prepare_derivatives(v, ids, purpose="care", workers=0, policy=Policy(detectors=()))
    err = capsys.readouterr().err
    assert re.search(r"2/2 \[.*photo/s\]", _final(err, "de-identify"))
    assert not any(photo_id in err for photo_id in ids)
