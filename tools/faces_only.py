"""Face recall and face boxes on no face, with the face detector alone, on a phantom set.

The quick measure behind the README's "faces only" tables: each phantom is
decoded and reduced as ``deid.deidentify`` does, searched by
``detect_faces`` alone, its boxes grown by the default policy's face margin,
and scored as ``workbench evaluate`` scores hiding (a face counts as hidden
when the grown boxes cover 80% of it; a box lies on no face when
``evaluate._on_target`` says so; a finding counts as hidden as in
``evaluate._findings_hidden``). No text or barcode pass, no verification,
no output file: minutes instead of the evaluation's quarter of an hour.

    WORKBENCH_THREADS=1 .venv/bin/python tools/faces_only.py /tmp/ph2035 [--json faces.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(phantom_dir: Path) -> dict:
    """Counts over the set, and per photo the boxes that lie on no face."""
    import numpy as np

    from workbench.deid import Policy, _pipeline
    from workbench.deid._detect import detect_faces
    from workbench.deid._regions import coverage
    from workbench.evaluate import HIDDEN_COVERAGE, _findings_hidden, _on_target

    margin = Policy().margin("face")
    bands = {"<20": [0, 0], "20-40": [0, 0], "40+": [0, 0]}
    false_boxes, clean_boxes, photos_with_finding_hidden, photos = 0, 0, 0, 0
    per_photo = {}
    for path in sorted(phantom_dir.glob("phantom_*.json")):
        truth = json.loads(path.read_text())
        image = _pipeline._load((phantom_dir / truth["image"]).read_bytes()).image
        small, scale = _pipeline._detection_copy(image)
        frame = (truth["width"], truth["height"])
        found = detect_faces(np.ascontiguousarray(small), scale=scale)
        grown = [g for g in (r.grown(margin, *frame) for r in found) if g is not None]
        boxes = [g.box for g in grown]
        for obj in truth["objects"]:
            if obj["kind"] == "face" and obj["identifying"]:
                band = "40+" if obj["size_band"] in ("40-100", ">=100") else obj["size_band"]
                bands[band][0] += bool(boxes) and coverage(tuple(obj["box"]), boxes) >= HIDDEN_COVERAGE
                bands[band][1] += 1
        regions = [{"box": list(g.box), "score": g.score, "on_target": _on_target(g.box, truth["objects"])}
                   for g in grown]
        off = [r for r in regions if not r["on_target"]]
        hidden = _findings_hidden(regions, [o for o in truth["objects"] if o["kind"] == "finding"])
        false_boxes += len(off)
        clean_boxes += len(regions) if truth["clean"] else 0
        photos_with_finding_hidden += hidden > 0
        photos += 1
        if off:
            per_photo[truth["image"]] = {"clean": truth["clean"], "finding_hidden": hidden > 0,
                                         "boxes": [[r["box"], round(r["score"], 3)] for r in off]}
    return {
        "photos": photos,
        "faces_found": {band: f"{hit}/{n}" for band, (hit, n) in bands.items()},
        "boxes_on_no_face": false_boxes,
        "boxes_on_clean_photos": clean_boxes,
        "photos_with_a_finding_under_a_face_box": photos_with_finding_hidden,
        "boxes_on_no_face_by_photo": per_photo,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phantoms", type=Path, help="a folder written by `workbench phantoms`")
    parser.add_argument("--json", type=Path, help="also write the figures and the boxes on no face here")
    args = parser.parse_args()
    result = measure(args.phantoms)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    for key, value in result.items():
        if key != "boxes_on_no_face_by_photo":
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
