"""Lossless JPEG redaction: untouched blocks stay bit-identical, metadata goes, nothing hits disk.

Every test runs with both libraries (TurboJPEG and jpeglib's build, see
``_lossless._choose_backend``) unless it is marked for one; a section at the
end checks that they agree and what only one of them does.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from workbench import _synth
from workbench.deid import _lossless
from workbench.deid._lossless import read_coefficients, redact_jpeg_lossless
from workbench.errors import DecompressionBomb, InvalidInput, UnsupportedFormat, WorkbenchError

ROOT = Path(__file__).resolve().parent.parent
EXIFTOOL = shutil.which("exiftool")
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
# Planted identifiers: none of them may survive.
PLANTED = {
    "make": "ZZMAKE-Canon",
    "artist": "ZZARTIST-Jane Roe",
    "description": "ZZDESC-MRN-0042",
    "comment": "ZZCOM-MRN-0042",
    "xmp": "ZZXMP-PersonInImage",
    "iptc": "ZZIPTC-ObjectName",
}
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# exiftool's File group also holds the JPEG comment and the EXIF byte order;
# only these structural File tags may be listed for an output.
FILE_STRUCTURE = {"FileType", "FileTypeExtension", "MIMEType", "ImageWidth", "ImageHeight",
                  "EncodingProcess", "BitsPerSample", "ColorComponents", "YCbCrSubSampling"}
# Face-, label- and edge-sized boxes in the oriented frame of a 1024x768 photo.
BOXES = [(300, 200, 90, 60), (10, 700, 200, 30), (990, 5, 100, 100)]
BACKENDS = ["turbojpeg", "jpeglib"]
CJPEG = shutil.which("cjpeg")


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request, monkeypatch):
    """The library redact_jpeg_lossless uses; a test picks one with indirect parametrize."""
    if request.param == "turbojpeg" and _lossless._turbojpeg() is None:
        pytest.skip("libturbojpeg.so.0 is not installed (Debian: libturbojpeg0)")
    monkeypatch.setattr(_lossless, "_backend", request.param)
    return request.param


def only(*names):
    """Run a test with these backends only (the others would test nothing new)."""
    return pytest.mark.parametrize("backend", names, indirect=True)


# --------------------------------------------------------------------------
# Generated photos
# --------------------------------------------------------------------------


def _pixels(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour structure plus noise: every block has real AC content."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.BILINEAR), dtype=np.int16)
    noisy = smooth + rng.integers(-24, 25, smooth.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _segment(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _jpeg(width=1024, height=768, *, subsampling="4:2:0", orientation=None, planted=False,
          progressive=False, seed=0, quality=92) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if planted:
        exif[0x010F] = PLANTED["make"]
        exif[0x013B] = PLANTED["artist"]
        exif[0x010E] = PLANTED["description"]
    extra = {"icc_profile": SRGB} if planted else {}
    buf = io.BytesIO()
    _pixels(width, height, seed).save(buf, "JPEG", quality=quality, subsampling=SUBSAMPLING[subsampling],
                                      progressive=progressive, exif=exif, **extra)
    data = buf.getvalue()
    if planted:
        xmp = (b"http://ns.adobe.com/xap/1.0/\x00<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"
               b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
               b"xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description rdf:about='' "
               b"xmlns:dc='http://purl.org/dc/elements/1.1/'><dc:creator><rdf:Seq><rdf:li>"
               + PLANTED["xmp"].encode()
               + b"</rdf:li></rdf:Seq></dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
               b"<?xpacket end='w'?>")
        name = PLANTED["iptc"].encode()
        iptc = b"\x1c\x02\x05" + len(name).to_bytes(2, "big") + name
        app13 = (b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + len(iptc).to_bytes(4, "big") + iptc
                 + b"\x00" * (len(iptc) % 2))
        segments = (_segment(0xE1, xmp) + _segment(0xED, app13)
                    + _segment(0xFE, PLANTED["comment"].encode()))
        data = data[:2] + segments + data[2:]
    return data


def _decode(data: bytes, upright: bool = False) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    if upright:
        im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGB"), dtype=np.int16)


def _touched(coef: dict, blanked) -> list[np.ndarray]:
    """Per component, a (rows, cols) mask of the blocks inside the blanked MCUs."""
    samp = coef["samp_factor"]
    vmax, hmax = samp[:, 0].max(), samp[:, 1].max()
    masks = []
    for name, (v, h) in zip(("Y", "Cb", "Cr"), samp):
        plane = coef[name]
        mask = np.zeros(plane.shape[:2], dtype=bool)
        for x, y, w, hh in blanked:
            mask[y // (vmax * 8) * v:-(-(y + hh) // (vmax * 8)) * v,
                 x // (hmax * 8) * h:-(-(x + w) // (hmax * 8)) * h] = True
        masks.append(mask)
    return masks


def _markers(data: bytes) -> list[int]:
    """Marker codes up to and including the first SOS, then the last two bytes."""
    codes, pos = [], 2
    while True:
        assert data[pos] == 0xFF
        code = data[pos + 1]
        codes.append(code)
        if code == 0xDA:
            return codes
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")


# --------------------------------------------------------------------------
# (a) untouched coefficients, (b) fill colour
# --------------------------------------------------------------------------


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("subsampling", list(SUBSAMPLING))
def test_blocks_outside_the_touched_mcus_are_bit_identical(subsampling, progressive):
    data = _jpeg(subsampling=subsampling, progressive=progressive)
    out, blanked = redact_jpeg_lossless(data, BOXES, fill=(0, 0, 0))
    before, after = read_coefficients(data), read_coefficients(out)
    assert np.array_equal(before["samp_factor"], after["samp_factor"])
    assert np.array_equal(before["qt"], after["qt"])
    masks = _touched(after, blanked)
    for name, mask, qt in zip(("Y", "Cb", "Cr"), masks, after["qt"]):
        a, b = before[name], after[name]
        assert a.shape == b.shape
        assert mask.any() and not mask.all()
        assert np.array_equal(a[~mask], b[~mask]), name
        # inside: nothing but a DC term
        assert not b[mask].reshape(-1, 64)[:, 1:].any()
        assert len(np.unique(b[mask][:, 0, 0])) == 1
    # the returned boxes are MCU-aligned, cover the requested ones, and stay in the image
    mcu_w, mcu_h = 8 * after["samp_factor"][:, 1].max(), 8 * after["samp_factor"][:, 0].max()
    for (x, y, w, h), (bx, by, bw, bh) in zip(blanked, BOXES):
        assert x % mcu_w == 0 and y % mcu_h == 0
        assert x <= bx and y <= by and x + w >= min(1024, bx + bw) and y + h >= min(768, by + bh)
        assert x + w <= 1024 and y + h <= 768
        assert (x + w) % mcu_w == 0 or x + w == 1024
        assert (y + h) % mcu_h == 0 or y + h == 768


@pytest.mark.parametrize("fill", [(0, 0, 0), (255, 255, 255), (0, 160, 60), (200, 30, 90)])
@pytest.mark.parametrize("subsampling", list(SUBSAMPLING))
def test_touched_mcus_decode_to_the_fill_colour(subsampling, fill):
    data = _jpeg(subsampling=subsampling)
    out, blanked = redact_jpeg_lossless(data, BOXES, fill=fill)
    pixels = _decode(out)
    # Decoders interpolate subsampled chroma across block edges, so the
    # outermost pixel ring of a blanked area mixes with its neighbours.
    ring = 0 if subsampling == "4:4:4" else 1
    for x, y, w, h in blanked:
        inner = pixels[y + ring:y + h - ring, x + ring:x + w - ring]
        assert np.abs(inner - np.array(fill)).max() <= 2, (fill, (x, y, w, h))


def test_greyscale_and_odd_sizes():
    buf = io.BytesIO()
    _pixels(1001, 751).convert("L").save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    out, blanked = redact_jpeg_lossless(data, [(990, 745, 50, 50), (0, 0, 3, 3)], fill=(255, 255, 255))
    assert blanked == [(984, 744, 17, 7), (0, 0, 8, 8)]  # 8x8 MCUs, clipped at the edges
    before, after = read_coefficients(data), read_coefficients(out)
    assert after["Cb"] is None and after["Y"].shape == before["Y"].shape == (94, 126, 8, 8)
    mask = np.zeros(after["Y"].shape[:2], dtype=bool)
    mask[93:, 123:] = mask[0, 0] = True
    assert np.array_equal(before["Y"][~mask], after["Y"][~mask])
    assert np.asarray(Image.open(io.BytesIO(out)))[0:8, 0:8].min() >= 253


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2"])
def test_orientation_1_with_odd_dimensions(subsampling):
    data = _jpeg(1001, 751, subsampling=subsampling, orientation=1)
    out, blanked = redact_jpeg_lossless(data, [(995, 745, 40, 40), (500, 300, 1, 1)])
    assert blanked[0][0] + blanked[0][2] == 1001 and blanked[0][1] + blanked[0][3] == 751
    before, after = read_coefficients(data), read_coefficients(out)
    for name, mask in zip(("Y", "Cb", "Cr"), _touched(after, blanked)):
        assert np.array_equal(before[name][~mask], after[name][~mask])
    assert Image.open(io.BytesIO(out)).size == (1001, 751)


@pytest.mark.parametrize("tables", [[list(range(1, 65)), [2] * 64, [300] * 64], [[300] * 64, [2] * 64]],
                         ids=["three-tables", "16-bit-table"])
def test_unusual_quantisation_tables_are_kept(tables):
    # One table per component, and steps over 255 (16-bit DQT, SOF1 frame).
    buf = io.BytesIO()
    _pixels(160, 128).save(buf, "JPEG", qtables=tables, subsampling=0)
    data = buf.getvalue()
    out, blanked = redact_jpeg_lossless(data, [(10, 10, 20, 20)])
    before, after = read_coefficients(data), read_coefficients(out)
    assert np.array_equal(before["qt"], after["qt"])
    for name, mask in zip(("Y", "Cb", "Cr"), _touched(after, blanked)):
        assert np.array_equal(before[name][~mask], after[name][~mask])


def test_restart_markers_and_data_after_the_end_marker():
    # Some cameras append data (a second image, maker blobs) after EOI; it is
    # never copied. Restart intervals are read and not needed in the output.
    buf = io.BytesIO()
    _pixels(320, 256).save(buf, "JPEG", quality=90, restart_marker_blocks=7)
    data = buf.getvalue()
    if b"\xff\xdd" not in data:
        pytest.skip("this Pillow cannot write restart markers")
    out, blanked = redact_jpeg_lossless(data + b"ZZTRAILER-MRN-0042" * 10, [(10, 10, 20, 20)])
    assert b"ZZTRAILER" not in out and b"\xff\xdd" not in out
    before, after = read_coefficients(data), read_coefficients(out)
    for name, mask in zip(("Y", "Cb", "Cr"), _touched(after, blanked)):
        assert np.array_equal(before[name][~mask], after[name][~mask])


# --------------------------------------------------------------------------
# (c) metadata
# --------------------------------------------------------------------------


def _exiftool_groups(data: bytes) -> list[tuple[str, str]]:
    # stdin, not a file: the test photo stays off the disk like real ones
    out = subprocess.run([EXIFTOOL, "-a", "-G1", "-s", "-u", "-U", "-"], input=data,
                         capture_output=True, check=True).stdout.decode()
    rows = []
    for line in out.splitlines():
        group, rest = line.split("]", 1)
        rows.append((group.strip("[ "), rest.split(":", 1)[0].strip()))
    return rows


def _assert_bare(out: bytes, exiftool: bool = True) -> None:
    codes = _markers(out)  # JFIF APP0, then only tables and one frame up to the scan
    assert codes[0] == 0xE0 and codes[-1] == 0xDA
    assert set(codes[1:-1]) <= {0xDB, 0xC4, 0xC0, 0xC1} and codes.count(0xC0) + codes.count(0xC1) == 1
    assert out[6:11] == b"JFIF\x00"
    assert out[:2] == b"\xff\xd8" and out[-2:] == b"\xff\xd9"
    for needle in (b"Exif", b"http://ns.adobe.com", b"Photoshop", b"ICC_PROFILE", b"\xff\xfe", b"8BIM"):
        assert needle not in out, needle
    if EXIFTOOL and exiftool:
        for group, tag in _exiftool_groups(out):
            # ExifTool (its own version) and System (the pipe) describe the
            # tool and the stream, not the file's contents.
            assert group in ("File", "JFIF", "Composite", "ExifTool", "System"), (group, tag)
            assert group != "File" or tag in FILE_STRUCTURE, tag


def test_all_metadata_is_dropped():
    data = _jpeg(orientation=6, planted=True)
    assert all(text.encode() in data for text in PLANTED.values())
    out, _ = redact_jpeg_lossless(data, [(10, 10, 20, 20)])
    for text in PLANTED.values():
        assert text.encode() not in out, text
    _assert_bare(out)


def test_jfif_segment_is_plain_and_colour_is_decided_by_our_walk():
    # A scanner's 300 dpi is not copied; component ids "R", "G", "B" next to
    # a JFIF segment still mean YCbCr (JFIF says so), as libjpeg reads it.
    buf = io.BytesIO()
    _pixels(256, 192).save(buf, "JPEG", quality=90, dpi=(300, 300))
    data = bytearray(buf.getvalue())
    sof, sos = _sof_offset(bytes(data)), data.index(b"\xff\xda")
    for i, cid in enumerate(b"RGB"):
        data[sof + 10 + 3 * i] = data[sos + 5 + 2 * i] = cid
    data = bytes(data)
    assert data[2:20] != _lossless._JFIF  # the input's own JFIF has a density
    out, blanked = redact_jpeg_lossless(data, [(0, 0, 8, 8)])
    assert out[2:20] == b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    assert np.abs(_decode(out) - _decode(data))[16:, 16:].max() <= 4


def test_synthetic_camera_photo_loses_every_planted_identifier():
    # EXIF with maker note, GPS and an IFD1 thumbnail (with its own comment),
    # XMP, IPTC and a COM segment, as the project's camera simulator writes.
    data, info = _synth.synth_photo(np.random.default_rng(5), width=1024, height=768, quality=92)
    out, _ = redact_jpeg_lossless(data, [(400, 300, 200, 200)])
    assert info["strings"]
    for text in info["strings"]:
        assert text.encode() not in out, text
    _assert_bare(out)


@only("jpeglib")  # no redaction here
@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed")
def test_exiftool_sees_the_planted_metadata_in_the_input(backend):
    # guards the check above: the same call does list metadata when it is there
    tags = _exiftool_groups(_jpeg(orientation=6, planted=True))
    groups = {group for group, _ in tags}
    assert {"IFD0", "IPTC", "ICC_Profile"} <= groups
    assert any(group.startswith("XMP") for group in groups)
    assert ("File", "Comment") in tags


# --------------------------------------------------------------------------
# (d) orientation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("subsampling", list(SUBSAMPLING))
@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_output_is_upright_and_matches_exif_transpose(orientation, subsampling):
    data = _jpeg(orientation=orientation, subsampling=subsampling, planted=True)
    expected = _decode(data, upright=True)
    height, width = expected.shape[:2]
    boxes = [(width // 3, height // 4, 100, 70), (width - 40, 0, 40, 40)]
    fill = (0, 200, 0)
    out, blanked = redact_jpeg_lossless(data, boxes, fill=fill)
    got = _decode(out)
    assert got.shape == expected.shape  # stored upright: no EXIF is left to turn it
    assert b"Exif" not in out
    # Outside the blanked MCUs (and the 1-pixel ring of chroma interpolation)
    # the pixels are those of the upright original, up to IDCT rounding.
    ring = 0 if subsampling == "4:4:4" else 1
    outside = np.ones((height, width), dtype=bool)
    for x, y, w, h in blanked:
        outside[max(0, y - ring):y + h + ring, max(0, x - ring):x + w + ring] = False
    diff = np.abs(got - expected)[outside]
    assert diff.max() <= 4 and diff.mean() < 0.5, (diff.max(), diff.mean())
    # and the blanked boxes sit where the upright boxes asked
    for (x, y, w, h), (bx, by, bw, bh) in zip(blanked, boxes):
        assert x <= bx and y <= by and x + w >= min(width, bx + bw) and y + h >= min(height, by + bh)
        assert w < bw + 32 and h < bh + 32
        inner = got[y + ring:y + h - ring, x + ring:x + w - ring]
        assert np.abs(inner - np.array(fill)).max() <= 2


def test_orientation_6_with_partial_mcus_is_refused():
    # 1000 x 750 is not a whole number of 16x16 MCUs either way
    data = _jpeg(1000, 750, orientation=6)
    with pytest.raises(InvalidInput, match="run without --lossless"):
        redact_jpeg_lossless(data, [(10, 10, 10, 10)])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_only_orientations_that_move_a_partial_mcu_are_refused(orientation):
    # 1024 x 750: whole MCU columns, but the bottom MCU row is partial. Any
    # transform that brings the bottom edge to the top or left (4, 3, 6, 7)
    # would put its padding inside the picture; the others are exact, as
    # with jpegtran -perfect.
    data = _jpeg(1024, 750, orientation=orientation)
    if orientation in (3, 4, 6, 7):
        with pytest.raises(InvalidInput, match="run without --lossless"):
            redact_jpeg_lossless(data, [(10, 10, 10, 10)])
        return
    out, _ = redact_jpeg_lossless(data, [(10, 10, 10, 10)])
    got, expected = _decode(out), _decode(data, upright=True)
    assert got.shape == expected.shape
    assert np.abs(got - expected)[40:, 40:].max() <= 4


def test_invalid_orientation_value_is_refused():
    with pytest.raises(InvalidInput):
        redact_jpeg_lossless(_jpeg(256, 256, orientation=9), [])


# --------------------------------------------------------------------------
# (e) determinism, arguments
# --------------------------------------------------------------------------


def test_same_input_same_bytes():
    data = _jpeg(orientation=6, planted=True, progressive=True)
    first = redact_jpeg_lossless(data, BOXES, fill=(10, 20, 30))
    redact_jpeg_lossless(_jpeg(seed=3), [(0, 0, 500, 500)])  # unrelated work in between
    assert redact_jpeg_lossless(data, BOXES, fill=(10, 20, 30)) == first


def test_boxes_outside_are_ignored_and_no_boxes_is_a_metadata_strip():
    data = _jpeg(planted=True)
    out, blanked = redact_jpeg_lossless(data, [(2000, 10, 50, 50), (-100, -100, 50, 50)])
    assert blanked == []
    before, after = read_coefficients(data), read_coefficients(out)
    for name in ("Y", "Cb", "Cr"):
        assert np.array_equal(before[name], after[name])
    _assert_bare(out)


@pytest.mark.parametrize("boxes", [[(1, 2, 3)], [(0, 0, 0, 10)], [(0, 0, 10, -1)], [("a", 0, 1, 1)],
                                   [(0, 0, float("nan"), 1)], None])
@only("jpeglib")  # refused before any library is called
def test_malformed_boxes(boxes, backend):
    with pytest.raises(InvalidInput):
        redact_jpeg_lossless(_jpeg(64, 64), boxes)


@pytest.mark.parametrize("fill", [(0, 0), (0, 0, 256), (0, 0, -1), (0.5, 0, 0), "red", (True, 0, 0)])
@only("jpeglib")  # refused before any library is called
def test_malformed_fill(fill, backend):
    with pytest.raises(InvalidInput):
        redact_jpeg_lossless(_jpeg(64, 64), [], fill=fill)


# --------------------------------------------------------------------------
# (f) bad inputs
# --------------------------------------------------------------------------


def _sof_offset(data: bytes) -> int:
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return pos


def _cmyk() -> bytes:
    buf = io.BytesIO()
    _pixels(64, 64).convert("CMYK").save(buf, "JPEG")
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    _pixels(64, 64).save(buf, "PNG")
    return buf.getvalue()


def _cut_before_last_scan() -> bytes:
    data = _jpeg(64, 64, progressive=True)
    return data[:data.rfind(b"\xff\xda")]


def _patched(offset_from_sof: int, value: bytes, progressive=False) -> bytes:
    data = bytearray(_jpeg(64, 64, progressive=progressive))
    at = _sof_offset(bytes(data)) + offset_from_sof
    data[at:at + len(value)] = value
    return bytes(data)


@pytest.mark.parametrize("make, error", [
    (lambda: b"", UnsupportedFormat),
    (lambda: b"\xff\xd8", UnsupportedFormat),  # too short to be told from other data
    (lambda: b"\xff\xd8\xff", InvalidInput),
    (lambda: np.random.default_rng(1).bytes(3000), UnsupportedFormat),
    (lambda: b"\xff\xd8\xff" + bytes(range(256)) * 4, InvalidInput),
    (_png, UnsupportedFormat),
    (_cmyk, UnsupportedFormat),
    (lambda: _jpeg(64, 64)[:-2], InvalidInput),  # no EOI
    (lambda: _jpeg(64, 64)[:-100], InvalidInput),  # cut inside the scan
    (lambda: _cut_before_last_scan(), InvalidInput),  # cut between progressive scans
    (lambda: _jpeg(64, 64)[:300], InvalidInput),  # cut inside the headers
    (lambda: _patched(1, b"\xc9"), UnsupportedFormat),  # arithmetic coding
    (lambda: _patched(1, b"\xc3"), UnsupportedFormat),  # lossless JPEG
    (lambda: _patched(1, b"\xc5"), UnsupportedFormat),  # hierarchical
    (lambda: _patched(4, b"\x0c"), UnsupportedFormat),  # 12-bit samples
    (lambda: _patched(5, b"\xff\xff\xff\xff"), DecompressionBomb),  # 65535 x 65535
    (lambda: _patched(5, b"\x4e\x20\x4e\x20"), DecompressionBomb),  # 20000 x 20000
    (lambda: _patched(5, b"\x00\x00"), InvalidInput),  # height 0 (DNL)
    (lambda: _patched(5, b"\x00\x01\xff\xdd"), InvalidInput),  # wider than libjpeg's 65500
    (lambda: _patched(9, b"\x02"), InvalidInput),  # component count disagrees with the length
    (lambda: _patched(14, b"\x31"), UnsupportedFormat),  # chroma 3x1 against luma 2x2
    (lambda: _patched(11, b"\x55"), InvalidInput),  # sampling factor 5
    (lambda: _patched(11, b"\x00"), InvalidInput),  # zero sampling factor
    (lambda: _patched(12, b"\x07"), InvalidInput),  # quantisation table 7
])
def test_bad_inputs_raise_the_right_error(make, error):
    with pytest.raises(error):
        redact_jpeg_lossless(make(), [(0, 0, 8, 8)])


def test_rgb_coded_jpeg_is_refused():
    buf = io.BytesIO()
    try:
        _pixels(64, 64).save(buf, "JPEG", keep_rgb=True)
    except TypeError:
        pytest.skip("this Pillow cannot write RGB-coded JPEG")
    with pytest.raises(UnsupportedFormat):
        redact_jpeg_lossless(buf.getvalue(), [])


def test_bomb_is_refused_before_allocating():
    data = _patched(5, b"\xff\xff\xff\xff")
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionBomb):
            redact_jpeg_lossless(data, [(0, 0, 8, 8)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_corrupt_scan_data_is_refused_silently(capfd):
    data = bytearray(_jpeg(256, 256))
    start = data.rfind(b"\xff\xda")
    data[start + 200:start + 260] = bytes(range(1, 61))  # mangled Huffman codes, no markers
    with pytest.raises(InvalidInput):
        redact_jpeg_lossless(bytes(data), [(0, 0, 8, 8)])
    # libjpeg's "Corrupt JPEG data" warning was caught, not printed
    out, err = capfd.readouterr()
    assert out == "" and err == ""


_FUZZ = r"""
import io, json, sys
import numpy as np
from PIL import Image
from workbench.deid._lossless import redact_jpeg_lossless
from workbench.errors import WorkbenchError

