"""Every merged face box of a phantom set, with what each weak-box check sees and whether it lies on a face.

What the face checks are tuned on: the face detector runs alone on each
phantom (decoded and reduced as ``deid.deidentify`` does), and for each box
it merged, before the checks, one JSON line records its score and size,
whether it is cut by a frame edge, whether ``_plausible_face`` passes it,
for a weak box (under 0.6, away from the edges) its best score when
CenterFace looks at it alone, upright (``alone``) and turned 22 degrees
each way (``alone_turned``), the cascade's looks and the
slough test (and the two shares it compares, also with a lower brightness
floor: ``shares``, ``shares_dim``), whether all checks keep it (``kept``), and the truth: its
overlap with a face (``on_face``), whether its grown box lies on anything
identifying (``on_target``, as ``workbench evaluate`` judges) and whether
it would hide a finding. About 10 minutes per 500 phantoms on one core.

    WORKBENCH_THREADS=1 .venv/bin/python tools/face_boxes.py /tmp/ph2044 boxes2044.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def records(phantom_dir: Path):
    """Yield one dict per merged face box of every phantom in ``phantom_dir``."""
    import numpy as np

    from workbench.deid import Policy, _pipeline, coverage
    from workbench.deid._detect import _faces
    from workbench.deid._regions import Region
    from workbench.evaluate import FINDING_OVERLAP, _on_target, _overlap

    margin = Policy().margin("face")
    plausible, seen = _faces._plausible_face, []

    def spy(box, frame, whole=None, sides=_faces._ALL_SIDES):  # records the merged boxes; keeps none
        seen.append((list(box), frame, whole, sides))
        return False

    _faces._plausible_face = spy
    try:
        for path in sorted(phantom_dir.glob("phantom_*.json")):
            truth = json.loads(path.read_text())
            image = _pipeline._load((phantom_dir / truth["image"]).read_bytes()).image
            small, scale = _pipeline._detection_copy(image)
            small = np.ascontiguousarray(small)
            frame = (truth["width"], truth["height"])
            seen.clear()
            _faces.detect_faces(small, scale=scale)
            faces = [o for o in truth["objects"] if o["kind"] == "face"]
            for b, fr, whole, sides in seen:
                x0, y0, x1, y1, score = b
                ix0, iy0 = int(x0), int(y0)
                box = (ix0, iy0, max(1, math.ceil(x1) - ix0), max(1, math.ceil(y1) - iy0))
                grown = Region("face", box, score, "centerface").grown(margin, *frame)
                gbox = grown.box if grown else box
                r = {"photo": truth["image"], "clean": truth["clean"], "box": [round(v, 1) for v in b[:4]],
                     "score": round(score, 4), "w": x1 - x0, "h": y1 - y0, "edges": any(_faces._at_edges(b, fr, sides)),
                     "plausible": plausible(b, fr, whole, sides), "on_target": _on_target(gbox, truth["objects"]),
                     "on_face": round(max([coverage(tuple(o["box"]), [box]) for o in faces] or [0.0]), 3),
                     "finding": any(_overlap(o["box"], gbox) >= FINDING_OVERLAP
                                    for o in truth["objects"] if o["kind"] == "finding")}
                if score < 0.6 and not r["edges"]:
                    r["alone"] = round(max(_faces._alone_scores(small, scale, b), default=0.0), 4)
                    r["alone_turned"] = round(max(_faces._alone_scores(small, scale, b, _faces._TURNED_ANGLES),
                                                  default=0.0), 4)
                    r["looks"] = _faces._cascade_looks(small, scale, b)
                    r["slough"] = _faces._like_slough(small, scale, b)
                    # the shares the slough test compares, and with slough's brightness floor lowered
                    # to 0.3 (slough in dim light); None where the box has no ring
                    for key, bright in (("shares", _faces._SLOUGH_BRIGHT), ("shares_dim", 0.3)):
                        found = _faces._slough_shares(small, scale, b, bright=bright)
                        r[key] = [round(v, 3) for v in found] if found else None
                r["kept"] = bool(r["plausible"] and _faces._second_look(small, scale, b, fr, sides)
                                 and _faces._confirmed(small, scale, b, fr, sides))
                yield r
    finally:
        _faces._plausible_face = plausible


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phantoms", type=Path, help="a folder written by `workbench phantoms`")
    parser.add_argument("out", type=Path, help="the JSON lines file to write")
    args = parser.parse_args()
    with args.out.open("w") as fh:
        for record in records(args.phantoms):
            fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
