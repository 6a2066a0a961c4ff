"""Properties of workbench._imageio: formats, orientation, metadata, failing closed.

Every test image is generated here (numpy, Pillow, pillow-heif, and a small
hand-written TIFF/DNG builder), so the tests need no fixtures on disk.
"""

from __future__ import annotations

import contextvars
import io
import struct
import sys
import time
import tracemalloc
import zlib
from datetime import datetime

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from workbench import _imageio as imageio
from workbench.errors import DecompressionBomb, InvalidInput, UnsupportedFormat

RED = (255, 0, 0)
GRAY = (128, 128, 128)
W, H = 64, 48

CAPTURE = "2024:03:05 14:22:01"
SERIAL = "012345678901"


# --------------------------------------------------------------------------
# Test-image builders
# --------------------------------------------------------------------------


def photo(width: int = W, height: int = H) -> Image.Image:
    """Gray picture with a red square (a third of the height) in its stored top-left corner."""
    arr = np.full((height, width, 3), GRAY, np.uint8)
    arr[: height // 3, : height // 3] = RED
    return Image.fromarray(arr)


def canon_exif(orientation: int | None = None, serial: str | None = SERIAL) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R6"
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = CAPTURE
    if serial is not None:
        sub[0xA431] = serial
    return exif


def _heif_ready() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def encode(fmt: str, im: Image.Image, exif: Image.Exif | None = None, **kw) -> bytes:
    """Encode with Pillow; ``fmt`` is a Pillow format name."""
    out = io.BytesIO()
    if fmt == "TIFF" and exif is not None:
        # Pillow's TIFF writer takes the camera tags as its own directory.
        kw["tiffinfo"] = {**dict(exif), 0x8769: exif.get_ifd(0x8769)}
    elif exif is not None:
        kw["exif"] = exif.tobytes()
    if fmt == "HEIF":
        _heif_ready()
    if fmt == "WEBP":
        kw.setdefault("lossless", True)
    im.save(out, fmt, **kw)
    return out.getvalue()


# Pillow format name -> (our format name, lossless?)
FORMATS = {
    "JPEG": ("jpeg", False),
    "PNG": ("png", True),
    "TIFF": ("tiff", True),
    "WEBP": ("webp", True),
    "HEIF": ("heif", False),
    "AVIF": ("heif", False),
}


def red_corner(arr: np.ndarray) -> str:
    """Which displayed corner holds the red block: 'tl', 'tr', 'bl' or 'br'."""
    h, w = arr.shape[:2]
    corners = {
        "tl": arr[2:6, 2:6],
        "tr": arr[2:6, w - 6 : w - 2],
        "bl": arr[h - 6 : h - 2, 2:6],
        "br": arr[h - 6 : h - 2, w - 6 : w - 2],
    }
    reds = [k for k, v in corners.items() if v[..., 0].mean() > 200 and v[..., 1].mean() < 60]
    assert len(reds) == 1, reds
    return reds[0]


def jpeg_markers(data: bytes) -> list[int]:
    """Marker codes of a JPEG up to its first scan (header segments only)."""
    assert data[:2] == b"\xff\xd8"
    pos, markers = 2, []
    while True:
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 2 + length


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# A tiny TIFF/DNG writer: Pillow cannot write DNG, and LibRaw (through rawpy)
# reads a hand-made uncompressed CFA DNG, so raw support is tested for real.


def _pack(typ: int, vals) -> tuple[bytes, int]:
    if typ == 2:
        raw = vals.encode("ascii") + b"\0"
        return raw, len(raw)
    if typ in (1, 7) and isinstance(vals, (bytes, bytearray)):
        return bytes(vals), len(vals)
    if typ in (5, 10):
        flat = [x for pair in vals for x in pair]
        return struct.pack("<%d%s" % (len(flat), "I" if typ == 5 else "i"), *flat), len(vals)
    code = {1: "B", 3: "H", 4: "I"}[typ]
    return struct.pack("<%d%s" % (len(vals), code), *vals), len(vals)


def build_tiff(ifd0: dict, data0: bytes = b"", exif: dict | None = None, subs=()) -> bytes:
    """Little-endian TIFF: IFD0 (+ its strip), an optional EXIF IFD, optional SubIFDs."""
    ifds = [(dict(ifd0), data0)] + ([(dict(exif), b"")] if exif else [])
    ifds += [(dict(tags), data) for tags, data in subs]
    for tags, data in ifds:
        if data:
            tags[273] = (4, [0])
            tags[279] = (4, [len(data)])
    if exif:
        ifds[0][0][34665] = (4, [0])
    if subs:
        ifds[0][0][330] = (4, [0] * len(subs))
    for _ in range(2):  # the second pass writes the offsets learnt in the first
        heads = sum(2 + 12 * len(tags) + 4 for tags, _ in ifds)
        offsets, pos = [], 8
        for tags, _ in ifds:
            offsets.append(pos)
            pos += 2 + 12 * len(tags) + 4
        values, blobs = bytearray(), []
        for tags, _ in ifds:
            blob = bytearray(struct.pack("<H", len(tags)))
            for tag in sorted(tags):
                typ, vals = tags[tag]
                raw, count = _pack(typ, vals)
                if len(raw) <= 4:
                    blob += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\0")
                else:
                    blob += struct.pack("<HHII", tag, typ, count, 8 + heads + len(values))
                    values += raw + b"\0" * (len(raw) % 2)
            blobs.append(blob + struct.pack("<I", 0))
        pos = 8 + heads + len(values)
        for tags, data in ifds:
            if data:
                tags[273] = (4, [pos])
                pos += len(data)
        if exif:
            ifds[0][0][34665] = (4, [offsets[1]])
        if subs:
            ifds[0][0][330] = (4, offsets[len(ifds) - len(subs) :])
        result = b"II*\0" + struct.pack("<I", 8) + b"".join(blobs) + values
        result += b"".join(data for _, data in ifds)
    return result


def _cfa(w: int, h: int) -> bytes:
    """RGGB mosaic of the test photo, 16-bit."""
    img = np.full((h, w, 3), 20000, np.uint16)
    img[:16, :16] = (60000, 3000, 3000)
    cfa = np.zeros((h, w), np.uint16)
    cfa[0::2, 0::2] = img[0::2, 0::2, 0]
    cfa[0::2, 1::2] = img[0::2, 1::2, 1]
    cfa[1::2, 0::2] = img[1::2, 0::2, 1]
    cfa[1::2, 1::2] = img[1::2, 1::2, 2]
    return cfa.astype("<u2").tobytes()


def _raw_ifd(w: int, h: int) -> dict:
    return {
        254: (4, [0]), 256: (4, [w]), 257: (4, [h]), 258: (3, [16]), 259: (3, [1]),
        262: (3, [32803]), 277: (3, [1]), 278: (4, [h]), 284: (3, [1]),
        33421: (3, [2, 2]), 33422: (1, bytes([0, 1, 1, 2])), 50717: (4, [65535]),
    }  # fmt: skip


def _dng_ifd0_tags(orientation: int) -> dict:
    identity = [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 1), (1, 1)]
    return {
        271: (2, "Canon"), 272: (2, "Canon EOS R6"), 274: (3, [orientation]),
        50706: (1, bytes([1, 4, 0, 0])), 50707: (1, bytes([1, 1, 0, 0])),
        50708: (2, "Canon EOS R6"), 50721: (10, identity),
        50728: (5, [(1, 1), (1, 1), (1, 1)]), 50778: (3, [21]),
    }  # fmt: skip