rng = np.random.default_rng(20240611)
seeds = []
for progressive in (False, True):
    px = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    exif = Image.Exif(); exif[0x0112] = 1; exif[0x013B] = "ZZ fuzz"
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "JPEG", quality=85, progressive=progressive, exif=exif)
    seeds.append(buf.getvalue())
counts, other = {}, []
for i in range(int(sys.argv[1])):
    data = bytearray(seeds[i % 2])
    kind = int(rng.integers(0, 6))
    # most mutations land in the headers, where parsing errors live
    limit = len(data) if kind == 5 else min(len(data), 700)
    at = int(rng.integers(0, limit))
    if kind == 0:
        data[at] = int(rng.integers(0, 256))
    elif kind == 1:
        for _ in range(int(rng.integers(2, 12))):
            data[int(rng.integers(0, limit))] ^= 1 << int(rng.integers(0, 8))
    elif kind == 2:
        del data[at:at + int(rng.integers(1, 40))]
    elif kind == 3:
        data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8))
    elif kind == 4:
        data = data[:at]
    else:
        data[at:at + 4] = bytes(rng.integers(0, 256, 4, dtype=np.uint8))
    try:
        out, _ = redact_jpeg_lossless(bytes(data), [(4, 4, 20, 10)])
        Image.open(io.BytesIO(out)).load()  # what comes out must decode
        name = "ok"
    except WorkbenchError as exc:
        name = type(exc).__name__
    except BaseException as exc:
        name = "other"
        other.append(f"{i} {kind} {type(exc).__name__}: {exc}"[:300])
    counts[name] = counts.get(name, 0) + 1
