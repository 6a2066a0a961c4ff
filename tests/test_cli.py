"""The command line end to end: one-line errors, exit codes, formats."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from conftest import jpeg_bytes, passphrase


def run(args, env_extra=None, **env):
    full = dict(os.environ)
    for key in ("WORKBENCH_PASSPHRASE", "WORKBENCH_NEW_PASSPHRASE", "WORKBENCH_VAULT", "WORKBENCH_USER"):
        full.pop(key, None)
    full.update(env)
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True,
                          text=True, env=full, stdin=subprocess.DEVNULL)


@pytest.fixture
def cli_vault(tmp_path):
    path = tmp_path / "v"
    out = run(["vault", "init", str(path), "--admin", "ada"], WORKBENCH_NEW_PASSPHRASE=passphrase("ada"))
    assert out.returncode == 0, out.stderr
    env = dict(WORKBENCH_VAULT=str(path), WORKBENCH_USER="ada", WORKBENCH_PASSPHRASE=passphrase("ada"))
    return path, env


def test_full_cycle(cli_vault, tmp_path):
    path, env = cli_vault
    assert run(["user", "add", "res", "--role", "researcher"], **env, WORKBENCH_NEW_PASSPHRASE=passphrase("res")).returncode == 0
    assert run(["consent", "add", "--patient", "MRN-7", "--scopes", "care,research"], **env).returncode == 0
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(1))
    out = run(["ingest", str(photo), "--patient", "MRN-7", "--body-site", "hand"], **env)
    assert out.returncode == 0 and "1 added" in out.stdout
    listed = json.loads(run(["photos", "--purpose", "research", "--format", "json"], **env).stdout)
    assert len(listed) == 1 and listed[0]["body_site"] == "hand"
    assert "MRN-7" not in json.dumps(listed)
    csv = run(["photos", "--purpose", "research", "--format", "csv", "--where", "body_site=knee"], **env).stdout
    assert csv.strip().count("\n") == 0  # header only
    res_env = dict(env, WORKBENCH_USER="res", WORKBENCH_PASSPHRASE=passphrase("res"))
    denied = run(["photos", "--purpose", "research", "--identifiers"], **res_env)
    assert denied.returncode == 3 and denied.stderr.startswith("workbench: AccessDenied:")
    assert run(["consent", "withdraw", "--patient", "MRN-7", "--scopes", "research"], **env).returncode == 0
    assert json.loads(run(["photos", "--purpose", "research", "--format", "json"], **env).stdout) == []
    shown = run(["audit", "show", "--format", "json"], **env)
    actions = [r["action"] for r in json.loads(shown.stdout)]
    assert {"vault_init", "user_add", "consent_grant", "ingest", "query", "denied", "consent_withdraw"} <= set(actions)
    assert run(["audit", "show", "--since", "2999-01-01", "--format", "json"], **env).stdout.strip() == "[]"
    assert run(["audit", "verify"], **env).returncode == 0
    assert run(["vault", "check"], **env).returncode == 0
    assert run(["user", "remove", "res"], **env).returncode == 0
    assert run(["photos", "--purpose", "care"], **res_env).returncode == 3


@pytest.mark.parametrize("args, env, code, words", [
    (["photos", "--purpose", "research"], {}, 8, "--vault"),
    (["--vault", "/nonexistent", "--user", "x", "photos", "--purpose", "care"],
     {"WORKBENCH_PASSPHRASE": "x" * 8}, 6, "no workbench vault"),
])
def test_errors_are_one_line(args, env, code, words):
    out = run(args, **env)
    assert out.returncode == code
    assert words in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_wrong_passphrase_and_bad_purpose(cli_vault):
    path, env = cli_vault
    bad = run(["photos", "--purpose", "care"], **dict(env, WORKBENCH_PASSPHRASE="wrong-one"))
    assert bad.returncode == 3 and "wrong-one" not in bad.stderr and bad.stderr.count("\n") == 1
    purpose = run(["photos", "--purpose", "marketing"], **env)
    assert purpose.returncode == 5 and "care, research, education, publication" in purpose.stderr
    unknown = run(["ingest", "x.jpg", "--patient", "MRN-NEW", "--body-site", "arm"], **env)
    assert unknown.returncode == 5 and "MRN-NEW" not in unknown.stderr


def test_demo_runs(tmp_path):
    out = run(["demo", "--workdir", str(tmp_path)])  # the demo a new user runs: 24 photos
    assert out.returncode == 0, out.stderr
    assert "research" in out.stdout and "Audit chain: intact" in out.stdout
    assert "ZZTEST" not in out.stdout and "MRN-" not in out.stdout
    # The demo's photos show lesions and wounds and nothing identifying in their pixels:
    # any region would hide part of the finding the photo was taken for.
    from workbench import open_vault
    from workbench.demo import DEFAULT_PASSPHRASE

    with open_vault(tmp_path / "vault", user="analyst", passphrase=DEFAULT_PASSPHRASE) as vault:
        results = vault.deid_results(purpose="care")
    assert len(results) == 24 and results["verified"].all()
    assert [r for regions in results["regions"] for r in regions] == []
    # a second demo replaces the vault the first one made (the whole demo again would add 15 s)
    from workbench.demo import MARKER, build_demo_vault

    left = tmp_path / "vault" / "left-by-the-first-demo"  # an inode number can be reused: a file cannot lie
    left.write_text("first")
    build_demo_vault(tmp_path, photos=2, passphrase=DEFAULT_PASSPHRASE, width=320, height=240, out=io.StringIO())
    assert (tmp_path / "vault" / MARKER).exists() and not left.exists()


@pytest.fixture
def cli_photo(cli_vault, tmp_path):
    path, env = cli_vault
    assert run(["consent", "add", "--patient", "MRN-7", "--scopes", "care,research"], **env).returncode == 0
    photo = tmp_path / "a.jpg"
    photo.write_bytes(jpeg_bytes(1))
    assert run(["ingest", str(photo), "--patient", "MRN-7", "--body-site", "hand"], **env).returncode == 0
    return path, env


def test_a_closed_pipe_ends_quietly(cli_photo):
    # `workbench photos | head`: the reader is gone before the first write
    _, env = cli_photo
    full = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")} | env
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "photos", "--purpose", "care"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=full)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert err == "", err


def test_no_terminal_for_the_passphrase_is_a_one_line_error(cli_vault):
    path, env = cli_vault
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")} | env
    del env["WORKBENCH_PASSPHRASE"]
    for args in (["photos", "--purpose", "care"], ["cohort", "build", "--param", "name=x"]):
        # a new session has no controlling terminal, as under cron or a CI runner
        out = subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                             env=env, stdin=subprocess.DEVNULL, start_new_session=True, timeout=60)
        assert out.returncode == 8 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("workbench: NoTerminal:") and "WORKBENCH_PASSPHRASE" in out.stderr


def test_audit_show_is_one_short_line_per_record_and_json_has_it_all(cli_photo):
    _, env = cli_photo
    records = json.loads(run(["audit", "show", "--format", "json"], **env).stdout)
    assert any(r["detail"].get("patient_ref") for r in records)  # full detail, as objects
    shown = run(["audit", "show"], **env, COLUMNS="72").stdout.splitlines()
    # +1: the `audit show --format json` above is on the record now
    assert len(shown) == len(records) + 1
    assert all(len(line) <= 72 for line in shown)
    wide = run(["audit", "show"], **env, COLUMNS="120").stdout.splitlines()
    grant = next(line for line in wide if "consent_grant" in line)
    ref = next(r["detail"]["patient_ref"] for r in records if r["action"] == "consent_grant")
    assert ref[:8] in grant and ref not in grant  # short ids


def test_empty_fields_print_empty(cli_photo):
    _, env = cli_photo  # the photo has no laterality, diagnosis or capture date
    for fmt in ("table", "csv"):
        out = run(["photos", "--purpose", "care", "--format", fmt], **env).stdout
        assert "hand" in out and "NaN" not in out and "None" not in out and "nan" not in out
    row = run(["photos", "--purpose", "care", "--format", "csv"], **env).stdout.splitlines()[1]
    assert ",hand,,,," in row


def test_evaluate_says_n_a_not_miss_when_there_is_nothing_to_measure():
    from workbench.evaluate import _summarise, _targets, _timing, format_report

    # a set with faces but no barcode and no clean photo
    per_image = [{"objects": [{"kind": "face", "identifying": True, "size_band": ">=100", "hidden": True}],
                  "regions": [], "clean": False, "redacted_area": 0.01, "byte_hits": 0, "ocr_hits": 0,
                  "seconds": 0.5, "check_seconds": 0.1, "width": 64, "height": 64}]
    report = {"images": 1, "by_kind": _summarise(per_image), "timing": _timing(per_image),
              "clean": {"images": 0, "area_mean": None, "area_max": None},
              "metadata": {"leaks": 0, "tags": {}}, "strings": {"readable": 0, "bytes": 0, "ocr": 0, "images": 0},
              "findings_hidden": 0, "false_regions": 0, "targets": _targets(per_image, 0)}
    lines = {line.split(":")[0].strip(): line for line in format_report(report).splitlines()}
    assert lines["n/a  barcode recall"] and lines["n/a  largest share of a clean photo redacted"]
    assert lines["met  face recall, faces 40 px or taller"]
    assert not any(line.lstrip().startswith("MISS") for line in lines.values())
    assert report["targets"]["barcode_recall"]["met"] is False  # the JSON still fails closed


def test_cohort_build_says_what_it_wrote_and_left_out(vault_path, clock, tmp_path):
    from conftest import open_as, passphrase

    with open_as(vault_path, "admin") as v:
        ids = [v.add_photo(jpeg_bytes(n), patient=p, body_site="hand").photo_id
               for n, p in enumerate(["MRN-0001"] * 3 + ["MRN-0002"])]
    with open_as(vault_path, "analyst") as v:
        v.set_review_state(ids[0], "approved")
        v.set_review_state(ids[1], "rejected")
    env = dict(WORKBENCH_VAULT=str(vault_path), WORKBENCH_USER="ada", WORKBENCH_PASSPHRASE=passphrase("ada"),
               WORKBENCH_PROGRESS="1")
    out = run(["cohort", "build", "--out", str(tmp_path / "c"), "--param", "name=c", "--param", "workers=0",
               "--param", 'policy={"detectors": []}'], **env)
    assert out.returncode == 0, out.stderr
    assert "1 images written; 3 left out: 1 no consent, 1 rejected in review, 1 unreviewed" in out.stdout
    assert "write cohort: 100%" in out.stderr  # the kernel's progress, relayed
    assert "KeyboardInterrupt" not in out.stdout + out.stderr and "warning" not in out.stderr


def test_an_empty_cohort_is_a_warning():
    from pathlib import Path

    from workbench.cohort import CohortResult

    text = CohortResult(Path("c"), 0, {"no consent": 4}, "r").summary()
    assert text.startswith("cohort c: 0 images written; 4 left out: 4 no consent")
    assert "warning: the cohort is empty" in text
    assert "warning" not in CohortResult(Path("c"), 2, {}, "r").summary()


def test_papermill_kernels_are_not_interrupted_at_shutdown(tmp_path, monkeypatch):
    # jupyter_client sends SIGINT before each shutdown request; a kernel inside a
    # handler then prints "KeyboardInterrupt caught in kernel" on a good run.
    import nbformat

    from workbench import runs

    marker = tmp_path / "sigint"
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        # after this cell's handler, let SIGINT leave a mark instead of being ignored
        nbformat.v4.new_code_cell(
            "import asyncio, signal\n"
            f"mark = lambda *_: open({str(marker)!r}, 'a').write('SIGINT')\n"
            "asyncio.get_event_loop().call_later(0.1, lambda: signal.signal(signal.SIGINT, mark))"),
        nbformat.v4.new_code_cell("import time; time.sleep(0.5)"),
    ]
    nbformat.write(nb, tmp_path / "t.ipynb")
    monkeypatch.setattr(runs, "NOTEBOOKS", tmp_path)
    runs.run_notebook("t", {}, tmp_path / "out.ipynb")
    assert not marker.exists()


def _no_terminal(args, env, stdin_text):
    """Run with no controlling terminal (a new session, as under cron) and ``stdin_text`` piped in."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")} | env
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          env=full, input=stdin_text, start_new_session=True, timeout=120)


