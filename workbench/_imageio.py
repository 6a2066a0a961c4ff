"""Read untrusted image bytes in memory: sniff, probe, decode, preview.

Everything here works on ``bytes`` already in memory. Nothing is written to
disk and no temporary files are used, because the bytes are usually a
decrypted original. Every function fails closed: any input it cannot read
completely and correctly raises a subclass of
:class:`workbench.errors.InvalidInput`, and no other exception type escapes.

Three choices run through the module:

- Formats are recognised by their magic bytes, never by a file name, and each
  format goes to exactly one decoder (Pillow's plugin classes are used
  directly, so Pillow never tries its other plugins on hostile data).
- The pixel-count limit is checked from the header, before any pixel memory
  is allocated, and does not depend on Pillow's global
  ``Image.MAX_IMAGE_PIXELS``.
- Truncation is detected by our own structural checks (JPEG end marker, PNG
  chunk CRCs, RIFF and ISO-BMFF box sizes, TIFF strip bounds) as well as by the
  decoders, so the result does not depend on Pillow's global
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` that other code may have switched on.

Metadata (orientation, capture time, camera make, model and serial) is read
with one small bounded TIFF-directory reader for every format, because EXIF
is a TIFF structure whether it sits in a JPEG, PNG, WebP, HEIF, TIFF, CR2,
DNG or CR3 file.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator

import numpy as np
from PIL import Image

from .errors import DecompressionBomb, InvalidInput, UnsupportedFormat, WorkbenchError

__all__ = [
    "MAX_PIXELS",
    "ImageInfo",
    "sniff_format",
    "probe",
    "decode",
    "render_preview",
]

#: Largest pixel count any function here will decode. A Canon R6 frame is
#: 20 MP and the largest raw sensors are about 100 MP, so anything above this
#: is corrupt or hostile; an RGB decode at the limit needs about 360 MB.
MAX_PIXELS: int = 120_000_000

#: JPEG quality of previews: small files, no visible blocking at 512 px.
_PREVIEW_QUALITY = 85

# Messages say what to do; they never carry file names or metadata values,
# which can identify patients.
_MSG_NOT_BYTES = "expected the file's contents as bytes; read the file in binary mode"
_MSG_EMPTY = "the file is empty (0 bytes); copy it from the card again"
_MSG_UNKNOWN = (
    "the file is not a JPEG, PNG, TIFF, WebP, HEIF/AVIF, Canon CR2/CR3 or DNG "
    "image; export it from the camera or editing software in one of these formats"
)
_MSG_OTHER_RAW = (
    "this camera raw format is not supported (only Canon CR2/CR3 and DNG are); "
    "convert it to DNG or export a JPEG or TIFF from the raw converter"
)
_MSG_BIGTIFF = "BigTIFF files are not supported; save the image as a standard TIFF or PNG"
_MSG_CORRUPT = (
    "the file is truncated or corrupt; copy it from the card again, "
    "or re-export it from the software that made it"
)
_MSG_TRUNCATED = "the file is truncated or corrupt; copy it from the card again"
_MSG_MISMATCH = (
    "the file's contents do not match the format its header claims; "
    "it is corrupt or mislabelled, so copy or export it again"
)
_MSG_METADATA = (
    "the image's metadata block (EXIF) is corrupt, so its orientation cannot be "
    "trusted; copy the file from the card again or re-export it"
)
_MSG_ORIENTATION = (
    "the image's orientation tag has an invalid value, so the picture cannot be "
    "shown the right way up; re-export it from the camera software"
)
_MSG_BOMB = (
    "the image header claims more pixels than the workbench decodes "
    "(the limit is MAX_PIXELS); the file is corrupt or hostile, do not import it"
)
_MSG_MEMORY = (
    "not enough memory to decode this image; close other notebooks or kernels and try again"
)
_MSG_DEPTH = (
    "the image uses a sample format the workbench does not read "
    "(floating point or signed integers); export it as 8- or 16-bit RGB"
)
_MSG_MAX_SIDE = "max_side must be a positive integer number of pixels"


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says, after EXIF orientation is applied.

    ``capture_time`` and ``camera_serial`` can identify a patient or a
    clinic, so they are left out of ``repr()`` (notebook output and logs).

    Attributes
    ----------
    format : str
        One of ``"jpeg"``, ``"png"``, ``"tiff"``, ``"webp"``, ``"heif"``
        (HEIC, HEIF and AVIF) or ``"raw"`` (CR2, CR3, DNG).
    width, height : int
        Size in pixels as displayed, i.e. swapped for orientations 5-8.
    capture_time : datetime or None
        EXIF DateTimeOriginal (plus SubSecTimeOriginal), naive, camera clock.
    camera_make, camera_model : str or None
        EXIF Make and Model.
    camera_serial : str or None
        EXIF BodySerialNumber, else DNG CameraSerialNumber, else the Canon
        maker-note serial number; None when none is present.
    """

    format: str
    width: int
    height: int
    capture_time: datetime | None = field(default=None, repr=False)
    camera_make: str | None = None
    camera_model: str | None = None
    camera_serial: str | None = field(default=None, repr=False)


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------


def sniff_format(data: bytes) -> str:
    """Name the image format from its magic bytes.

    Parameters
    ----------
    data : bytes
        The whole file, or at least its first few kilobytes (a DNG is told
        apart from a plain TIFF by a tag in the first directory).

    Returns
    -------
    str
        One of ``"jpeg"``, ``"png"``, ``"tiff"``, ``"webp"``, ``"heif"``,
        ``"raw"``.

    Raises
    ------
    UnsupportedFormat
        The data is empty or is not a format the workbench reads (including
        camera raw formats other than CR2, CR3 and DNG).
    InvalidInput
        ``data`` is not a bytes-like object.

    Notes
    -----
    Only the content is looked at, never a file name: a renamed file is read
    as what it is. Sniffing does not validate the rest of the file.
    """
    return _run(lambda: _sniff(_as_bytes(data)))


def probe(data: bytes) -> ImageInfo:
    """Read an image's header: format, displayed size and camera metadata.

    This is cheap: no pixel data is decoded, so ``probe`` does not notice a
    file that is truncated after its header. Use :func:`decode` or
    :func:`render_preview` to validate a whole file.

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    ImageInfo
        Format, size after EXIF orientation, capture time, camera make,
        model and serial number.

    Raises
    ------
    UnsupportedFormat
        Empty data or an unsupported format.
    DecompressionBomb
        The header claims more than :data:`MAX_PIXELS` pixels.
    InvalidInput
        The header or metadata is corrupt, or the content does not match
        its magic bytes.
    """

    return _run(lambda: _header_info(_as_bytes(data), structure=False))