print(json.dumps({"counts": counts, "other": other}))
"""


def test_mutated_files_only_raise_workbench_errors(backend):
    # In a child process: a libjpeg abort would kill it, and that must show
    # up as a failure here rather than take the test run down.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_LOSSLESS_BACKEND": backend}
    proc = subprocess.run([sys.executable, "-c", _FUZZ, "200"], cwd=ROOT, capture_output=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode()[-2000:])
    assert proc.stderr == b""  # nothing printed by libjpeg: no print-and-continue
    result = json.loads(proc.stdout)
    assert result["other"] == []
    assert sum(result["counts"].values()) == 200
    assert result["counts"].get("InvalidInput", 0) > 50  # the mutations did bite


# --------------------------------------------------------------------------
# No plaintext on disk
# --------------------------------------------------------------------------


def test_no_temporary_files_and_only_memory_paths(monkeypatch, tmp_path, backend):
    calls, memfds = [], []

    def recording(name):
        original = getattr(tempfile, name)

        def wrapper(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)
        return wrapper

    for name in ("NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile", "mkstemp", "mkdtemp",
                 "TemporaryDirectory"):
        monkeypatch.setattr(tempfile, name, recording(name))
    empty = tmp_path / "tmpdir"
    empty.mkdir()
    monkeypatch.setenv("TMPDIR", str(empty))
    monkeypatch.setattr(tempfile, "tempdir", None)  # make tempfile re-read TMPDIR
    memfd_create = os.memfd_create
    monkeypatch.setattr(os, "memfd_create", lambda *args: memfds.append(args) or memfd_create(*args))

    # every path libjpeg is given must be an in-memory file
    lib = _lossless._lib()
    paths = []

    class Recorder:
        def read_jpeg_dct(self, path, *args):
            paths.append(path)
            return lib.read_jpeg_dct(path, *args)

        def write_jpeg_dct(self, src, dst, *args):
            paths.extend([src, dst])
            return lib.write_jpeg_dct(src, dst, *args)

    monkeypatch.setattr(_lossless, "_lib", Recorder)
    data = _jpeg(orientation=6, planted=True)
    fds_before = sorted(os.listdir("/proc/self/fd"))
    out, _ = redact_jpeg_lossless(data, BOXES)
    if backend == "turbojpeg":
        # buffers only: not even an in-memory file, and jpeglib is not called
        assert memfds == [] and paths == []
    read_coefficients(out)  # always jpeglib's build
    assert sorted(os.listdir("/proc/self/fd")) == fds_before  # every memfd closed
    assert calls == []
    assert list(empty.iterdir()) == []
    if backend == "jpeglib":
        assert paths[1] is None  # no source file: jpeglib would copy it
        paths = paths[:1] + paths[2:]
    for path in paths:
        assert path.startswith(b"/proc/self/fd/"), path


def test_jpeglib_library_choice_is_left_alone():
    # we load jpeglib's libjpeg-turbo build by path instead of switching
    # jpeglib's process-wide version, which other code may rely on
    jpeglib = pytest.importorskip("jpeglib")
    before = jpeglib.version.get()
    redact_jpeg_lossless(_jpeg(64, 64), [(0, 0, 8, 8)])
    assert jpeglib.version.get() == before


# --------------------------------------------------------------------------
# Two backends: the same coefficients, and what only TurboJPEG does
# --------------------------------------------------------------------------


def _variant(kind: str, orientation: int, width: int = 320, height: int = 240) -> bytes:
    """A small photo of one layout; 320x240 is whole MCUs for every sampling."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = _pixels(width, height, seed=orientation)
    options = {"quality": 90, "exif": exif}
    if kind == "grey":
        image = image.convert("L")
    elif kind == "progressive":
        options["progressive"] = True
    elif kind == "restart":
        options["restart_marker_blocks"] = 5
    else:
        options["subsampling"] = SUBSAMPLING[kind]
    buf = io.BytesIO()
    image.save(buf, "JPEG", **options)
    return buf.getvalue()