def test_passphrase_stdin_reads_one_line_and_a_pipe_is_never_read_without_it(cli_vault):
    path, env = cli_vault
    env = dict(env)
    secret = env.pop("WORKBENCH_PASSPHRASE")
    piped = _no_terminal(["photos", "--purpose", "care"], env, secret + "\n")
    assert piped.returncode == 8 and piped.stderr.startswith("workbench: NoTerminal:"), piped.stderr
    assert "--passphrase-stdin" in piped.stderr
    ok = _no_terminal(["photos", "--purpose", "care", "--passphrase-stdin"], env, secret + "\nnext line\n")
    assert ok.returncode == 0, ok.stderr
    before = _no_terminal(["--passphrase-stdin", "audit", "verify"], env, secret)  # no newline, option first
    assert before.returncode == 0 and "intact" in before.stdout, before.stderr
    wrong = _no_terminal(["photos", "--purpose", "care", "--passphrase-stdin"], env, "wrong-one\n")
    assert wrong.returncode == 3 and "wrong-one" not in wrong.stderr
    # a build unlocks with it too (and fails fast on a wrong one, before any kernel starts)
    build = _no_terminal(["cohort", "build", "--param", "name=x", "--passphrase-stdin"], env, "wrong-one\n")
    assert build.returncode == 3 and build.stderr.startswith("workbench: AccessDenied:"), build.stderr
    for stdin_text in ("", "\n"):
        empty = _no_terminal(["photos", "--purpose", "care", "--passphrase-stdin"], env, stdin_text)
        assert empty.returncode == 8 and "empty line" in empty.stderr and empty.stderr.count("\n") == 1
    other = _no_terminal(["phantoms", "x", "--passphrase-stdin"], env, secret)
    assert other.returncode == 8 and "takes no passphrase" in other.stderr