#: Formats whose whole file :func:`check` can validate without decoding
#: pixels: a JPEG's entropy-coded data must end in an end-of-image marker
#: after its scan (truncation), every PNG chunk carries a CRC (corruption).
STRUCTURE_CHECKED = frozenset({"jpeg", "png"})


def check(data: bytes) -> ImageInfo:
    """Validate a file as far as its structure allows, without decoding pixels.

    For the formats in :data:`STRUCTURE_CHECKED` this catches what a decode
    would refuse in practice (a cut-off file, a damaged PNG chunk, a bad
    header, a decompression bomb) at a small fraction of a decode's cost:
    a JPEG's Huffman data is never decoded. For other formats it is
    :func:`probe` plus the format's own bounds checks; use
    :func:`render_preview` or :func:`decode` to validate their pixel data.

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    ImageInfo
        The same as :func:`probe` returns for ``data``.

    Raises
    ------
    UnsupportedFormat
        Empty data or an unsupported format.
    DecompressionBomb
        The header claims more than :data:`MAX_PIXELS` pixels.
    InvalidInput
        The file is truncated, or its structure, header or metadata is
        corrupt.
    """

    return _run(lambda: _header_info(_as_bytes(data), structure=True))


def _header_info(data: bytes, *, structure: bool) -> ImageInfo:
    """:func:`probe`'s work, after the format's structure checks when ``structure``."""
    fmt = _sniff(data)
    if fmt == "raw":
        if structure:
            _check_raw_structure(data)
        with _open_raw(data) as raw:
            return _raw_info(data, raw)
    if structure:
        _check_structure(data, fmt)
    _, meta, stored = _open_pillow(data, fmt)
    return _info(fmt, stored, meta)


def decode(data: bytes) -> np.ndarray:
    """Decode a whole image to RGB pixels, the right way up.

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    numpy.ndarray
        A new, writeable ``uint8`` array of shape ``(height, width, 3)``:
        EXIF orientation applied, alpha composited on white, 16-bit samples
        scaled to 8 bits, grayscale expanded to RGB. Raw files are developed
        with the camera's white balance into sRGB.

    Raises
    ------
    UnsupportedFormat
        Empty data or an unsupported format.
    DecompressionBomb
        The header claims more than :data:`MAX_PIXELS` pixels.
    InvalidInput
        The file is truncated, corrupt or mislabelled.
    """

    def work() -> np.ndarray:
        data_ = _as_bytes(data)
        fmt = _sniff(data_)
        if fmt == "raw":
            _check_raw_structure(data_)
            with _open_raw(data_) as raw:
                _raw_info(data_, raw)  # pixel-count limit before unpacking
                rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
            return _rgb_array(rgb)
        _check_structure(data_, fmt)
        im, meta, _ = _open_pillow(data_, fmt)
        im, pending = _load(im, fmt, meta.orientation)
        return _rgb_array(_to_rgb(_orient(im, pending)), copy=True)

    return _run(work)


