"""Issue 15 benchmark: the vault at a department's scale, against another revision in the same run.

Everything goes through the public API (``init_vault``, ``open_vault``,
``add_user``, ``add_consent``, ``add_photos``, ``photos``, ``load_previews``,
``withdraw_consent``, ``remove_user``), so the same functions measure today's
vault and a rewritten one.

- Gallery: a 500-photo vault (1600x1067 generated JPEGs, previews rendered
  beforehand): opening it, ``photos(purpose="research")`` (the first query
  after opening, and warm) and ``load_previews`` of 48 photos (first call,
  and warm). Target with ``--baseline``: at most 1.3x the baseline.
- User removal: ``remove_user`` of a researcher and of a clinician on a
  2,000-photo vault (reported).
- A department's years: 50,000 tiny photos (64x48 JPEGs, different bytes
  each) of 5,000 patients, 9 in 10 of them consented for research. Opening
  it plus ``photos(purpose="research")``: target within 1 s (open, first
  query and a warm query reported apart too); ``withdraw_consent``: target
  within 1 s. Then a query after the withdrawals and a clinician's removal
  on the same vault (reported).

Each measurement runs in a fresh process (``--probe``) on a fresh copy of
the built vault, so it reuses what an earlier one verified only if the code
keeps that in the vault folder. Each is repeated ``--repeat`` times (5) and
the best counts; every run's figures, the first included, are in the JSON.

``--baseline REV`` checks REV out into a temporary ``git worktree add
--detach`` (removed afterwards); ``--current REV`` does the same for the
side measured against it, which is otherwise this checkout as it is. Each
side's processes run with the same ``.venv`` python (the dependencies are
the same) and ``PYTHONPATH`` set to its code, so ``import workbench`` finds
that side's package while the measurement functions are this file's. The
sides take turns, measurement by measurement, so a change in the machine's
load falls on both; the table shows both and the ratio current / baseline.
Results go to ``benchmarks/results/vault_scale.json``.

Building goes through the public API too: one transaction (and fsyncs) per
photo. On today's code that is about 2.7 ms per tiny photo and 1 ms per
consent grant (measured on 1,000 and 2,000 photos first); 50,000 photos took
133 s. Built vaults are kept in ``benchmarks/.cache/`` (ignored by git), one
folder per kind, size and code revision: the last commit that changed the
imported ``workbench`` package, plus a digest of its files when they differ
from that commit (so a commit that leaves the package alone reuses them).
Measurements run on copies. ``--no-cache`` builds afresh in the run's
temporary folder; delete ``benchmarks/.cache/`` to reclaim the space (about
450 MB per code revision at the default sizes).

On 2 cores a run with nothing cached takes about 3.5 minutes, about 1
minute once the vaults are cached; with ``--baseline`` of another revision
both sides build, about 7 minutes with nothing cached (more if the
baseline builds slower). The quick check below takes about 1 minute.

    .venv/bin/python -m benchmarks.bench_vault_scale                    # current code only
    .venv/bin/python -m benchmarks.bench_vault_scale --baseline main    # against main, in the same run
    .venv/bin/python -m benchmarks.bench_vault_scale --baseline main --photos 5000 --removal-photos 500 \
        --gallery-photos 100 --repeat 3                                   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

import workbench as wb

from ._util import best_of, save, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
BUILD_VERSION = 3  # part of the cache key: raise it when the generated vaults change

PASS = "correct-horse-battery-staple-42"
ADMIN, PHOTOGRAPHER, CLINICIAN, RESEARCHER = "ada", "pho", "cli", "res"
LEAVERS = [("leaver-res", "researcher"), ("leaver-cli", "clinician")]
USERS = [(PHOTOGRAPHER, "photographer"), (CLINICIAN, "clinician"), (RESEARCHER, "researcher"), *LEAVERS]
SITES = ["arm", "leg", "back", "hand", "face"]
PAGE = 48
# variables that would change what the code under test does
CLEARED_ENV = ["WORKBENCH_PASSPHRASE", "WORKBENCH_NEW_PASSPHRASE", "WORKBENCH_VAULT", "WORKBENCH_USER",
               "WORKBENCH_CHECKPOINT"]


# -- generated vaults ---------------------------------------------------------

def mrn(patient: int) -> str:
    return f"MRN-{patient:06d}"


def consents_research(patient: int) -> bool:
    return patient % 10 != 9


def photo_count(patient: int, photos: int, patients: int) -> int:
    return photos // patients + (1 if patient < photos % patients else 0)


def tiny_jpeg(rng) -> bytes:
    """64x48 JPEG scaled up from 8x6 random pixels: about 1.3 KB, different bytes every time."""
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    out = io.BytesIO()
    small.resize((64, 48), Image.BILINEAR).save(out, "JPEG", quality=85)
    return out.getvalue()


def camera_jpeg(rng, width: int = 1600, height: int = 1067) -> bytes:
    """A smooth random colour field with grain, the size of the gallery benchmark's photos."""
    small = Image.fromarray(rng.integers(40, 220, (8, 12, 3), dtype=np.uint8))
    field = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.int16)
    grain = rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def build_vault(path: Path, photos: int, patients: int, make_photo, label: str) -> dict:
    """Users, then for each patient a consent grant and their photos, added by the photographer."""
    rng = np.random.default_rng(15)
    vault = wb.init_vault(path, admin=ADMIN, passphrase=PASS)
    for name, role in USERS:
        vault.add_user(name, role, PASS)
    vault.close()
    pho = wb.open_vault(path, user=PHOTOGRAPHER, passphrase=PASS)
    research = done = 0
    started = time.perf_counter()
    for patient in range(patients):
        pho.add_consent(mrn(patient), "care,research" if consents_research(patient) else "care")
        count = photo_count(patient, photos, patients)
        items = ((make_photo(rng), None) for _ in range(count))
        results = list(pho.add_photos(items, patient=mrn(patient), body_site=SITES[patient % len(SITES)]))
        assert all(r.status == "added" for r in results), [r.status for r in results]
        research += count if consents_research(patient) else 0
        done += count
        if photos >= 5000 and done * 10 // photos != (done - count) * 10 // photos:
            print(f"    {label}: {done}/{photos} photos, {time.perf_counter() - started:.0f} s", flush=True)
    pho.close()
    # each user opens it and looks once, as they would have: the vault may keep
    # what they verified outside the vault folder (XDG_STATE_HOME, see run_probe);
    # the cold rows measure a user who never opened it on this machine
    for user in (ADMIN, PHOTOGRAPHER, CLINICIAN, RESEARCHER):
        with wb.open_vault(path, user=user, passphrase=PASS) as vault:
            vault.photos(purpose="care")
    return {"photos": photos, "patients": patients, "research_photos": research}