def test_vault_init_with_passphrase_stdin_applies_the_strength_rule(tmp_path):
    weak = _no_terminal(["vault", "init", str(tmp_path / "weak"), "--admin", "ada", "--passphrase-stdin"],
                        {}, "password1234\n")
    assert weak.returncode == 8 and weak.stderr.startswith("workbench: InvalidInput:")
    assert "password1234" not in weak.stderr and "12 characters" in weak.stderr and "Traceback" not in weak.stderr
    assert not (tmp_path / "weak").exists()
    made = _no_terminal(["vault", "init", str(tmp_path / "v"), "--admin", "ada", "--passphrase-stdin"],
                        {}, passphrase("ada") + "\n")
    assert made.returncode == 0, made.stderr
    env = dict(WORKBENCH_VAULT=str(tmp_path / "v"), WORKBENCH_USER="ada", WORKBENCH_PASSPHRASE=passphrase("ada"))
    assert run(["audit", "verify"], **env).returncode == 0
    # a new user's weak passphrase: one line, exit 8, no user made
    user = run(["user", "add", "res", "--role", "researcher"], **env, WORKBENCH_NEW_PASSPHRASE="pw")
    assert user.returncode == 8 and user.stderr.count("\n") == 1 and "too short" in user.stderr
    assert "res" not in run(["user", "list"], **env).stdout