DNG_EXIF = {36867: (2, CAPTURE), 42033: (2, SERIAL)}


def make_dng(orientation: int = 6, preview: bool = False, w: int = W, h: int = H) -> bytes:
    """A DNG of the test photo: raw CFA in IFD0, or a JPEG preview in IFD0
    with the raw in a SubIFD (the layout cameras and converters use)."""
    if not preview:
        return build_tiff({**_raw_ifd(w, h), **_dng_ifd0_tags(orientation)}, _cfa(w, h), DNG_EXIF)
    jpg = encode("JPEG", photo(w, h), quality=95)
    ifd0 = {
        254: (4, [1]), 256: (4, [w]), 257: (4, [h]), 258: (3, [8, 8, 8]), 259: (3, [7]),
        262: (3, [6]), 277: (3, [3]), 278: (4, [h]), 284: (3, [1]),
        **_dng_ifd0_tags(orientation),
    }  # fmt: skip
    return build_tiff(ifd0, jpg, DNG_EXIF, subs=[(_raw_ifd(w, h), _cfa(w, h))])


def bmff_box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    """One small valid file per format, with Canon EXIF and orientation 6."""
    im = photo()
    exif = canon_exif(orientation=6)
    out = {name: encode(name, im, exif) for name in FORMATS}
    return out


