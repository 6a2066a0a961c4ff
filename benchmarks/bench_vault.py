"""Issue 2 benchmarks: ingest throughput and gallery latency, each against its floor.

- Ingest of N generated 20 MP JPEGs against the floor measured in the same
  run on the same bytes: read + AES-256-GCM + write + fsync. Target: at least
  half the floor's throughput.
- Listing a 500-photo vault and decrypting the first 48 previews against
  reading and decoding the same 48 previews stored as plain JPEG files.
  Target: at most 3x.
- Vault open time (Argon2id key derivation + index check).
- The deferred cost: rendering the previews that ingest leaves for the first
  reader with the originals key (JPEG and PNG are validated from structure).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import workbench as wb
from workbench import _synth
from workbench.vault import _crypto

from ._util import best_of, peak_rss_mb, save, table

PASS = "bench-passphrase"


def _make_card(root: Path, count: int, width: int, height: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    identity = _synth.fake_identity(rng)
    paths = []
    folder = root / "DCIM" / "100CANON"
    folder.mkdir(parents=True)
    for n in range(count):
        data, _ = _synth.synth_photo(rng, identity=identity, width=width, height=height)
        path = folder / f"IMG_{n + 1:04d}.JPG"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _floor(paths: list[Path], out_dir: Path) -> float:
    """read + AES-256-GCM + write + fsync, per file, in the same filesystem."""
    out_dir.mkdir()
    started = time.perf_counter()
    for n, path in enumerate(paths):
        data = path.read_bytes()
        _, sealed = _crypto.encrypt_blob(f"{n:024x}", "original", data)
        fd = os.open(out_dir / f"{n}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, sealed)
        os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - started


def _new_vault(root: Path, name: str):
    vault = wb.init_vault(root / name, admin="ada", passphrase=PASS)
    vault.add_user("pho", "photographer", PASS)
    vault.add_consent("MRN-BENCH", "care,research")
    vault.close()
    return wb.open_vault(root / name, user="pho", passphrase=PASS)


def bench_ingest(work: Path, count: int) -> dict:
    paths = _make_card(work / "card", count, 5472, 3648, seed=1)
    total_bytes = sum(p.stat().st_size for p in paths)
    for p in paths:  # warm the page cache for both contenders alike
        p.read_bytes()
    floor = _floor(paths, work / "floor")
    shutil.rmtree(work / "floor")
    vault = _new_vault(work, "ingest-vault")
    started = time.perf_counter()
    report = wb.ingest(vault, [work / "card"], patient="MRN-BENCH", body_site="arm")
    ours = time.perf_counter() - started
    vault.close()
    assert report.ok and len(report.added) == count, report.summary()
    mb = total_bytes / 1e6
    return {
        "photos": count,
        "megabytes": round(mb, 1),
        "floor_s": round(floor, 3),
        "ingest_s": round(ours, 3),
        "floor_mb_s": round(mb / floor, 1),
        "ingest_mb_s": round(mb / ours, 1),
        "throughput_ratio": round(floor / ours, 3),
        "target_ratio_at_least": 0.5,
        "per_photo_ms": round(1000 * ours / count, 1),
    }


def bench_gallery(work: Path, count: int, page: int = 48) -> dict:
    rng = np.random.default_rng(2)
    identity = _synth.fake_identity(rng)
    vault = _new_vault(work, "gallery-vault")
    for n in range(count):
        data, _ = _synth.synth_photo(rng, identity=identity, width=1600, height=1067)
        vault.add_photo(data, patient="MRN-BENCH", body_site="arm")
    vault.close()

    # Ingest leaves JPEG previews for the first reader with the originals key;
    # time that once (what a first look at the whole vault costs), then the
    # gallery with previews in place.
    admin = wb.open_vault(work / "gallery-vault", user="ada", passphrase=PASS)
    started = time.perf_counter()
    rendered = admin.render_previews()
    render_s = time.perf_counter() - started
    admin.close()
    assert rendered == count

    open_s = best_of(lambda: wb.open_vault(work / "gallery-vault", user="ada", passphrase=PASS).close())
    admin = wb.open_vault(work / "gallery-vault", user="ada", passphrase=PASS)
    ids = list(admin.photos("research")["photo_id"][:page])
    previews = admin.load_previews(ids)
    plain_dir = work / "plain-previews"
    plain_dir.mkdir()
    for n, photo_id in enumerate(ids):
        (plain_dir / f"{n:03d}.jpg").write_bytes(previews[photo_id])

    def plain():
        for path in sorted(plain_dir.iterdir()):
            Image.open(io.BytesIO(path.read_bytes())).convert("RGB").load()

    def ours():
        frame = admin.photos("research")
        got = admin.load_previews(list(frame["photo_id"][:page]))
        for data in got.values():
            Image.open(io.BytesIO(data)).convert("RGB").load()

    plain_s = best_of(plain, 5)
    ours_s = best_of(ours, 5)
    admin.close()
    return {
        "photos_in_vault": count,
        "page": page,
        "plain_read_decode_s": round(plain_s, 4),
        "list_and_decrypt_s": round(ours_s, 4),
        "ratio": round(ours_s / plain_s, 2),
        "target_ratio_at_most": 3.0,
        "vault_open_s": round(open_s, 3),
        "render_previews_s": round(render_s, 3),
        "render_preview_per_photo_ms": round(1000 * render_s / count, 1),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ingest-photos", type=int, default=200)
    parser.add_argument("--gallery-photos", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as tmp:
        # inside the project tree: same filesystem as a real vault would use
        work = Path(tmp)
        ingest = bench_ingest(work, args.ingest_photos)
        gallery = bench_gallery(work, args.gallery_photos)
    result = {"ingest": ingest, "gallery": gallery, "peak_rss_mb": round(peak_rss_mb(), 1)}
    path = save("vault", result)
    print("vault benchmarks (" + str(path) + ")")
    print(table([
        ("ingest floor (read+AES-GCM+write+fsync)", f"{ingest['floor_mb_s']} MB/s"),
        ("ingest (validate, seal, verify, index, audit)", f"{ingest['ingest_mb_s']} MB/s"),
        ("ingest throughput / floor", f"{ingest['throughput_ratio']} (target >= 0.5)"),
        ("ingest per 20 MP photo", f"{ingest['per_photo_ms']} ms"),
        ("48 plain previews read+decode", f"{gallery['plain_read_decode_s'] * 1000:.1f} ms"),
        ("list 500 + decrypt+decode 48 previews", f"{gallery['list_and_decrypt_s'] * 1000:.1f} ms"),
        ("gallery ratio", f"{gallery['ratio']} (target <= 3)"),
        ("vault open (Argon2id + index check)", f"{gallery['vault_open_s'] * 1000:.0f} ms"),
        ("render previews left by ingest (1600x1067)", f"{gallery['render_preview_per_photo_ms']} ms/photo"),
    ]))
    return result


if __name__ == "__main__":
    main()