def _cjpeg(sample: str, orientation: int = 1) -> bytes:
    """A JPEG with sampling factors Pillow cannot write, from libjpeg-turbo's cjpeg."""
    pixels = np.asarray(_pixels(320, 240, seed=orientation))
    ppm = b"P6\n320 240\n255\n" + pixels.tobytes()
    data = subprocess.run([CJPEG, "-quality", "90", "-sample", sample], input=ppm,
                          capture_output=True, check=True).stdout
    if orientation == 1:
        return data
    exif = Image.Exif()
    exif[0x0112] = orientation
    return data[:2] + _segment(0xE1, exif.tobytes()) + data[2:]  # tobytes() starts "Exif\0\0"


def _both(monkeypatch, data: bytes, boxes, fill=(0, 0, 0)) -> dict:
    results = {}
    for name in BACKENDS:
        monkeypatch.setattr(_lossless, "_backend", name)
        results[name] = redact_jpeg_lossless(data, boxes, fill=fill)
    return results


def _assert_same(results: dict) -> None:
    """Both backends blanked the same boxes and wrote the same coefficients."""
    (tj, tj_blanked), (jl, jl_blanked) = results["turbojpeg"], results["jpeglib"]
    assert tj_blanked == jl_blanked
    a, b = read_coefficients(tj), read_coefficients(jl)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]) if a[key] is not None else b[key] is None, key
    _assert_bare(tj, exiftool=False)