def render_preview(data: bytes, max_side: int = 512) -> tuple[bytes, ImageInfo]:
    """Validate a whole image and render a small JPEG preview of it.

    Parameters
    ----------
    data : bytes
        The whole file.
    max_side : int, default 512
        Longest side of the preview in pixels. Images already smaller are
        not enlarged.

    Returns
    -------
    preview : bytes
        A baseline JPEG (quality 85) holding nothing but pixels: no EXIF,
        ICC profile, comment or XMP. It is oriented correctly.
    info : ImageInfo
        The same as :func:`probe` returns for ``data``.

    Raises
    ------
    UnsupportedFormat
        Empty data or an unsupported format.
    DecompressionBomb
        The header claims more than :data:`MAX_PIXELS` pixels.
    InvalidInput
        The file is truncated, corrupt or mislabelled, or ``max_side`` is
        not a positive integer.

    Notes
    -----
    A JPEG is decoded with DCT scaling (``draft``), which still reads every
    entropy-coded block, so truncation is caught at a fraction of the cost
    of a full decode. For raw files the camera's embedded JPEG preview is
    used when it is large enough (the raw file's structure is checked, but
    its sensor data is not unpacked); otherwise the raw is developed at half
    size.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise InvalidInput(_MSG_MAX_SIDE)

    def work() -> tuple[bytes, ImageInfo]:
        data_ = _as_bytes(data)
        fmt = _sniff(data_)
        if fmt == "raw":
            return _raw_preview(data_, max_side)
        _check_structure(data_, fmt)
        im, meta, stored = _open_pillow(data_, fmt)
        info = _info(fmt, stored, meta)
        if fmt == "jpeg" and _fit(stored, max_side) != stored:
            # DCT scaling: decode at 1/2, 1/4 or 1/8 size, never below target.
            im.draft("RGB", _fit(stored, max_side))
        im, pending = _load(im, fmt, meta.orientation)
        # Shrink first, then rotate: rotating the small image is cheaper.
        small = _orient(_resize(_to_rgb(im), _fit(im.size, max_side)), pending)
        return _encode_jpeg(_rgb_array(small)), info

    return _run(work)


def split_metadata(data: bytes) -> tuple[bytes, bytes]:
    """Split an image file into its pixels and the rest: for roles that may not see identifiers.

    A camera's file carries identifiers beside its pixels (the body's serial
    number, the owner's name, capture time and place, a hospital system's
    comments, a second image after the end). This returns

    - ``pixels``: a file that decodes to exactly the same upright pixels as
      ``data`` and holds none of that;
    - ``rest``: everything else, with how to put ``data`` back together
      from the two (:func:`join_metadata`).

    JPEG: the coded image copied byte for byte (quantisation and Huffman
    tables, frame and scans), with the JFIF header (no thumbnail), Adobe's
    colour-transform flag and the ICC colour profile; no EXIF, XMP, IPTC,
    comment, other application segment or data after the end. An EXIF
    block holding the orientation alone is written when it is not upright.
    PNG: the image chunks and those that say how to show its colours
    (palette, transparency, gamma, chromaticities, sRGB, ICC profile under a
    neutral name, significant bits, pixel size); no text, time, EXIF or
    unknown chunks; an ``eXIf`` chunk holding the orientation alone when it
    is not upright. For these two, ``rest`` refers to the bytes the two
    files share instead of repeating them, so the pair costs little more
    than the file. Every other format (TIFF, WebP, HEIF, AVIF, camera raw)
    is decoded upright and written as a lossless PNG (with the ICC profile,
    if any), and ``rest`` holds the whole file.

    Neither a JPEG's nor a PNG's coded image is decoded, so splitting costs
    about a copy of the file; ``pixels`` is checked (:func:`check`) and the
    two are joined again and compared before they are returned.

    Raises
    ------
    UnsupportedFormat, DecompressionBomb, InvalidInput
        As :func:`check` (and :func:`decode` for the other formats).
    """

    return _run(lambda: _split(_as_bytes(data))[:2])


def split_with_preview(data: bytes, max_side: int = 512) -> tuple[bytes, bytes, bytes | None, "ImageInfo | None"]:
    """:func:`split_metadata`, and for a format it decodes (not JPEG or PNG) the preview of :func:`render_preview`.

    Returns ``(pixels, rest, preview, info)``; ``preview`` and ``info`` are
    None for JPEG and PNG, whose coded image is not decoded. Otherwise the
    one upright decode that makes the pixels file makes the preview too,
    and ``info`` is :func:`probe`'s (a TIFF, HEIF or raw file was decoded twice).
    """
    return _run(lambda: _split(_as_bytes(data), max_side))


def _split(data_: bytes, preview_side: int | None = None) -> tuple[bytes, bytes, bytes | None, "ImageInfo | None"]:
    fmt = _sniff(data_)
    preview = info = None
    if fmt in ("jpeg", "png"):
        _check_structure(data_, fmt)
        _, meta, _ = _open_pillow(data_, fmt)
        pieces = (_jpeg_pixels if fmt == "jpeg" else _png_pixels)(data_, meta.orientation)
        pixels = b"".join(piece for piece, _ in pieces)
        _header_info(pixels, structure=True)
        rest = _recipe(data_, pieces)
    else:
        image, _, icc = open_upright(data_)
        buffer = io.BytesIO()
        image.info = {}
        image.save(buffer, "PNG", compress_level=1, **({"icc_profile": icc} if icc else {}))
        pixels, rest = buffer.getvalue(), _RECIPE_MAGIC + _literal(data_)
        if preview_side is not None:
            rgb = _to_rgb(image)
            preview = _encode_jpeg(_rgb_array(_resize(rgb, _fit(rgb.size, preview_side))))
            info = probe(data_)
    if _join(pixels, rest) != data_:
        raise InvalidInput(_MSG_CORRUPT)
    return pixels, rest, preview, info


def pixels_only(data: bytes) -> bytes:
    """The ``pixels`` part of :func:`split_metadata`."""
    return split_metadata(data)[0]


def join_metadata(pixels: bytes, rest: bytes) -> bytes:
    """The file :func:`split_metadata` split, byte for byte.

    Raises
    ------
    InvalidInput
        ``rest`` is not a split's rest, or it refers past the end of ``pixels``.
    """
    return _run(lambda: _join(_as_bytes(pixels), _as_bytes(rest)))


# The rest of a split: a magic, then operations in the original file's order,
# each a byte (C: copy ``length`` bytes of the pixels file from ``start``;
# L: ``length`` literal bytes follow) and big-endian 32-bit numbers.
_RECIPE_MAGIC = b"WBSPLIT1"


def _literal(chunk: bytes) -> bytes:
    return b"L" + len(chunk).to_bytes(4, "big") + chunk


def _recipe(data: bytes, pieces: list[tuple[bytes, int | None]]) -> bytes:
    """``pieces``: the pixels file in order, each with its offset in ``data`` when copied from it."""
    ops, taken, at = [_RECIPE_MAGIC], 0, 0
    for piece, source in pieces:
        if source is not None:
            if source > taken:
                ops.append(_literal(data[taken:source]))
            ops.append(b"C" + at.to_bytes(4, "big") + len(piece).to_bytes(4, "big"))
            taken = source + len(piece)
        at += len(piece)
    if taken < len(data):
        ops.append(_literal(data[taken:]))
    return b"".join(ops)


def _join(pixels: bytes, rest: bytes) -> bytes:
    if not rest.startswith(_RECIPE_MAGIC):
        raise InvalidInput(_MSG_CORRUPT)
    out, pos, n = [], len(_RECIPE_MAGIC), len(rest)
    while pos < n:
        op, first = rest[pos:pos + 1], int.from_bytes(rest[pos + 1:pos + 5], "big")
        if op == b"C" and pos + 9 <= n:
            length = int.from_bytes(rest[pos + 5:pos + 9], "big")
            if first + length > len(pixels):
                raise InvalidInput(_MSG_CORRUPT)
            out.append(pixels[first:first + length])
            pos += 9
        elif op == b"L" and pos + 5 + first <= n:
            out.append(rest[pos + 5:pos + 5 + first])
            pos += 5 + first
        else:
            raise InvalidInput(_MSG_CORRUPT)
    return b"".join(out)


def _orientation_tiff(orientation: int) -> bytes:
    """A TIFF structure with one directory holding one entry: Orientation."""
    return b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHHI", 1, 0x0112, 3, 1, orientation, 0, 0)


#: JPEG markers a decoder needs: frames, Huffman and arithmetic tables,
#: quantisation tables, restart interval, scans, line count
_JPEG_PIXEL_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
     0xC4, 0xCC, 0xDB, 0xDD, 0xDA, 0xDC}
)
# the end of a scan's entropy-coded data: a marker that is neither a stuffed
# 0xFF byte nor a restart marker
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def _jpeg_pixels(data: bytes, orientation: int) -> list[tuple[bytes, int | None]]:
    """The pixels-only JPEG as pieces, each with its offset in ``data`` if copied from it."""
    head: list[tuple[bytes, int | None]] = []   # JFIF, then the orientation
    body: list[tuple[bytes, int | None]] = []
    pos, n = 2, len(data)
    while True:
        if pos >= n or data[pos] != 0xFF:
            raise InvalidInput(_MSG_CORRUPT)
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise InvalidInput(_MSG_TRUNCATED)
        code = data[pos]
        pos += 1
        if code == 0xD9:
            break  # whatever follows the end of the image is dropped
        if 0xD0 <= code <= 0xD7 or code == 0x01:
            continue  # stand-alone markers outside a scan carry nothing
        if pos + 2 > n:
            raise InvalidInput(_MSG_TRUNCATED)
        length = int.from_bytes(data[pos:pos + 2], "big")
        end = pos + length
        if length < 2 or end > n:
            raise InvalidInput(_MSG_TRUNCATED)
        if code in _JPEG_PIXEL_MARKERS:
            if code == 0xDA:
                found = _SCAN_END.search(data, end)
                if found is None:
                    raise InvalidInput(_MSG_TRUNCATED)
                end = found.start()
            body.append((data[pos - 2:end], pos - 2))  # marker, segment (and scan) verbatim
        elif code == 0xE0 and data[pos + 2:pos + 7] == b"JFIF\x00" and length >= 16 and not head:
            head.append((b"\xff\xe0\x00\x10" + data[pos + 2:pos + 14] + b"\x00\x00", None))  # no thumbnail
        elif code == 0xEE and data[pos + 2:pos + 7] == b"Adobe" and length >= 14:
            body.append((b"\xff\xee\x00\x0e" + data[pos + 2:pos + 14], None))
        elif code == 0xE2 and data[pos + 2:pos + 14] == b"ICC_PROFILE\x00":
            body.append((data[pos - 2:end], pos - 2))
        pos = end
    if orientation != 1:
        exif = b"Exif\x00\x00" + _orientation_tiff(orientation)
        head.append((b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif, None))
    return [(b"\xff\xd8", 0), *head, *body, (b"\xff\xd9", pos - 2)]


#: PNG chunks that hold the image or say how to show its colours
_PNG_PIXEL_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs"}
)


def _png_chunk(kind: bytes, content: bytes) -> bytes:
    return (len(content).to_bytes(4, "big") + kind + content
            + zlib.crc32(kind + content).to_bytes(4, "big"))


def _png_pixels(data: bytes, orientation: int) -> list[tuple[bytes, int | None]]:
    """The pixels-only PNG as pieces, each with its offset in ``data`` if copied from it."""
    out: list[tuple[bytes, int | None]] = [(data[:8], 0)]
    pos = 8
    while True:  # the structure was checked: every chunk fits and IEND ends it
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if kind == b"iCCP":  # the profile's name is free text: give it a neutral one
            content = data[pos + 8:end - 4]
            out.append((_png_chunk(kind, b"ICC profile\x00" + content[content.find(b"\x00") + 1:]), None))
        elif kind in _PNG_PIXEL_CHUNKS:
            out.append((data[pos:end], pos))
        if kind == b"IHDR" and orientation != 1:
            out.append((_png_chunk(b"eXIf", _orientation_tiff(orientation)), None))
        if kind == b"IEND":
            return out
        pos = end


# --------------------------------------------------------------------------
# Failing closed
# --------------------------------------------------------------------------


def _run(work):
    """Call ``work()`` and turn every failure into an InvalidInput subclass.

    The original exception is not chained: decoder messages may quote header
    values. Its class name is kept as the ``cause`` attribute for debugging.
    """
    try:
        return work()
    except WorkbenchError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Only reachable if Pillow's own global limit is lower than ours.
        raise DecompressionBomb(_MSG_BOMB, limit=MAX_PIXELS, cause=type(exc).__name__) from None
    except MemoryError:
        raise InvalidInput(_MSG_MEMORY, cause="MemoryError") from None
    except Exception as exc:  # noqa: BLE001 - fail closed on anything a decoder raises
        raise InvalidInput(_MSG_CORRUPT, cause=type(exc).__name__) from None


class _Corrupt(Exception):
    """Internal: a structural check failed; ``_run`` turns it into InvalidInput."""


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise InvalidInput(_MSG_NOT_BYTES)


def _check_pixels(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidInput(_MSG_CORRUPT)
    if width * height > MAX_PIXELS:
        raise DecompressionBomb(_MSG_BOMB, limit=MAX_PIXELS, pixels=width * height)


# --------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEVC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = _HEVC_BRANDS | _AVIF_BRANDS | {b"mif1", b"msf1", b"mif2", b"heif"}
# TIFF tags that mark a camera raw file in TIFF clothing.
_TAG_DNG_VERSION = 0xC612
_RAW_PHOTOMETRIC = {32803, 34892}  # CFA, LinearRaw
# Vendor raw compressions (Sony, Epson, Samsung, Nikon, Kodak, Pentax).
_RAW_COMPRESSION = {32767, 32769, 32770, 34713, 65000, 65535}


def _sniff(data: bytes) -> str:
    if not data:
        raise UnsupportedFormat(_MSG_EMPTY)
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == _PNG_SIGNATURE:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        if data[:4] == b"II*\x00" and data[8:10] == b"CR":
            return "raw"  # Canon CR2: a TIFF with 'CR' and a version at offset 8
        kind = _tiff_kind(data)
        if kind == "other-raw":
            raise UnsupportedFormat(_MSG_OTHER_RAW)
        return kind
    if data[:4] in (b"II+\x00", b"MM\x00+"):
        raise UnsupportedFormat(_MSG_BIGTIFF)
    if data[4:8] == b"ftyp":
        brands = _ftyp_brands(data)
        if brands and brands[0] == b"crx ":
            return "raw"  # Canon CR3
        if _HEIF_BRANDS.intersection(brands):
            return "heif"
    raise UnsupportedFormat(_MSG_UNKNOWN)


#: the largest raw companion file taken in (an R6 CR3 is about 25 MB)
MAX_RAW_BYTES = 512 * 1024 * 1024


def check_raw(data: bytes, extension: str) -> None:
    """Raise ``UnsupportedFormat`` unless ``data`` is a camera raw file (CR3, CR2, DNG) as ``extension`` says.

    Only the container is checked (the raw data is kept, not decoded):
    CR3 is ISO media with the ``crx`` brand, CR2 a TIFF marked ``CR``, DNG a
    TIFF whose first directory has a DNGVersion.
    """
    ext = extension.lower().lstrip(".")
    if len(data) > MAX_RAW_BYTES:
        raise UnsupportedFormat(f"a raw file larger than {MAX_RAW_BYTES >> 20} MB was not taken in; "
                                "check the card for a damaged file")
    try:
        kind = _sniff(data)
        is_cr2 = data[:4] == b"II*\x00" and data[8:10] == b"CR"
        is_cr3 = data[4:8] == b"ftyp"
        ok = kind == "raw" and {"cr3": is_cr3, "cr2": is_cr2, "dng": not (is_cr2 or is_cr3)}.get(ext, False)
    except UnsupportedFormat:
        ok = False
    if not ok:
        raise UnsupportedFormat(f"this file is not the {ext.upper() or 'raw'} raw file its name says; it was "
                                "left on the card: check it with the camera's own software", extension=ext)


def _tiff_kind(data: bytes) -> str:
    """Tell a plain TIFF from a DNG or another raw format built on TIFF.

    A header too damaged to read is called "tiff" and left to the decoder
    to reject.
    """
    try:
        tiff = _Tiff(data)
        ifd0 = tiff.ifd(tiff.first_ifd)
        if _TAG_DNG_VERSION in ifd0:
            return "raw"
        for ifd in [ifd0, *tiff.sub_ifds(ifd0, limit=8)]:
            if tiff.int(ifd, 0x106) in _RAW_PHOTOMETRIC or tiff.int(ifd, 0x103) in _RAW_COMPRESSION:
                return "other-raw"
    except _Corrupt:
        pass
    return "tiff"


def _ftyp_brands(data: bytes) -> list[bytes]:
    size = int.from_bytes(data[0:4], "big")
    if size < 16 or size > min(len(data), 4096) or size % 4:
        return []
    body = data[8:size]
    return [body[0:4]] + [body[i : i + 4] for i in range(8, len(body), 4)]


# --------------------------------------------------------------------------
# Structural checks: truncation is caught here whatever Pillow's globals say
# --------------------------------------------------------------------------


def _check_structure(data: bytes, fmt: str) -> None:
    if fmt == "jpeg":
        _check_jpeg(data)
    elif fmt == "png":
        _check_png(data)
    elif fmt == "webp":
        _check_riff(data)
    elif fmt == "tiff":
        _check_tiff_bounds(data)
    elif fmt == "heif":
        _check_bmff(data)


def _check_jpeg(data: bytes) -> None:
    # Entropy-coded data never holds FF D9 (FF is stuffed as FF 00), so the
    # last end-of-image marker must have a start-of-scan marker before it and
    # none after it. An EXIF thumbnail's EOI comes before the main scan, so a
    # file cut short after its thumbnail still fails. (Searching forward from
    # the last EOI keeps this cheap: it usually sits at the very end.)
    eoi = data.rfind(b"\xff\xd9")
    if eoi < 0 or data.find(b"\xff\xda", 0, eoi) < 0 or data.find(b"\xff\xda", eoi) >= 0:
        raise InvalidInput(_MSG_TRUNCATED)


def _check_png(data: bytes) -> None:
    # Walk every chunk and verify its CRC; the file must end with IEND.
    pos, n = 8, len(data)
    seen_idat = False
    while True:
        if pos + 12 > n:
            raise InvalidInput(_MSG_TRUNCATED)
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > n:
            raise InvalidInput(_MSG_TRUNCATED)
        crc = int.from_bytes(data[end - 4 : end], "big")
        if zlib.crc32(memoryview(data)[pos + 4 : end - 4]) != crc:
            raise InvalidInput(_MSG_CORRUPT)
        seen_idat |= ctype == b"IDAT"
        if ctype == b"IEND":
            break
        pos = end
    if not seen_idat:
        raise InvalidInput(_MSG_TRUNCATED)


def _check_riff(data: bytes) -> None:
    # The RIFF header states the file size; every chunk must fit inside it.
    size = int.from_bytes(data[4:8], "little") + 8
    if size < 20 or size > len(data):
        raise InvalidInput(_MSG_TRUNCATED)
    pos = 12
    while pos + 8 <= size:
        chunk = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + chunk > size:
            raise InvalidInput(_MSG_TRUNCATED)
        pos += 8 + chunk + (chunk & 1)  # a missing final pad byte is tolerated
    if pos < size:
        raise InvalidInput(_MSG_TRUNCATED)


def _check_bmff(data: bytes, required: tuple[bytes, ...] = (b"ftyp", b"meta")) -> None:
    try:
        kinds = {kind for kind, _, _ in _boxes(data, 0, len(data))}
    except _Corrupt:
        raise InvalidInput(_MSG_TRUNCATED) from None
    if not set(required) <= kinds:
        raise InvalidInput(_MSG_TRUNCATED)


def _check_tiff_bounds(data: bytes) -> None:
    # Every strip, tile and embedded JPEG of every directory must lie inside
    # the file; a copy cut short fails here before any decoder sees it.
    try:
        tiff = _Tiff(data)
        ifds = []
        for ifd in tiff.ifd_chain():
            ifds.append(ifd)
            ifds.extend(tiff.sub_ifds(ifd, limit=16))
        if not ifds:
            raise _Corrupt
        for ifd in ifds:
            for off_tag, len_tag in ((0x111, 0x117), (0x144, 0x145), (0x201, 0x202)):
                if off_tag not in ifd and len_tag not in ifd:
                    continue
                offsets = tiff.ints(ifd, off_tag)
                lengths = tiff.ints(ifd, len_tag)
                if len(offsets) != len(lengths):
                    raise _Corrupt
                for off, length in zip(offsets, lengths):
                    if off + length > len(data):
                        raise _Corrupt
    except _Corrupt:
        raise InvalidInput(_MSG_TRUNCATED) from None


def _check_raw_structure(data: bytes) -> None:
    if data[4:8] == b"ftyp":
        _check_bmff(data, (b"ftyp", b"moov", b"mdat"))
    else:
        _check_tiff_bounds(data)


# --------------------------------------------------------------------------
# ISO base media file format (HEIF, AVIF, CR3)
# --------------------------------------------------------------------------

_CANON_UUID = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(type, payload_start, box_end)`` for each box in ``data[start:end]``."""
    pos = start
    count = 0
    while pos < end:
        count += 1
        if pos + 8 > end or count > 10_000:
            raise _Corrupt
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise _Corrupt
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if kind == b"uuid":
            header += 16
        if size < header or pos + size > end:
            raise _Corrupt
        yield kind, pos + header, pos + size
        pos += size