def test_vault_check_reports_stale_files_and_repair_removes_them(vault_path, clock):
    from conftest import leave_stale_files, open_as

    env = dict(WORKBENCH_VAULT=str(vault_path), WORKBENCH_USER="ada", WORKBENCH_PASSPHRASE=passphrase("ada"))
    assert run(["vault", "check"], **env).returncode == 0
    stale = leave_stale_files(vault_path, clock)
    found = run(["vault", "check"], **env)
    assert found.returncode == 1 and "stale files: 2 (" in found.stdout and "--repair" in found.stdout
    assert all(p.exists() for p in stale)
    writer = open_as(vault_path, "photographer", clock)
    try:
        writer._store_blob("original", "originals", jpeg_bytes(6), "in-flight")  # an ingest still running
        busy = run(["vault", "check", "--repair"], **env)
        assert busy.returncode == 1 and "stale files: not checked:" in busy.stdout
        assert all(p.exists() for p in stale)
    finally:
        writer.close()
    repaired = run(["vault", "check", "--repair"], **env)
    assert repaired.returncode == 0 and "stale files: 3 removed" in repaired.stdout, repaired.stdout
    assert not any(p.exists() for p in stale)
    clean = run(["vault", "check"], **env)
    assert clean.returncode == 0 and "stale files: none" in clean.stdout and "files: ok" in clean.stdout
