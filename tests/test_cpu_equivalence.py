"""Every detector's regions on pinned phantoms are those computed on other CPUs.

The text rules cut touching label lines at a probability of 0.5 and keep a
piece read at 0.8; the barcode search turns an area by its edges' leaning
peak when that differs from the mean by a degree; the ruler rules read
digits; a line found only with the ground taken away is kept when read
at 0.8. Each compares floats from onnxruntime, OpenCV or NumPy with a
threshold, and those libraries choose their kernels by the CPU's
instruction set. ``tests/data/region_answers.json`` holds the regions of
``tools/cpu_equivalence.py --regions --answers`` on a CPU with AVX2 and no
AVX-512 (AMD EPYC), found the same under an emulated SSE4.2-only CPU
(``--regions --cpu Nehalem``; too slow for this suite). On a CPU where an
answer changes, the test below fails and names the CPU. The face
detector's own pins are in ``test_models.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from workbench.deid import _models

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import cpu_equivalence  # noqa: E402


def test_the_region_tolerance_tells_a_lost_region_and_a_moved_box_from_rounding():
    a = {"scale": 0.5, "regions": [["face", 1828, 1906, 74, 96, 0.8758], ["text", 99, 2576, 970, 256, 0.9992]]}
    moved = {"scale": 0.5, "regions": [["face", 1831, 1906, 74, 96, 0.8801], ["text", 99, 2573, 970, 259, 0.9992]]}
    assert cpu_equivalence.same_regions(a, moved)                                   # 4 px is 2 px at half size
    assert not cpu_equivalence.same_regions(a, dict(a, regions=a["regions"][:1]))  # a text region lost
    assert not cpu_equivalence.same_regions(a, dict(a, regions=[["face", 1828, 1906, 74, 96, 0.8758],
                                                                ["text", 99, 2576, 970, 128, 0.9992]]))  # cut in half
    assert not cpu_equivalence.same_regions(a, dict(a, regions=[["face", 1828, 1906, 74, 96, 0.8758],
                                                                ["barcode", 99, 2576, 970, 256, 0.9992]]))  # another kind
    assert not cpu_equivalence.same_regions(a, dict(a, scale=1.0))


def test_cpu_dependent_regions_match_the_answers_pinned_on_other_cpus():
    pinned = json.loads((ROOT / "tests" / "data" / "region_answers.json").read_text())
    here = cpu_equivalence.region_answers()
    assert here.keys() == pinned.keys()
    kinds = {r[0] for answer in pinned.values() for r in answer["regions"]}
    assert kinds == {"face", "text", "barcode"}
    for name in pinned:
        assert cpu_equivalence.same_regions(here[name], pinned[name]), (
            f"{name}: on this CPU ({_models.cpu_path()}) {here[name]}, pinned {pinned[name]}: the detectors' "
            "regions depend on the instruction set; run tools/cpu_equivalence.py --regions")