def _cr3_metadata(data: bytes) -> _Meta:
    # CR3 keeps its EXIF in TIFF blocks inside moov/uuid(Canon): CMT1 is IFD0,
    # CMT2 the EXIF IFD, CMT3 the Canon maker notes.
    blocks: dict[bytes, bytes] = {}
    try:
        for kind, start, end in _boxes(data, 0, len(data)):
            if kind != b"moov":
                continue
            for kind2, start2, end2 in _boxes(data, start, end):
                if kind2 == b"uuid" and data[start2 - 16 : start2] == _CANON_UUID:
                    for kind3, start3, end3 in _boxes(data, start2, end2):
                        if kind3 in (b"CMT1", b"CMT2", b"CMT3"):
                            blocks[kind3] = data[start3:end3]
    except _Corrupt:
        raise InvalidInput(_MSG_TRUNCATED) from None
    meta = _Meta()
    if b"CMT1" in blocks:
        tiff = _Tiff(blocks[b"CMT1"])
        ifd0 = tiff.ifd(tiff.first_ifd)
        meta.make = tiff.text(ifd0, 0x010F)
        meta.model = tiff.text(ifd0, 0x0110)
        meta.orientation = _orientation_value(tiff, ifd0)
        meta.serial = tiff.text(ifd0, 0xC62F)
    if b"CMT2" in blocks:
        tiff = _Tiff(blocks[b"CMT2"])
        _read_exif_ifd(tiff, tiff.ifd(tiff.first_ifd), meta)
    if meta.serial is None and b"CMT3" in blocks and _is_canon(meta.make):
        try:
            tiff = _Tiff(blocks[b"CMT3"])
            meta.serial = _canon_serial(tiff, tiff.ifd(tiff.first_ifd))
        except _Corrupt:
            pass  # maker notes are best effort
    return meta


