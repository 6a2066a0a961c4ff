"""Issue 19 benchmark: the share portal against a plain static file server, 50 concurrent viewers.

The same de-identified cohort image files are served two ways in one run,
each by its own uvicorn process on 127.0.0.1:

- the portal (``workbench share serve`` as the vault's portal account):
  session cookie, share checks, security headers, a verified image from its
  cache (watermark off; with it on, each viewer's marked copy is cached
  after the first request and served the same way);
- Starlette's ``StaticFiles`` over the cohort's ``images/`` folder, nothing else.

50 viewers (asyncio + httpx, in this process, on the same 2 cores) each
request images one after another for ``--seconds`` (60 by default) per
side; then the portal's gallery page likewise. Reported: p50 and p95
latency, requests per second, errors, the portal/static ratio at p50
(target: at most 2x), and the CPU. Nothing downloads; the photos are
generated.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import workbench as wb
from workbench import _synth, share
from workbench.cohort import build_cohort

from ._util import save, table

ROOT = Path(__file__).resolve().parents[1]
PASS = "bench-portal-passphrase 19"

_STATIC_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
app = Starlette(routes=[Mount("/images", StaticFiles(directory=sys.argv[1]))])
config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
server = uvicorn.Server(config)
import asyncio, socket
sock = socket.socket(); sock.bind(("127.0.0.1", 0))
print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
asyncio.run(server.serve(sockets=[sock]))
"""


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = re.search(r"model name\s*:\s*(.+)", text)
    flags = "avx512_vnni" if "avx512_vnni" in text else ("avx2" if "avx2" in text else "no avx2")
    return f"{model.group(1).strip() if model else 'unknown'} ({os.cpu_count()} CPUs, {flags})"


def build(work: Path, photos: int, width: int, height: int) -> tuple[Path, Path]:
    vault_path = work / "vault"
    rng = np.random.default_rng(19)
    with wb.init_vault(vault_path, admin="ada", passphrase=PASS) as admin:
        admin.add_user("res", "researcher", PASS)
        admin.add_user("portal", "portal", PASS)
        admin.add_consent("MRN-BENCH-1", "care,research")
        for n in range(photos):
            data, _ = _synth.synth_photo(rng, width=width, height=height)
            photo_id = admin.add_photo(data, patient="MRN-BENCH-1", body_site="forearm").photo_id
            admin.set_review_state(photo_id, "approved")
        build_cohort(admin, {"name": "bench", "purpose": "research", "policy": {"detectors": []}},
                     work / "datasets" / "bench", workers=0)
    return vault_path, work / "datasets" / "bench"


def start(cmd: list[str], env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"a server did not start: {line!r}")
    return proc, match.group(1)


def load(base: str, paths: list[str], viewers: int, seconds: float, cookies: list[dict] | None = None) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0

    async def viewer(n: int):
        nonlocal errors
        jar = cookies[n % len(cookies)] if cookies else None
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=base, cookies=jar, timeout=60, limits=limits) as client:
            end = time.monotonic() + seconds
            k = n
            while time.monotonic() < end:
                started = time.perf_counter()
                r = await client.get(paths[k % len(paths)])
                latencies.append(time.perf_counter() - started)
                if r.status_code != 200 or not r.content:
                    errors += 1
                k += 1

    async def main():
        await asyncio.gather(*(viewer(n) for n in range(viewers)))

    started = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 2),
            "mean_ms": round(1000 * statistics.fmean(latencies), 2)}


def login(base: str, account: str, password: str) -> dict:
    import httpx

    with httpx.Client(base_url=base, follow_redirects=True) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
        r = c.post("/login", data={"account": account, "password": password, "csrf": csrf})
        if "/gallery" not in str(r.url):
            raise SystemExit("could not log in to the portal")
        return dict(c.cookies)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_portal")
    parser.add_argument("--seconds", type=float, default=60.0, help="load per side (default 60)")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--size", default="1600x1200", help="generated photo size (default 1600x1200)")
    args = parser.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-portal-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, XDG_STATE_HOME=str(work / "state"), WORKBENCH_PASSPHRASE=PASS,
                   PYTHONPATH=str(ROOT))
        os.environ["XDG_STATE_HOME"] = env["XDG_STATE_HOME"]
        vault_path, folder = build(work, args.photos, width, height)
        with wb.open_vault(vault_path, user="res", passphrase=PASS) as res:
            new = share.create_share(res, folder, account="viewer", watermark=False)
        names = sorted(p.name for p in (folder / "images").iterdir())
        sizes = [(folder / "images" / n).stat().st_size for n in names]
        portal, portal_url = start([sys.executable, "-m", "workbench", "--vault", str(vault_path), "--user",
                                    "portal", "share", "serve", "--port", "0"], env)
        static, static_url = start([sys.executable, "-c", _STATIC_APP, str(folder / "images")], env)
        try:
            cookies = [login(portal_url, "viewer", new.secret) for _ in range(10)]
            # warm both (the portal's verified-bytes cache, the OS page cache)
            load(portal_url, [f"/image/{i}" for i in range(len(names))], 5, 2, cookies)
            load(static_url, [f"/images/{n}" for n in names], 5, 2)
            results = {
                "portal_image": load(portal_url, [f"/image/{i}" for i in range(len(names))], args.viewers,
                                     args.seconds, cookies),
                "static_image": load(static_url, [f"/images/{n}" for n in names], args.viewers, args.seconds),
                "portal_gallery": load(portal_url, ["/gallery"], args.viewers, args.seconds, cookies),
            }
        finally:
            for proc in (portal, static):
                proc.terminate()
                proc.wait(timeout=30)
    ratio = results["portal_image"]["p50_ms"] / results["static_image"]["p50_ms"]
    result = {"cpu": cpu_model(), "viewers": args.viewers, "seconds_per_side": args.seconds,
              "images": len(names), "image_bytes_mean": int(statistics.fmean(sizes)),
              "size": args.size, **results, "p50_ratio_image": round(ratio, 2), "target_p50_ratio": 2.0}
    rows = [("CPU", result["cpu"]),
            ("load", f"{args.viewers} viewers x {args.seconds:.0f} s per side, {len(names)} images "
                     f"of {args.size}, mean {result['image_bytes_mean'] // 1024} KiB")]
    for key in ("portal_image", "static_image", "portal_gallery"):
        r = results[key]
        rows.append((key, f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, {r['rps']} req/s, "
                          f"{r['requests']} requests, {r['errors']} errors"))
    rows.append(("portal / static at p50", f"{ratio:.2f}x (target <= 2x)"))
    print("share portal vs static file server (issue 19)")
    print(table(rows))
    save("portal", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
