"""Issue 5 benchmark: parallel de-identification in cohort builds.

The parallel part of a build is ``prepare_derivatives`` (decrypt each
original here, de-identify in workers, encrypt the result here). Measured on
generated photos with the default policy (faces, text, barcodes, verification):

- 200 photos with 1 and 2 local workers and with a 2-worker Dask LocalCluster
  (target: 2 workers at least 1.7x faster than 1);
- time per photo at 50, 100, 200 and 400 photos with 2 workers (target: flat).

Each measurement starts from a copy of the same vault with no derivatives.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import workbench as wb
from workbench import _synth
from workbench.cohort import prepare_derivatives

from ._util import save, table

PASS = "bench-passphrase"


def _make_vault(root: Path, count: int, width: int, height: int) -> tuple[Path, list[str]]:
    path = root / "vault"
    rng = np.random.default_rng(5)
    with wb.init_vault(path, admin="ada", passphrase=PASS) as vault:
        identity = _synth.fake_identity(rng)
        vault.add_consent(identity.mrn, "care,research")
        ids = []
        for _ in range(count):
            data, _ = _synth.synth_photo(rng, identity=identity, width=width, height=height)
            ids.append(vault.add_photo(data, patient=identity.mrn, body_site="arm").photo_id)
    return path, ids


def _timed(template: Path, work: Path, ids: list[str], **kw) -> float:
    copy = work / f"run-{time.monotonic_ns()}"
    shutil.copytree(template, copy)
    with wb.open_vault(copy, user="ada", passphrase=PASS) as vault:
        started = time.perf_counter()
        done = prepare_derivatives(vault, ids, **kw)
        elapsed = time.perf_counter() - started
    assert len(done) == len(ids)
    shutil.rmtree(copy)
    return elapsed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--scaling", default="50,100,200,400")
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=533)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.scaling.split(",") if n]
    # 1 worker = one single-threaded worker process, like each of the 2
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        work = Path(tmp)
        template, ids = _make_vault(work, max([args.photos, *sizes]), args.width, args.height)
        main_ids = ids[: args.photos]
        one = _timed(template, work, main_ids, workers=1)
        two = _timed(template, work, main_ids, workers=2)
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          env={"WORKBENCH_THREADS": "1", "OMP_NUM_THREADS": "1"}) as cluster:
            with Client(cluster) as client:
                dask = _timed(template, work, main_ids, scheduler=client)
        per_photo = {n: _timed(template, work, ids[:n], workers=2) / n for n in sizes}
    flat = max(per_photo.values()) / min(per_photo.values())
    result = {
        "photos": args.photos,
        "photo_size": f"{args.width}x{args.height}",
        "workers_1_s": round(one, 2),
        "workers_2_s": round(two, 2),
        "dask_localcluster_2_s": round(dask, 2),
        "speedup_2_vs_1": round(one / two, 3),
        "speedup_dask_vs_1": round(one / dask, 3),
        "target_speedup_at_least": 1.7,
        "per_photo_s_by_count": {str(n): round(v, 4) for n, v in per_photo.items()},
        "per_photo_max_over_min": round(flat, 3),
    }
    path = save("cohort", result)
    print(f"cohort build scaling benchmark ({path})")
    rows = [
        (f"{args.photos} photos, 1 worker", f"{one:.1f} s"),
        (f"{args.photos} photos, 2 workers", f"{two:.1f} s ({one / two:.2f}x, target >= 1.7)"),
        (f"{args.photos} photos, Dask LocalCluster 2 workers", f"{dask:.1f} s ({one / dask:.2f}x)"),
    ]
    rows += [(f"per photo at {n} photos (2 workers)", f"{v * 1000:.0f} ms") for n, v in per_photo.items()]
    rows.append(("per-photo max / min", f"{flat:.2f} (flat = close to 1)"))
    print(table(rows))
    return result


if __name__ == "__main__":
    main()