# --------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_sniff_by_magic_bytes(seeds, name):
    assert imageio.sniff_format(seeds[name]) == FORMATS[name][0]


def test_sniff_raw_variants():
    cr2_header = b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(64)
    cr3_header = bmff_box(b"ftyp", b"crx \x00\x00\x00\x01crx isom") + bytes(64)
    assert imageio.sniff_format(cr2_header) == "raw"
    assert imageio.sniff_format(cr3_header) == "raw"
    assert imageio.sniff_format(make_dng()) == "raw"
    # Same TIFF structure without the DNGVersion tag is a plain TIFF.
    plain = build_tiff({256: (4, [2]), 257: (4, [2]), 258: (3, [8]), 259: (3, [1]),
                        262: (3, [1]), 277: (3, [1]), 278: (4, [2])}, bytes(4))  # fmt: skip
    assert imageio.sniff_format(plain) == "tiff"


def test_sniff_refuses_other_camera_raws():
    # A NEF/ARW-like TIFF (CFA data, no DNGVersion) must not be read as its
    # IFD0 thumbnail: it is refused outright.
    nef_like = build_tiff(_raw_ifd(W, H), _cfa(W, H))
    with pytest.raises(UnsupportedFormat):
        imageio.sniff_format(nef_like)
    with pytest.raises(UnsupportedFormat):
        imageio.decode(nef_like)


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a" + bytes(40),
        b"BM" + bytes(60),
        b"%PDF-1.7\n" + bytes(40),
        b"hello, this is a text file\n",
        bmff_box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + bytes(40),  # MP4 video
        b"II+\x00\x08\x00\x00\x00" + bytes(40),  # BigTIFF
        np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    ],
    ids=["gif", "bmp", "pdf", "text", "mp4", "bigtiff", "random"],
)
def test_unknown_formats_are_unsupported(data):
    for fn in (imageio.sniff_format, imageio.probe, imageio.decode, imageio.render_preview):
        with pytest.raises(UnsupportedFormat):
            fn(data)


def test_zero_length_is_unsupported():
    for fn in (imageio.sniff_format, imageio.probe, imageio.decode, imageio.render_preview):
        with pytest.raises(UnsupportedFormat, match="empty"):
            fn(b"")


def test_non_bytes_input_is_invalid(tmp_path):
    # A path (str) must never be opened as a file.
    for bad in (None, 42, "photo.jpg", tmp_path):
        with pytest.raises(InvalidInput):
            imageio.decode(bad)


# --------------------------------------------------------------------------
# Decoding and orientation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_decode_every_format_upright(seeds, name):
    # Stored 64x48 with orientation 6: shown 48 wide, 64 high, and the red
    # block from the stored top-left ends up top-right.
    arr = imageio.decode(seeds[name])
    assert arr.shape == (W, H, 3)
    assert arr.dtype == np.uint8 and arr.flags.writeable and arr.flags.c_contiguous
    assert red_corner(arr) == "tr"
    info = imageio.probe(seeds[name])
    assert (info.format, info.width, info.height) == (FORMATS[name][0], H, W)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_orientations_match_pillow_exif_transpose(orientation):
    from PIL import ImageOps

    im = photo()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode("PNG", im, exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    got = imageio.decode(data)
    assert np.array_equal(got, expected)
    info = imageio.probe(data)
    assert (info.height, info.width) == expected.shape[:2]


def test_lossless_formats_decode_exactly(seeds):
    expected = np.rot90(np.asarray(photo()), k=-1)  # orientation 6 = 90 deg clockwise
    for name in ("PNG", "TIFF", "WEBP"):
        assert np.array_equal(imageio.decode(seeds[name]), expected), name


def test_alpha_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 0)  # fully transparent black -> white
    rgba[0, 1] = (0, 0, 0, 255)  # opaque black stays black
    rgba[0, 2] = (0, 0, 0, 128)  # half transparent -> mid gray
    arr = imageio.decode(encode("PNG", Image.fromarray(rgba, "RGBA")))
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[0, 1]) == (0, 0, 0)
    assert 120 <= arr[0, 2, 0] <= 135
    la = imageio.decode(encode("PNG", Image.fromarray(rgba[..., [0, 3]], "LA")))
    assert tuple(la[0, 0]) == (255, 255, 255)
    # A palette image with a transparent index.
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 20, 30])
    pal.putpixel((1, 0), 1)
    arr = imageio.decode(encode("PNG", pal, transparency=0))
    assert tuple(arr[0, 0]) == (255, 255, 255) and tuple(arr[0, 1]) == (10, 20, 30)
    # An RGB image with a transparent colour key (PNG tRNS).
    keyed = Image.new("RGB", (2, 1), (10, 20, 30))
    keyed.putpixel((1, 0), (1, 2, 3))
    arr = imageio.decode(encode("PNG", keyed, transparency=(10, 20, 30)))
    assert tuple(arr[0, 0]) == (255, 255, 255) and tuple(arr[0, 1]) == (1, 2, 3)