# --------------------------------------------------------------------------
# A small bounded TIFF directory reader, used for all EXIF
# --------------------------------------------------------------------------

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_INT_FORMAT = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I"}
_MAX_ENTRIES = 4096  # per directory; real ones hold a few hundred at most
_MAX_IFDS = 64


class _Tiff:
    """Read TIFF directories from ``buf`` with every offset bounds-checked.

    A directory is a dict mapping tag -> (type, count, value position).
    Anything out of bounds raises :class:`_Corrupt`.
    """

    def __init__(self, buf: bytes):
        self.buf = buf
        order = buf[:2]
        if order == b"II":
            self.e = "<"
        elif order == b"MM":
            self.e = ">"
        else:
            raise _Corrupt
        if len(buf) < 8 or self._u16(2) != 42:
            raise _Corrupt
        self.first_ifd = self._u32(4)

    def _u16(self, pos: int) -> int:
        return struct.unpack_from(self.e + "H", self.buf, pos)[0]

    def _u32(self, pos: int) -> int:
        return struct.unpack_from(self.e + "I", self.buf, pos)[0]

    def ifd(self, offset: int) -> dict[int, tuple[int, int, int]]:
        return self._ifd(offset)[0]

    def _ifd(self, offset: int) -> tuple[dict[int, tuple[int, int, int]], int]:
        buf = self.buf
        if offset < 8 or offset + 2 > len(buf):
            raise _Corrupt
        n = self._u16(offset)
        if n > _MAX_ENTRIES or offset + 2 + 12 * n + 4 > len(buf):
            raise _Corrupt
        entries: dict[int, tuple[int, int, int]] = {}
        for i in range(n):
            pos = offset + 2 + 12 * i
            tag, typ, count = struct.unpack_from(self.e + "HHI", buf, pos)
            size = _TYPE_SIZE.get(typ)
            if size is None:
                continue  # unknown types are skipped, as the TIFF spec says
            total = size * count
            value_pos = pos + 8 if total <= 4 else self._u32(pos + 8)
            if value_pos + total > len(buf):
                # Out of bounds: kept as a poisoned entry, so that reading it
                # fails but tags nobody reads (editors often damage maker
                # notes) do not reject the whole image.
                value_pos = -1
            entries.setdefault(tag, (typ, count, value_pos))
        return entries, self._u32(offset + 2 + 12 * n)

    def ifd_chain(self) -> Iterator[dict[int, tuple[int, int, int]]]:
        offset, seen = self.first_ifd, set()
        while offset:
            if offset in seen or len(seen) >= _MAX_IFDS:
                raise _Corrupt
            seen.add(offset)
            entries, offset = self._ifd(offset)
            yield entries

    def sub_ifds(self, ifd: dict, limit: int) -> list[dict]:
        return [self.ifd(off) for off in self.ints(ifd, 0x14A)[:limit]]

    def ints(self, ifd: dict, tag: int) -> tuple[int, ...]:
        if tag not in ifd:
            return ()
        typ, count, pos = ifd[tag]
        fmt = _INT_FORMAT.get(typ)
        if fmt is None or pos < 0:
            raise _Corrupt
        return struct.unpack_from(f"{self.e}{count}{fmt}", self.buf, pos)

    def int(self, ifd: dict, tag: int) -> int | None:
        values = self.ints(ifd, tag)
        return values[0] if len(values) == 1 else None

    def raw(self, ifd: dict, tag: int) -> bytes | None:
        if tag not in ifd:
            return None
        typ, count, pos = ifd[tag]
        if pos < 0:
            raise _Corrupt
        return self.buf[pos : pos + _TYPE_SIZE[typ] * count]

    def text(self, ifd: dict, tag: int) -> str | None:
        """An ASCII or UNDEFINED value as a stripped string; None if absent or empty."""
        if tag not in ifd or ifd[tag][0] not in (2, 7):
            return None
        value = self.raw(ifd, tag).split(b"\x00", 1)[0].strip()
        return value.decode("utf-8", "replace") or None


