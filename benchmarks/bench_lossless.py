"""Lossless (DCT-domain) JPEG redaction of a 20 MP photo, against jpegtran.

- ``redact_jpeg_lossless`` with 1 region (a 600x600 face) and with 3 regions
  (face, a 900x200 label, a 300x300 barcode), best of 3, with each backend:
  TurboJPEG (the system's libturbojpeg, the default when it loads) and
  jpeglib's libjpeg-turbo build (the fallback).
- The same job done the way a user would with libjpeg-turbo's tool:
  ``jpegtran -copy none -wipe WxH+X+Y``, input on stdin and output on
  stdout, one process per region chained through pipes (``-wipe`` takes one
  region). Target: ours at most 2x jpegtran.
- For context, the floor of the lossy route: Pillow decode + encode at
  quality 95 of the same file.
- Peak memory: ``ru_maxrss`` of this process, and, per backend, the peak
  RSS (VmHWM) of a fresh process that does nothing but one 3-region
  redaction (the input reaches it on a pipe), before and after the call.

Both tools keep every other block bit-identical, so their outputs are
checked against each other: same coefficients outside the blanked MCUs.
The two backends must agree on every coefficient.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from workbench import _synth
from workbench.deid import _lossless
from workbench.deid._lossless import read_coefficients, redact_jpeg_lossless

from ._util import best_of, peak_rss_mb, save, table

BACKENDS = ("turbojpeg", "jpeglib")

WIDTH, HEIGHT = 5472, 3648  # Canon EOS R6
FACE = (2400, 900, 600, 600)
LABEL = (300, 3200, 900, 200)
BARCODE = (4900, 200, 300, 300)
REGIONS = {"1 region": [FACE], "3 regions": [FACE, LABEL, BARCODE]}

_CHILD = r"""
import sys
from workbench.deid._lossless import redact_jpeg_lossless

def status(key):
    # VmHWM is this process's own peak; ru_maxrss would include the parent's
    # peak, which Linux carries across fork and exec.
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

data = sys.stdin.buffer.read()
before = status("VmHWM")
redact_jpeg_lossless(data, %r)
print(before, status("VmHWM"))
"""


def _jpegtran(data: bytes, boxes) -> bytes:
    """One ``jpegtran -wipe`` per region, chained through pipes, stdin to stdout."""
    procs = []
    for x, y, w, h in boxes:
        procs.append(subprocess.Popen(
            ["jpegtran", "-copy", "none", "-wipe", f"{w}x{h}+{x}+{y}"],
            stdin=procs[-1].stdout if procs else subprocess.PIPE, stdout=subprocess.PIPE))
        if len(procs) > 1:
            procs[-2].stdout.close()  # the next process owns the pipe now

    def feed():
        procs[0].stdin.write(data)
        procs[0].stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    out = procs[-1].stdout.read()
    writer.join()
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("jpegtran failed")
    return out


def _floor(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data))
    im.load()
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _same_outside(ours: bytes, theirs: bytes, blanked) -> bool:
    """Both outputs hold identical coefficients outside the blanked MCUs."""
    a, b = read_coefficients(ours), read_coefficients(theirs)
    samp = a["samp_factor"]
    vmax, hmax = samp[:, 0].max(), samp[:, 1].max()
    for name, (v, h) in zip(("Y", "Cb", "Cr"), samp):
        keep = np.ones(a[name].shape[:2], dtype=bool)
        for x, y, w, hh in blanked:
            keep[y // (8 * vmax) * v:-(-(y + hh) // (8 * vmax)) * v,
                 x // (8 * hmax) * h:-(-(x + w) // (8 * hmax)) * h] = False
        if not np.array_equal(a[name][keep], b[name][keep]):
            return False
    return True


def _same_coefficients(a: bytes, b: bytes) -> bool:
    ca, cb = read_coefficients(a), read_coefficients(b)
    return all(np.array_equal(ca[key], cb[key]) for key in ("Y", "Cb", "Cr", "qt", "samp_factor"))


def _stages(data: bytes, boxes, repeat: int) -> dict:
    """Where jpeglib's backend spends its time (its private steps), best of ``repeat``."""
    times: dict[str, list[float]] = {"parse": [], "decode": [], "orient_blank": [], "encode": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        head = _lossless._parse(data)
        t1 = time.perf_counter()
        image = _lossless._decode(data, head)
        t2 = time.perf_counter()
        image = _lossless._orient(image, head.orientation)
        _lossless._blank(image, boxes, (0, 0, 0))
        t3 = time.perf_counter()
        _lossless._encode(image)
        t4 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key].append(value)
    return {key: round(1000 * min(values), 1) for key, values in times.items()}


