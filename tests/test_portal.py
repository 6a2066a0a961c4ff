"""Sharing, part two: the share portal over HTTP, attacked.

Starlette's TestClient drives the application in process for the HTTP cases
(no access without login, expiry, revocation, lockout, path traversal, IDOR,
CSRF, headers, withdrawal, tampering, audit); a short load test runs the
real ``workbench share serve`` (uvicorn) on 127.0.0.1 with 50 concurrent
viewers. The 60-second run against a plain static server is
``benchmarks/bench_portal.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import workbench as wb
from workbench import share
from workbench.share import portal as portal_mod
from workbench.share.portal import Portal, create_app

from _share import START, copy_template, csrf_of, http_login, open_user, start_server
from conftest import FixedClock, passphrase

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from starlette.testclient import TestClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
PAGES = ["/gallery", "/view/0", "/image/0", "/thumb/0", "/download/0", "/download-all", "/datacard"]


@pytest.fixture(scope="module")
def shared(share_template, tmp_path_factory):
    """The template with three shares made at START: two accounts and a link (made once)."""
    root = copy_template(share_template, tmp_path_factory.mktemp("portal") / "shared")
    clock = FixedClock(START)
    with open_user(root, "researcher", clock) as res:
        a = share.create_share(res, root / "datasets" / "research", account="ng", download=True,
                               watermark=False, expires=10)
        link = share.create_share(res, root / "datasets" / "research", link=True, expires=10)
    with open_user(root, "educator", clock) as edu:
        b = share.create_share(edu, root / "datasets" / "teaching", account="lee", expires=10)
    return root, a, link, b


class Site:
    """A copy of the shared vault and a portal over it, with helpers."""

    def __init__(self, root: Path, a, link, b):
        self.root, self.a, self.link, self.b = root, a, link, b
        self.clock = FixedClock(START)
        self.vault = open_user(root, "portal", self.clock)
        # the shares name the folders they were made from; this copy serves its own
        self.portal = Portal(self.vault, tls=True, allowed_hosts=["testserver"], refresh_seconds=0,
                             datasets=root / "datasets")
        self.app = create_app(self.portal)

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="https://testserver")

    def manifest(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.root / "datasets" / name / "manifest.csv", dtype=str)

    def digests(self, name: str) -> set[str]:
        return set(self.manifest(name)["sha256"])


def login(client, account, password):
    form = client.get("/login")
    return client.post("/login", data={"account": account, "password": password, "csrf": csrf_of(form)},
                       follow_redirects=False)


@pytest.fixture
def site(shared, tmp_path):
    root, a, link, b = shared
    s = Site(copy_template(root, tmp_path / "work"), a, link, b)
    yield s
    s.vault.close()


def test_nothing_is_served_without_a_login(site):
    client = site.client()
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
        assert not r.content.startswith((b"\xff\xd8", b"\x89PNG", b"PK")), path
    r = login(client, "ng", "wrong password")
    assert r.status_code == 401 and "wrong" in r.text
    for path in PAGES:
        assert client.get(path, follow_redirects=False).status_code == 303, path


def test_login_gallery_viewer_download_and_logout(site):
    client = site.client()
    r = login(client, "ng", site.a.secret)
    assert r.status_code == 303 and r.headers["location"] == "/gallery"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    gallery = client.get("/gallery")
    assert gallery.status_code == 200 and gallery.text.count('src="/thumb/') == 5
    assert client.get("/view/4").status_code == 200
    image = client.get("/image/0")
    assert image.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(image.content).hexdigest() in site.digests("research")  # no watermark: the file
    whole = client.get("/download-all")
    assert whole.headers["content-disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(whole.content)) as zf:
        got = {hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist() if "/images/" in n}
    assert got == site.digests("research")
    one = client.get("/download/2")
    assert hashlib.sha256(one.content).hexdigest() in site.digests("research")
    old_cookie = client.cookies.get("wb_share")
    r = client.post("/logout", data={"csrf": csrf_of(gallery)})
    assert r.status_code == 200 and "logged out" in r.text.lower()
    assert client.get("/gallery", follow_redirects=False).status_code == 303
    # the old cookie, replayed, opens nothing: logout ended the session in the portal, not just the cookie
    replay = site.client()
    replay.cookies.set("wb_share", old_cookie, domain="testserver")
    assert replay.get("/gallery", follow_redirects=False).status_code == 303


def test_every_response_carries_the_security_headers(site):
    client = site.client()
    responses = [client.get("/login"), client.get("/nowhere"), client.get("/static/portal.css"),
                 client.post("/login", data={}), login(client, "ng", site.a.secret)]
    responses += [client.get(p) for p in PAGES] + [client.get("/view/999")]
    for r in responses:
        h = r.headers
        assert h["content-security-policy"] == CSP, r.url
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
        assert h["cache-control"] == "no-store" and h["x-frame-options"] == "DENY"
        assert "server" not in h or "uvicorn" not in h["server"]
    # no inline script or style anywhere: the CSP would block it, and none is needed
    for r in responses:
        if r.headers.get("content-type", "").startswith("text/html"):
            assert "<script" not in r.text and "style=" not in r.text and "<style" not in r.text
    # another Host (DNS rebinding onto 127.0.0.1) is refused
    assert site.client().get("/login", headers={"host": "evil.example"}).status_code == 400


def test_csrf_is_required_on_every_state_change(site):
    posts = [r for r in site.app.routes if "POST" in (r.methods or ())]
    assert {r.path for r in posts} == {"/login", "/l", "/logout"}  # every POST route, found, not listed
    client = site.client()
    assert login(client, "ng", site.a.secret).status_code == 303
    good = csrf_of(client.get("/gallery"))
    other = site.client()
    foreign = csrf_of(other.get("/login"))  # a valid token of another session
    for route in posts:
        data = {"account": "ng", "password": site.a.secret, "share": site.link.share.share_id,
                "token": site.link.secret}
        for token in (None, "", "x" * 32, foreign):
            sent = dict(data, **({"csrf": token} if token is not None else {}))
            r = client.post(route.path, data=sent, follow_redirects=False)
            assert r.status_code == 403, (route.path, token)
    assert client.get("/gallery").status_code == 200  # still logged in: the refused logout did nothing
    assert client.post("/logout", data={"csrf": good}).status_code == 200
    # GET never changes state: a link's page only shows a form
    r = client.get(site.link.link_path, follow_redirects=False)
    assert r.status_code == 200 and client.get("/gallery", follow_redirects=False).status_code == 303


def test_a_link_logs_in_only_with_its_token(site):
    client = site.client()
    page = client.get(site.link.link_path)
    r = client.post("/l", data={"csrf": csrf_of(page), "share": site.link.share.share_id, "token": "wrong"},
                    follow_redirects=False)
    assert r.status_code == 401
    r = client.post("/l", data={"csrf": csrf_of(page), "share": site.link.share.share_id,
                                "token": site.link.secret}, follow_redirects=False)
    assert r.status_code == 303 and client.get("/gallery").status_code == 200


def test_expiry_and_revocation_end_access_at_the_next_request(site):
    client, other = site.client(), site.client()
    assert login(client, "ng", site.a.secret).status_code == 303
    assert login(other, "lee", site.b.secret).status_code == 303
    with open_user(site.root, "researcher", site.clock) as res:
        share.revoke_share(res, site.a.share.share_id)
    r = client.get("/gallery")
    assert r.status_code == 403 and "revoked" in r.text
    assert client.get("/image/0", follow_redirects=False).status_code == 303  # the session ended
    assert login(client, "ng", site.a.secret).status_code == 401
    assert other.get("/gallery").status_code == 200
    site.clock.moment = START + timedelta(days=10, minutes=-1)  # a session started just before expiry
    assert login(other, "lee", site.b.secret).status_code == 303
    site.clock.moment = START + timedelta(days=10, minutes=1)
    r = other.get("/gallery", follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text
    assert login(other, "lee", site.b.secret).status_code == 401


def test_lockout_after_failed_logins_per_account_and_per_address(site):
    client = site.client()
    for _ in range(portal_mod.MAX_FAILURES_ACCOUNT):
        assert login(client, "ng", "guess").status_code == 401
    assert login(client, "ng", site.a.secret).status_code == 429  # the right password, refused now
    assert login(client, "lee", site.b.secret).status_code == 303  # another account is not locked
    # one address that goes on is locked too, for every account (attempts on a locked name count)
    made = portal_mod.MAX_FAILURES_ACCOUNT + 1
    assert login(client, "name-unknown", "guess").status_code == 401
    made += 1
    while made < portal_mod.MAX_FAILURES_ADDRESS - 1:
        assert login(client, "ng", "guess").status_code == 429
        made += 1
    assert login(site.client(), "lee", site.b.secret).status_code == 303  # not yet
    login(client, "ng", "guess")
    assert login(client, "lee", site.b.secret).status_code == 429
    assert login(site.client(), "lee", site.b.secret).status_code == 429  # a new session, same address
    site.clock.moment = START + portal_mod.LOCKOUT + timedelta(seconds=1)
    assert login(site.client(), "ng", site.a.secret).status_code == 303  # both locks are over
    failed = site.vault.audit_records().query("action == 'share_login_failed'")
    assert len(failed) >= portal_mod.MAX_FAILURES_ADDRESS
    assert {"locked", "wrong password"} <= {d["reason"] for d in failed["detail"]}
    assert not any("guess" in str(d) for d in failed["detail"])  # never what was typed as a password
    assert not any("name" in str(d.get("account", "")) for d in failed["detail"])  # nor an unknown name


def test_an_unknown_account_costs_the_same_argon2id_work_as_a_wrong_password(site, monkeypatch):
    from workbench.share import _secrets

    calls = []
    real = _secrets._HASHER

    class Counting:
        def verify(self, stored, secret):
            calls.append(stored[:9])
            return real.verify(stored, secret)

    monkeypatch.setattr(_secrets, "_HASHER", Counting())
    client = site.client()
    assert login(client, "nobody", "guess").status_code == 401
    assert login(client, "ng", "guess").status_code == 401
    assert calls == ["$argon2id", "$argon2id"]


def _outside_files(site) -> list[bytes]:
    files = [p for p in (site.root / "vault").rglob("*") if p.is_file()]
    files += [p for p in (ROOT / "workbench" / "share").rglob("*.py")]
    files += [site.root / "datasets" / "research" / "provenance.json"]
    return [p.read_bytes() for p in files if p.stat().st_size > 64]


def test_path_traversal_never_reaches_a_file_outside_the_share(site):
    client = site.client()
    login(client, "ng", site.a.secret)
    attempts = ["/image/../../vault/VAULT.json", "/image/..%2f..%2fvault%2fVAULT.json", "/image/-1",
                "/image/5", "/image/99999999999999999999", "/image/0x1", "/thumb/%2e%2e",
                "/static/../portal.py", "/static/portal.css/../../_secrets.py", "/static/..%2f_secrets.py",
                "/view/..%2f..%2fprovenance.json", "/download/../../../etc/passwd", "//etc/passwd",
                "/datacard/../provenance.json", "/images/" + site.manifest("research")["image"][0].split("/")[1],
                "/provenance.json", "/manifest.csv", "/DATACARD.md", "/gallery/../../VAULT.json"]
    outside = _outside_files(site)
    for path in attempts:
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (303, 400, 404), path
        body = r.content
        assert not any(len(body) > 32 and (body in data or data[:256] in body) for data in outside), path
    # an image replaced by a symbolic link to a file outside is not followed
    image = site.root / "datasets" / "research" / site.manifest("research")["image"][3]
    image.unlink()
    image.symlink_to(site.root / "vault" / "VAULT.json")
    r = client.get("/image/3")
    assert r.status_code == 503 and b"vault" not in r.content


def test_one_shares_images_are_not_reachable_from_another(site):
    ng, lee = site.client(), site.client()
    login(ng, "ng", site.a.secret)
    login(lee, "lee", site.b.secret)
    theirs = site.digests("teaching")
    mine = site.digests("research")
    for n in range(10):
        r = ng.get(f"/image/{n}")
        if r.status_code == 200:
            assert hashlib.sha256(r.content).hexdigest() in mine and n < 5
        else:
            assert r.status_code == 404 and n >= 5
    # lee's teaching set (3 images, watermarked): never ng's files, and downloads are off
    for n in range(5):
        r = lee.get(f"/image/{n}")
        assert (r.status_code == 200) == (n < 3)
        if r.status_code == 200:
            assert hashlib.sha256(r.content).hexdigest() not in mine | theirs  # watermarked copy
    assert lee.get("/download/0").status_code == 403 and lee.get("/download-all").status_code == 403
    # a share id in the path means nothing
    for path in (f"/s/{site.a.share.share_id}/image/0", f"/image/0?share={site.a.share.share_id}"):
        r = lee.get(path)
        assert r.status_code == 404 or hashlib.sha256(r.content).hexdigest() not in mine


def test_the_watermark_names_the_viewer(site):
    lee = site.client()
    login(lee, "lee", site.b.secret)
    served = Image.open(io.BytesIO(lee.get("/image/0").content)).convert("L")
    original = Image.open(site.root / "datasets" / "teaching" / site.manifest("teaching")["image"][0]).convert("L")
    assert served.size == original.size
    w, h = served.size
    foot = (0, int(h * 0.9), w, h)
    diff = sum(abs(a - b) for a, b in zip(served.crop(foot).get_flattened_data(), original.crop(foot).get_flattened_data()))
    top = sum(abs(a - b) for a, b in zip(served.crop((0, 0, w, h // 2)).get_flattened_data(),
                                         original.crop((0, 0, w, h // 2)).get_flattened_data()))
    # per pixel, the foot (the drawn band) differs far more than the top (only re-encoding noise)
    assert diff / (w * (h - int(h * 0.9))) > 10 * top / (w * (h // 2))


def test_a_withdrawal_suspends_the_share_with_the_reason(site):
    client = site.client()
    login(client, "ng", site.a.secret)
    assert client.get("/image/0").status_code == 200
    with open_user(site.root, "admin", site.clock) as admin:
        admin.withdraw_consent("MRN-0002", "research")
    r = client.get("/gallery")
    assert r.status_code == 403 and "withdrawn consent" in r.text and "rebuild" in r.text
    assert client.get("/image/0").status_code == 403 and client.get("/download-all").status_code == 403
    lee = site.client()  # the teaching set has only MRN-0001's photos: still open
    login(lee, "lee", site.b.secret)
    assert lee.get("/gallery").status_code == 200


def test_a_suspended_share_serves_the_rebuilt_set_and_says_so(site):
    """Suspended until the cohort is rebuilt: then the rebuild, without the patient who withdrew, is shared."""
    from workbench.cohort import rebuild_cohort

    client = site.client()
    login(client, "ng", site.a.secret)
    old = client.get("/gallery").text
    with open_user(site.root, "admin", site.clock) as admin:
        admin.withdraw_consent("MRN-0002", "research")
    assert client.get("/gallery").status_code == 403
    with open_user(site.root, "researcher", site.clock) as res:
        result = rebuild_cohort(res, site.root / "datasets" / "research", workers=0)
    assert result.path.name == "research-v2" and result.images == 3
    r = client.get("/gallery")
    assert r.status_code == 200 and 'id="rebuilt"' in r.text and "research-v2" in r.text
    assert 'id="rebuilt"' not in old
    shown = [hashlib.sha256(client.get(f"/image/{n}").content).hexdigest() for n in range(3)]
    rebuilt = [hashlib.sha256((result.path / name).read_bytes()).hexdigest()
               for name in site.manifest("research-v2")["image"]]
    assert shown == rebuilt and client.get("/image/3").status_code == 404
    # a rebuild whose files no longer match its signed record is not served in its place
    path = result.path / site.manifest("research-v2")["image"][0]
    path.write_bytes(path.read_bytes()[:-10])
    fresh = Site(site.root, site.a, site.link, site.b)
    try:
        other = fresh.client()
        login(other, "ng", site.a.secret)
        assert other.get("/gallery").status_code == 403
    finally:
        fresh.vault.close()


def test_a_file_changed_after_start_is_not_served_and_a_bad_folder_stops_the_start(site):
    client = site.client()
    login(client, "ng", site.a.secret)
    path = site.root / "datasets" / "research" / site.manifest("research")["image"][1]
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    r = client.get("/image/1")
    assert r.status_code == 503 and bytes(data) not in r.content
    site.vault.close()
    with open_user(site.root, "portal", site.clock) as vault:
        with pytest.raises(wb.IntegrityError):
            Portal(vault, allowed_hosts=["testserver"], datasets=site.root / "datasets")
    with open_user(site.root, "researcher", site.clock) as res:
        with pytest.raises(wb.AccessDenied, match="portal"):
            Portal(res)


def test_every_login_view_and_download_is_signed_by_the_portal(site):
    client = site.client()
    login(client, "ng", "wrong")
    login(client, "ng", site.a.secret)
    client.get("/gallery")
    client.get("/view/1")
    client.get("/image/1")
    client.get("/download/2")
    client.get("/download-all")
    csrf = csrf_of(client.get("/gallery"))
    client.post("/logout", data={"csrf": csrf})
    with open_user(site.root, "admin", site.clock) as admin:
        assert admin.verify_audit().ok
        records = admin.audit_records()
    ours = records[records["action"].str.startswith(("share_", "portal_"))]
    by = dict(zip(ours["action"], ours["user"]))
    assert by["share_create"] in ("res", "edu") and by["share_login"] == "portal"
    for action in ("portal_start", "share_login_failed", "share_login", "share_view", "share_download",
                   "share_logout"):
        assert by.get(action) == "portal", action
    views = [d["item"] for a, d in zip(ours["action"], ours["detail"]) if a == "share_view"]
    assert "gallery" in views and site.manifest("research")["image_id"][1] in views
    assert views.count(site.manifest("research")["image_id"][1]) == 1  # viewer page + image: one view
    downloads = {d["item"] for a, d in zip(ours["action"], ours["detail"]) if a == "share_download"}
    assert downloads == {"all", site.manifest("research")["image_id"][2]}
    assert site.a.secret not in records.to_string()


# --- load: the real server, 50 concurrent viewers ------------------------------------


def run_load(base: str, sessions: list[dict], viewers: int, rounds: int, images: int) -> dict:
    """``viewers`` concurrent clients (sharing ``sessions``' cookies) each ask for the gallery and an image ``rounds`` times.

    A fixed number of requests, not a fixed time: how many fit in a few seconds depends on the CPU and on
    what else the machine runs, and the throughput bar is the benchmark's (``benchmarks/bench_portal.py``).
    """
    import httpx

    lat = {"gallery": [], "image": []}
    errors, bodies = [], set()

    async def viewer(n):
        async with httpx.AsyncClient(base_url=base, cookies=sessions[n % len(sessions)], timeout=30) as c:
            for k in range(n, n + rounds):
                for kind, path in (("gallery", "/gallery"), ("image", f"/image/{k % images}")):
                    t = time.perf_counter()
                    r = await c.get(path)
                    lat[kind].append(time.perf_counter() - t)
                    if r.status_code != 200:
                        errors.append((path, r.status_code))
                    elif kind == "image":
                        bodies.add(hashlib.sha256(r.content).hexdigest())

    async def main():
        await asyncio.gather(*(viewer(n) for n in range(viewers)))

    asyncio.run(main())
    return {"latency": lat, "errors": errors, "bodies": bodies}


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


#: p95 ceilings on this 2-core machine under 50 viewers, with the suite's other
#: process busy beside them: a sanity bound, not the speed (``benchmarks/bench_portal.py``
#: measures that: p95 0.13-0.22 s). At 1.5 s a suite run failed with 1.70 s.
P95_GALLERY_S = 3.0
P95_IMAGE_S = 3.0


@pytest.mark.slow
def test_fifty_concurrent_viewers_on_loopback_get_only_their_share_fast(share_template, tmp_path):
    root = copy_template(share_template, tmp_path / "work")
    with wb.open_vault(root / "vault", user="res", passphrase=passphrase("res")) as res:  # the real clock
        a = share.create_share(res, root / "datasets" / "research", account="ng", watermark=False)
    proc, base = start_server(root)
    try:
        assert base.startswith("http://127.0.0.1:")  # loopback only, by default
        sessions = [http_login(base, "ng", a.secret) for _ in range(5)]
        result = run_load(base, sessions, viewers=50, rounds=12, images=7)  # 5 images; 5, 6 are not there
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    errors = [e for e in result["errors"] if not (e[0] in ("/image/5", "/image/6") and e[1] == 404)]
    assert not errors
    # every image of the share was served, and nothing else
    assert result["bodies"] == set(pd.read_csv(root / "datasets" / "research" / "manifest.csv")["sha256"])
    assert p(result["latency"]["gallery"], 0.95) < P95_GALLERY_S
    assert p(result["latency"]["image"], 0.95) < P95_IMAGE_S
    with wb.open_vault(root / "vault", user="ada", passphrase=passphrase("ada")) as admin:
        actions = admin.audit_records()["action"].tolist()
    assert "portal_start" in actions and "portal_stop" in actions  # a clean stop on SIGTERM


def test_after_a_key_rotation_the_portal_fails_closed_until_restarted(site):
    client = site.client()
    login(client, "ng", site.a.secret)
    assert client.get("/image/0").status_code == 200
    with open_user(site.root, "admin", site.clock) as admin:
        admin.remove_user("pho")  # every encryption key replaced, the index re-keyed
    r = client.get("/gallery")
    assert r.status_code == 503 and "restart" in r.text
    assert client.get("/image/0").status_code == 503
    site.vault.close()
    with open_user(site.root, "portal", site.clock) as vault:  # its grant was re-sealed: a restart works
        again = TestClient(create_app(Portal(vault, tls=True, allowed_hosts=["testserver"],
                                             datasets=site.root / "datasets")), base_url="https://testserver")
        login(again, "ng", site.a.secret)
        assert again.get("/image/0").status_code == 200


def test_the_portal_stops_promptly_while_a_client_holds_a_tls_connection_open(share_template, tmp_path):
    # A browser may keep an HTTPS connection open and never answer the TLS
    # close: without a bound, the stop on SIGTERM waited for it (asyncio's
    # 30 s TLS shutdown), and the portal_stop record came late or not at all.
    import signal
    import socket
    import ssl

    root = copy_template(share_template, tmp_path / "work")
    with wb.open_vault(root / "vault", user="res", passphrase=passphrase("res")) as res:
        share.create_share(res, root / "datasets" / "research", account="ng")
    proc, base = start_server(root, args=("--tls-self-signed",))
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # its own self-signed certificate
    try:
        held = context.wrap_socket(socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))),
                                   server_hostname="127.0.0.1")
        held.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held.recv(64).startswith(b"HTTP/1.1 200")  # kept alive, and never read again
        started = time.monotonic()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            proc.kill()
    stopped = time.monotonic() - started
    # uvicorn ends by raising the signal it caught again, after its shutdown
    assert proc.returncode == -signal.SIGTERM and stopped < portal_mod.STOP_WITHIN_S + 5, (proc.returncode, stopped)
    held.close()
    with wb.open_vault(root / "vault", user="ada", passphrase=passphrase("ada")) as admin:
        actions = admin.audit_records()["action"].tolist()
    assert "portal_stop" in actions[actions.index("portal_start"):]  # a clean stop all the same
