"""Make the calibration table of the 8-bit face model (``workbench/deid/models/``).

A table holds the range of every activation of a float model, measured on
what the detectors actually feed it on generated phantoms of the tuning set
(seed 2026, numbered as in a 500-phantom set). No pixels are stored, only
ranges. Run from the repository root::

    .venv/bin/python tools/calibrate_models.py

then run the detector tests and ``workbench evaluate`` on both phantom sets
(README, Quality) before committing new tables.

- centerface: the coarse and fine-pass inputs of phantoms 1, 3, ..., 59, cut
  into full 768x768 tiles that are not flat (23 of them; at most 60 are
  used, picked with a fixed seed);
  ranges at onnxruntime's ``Percentile`` (99.999th of the absolute value),
  which ignores the rare extreme activation that would waste the 8-bit range.

The inputs are captured while the detector runs the float model, as the
8-bit one is being made. The PP-OCR models stay float (see ``RECIPES``).
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

SET = {"count": 500, "seed": 2026}
TILE = 768
PICK = 60


def _pixels(number: int):
    data, _ = one_phantom(number, **SET)
    return _detection_copy(_load(data).image)


def centerface_inputs() -> list[dict]:
    import onnxruntime as ort

    seen = []
    run = _detect._run_centerface

    def capture(image, threshold, *args):
        h, w = image.shape[:2]
        seen.append(cv2.resize(image, _detect._network_size(w, h)))
        return run(image, threshold, *args)

    recipe = _models.RECIPES["centerface"]
    float_model = recipe.prepare(recipe.source().read_bytes()).SerializeToString()
    _detect._face_session = ort.InferenceSession(float_model, providers=["CPUExecutionProvider"])
    _detect._run_centerface = capture
    try:
        for number in range(1, 60, 2):
            small, scale = _pixels(number)
            _detect.detect_faces(small, scale=scale)
    finally:
        _detect._run_centerface = run
        _detect._face_session = None
    tiles = []
    for im in seen:
        for y in range(0, im.shape[0] - TILE + 1, TILE):
            for x in range(0, im.shape[1] - TILE + 1, TILE):
                t = im[y:y + TILE, x:x + TILE]
                if t.std() >= 5:
                    tiles.append({_models.INPUT: t.transpose(2, 0, 1)[None].astype(np.float32)})
    rng = np.random.default_rng(0)
    return [tiles[i] for i in sorted(rng.choice(len(tiles), min(PICK, len(tiles)), replace=False))]


def calibrate(name: str, feeds: list[dict]) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    recipe = _models.RECIPES[name]
    feed = iter(feeds)

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feed, None)

    model = recipe.prepare(recipe.source().read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.json"
        quantize_static(model, Path(tmp) / "int8.onnx", Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=recipe.keep_float(model),
                        calibrate_method=getattr(CalibrationMethod, recipe.method), calibration_cache_path=table)
        data = json.loads(table.read_text())
    recipe.calibration.write_text(json.dumps(data, indent=0, sort_keys=True))
    print(f"wrote {recipe.calibration.relative_to(ROOT)} ({len(data['data'])} tensors, {len(feeds)} inputs)")


def main() -> None:
    calibrate("centerface", centerface_inputs())


if __name__ == "__main__":
    main()