def test_16_bit_and_grayscale_are_scaled_to_rgb8():
    gray16 = np.array([[0, 32768, 65535]], np.uint16)
    arr = imageio.decode(encode("PNG", Image.fromarray(gray16)))
    assert arr.shape == (1, 3, 3)
    assert arr[0, :, 0].tolist() == [0, 128, 255]  # scaled, not clipped
    assert np.all(arr[..., 0] == arr[..., 2])
    gray8 = imageio.decode(encode("JPEG", Image.new("L", (8, 8), 200), quality=100))
    assert gray8.shape == (8, 8, 3) and abs(int(gray8[4, 4, 1]) - 200) <= 2
    cmyk = imageio.decode(encode("JPEG", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=100))
    assert cmyk[4, 4, 0] > 200 and cmyk[4, 4, 1] < 60
    bilevel = imageio.decode(encode("TIFF", Image.new("1", (8, 8), 1)))
    assert bilevel.min() == 255


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FORMATS))
def test_metadata_extracted(seeds, name):
    info = imageio.probe(seeds[name])
    assert info.camera_make == "Canon"
    assert info.camera_model == "Canon EOS R6"
    assert info.camera_serial == SERIAL
    assert info.capture_time == datetime(2024, 3, 5, 14, 22, 1)
    assert imageio.render_preview(seeds[name])[1] == info


def test_identifying_fields_stay_out_of_repr(seeds):
    text = repr(imageio.probe(seeds["JPEG"]))
    assert SERIAL not in text and "2024" not in text
    assert "Canon EOS R6" in text


def test_missing_and_unset_metadata_is_none():
    info = imageio.probe(encode("JPEG", photo()))
    assert (info.capture_time, info.camera_make, info.camera_model, info.camera_serial) == (None,) * 4
    exif = canon_exif(serial=None)
    exif.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"  # camera clock never set
    info = imageio.probe(encode("JPEG", photo(), exif))
    assert info.capture_time is None and info.camera_serial is None


def test_canon_maker_note_serial_when_no_body_serial():
    exif = canon_exif(serial=None)
    # A Canon maker note is a bare IFD in the EXIF block's byte order; one
    # inline LONG (tag 0x000C, SerialNumber) needs no offsets, so it survives
    # wherever Pillow puts it.
    order = "<" if exif.tobytes()[6:8] == b"II" else ">"
    note = struct.pack(order + "HHHII", 1, 0x000C, 4, 1, 12345678) + struct.pack(order + "I", 0)
    exif.get_ifd(0x8769)[0x927C] = note
    assert imageio.probe(encode("JPEG", photo(), exif)).camera_serial == "0012345678"


def test_invalid_orientation_fails_closed():
    exif = Image.Exif()
    exif[0x0112] = 77
    with pytest.raises(InvalidInput, match="orientation"):
        imageio.decode(encode("JPEG", photo(), exif))