def _oriented_boxes(data: bytes) -> list:
    width, height = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size
    return [(20, 30, 50, 40), (width - 20, height - 20, 40, 40), (0, 0, 1, 1), (130, 90, 1, 70)]


@only("turbojpeg")
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("kind", ["4:2:0", "4:2:2", "4:4:4", "grey", "progressive", "restart"])
def test_backends_write_the_same_coefficients(kind, orientation, monkeypatch, backend):
    data = _variant(kind, orientation)
    if kind == "restart" and b"\xff\xdd" not in data:
        pytest.skip("this Pillow cannot write restart markers")
    _assert_same(_both(monkeypatch, data, _oriented_boxes(data), fill=(30, 200, 90)))


@only("turbojpeg")
@pytest.mark.skipif(CJPEG is None, reason="cjpeg not installed (Debian: libjpeg-turbo-progs)")
@pytest.mark.parametrize("sample, by_turbojpeg", [
    ("1x2", True),  # 4:4:0
    ("4x1", True),  # 4:1:1
    ("2x2,2x1,1x1", False),  # a layout tjTransform cannot name: jpeglib's build does it
    ("2x2,1x1,2x2", False),
])
@pytest.mark.parametrize("orientation", [1, 6, 7])
def test_other_samplings_and_who_does_them(sample, by_turbojpeg, orientation, monkeypatch, backend):
    data = _cjpeg(sample, orientation)
    calls = []
    transform = _lossless._transform
    monkeypatch.setattr(_lossless, "_transform", lambda *args: calls.append(1) or transform(*args))
    _assert_same(_both(monkeypatch, data, _oriented_boxes(data)))
    assert bool(calls) == by_turbojpeg


