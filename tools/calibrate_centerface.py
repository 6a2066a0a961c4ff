"""Make the calibration table of the 8-bit CenterFace (``workbench/deid/models/``).

The table holds the range of every activation of the float model, measured
on what the face detector actually feeds it: the coarse and fine-pass inputs
of 30 generated phantoms (seed 2026, the tuning set: numbers 1, 3, ..., 59
of a 500-phantom set), cut into full 768x768 tiles that are not flat, 60 of
them picked with a fixed seed. Ranges are the 99.999th percentile of the
absolute value (onnxruntime's ``Percentile`` method), which ignores the rare
extreme activation that would otherwise waste the 8-bit range. No pixels are
stored, only ranges. Run from the repository root::

    .venv/bin/python tools/calibrate_centerface.py

then run the detector tests and ``workbench evaluate`` on a phantom set
before committing a new table.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workbench.deid import _detect, _models  # noqa: E402
from workbench.deid._pipeline import _detection_copy, _load  # noqa: E402
from workbench.phantoms import one_phantom  # noqa: E402

TILE = 768
PICK = 60


def inputs() -> list[np.ndarray]:
    """The images detect_faces gives CenterFace on the calibration phantoms, resized as the model sees them."""
    seen = []
    run = _detect._run_centerface

    def capture(image, threshold):
        h, w = image.shape[:2]
        nw, nh = max(32, -(-w // 32) * 32), max(32, -(-h // 32) * 32)
        seen.append(cv2.resize(image, (nw, nh)))
        return run(image, threshold)

    import onnxruntime as ort

    # The passes are the float model's, as the 8-bit one is being made.
    float_model = _models._float_graph(_models.centerface_source().read_bytes()).SerializeToString()
    _detect._face_session = ort.InferenceSession(float_model, providers=["CPUExecutionProvider"])
    _detect._run_centerface = capture
    try:
        for number in range(1, 60, 2):
            data, _ = one_phantom(number, count=500, seed=2026)
            small, scale = _detection_copy(_load(data).image)
            _detect.detect_faces(small, scale=scale)
    finally:
        _detect._run_centerface = run
        _detect._face_session = None
    return seen


def tiles(images: list[np.ndarray]) -> list[dict]:
    out = []
    for im in images:
        for y in range(0, im.shape[0] - TILE + 1, TILE):
            for x in range(0, im.shape[1] - TILE + 1, TILE):
                t = im[y:y + TILE, x:x + TILE]
                if t.std() >= 5:
                    out.append({_models.INPUT: t.transpose(2, 0, 1)[None].astype(np.float32)})
    rng = np.random.default_rng(0)
    return [out[i] for i in sorted(rng.choice(len(out), min(PICK, len(out)), replace=False))]


def main() -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    feed = iter(tiles(inputs()))

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feed, None)

    model = _models._float_graph(_models.centerface_source().read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.json"
        quantize_static(model, Path(tmp) / "int8.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_models._float_nodes(model), calibrate_method=CalibrationMethod.Percentile,
                        calibration_cache_path=table)
        data = json.loads(table.read_text())
    _models.CALIBRATION.write_text(json.dumps(data, indent=0, sort_keys=True))
    print(f"wrote {_models.CALIBRATION.relative_to(ROOT)} ({len(data['data'])} tensors)")


if __name__ == "__main__":
    main()