def test_cr3_metadata_from_canon_boxes():
    # A CR3 keeps IFD0 (CMT1), the EXIF IFD (CMT2) and maker notes (CMT3) as
    # TIFF blocks in moov/uuid. This fake has no decodable sensor data, so
    # its metadata is read directly and the public functions must refuse it.
    cmt1 = build_tiff({271: (2, "Canon"), 272: (2, "Canon EOS R6"), 274: (3, [1])})
    cmt2 = build_tiff({36867: (2, CAPTURE)})
    cmt3 = build_tiff({12: (4, [87654321])})
    uuid = b"uuid" + bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")
    canon = struct.pack(">I", 8 + 16 + 3 * 8 + len(cmt1) + len(cmt2) + len(cmt3)) + uuid
    canon += bmff_box(b"CMT1", cmt1) + bmff_box(b"CMT2", cmt2) + bmff_box(b"CMT3", cmt3)
    data = bmff_box(b"ftyp", b"crx \x00\x00\x00\x01crx isom") + bmff_box(b"moov", canon)
    data += bmff_box(b"mdat", bytes(256))
    assert imageio.sniff_format(data) == "raw"
    meta = imageio._cr3_metadata(data)
    assert (meta.make, meta.model, meta.serial) == ("Canon", "Canon EOS R6", "0087654321")
    assert meta.capture_time == datetime(2024, 3, 5, 14, 22, 1)
    for fn in (imageio.probe, imageio.decode, imageio.render_preview):
        with pytest.raises(InvalidInput):
            fn(data)


# --------------------------------------------------------------------------
# Previews
# --------------------------------------------------------------------------


def test_preview_carries_no_metadata():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = canon_exif(orientation=6)
    data = encode("JPEG", photo(1200, 800), exif, icc_profile=icc, comment=b"patient 4711")
    assert b"Exif" in data and b"ICC_PROFILE" in data and b"\xff\xfe" in data  # the source has all three
    preview, info = imageio.render_preview(data, max_side=300)
    assert b"Exif" not in preview and b"ICC_PROFILE" not in preview and b"patient" not in preview
    assert b"\xff\xfe" not in preview  # no COM marker, anywhere
    markers = jpeg_markers(preview)
    assert not [m for m in markers if 0xE1 <= m <= 0xEF or m == 0xFE]  # only JFIF APP0
    shown = Image.open(io.BytesIO(preview))
    assert shown.format == "JPEG" and shown.mode == "RGB"
    assert not shown.getexif() and "icc_profile" not in shown.info
    assert shown.size == (200, 300)  # portrait, long side == max_side
    assert red_corner(np.asarray(shown)) == "tr"
    assert (info.width, info.height) == (800, 1200)


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("max_side", [1, 20, 512])
def test_preview_size_and_orientation(seeds, name, max_side):
    preview, info = imageio.render_preview(seeds[name], max_side=max_side)
    shown = Image.open(io.BytesIO(preview))
    assert max(shown.size) == min(max_side, 64)  # shrunk, never enlarged
    assert shown.height >= shown.width  # portrait, like the oriented source
    assert b"Exif" not in preview and b"ICC_PROFILE" not in preview
    if max_side >= 32:
        assert red_corner(np.asarray(shown)) == "tr"


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "512", None])
def test_preview_rejects_bad_max_side(seeds, bad):
    with pytest.raises(InvalidInput):
        imageio.render_preview(seeds["PNG"], max_side=bad)


# --------------------------------------------------------------------------
# Camera raw (DNG built by hand; LibRaw reads it through rawpy)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("preview", [False, True], ids=["developed", "embedded-jpeg"])
def test_dng(preview):
    data = make_dng(orientation=6, preview=preview)
    assert imageio.sniff_format(data) == "raw"
    info = imageio.probe(data)
    assert (info.format, info.width, info.height) == ("raw", H, W)
    assert (info.camera_make, info.camera_model, info.camera_serial) == ("Canon", "Canon EOS R6", SERIAL)
    assert info.capture_time == datetime(2024, 3, 5, 14, 22, 1)
    arr = imageio.decode(data)
    assert arr.shape == (W, H, 3) and arr.dtype == np.uint8
    assert red_corner(arr) == "tr"
    jpeg, info2 = imageio.render_preview(data, max_side=32)
    assert info2 == info
    shown = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert shown.shape == (32, 24, 3) and red_corner(shown) == "tr"
    assert b"Exif" not in jpeg
    # The embedded preview is a plain JPEG (gray 128); a developed raw is not.
    used_thumbnail = abs(int(shown[-4, 4, 1]) - 128) <= 3
    assert used_thumbnail == preview


