"""Barcodes: zxing-cpp on a reduced copy, then again where the pixels look like a code no read explains."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .._regions import Region
from ._common import _check_image, _full_size, _merge, _regions, _resized


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


def _gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``gray``'s Sobel gradients (x, y) in float32, as :func:`_edge_angle` and :func:`_lean_peak` read them."""
    g = gray.astype(np.float32)
    return cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)


def _edge_angle(gray: np.ndarray, gradients: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """The tilt (degrees, in (-45, 45]) that turns ``gray``'s strongest edges to the pixel axes.

    Bars, modules, print and a label's own outline all meet at right
    angles, so the edge directions are averaged modulo 90 degrees
    (weighted by gradient strength): a Code128's bars and the wristband it
    sits on agree instead of cancelling. ``gradients``, when given, are
    ``_gradients(gray)``.
    """
    gx, gy = gradients if gradients is not None else _gradients(gray)
    mag2 = gx * gx + gy * gy
    theta4 = 4.0 * np.arctan2(gy, gx)
    s, c = float((mag2 * np.sin(theta4)).sum()), float((mag2 * np.cos(theta4)).sum())
    if s == 0 and c == 0:
        return 0.0
    return math.degrees(math.atan2(s, c)) / 4.0


#: A Code128 tilted 7 degrees on a wristband (seed 2045's phantom 335, 269x63 px
#: in a 1600 px frame, dim light) lay in a 640x544 px area whose edges, mostly
#: upright skin texture and print, averaged to a lean of 2.7 degrees: read
#: turned by that, it did not decode, and it was left readable. The area's
#: edge directions are therefore also binned (:data:`_LEAN_BIN` degrees, modulo
#: 90, weighted by squared gradient), and the strongest peak that leans by
#: :data:`_BARCODE_TILT` or more is read too when it differs from the mean by
#: :data:`_LEAN_APART` or more: there it was 8.2 degrees, and the code decoded.
_LEAN_BIN = 0.5
_LEAN_APART = 1.0


def _lean_peak(gray: np.ndarray, gradients: tuple[np.ndarray, np.ndarray] | None = None) -> float | None:
    """The strongest leaning peak of ``gray``'s edge directions (degrees, in (-45, 45]), or None.

    Where :func:`_edge_angle` averages every edge, this is the mode: one
    tilted code among upright texture still has its own peak. Only a local
    maximum (of the histogram smoothed over five bins) leaning by
    :data:`_BARCODE_TILT` or more counts, not the flank of the upright peak.
    ``gradients``, when given, are ``_gradients(gray)``.
    """
    gx, gy = gradients if gradients is not None else _gradients(gray)
    bins = int(round(90 / _LEAN_BIN))
    index = (np.degrees(np.arctan2(gy, gx)) % 90.0 / _LEAN_BIN).astype(np.int64) % bins
    hist = np.bincount(index.ravel(), weights=(gx * gx + gy * gy).ravel().astype(np.float64), minlength=bins)
    smooth = np.convolve(np.r_[hist[-2:], hist, hist[:2]], [1, 2, 3, 2, 1], "valid")
    best, best_value = None, 0.0
    for i in range(bins):
        lean = (i + 0.5) * _LEAN_BIN
        lean = lean - 90.0 if lean > 45.0 else lean
        value = smooth[i]
        if (abs(lean) >= _BARCODE_TILT and value > best_value
                and value > smooth[i - 1] and value >= smooth[(i + 1) % bins]):
            best, best_value = lean, value
    return best


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
        gradients = _gradients(crop)
        angle = _edge_angle(crop, gradients)
        if not zoomable and abs(angle) < _BARCODE_TILT:
            continue  # a big upright code was the first pass's to read
        found = _read_codes(crop) if sharper else []
        rest = crop
        if found:
            # What decoded explains only its own edges: blank it and measure
            # the lean of what is left (a label's upright Code128 above a
            # wristband's, tilted 4 degrees, gave the area a lean of 1.9).
            rest = _blanked(crop, [pts for pts, _ in found])
            gradients = _gradients(rest)
            angle = _edge_angle(rest, gradients)
        # Read turned as well when the area leans, even if something decoded:
        # a label's upright Data Matrix does not explain the tilted Code128
        # beside it (a held-out phantom, seed 2028, lost its Code128 so). And
        # enlarged, where it may be, since what decoded as it is need not be
        # all there is: on seed 2038 a sticker's 24 px Data Matrix shared an
        # area with a label's larger one, which alone decoded unenlarged,
        # and was left readable.
        zoom = _BARCODE_ZOOM if zoomable and crop.size <= _BARCODE_ZOOM_MAX else 1.0
        if not found or abs(angle) >= _BARCODE_TILT or zoom > 1.0:
            found += _read_turned(rest, zoom, angle)
        peak = _lean_peak(rest, gradients)  # the gradients of ``rest``, measured once
        if peak is not None and abs(peak - angle) >= _LEAN_APART:
            found += _read_turned(rest, zoom, peak)
        codes += [(pts + np.float32([x0, y0]), linear) for pts, linear in found]

    boxes = []
    for pts, linear in codes:
        if linear:
            pts = _bar_extent(gray, pts)
        x0, y0, x1, y1, s = _code_box(pts, linear)
        boxes.append([x0 / scale, y0 / scale, x1 / scale, y1 / scale, s])
    return _regions("barcode", "zxing-cpp", _merge(boxes), frame)
