"""Nothing the workbench runs reports to anyone.

onnxruntime's wheels (1.29 and later) carry Microsoft's telemetry on Linux
too: the first session writes a device id and a cache of events to send
under ``~/.cache/Microsoft`` and uploads them when a network is there. The
package switches it off when it is imported (``ORT_DISABLE_TELEMETRY``).
Each run here is a fresh process with its own empty home, as a person's
kernel is, and without ``CI`` in its environment (onnxruntime stays quiet by
itself under CI, which would hide the fault).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.deid import _models

#: a session on a one-node model, as any library would open one
PLAIN_SESSION = """
import onnxruntime
from onnx import TensorProto, helper
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
"""

#: the detectors' models, run as de-identification runs them
WORKBENCH_DETECTORS = """
import numpy as np
import workbench
from workbench import _synth
from workbench.deid._detect import detect_faces, detect_text
pixels = _synth.synth_pixels(np.random.default_rng(3), 640, 427)
detect_faces(pixels)
detect_text(pixels)
"""

#: environment variables under which onnxruntime sends nothing by itself
QUIET = ("CI", "ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", "GITHUB_ACTIONS", "TF_BUILD")


def _written(code: str, home: Path) -> list[str]:
    """Run ``code`` in a fresh Python with ``home`` as its home; what it wrote under Microsoft's folders."""
    env = {k: v for k, v in os.environ.items() if k not in QUIET}
    env["HOME"] = str(home)
    env["WORKBENCH_CACHE"] = str(_models.cache_dir().parent)  # the prepared models, not made again
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if "Microsoft" in p.parts)


def test_onnxruntime_telemetry_is_off_in_every_process_that_imports_the_package(tmp_path):
    homes = {name: tmp_path / name for name in ("plain", "detectors", "own_model")}
    for home in homes.values():
        home.mkdir()
    # The same onnxruntime used without the package keeps a device id and events to upload.
    if not _written(PLAIN_SESSION, homes["plain"]):
        pytest.skip("this onnxruntime keeps no telemetry here: nothing to switch off")
    assert _written(WORKBENCH_DETECTORS, homes["detectors"]) == [], "the detectors' sessions kept telemetry"
    # A researcher's own model in a notebook that imported the package: quiet too.
    assert _written("import workbench\n" + PLAIN_SESSION, homes["own_model"]) == []