def test_truncated_dng_fails_closed():
    for preview in (False, True):
        data = make_dng(preview=preview)
        for cut in (len(data) // 2, len(data) - 1):
            for fn in (imageio.decode, imageio.render_preview):
                with pytest.raises(InvalidInput):
                    fn(data[:cut])


# --------------------------------------------------------------------------
# Failing closed: truncation, mislabelling, bombs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["JPEG", "PNG"])
@pytest.mark.parametrize("load_truncated", [False, True], ids=["default", "LOAD_TRUNCATED_IMAGES"])
def test_truncated_jpeg_and_png_raise(monkeypatch, name, load_truncated):
    # Some other module may switch Pillow's global leniency on; it must not
    # make a damaged copy pass.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    data = encode(name, photo(600, 400), canon_exif(), **({"quality": 90} if name == "JPEG" else {}))
    for cut in (len(data) // 2, len(data) - 2):
        for fn in (imageio.decode, imageio.render_preview):
            with pytest.raises(InvalidInput, match="truncated or corrupt") as err:
                fn(data[:cut])
            assert type(err.value) is InvalidInput


@pytest.mark.parametrize("name", ["TIFF", "WEBP", "HEIF", "AVIF"])
def test_truncated_other_formats_raise(seeds, name, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = seeds[name]
    for cut in (len(data) // 2, len(data) - 1):
        for fn in (imageio.decode, imageio.render_preview):
            with pytest.raises(InvalidInput) as err:
                fn(data[:cut])
            assert type(err.value) is InvalidInput


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # damaged tags, expected
def test_mislabelled_content_is_invalid(seeds):
    png, jpeg = seeds["PNG"], seeds["JPEG"]
    cases = {
        "jpeg magic, png body": b"\xff\xd8\xff" + png,
        "png signature, jpeg body": png[:8] + jpeg,
        "webp header, jpeg body": b"RIFF" + struct.pack("<I", len(jpeg) + 4) + b"WEBP" + jpeg,
        "heic brand, jpeg body": bmff_box(b"ftyp", b"heic\x00\x00\x00\x00mif1heic") + jpeg,
        "tiff header, garbage": b"II*\x00\x08\x00\x00\x00" + bytes(range(256)) * 4,
        "dng, png body": make_dng()[:64] + png,
    }
    for label, data in cases.items():
        for fn in (imageio.probe, imageio.decode, imageio.render_preview):
            with pytest.raises(InvalidInput) as err:
                fn(data)
            assert type(err.value) is InvalidInput, (label, fn.__name__)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1000))
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode("JPEG", photo(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _webp_canvas(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4)
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + b"VP8L" + struct.pack("<I", 6) + bytes(6)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _tiff_with_size(width: int, height: int) -> bytes:
    return build_tiff({256: (4, [width]), 257: (4, [height]), 258: (3, [8]), 259: (3, [1]),
                       262: (3, [1]), 277: (3, [1]), 278: (4, [height])}, bytes(64))  # fmt: skip


@pytest.mark.parametrize(
    "data",
    [
        _png_header(100_000, 100_000),
        _jpeg_with_size(60_000, 60_000),
        _webp_canvas(16_384, 16_384),
        _tiff_with_size(20_000, 20_000),
        _png_header(12_000, 10_001),  # just over MAX_PIXELS
    ],
    ids=["png-100k", "jpeg-60k", "webp-16k", "tiff-20k", "png-just-over"],
)
def test_decompression_bomb_header_is_refused_without_allocating(data, monkeypatch):
    # Our limit holds whatever Pillow's global says.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    for fn in (imageio.probe, imageio.decode, imageio.render_preview):
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(DecompressionBomb):
                fn(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert time.perf_counter() - started < 1.0
        assert peak < 5_000_000, peak


def test_pixel_limit_is_ours_not_pillows(monkeypatch):
    # A tiny Pillow limit (set by someone else) must not reject normal photos.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = encode("JPEG", photo())
    assert imageio.decode(data).shape == (H, W, 3)
    assert imageio.render_preview(data)[1].width == W
    assert imageio.MAX_PIXELS == 120_000_000


def test_errors_leak_no_metadata_and_advise(seeds):
    secret_serial = "SN-PATIENT-4711"
    data = encode("JPEG", photo(), canon_exif(serial=secret_serial))
    failures = [data[: len(data) // 2], b"\xff\xd8\xff" + seeds["PNG"], b"", b"junk" * 10]
    for bad in failures:
        for fn in (imageio.probe, imageio.decode, imageio.render_preview):
            try:
                fn(bad)
            except InvalidInput as exc:
                text = str(exc)
                assert secret_serial not in text and "EOS R6" not in text and "2024" not in text
                assert any(word in text for word in ("copy", "export", "do not", "convert"))
                assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
                assert exc.exit_code == 8


_writing = contextvars.ContextVar("writing", default=False)
_opened_for_write: list[str] = []


def _audit(event, args):
    if _writing.get() and event == "open" and len(args) > 1 and isinstance(args[1], str):
        if any(flag in args[1] for flag in "wax+"):
            _opened_for_write.append(str(args[0]))
    if _writing.get() and event in ("tempfile.mkstemp", "tempfile.mkdtemp"):
        _opened_for_write.append(event)


def test_nothing_is_written_to_disk(seeds):
    # Audit hooks cannot be removed, so this one only acts while the flag is set.
    if not getattr(sys, "_imageio_test_hook", False):
        sys.addaudithook(_audit)
        sys._imageio_test_hook = True
    token = _writing.set(True)
    try:
        for data in [*seeds.values(), make_dng(preview=True), make_dng()]:
            imageio.probe(data)
            imageio.decode(data)
            imageio.render_preview(data)
    finally:
        _writing.reset(token)
    assert _opened_for_write == []


# --------------------------------------------------------------------------
# Fuzz: random damage only ever raises InvalidInput subclasses
# --------------------------------------------------------------------------


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    buf = bytearray(data)
    op = rng.integers(4)
    if op == 0:  # flip a few bits
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(buf)))
            buf[i] ^= 1 << int(rng.integers(8))
    elif op == 1:  # truncate
        del buf[int(rng.integers(len(buf))) :]
    elif op == 2:  # insert random bytes
        i = int(rng.integers(len(buf) + 1))
        buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    else:  # overwrite a run, often in the header
        i = int(rng.integers(min(len(buf), 256)))
        n = int(rng.integers(1, 16))
        buf[i : i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(buf)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # damaged tags, expected
def test_fuzz_mutations_only_raise_invalid_input(seeds):
    rng = np.random.default_rng(20240305)
    names = ["JPEG", "PNG", "TIFF", "WEBP", "HEIF"]
    outcomes: dict[str, int] = {}
    for i in range(300):
        name = names[i % len(names)]
        data = _mutate(rng, seeds[name])
        for fn in (imageio.probe, imageio.decode, imageio.render_preview):
            try:
                result = fn(data)
            except InvalidInput as exc:
                key = type(exc).__name__
            else:
                key = "ok"
                if fn is imageio.decode:
                    assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
                if fn is imageio.render_preview:
                    assert result[0][:3] == b"\xff\xd8\xff"
            outcomes[key] = outcomes.get(key, 0) + 1
    print("\nfuzz outcomes:", outcomes)
    assert sum(outcomes.values()) == 900


# --------------------------------------------------------------------------
# Speed (printed, not asserted: the machine is shared)
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_preview_speed_20mp_jpeg():
    h, w = 3648, 5472
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.int16)
    base += rng.integers(-6, 7, (h, w, 1), dtype=np.int16)  # some sensor-like noise
    frame = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    data = encode("JPEG", frame, canon_exif(), quality=95)

    def best_of(fn, n=5) -> float:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            fn(data)
            times.append(time.perf_counter() - started)
        return min(times) * 1000

    def pillow_draft_only(data: bytes) -> None:
        # The floor: libjpeg-turbo still entropy-decodes every block at 1/8 scale.
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (512, 342))
        im.load()

    preview_ms = best_of(imageio.render_preview)
    floor_ms = best_of(pillow_draft_only)
    decode_ms = best_of(imageio.decode, n=3)
    probe_ms = best_of(imageio.probe)
    print(
        f"\n5472x3648 JPEG, {len(data) / 1e6:.1f} MB: render_preview {preview_ms:.0f} ms "
        f"(bare Pillow draft+load {floor_ms:.0f} ms), decode {decode_ms:.0f} ms, "
        f"probe {probe_ms:.2f} ms"
    )
    preview, _ = imageio.render_preview(data)
    assert max(Image.open(io.BytesIO(preview)).size) == 512


# --------------------------------------------------------------------------
# pixels_only: what a role without identities gets of an original
# --------------------------------------------------------------------------


def _exiftool_groups(data: bytes, tmp_path) -> dict[str, set[str]]:
    import shutil
    import subprocess

    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not installed (Debian: libimage-exiftool-perl)")
    path = tmp_path / "probe.bin"
    path.write_bytes(data)
    out = subprocess.run([exiftool, "-a", "-G1", "-s", "-u", "-U", str(path)],
                         capture_output=True, text=True, check=True).stdout
    groups: dict[str, set[str]] = {}
    for line in out.splitlines():
        group, rest = line.split("]", 1)
        groups.setdefault(group.strip("[ "), set()).add(rest.split(":", 1)[0].strip())
    return groups


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("name", ["JPEG", "PNG", "TIFF", "WEBP", "HEIF"])
def test_pixels_only_decodes_to_the_same_upright_pixels_without_the_camera(name, orientation):
    data = encode(name, photo(), canon_exif(orientation))
    pixels = imageio.pixels_only(data)
    assert np.array_equal(imageio.decode(pixels), imageio.decode(data))
    info = imageio.probe(pixels)
    assert (info.width, info.height) == (imageio.probe(data).width, imageio.probe(data).height)
    assert (info.camera_make, info.camera_model, info.camera_serial, info.capture_time) == (None,) * 4
    assert info.format == ("jpeg" if name == "JPEG" else "png")
    for text in ("Canon", SERIAL, CAPTURE):
        assert text.encode() not in pixels


@pytest.mark.parametrize("kw", [{"progressive": True}, {"restart_marker_blocks": 1}, {"subsampling": 2}])
def test_pixels_only_copies_a_jpegs_coded_image_byte_for_byte(kw):
    data = encode("JPEG", photo(640, 480), canon_exif(6), **kw)
    pixels = imageio.pixels_only(data)
    first_table = data.index(b"\xff\xdb")
    assert data[first_table:data.rindex(b"\xff\xd9")] in pixels  # tables, frame and scans untouched
    assert np.array_equal(imageio.decode(pixels), imageio.decode(data))


def test_pixels_only_keeps_the_colour_profile(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    for name in ("JPEG", "PNG"):
        data = encode(name, photo(), canon_exif(8), icc_profile=icc)
        kept = Image.open(io.BytesIO(imageio.pixels_only(data))).info.get("icc_profile")
        assert kept == icc, name


def test_exiftool_finds_nothing_but_orientation_in_a_jpegs_pixels(tmp_path):
    original = encode("JPEG", photo(), canon_exif(6), comment=b"ZZTEST ward")
    groups = _exiftool_groups(original, tmp_path)
    assert "ExifIFD" in groups and "Comment" in groups.get("File", set())  # the check can fail
    groups = _exiftool_groups(imageio.pixels_only(original), tmp_path)
    assert groups.get("IFD0") == {"Orientation"}
    assert set(groups) <= {"ExifTool", "System", "File", "JFIF", "IFD0", "Composite"}, groups
    assert "Comment" not in groups["File"]


@pytest.mark.parametrize("cut", [10, 200, -3])
def test_pixels_only_refuses_a_truncated_file(cut):
    data = encode("JPEG", photo(), canon_exif(6))
    with pytest.raises(InvalidInput):
        imageio.pixels_only(data[:cut])


@pytest.mark.parametrize("name", ["JPEG", "PNG", "TIFF", "WEBP", "HEIF"])
def test_split_metadata_joins_back_to_the_file_byte_for_byte(name):
    data = encode(name, photo(640, 480), canon_exif(6))
    if name == "JPEG":
        data += b"ZZTEST a second image or a trailer"
    pixels, rest = imageio.split_metadata(data)
    assert imageio.join_metadata(pixels, rest) == data
    assert SERIAL.encode() not in pixels and SERIAL.encode() in rest
    if name in ("JPEG", "PNG"):  # the coded image is stored once, in the pixels file
        assert len(rest) < len(data) // 4, (len(rest), len(data))
        with pytest.raises(InvalidInput):
            imageio.join_metadata(pixels[:-100], rest)  # a rest that refers past the pixels' end
    with pytest.raises(InvalidInput):
        imageio.join_metadata(pixels, b"not a split")
