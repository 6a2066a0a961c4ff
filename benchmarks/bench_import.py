"""Issue 17 benchmark: card import of generated 20 MP JPEGs against its floor.

The floor is measured in the same run on the same bytes: read + AES-256-GCM +
write + fsync (as for ingest, ``bench_vault``). Ours is ``wb.import_card`` from
the card folder with ``remove=True`` (read, validate, seal, read back, index,
audit, verify, delete from the card, sealed manifest), and the same through
libgphoto2's Directory Browse driver on a ``disk:`` port. Target: at least
half the floor's throughput.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import workbench as wb

from ._util import peak_rss_mb, save, table
from .bench_vault import _floor, _make_card, _new_vault


def bench_import(work: Path, count: int) -> dict:
    paths = _make_card(work / "card", count, 5472, 3648, seed=1)
    total_mb = sum(p.stat().st_size for p in paths) / 1e6
    for p in paths:  # warm the page cache for every contender alike
        p.read_bytes()
    floor = _floor(paths, work / "floor")
    shutil.rmtree(work / "floor")
    out = {"photos": count, "megabytes": round(total_mb, 1), "floor_s": round(floor, 3),
           "floor_mb_s": round(total_mb / floor, 1), "target_ratio_at_least": 0.5}
    for how in ("folder", "gphoto2"):
        card = work / f"card-{how}"
        shutil.copytree(work / "card", card)
        for p in card.rglob("*.JPG"):
            p.read_bytes()
        vault = _new_vault(work, f"vault-{how}")
        started = time.perf_counter()
        if how == "folder":
            report = wb.import_card(vault, card, patient="MRN-BENCH", body_site="arm", remove=True)
        else:
            with wb.open_camera(f"disk:{card}") as camera:
                report = wb.import_card(vault, camera, patient="MRN-BENCH", body_site="arm", remove=True)
        ours = time.perf_counter() - started
        vault.close()
        assert report.ok and len(report.imported) == count == len(report.removed), report.summary()
        out[f"{how}_s"] = round(ours, 3)
        out[f"{how}_mb_s"] = round(total_mb / ours, 1)
        out[f"{how}_ratio"] = round(floor / ours, 3)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        result = bench_import(Path(tmp), args.photos)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = save("import", result)
    print("card import benchmark (" + str(path) + ")")
    print(table([
        ("floor (read+AES-GCM+write+fsync)", f"{result['floor_mb_s']} MB/s"),
        ("import-card --remove, folder", f"{result['folder_mb_s']} MB/s"),
        ("import-card --remove, libgphoto2 disk:", f"{result['gphoto2_mb_s']} MB/s"),
        ("folder / floor", f"{result['folder_ratio']} (target >= 0.5)"),
        ("libgphoto2 / floor", f"{result['gphoto2_ratio']} (target >= 0.5)"),
    ]))
    return result


if __name__ == "__main__":
    main()
