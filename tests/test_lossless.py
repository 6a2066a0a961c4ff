"""Lossless JPEG redaction: untouched blocks stay bit-identical, metadata goes, nothing hits disk."""

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
from workbench.errors import DecompressionBomb, InvalidInput, UnsupportedFormat

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


def _assert_bare(out: bytes) -> None:
    codes = _markers(out)  # JFIF APP0, then only tables and one frame up to the scan
    assert codes[0] == 0xE0 and codes[-1] == 0xDA
    assert set(codes[1:-1]) <= {0xDB, 0xC4, 0xC0, 0xC1} and codes.count(0xC0) + codes.count(0xC1) == 1
    assert out[6:11] == b"JFIF\x00"
    assert out[:2] == b"\xff\xd8" and out[-2:] == b"\xff\xd9"
    for needle in (b"Exif", b"http://ns.adobe.com", b"Photoshop", b"ICC_PROFILE", b"\xff\xfe", b"8BIM"):
        assert needle not in out, needle
    if EXIFTOOL:
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


def test_synthetic_camera_photo_loses_every_planted_identifier():
    # EXIF with maker note, GPS and an IFD1 thumbnail (with its own comment),
    # XMP, IPTC and a COM segment, as the project's camera simulator writes.
    data, info = _synth.synth_photo(np.random.default_rng(5), width=1024, height=768, quality=92)
    out, _ = redact_jpeg_lossless(data, [(400, 300, 200, 200)])
    assert info["strings"]
    for text in info["strings"]:
        assert text.encode() not in out, text
    _assert_bare(out)


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed")
def test_exiftool_sees_the_planted_metadata_in_the_input():
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
def test_malformed_boxes(boxes):
    with pytest.raises(InvalidInput):
        redact_jpeg_lossless(_jpeg(64, 64), boxes)


@pytest.mark.parametrize("fill", [(0, 0), (0, 0, 256), (0, 0, -1), (0.5, 0, 0), "red", (True, 0, 0)])
def test_malformed_fill(fill):
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


def test_mutated_files_only_raise_workbench_errors():
    # In a child process: a libjpeg abort would kill it, and that must show
    # up as a failure here rather than take the test run down.
    proc = subprocess.run([sys.executable, "-c", _FUZZ, "200"], cwd=ROOT, capture_output=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode()[-2000:])
    assert proc.stderr == b""  # nothing printed by libjpeg: no print-and-continue
    result = json.loads(proc.stdout)
    assert result["other"] == []
    assert sum(result["counts"].values()) == 200
    assert result["counts"].get("InvalidInput", 0) > 50  # the mutations did bite


# --------------------------------------------------------------------------
# No plaintext on disk
# --------------------------------------------------------------------------


def test_no_temporary_files_and_only_memory_paths(monkeypatch, tmp_path):
    calls = []

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
    read_coefficients(out)
    assert sorted(os.listdir("/proc/self/fd")) == fds_before  # every memfd closed
    assert calls == []
    assert list(empty.iterdir()) == []
    assert paths[1] is None  # no source file: jpeglib would copy it
    for path in paths[:1] + paths[2:]:
        assert path.startswith(b"/proc/self/fd/"), path


def test_jpeglib_library_choice_is_left_alone():
    # we load jpeglib's libjpeg-turbo build by path instead of switching
    # jpeglib's process-wide version, which other code may rely on
    jpeglib = pytest.importorskip("jpeglib")
    before = jpeglib.version.get()
    redact_jpeg_lossless(_jpeg(64, 64), [(0, 0, 8, 8)])
    assert jpeglib.version.get() == before