def build_gallery(path: Path, photos: int, patients: int) -> dict:
    meta = build_vault(path, photos, patients, camera_jpeg, "gallery")
    cli = wb.open_vault(path, user=CLINICIAN, passphrase=PASS)
    ids = list(cli.photos(purpose="research")["photo_id"])
    cli.load_previews(ids)  # renders and stores every preview the ingest left for later
    cli.close()
    return meta


def code_revision() -> tuple[str, str]:
    """HEAD of the imported workbench's checkout, and the last commit that changed the package
    (with a digest of its files when they differ from it): vaults are cached under the second."""
    code = Path(wb.__file__).resolve().parent
    head = _git("-C", str(code), "rev-parse", "HEAD")
    rev = _git("-C", str(code), "log", "-1", "--format=%H", "HEAD", "--", ".")
    if _git("-C", str(code), "status", "--porcelain", "--", "."):
        digest = hashlib.sha256()
        for path in sorted(code.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(code)).encode() + b"\0" + path.read_bytes())
        rev += "-dirty-" + digest.hexdigest()[:12]
    return head, rev


def built_vault(kind: str, photos: int, patients: int, build, rev: str, folder: Path) -> tuple[Path, dict]:
    """The vault ``build`` makes, from ``folder`` (the cache) when an earlier run built it with this code."""
    key = f"{kind}-{photos}photos-{patients}patients-v{BUILD_VERSION}-{rev[:12]}{rev[40:]}"
    path, meta_path = folder / key, folder / f"{key}.json"
    if path.is_dir() and meta_path.is_file():
        return path, {**json.loads(meta_path.read_text()), "cached": True}
    print(f"  building {kind}: {photos} photos of {patients} patients", flush=True)
    partial_path = folder / f"{key}.partial"
    shutil.rmtree(partial_path, ignore_errors=True)
    shutil.rmtree(state_of(partial_path), ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_STATE_HOME"] = str(state_of(partial_path))
    started = time.perf_counter()
    meta = build(partial_path, photos, patients)
    meta["build_s"] = round(time.perf_counter() - started, 2)
    meta["build_per_photo_ms"] = round(1000 * meta["build_s"] / photos, 2)
    if state_of(partial_path).exists():
        shutil.rmtree(state_of(path), ignore_errors=True)
        state_of(partial_path).rename(state_of(path))
    partial_path.rename(path)  # a build cut short never looks finished
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return path, {**meta, "cached": False}


# -- probes: one measurement in a fresh process -------------------------------------

def probe_query(path: Path, expect: int) -> dict:
    started = time.perf_counter()
    vault = wb.open_vault(path, user=RESEARCHER, passphrase=PASS)
    opened = time.perf_counter()
    rows = len(vault.photos(purpose="research"))
    queried = time.perf_counter()
    warm = best_of(lambda: vault.photos(purpose="research"))
    vault.close()
    assert rows == expect, f"photos(purpose='research') gave {rows} rows, expected {expect}"
    return {"open_s": opened - started, "query_s": queried - opened, "open_query_s": queried - started,
            "warm_query_s": warm, "rows": rows}


def probe_previews(path: Path, expect: int) -> dict:
    vault = wb.open_vault(path, user=CLINICIAN, passphrase=PASS)
    ids = list(vault.photos(purpose="research")["photo_id"][:PAGE])
    started = time.perf_counter()
    previews = vault.load_previews(ids)
    first = time.perf_counter() - started
    warm = best_of(lambda: vault.load_previews(ids), 5)
    vault.close()
    assert len(previews) == min(PAGE, expect), len(previews)
    assert all(data[:2] == b"\xff\xd8" for data in previews.values()), "a preview is not a JPEG"
    return {"previews": len(previews), "previews_s": first, "warm_previews_s": warm}


def probe_withdraw(path: Path, count: int) -> dict:
    """Withdraw research consent of patients 0, 10, 20... (all consented for research)."""
    vault = wb.open_vault(path, user=PHOTOGRAPHER, passphrase=PASS)
    times = []
    for n in range(count):
        started = time.perf_counter()
        vault.withdraw_consent(mrn(10 * n), "research")
        times.append(time.perf_counter() - started)
    vault.close()
    return {"withdraw_s": times}


def probe_remove(path: Path) -> dict:
    vault = wb.open_vault(path, user=ADMIN, passphrase=PASS)
    times = {}
    for name, role in LEAVERS:
        started = time.perf_counter()
        vault.remove_user(name)
        times[f"remove_{role}_s"] = time.perf_counter() - started
    vault.close()
    for name, _ in LEAVERS:
        try:
            wb.open_vault(path, user=name, passphrase=PASS).close()
        except wb.AccessDenied:
            continue
        raise AssertionError(f"{name} still opens the vault after remove_user")
    return times


PROBES = {"query": probe_query, "previews": probe_previews, "withdraw": probe_withdraw, "remove": probe_remove}


def state_of(vault: Path) -> Path:
    """What the vault's users keep outside it (their witnesses), per copy: ``XDG_STATE_HOME``."""
    return vault.with_name(vault.name + "-state")


def probe_query_cold(path: Path, expect: int) -> dict:
    """A user's first open on this machine: nothing verified before."""
    shutil.rmtree(state_of(path), ignore_errors=True)
    return probe_query(path, expect)


PROBES["query_cold"] = probe_query_cold


def run_probe(mode: str, path: str, out: str, *args: str) -> None:
    os.environ["XDG_STATE_HOME"] = str(state_of(Path(path)))
    result = PROBES[mode](Path(path), *map(int, args))
    Path(out).write_text(json.dumps(result) + "\n")


def run_build(args) -> None:
    """Build (or find in the cache) every vault, with the workbench that PYTHONPATH gives."""
    code = Path(wb.__file__).resolve().parent.parent
    assert code == Path(args.code).resolve(), f"workbench was imported from {code}, not {args.code}"
    head, rev = code_revision()
    folder = Path(args.work) / "built" if args.no_cache else CACHE
    print(f"  workbench from {code}: checkout at {head[:12]}, package last changed in {rev[:12]}{rev[40:]}",
          flush=True)
    tiny = partial(build_vault, make_photo=tiny_jpeg, label="building")
    vaults = {}
    for kind, photos, build in [("gallery", args.gallery_photos, build_gallery),
                                ("removal", args.removal_photos, tiny), ("scale", args.photos, tiny)]:
        patients = args.patients if kind == "scale" and args.patients else max(1, photos // 10)
        path, meta = built_vault(kind, photos, patients, build, rev, folder)
        vaults[kind] = {"path": str(path), **meta}
    Path(args.build).write_text(json.dumps({"head": head, "revision": rev, "vaults": vaults}, indent=1) + "\n")


# -- the run: each side's code in its own processes, the sides measured in turns ----------

def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def worktree(rev: str, path: Path):
    """REV checked out (detached) at ``path``, removed afterwards."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def run(side: dict, *args) -> None:
    """This module with ``args`` in a new process that imports the side's workbench."""
    command = [sys.executable, "-m", "benchmarks.bench_vault_scale", *map(str, args)]
    subprocess.run(command, cwd=side["cwd"], env=side["env"], check=True)


def prepare_side(label: str, code: Path, work: Path, args) -> dict:
    """The code to measure, the environment whose ``import workbench`` finds it, and its built vaults.

    Its processes start in a folder that holds only a link to this
    benchmarks package, with PYTHONPATH set to ``code``: starting in the
    project root (or the baseline worktree) would put that folder's own
    ``workbench`` or ``benchmarks`` ahead of PYTHONPATH.
    """
    harness = work / "harness"
    if not harness.exists():
        harness.mkdir()
        (harness / "benchmarks").symlink_to(HERE, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    env["PYTHONPATH"] = str(code)
    side = {"label": label, "code": str(code), "cwd": str(harness), "env": env, "work": work / label}
    out = work / f"{label}-build.json"
    print(f"{label}:", flush=True)
    run(side, "--build", out, "--code", code, "--work", side["work"], "--photos", args.photos,
        "--patients", args.patients, "--gallery-photos", args.gallery_photos,
        "--removal-photos", args.removal_photos, *(["--no-cache"] if args.no_cache else []))
    return {**side, **json.loads(out.read_text())}


def probe(side: dict, mode: str, path: Path, *args) -> dict:
    out = path.parent / f"probe-{mode}.json"
    run(side, "--probe", mode, path, out, *args)
    return json.loads(out.read_text())


def in_turns(sides: list[dict], repeat: int, measure) -> dict[str, list]:
    """``measure(side)`` ``repeat`` times for each side, the sides taking turns
    (A B, B A, A B...), so that a change in the machine's load falls on both alike."""
    runs = {side["label"]: [] for side in sides}
    for n in range(repeat):
        for side in sides if n % 2 == 0 else sides[::-1]:
            runs[side["label"]].append(measure(side))
    return runs


def fresh_copy(side: dict, kind: str) -> Path:
    copy = side["work"] / kind
    source = Path(side["vaults"][kind]["path"])
    for path in (copy, state_of(copy)):
        shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(source, copy)
    if state_of(source).exists():
        shutil.copytree(state_of(source), state_of(copy))
    return copy


def best(runs: list[dict], key: str) -> float:
    return min(run[key] for run in runs)


def measure_gallery(sides: list[dict], repeat: int) -> dict:
    copies = {side["label"]: fresh_copy(side, "gallery") for side in sides}

    def query(side):
        return probe(side, "query", copies[side["label"]], side["vaults"]["gallery"]["research_photos"])

    def previews(side):
        return probe(side, "previews", copies[side["label"]], side["vaults"]["gallery"]["research_photos"])

    queries, pages = in_turns(sides, repeat, query), in_turns(sides, repeat, previews)
    out = {}
    for label, copy in copies.items():
        shutil.rmtree(copy)
        q, p = queries[label], pages[label]
        out[label] = {
            "open_s": best(q, "open_s"), "query_s": best(q, "query_s"), "warm_query_s": best(q, "warm_query_s"),
            "previews_s": best(p, "previews_s"), "warm_previews_s": best(p, "warm_previews_s"),
            "query_runs": q, "preview_runs": p,
        }
    return out


def measure_removal(sides: list[dict], repeat: int) -> dict:
    def remove(side):
        copy = fresh_copy(side, "removal")
        result = probe(side, "remove", copy)
        shutil.rmtree(copy)
        return result

    runs = in_turns(sides, repeat, remove)
    return {label: {"remove_researcher_s": best(r, "remove_researcher_s"),
                    "remove_clinician_s": best(r, "remove_clinician_s"), "runs": r}
            for label, r in runs.items()}


def measure_scale(sides: list[dict], repeat: int) -> dict:
    copies = {side["label"]: fresh_copy(side, "scale") for side in sides}

    def expected(side, withdrawals=0):
        meta = side["vaults"]["scale"]
        gone = sum(photo_count(10 * n, meta["photos"], meta["patients"]) for n in range(withdrawals))
        return meta["research_photos"] - gone

    queries = in_turns(sides, repeat, lambda side: probe(side, "query", copies[side["label"]], expected(side)))
    cold = in_turns(sides, 1, lambda side: probe(side, "query_cold", copies[side["label"]], expected(side)))
    withdraw = in_turns(sides, 1, lambda side: probe(side, "withdraw", copies[side["label"]], repeat))
    after = in_turns(sides, 1, lambda side: probe(side, "query", copies[side["label"]], expected(side, repeat)))
    removal = in_turns(sides, 1, lambda side: probe(side, "remove", copies[side["label"]]))
    out = {}
    for label, copy in copies.items():
        shutil.rmtree(copy)
        q, w = queries[label], withdraw[label][0]["withdraw_s"]
        out[label] = {
            "open_s": best(q, "open_s"), "query_s": best(q, "query_s"), "open_query_s": best(q, "open_query_s"),
            "first_open_query_s": q[0]["open_query_s"], "warm_query_s": best(q, "warm_query_s"),
            "cold_open_query_s": cold[label][0]["open_query_s"],
            "rows": q[0]["rows"], "withdraw_s": min(w), "first_withdraw_s": w[0],
            "open_query_after_withdraw_s": after[label][0]["open_query_s"],
            "remove_clinician_s": removal[label][0]["remove_clinician_s"],
            "query_runs": q, "withdraw_runs": w, "after_withdraw_run": after[label][0],
            "removal_run": removal[label][0],
        }
    return out


def rows_for(params: dict) -> list[tuple]:
    """label, group, key, target: ("ratio", x) against the baseline, or ("within", seconds)."""
    g, r, n = params["gallery_photos"], params["removal_photos"], f"{params['photos']:,}"
    return [
        (f"open, {g}-photo vault", "gallery", "open_s", ("ratio", 1.3)),
        (f"photos(research), {g} photos, first after open", "gallery", "query_s", ("ratio", 1.3)),
        (f"photos(research), {g} photos, warm", "gallery", "warm_query_s", ("ratio", 1.3)),
        (f"load_previews, {PAGE} (rendered), first call", "gallery", "previews_s", ("ratio", 1.3)),
        (f"load_previews, {PAGE} (rendered), warm", "gallery", "warm_previews_s", ("ratio", 1.3)),
        (f"remove_user researcher, {r:,}-photo vault", "removal", "remove_researcher_s", None),
        (f"remove_user clinician, {r:,}-photo vault", "removal", "remove_clinician_s", None),
        (f"{n}: open", "scale", "open_s", None),
        (f"{n}: photos(research), first after open", "scale", "query_s", None),
        (f"{n}: open + photos(research)", "scale", "open_query_s", ("within", 1.0)),
        (f"{n}: same, first process on the copy", "scale", "first_open_query_s", ("within", 1.0)),
        (f"{n}: same, a user's first open on this machine", "scale", "cold_open_query_s", None),
        (f"{n}: photos(research), warm", "scale", "warm_query_s", None),
        (f"{n}: withdraw_consent", "scale", "withdraw_s", ("within", 1.0)),
        (f"{n}: same, first withdrawal", "scale", "first_withdraw_s", ("within", 1.0)),
        (f"{n}: open + photos(research) after withdrawals", "scale", "open_query_after_withdraw_s", None),
        (f"{n}: remove_user clinician", "scale", "remove_clinician_s", None),
    ]


def compare(results: dict, params: dict) -> list[dict]:
    rows = []
    for label, group, key, target in rows_for(params):
        row = {"measure": label, "current_s": results["current"][group][key]}
        if "baseline" in results:
            row["baseline_s"] = results["baseline"][group][key]
            row["ratio"] = round(row["current_s"] / row["baseline_s"], 3)
        if target and target[0] == "ratio" and "ratio" in row:
            row["target"] = f"<= {target[1]}x baseline"
            row["met"] = row["ratio"] <= target[1]
        elif target and target[0] == "within":
            row["target"] = f"<= {target[1]:g} s"
            row["met"] = row["current_s"] <= target[1]
        rows.append(row)
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def report(rows: list[dict], results: dict, path: Path) -> None:
    print(f"vault at scale ({path})")
    lines = []
    for row in rows:
        cells = _ms(row["current_s"])
        if "baseline_s" in row:
            cells += f"  baseline {_ms(row['baseline_s'])}  ratio {row['ratio']:5.2f}"
        if "target" in row:
            cells += f"  (target {row['target']}: {'met' if row['met'] else 'NOT MET'})"
        lines.append((row["measure"], cells))
    for label, result in results.items():
        for kind, meta in result["builds"].items():
            how = "cached by an earlier run" if meta["cached"] else "built in this run"
            lines.append((f"{label} build, {kind} ({meta['photos']:,} photos)",
                          f"{meta['build_s']:.1f} s, {meta['build_per_photo_ms']} ms/photo ({how})"))
    print(table(lines))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision, in the same run")
    parser.add_argument("--current", metavar="REV",
                        help="measure this git revision as the current side (default: this checkout as it is)")
    parser.add_argument("--photos", type=int, default=50_000, help="photos in the large vault")
    parser.add_argument("--patients", type=int, default=0, help="patients in the large vault (default photos / 10)")
    parser.add_argument("--gallery-photos", type=int, default=500)
    parser.add_argument("--removal-photos", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per measurement (the best counts)")
    parser.add_argument("--no-cache", action="store_true", help="build every vault in this run, keep none")
    parser.add_argument("--build", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        run_probe(*args.probe)
        return {}
    if args.build:
        run_build(args)
        return {}
    # a stopped run (SIGTERM) still removes its worktree and temporary folder
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    patients = args.patients or max(1, args.photos // 10)
    if not 1 <= args.repeat or 10 * (args.repeat - 1) >= patients:
        parser.error("--repeat N withdraws the research consent of patients 0, 10, ... 10 * (N - 1): "
                     "the large vault needs more patients")
    params = {"photos": args.photos, "patients": patients, "gallery_photos": args.gallery_photos,
              "removal_photos": args.removal_photos, "repeat": args.repeat, "cache": not args.no_cache}
    started, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp, contextlib.ExitStack() as stack:
        # inside the project tree: same filesystem as a real vault would use
        work = Path(tmp)
        sides, revs = [], {}
        for label, rev in [("baseline", args.baseline), ("current", args.current)]:
            if rev is None:
                continue
            try:
                revs[label] = _git("-C", str(ROOT), "rev-parse", "--verify", rev + "^{commit}")
            except subprocess.CalledProcessError:
                parser.error(f"--{label} {rev}: not a commit of this repository")
            code = stack.enter_context(worktree(revs[label], work / f"{label}-code"))
            sides.append(prepare_side(label, code, work, args))
        if args.current is None:
            sides.append(prepare_side("current", ROOT, work, args))
        print("measuring" + (", the two sides in turns" if args.baseline else ""), flush=True)
        results = {side["label"]: {"head": side["head"], "revision": side["revision"], "builds": side["vaults"]}
                   for side in sides}
        for group, measure in [("gallery", measure_gallery), ("removal", measure_removal), ("scale", measure_scale)]:
            for label, measured in measure(sides, args.repeat).items():
                results[label][group] = measured
    rows = compare(results, params)
    result = {
        "cpu_model": cpu_model(), "baseline": args.baseline, "current": args.current or "this checkout",
        "revisions": revs, "params": params,
        "rows": rows, "results": results, "run_s": round(time.perf_counter() - started, 1),
        # other work on the machine shows here (the sides' turns share it alike)
        "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]},
    }
    path = save("vault_scale", result)
    report(rows, results, path)
    load = result["load_average_1min"]
    print(f"  (whole run {result['run_s']:.0f} s; {result['cpu_model']}, {os.cpu_count()} CPUs, "
          f"load average {load['start']:.2f} at the start, {load['end']:.2f} at the end)")
    return result


if __name__ == "__main__":
    main()
