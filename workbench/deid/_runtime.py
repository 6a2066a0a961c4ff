"""Where the text detector's network runs: OpenVINO's CPU runtime, in 32-bit float.

rapidocr's PP-OCR detector is the wheel's ONNX file; OpenVINO reads it as
it is. Measured on this 2-core AMD EPYC, one thread, same input: a 20 MP
frame's quarter-size copy (1376x896) in 224 ms against onnxruntime's 262,
with the same regions found on 123 phantoms. OpenVINO prepares each new
input size once (the first call at 1376x896 took 374 ms), so it pays where
sizes repeat: the detector's whole-frame pass has one size per camera
frame size. The recogniser and the face model take a new size with nearly
every call and run no faster warm (within 5%), so they stay on
onnxruntime.

Precision is pinned to f32. OpenVINO's default on CPUs with bfloat16
(this one) is bfloat16, which halves the text pass but changes what is
found and read: on the same 123 phantoms two unnumbered rulers swapped
between hidden and kept. Results must not depend on which CPU a department
happens to have.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailable

PRECISION = "f32"


class Network:
    """One compiled model, called as rapidocr calls its sessions; safe to call from several threads at once.

    Each thread gets its own inference request (OpenVINO's requests are not
    thread-safe; the compiled model is).
    """

    def __init__(self, path: Path, threads: int | None = None):
        config = {"INFERENCE_PRECISION_HINT": PRECISION, "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self._compiled = _core().compile_model(str(path), "CPU", config)
        except (RuntimeError, OSError) as exc:
            raise ModelUnavailable(
                f"the detector model {Path(path).name} could not be loaded ({type(exc).__name__}); "
                "reinstall the workbench with `pip install -e .`"
            ) from None
        self._local = threading.local()

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The first output for a single input: how rapidocr calls its sessions."""
        request = self._request()
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()


_core_instance = None
_core_lock = threading.Lock()


def _core():
    global _core_instance
    with _core_lock:
        if _core_instance is None:
            import openvino as ov

            _core_instance = ov.Core()
    return _core_instance


def describe() -> str:
    """The runtime and precision, for provenance records."""
    import openvino as ov

    return f"openvino {ov.get_version().split('-')[0]}, CPU, {PRECISION}"
