"""The text detector's runtime (OpenVINO, f32) gives what onnxruntime gives."""

from __future__ import annotations

import threading

import numpy as np
import onnxruntime as ort

from workbench._synth import synth_pixels
from workbench.deid import _runtime
from workbench.deid._detect import _ocr_model_path


def _ort(task: str):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(_ocr_model_path(task)), options, providers=["CPUExecutionProvider"])


def _det_input(seed: int) -> np.ndarray:
    img = synth_pixels(np.random.default_rng(seed), 640, 416).astype(np.float32) / 255.0
    return ((img - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def test_precision_is_pinned_to_f32():
    net = _runtime.Network(_ocr_model_path("cls"), threads=1)
    assert str(net._compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    assert _runtime.describe().endswith("CPU, f32")


def test_text_detector_matches_onnxruntime():
    # bfloat16 (OpenVINO's default on this CPU) differs by about 0.05 on the detector map; f32 by about 1e-5.
    x = _det_input(5)
    session = _ort("det")
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = _runtime.Network(_ocr_model_path("det"), threads=1)(x)
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) < 1e-3
    # The text mask rapidocr thresholds at 0.3: the same pixels either way.
    assert np.array_equal(got > 0.3, expected > 0.3) or np.mean((got > 0.3) != (expected > 0.3)) < 1e-5


def test_one_network_serves_several_threads():
    net = _runtime.Network(_ocr_model_path("det"), threads=1)
    inputs = [_det_input(seed) for seed in (7, 8, 9, 10)]
    alone = [net(x) for x in inputs]
    together: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(3):
            together[i] = net(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, expected in enumerate(alone):
        assert np.array_equal(together[i], expected)