def _child_peak(data: bytes, boxes, backend: str) -> dict:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "WORKBENCH_LOSSLESS_BACKEND": backend}
    proc = subprocess.run([sys.executable, "-c", _CHILD % (boxes,)], input=data, cwd=root,
                          capture_output=True, check=True, env=env)
    before, after = map(float, proc.stdout.split())
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(after, 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if shutil.which("jpegtran") is None:
        raise SystemExit("jpegtran is not installed (Debian: libjpeg-turbo-progs)")
    data, _ = _synth.synth_photo(np.random.default_rng(1), width=WIDTH, height=HEIGHT, quality=95)

    floor_s = best_of(lambda: _floor(data), args.repeat)
    backends = [b for b in BACKENDS if b == "jpeglib" or _lossless._turbojpeg() is not None]
    saved = _lossless._backend
    runs: dict[str, dict] = {label: {} for label in REGIONS}
    try:
        for label, boxes in REGIONS.items():
            theirs_out = _jpegtran(data, boxes)
            theirs_s = best_of(lambda: _jpegtran(data, boxes), args.repeat)
            outputs = {}
            for backend in backends:
                _lossless._backend = backend
                ours_out, blanked = redact_jpeg_lossless(data, boxes)
                ours_s = best_of(lambda: redact_jpeg_lossless(data, boxes), args.repeat)
                outputs[backend] = ours_out
                runs[label][backend] = {
                    "ours_s": round(ours_s, 4),
                    "ratio": round(ours_s / theirs_s, 2),
                    "ours_over_floor": round(ours_s / floor_s, 2),
                    "output_mb": round(len(ours_out) / 1e6, 3),
                    "same_coefficients_outside_blanked": _same_outside(ours_out, theirs_out, blanked),
                }
            runs[label].update({
                "regions": boxes,
                "blanked": blanked,
                "jpegtran_s": round(theirs_s, 4),
                "target_ratio_at_most": 2.0,
                "jpegtran_output_mb": round(len(theirs_out) / 1e6, 3),
                "backends_same_coefficients": all(
                    _same_coefficients(outputs[backends[0]], out) for out in outputs.values()),
            })
        _lossless._backend = "jpeglib"
        stages = _stages(data, REGIONS["1 region"], args.repeat)
    finally:
        _lossless._backend = saved
    child = {backend: _child_peak(data, REGIONS["3 regions"], backend) for backend in backends}
    result = {
        "image": f"{WIDTH}x{HEIGHT} JPEG q95 4:2:0 (generated)",
        "input_mb": round(len(data) / 1e6, 2),
        "floor_pillow_decode_encode_q95_s": round(floor_s, 4),
        "backends": backends,
        "runs": runs,
        "jpeglib_stages_ms_1_region": stages,
        "redaction_only_process": child,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    path = save("lossless", result)
    rows = [
        ("input", f"{result['image']}, {result['input_mb']} MB"),
        ("floor: Pillow decode + encode q95", f"{floor_s * 1000:.0f} ms"),
    ]
    for label, run in runs.items():
        tool = "jpegtran -wipe" if label == "1 region" else "3 jpegtran -wipe in a pipe"
        rows.append((f"{label}: {tool}", f"{run['jpegtran_s'] * 1000:.0f} ms"))
        for backend in backends:
            mine = run[backend]
            rows.append((f"{label}: {backend}", f"{mine['ours_s'] * 1000:.0f} ms = {mine['ratio']}x jpegtran "
                                                f"(target <= 2), {mine['ours_over_floor']}x floor"))
    rows += [
        ("jpeglib stages (1 region)", ", ".join(f"{k} {v} ms" for k, v in stages.items())),
        ("same coefficients as jpegtran outside", str(all(
            run[b]["same_coefficients_outside_blanked"] for run in runs.values() for b in backends))),
        ("backends: same coefficients", str(all(run["backends_same_coefficients"] for run in runs.values()))),
    ]
    for backend, peak in child.items():
        rows.append((f"peak RSS, redaction-only process ({backend})",
                     f"{peak['peak_rss_mb']} MB ({peak['rss_before_mb']} MB before the call)"))
    rows.append(("peak RSS, this process", f"{result['peak_rss_mb']} MB"))
    print("lossless redaction benchmarks (" + str(path) + ")")
    print(table(rows))
    return result


if __name__ == "__main__":
    main()