@dataclass
class _Meta:
    orientation: int = 1
    capture_time: datetime | None = None
    make: str | None = None
    model: str | None = None
    serial: str | None = None


def _exif_blob(im: Image.Image) -> bytes | None:
    exif = im.info.get("exif")
    if not exif:
        return None
    if isinstance(exif, Image.Exif):  # some plugins store a parsed object
        exif = exif.tobytes()
    exif = bytes(exif)
    while exif[:6] == b"Exif\x00\x00":
        exif = exif[6:]
    return exif


def _read_metadata(tiff: _Tiff) -> _Meta:
    meta = _Meta()
    ifd0 = tiff.ifd(tiff.first_ifd)
    meta.orientation = _orientation_value(tiff, ifd0)
    meta.make = tiff.text(ifd0, 0x010F)
    meta.model = tiff.text(ifd0, 0x0110)
    exif_offset = tiff.int(ifd0, 0x8769)
    if exif_offset:
        _read_exif_ifd(tiff, tiff.ifd(exif_offset), meta)
    if meta.serial is None:
        meta.serial = tiff.text(ifd0, 0xC62F)  # DNG CameraSerialNumber
    if meta.serial is None and exif_offset and _is_canon(meta.make):
        try:
            exif_ifd = tiff.ifd(exif_offset)
            if 0x927C in exif_ifd:
                # Canon maker notes are a bare IFD whose offsets count from
                # the TIFF header, so the same reader can follow them.
                meta.serial = _canon_serial(tiff, tiff.ifd(exif_ifd[0x927C][2]))
        except _Corrupt:
            pass  # maker notes are often damaged by editors: best effort only
    return meta


