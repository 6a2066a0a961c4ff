"""Fuzz: thousands of mutated files of every input format see only WorkbenchErrors.

Seeds are generated (JPEG, PNG, TIFF, WebP, HEIF, AVIF where supported, DNG,
DICOM); each mutation flips bits, cuts, inserts, overwrites header bytes or
splices two files. Every outcome must be either a verified-or-not result or
a ``WorkbenchError`` subclass: never another exception, never a crash.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench import _synth, deid

from test_imageio import make_dng

MUTATIONS = 2000
WITH_DETECTORS = 60  # a slice of the mutations also runs the detectors on what decodes


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(99)
    seeds = {}
    for fmt in ("jpeg", "png", "tiff", "webp", "heif"):
        seeds[fmt], _ = _synth.synth_photo(rng, width=64, height=48, format=fmt)
    buf = io.BytesIO()
    Image.fromarray(_synth.synth_pixels(rng, 64, 48)).save(buf, "JPEG", quality=80, progressive=True)
    seeds["progressive"] = buf.getvalue()
    try:
        buf = io.BytesIO()
        Image.fromarray(_synth.synth_pixels(rng, 64, 48)).save(buf, "AVIF")
        seeds["avif"] = buf.getvalue()
    except (KeyError, OSError, ValueError):
        pass
    seeds["dng"] = make_dng(orientation=1, w=64, h=48)
    from test_dicom import vl_photo  # a small VL photographic DICOM with planted identifiers

    seeds["dicom"] = vl_photo()
    return seeds


def _mutate(data: bytes, rng: np.random.Generator, others: list[bytes]) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:  # flip bits
        for _ in range(int(rng.integers(1, 8))):
            pos = int(rng.integers(0, len(buf)))
            buf[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncate
        del buf[int(rng.integers(0, len(buf))):]
    elif kind == 2:  # insert junk
        pos = int(rng.integers(0, len(buf)))
        buf[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    elif kind == 3:  # overwrite header bytes (sizes, markers, tags live there)
        pos = int(rng.integers(0, min(len(buf), 512)))
        buf[pos:pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    elif kind == 4:  # huge dimensions somewhere in the header
        pos = int(rng.integers(0, min(len(buf), 256)))
        buf[pos:pos + 4] = b"\xff\xff\xff\x7f"
    else:  # splice two files
        other = others[int(rng.integers(0, len(others)))]
        cut = int(rng.integers(0, len(buf)))
        buf = buf[:cut] + other[int(rng.integers(0, len(other))):]
    return bytes(buf)


@pytest.mark.slow
def test_mutated_inputs_only_raise_workbench_errors():
    seeds = _seeds()
    assert {"jpeg", "png", "tiff", "webp", "heif", "dng", "dicom"} <= set(seeds)
    names = sorted(seeds)
    rng = np.random.default_rng(2026)
    outcomes = {"ok": 0, "error": 0}
    no_detect = deid.Policy(detectors=())
    full = deid.Policy()
    for n in range(MUTATIONS):
        name = names[n % len(names)]
        data = _mutate(seeds[name], rng, list(seeds.values()))
        policy = full if n < WITH_DETECTORS else no_detect
        try:
            result = deid.deidentify(data, policy, regions=[deid.Region("manual", (1, 1, 8, 8))])
        except wb.WorkbenchError:
            outcomes["error"] += 1
            continue
        outcomes["ok"] += 1
        assert isinstance(result.data, bytes) and result.data
        assert not deid.metadata_problems(result.data, result.ext)
    # both paths were exercised
    assert outcomes["ok"] > 100 and outcomes["error"] > 100, outcomes


# --- DICOM: damaged structure ---------------------------------------------------

_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD",
        b"OF", b"OL", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM", b"UC", b"UI", b"UL", b"UN",
        b"UR", b"US", b"UT", b"UV", b"SV", b"OV"]
_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _element_headers(data: bytes) -> list[int]:
    """Offsets of what look like explicit-VR element headers (tag, then a known VR)."""
    import re

    pattern = re.compile(b"(?=..(?:" + b"|".join(_VRS) + b"))", re.DOTALL)
    return [m.start() - 2 for m in pattern.finditer(data, 134) if m.start() >= 134]


def _damage_dicom(data: bytes, rng: np.random.Generator) -> bytes:
    """Truncated, a wrong VR, an undefined length, or a huge declared length."""
    buf = bytearray(data)
    heads = _element_headers(data)
    pos = heads[int(rng.integers(0, len(heads)))]
    vr = bytes(buf[pos + 4:pos + 6])
    kind = int(rng.integers(0, 4))
    if kind == 0:  # truncated, inside the dataset
        del buf[int(rng.integers(132, len(buf))):]
    elif kind == 1:  # a wrong VR
        buf[pos + 4:pos + 6] = _VRS[int(rng.integers(0, len(_VRS)))]
    elif kind == 2:  # undefined length where none is allowed (or is)
        if vr in _LONG:
            buf[pos + 8:pos + 12] = b"\xff\xff\xff\xff"
        else:
            buf[pos + 6:pos + 8] = b"\xff\xff"
    else:  # a huge declared length
        huge = [b"\xf0\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xfe\xff\xff\xff"][int(rng.integers(0, 3))]
        if vr in _LONG:
            buf[pos + 8:pos + 12] = huge
        else:
            buf[pos + 4:pos + 6] = b"UN"  # a short element becomes a long one that claims the rest
            buf[pos + 6:pos + 8] = b"\x00\x00"
            buf[pos + 8:pos + 8] = huge
    return bytes(buf)


@pytest.mark.slow
def test_damaged_dicom_structure_only_raises_workbench_errors():
    import time

    from test_dicom import vl_photo
    from test_dicom_modalities import make

    seeds = [vl_photo(), make("CT"), make("US-multiframe-jpeg"), make("CT-j2k"), make("MR-rle"), make("XA")]
    rng = np.random.default_rng(2027)
    outcomes = {"ok": 0, "error": 0}
    policy = deid.Policy(detectors=())
    start = time.perf_counter()
    for n in range(360):
        data = _damage_dicom(seeds[n % len(seeds)], rng)
        try:
            result = deid.deidentify(data, policy)
        except wb.WorkbenchError as exc:
            assert "ZZTEST" not in str(exc) and "MRN-1234567" not in str(exc)
            outcomes["error"] += 1
            continue
        outcomes["ok"] += 1
        assert result.ext == "dcm" and result.data
        if result.verified:
            assert not deid.metadata_problems(result.data, result.ext)
            assert b"ZZTEST" not in result.data and b"MRN-1234567" not in result.data
    # a guard against a hang on some mutation, not a speed bar
    assert time.perf_counter() - start < 120
    assert outcomes["ok"] > 20 and outcomes["error"] > 20, outcomes
