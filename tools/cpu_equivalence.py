"""Do the face detector's answers depend on the CPU's instruction set?

Runs the face detector (``workbench.deid._detect.detect_faces``) on pinned inputs natively and under
``qemu-x86_64 -cpu Haswell-v4`` (user-mode emulation of an AVX2-only CPU: no
AVX-512, no VNNI; Debian's ``qemu-user``), and compares what each found.
onnxruntime picks its kernels from the CPU it sees, so under emulation it
runs the AVX2 code paths that a workstation without AVX-512 would run.

    .venv/bin/python tools/cpu_equivalence.py            # the pinned phantoms (minutes: emulation is slow)
    .venv/bin/python tools/cpu_equivalence.py --quick    # two frames (what the suite pins)

Prints one line per input and exits 1 if any answer differs beyond the
tolerance of :func:`same_faces`.
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


def same_faces(a: list, b: list) -> bool:
    """The same faces, boxes within :data:`BOX_TOLERANCE` px and scores within :data:`SCORE_TOLERANCE`."""
    if len(a) != len(b):
        return False
    for x, y in zip(sorted(a), sorted(b)):
        if any(abs(p - q) > BOX_TOLERANCE for p, q in zip(x[:4], y[:4])) or abs(x[4] - y[4]) > SCORE_TOLERANCE:
            return False
    return True


def emulated(quick: bool, timeout: float = 3600) -> dict:
    """The same answers computed under an emulated AVX2-only CPU."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64 is not installed (Debian: apt-get install qemu-user)")
    env = dict(os.environ, WORKBENCH_THREADS="1")
    out = subprocess.run([qemu, "-cpu", EMULATED_CPU, sys.executable, __file__, "--answers"]
                         + (["--quick"] if quick else []),
                         capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError("the emulated run failed: " + out.stderr[-2000:])
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two frames instead of the pinned phantoms")
    parser.add_argument("--answers", action="store_true", help=argparse.SUPPRESS)  # the emulated side
    args = parser.parse_args()
    if args.answers:
        print(json.dumps(answers(args.quick)))
        return 0
    from workbench.deid._models import cpu_path

    native, emul = answers(args.quick), emulated(args.quick)
    bad = 0
    for name in native:
        ok = same_faces(native[name], emul[name])
        bad += not ok
        print(f"{'same' if ok else 'DIFFERENT'}  {name}\n  {cpu_path()}: {native[name]}\n"
              f"  emulated {EMULATED_CPU} (AVX2): {emul[name]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