def _read_exif_ifd(tiff: _Tiff, exif_ifd: dict, meta: _Meta) -> None:
    meta.capture_time = _parse_exif_time(tiff.text(exif_ifd, 0x9003), tiff.text(exif_ifd, 0x9291))
    meta.serial = tiff.text(exif_ifd, 0xA431) or meta.serial


def _orientation_value(tiff: _Tiff, ifd0: dict) -> int:
    if 0x0112 not in ifd0:
        return 1
    try:
        value = tiff.int(ifd0, 0x0112)
    except _Corrupt:
        value = None
    if value == 0:
        return 1  # "unknown", written by some software; treated as upright
    if value is None or not 1 <= value <= 8:
        raise InvalidInput(_MSG_ORIENTATION)
    return value


def _is_canon(make: str | None) -> bool:
    return bool(make) and make.lower().startswith("canon")


def _canon_serial(tiff: _Tiff, makernote: dict) -> str | None:
    value = tiff.int(makernote, 0x000C)  # Canon SerialNumber (int32u)
    if not value:
        return None
    return f"{value:010d}"  # as exiftool prints it for EOS bodies


def _parse_exif_time(text: str | None, subsec: str | None) -> datetime | None:
    # Unset camera clocks write "0000:00:00 00:00:00" or blanks: no time.
    if not text:
        return None
    try:
        when = datetime.strptime(text[:19].replace("-", ":"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if subsec and subsec.isascii() and subsec.isdigit():
        when = when.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    return when


def _meta_from_tiff_bytes(blob: bytes | None) -> _Meta:
    if not blob:
        return _Meta()
    try:
        return _read_metadata(_Tiff(blob))
    except _Corrupt:
        raise InvalidInput(_MSG_METADATA) from None


# --------------------------------------------------------------------------
# Pillow formats
# --------------------------------------------------------------------------

_heif_lock = threading.Lock()
_heif_registered = False


def _heif_plugin():
    global _heif_registered
    import pillow_heif

    with _heif_lock:
        if not _heif_registered:
            pillow_heif.register_heif_opener()
            _heif_registered = True
    return pillow_heif.HeifImageFile


def _plugin(fmt: str, data: bytes):
    # Each format maps to one plugin class, instantiated directly: Pillow
    # then never probes hostile bytes with its other plugins, and skips the
    # Image.open() pixel check that reads the global MAX_IMAGE_PIXELS.
    if fmt == "jpeg":
        from PIL.JpegImagePlugin import JpegImageFile

        return JpegImageFile
    if fmt == "png":
        from PIL.PngImagePlugin import PngImageFile

        return PngImageFile
    if fmt == "tiff":
        from PIL.TiffImagePlugin import TiffImageFile

        return TiffImageFile
    if fmt == "webp":
        from PIL.WebPImagePlugin import WebPImageFile

        return WebPImageFile
    # HEIF family: HEVC-coded files go to pillow-heif (libheif + libde265);
    # AV1-coded ones to Pillow's own AVIF plugin, since this libheif build
    # has no AV1 decoder.
    brands = set(_ftyp_brands(data))
    if brands & _AVIF_BRANDS and not brands & _HEVC_BRANDS:
        from PIL.AvifImagePlugin import AvifImageFile

        return AvifImageFile
    return _heif_plugin()


def _open_pillow(data: bytes, fmt: str) -> tuple[Image.Image, _Meta, tuple[int, int]]:
    """Parse the header only; return the image, its metadata and stored size.

    The stored size is before orientation: the pixel-count check and
    :func:`_info` work from it.
    """
    if fmt == "webp":
        # The WebP decoder allocates its canvas when it is created, so the
        # pixel limit has to be checked from the header first.
        _check_pixels(*_webp_size(data))
    cls = _plugin(fmt, data)
    im = cls(io.BytesIO(data))
    stored = im.size
    if fmt == "tiff":
        # A TIFF's own first directory holds its orientation and camera tags.
        # Recent Pillow reports a TIFF's size already rotated, so the stored
        # size comes from the directory itself.
        meta = _meta_from_tiff_bytes(data)
        tiff = _Tiff(data)
        ifd0 = tiff.ifd(tiff.first_ifd)
        stored = (tiff.int(ifd0, 0x100) or 0, tiff.int(ifd0, 0x101) or 0)
        if im.size not in (stored, stored[::-1]):
            raise InvalidInput(_MSG_MISMATCH)
    else:
        meta = _meta_from_tiff_bytes(_exif_blob(im))
    _check_pixels(*stored)
    if fmt == "heif" and cls.__module__.startswith("pillow_heif"):
        # libheif has already applied the container's rotation and mirroring
        # (and pillow-heif resets the EXIF tag to 1): do not rotate twice.
        meta.orientation = 1
    return im, meta, stored


def _load(im: Image.Image, fmt: str, orientation: int) -> tuple[Image.Image, int]:
    """Decode the pixels; return the image and the orientation still to apply."""
    pillow_may_rotate = fmt == "tiff" and 0x0112 in getattr(im, "tag_v2", {})
    im.load()
    if pillow_may_rotate and 0x0112 not in im.tag_v2:
        # Recent Pillow rotates TIFFs while loading and then drops the tag.
        return im, 1
    return im, orientation


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise InvalidInput(_MSG_MISMATCH)


def _info(fmt: str, size: tuple[int, int], meta: _Meta) -> ImageInfo:
    width, height = size
    if meta.orientation >= 5:
        width, height = height, width
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        capture_time=meta.capture_time,
        camera_make=meta.make,
        camera_model=meta.model,
        camera_serial=meta.serial,
    )


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; alpha is composited on white."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("F", "I;16S", "I;16BS", "I;32S") or mode.startswith("I;32"):
        raise UnsupportedFormat(_MSG_DEPTH)
    if mode.startswith("I"):
        # 16-bit grayscale: Pillow's convert("L") clips instead of scaling.
        values = np.asarray(im)
        if mode == "I" and (values.min() < 0 or values.max() > 0xFFFF):
            raise UnsupportedFormat(_MSG_DEPTH)
        gray = (values.astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(gray.astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:4]
        rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8))
    return im.convert("RGB")


