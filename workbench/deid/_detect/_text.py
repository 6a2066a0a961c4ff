"""Text: labels, wristbands, whiteboards, ink on skin, burned-in annotations."""

from __future__ import annotations

import math
import re
from typing import Sequence

import cv2
import numpy as np

from ...errors import InvalidInput
from .._regions import HIDDEN_COVERAGE, Region, coverage, merge_overlapping
from ._common import _check_image, _full_size, _regions, _resized
from ._ocr import (_carried_on, _corners, _detect_lines, _frame_box, _inside, _line_box, _line_crop, _ocr_engine,
                   _recognise)
from ._reading import _allowed, _dropped, _IDENTIFIER, _is_ruler
from ._rulers import _bands, _find_ruler_rows, _RULER


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


#: A line cut from a merged candidate (see ``_ocr._MergedLines``) is kept only
#: when read with this confidence or more. On seed 2045 the cut found a
#: tilted two-line label read at 0.997 and, in the first 160 phantoms, five
#: pieces of slough, wounds and skin read at 0.33-0.70 (three on two clean
#: photos), which an ordinary line would have made regions.
_CUT_MIN_CONFIDENCE = 0.8

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


def detect_text(image: np.ndarray, *, scale: float = 1.0, allow: tuple[str, ...] = (),
                codes=(), within: tuple[int, int] | None = None, hidden=()) -> list[Region]:
    """Find text: labels, wristbands, whiteboards, ink on skin, burned-in annotations.

    rapidocr's PP-OCR detector runs on a contrast-stretched copy with its
    long side at 1368 px (the quarter-size decode of a 20 MP frame); the
    detected lines are then read, in one batch, from the sharpest pixels
    available (the input image). The copy is searched again with its ground
    taken away, for ink the detector misses on its ground (violet marker on
    a blue drape; see :data:`_FAINT_WINDOW`; not in a verification window);
    a line only that search finds is returned when it reads as print.
    Every other detected line is returned, read or not, with these
    exceptions:

    - a ruler's numbering (``"1 2 3 4"``, ``"12345678910"``, ``"10 20 30
      mm"``), and a row of tick marks read beside it, while
      :data:`RULERS_VISIBLE` is true: a ruler is measurement, not identity;
    - a line whose whole text matches ``allow`` (read with confidence), and
    - a line read as fewer than two letters or digits: ruler ticks, lesion
      edges and hair read as nothing or as one character, and a lone
      character identifies no one; nor does a lone two-digit number, a
      ruler's piece (:data:`_LONE_NUMBER`), or one sign repeated, a
      pattern's (:func:`_one_sign_repeated`).

    A line matching an identifier pattern (:data:`IDENTIFIER_PATTERNS`) is
    always returned and labelled ``"identifier"``, whatever ``allow`` says.
    Each line's box is carried on beyond its ends while the text it holds
    reads on (:func:`_read_on`: PP-OCR can lose a line's part on a dark
    ground), grown by half its height along the line (its boxes can end
    inside the first or last character), and lines of one label are merged
    into one region.

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
        line whose box they cover by :data:`~.._regions.HIDDEN_COVERAGE` or
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
    quads, cut = _detect_lines(engine, small)
    more, more_cut = _beside_codes(engine, small, codes, scale * shrink, quads)
    quads, cut = quads + more, cut + more_cut
    # Lines found only with the ground taken away must read as print (see _FAINT_WINDOW).
    faint = _faint_lines(engine, small, quads) if within is None else []
    only_faint = [False] * len(quads) + [True] * len(faint)
    quads, cut = quads + faint, cut + [False] * len(faint)
    if not quads:
        return []
    quads = [q / shrink for q in quads]  # in input-image pixels
    if hidden:
        shown = [coverage(_frame_box(_line_box(q), scale), hidden) < HIDDEN_COVERAGE for q in quads]
        quads = [q for q, keep in zip(quads, shown) if keep]
        cut = [c for c, keep in zip(cut, shown) if keep]
        only_faint = [c for c, keep in zip(only_faint, shown) if keep]
        if not quads:
            return []

    crops = [_line_crop(image, pts) for pts in quads]
    reads = _recognise(engine, crops)
    if RULERS_VISIBLE:
        _find_ruler_rows(engine, quads, crops, reads, image)
    _read_stacked_lines(engine, crops, reads)
    kept = []
    for pts, crop, read, was_cut, was_faint in zip(quads, crops, reads, cut, only_faint):
        if was_cut and (read is None or read[1] < _CUT_MIN_CONFIDENCE):
            continue  # a piece of a merged candidate that does not read as print
        if was_faint and not _faint_print(read):
            continue  # texture, hair, a lesion's edge or a ruler's numbers that the ground's removal made stand out
        if read is None:  # the recogniser failed: keep the line, unread
            score, label = 0.5, "text"
        else:
            text, score = read
            if text is _RULER:
                continue
            if any(p.search(text) for p in _IDENTIFIER) and not (RULERS_VISIBLE and _is_ruler(text)):
                label = "identifier"
            elif sum(ch.isalnum() for ch in text) < 2 or _blob(crop, text, score) or _LONE_NUMBER.fullmatch(text) \
                    or _one_sign_repeated(text):
                # Not text that can identify anyone: ruler ticks, lesion
                # edges and hair read as nothing or one character, a
                # ruler's piece read as a lone two-digit number, and a
                # pattern read as one sign over and over.
                continue
            elif RULERS_VISIBLE and _is_ruler(text):
                continue
            elif score >= _ALLOW_MIN_CONFIDENCE and _allowed(text, allowed):
                continue
            else:
                label = "text"
            del text
        kept.append((pts, read, score, label))
    del reads
    boxes, labels = [], []
    for pts, (_, score, label) in zip(_read_on(engine, image, [k[0] for k in kept], [k[1] for k in kept]),
                                     [k[1:] for k in kept]):
        x0, y0, x1, y1 = _line_box(pts)
        boxes.append([x0 / scale, y0 / scale, x1 / scale, y1 / scale, score])
        labels.append(label)
    boxes, labels = _merge_labels(boxes, labels)
    return _regions("text", "rapidocr", boxes, frame, labels)


#: A detected line can end inside the text it belongs to: on seed 2058
#: (069) a name written in ink across a dark naevus onto the skin was found
#: only where it lay on the skin ("undrem Pyrkriomt", 0.997) and hidden
#: there, leaving "Name: ZZTE" legible on the naevus; read with its box
#: carried on one line length towards its start, the same pixels read
#: "Name ZZTEST Dundrem Pyrkriomt" at 0.96. Each line kept as text is read
#: again with its box carried on by this many line heights beyond each end
#: in turn, up to :data:`_READ_ON_STEPS` times, and keeps each step whose
#: read holds the line's read and :data:`_READ_ON_MORE` or more letters or
#: digits besides, with :data:`_READ_ON_CONFIDENCE` or more.
_READ_ON_STEP = 3.0
_READ_ON_STEPS = 4
_READ_ON_MORE = 2
_READ_ON_CONFIDENCE = 0.8


#: Characters the recogniser reads for one another from one crop to the
#: next ("D.O.B" and "D.0.B" on seed 2059's 186).
_SAME_SHAPE = str.maketrans("01i", "oll")


def _folded(text: str) -> str:
    """A read's letters and digits, lower case, "0" as "o" and "1" as "l" (what :func:`_read_on` compares)."""
    return "".join(ch for ch in text.lower() if ch.isalnum()).translate(_SAME_SHAPE)