@only("turbojpeg")
def test_a_table_slot_redefined_between_scans_goes_to_jpeglib(monkeypatch, backend):
    # Every component latches its table in the first (DC) scan; a later DQT
    # for the same slot changes nothing for them, but tjTransform refuses it.
    data = _jpeg(256, 192, progressive=True)
    second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    data = data[:second] + _segment(0xDB, b"\x00" + b"\x01" * 64) + data[second:]
    head = _lossless._parse(data)
    assert head.slot_reused and not _lossless._turbojpeg_takes(head)
    with pytest.raises(InvalidInput):
        _lossless._transform(data, head, [], (0, 0, 0))
    results = _both(monkeypatch, data, [(10, 10, 20, 20)])
    _assert_same(results)
    assert np.array_equal(read_coefficients(results["turbojpeg"][0])["qt"], np.stack(head.qt))


@only("turbojpeg")
@pytest.mark.parametrize("size, orientation, sampling", [
    ((1001, 751), 1, "4:2:0"),
    ((1024, 744), 2, "4:2:0"),  # luma has 93 block rows; the last MCU row pads it to 94
    ((1024, 750), 5, "4:2:2"),
    ((1024, 750), 8, "4:2:0"),
])
def test_backends_agree_on_partial_mcus(size, orientation, sampling, monkeypatch, backend):
    data = _jpeg(*size, orientation=orientation, subsampling=sampling)
    _assert_same(_both(monkeypatch, data, _oriented_boxes(data) + [(0, 700, 2000, 100)]))