def _rgb_array(pixels, copy: bool = False) -> np.ndarray:
    arr = np.array(pixels, dtype=np.uint8, copy=True) if copy else np.asarray(pixels)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInput(_MSG_CORRUPT)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    scale = max_side / long_side
    return (
        max(1, min(max_side, round(width * scale))),
        max(1, min(max_side, round(height * scale))),
    )


def _resize(im: Image.Image, target: tuple[int, int]) -> Image.Image:
    if im.size == target:
        return im
    # As Image.thumbnail does: box-reduce by an integer factor first, then
    # bicubic (antialiased by Pillow when shrinking); fast, and sharp enough
    # for a preview.
    return im.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    # A fresh image from the array carries no info dict, so nothing (EXIF,
    # ICC, comment, XMP) can be copied into the preview by accident.
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(out, "JPEG", quality=_PREVIEW_QUALITY)
    return out.getvalue()


# --------------------------------------------------------------------------
# Camera raw (rawpy / LibRaw)
# --------------------------------------------------------------------------

# LibRaw's "flip" to EXIF orientation (dcraw maps EXIF n to "50132467"[n]).
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 3: 3, 2: 4, 4: 5, 6: 6, 7: 7, 5: 8}


def _open_raw(data: bytes):
    import rawpy

    return rawpy.imread(io.BytesIO(data))


def _raw_metadata(data: bytes) -> _Meta:
    try:
        if data[4:8] == b"ftyp":
            return _cr3_metadata(data)
        return _read_metadata(_Tiff(data))
    except _Corrupt:
        raise InvalidInput(_MSG_METADATA) from None


def _raw_info(data: bytes, raw) -> ImageInfo:
    sizes = raw.sizes
    _check_pixels(sizes.raw_width, sizes.raw_height)
    _check_pixels(sizes.width, sizes.height)
    meta = _raw_metadata(data)
    # LibRaw decides the rotation its output gets; report what it will do.
    meta.orientation = _FLIP_TO_ORIENTATION.get(sizes.flip, 1)
    return _info("raw", (sizes.width, sizes.height), meta)


def _raw_preview(data: bytes, max_side: int) -> tuple[bytes, ImageInfo]:
    import rawpy

    _check_raw_structure(data)
    with _open_raw(data) as raw:
        info = _raw_info(data, raw)
        orientation = _FLIP_TO_ORIENTATION.get(raw.sizes.flip, 1)
        thumb = None
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            pass
        if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG:
            preview = _raw_thumb_preview(bytes(thumb.data), info, orientation, max_side)
            if preview is not None:
                return preview, info
        rgb = raw.postprocess(use_camera_wb=True, output_bps=8, half_size=True)
    small = _resize(Image.fromarray(_rgb_array(rgb)), _fit((rgb.shape[1], rgb.shape[0]), max_side))
    return _encode_jpeg(_rgb_array(small)), info


def _raw_thumb_preview(jpeg: bytes, info: ImageInfo, orientation: int, max_side: int) -> bytes | None:
    """Preview from the camera's embedded JPEG, or None if it is too small."""
    if jpeg[:3] != b"\xff\xd8\xff":
        return None
    _check_jpeg(jpeg)
    im = _plugin("jpeg", jpeg)(io.BytesIO(jpeg))
    _check_pixels(*im.size)
    width, height = im.size
    if max(width, height) < min(max_side, max(info.width, info.height)):
        return None
    # Embedded previews are stored unrotated, but a few converters store them
    # already upright: rotate only if the shape says it is still needed.
    swaps = orientation >= 5
    landscape_raw = info.width >= info.height  # displayed shape
    landscape_thumb = width >= height
    if width != height and swaps and landscape_thumb == landscape_raw:
        orientation = 1
    target = _fit((width, height), max_side)
    if target != (width, height):
        im.draft("RGB", target)
    im.load()
    small = _orient(_resize(_to_rgb(im), target), orientation)
    return _encode_jpeg(_rgb_array(small))


# --------------------------------------------------------------------------
# For de-identification: a validated, upright Pillow image
# --------------------------------------------------------------------------


def open_upright(data: bytes, *, reduce_to: int | None = None) -> tuple[Image.Image, ImageInfo, bytes | None]:
    """Decode a whole image into an upright 8-bit RGB Pillow image.

    De-identification works on Pillow images rather than numpy arrays so that
    a 20 MP frame is never copied into a second layout: redaction paints
    into it and the encoder reads it directly.

    Parameters
    ----------
    data : bytes
        The whole file.
    reduce_to : int, optional
        For JPEG only: decode with DCT scaling to no less than this long side
        (for detection on a reduced image at a fraction of the cost).

    Returns
    -------
    image : PIL.Image.Image
        Mode ``RGB``, EXIF orientation applied.
    info : ImageInfo
        Format and upright size of the full image (not of a reduced decode).
    icc_profile : bytes or None
        The embedded ICC profile, so that the caller can convert to sRGB.

    Raises
    ------
    InvalidInput, UnsupportedFormat, DecompressionBomb
        As :func:`decode`.
    """

    def work():
        data_ = _as_bytes(data)
        fmt = _sniff(data_)
        if fmt == "raw":
            _check_raw_structure(data_)
            with _open_raw(data_) as raw:
                info = _raw_info(data_, raw)
                rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
            return Image.fromarray(_rgb_array(rgb)), info, None
        _check_structure(data_, fmt)
        im, meta, stored = _open_pillow(data_, fmt)
        info = _info(fmt, stored, meta)
        icc = im.info.get("icc_profile")
        if reduce_to and fmt == "jpeg":
            target = _fit(stored, reduce_to)
            if target != stored:
                im.draft("RGB", target)
        im, pending = _load(im, fmt, meta.orientation)
        return _orient(_to_rgb(im), pending), info, icc

    return _run(work)