def _read_on(engine, image: np.ndarray, quads: list, reads: list) -> list[np.ndarray]:
    """``quads`` carried on beyond either end where the text they hold goes on (see :data:`_READ_ON_STEP`).

    A line read as nothing (``read`` None) is left as it is, and so is an
    end whose next step would leave the image.
    """
    h, w = image.shape[:2]
    reach = {(i, end): 0.0 for i, read in enumerate(reads) if read is not None for end in (0, 1)}
    known = {key: _folded(reads[key[0]][0]) for key in reach}
    going = set(reach)
    for _ in range(_READ_ON_STEPS):
        trials = []
        for i, end in sorted(going):
            far = reach[(i, end)] + _READ_ON_STEP
            pts = _carried_on(quads[i], *((far, 0.0) if end == 0 else (0.0, far)))
            crop = None if pts.min() < 0 or (pts[:, 0] > w).any() or (pts[:, 1] > h).any() else _line_crop(image, pts)
            if crop is None:
                going.discard((i, end))
            else:
                trials.append(((i, end), crop))
        for (key, _), read in zip(trials, _recognise(engine, [c for _, c in trials]) if trials else []):
            text = _folded(read[0]) if read is not None and read[1] >= _READ_ON_CONFIDENCE else ""
            if known[key] in text and len(text) - len(known[key]) >= _READ_ON_MORE:
                reach[key] += _READ_ON_STEP
                known[key] = text
            else:
                going.discard(key)
        if not going:
            break
    del known
    return [_carried_on(pts, reach.get((i, 0), 0.0), reach.get((i, 1), 0.0)) for i, pts in enumerate(quads)]


