"""Lossless JPEG redaction in the DCT domain.

A redacted JPEG is normally decoded, painted and encoded again, which changes
every pixel a little. Here the quantised DCT coefficients are read, only the
8x8 blocks of the whole MCUs that touch a region are replaced by a solid
fill, and the coefficients are written back: every other block stays
bit-identical, so a clinician keeps the exact diagnostic pixels everywhere
that was not redacted. The new file carries no metadata at all (SOI, a JFIF
APP0, DQT, SOF, DHT, SOS, data, EOI).

How the work is split, and why:

- Our own Python walk of the marker segments checks the whole structure
  (truncation, garbage, unsupported processes, the pixel limit) before
  libjpeg sees a byte, reads the EXIF orientation and the colour space, and
  parses the quantisation tables (the fill colour depends on them). The
  library is then fed a rebuilt header (tables, frame and first scan header
  that the walk validated; no APPn or COM segment) and the untouched scan
  data, so metadata never reaches it.
- Two libraries can do the coefficient work; the faster one that loads is
  used (see ``_choose_backend``), and both give the same coefficients:

  * TurboJPEG, libjpeg-turbo's own API in the system library
    (``libturbojpeg.so.0``; Debian: libturbojpeg0, which CI gets with
    libjpeg-turbo-progs). One ``tjTransform`` call on buffers in memory
    decodes the coefficients, applies the orientation (``TJXOPT_PERFECT``,
    as ``jpegtran -perfect``), lets a Python filter blank the touched
    blocks and range-check every row, and encodes, with libjpeg-turbo's
    SIMD Huffman coder: a little faster than ``jpegtran -copy none -wipe``.
    Its error manager keeps messages in memory instead of printing them;
    warnings (corrupt data) abort the call (``TJFLAG_STOPONWARNING``).
  * jpeglib, the libjpeg-turbo 2.1 build shipped in the ``jpeglib`` wheel,
    called through its C entry points ``read_jpeg_dct`` /
    ``write_jpeg_dct``: about twice as slow (no SIMD, coefficients copied
    one by one into numpy arrays, orientation done in numpy), but it needs
    no system library and takes every sampling layout the walk accepts.
    The walk sizes the coefficient arrays, so jpeglib's ``read_jpeg_info``
    pass (~75 ms on 20 MP) is skipped.
    jpeglib's Python classes copy the whole source into
    ``tempfile.NamedTemporaryFile`` (plaintext on disk), so they are not
    used: input and output live in ``memfd`` files, opened by libjpeg as
    ``/proc/self/fd/N``, and nothing touches a disk. The rebuilt header
    matters doubly here, because an error raised while libjpeg parses the
    header crashes the process inside jpeglib's ``read_jpeg_dct`` (it
    closes an uninitialised ``FILE*``). Errors after the header are caught
    by jpeglib and come back as status 0; warnings (corrupt entropy data,
    which libjpeg prints and then carries on) are caught by pointing file
    descriptor 2 at a memfd during the call.

  Every library error or warning becomes
  :class:`~workbench.errors.InvalidInput`; nothing is printed.
- EXIF orientation is applied losslessly to the coefficients, as
  ``jpegtran -perfect`` does, because the output has no EXIF left to say
  how to turn it.
- The output is always baseline (progressive input too) with the standard
  Huffman tables, no restart markers and a plain JFIF APP0 (version 1.01,
  no density), as ``jpegtran`` writes by default, so the same input and
  boxes give the same bytes. The two backends' bytes differ only in the
  component ids of the frame and scan headers (TurboJPEG keeps the
  input's, jpeglib's writer numbers them from 0).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import importlib.metadata
import importlib.util
import math
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._imageio import MAX_PIXELS, _as_bytes, _Corrupt, _orientation_value, _Tiff
from ..errors import DecompressionBomb, InvalidInput, UnsupportedFormat, WorkbenchError

__all__ = ["redact_jpeg_lossless", "read_coefficients"]

# Messages say what happened and what to do; they never quote file contents.
_ADVICE = "run without --lossless"
_MSG_NOT_JPEG = f"lossless redaction works on JPEG files only; {_ADVICE}"
_MSG_CORRUPT = "the JPEG file is truncated or corrupt; copy it from the card again"
_MSG_PROCESS = (
    "lossless redaction supports baseline and progressive Huffman-coded JPEG only "
    f"(this file is arithmetic-coded, lossless or hierarchical); {_ADVICE}"
)
_MSG_COLOUR = (
    "lossless redaction supports YCbCr colour and greyscale JPEG only "
    f"(this file is CMYK, YCCK, RGB-coded or has an unusual number of channels); {_ADVICE}"
)
_MSG_PRECISION = f"lossless redaction supports 8-bit JPEG only; {_ADVICE}"
_MSG_SAMPLING = f"this JPEG uses a chroma subsampling that libjpeg cannot decode; {_ADVICE}"
_MSG_BOMB = (
    "the image header claims more pixels than the workbench decodes "
    "(the limit is MAX_PIXELS); the file is corrupt or hostile, do not import it"
)
_MSG_METADATA = (
    "the image's metadata block (EXIF) is corrupt, so its orientation cannot be "
    "trusted; copy the file from the card again or re-export it"
)
_MSG_ORIENT = (
    "lossless mode cannot turn this photo upright without re-encoding its edge "
    f"(its size is not a whole number of JPEG blocks on that side); {_ADVICE}"
)
_MSG_BOX = "a box is four numbers [x, y, width, height] with positive width and height"
_MSG_FILL = "fill is an (R, G, B) colour with each value an integer from 0 to 255"
_MSG_LIBRARY = (
    "lossless JPEG redaction needs the jpeglib 1.0 wheel (with its libjpeg-turbo 2.1 build); "
    f"install the project's dependencies or {_ADVICE}"
)
_MSG_TURBOJPEG = (
    "WORKBENCH_LOSSLESS_BACKEND asks for TurboJPEG, but libturbojpeg.so.0 (TurboJPEG 2.0 or "
    "later) does not load; install it (Debian: apt-get install libturbojpeg0) or unset the variable"
)
_MSG_BACKEND = (
    "WORKBENCH_LOSSLESS_BACKEND must be 'turbojpeg' or 'jpeglib' (or unset, to use the "
    "fastest that loads); fix the variable"
)

# jpeglib's libjpeg-turbo build: faster than its default 6b and it keeps
# its coefficient arrays in memory only (jmemnobs: no backing-store files).
_LIB_VERSION = "turbo210"
_JPEGLIB_SERIES = "1.0."
_JCS_GRAYSCALE, _JCS_YCbCr = 1, 3
_MAX_DIMENSION = 65500  # libjpeg's JPEG_MAX_DIMENSION
# Progressive files with thousands of tiny scans make libjpeg crawl;
# libjpeg-turbo's own TurboJPEG API refuses more than 500.
_MAX_SCANS = 500
# 8-bit data give |AC| <= 1023 and DC in [-1024, 1023]. libjpeg-turbo's
# encoder writes larger values into a corrupt stream without complaint, so
# out-of-range coefficients (only a damaged or crafted file has them) are
# refused before they reach it.
_COEF_MIN, _COEF_MAX = -1024, 1023
# The one thing libjpeg prints that is not a problem (JTRC_16BIT_TABLES).
_NOTE_16BIT_TABLES = b"Caution: quantization tables are too coarse for baseline JPEG\n"

# TurboJPEG's API as turbojpeg.h 2.x declares it (tjGetErrorCode, the newest
# call used, came with 2.0; TurboJPEG 3 keeps these calls and values).
_BACKEND_ENV = "WORKBENCH_LOSSLESS_BACKEND"
_TJ_SONAME = "libturbojpeg.so.0"
_TJXOPT_PERFECT, _TJXOPT_COPYNONE = 1, 64
_TJFLAG_STOPONWARNING, _TJFLAG_LIMITSCANS = 8192, 32768
_TJERR_WARNING = 0
# EXIF orientation -> the TJXOP_* transform that turns the stored frame
# upright: NONE, HFLIP, ROT180, VFLIP, TRANSPOSE, ROT90 (clockwise),
# TRANSVERSE, ROT270 (the same operations as _ORIENT_OPS below).
_TJXOP = {1: 0, 2: 1, 3: 6, 4: 2, 5: 3, 6: 5, 7: 4, 8: 7}
# Sampling (h, v) of luma with 1x1 chroma that tjTransform names (4:4:4,
# 4:2:2, 4:2:0, 4:4:0, 4:1:1); it refuses any other layout of a colour image.
_TJ_SAMPLING = {(1, 1), (2, 1), (2, 2), (1, 2), (4, 1)}
# The JFIF APP0 the library reads: version 1.01, no density unit, 1:1, no
# thumbnail, as libjpeg writes by default. TurboJPEG copies a source's JFIF
# density into its output, so the real one (a scanner's or camera's DPI)
# is never given to it; and JFIF tells libjpeg the colour space is YCbCr
# (our walk's decision), whatever the component ids suggest.
_JFIF = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"

# Zigzag position -> natural (row-major) position, as DQT stores tables.
_ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
])

# A marker inside entropy-coded data: FF followed by anything but a stuffed
# zero, a restart marker (part of the scan) or another FF (fill byte).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

_SOF_OK = {0xC0: False, 0xC1: False, 0xC2: True}  # marker -> progressive
# Arithmetic coding, lossless and hierarchical processes (and their tables).
_UNSUPPORTED = {0xC3, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
                0xDC, 0xDE, 0xDF}
_RST_TEM = set(range(0xD0, 0xD8)) | {0x01}

# EXIF orientation -> coefficient operations, applied left to right, that
# turn the stored frame upright ("flip_h" mirrors left-right).
_ORIENT_OPS = {
    1: (),
    2: ("flip_h",),
    3: ("flip_h", "flip_v"),
    4: ("flip_v",),
    5: ("transpose",),
    6: ("transpose", "flip_h"),  # 90 degrees clockwise
    7: ("transpose", "flip_h", "flip_v"),
    8: ("transpose", "flip_v"),  # 90 degrees anticlockwise
}

# Sign of the 8x8 basis functions under a mirror: odd frequencies flip.
_ODD = np.array([1, -1, 1, -1, 1, -1, 1, -1], dtype=np.int16)


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------


def redact_jpeg_lossless(data: bytes, boxes: list[tuple[int, int, int, int]], *,
                         fill: tuple[int, int, int] = (0, 0, 0)
                         ) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """Blank regions of a JPEG in the DCT domain and drop all its metadata.

    Every MCU (the JPEG's coding unit: 16x16 pixels for 4:2:0 chroma, 8x8
    for 4:4:4) that touches a box is replaced by a solid ``fill``; every
    other DCT coefficient is copied bit-identical. With subsampled chroma,
    a 1-pixel ring just outside a blanked MCU decodes slightly differently,
    because decoders interpolate chroma across block edges.

    Parameters
    ----------
    data : bytes
        A baseline or progressive JPEG (YCbCr or greyscale), typically a
        decrypted original: it is never written to disk.
    boxes : list of (x, y, w, h)
        Regions in the oriented frame (EXIF orientation applied, as a viewer
        shows the photo), in pixels. Parts outside the image are clipped;
        boxes wholly outside are ignored.
    fill : (int, int, int)
        RGB colour of the blanked MCUs (converted to YCbCr as JFIF does, so
        it decodes to within a level or two of this colour).

    Returns
    -------
    jpeg : bytes
        The new JPEG, stored upright, with no EXIF, XMP, IPTC, ICC profile,
        comment or thumbnail; always baseline. The same input and boxes
        always give the same bytes (with the same library, see the module
        notes).
    blanked : list of (x, y, w, h)
        For each box that overlaps the image, in order, the MCU-aligned area
        actually blanked, clipped to the image, in the output frame.

    Raises
    ------
    InvalidInput
        The file is truncated or corrupt, a box or the fill is malformed, or
        the orientation cannot be applied losslessly (the image size is not
        a whole number of MCUs on the side that moves).
    UnsupportedFormat
        Not a JPEG, or a JPEG this mode cannot rewrite losslessly (CMYK,
        YCCK, RGB-coded, 12-bit, arithmetic-coded, lossless, hierarchical).
    DecompressionBomb
        The header claims more than ``MAX_PIXELS`` pixels.
    """
    data = _as_bytes(data)
    rgb = _check_fill(fill)
    regions = _check_boxes(boxes)
    head = _parse(data)
    if _backend_name() == "turbojpeg" and _turbojpeg_takes(head):
        return _transform(data, head, regions, rgb)
    image = _decode(data, head)
    image = _orient(image, head.orientation)
    blanked = _blank(image, regions, rgb)
    return _encode(image), blanked


def read_coefficients(data: bytes) -> dict:
    """Read the quantised DCT coefficients of a JPEG, as stored.

    For tests and verification. No orientation is applied: this is the
    stored frame, whatever the EXIF orientation says.

    Parameters
    ----------
    data : bytes
        A baseline or progressive JPEG (YCbCr or greyscale).

    Returns
    -------
    dict
        ``"Y"``, ``"Cb"``, ``"Cr"``: int16 arrays of shape
        ``(h_blocks, w_blocks, 8, 8)``, each block indexed
        ``[vertical frequency, horizontal frequency]`` (``Cb`` and ``Cr`` are
        None for greyscale). ``"qt"``: uint16 array ``(components, 8, 8)``,
        the quantisation table each component uses, in the same layout.
        ``"samp_factor"``: int array ``(components, 2)`` of (vertical,
        horizontal) sampling factors, as jpeglib orders them.
        ``"width"``, ``"height"``: stored size in pixels.

    Raises
    ------
    InvalidInput, UnsupportedFormat, DecompressionBomb
        As :func:`redact_jpeg_lossless`.
    """
    data = _as_bytes(data)
    head = _parse(data)
    image = _decode(data, head)
    planes = [p.reshape(p.shape[0], p.shape[1], 8, 8) for p in image.planes]
    return {
        "Y": planes[0],
        "Cb": planes[1] if len(planes) == 3 else None,
        "Cr": planes[2] if len(planes) == 3 else None,
        "qt": np.stack(image.qt).astype(np.uint16),
        "samp_factor": np.array([(v, h) for h, v in image.samp], dtype=np.int32),
        "width": image.width,
        "height": image.height,
    }


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------


def _check_fill(fill) -> tuple[int, int, int]:
    try:
        values = tuple(fill)
    except TypeError:
        raise InvalidInput(_MSG_FILL) from None
    if len(values) != 3 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
            for v in values):
        raise InvalidInput(_MSG_FILL)
    return tuple(int(v) for v in values)


def _check_boxes(boxes) -> list[tuple[float, float, float, float]]:
    try:
        items = [tuple(float(v) for v in box) for box in boxes]
    except (TypeError, ValueError):
        raise InvalidInput(_MSG_BOX) from None
    for box in items:
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
            raise InvalidInput(_MSG_BOX)
    return items


# --------------------------------------------------------------------------
# Header walk: everything libjpeg would trip on is refused here
# --------------------------------------------------------------------------


@dataclass
class _Head:
    """What the marker walk found."""

    width: int = 0
    height: int = 0
    progressive: bool = False
    ids: list[int] = field(default_factory=list)
    samp: list[tuple[int, int]] = field(default_factory=list)  # (h, v) per component
    tq: list[int] = field(default_factory=list)
    qt: list[np.ndarray | None] = field(default_factory=list)  # latched, natural order
    slot_reused: bool = False  # a table slot was redefined after a component latched it
    orientation: int = 1
    header: list[bytes] = field(default_factory=list)  # segments libjpeg is given
    scan_start: int = 0  # first byte of the first scan's entropy-coded data
    end: int = 0  # one past EOI


def _parse(data: bytes) -> _Head:
    if not data:
        raise UnsupportedFormat("the file is empty (0 bytes); copy it from the card again")
    if data[:3] != b"\xff\xd8\xff":
        raise UnsupportedFormat(_MSG_NOT_JPEG)
    head = _Head(header=[b"\xff\xd8"])
    tables: dict[int, np.ndarray] = {}
    jfif, adobe, exif = False, None, None
    saw_sof, scans, pos, n = False, 0, 2, len(data)
    while True:
        if pos >= n or data[pos] != 0xFF:
            raise InvalidInput(_MSG_CORRUPT)  # truncated, or garbage between segments
        while pos < n and data[pos] == 0xFF:
            pos += 1  # fill bytes before a marker code are allowed
        if pos >= n:
            raise InvalidInput(_MSG_CORRUPT)
        code = data[pos]
        pos += 1
        if code == 0xD9:  # EOI
            if not scans:
                raise InvalidInput(_MSG_CORRUPT)
            head.end = pos
            break
        if code in _RST_TEM:
            continue  # parameterless; libjpeg skips them too
        if code in _UNSUPPORTED:
            raise UnsupportedFormat(_MSG_PROCESS)
        if code == 0x00 or code == 0xD8:
            raise InvalidInput(_MSG_CORRUPT)
        if pos + 2 > n:
            raise InvalidInput(_MSG_CORRUPT)
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2 or pos + length > n:
            raise InvalidInput(_MSG_CORRUPT)
        body = data[pos + 2:pos + length]
        segment = data[pos - 2:pos + length]  # data[pos - 2] is the FF before the code
        pos += length
        keep = not scans  # tables after the first scan stay in the data libjpeg reads
        if 0xE0 <= code <= 0xEF or code == 0xFE:
            if not scans:
                # Only what decides colour space and orientation is read; no
                # APPn or COM segment is ever passed on.
                if code == 0xE0 and body[:5] == b"JFIF\x00" and len(body) >= 14:
                    jfif = True
                elif code == 0xEE and body[:5] == b"Adobe" and len(body) >= 12 and adobe is None:
                    adobe = body[11]
                elif code == 0xE1 and body[:6] == b"Exif\x00\x00" and exif is None:
                    exif = body[6:]
            continue
        if code == 0xDB:
            _parse_dqt(body, tables)
        elif code == 0xC4:
            _check_dht(body)
        elif code == 0xDD:
            if length != 4:
                raise InvalidInput(_MSG_CORRUPT)
        elif code in _SOF_OK:
            if saw_sof or scans:
                raise InvalidInput(_MSG_CORRUPT)
            _parse_sof(body, head, _SOF_OK[code])
            saw_sof = True
        elif code == 0xDA:
            if not saw_sof:
                raise InvalidInput(_MSG_CORRUPT)
            _parse_sos(body, head, tables)
            scans += 1
            if scans > _MAX_SCANS:
                raise InvalidInput(_MSG_CORRUPT)
            if scans == 1:
                head.header.append(segment)
                head.scan_start = pos
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                raise InvalidInput(_MSG_CORRUPT)  # cut off inside the scan: no EOI
            pos = found.start()
            continue
        else:
            raise InvalidInput(_MSG_CORRUPT)  # reserved marker: libjpeg stops on these
        if keep:
            head.header.append(segment)
    if any(q is None for q in head.qt):
        raise InvalidInput(_MSG_CORRUPT)  # a component never appears in any scan
    head.slot_reused = any(not np.array_equal(q, tables[t]) for q, t in zip(head.qt, head.tq))
    _check_colour(head, jfif, adobe)
    head.orientation = _exif_orientation(exif)
    return head


def _parse_dqt(body: bytes, tables: dict[int, np.ndarray]) -> None:
    pos = 0
    while pos < len(body):
        precision, slot = body[pos] >> 4, body[pos] & 15
        size = 128 if precision else 64
        if precision > 1 or slot > 3 or pos + 1 + size > len(body):
            raise InvalidInput(_MSG_CORRUPT)
        raw = np.frombuffer(body, dtype=">u2" if precision else "u1", count=64, offset=pos + 1)
        if not raw.all():
            raise InvalidInput(_MSG_CORRUPT)  # a zero step is invalid (and would divide by 0)
        table = np.empty(64, dtype=np.uint16)
        table[_ZIGZAG] = raw
        tables[slot] = table.reshape(8, 8)
        pos += 1 + size


def _check_dht(body: bytes) -> None:
    # The checks libjpeg's get_dht makes (it aborts on any of them); the
    # tables' codes are checked by libjpeg later, where errors are caught.
    pos = 0
    while len(body) - pos > 16:
        index = body[pos]
        count = sum(body[pos + 1:pos + 17])
        if index >> 4 > 1 or index & 15 > 3 or count > 256 or pos + 17 + count > len(body):
            raise InvalidInput(_MSG_CORRUPT)
        pos += 17 + count
    if pos != len(body):
        raise InvalidInput(_MSG_CORRUPT)


def _parse_sof(body: bytes, head: _Head, progressive: bool) -> None:
    if len(body) < 6:
        raise InvalidInput(_MSG_CORRUPT)
    precision, height, width, count = struct.unpack_from(">BHHB", body)
    if len(body) != 6 + 3 * count:
        raise InvalidInput(_MSG_CORRUPT)
    if height == 0 or width == 0:
        raise InvalidInput(_MSG_CORRUPT)  # height 0 means "defined later by DNL"
    if width * height > MAX_PIXELS:
        raise DecompressionBomb(_MSG_BOMB, limit=MAX_PIXELS, pixels=width * height)
    if width > _MAX_DIMENSION or height > _MAX_DIMENSION:
        raise InvalidInput(_MSG_CORRUPT)
    if precision != 8:
        raise UnsupportedFormat(_MSG_PRECISION)
    if count not in (1, 3):
        raise UnsupportedFormat(_MSG_COLOUR)
    for i in range(count):
        cid, hv, tq = body[6 + 3 * i:9 + 3 * i]
        h, v = hv >> 4, hv & 15
        if cid in head.ids or not (1 <= h <= 4 and 1 <= v <= 4) or tq > 3:
            raise InvalidInput(_MSG_CORRUPT)
        head.ids.append(cid)
        head.samp.append((h, v))
        head.tq.append(tq)
    if count == 1:
        head.samp = [(1, 1)]  # one component is coded block by block whatever it says
    hmax, vmax = max(h for h, _ in head.samp), max(v for _, v in head.samp)
    if any(hmax % h or vmax % v for h, v in head.samp):
        raise UnsupportedFormat(_MSG_SAMPLING)  # fractional ratios: libjpeg cannot upsample
    if count > 1 and sum(h * v for h, v in head.samp) > 10:
        raise InvalidInput(_MSG_CORRUPT)  # more blocks per MCU than JPEG allows
    head.width, head.height, head.progressive = width, height, progressive
    head.qt = [None] * count


def _parse_sos(body: bytes, head: _Head, tables: dict[int, np.ndarray]) -> None:
    count = body[0] if body else 0
    if not 1 <= count <= 4 or len(body) != 4 + 2 * count:
        raise InvalidInput(_MSG_CORRUPT)
    seen = []
    for i in range(count):
        cid, td_ta = body[1 + 2 * i], body[2 + 2 * i]
        if cid not in head.ids or cid in seen or td_ta >> 4 > 3 or td_ta & 15 > 3:
            raise InvalidInput(_MSG_CORRUPT)
        seen.append(cid)
        ci = head.ids.index(cid)
        # libjpeg takes a component's quantisation table when the component
        # first appears in a scan; a later DQT for that slot does not change it.
        if head.qt[ci] is None:
            if head.tq[ci] not in tables:
                raise InvalidInput(_MSG_CORRUPT)
            head.qt[ci] = tables[head.tq[ci]]
    ss, se, ahl = body[-3:]
    if not head.progressive and (ss, se, ahl) != (0, 63, 0):
        raise InvalidInput(_MSG_CORRUPT)
    if head.progressive and (ss > se or se > 63 or (ss == 0) != (se == 0) or (ss and count != 1)):
        raise InvalidInput(_MSG_CORRUPT)


def _check_colour(head: _Head, jfif: bool, adobe: int | None) -> None:
    # The same guess libjpeg makes (jdapimin.c), so that our YCbCr output
    # shows the colours every decoder showed for the input.
    if len(head.ids) == 3 and not jfif:
        if adobe == 0 or (adobe is None and head.ids == [ord("R"), ord("G"), ord("B")]):
            raise UnsupportedFormat(_MSG_COLOUR)


def _exif_orientation(exif: bytes | None) -> int:
    # The first EXIF segment counts, as in Pillow and browsers.
    if not exif:
        return 1
    try:
        tiff = _Tiff(exif)
        return _orientation_value(tiff, tiff.ifd(tiff.first_ifd))
    except _Corrupt:
        raise InvalidInput(_MSG_METADATA) from None


# --------------------------------------------------------------------------
# libjpeg, in memory only
# --------------------------------------------------------------------------


@dataclass
class _Image:
    """Coefficients and the frame parameters that go with them."""

    width: int
    height: int
    samp: list[tuple[int, int]]  # (h, v) per component
    qt: list[np.ndarray]  # (8, 8) uint16 per component, natural order
    planes: list[np.ndarray]  # int16 (h_blocks, w_blocks, 64) per component, C order


_lock = threading.Lock()  # one libjpeg call at a time: file descriptor 2 is borrowed
_lib_handle = None


def _lib() -> ctypes.CDLL:
    """Our own handle on jpeglib's libjpeg-turbo build.

    ``jpeglib.version.set()`` is process-global and other code may rely on
    jpeglib's default; loading the library by path leaves jpeglib's choice
    alone and needs no import of jpeglib itself.
    """
    global _lib_handle
    if _lib_handle is None:
        spec = importlib.util.find_spec("jpeglib")
        if spec is None or not spec.submodule_search_locations:
            raise WorkbenchError(_MSG_LIBRARY)
        # The C signatures below are jpeglib 1.0's; calling another release's
        # functions with them could corrupt memory, so refuse it instead.
        if not importlib.metadata.version("jpeglib").startswith(_JPEGLIB_SERIES):
            raise WorkbenchError(_MSG_LIBRARY)
        folder = Path(list(spec.submodule_search_locations)[0]) / "cjpeglib"
        found = sorted(folder.glob(f"cjpeglib_{_LIB_VERSION}.*so"))
        if len(found) != 1:
            raise WorkbenchError(_MSG_LIBRARY)
        lib = ctypes.CDLL(str(found[0]))
        p, c_int = ctypes.c_void_p, ctypes.c_int
        lib.read_jpeg_dct.argtypes = [ctypes.c_char_p, p, p, p, p, p, p]
        lib.read_jpeg_dct.restype = c_int
        # Flag masks are 64-bit in jpeglib's C code; a 64-bit slot is safe
        # whichever width a build uses (they are the last two arguments).
        lib.write_jpeg_dct.argtypes = [
            ctypes.c_char_p, ctypes.c_char_p, p, p, p, p, p, p, p, c_int, c_int, p,
            ctypes.c_short, p, c_int, p, p, p, ctypes.c_ulonglong, ctypes.c_ulonglong]
        lib.write_jpeg_dct.restype = c_int
        _lib_handle = lib
    return _lib_handle


def _blocks(head: _Head, ci: int) -> tuple[int, int]:
    """(rows, cols) of 8x8 blocks of component ``ci``, as libjpeg sizes them."""
    hmax, vmax = max(h for h, _ in head.samp), max(v for _, v in head.samp)
    h, v = head.samp[ci]
    return -(-head.height * v // (vmax * 8)), -(-head.width * h // (hmax * 8))


def _memfd(name: str, content: list | None = None) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if fd <= 2:  # a closed stdio slot was reused: move off it, fd 2 gets swapped
        low, fd = fd, fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(low)
    try:
        for part in content or ():
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _libjpeg_messages():
    """Send what libjpeg prints to a memfd; yield a function that reads it.

    libjpeg reports corrupt data as a warning on stderr and carries on,
    and jpeglib gives no other way to see it. Holding ``_lock`` keeps our
    own calls apart; anything another thread prints meanwhile is caught
    too and fails this call, which is the safe direction.
    """
    sink = _memfd("workbench-libjpeg-messages")
    try:
        saved = os.dup(2)
    except OSError:
        saved = None  # a daemon with no stderr: close fd 2 again afterwards
    try:
        os.dup2(sink, 2)
        try:
            yield lambda: os.pread(sink, 4096, 0)
        finally:
            if saved is None:
                os.close(2)
            else:
                os.dup2(saved, 2)
    finally:
        if saved is not None:
            os.close(saved)
        os.close(sink)


def _decode(data: bytes, head: _Head) -> _Image:
    count = len(head.ids)
    planes = [np.empty((*_blocks(head, ci), 64), dtype=np.int16) for ci in range(count)]
    pointers = [p.ctypes.data_as(ctypes.c_void_p) for p in planes] + [None] * (4 - count)
    # libjpeg reads a rebuilt header (validated tables, frame, first scan)
    # and then the untouched scan data; the quantisation tables come from
    # our walk, which follows libjpeg's latching rule.
    source = _memfd("workbench-lossless-in", [*head.header, memoryview(data)[head.scan_start:head.end]])
    try:
        path = f"/proc/self/fd/{source}".encode()
        with _lock, _libjpeg_messages() as messages:
            status = _lib().read_jpeg_dct(path, *pointers, None, None)
            printed = messages()
    finally:
        os.close(source)
    if status != 1 or printed:
        raise InvalidInput(_MSG_CORRUPT, libjpeg=printed.decode("ascii", "replace").strip()[:200])
    if not all(_in_range(plane) for plane in planes):
        raise InvalidInput(_MSG_CORRUPT)
    return _Image(head.width, head.height, list(head.samp), [q.copy() for q in head.qt], planes)


def _in_range(blocks: np.ndarray) -> bool:
    """Whether every coefficient fits 8-bit JPEG (last axis: the 64 of a block)."""
    low, high = blocks.min(), blocks.max()
    # -1024 is a valid DC but not a valid AC value
    return low >= _COEF_MIN and high <= _COEF_MAX and not (
        low == _COEF_MIN and blocks[..., 1:].min() == low)


def _encode(image: _Image) -> bytes:
    count = len(image.planes)
    # Components that share a table share a slot, numbered in order of first
    # use: jpeglib's table writer indexes its input by component for slots
    # libjpeg has not created yet, and by slot otherwise; with this numbering
    # both agree.
    slots, tables = [], []
    for table in image.qt:
        for s, known in enumerate(tables):
            if np.array_equal(known, table):
                slots.append(s)
                break
        else:
            slots.append(len(tables))
            tables.append(table)
    qt = np.zeros((4, 64), dtype=np.uint16)
    for s, table in enumerate(tables):
        qt[s] = table.reshape(64)
    slot_no = np.array(slots + [-1] * (4 - count), dtype=np.int16)
    dims = (ctypes.c_int * 2)(image.height, image.width)
    block_dims = (ctypes.c_int * 8)(*[n for p in image.planes for n in p.shape[:2]])
    samp = (ctypes.c_int * 8)(*[n for h, v in image.samp for n in (v, h)])
    planes = [np.ascontiguousarray(p) for p in image.planes]
    pointers = [p.ctypes.data_as(ctypes.c_void_p) for p in planes] + [None] * (4 - count)
    colour = _JCS_YCbCr if count == 3 else _JCS_GRAYSCALE
    target = _memfd("workbench-lossless-out")
    try:
        path = f"/proc/self/fd/{target}".encode()
        with _lock, _libjpeg_messages() as messages:
            # No source file (jpeglib would re-read and copy it), no markers,
            # default flags: baseline with the standard Huffman tables, as
            # jpegtran writes by default.
            status = _lib().write_jpeg_dct(
                None, path, *pointers, dims, block_dims, samp, colour, count,
                qt.ctypes.data_as(ctypes.c_void_p), -1, slot_no.ctypes.data_as(ctypes.c_void_p),
                0, None, None, None, 0, 0)
            # A table with steps over 255 makes libjpeg write an extended
            # (SOF1) frame, which it announces on stderr; that note is fine.
            printed = messages().replace(_NOTE_16BIT_TABLES, b"")
        size = os.fstat(target).st_size
        out = os.pread(target, size, 0) if status == 1 and not printed else b""
    finally:
        os.close(target)
    if status != 1 or printed or len(out) != size:
        raise InvalidInput(_MSG_CORRUPT, libjpeg=printed.decode("ascii", "replace").strip()[:200])
    _check_output(out)
    return out


def _check_output(out: bytes) -> None:
    """Fail closed if anything but JFIF, tables, frame and scan was written."""
    pos = 2
    ok = out[:2] == b"\xff\xd8" and out[-2:] == b"\xff\xd9"
    while ok and pos + 4 <= len(out):
        code, length = out[pos + 1], int.from_bytes(out[pos + 2:pos + 4], "big")
        if code == 0xDA:
            break
        ok = out[pos] == 0xFF and (code in (0xDB, 0xC4, 0xC0, 0xC1) or (
            code == 0xE0 and out[pos + 4:pos + 9] == b"JFIF\x00"))
        pos += 2 + length
    if not ok or pos + 4 > len(out):
        raise WorkbenchError("internal error: the rewritten JPEG has unexpected segments; "
                             "report this and run without --lossless")


# --------------------------------------------------------------------------
# Backend choice
# --------------------------------------------------------------------------

# Chosen once, on first use: TurboJPEG when the system library loads,
# because it does a 20 MP photo in about jpegtran's time where jpeglib's
# build takes twice that (no SIMD, and every coefficient is copied out and
# back); jpeglib's build otherwise, which needs nothing outside the wheels.
# Both give the same coefficients (tests compare them).
# WORKBENCH_LOSSLESS_BACKEND=jpeglib (or =turbojpeg) forces one; tests set
# ``_backend`` to run both.
_backend: str | None = None


def _backend_name() -> str:
    global _backend
    if _backend is None:
        _backend = _choose_backend()
    return _backend


def _choose_backend() -> str:
    forced = os.environ.get(_BACKEND_ENV, "")
    if forced == "jpeglib":
        return forced
    if forced == "turbojpeg":
        if _turbojpeg() is None:
            raise WorkbenchError(_MSG_TURBOJPEG)
        return forced
    if forced:
        raise WorkbenchError(_MSG_BACKEND)  # a typo must not silently pick a library
    return "turbojpeg" if _turbojpeg() is not None else "jpeglib"


def _turbojpeg_takes(head: _Head) -> bool:
    """Whether tjTransform accepts this (valid) file; the rest go to jpeglib's build.

    tjTransform refuses a colour image whose sampling it cannot name, and a
    file that redefines a table slot after a component latched it
    (``JERR_MISMATCHED_QUANT_TABLE``); both are rare but valid JPEG.
    """
    if len(head.ids) == 3 and (head.samp[0] not in _TJ_SAMPLING or head.samp[1:] != [(1, 1)] * 2):
        return False
    return not head.slot_reused


# --------------------------------------------------------------------------
# TurboJPEG, in memory only
# --------------------------------------------------------------------------


class _TJRegion(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


# int customFilter(short *coeffs, tjregion arrayRegion, tjregion planeRegion,
#                  int componentIndex, int transformIndex, tjtransform *transform)
_TJFilter = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, _TJRegion, _TJRegion, ctypes.c_int,
                             ctypes.c_int, ctypes.c_void_p)


class _TJTransform(ctypes.Structure):
    _fields_ = [("r", _TJRegion), ("op", ctypes.c_int), ("options", ctypes.c_int),
                ("data", ctypes.c_void_p), ("customFilter", _TJFilter)]


_tj_handle: ctypes.CDLL | bool | None = None  # False: tried, did not load


def _turbojpeg() -> ctypes.CDLL | None:
    """The system's TurboJPEG library, or None if it does not load."""
    global _tj_handle
    if _tj_handle is None:
        _tj_handle = _load_turbojpeg() or False
    return _tj_handle or None