@only("turbojpeg")
def test_greyscale_with_sampling_factors_flips_every_column(monkeypatch, backend):
    # A single component is coded block by block whatever its (here 2x2)
    # sampling factors say; 200 pixels is 25 blocks, not a whole 16-pixel
    # MCU, and every column must still move when it is mirrored (transupp
    # writes such a file with 1x1 factors, as our walk reads it).
    exif = Image.Exif()
    exif[0x0112] = 2
    buf = io.BytesIO()
    _pixels(200, 96).convert("L").save(buf, "JPEG", quality=90, exif=exif)
    data = bytearray(buf.getvalue())
    data[_sof_offset(bytes(data)) + 11] = 0x22
    results = _both(monkeypatch, bytes(data), [])
    _assert_same(results)
    before, after = read_coefficients(bytes(data))["Y"], read_coefficients(results["jpeglib"][0])["Y"]
    assert np.array_equal(after, before[:, ::-1] * np.array([1, -1] * 4, dtype=np.int16))


def _tiny(dc_table: bytes, scan: bytes) -> bytes:
    """An 8x8 greyscale baseline JPEG written by hand: one block, all steps 1.

    The AC table has one code, ``0``, meaning end of block; ``dc_table`` is a
    DHT body (16 code counts, then the symbols, which are DC bit lengths).
    """
    ac_table = bytes([1] + [0] * 15) + b"\x00"
    return (b"\xff\xd8" + _segment(0xDB, b"\x00" + b"\x01" * 64)
            + _segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
            + _segment(0xC4, b"\x00" + dc_table) + _segment(0xC4, b"\x10" + ac_table)
            + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + scan + b"\xff\xd9")


# DC code 0, the DC bits, end of block 0, padding 1s:
#   10 bits 1111111111 -> DC 1023, the largest valid value
#   11 bits 11111111111 -> DC 2047, which only a crafted file holds
DC_1023 = _tiny(bytes([1] + [0] * 15) + b"\x0a", bytes([0b01111111, 0b11101111]))
DC_2047 = _tiny(bytes([1] + [0] * 15) + b"\x0b", bytes([0b01111111, 0b11110111]))
# three 1-bit codes cannot exist: libjpeg stops with a fatal error
BAD_HUFFMAN = _tiny(bytes([3] + [0] * 15) + b"\x00\x01\x02", b"\x00\x00")


def _corrupt_scan() -> bytes:
    data = bytearray(_jpeg(256, 256))
    start = data.rfind(b"\xff\xda")
    data[start + 200:start + 260] = bytes(range(1, 61))
    return bytes(data)