#: A line read as fewer than two letters or digits (dropped as no text) at
#: least :data:`_STACKED_MIN_HEIGHT` pixels tall and at least twice as long
#: is read again in two bands, its top and bottom 60% (see
#: :func:`_read_stacked_lines`): PP-OCR can box two lines of a label as one,
#: and the recogniser, given both, reads next to nothing. On fresh seed
#: 2054 a 20 MP label's name and record number, 35 and 34 px tall (about 9
#: px in the detector's copy), were boxed as one 1032x176 px line, read as
#: "N" at 0.53, dropped, and left readable. The line is kept as text when a
#: band reads as an identifier, or as :data:`_STACKED_MIN_CHARS` or more
#: letters and digits with :data:`_STACKED_CONFIDENCE` or more.
_STACKED_MIN_HEIGHT = 24
_STACKED_MIN_CHARS = 4
_STACKED_CONFIDENCE = 0.8


def _read_stacked_lines(engine, crops: list, reads: list) -> None:
    """Read lines dropped as no text again in two bands; where a band reads as text, the line takes that read (see :data:`_STACKED_MIN_HEIGHT`)."""
    lines = [i for i, (crop, read) in enumerate(zip(crops, reads))
             if crop is not None and read is not None and read[0] is not _RULER and _dropped(read[0])
             and crop.shape[0] >= _STACKED_MIN_HEIGHT and crop.shape[1] >= 2 * crop.shape[0]]
    if not lines:
        return
    band_reads = _recognise(engine, [band for i in lines for band in _bands(crops[i])])
    for j, i in enumerate(lines):
        text = [read for read in band_reads[2 * j:2 * j + 2] if _reads_as_print(read)]
        if text:
            reads[i] = (" ".join(t for t, _ in text), max(score for _, score in text))


def _reads_as_print(read) -> bool:
    """Whether a read is an identifier, or :data:`_STACKED_MIN_CHARS` or more letters and digits read with :data:`_STACKED_CONFIDENCE` or more."""
    return read is not None and read[0] is not _RULER and (
        any(p.search(read[0]) for p in _IDENTIFIER)
        or (read[1] >= _STACKED_CONFIDENCE and sum(ch.isalnum() for ch in read[0]) >= _STACKED_MIN_CHARS))


