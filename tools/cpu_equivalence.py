"""Do the detectors' answers depend on the CPU's instruction set?

Runs the face detector (``workbench.deid._detect.detect_faces``), or with
``--regions`` every detector of the default policy (``_pipeline.detect``:
faces with their checks, text with its ruler and cut rules, barcodes), on
pinned inputs natively and under ``qemu-x86_64 -cpu CPU`` (user-mode
emulation; Debian's ``qemu-user``), and compares what each found.
onnxruntime, OpenCV and NumPy pick their kernels from the CPU they see, so
under emulation they run the code paths that CPU would run. The default,
``Haswell-v4``, is AVX2 without AVX-512 or VNNI; on a machine that is
itself AVX2-only, ``--cpu Nehalem`` (SSE4.2, no AVX) still gives a second,
different set of kernels.

    .venv/bin/python tools/cpu_equivalence.py            # the pinned phantoms (minutes: emulation is slow)
    .venv/bin/python tools/cpu_equivalence.py --quick    # two frames (what the suite pins)
    .venv/bin/python tools/cpu_equivalence.py --regions --cpu Nehalem   # every detector (about half an hour)
    .venv/bin/python tools/cpu_equivalence.py --regions --answers       # this CPU's answers as JSON

Prints one line per input and exits 1 if any answer differs beyond the
tolerance of :func:`same_faces` or :func:`same_regions`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The emulated CPU: Haswell has AVX2 and FMA and nothing wider.
EMULATED_CPU = "Haswell-v4"
#: Boxes may move by float rounding only: 2 px, and scores by 0.01.
BOX_TOLERANCE = 2.0
SCORE_TOLERANCE = 0.01


def lfw_face(i: int, size: int):
    """LFW face ``i`` (a tight 25x25 grey crop that scikit-image ships), tinted towards skin and scaled to ``size``.

    The test suite pastes its faces with this and :func:`paste` too.
    """
    import cv2
    import numpy as np
    from skimage import data

    grey = (data.lfw_subset()[i] * 255).astype(np.uint8)
    face = cv2.cvtColor(cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA if size < 25 else cv2.INTER_CUBIC),
                        cv2.COLOR_GRAY2RGB).astype(np.float32)
    return (face * np.float32([1.0, 0.84, 0.72])).astype(np.uint8)


def paste(canvas, patch, x: int, y: int) -> None:
    """Paste ``patch`` with its top-left at (x, y), clipped to the canvas."""
    ph, pw = patch.shape[:2]
    ch, cw = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(cw, x + pw), min(ch, y + ph)
    canvas[y0:y1, x0:x1] = patch[y0 - y:y1 - y, x0 - x:x1 - x]


def _quick_inputs():
    """The frame of faces cut by the top edge that the 8-bit model lost a face of on AVX2, and one plain face."""
    import numpy as np

    from workbench._synth import synth_pixels

    img = synth_pixels(np.random.default_rng(7), 1600, 1067)
    for k, (i, size, shown) in enumerate([(3, 26, 0.5), (17, 30, 0.5), (29, 24, 0.6), (41, 34, 0.45),
                                          (55, 22, 0.55), (68, 28, 0.5)]):
        paste(img, lfw_face(i, size), 150 + k * 230, -round(size * (1 - shown)))
    frames = [("faces cut by the top edge", img, 1.0)]
    img = synth_pixels(np.random.default_rng(8), 400, 300)
    paste(img, lfw_face(41, 80), 150, 90)
    frames.append(("one 80 px face", img, 1.0))
    return frames


def _pinned_inputs():
    """Phantoms pinned in tests/test_hard_phantoms.py for their faces, decoded as the pipeline decodes them."""
    from workbench.deid._pipeline import _detection_copy, _load
    from workbench.phantoms import one_phantom

    out = []
    for number in (120, 341, 494):
        image, scale = _detection_copy(_load(one_phantom(number, count=500, seed=2026)[0]).image)
        out.append((f"seed 2026 phantom {number}", image, scale))
    return out


def answers(quick: bool) -> dict:
    """``{input name: [[x, y, w, h, score], ...]}`` as this process's CPU finds them."""
    from workbench.deid._detect import detect_faces

    inputs = _quick_inputs() if quick else _pinned_inputs()
    return {name: [[*r.box, round(r.score, 4)] for r in detect_faces(image, scale=scale)]
            for name, image, scale in inputs}


