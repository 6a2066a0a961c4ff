"""The PP-OCR engine (rapidocr's bundled models) and the geometry of the lines it finds."""

from __future__ import annotations

import logging
import math
import sys
import threading

import cv2
import numpy as np

from ._common import _ocr_model_path, _resized, _threads
from ._reading import _better_read, _fold


#: A detected line's quadrilateral is grown along the line by this share of
#: its height on each side (PP-OCR's box often ends inside the first or last
#: character of italic and condensed print) and across it by the second.
_LINE_PAD = (0.5, 0.15)

_engine = None
_engine_lock = threading.Lock()
#: Calls into the shared rapidocr models are serialised: the detector keeps
#: its pre-processing step as an attribute between calls, and onnxruntime
#: already uses every thread it is given inside one call.
_ocr_call_lock = threading.Lock()
_import_lock = threading.Lock()


class _ModelList:
    """rapidocr's tree of the models it can fetch, read the first time it is asked for (see :func:`_import_rapidocr`)."""

    def __init__(self, read):
        self._read, self._tree = read, None

    def __get__(self, instance, owner):
        if self._tree is None:
            self._tree = self._read()
        return self._tree


def _import_rapidocr():
    """Import rapidocr's ``RapidOCR`` without building its model list into OmegaConf trees.

    As it is imported, rapidocr (3.10) reads ``default_models.yaml`` (85 KB:
    the address and checksum of every model it can fetch) into an OmegaConf
    tree twice: ``utils.model_resolver`` for its language routes, and
    ``inference_engine.base`` for the addresses. Building those trees took
    0.7 s of the engine's 1.4 s start on a 2-core AMD EPYC, in every CLI
    command, notebook kernel and test process that reads text. Here the
    resolver gets the same data as plain dicts and lists (it only calls
    ``get``, iterates and indexes), parsed by libyaml; the addresses, which
    serve only to find a model asked for by name (the workbench gives every
    model by path), are read into their tree the first time anything asks
    for them (``workbench evaluate``'s own reader, which names no model,
    does).
    """
    with _import_lock:  # the deid engine and the evaluation's reader may start at once
        if "rapidocr.inference_engine.base" not in sys.modules:
            from pathlib import Path

            import yaml
            from omegaconf import OmegaConf

            load, deferred = OmegaConf.load, []
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # PyYAML without libyaml: the same data

            def plain_or_later(path, *args, **kwargs):
                caller = sys._getframe(1).f_globals.get("__name__")
                if isinstance(path, (str, Path)) and Path(path).name == "default_models.yaml" and not args:
                    if caller == "rapidocr.utils.model_resolver":
                        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=loader)
                    if caller == "rapidocr.inference_engine.base":
                        deferred.append(path)
                        return None
                return load(path, *args, **kwargs)  # anything else, as rapidocr asked

            OmegaConf.load = plain_or_later
            try:
                from rapidocr.inference_engine import base
            finally:
                OmegaConf.load = load
            if deferred and base.InferSession.__dict__.get("model_info", 0) is None:
                base.InferSession.model_info = _ModelList(lambda: load(deferred[0]))
    from rapidocr import RapidOCR

    return RapidOCR


def _ocr_engine():
    """The shared rapidocr engine, built once from the wheel's own model files.

    Every model is given by explicit path so that rapidocr never looks for
    (or downloads) another; its logger is held at WARNING so that nothing it
    reads reaches a log.
    """
    global _engine
    with _engine_lock:
        if _engine is None:
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            RapidOCR = _import_rapidocr()

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
                # onnxruntime's arena keeps the buffers of one call for the next;
                # rapidocr turns it off, and every call then maps and zeroes its
                # memory afresh. Measured on 11 phantoms (one of 20 MP), one
                # thread: 12% less time, the same regions and scores, peak
                # memory 1.2 -> 1.4 GB.
                "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
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
            detector.postprocess_op = _MergedLines(detector.postprocess_op)
            _engine = engine
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
    return _engine


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


#: The boxes :class:`_MergedLines` cut from merged candidates in this thread's last detector call.
_cut = threading.local()


def _detect_lines(engine, bgr: np.ndarray) -> tuple[list[np.ndarray], list[bool]]:
    """The detector's line quadrilaterals in ``bgr``, and for each whether it was cut from a merged candidate."""
    with _ocr_call_lock:
        _cut.boxes = []
        found = engine._load_det_model()(bgr)
        cut = _cut.boxes
    quads = _quads(found)
    return quads, [any(np.array_equal(q, c) for c in cut) for q in quads]