def _load_turbojpeg() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(_TJ_SONAME)
    except OSError:
        path = ctypes.util.find_library("turbojpeg")  # other platforms' names
        try:
            lib = ctypes.CDLL(path) if path else None
        except OSError:
            lib = None
    names = ("tjInitTransform", "tjTransform", "tjFree", "tjDestroy", "tjGetErrorStr2",
             "tjGetErrorCode")
    if lib is None or not all(hasattr(lib, name) for name in names):
        return None  # missing, or older than TurboJPEG 2.0
    p = ctypes.c_void_p
    lib.tjInitTransform.argtypes, lib.tjInitTransform.restype = [], p
    lib.tjTransform.argtypes = [p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_int,
                                ctypes.POINTER(p), ctypes.POINTER(ctypes.c_ulong),
                                ctypes.POINTER(_TJTransform), ctypes.c_int]
    lib.tjTransform.restype = ctypes.c_int
    lib.tjFree.argtypes, lib.tjFree.restype = [p], None
    lib.tjDestroy.argtypes, lib.tjDestroy.restype = [p], ctypes.c_int
    lib.tjGetErrorStr2.argtypes, lib.tjGetErrorStr2.restype = [p], ctypes.c_char_p
    lib.tjGetErrorCode.argtypes, lib.tjGetErrorCode.restype = [p], ctypes.c_int
    return lib


