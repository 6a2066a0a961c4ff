"""Issue 3 benchmark: the de-identification pipeline without detectors, per 20 MP JPEG.

Pipeline = decode (EXIF orientation applied) + redaction of given regions +
rebuild (new JPEG, quality 95, 4:4:4, no metadata) + verification (metadata
re-read, fills checked). Floor = Pillow decode + encode of the same file
with the same encoder settings, in the same run. Target: at most 1.3x.
Peak memory of the process is reported (target under 1 GB per image).
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from workbench import _synth, deid

from ._util import best_of, peak_rss_mb, save, table

REGIONS = [
    deid.Region("manual", (1200, 800, 600, 700)),   # a face-sized box
    deid.Region("manual", (300, 3000, 900, 200)),   # a label
    deid.Region("manual", (4500, 300, 300, 300)),   # a barcode
]


def floor(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data))
    im.load()
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95, subsampling=0)
    return out.getvalue()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    data, _ = _synth.synth_photo(np.random.default_rng(1), width=5472, height=3648, quality=95)
    policy = deid.Policy(detectors=())
    result = deid.deidentify(data, policy, regions=REGIONS)
    assert result.verified, result.warnings
    floor_s = best_of(lambda: floor(data), args.repeat)
    ours_s = best_of(lambda: deid.deidentify(data, policy, regions=REGIONS), args.repeat)
    out = {
        "image": "5472x3648 JPEG q95 (generated)",
        "input_mb": round(len(data) / 1e6, 2),
        "floor_decode_encode_s": round(floor_s, 4),
        "pipeline_no_detectors_s": round(ours_s, 4),
        "ratio": round(ours_s / floor_s, 3),
        "target_ratio_at_most": 1.3,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    path = save("deid", out)
    print(f"de-identification pipeline benchmark ({path})")
    print(table([
        ("floor: Pillow decode + encode (q95 4:4:4)", f"{floor_s * 1000:.0f} ms"),
        ("pipeline, 3 regions, no detectors", f"{ours_s * 1000:.0f} ms"),
        ("ratio", f"{out['ratio']} (target <= 1.3)"),
        ("peak memory (process)", f"{out['peak_rss_mb']} MB (target < 1024)"),
    ]))
    return out


if __name__ == "__main__":
    main()