def test_out_of_range_coefficients_are_refused(capfd):
    out, _ = redact_jpeg_lossless(DC_1023, [])
    assert read_coefficients(out)["Y"][0, 0, 0, 0] == 1023  # the hand-made file is sound
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        redact_jpeg_lossless(DC_2047, [])
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("make, warning", [(_corrupt_scan, True), (lambda: BAD_HUFFMAN, False)],
                         ids=["corrupt-data-warning", "bad-table-error"])
def test_library_warnings_and_errors_both_refuse(make, warning, backend, capfd):
    with pytest.raises(InvalidInput, match="truncated or corrupt") as info:
        redact_jpeg_lossless(make(), [(0, 0, 8, 8)])
    if backend == "turbojpeg":
        assert info.value.warning is warning  # TJERR_WARNING or TJERR_FATAL, refused either way
    assert capfd.readouterr() == ("", "")


@only("turbojpeg")
def test_an_error_inside_the_filter_is_raised_after_turbojpeg_returns(monkeypatch, capfd):
    # ctypes would print an exception from a callback and carry on
    def broken(blocks):
        raise RuntimeError("boom")

    monkeypatch.setattr(_lossless, "_in_range", broken)
    with pytest.raises(RuntimeError, match="boom"):
        redact_jpeg_lossless(_jpeg(64, 64), [(0, 0, 8, 8)])
    assert capfd.readouterr() == ("", "")


@only("turbojpeg")
def test_turbojpeg_refuses_an_imperfect_orientation_by_itself(monkeypatch):
    # Our own check comes first; with it out of the way, TJXOPT_PERFECT
    # still refuses, with the same advice.
    def unchecked(width, height, samp, orientation):
        if orientation >= 5:
            return height, width, [(v, h) for h, v in samp]
        return width, height, list(samp)

    monkeypatch.setattr(_lossless, "_oriented_frame", unchecked)
    with pytest.raises(InvalidInput, match="run without --lossless"):
        redact_jpeg_lossless(_jpeg(1000, 750, orientation=6), [(10, 10, 10, 10)])


class _Counting:
    """TurboJPEG, counting handles and the output buffers it allocates."""

    def __init__(self, lib):
        self.lib, self.handles, self.destroyed, self.buffers, self.freed = lib, [], [], [], []

    def __getattr__(self, name):
        return getattr(self.lib, name)

    def tjInitTransform(self):
        self.handles.append(self.lib.tjInitTransform())
        return self.handles[-1]

    def tjTransform(self, handle, source, size, n, buffer, sizes, transform, flags):
        status = self.lib.tjTransform(handle, source, size, n, buffer, sizes, transform, flags)
        self.buffers.append(buffer._obj.value)  # set even when it fails
        return status

    def tjFree(self, buffer):
        self.freed.append(buffer.value)
        self.lib.tjFree(buffer)

    def tjDestroy(self, handle):
        self.destroyed.append(handle)
        return self.lib.tjDestroy(handle)


@only("turbojpeg")
def test_turbojpeg_buffers_and_handles_are_freed_on_every_path(monkeypatch):
    counting = _Counting(_lossless._turbojpeg())
    monkeypatch.setattr(_lossless, "_turbojpeg", lambda: counting)
    redact_jpeg_lossless(_jpeg(64, 64), [(0, 0, 8, 8)])
    for data in (DC_2047, _corrupt_scan(), BAD_HUFFMAN):
        with pytest.raises(InvalidInput):
            redact_jpeg_lossless(data, [(0, 0, 8, 8)])
    assert len(counting.handles) == 4 and counting.destroyed == counting.handles
    assert counting.buffers[0] and counting.buffers[1]  # the filter fails after the output exists
    assert counting.freed == [b for b in counting.buffers if b]


@only("turbojpeg")
def test_a_thousand_calls_do_not_grow_memory():
    good, bad = _jpeg(256, 256, orientation=6), DC_2047

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def run(n):
        for _ in range(n):
            redact_jpeg_lossless(good, [(10, 10, 50, 50)])
            with pytest.raises(InvalidInput):
                redact_jpeg_lossless(bad, [])

    run(50)  # allocator pools and caches settle
    before = rss()
    run(1000)
    # a leaked output (~40 kB) or TurboJPEG state per call would add 40 MB or more
    assert rss() - before < 8 * 2**20


@only("jpeglib")  # sets the choice itself
def test_backend_choice(monkeypatch):
    env = "WORKBENCH_LOSSLESS_BACKEND"
    installed = _lossless._turbojpeg() is not None
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(_lossless, "_backend", None)
    assert _lossless._backend_name() == ("turbojpeg" if installed else "jpeglib")
    assert _lossless._backend == _lossless._backend_name()  # chosen once
    monkeypatch.setenv(env, "jpeglib")
    assert _lossless._choose_backend() == "jpeglib"
    monkeypatch.setenv(env, "turbojpg")
    with pytest.raises(WorkbenchError, match="WORKBENCH_LOSSLESS_BACKEND"):
        _lossless._choose_backend()  # a typo picks nothing
    monkeypatch.setattr(_lossless, "_tj_handle", False)  # as if not installed
    monkeypatch.delenv(env)
    assert _lossless._choose_backend() == "jpeglib"
    monkeypatch.setenv(env, "turbojpeg")
    with pytest.raises(WorkbenchError, match="libturbojpeg"):
        _lossless._choose_backend()