def _transform(data: bytes, head: _Head, regions, rgb
               ) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """Orient, blank and re-encode in one tjTransform call, buffers in memory."""
    # Refused here with our message; TJXOPT_PERFECT would refuse it too.
    width, height, samp = _oriented_frame(head.width, head.height, head.samp, head.orientation)
    plan = _plan(width, height, samp, head.qt, regions, rgb)
    rows: list[dict[int, list[tuple[int, int]]]] = [{} for _ in samp]
    for by_row, spans in zip(rows, plan.spans):
        for r0, r1, c0, c1 in spans:
            for row in range(r0, r1):
                by_row.setdefault(row, []).append((c0, c1))
    failures: list[BaseException] = []

    def blank(coeffs, array_region, plane_region, ci, _which, _spec):
        # Called by tjTransform for each row of 8x8 blocks of each component,
        # after the orientation is applied: the upright frame, as the boxes.
        # ctypes would print and swallow an exception raised here, so it is
        # kept for later and -1 makes tjTransform give up.
        try:
            row = array_region.y // 8
            if row >= plane_region.h // 8:
                return 0  # padding row of the last MCU row, never written
            count = array_region.w // 8
            blocks = np.frombuffer((ctypes.c_int16 * (64 * count)).from_address(coeffs),
                                   dtype=np.int16).reshape(count, 64)
            if not _in_range(blocks):
                # libjpeg-turbo's encoder would write these into a corrupt stream
                failures.append(InvalidInput(_MSG_CORRUPT))
                return -1
            for c0, c1 in rows[ci].get(row, ()):
                blocks[c0:c1] = 0
                blocks[c0:c1, 0] = plan.dcs[ci]
            return 0
        except BaseException as exc:  # noqa: BLE001 - re-raised after tjTransform
            failures.append(exc)
            return -1

    source = b"".join([head.header[0], _JFIF, *head.header[1:],
                       memoryview(data)[head.scan_start:head.end]])
    transform = _TJTransform(op=_TJXOP[head.orientation],
                             options=_TJXOPT_PERFECT | _TJXOPT_COPYNONE,
                             customFilter=_TJFilter(blank))
    lib = _turbojpeg()
    # A handle per call (no state shared between threads; TurboJPEG keeps
    # its error text per thread), destroyed whatever happens.
    handle = lib.tjInitTransform()
    if not handle:
        raise MemoryError("TurboJPEG could not allocate its state")
    buffer, size = ctypes.c_void_p(), ctypes.c_ulong(0)
    try:
        status = lib.tjTransform(handle, source, len(source), 1, ctypes.byref(buffer),
                                 ctypes.byref(size), ctypes.byref(transform),
                                 _TJFLAG_STOPONWARNING | _TJFLAG_LIMITSCANS)
        if status == 0:
            out = ctypes.string_at(buffer.value, size.value)
        else:
            warning = lib.tjGetErrorCode(handle) == _TJERR_WARNING
            message = (lib.tjGetErrorStr2(handle) or b"").decode("ascii", "replace")[:200]
    finally:
        # TurboJPEG allocates the output, and may have done so before failing.
        if buffer.value:
            lib.tjFree(buffer)
        lib.tjDestroy(handle)
    if failures:
        raise failures[0]
    if status != 0 and "not perfect" in message:
        # Our check in _oriented_frame comes first; this is a second line.
        raise InvalidInput(_MSG_ORIENT, orientation=head.orientation)
    if status != 0:
        # Warnings too: corrupt data must not pass as a redacted photo.
        raise InvalidInput(_MSG_CORRUPT, libjpeg=message, warning=warning)
    _check_output(out)
    return out, plan.blanked