class _MergedLines:
    """rapidocr's DB post-processing, and the lines it drops for touching a neighbour.

    DB scores a candidate by the mean text probability inside its
    minimum-area rectangle and drops it under ``box_thresh`` (0.5). Two
    tilted lines of unequal length that touch through weak probability
    (0.3-0.5) form one L-shaped candidate whose rectangle is half empty: on
    seed 2045's phantom 298, a 20 MP label of two 33-35 px lines tilted 10°
    scored 0.48, and nothing of it was found. A dropped candidate whose own
    outline scores ``box_thresh`` or more (0.90 there: confident text,
    oddly shaped) is cut again at ``box_thresh``, and its pieces are scored
    as DB scores any candidate. Only pieces stacked with another (see
    :func:`_stacked`) are kept: what is repaired is lines that touch, and
    on seed 2046 the pieces of a ruler's number row, cut side by side,
    read as "12" and "1314" (no ruler's numbering) and hid the ruler on a
    clean photo. They are marked (see
    :func:`_detect_lines`): ``detect_text`` keeps such a line only when it
    reads as print.
    """

    def __init__(self, reference):
        self._reference = reference

    def __call__(self, pred: np.ndarray, ori_shape: tuple[int, int]):
        ref = self._reference
        boxes, scores = ref(pred, ori_shape)
        prob = pred[0, 0]
        mask = (prob > ref.thresh).astype(np.uint8)
        if ref.dilation_kernel is not None:
            mask = cv2.dilate(mask, ref.dilation_kernel)
        contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        src_h, src_w = ori_shape
        strong = (prob > ref.box_thresh).astype(np.uint8)
        more, more_scores = [], []
        merged = np.zeros_like(mask)  # one candidate's outline at a time, cleared after each
        for contour in contours[:ref.max_candidates]:
            points, side = ref.get_mini_boxes(contour)
            if (side < ref.min_size or ref.box_score_fast(prob, points.reshape(-1, 2)) >= ref.box_thresh
                    or ref.box_score_slow(prob, contour) < ref.box_thresh):
                continue
            outline = [contour.reshape(-1, 2)]
            cv2.fillPoly(merged, outline, 1)
            pieces, piece_scores = ref.boxes_from_bitmap(prob, merged & strong, src_w, src_h)
            cv2.fillPoly(merged, outline, 0)
            pieces, piece_scores = ref.filter_det_res(pieces, piece_scores, src_h, src_w)
            for k, piece in enumerate(pieces):
                if any(_stacked(piece, other) for j, other in enumerate(pieces) if j != k):
                    more.append(piece)
                    more_scores.append(piece_scores[k])
        if not more:
            return boxes, scores
        more = np.asarray(more, np.float32)
        _cut.boxes = list(more)
        boxes = np.concatenate([np.asarray(boxes, np.float32).reshape(-1, 4, 2), more])
        return boxes, list(scores) + list(more_scores)


def _stacked(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether line quadrilateral ``b`` lies beside ``a`` across its reading direction, as the next line of a label does.

    Along ``a``'s reading direction the two overlap by half of the shorter;
    across it their centres lie at least 0.3 of ``a``'s height apart (the
    height of a DB box, grown by its unclip: the two lines of seed 2045's
    label, 8.5 px tall and 10 px apart, gave boxes 21 px tall). Pieces of
    one row cut side by side do not overlap along it.
    """
    along, across = _line_axes(np.asarray(a, np.float32))
    length, height = float(np.linalg.norm(along)), float(np.linalg.norm(across))
    if length == 0 or height == 0:
        return False
    u, v = along / length, across / height
    pa, pb = np.asarray(a, np.float32) @ u, np.asarray(b, np.float32) @ u
    overlap = min(pa.max(), pb.max()) - max(pa.min(), pb.min())
    shorter = min(pa.max() - pa.min(), pb.max() - pb.min())
    apart = abs(float((np.asarray(b, np.float32).mean(axis=0) - np.asarray(a, np.float32).mean(axis=0)) @ v))
    return overlap >= 0.5 * shorter and apart >= 0.3 * height


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


def _unit_axes(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """A line quadrilateral's unit vectors along and across its reading direction, and its height (None if flat)."""
    length_axis, height_axis = _line_axes(pts)
    length, height = float(np.linalg.norm(length_axis)), float(np.linalg.norm(height_axis))
    if length > 0 and height > 0:
        return length_axis / length, height_axis / height, height
    return None


def _grown(pts: np.ndarray, along: float, across: float) -> np.ndarray:
    """A line's quadrilateral grown on each side by ``along`` and ``across`` times its height.

    It grows along its own axes (so a tilted line grows along its slant);
    the reading direction is the longer side.
    """
    axes = _unit_axes(pts)
    if axes is not None:
        u, v, height = axes
        # Each corner moves away from the centre along both axes.
        centre = pts.mean(axis=0)
        su = np.sign((pts - centre) @ u)
        sv = np.sign((pts - centre) @ v)
        pts = pts + (su[:, None] * u * (along * height)) + (sv[:, None] * v * (across * height))
    return pts


def _carried_on(pts: np.ndarray, start: float, end: float) -> np.ndarray:
    """A line's quadrilateral carried on along its reading direction by ``start`` and ``end`` line heights."""
    axes = _unit_axes(pts)
    if axes is None:
        return pts
    u, _, height = axes
    side = np.sign((pts - pts.mean(axis=0)) @ u)
    return pts + (np.where(side < 0, -start, end) * height)[:, None] * u


def _frame_box(box, scale: float) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` in full-frame pixels, rounded outwards, of a corner box in pixels reduced by ``scale``."""
    x0, y0 = math.floor(box[0] / scale), math.floor(box[1] / scale)
    return x0, y0, max(1, math.ceil(box[2] / scale) - x0), max(1, math.ceil(box[3] / scale) - y0)


def _inside(a, b, share: float = 0.8) -> bool:
    """Whether box ``a`` lies mostly (``share`` of its area) inside box ``b``."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    area = max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))
    return iw > 0 and ih > 0 and iw * ih / area >= share


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