#: Phantoms pinned in tests/test_hard_phantoms.py for rules that compare floats with thresholds:
#: seed 2045's 298 (two tilted label lines cut apart in PP-OCR's map, kept when read at 0.8),
#: 335 (a Code128 read turned by its edges' leaning peak) and 64 (a ruler's numbers read run
#: together, kept visible), and seed 2053's 145 (violet marker on a blue drape, found only with
#: the ground taken away and kept when read as print at 0.8).
REGION_INPUTS = ((2045, 298), (2045, 335), (2045, 64), (2053, 145))


def region_answers() -> dict:
    """``{input name: {"scale": s, "regions": [[kind, x, y, w, h, score], ...]}}`` on this process's CPU.

    Every detector of the default policy, on the phantom decoded and reduced
    as the pipeline does (``_pipeline.detect`` on its detection copy); boxes
    in full-frame pixels, not yet grown by the margin.
    """
    from workbench.deid import Policy, _pipeline
    from workbench.phantoms import one_phantom

    out = {}
    for seed, number in REGION_INPUTS:
        image, scale = _pipeline._detection_copy(_pipeline._load(one_phantom(number, count=500, seed=seed)[0]).image)
        regions = _pipeline.detect(image, Policy(), scale=scale)
        out[f"seed {seed} phantom {number}"] = {
            "scale": scale, "regions": sorted([r.kind, *r.box, round(r.score, 4)] for r in regions)}
    return out


def same_regions(a: dict, b: dict) -> bool:
    """The same regions of each kind, boxes within :data:`BOX_TOLERANCE` px of the image the detectors saw.

    Boxes are compared in full-frame pixels, so the tolerance is scaled by
    the detection copy's reduction; scores within :data:`SCORE_TOLERANCE`.
    """
    if a["scale"] != b["scale"]:
        return False
    kinds = {r[0] for r in a["regions"] + b["regions"]}
    return all(same_faces([r[1:] for r in a["regions"] if r[0] == kind], [r[1:] for r in b["regions"] if r[0] == kind],
                          BOX_TOLERANCE / a["scale"])
               for kind in kinds)


def same_faces(a: list, b: list, tolerance: float = BOX_TOLERANCE) -> bool:
    """The same ``[x, y, w, h, score]`` boxes, within ``tolerance`` px and scores within :data:`SCORE_TOLERANCE`."""
    if len(a) != len(b):
        return False
    for x, y in zip(sorted(a), sorted(b)):
        if any(abs(p - q) > tolerance for p, q in zip(x[:4], y[:4])) or abs(x[4] - y[4]) > SCORE_TOLERANCE:
            return False
    return True


def emulated(quick: bool, timeout: float = 3 * 3600, *, regions: bool = False, cpu: str = EMULATED_CPU) -> dict:
    """The same answers computed under an emulated ``cpu`` (by default AVX2-only)."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64 is not installed (Debian: apt-get install qemu-user)")
    env = dict(os.environ, WORKBENCH_THREADS="1")
    out = subprocess.run([qemu, "-cpu", cpu, sys.executable, __file__, "--answers"]
                         + (["--quick"] if quick else []) + (["--regions"] if regions else []),
                         capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError("the emulated run failed: " + out.stderr[-2000:])
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two frames instead of the pinned phantoms")
    parser.add_argument("--regions", action="store_true",
                        help="every detector of the default policy on REGION_INPUTS, not the face detector alone")
    parser.add_argument("--cpu", default=EMULATED_CPU, help=f"the CPU qemu emulates (default {EMULATED_CPU})")
    parser.add_argument("--answers", action="store_true", help="print this CPU's answers as JSON and stop")
    args = parser.parse_args()
    compute = region_answers if args.regions else (lambda: answers(args.quick))
    if args.answers:
        print(json.dumps(compute()))
        return 0
    from workbench.deid._models import cpu_path

    same = same_regions if args.regions else same_faces
    native, emul = compute(), emulated(args.quick, regions=args.regions, cpu=args.cpu)
    bad = 0
    for name in native:
        ok = same(native[name], emul[name])
        bad += not ok
        print(f"{'same' if ok else 'DIFFERENT'}  {name}\n  {cpu_path()}: {native[name]}\n"
              f"  emulated {args.cpu}: {emul[name]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
