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