# --------------------------------------------------------------------------
# Orientation and fill
# --------------------------------------------------------------------------


def _oriented_frame(width: int, height: int, samp: list[tuple[int, int]], orientation: int
                    ) -> tuple[int, int, list[tuple[int, int]]]:
    """Size and (h, v) sampling upright; refuse what ``jpegtran -perfect`` refuses.

    Every mirror must move whole MCUs: a partial MCU at the edge would land
    on the opposite side, with its padding inside the picture.
    """
    samp = list(samp)
    for op in _ORIENT_OPS[orientation]:
        hmax, vmax = max(h for h, _ in samp), max(v for _, v in samp)
        if op == "transpose":
            width, height, samp = height, width, [(v, h) for h, v in samp]
        elif (op == "flip_h" and width % (hmax * 8)) or (op == "flip_v" and height % (vmax * 8)):
            raise InvalidInput(_MSG_ORIENT, orientation=orientation)
    return width, height, samp


def _orient(image: _Image, orientation: int) -> _Image:
    ops = _ORIENT_OPS[orientation]
    if not ops:
        return image
    width, height, samp = _oriented_frame(image.width, image.height, image.samp, orientation)
    planes, qts = [], []
    for plane, qt in zip(image.planes, image.qt):
        blocks = plane.reshape(plane.shape[0], plane.shape[1], 8, 8)
        sign = np.ones((8, 8), dtype=np.int16)
        for op in ops:
            if op == "transpose":
                blocks, sign, qt = blocks.transpose(1, 0, 3, 2), sign.T, qt.T
            elif op == "flip_h":
                blocks, sign = blocks[:, ::-1], sign * _ODD[None, :]
            else:
                blocks, sign = blocks[::-1], sign * _ODD[:, None]
        out = np.empty((blocks.shape[0], blocks.shape[1], 64), dtype=np.int16)
        np.multiply(blocks, sign, out=out.reshape(blocks.shape))  # one pass, one copy
        planes.append(out)
        qts.append(np.ascontiguousarray(qt))
    return _Image(width, height, samp, qts, planes)


