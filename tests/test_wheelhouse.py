"""The offline install: a wheelhouse with a hash lock installs with pip's network switched off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from wheelhouse_lock import lock_lines  # noqa: E402


def test_the_lock_names_every_wheel_with_its_hash_and_refuses_anything_else(tmp_path):
    (tmp_path / "Foo_Bar-1.2-py3-none-any.whl").write_bytes(b"a")
    (tmp_path / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"b")
    assert lock_lines(tmp_path) == [
        "foo-bar==1.2 --hash=sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
        "six==1.17.0 --hash=sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d",
    ]
    (tmp_path / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"c")
    with pytest.raises(SystemExit, match="two wheels of six"):
        lock_lines(tmp_path)
    (tmp_path / "six-1.16.0-py2.py3-none-any.whl").unlink()
    (tmp_path / "thing-1.0.tar.gz").write_bytes(b"d")
    with pytest.raises(SystemExit, match="not a wheel"):
        lock_lines(tmp_path)


def _offline(command: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``command`` with no network: in a network namespace of its own where the
    machine allows one, else with pip's index and proxies pointed at nothing."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
               PIP_INDEX_URL="http://127.0.0.1:9/simple", HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9")
    env.pop("PIP_FIND_LINKS", None)
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "-n"] + command
    return subprocess.run(command, env=env, capture_output=True, text=True, **kw)


def _install(target: Path, wheelhouse: Path) -> subprocess.CompletedProcess:
    return _offline([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install",
                     "--no-index", "--find-links", str(wheelhouse), "--no-deps", "--require-hashes",
                     "-r", str(wheelhouse / "requirements.lock")], timeout=1200)


@pytest.mark.slow
def test_the_project_installs_from_a_wheelhouse_offline_and_a_changed_wheel_is_refused(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    # building the wheel may reach the index (for setuptools); installing it may not
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                            str(wheelhouse), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    locked = subprocess.run([sys.executable, str(ROOT / "tools" / "wheelhouse_lock.py"), str(wheelhouse)],
                            capture_output=True, text=True)
    assert locked.returncode == 0, locked.stderr
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    done = _install(target, wheelhouse)
    assert done.returncode == 0, done.stderr
    version = subprocess.run([str(target / "bin" / "python"), "-c",
                              "import importlib.metadata as m; print(m.version('workbench'))"],
                             capture_output=True, text=True)
    assert version.stdout.strip() == "0.1.0"
    # a wheel changed on the way to the workstation does not install
    wheel = next(wheelhouse.glob("workbench-*.whl"))
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    shutil.rmtree(target)
    venv.create(target, with_pip=False)
    done = _install(target, wheelhouse)
    assert done.returncode != 0 and "do not match the hashes" in done.stderr.lower()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("WORKBENCH_WHEELHOUSE"),
                    reason="set WORKBENCH_WHEELHOUSE to a folder `make wheelhouse` wrote")
def test_the_whole_environment_installs_from_the_wheelhouse_offline(tmp_path):
    wheelhouse = Path(os.environ["WORKBENCH_WHEELHOUSE"])
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    done = _install(target, wheelhouse)
    assert done.returncode == 0, done.stderr
    check = subprocess.run([str(target / "bin" / "python"), "-c",
                            "import workbench, gphoto2, cv2, sqlcipher3, onnxruntime; print('ok')"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "ok", check.stderr