#: Ink whose brightness barely differs from its ground, or that crosses a
#: dark blob, is missed by the detector, which was trained on print and
#: sees mostly brightness: on seed 2053's phantom 145 a violet marker line
#: on a blue drape (grey levels 20 apart, the green channel 60) scored at
#: most 0.04 at 1368 px, and on seed 2052's 232 black marker crossing a
#: dark red blob in dim light was not found either; both were found at
#: 1600 px, where the detector happened to see them, but a ruler's ticks
#: and numbers were then boxed apart and a tick row was hidden on clean
#: photos (9614448, reverted). The frame is therefore searched once more
#: with its ground taken away: each pixel's largest difference, over the
#: three colours, from the mean of the :data:`_FAINT_WINDOW`-pixel square
#: around it, times :data:`_FAINT_GAIN`, drawn dark on white (see
#: :func:`_ground_removed`). There both inks score 0.99 at any size from
#: 1100 to 1368 px. A line found there and not already found (see
#: :func:`_faint_lines`) is kept only when it reads as print (see
#: :func:`_reads_as_print`): the ground's removal also makes texture, hair
#: and the edges of lesions stand out.
_FAINT_WINDOW = 41
_FAINT_GAIN = 4
#: A line found with the ground taken away and read as numbers of at most
#: two digits (a unit may follow) is a ruler's: in the 100 clean photos of
#: seed 2053, 13 such lines were found beside the rulers' own lines, boxed
#: apart from them, and some read with a gap or a stray digit ("3 9 10 11
#: 12 13") that the ruler's numbering rule (``_is_ruler``) does not take.
#: Identifiers are longer: record numbers, dates, names.
_FAINT_RULER = re.compile(r"\s*(\d{1,2}\s+)*\d{1,2}\s*(cm|mm)?\s*", re.IGNORECASE)
#: A line found with the ground taken away is already known when a line of
#: the ordinary pass covers this share of its box: a ruler's tick row,
#: boxed alone there, lies inside the ruler's line, which the ruler rules
#: judged whole.
_FAINT_KNOWN = 0.5


def _faint_print(read) -> bool:
    """Whether a line found only with the ground taken away reads as print and not as a ruler's numbers (see :data:`_FAINT_RULER`)."""
    return _reads_as_print(read) and not _FAINT_RULER.fullmatch(read[0])