def _fill_dc(qts: list[np.ndarray], rgb: tuple[int, int, int]) -> list[int]:
    r, g, b = rgb
    values = (0.299 * r + 0.587 * g + 0.114 * b,
              128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
              128 + 0.5 * r - 0.418688 * g - 0.081312 * b)
    # A block whose only coefficient is DC decodes to 128 + DC * q / 8.
    return [int(math.floor((values[ci] - 128) * 8 / int(qt[0, 0]) + 0.5))
            for ci, qt in enumerate(qts)]


@dataclass
class _Plan:
    """What to blank, in the upright frame."""

    blanked: list[tuple[int, int, int, int]]  # MCU-aligned boxes, in pixels, clipped
    spans: list[list[tuple[int, int, int, int]]]  # per component: block rows r0:r1, cols c0:c1
    dcs: list[int]  # per component: the fill's DC value


def _plan(width: int, height: int, samp: list[tuple[int, int]], qts: list[np.ndarray],
          regions, rgb) -> _Plan:
    """Whole MCUs touching each region; block spans may run past a plane's edge."""
    hmax, vmax = max(h for h, _ in samp), max(v for _, v in samp)
    mcu_w, mcu_h = hmax * 8, vmax * 8
    plan = _Plan([], [[] for _ in samp], _fill_dc(qts, rgb))
    for x, y, w, h in regions:
        x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
        x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
        if x1 <= x0 or y1 <= y0:
            continue
        mx0, my0 = x0 // mcu_w, y0 // mcu_h
        mx1, my1 = -(-x1 // mcu_w), -(-y1 // mcu_h)
        for (ch, cv), spans in zip(samp, plan.spans):
            spans.append((my0 * cv, my1 * cv, mx0 * ch, mx1 * ch))
        left, top = mx0 * mcu_w, my0 * mcu_h
        plan.blanked.append((left, top, min(width, mx1 * mcu_w) - left,
                             min(height, my1 * mcu_h) - top))
    return plan


def _blank(image: _Image, regions, rgb) -> list[tuple[int, int, int, int]]:
    plan = _plan(image.width, image.height, image.samp, image.qt, regions, rgb)
    for plane, spans, dc in zip(image.planes, plan.spans, plan.dcs):
        for r0, r1, c0, c1 in spans:
            block = plane[r0:r1, c0:c1]
            block[...] = 0
            block[..., 0] = dc
    return plan.blanked