def _ground_removed(bgr: np.ndarray) -> np.ndarray:
    """``bgr`` with its ground taken away (see :data:`_FAINT_WINDOW`): grey BGR, strokes dark on white.

    Whole numbers throughout (box sums and integer division; the square is
    cut short at the image's edges), so the result is the same on every CPU.
    """
    side = (_FAINT_WINDOW, _FAINT_WINDOW)
    sums = cv2.boxFilter(bgr, cv2.CV_32S, side, normalize=False, borderType=cv2.BORDER_CONSTANT)
    count = cv2.boxFilter(np.ones(bgr.shape[:2], np.uint8), cv2.CV_32S, side, normalize=False,
                          borderType=cv2.BORDER_CONSTANT)[:, :, None]
    apart = np.abs(bgr.astype(np.int32) - (sums + count // 2) // count).max(axis=2)
    grey = np.clip(255 - _FAINT_GAIN * apart, 0, 255).astype(np.uint8)
    return cv2.merge([grey, grey, grey])


def _faint_lines(engine, bgr: np.ndarray, known: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Lines found in ``bgr`` with its ground taken away and not among ``known`` (quads in ``bgr``'s pixels)."""
    found, _ = _detect_lines(engine, _ground_removed(bgr))
    seen = [_corners(q) for q in known]
    return [q for q in found if not any(_inside(_corners(q), b, _FAINT_KNOWN) for b in seen)]


#: A line read as nothing but a number of two digits ("12", "1 2") is a
#: piece of a ruler or nothing, and two digits identify no one: on fresh
#: seed 2055's 267 a ruler's "1 2" was boxed with its tick row and the edge
#: of a mole (148x71 px) and read as "12" at 0.97, while the rest of the
#: ruler was found as single digits, one of them misread; too little for
#: the ruler rules, and the line was hidden over the mole and an erythema,
#: unreviewed. Over that set's 500 photos four lines read as two digits
#: alone; none lay on identifying text (one lay on a face, which the face
#: detector hides).
_LONE_NUMBER = re.compile(r"\s*\d\s*\d\s*")


#: A line read as one sign over and over ("日日日日") is a pattern, not
#: print: on fresh seed 2059 (110) a colour checker's row of patches on a
#: clean photo was read so at 0.80 and hidden (4.1% of the photo). No name,
#: record number or date is one character repeated.
def _one_sign_repeated(text: str) -> bool:
    """Whether ``text`` is one character three or more times (spaces aside)."""
    signs = [ch for ch in text if not ch.isspace()]
    return len(signs) >= 3 and len(set(signs)) == 1


#: A "line" about as wide as it is tall (width under this many heights) read
#: as just two letters or digits with less than :data:`_ALLOW_MIN_CONFIDENCE`
#: is a blob, not print: the yellow slough of a lesion on a clean seed-2029
#: phantom was boxed as a 234x239 px line and read as "at" (0.35), and
#: 16% of the photo was hidden. In the first 200 phantoms of that set, five
#: lines read as two characters with low confidence; the other four were
#: 2.7 to 12 times as wide as tall. Raised from 1.5 to 2: on fresh seed
#: 2051 a wound and two blobs on a clean photo were boxed as one tilted
#: 1124x766 px "line", its straightened crop 1.8 times as wide as tall, and
#: read as two characters at 0.53: 70% of the photo was hidden, and at
#: 0.53 it was no weak box to send to review.
_BLOB_ASPECT = 2.0
#: ...and read with less than this confidence: on seed 2039 the slough of a
#: wound on a clean photo, boxed 266x305 px, was read as two CJK characters
#: at 0.55 and 14.9% of the photo was hidden. Two printed characters in a
#: box that shape (a sticker's initials) are read with 0.9 or more. On seed
#: 2041 two wounds and a mole on a photo with no text were boxed together as
#: one 869x810 px "line" and read as "90" at 0.74: 80% of the photo was
#: hidden, with no reason to send it to review. Hence 0.8, still under 0.9.
_BLOB_MAX_CONFIDENCE = 0.8


def _blob(crop, text: str, score: float) -> bool:
    """Whether a line read as ``text`` is a blob the recogniser guessed two characters for (see :data:`_BLOB_ASPECT`)."""
    if crop is None or score >= _BLOB_MAX_CONFIDENCE or sum(ch.isalnum() for ch in text) != 2:
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


def _beside_codes(engine, bgr: np.ndarray, boxes, factor: float,
                  known: Sequence[np.ndarray] = ()) -> tuple[list[np.ndarray], list[bool]]:
    """Lines found again around decoded codes, with each code blanked (quads in ``bgr``'s pixels, and cut flags).

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
    out, out_cut = [], []
    for x, y, bw, bh in boxes:
        x0, y0 = max(0, int(x * factor)), max(0, int(y * factor))
        x1, y1 = min(w, math.ceil((x + bw) * factor)), min(h, math.ceil((y + bh) * factor))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        side = min(x1 - x0, y1 - y0)
        px, py = int(side * _CODE_CONTEXT[0]) + 8, int(side * _CODE_CONTEXT[1]) + 8
        codes.append((x0, y0, x1, y1))
        windows.append([max(0, x0 - px), max(0, y0 - py), min(w, x1 + px), min(h, y1 + py)])
    # Codes on one label share a window: nothing is searched twice.
    for wx0, wy0, wx1, wy1 in merge_overlapping(windows):
        window = bgr[wy0:wy1, wx0:wx1]
        blanked = window.copy()
        for x0, y0, x1, y1 in codes:
            if wx0 <= x0 and wy0 <= y0 and x1 <= wx1 and y1 <= wy1:
                code = blanked[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
                ring = np.concatenate([code[0], code[-1], code[:, 0], code[:, -1]])
                code[:] = np.median(ring, axis=0).astype(bgr.dtype)
        found, found_cut = _detect_lines(engine, blanked)
        out += [q + np.float32([wx0, wy0]) for q in found]
        out_cut += found_cut
        # As is too: a tilted code's upright box can blank the start of the
        # line above it, and the whole frame's pass can miss that line (see
        # _CODE_CONTEXT). What this finds again, and the code itself taken
        # for print (hidden as a barcode whatever it reads), is not read.
        found, found_cut = _detect_lines(engine, window)
        seen = [_corners(q) for q in list(known) + out]
        for q, was_cut in zip(found, found_cut):
            box = _corners(q + np.float32([wx0, wy0]))
            if not any(_inside(box, c) for c in codes) and not any(_inside(box, b) and _inside(b, box) for b in seen):
                out.append(q + np.float32([wx0, wy0]))
                out_cut.append(was_cut)
    return out, out_cut


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
