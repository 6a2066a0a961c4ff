"""The share portal: a read-only website for shared cohorts and teaching sets.

``workbench share serve`` runs it (uvicorn, 127.0.0.1 by default) as the
vault's ``portal`` account, which holds the index key only: it reads the
signed log (shares, consent) and signs its own audit records, and decrypts
nothing. It serves only the files a verified dataset's signed build record
pins (see :mod:`._dataset`), by their position in the manifest, never by a
path from the request.

What it relies on, all well known:

- sessions: Starlette's ``SessionMiddleware`` (a cookie signed by
  itsdangerous under a random key made at each start; HttpOnly,
  SameSite=Strict, Secure behind TLS), holding a random session id that the
  portal keeps in memory, so that logout and revocation end it;
- CSRF: the synchronizer-token pattern (OWASP): a random token kept in the
  session, sent back in every form and compared in constant time; every
  POST without it is refused with 403;
- passwords: Argon2id (argon2-cffi), see :mod:`._secrets`;
- failed logins are counted in memory per account name and per client
  address; after :data:`MAX_FAILURES_ACCOUNT` (or :data:`MAX_FAILURES_ADDRESS`)
  within :data:`LOCKOUT` further attempts are refused until it has passed.
  A restart forgets the counts (and every session).

Every login, failed login, logout, view and download is a record of the
vault's log signed by the portal's own key. A share is checked again at
every request (at most :data:`REFRESH_SECONDS` old): revoked, expired, or
suspended because a patient withdrew consent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import socket
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import AccessDenied, IntegrityError, InvalidInput, WorkbenchError
from ..vault import Vault
from . import _secrets
from ._dataset import Dataset, lost_consent, verified_records, verify_dataset
from ._store import Share, shares_from_records

#: failed logins for one account name before it is locked
MAX_FAILURES_ACCOUNT = 5
#: failed logins from one client address before it is locked
MAX_FAILURES_ADDRESS = 20
#: how long failures are counted, and a lockout lasts
LOCKOUT = timedelta(minutes=15)
#: a session ends this long after login
SESSION_HOURS = 8
#: shares, consent and the log are looked at again when older than this
REFRESH_SECONDS = 1.0
#: the watermark and thumbnail caches hold at most this many bytes each
CACHE_BYTES = 64 * 1024 * 1024

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; img-src 'self'; style-src 'self'; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
]
_HERE = Path(__file__).parent


class SecurityHeaders:
    """Pure ASGI middleware: the same strict headers on every response, errors included."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k for k, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class _Served:
    """One share the portal knows, with its verified dataset and what is wrong with it now."""

    share: Share
    dataset: Dataset | None
    problem: str | None = None  # "suspended", "unavailable"
    rebuilt: bool = False  # the dataset is a rebuild of the one shared (a patient withdrew)


class _Failures:
    """Failed logins per key (account name, client address) within :data:`LOCKOUT`."""

    def __init__(self, limit: int):
        self.limit = limit
        self.times: dict[str, deque] = {}
        self.lock = threading.Lock()

    def locked(self, key: str, now: datetime) -> bool:
        with self.lock:
            times = self.times.get(key)
            while times and now - times[0] > LOCKOUT:
                times.popleft()
            return bool(times) and len(times) >= self.limit

    def add(self, key: str, now: datetime) -> None:
        with self.lock:
            if len(self.times) > 10_000:  # many names or addresses: forget those whose window passed
                self.times = {k: t for k, t in self.times.items() if t and now - t[-1] <= LOCKOUT}
            self.times.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        with self.lock:
            self.times.pop(key, None)


class _Cache:
    """A small LRU of bytes, bounded by total size."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit, self.size, self.items = limit, 0, OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key, value: bytes) -> bytes:
        with self.lock:
            if key not in self.items:
                self.items[key] = value
                self.size += len(value)
            while self.size > self.limit and len(self.items) > 1:
                _, old = self.items.popitem(last=False)
                self.size -= len(old)
            return value


class Portal:
    """The portal's state: the shares it serves, sessions, failure counts, caches.

    Parameters
    ----------
    vault : Vault
        Opened by a ``portal`` account (the index key only).
    share_ids : list of str, optional
        Serve only these shares (default: every active share, and those
        created while it runs).
    tls : bool
        Cookies are marked Secure (TLS here or at a reverse proxy).
    allowed_hosts : list of str, optional
        Host names the portal answers to (default 127.0.0.1 and localhost):
        a page of another site whose name was re-bound to 127.0.0.1 gets 400.
    refresh_seconds : float
        How old the view of shares and consent may be at a request.
    datasets : path-like, optional
        Look for each shared folder here, by its name, instead of where it
        was when it was shared (the datasets folder was moved or copied): it
        is verified against the share's signed digests all the same.

    Raises
    ------
    AccessDenied
        ``vault`` was not opened by a portal account.
    IntegrityError, NotVerified, NotFound
        A share's folder is not a verified cohort, or no longer matches: the
        portal does not start.
    InvalidInput
        There is no active share to serve.
    """

    def __init__(self, vault: Vault, *, share_ids: list[str] | None = None, tls: bool = False,
                 allowed_hosts: list[str] | None = None, refresh_seconds: float = REFRESH_SECONDS,
                 datasets: str | os.PathLike | None = None):
        if vault.role != "portal":
            raise AccessDenied("run the share portal as its own account (role portal, which decrypts "
                               "nothing): `workbench user add portal --role portal`, then "
                               "`workbench share serve --user portal`", role=vault.role)
        _secrets.warm()  # the first unknown account costs what every later one does
        self.vault = vault
        self.share_ids = set(share_ids) if share_ids else None
        self.tls = tls
        self.allowed_hosts = allowed_hosts or ["127.0.0.1", "localhost"]
        self.refresh_seconds = refresh_seconds
        self.datasets = Path(datasets) if datasets is not None else None
        self.served: dict[str, _Served] = {}
        self.sessions: dict[str, dict] = {}
        self.by_account = _Failures(MAX_FAILURES_ACCOUNT)
        self.by_address = _Failures(MAX_FAILURES_ADDRESS)
        self.seen: set[tuple] = set()
        self.bytes_cache = _Cache()
        self.marked = _Cache()
        self.thumbs = _Cache()
        self._lock = threading.RLock()
        self._checked = 0.0
        self._records: list = []
        self.refresh(starting=True)
        active = [s for s in self.served.values() if s.share.status(self.now()) == "active"]
        if not active:
            raise InvalidInput("there is no active share to serve; create one with `workbench share create`")
        self.audit("portal_start", {"shares": sorted(s.share.share_id for s in active)})

    # -- state ------------------------------------------------------------------

    def now(self) -> datetime:
        return self.vault.now()

    def audit(self, action: str, detail: dict) -> None:
        with self._lock:
            self.vault._record(action, detail)

    def refresh(self, *, starting: bool = False) -> None:
        """Read shares from the verified log again, verify new datasets, re-check consent."""
        with self._lock:
            before = len(self._records)
            self._records = records = verified_records(self.vault, self._records)
            if any(r.action in ("share_create", "share_revoke") for r in records[before:]):
                shares = shares_from_records(records)
                for share_id, share in shares.items():
                    if self.share_ids is not None and share_id not in self.share_ids:
                        continue
                    known = self.served.get(share_id)
                    if known is not None:
                        known.share = share
                        continue
                    if share.status(self.now()) != "active":
                        self.served[share_id] = _Served(share, None)
                        continue
                    try:
                        folder = (self.datasets / Path(share.dataset).name if self.datasets is not None
                                  else Path(share.dataset))
                        dataset = verify_dataset(self.vault, folder, records=records, check_consent=False)
                        if dataset.run_id != share.run_id or dataset.manifest_sha256 != share.manifest_sha256:
                            raise IntegrityError("a shared folder now holds another build than the one "
                                                 "shared; share the new build", share=share_id)
                    except WorkbenchError:
                        if starting:
                            raise
                        self.served[share_id] = _Served(share, None, "unavailable")
                        continue
                    self.served[share_id] = _Served(share, dataset)
            for served in self.served.values():
                if served.dataset is not None and served.problem != "unavailable":
                    lost = lost_consent(self.vault, served.dataset.patient_refs, served.dataset.purpose)
                    if lost:
                        newer = self._rebuilt(served.dataset, records)
                        if newer is not None:
                            served.dataset, served.rebuilt, lost = newer, True, {}
                    served.problem = "suspended" if lost else None
            self._checked = time.monotonic()

    def _rebuilt(self, dataset: Dataset, records: list) -> Dataset | None:
        """The rebuild of ``dataset`` that its patients' consent still allows, or None.

        A share is suspended when a patient of its set withdraws, until the
        set is rebuilt: ``rebuild_cohort`` signs a build record that names the
        run it supersedes, and writes the new version beside the old folder.
        That folder is checked as any shared one (files against the signed
        record) and must serve the same purpose; a rebuild that has lost a
        patient too is followed to the next one.
        """
        seen = {dataset.run_id}
        while True:
            later = [r.content["detail"] for r in records if r.action == "cohort_build"
                     and r.content.get("detail", {}).get("supersedes") == dataset.run_id]
            if not later:
                return None
            detail = later[-1]
            name = str(detail.get("cohort", ""))
            if name in ("", ".", "..") or Path(name).name != name:
                return None  # a folder beside the shared one, never a path elsewhere
            folder = dataset.path.with_name(name)
            try:
                newer = verify_dataset(self.vault, folder, records=records, check_consent=False)
            except WorkbenchError:
                return None
            if newer.run_id != detail.get("run_id") or newer.purpose != dataset.purpose or newer.run_id in seen:
                return None
            if not lost_consent(self.vault, newer.patient_refs, newer.purpose):
                return newer
            seen.add(newer.run_id)
            dataset = newer

    def current(self, share_id: str) -> _Served | None:
        if time.monotonic() - self._checked >= self.refresh_seconds:
            self.refresh()
        return self.served.get(share_id)

    # -- logins -------------------------------------------------------------------

    def login(self, account: str, secret: str, address: str, *, link_share: str | None = None) -> tuple[str | None, str]:
        """``(share id, "ok")`` or ``(None, why)``: why is ``"locked"`` or ``"failed"``."""
        now = self.now()
        key = f"link:{link_share}" if link_share else f"account:{account}"
        if self.by_account.locked(key, now) or self.by_address.locked(address, now):
            self.by_address.add(address, now)  # hammering a locked account counts against the address
            self.audit("share_login_failed", {"reason": "locked", "address": address,
                                              **({"share": link_share} if link_share else {})})
            return None, "locked"
        self.current("")  # fresh shares
        candidates = [s for s in self.served.values() if s.share.status(now) == "active"
                      and (s.share.share_id == link_share if link_share else
                           s.share.kind == "account" and s.share.account == account)]
        found = candidates[0].share if candidates else None
        if _secrets.verify_secret(found.secret_hash if found else None, secret) and found is not None:
            self.by_account.clear(key)
            self.audit("share_login", {"share": found.share_id, "account": found.account, "address": address})
            return found.share_id, "ok"
        self.by_account.add(key, now)
        self.by_address.add(address, now)
        detail = {"reason": "wrong password", "address": address}
        if found is not None:  # a typed name that is no account may be a mistyped password: not kept
            detail.update(share=found.share_id, account=found.account)
        self.audit("share_login_failed", detail)
        return None, "failed"

    def new_session(self, share_id: str) -> str:
        sid = _secrets.new_session_id()
        now = self.now()
        with self._lock:
            self.sessions = {k: v for k, v in self.sessions.items()
                             if now - v["started"] <= timedelta(hours=SESSION_HOURS)}
            self.sessions[sid] = {"share": share_id, "started": now}
        return sid

    def end_session(self, sid: str | None) -> None:
        with self._lock:
            self.sessions.pop(sid or "", None)

    def session_share(self, sid: str | None) -> str | None:
        entry = self.sessions.get(sid or "")
        if entry is None:
            return None
        if self.now() - entry["started"] > timedelta(hours=SESSION_HOURS):
            self.end_session(sid)
            return None
        return entry["share"]

    # -- files --------------------------------------------------------------------

    def image_bytes(self, dataset: Dataset, index: int) -> bytes:
        """Verified bytes of one image; read again (and checked) when the file changed."""
        image = dataset.images[index]
        try:
            st = os.stat(dataset.path / image.relpath, follow_symlinks=False)
            key = (str(dataset.path), index, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        data = self.bytes_cache.get(key) if key else None
        if data is None:
            data = dataset.read_image(index)  # raises IntegrityError on any mismatch
            if key:
                self.bytes_cache.put(key, data)
        return data

    def served_image(self, served: _Served, index: int, viewer: str, *, thumb: bool = False) -> bytes:
        dataset = served.dataset
        data = self.image_bytes(dataset, index)
        mark = served.share.watermark
        if not thumb and not mark:
            return data
        key = (served.share.share_id, index, viewer if mark else "", thumb, dataset.images[index].sha256)
        cache = self.thumbs if thumb else self.marked
        cached = cache.get(key)
        if cached is None:
            cached = cache.put(key, _render(data, dataset.images[index].ext,
                                            f"{viewer} - {served.share.share_id}" if mark else None,
                                            320 if thumb else None))
        return cached


def _render(data: bytes, ext: str, mark: str | None, max_side: int | None) -> bytes:
    """Re-encode an image: smaller (``max_side``) and/or with ``mark`` drawn across its foot."""
    from PIL import Image, ImageDraw, ImageFont

    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        if max_side:
            img.thumbnail((max_side, max_side))
        if mark:
            draw = ImageDraw.Draw(img, "RGBA")
            size = max(10, img.width // 40)
            try:
                font = ImageFont.load_default(size=size)
            except (TypeError, OSError):
                font = ImageFont.load_default()
            text = f"shared with {mark} - do not redistribute"
            box = draw.textbbox((0, 0), text, font=font)
            h = box[3] - box[1] + size // 2
            draw.rectangle((0, img.height - h - 4, img.width, img.height), fill=(0, 0, 0, 150))
            draw.text((size // 2, img.height - h), text, fill=(255, 255, 255, 230), font=font)
        out = io.BytesIO()
        if ext == "png" and not max_side:
            img.save(out, "PNG")
        else:
            img.save(out, "JPEG", quality=90)
        return out.getvalue()


def _mime(data: bytes) -> str:
    return "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"


# --- the web application -----------------------------------------------------------


def create_app(portal: Portal) -> Starlette:
    """The Starlette application of ``portal`` (used by :func:`serve` and by tests)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    css = (_HERE / "static" / "portal.css").read_bytes()

    def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        context.setdefault("csrf", _csrf_token(request))
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    def address(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def checked_form(request: Request):
        """The posted form, or None when its CSRF token is missing or wrong (the caller answers 403)."""
        form = await request.form()
        sent = str(form.get("csrf", ""))
        expected = request.session.get("csrf")
        if not expected or not sent or not _secrets.equal(sent, expected):
            return None
        return form

    def csrf_refused(request: Request) -> HTMLResponse:
        return page(request, "message.html", 403, title="Request refused",
                    message="This form has expired or did not come from this site. Go back, reload "
                            "the page and try again.", logged_in=False)

    async def viewer(request: Request):
        """``(served share, account)`` of the session, or a response that refuses."""
        sid = request.session.get("sid")
        share_id = portal.session_share(sid)
        if share_id is None:
            return None, RedirectResponse("/login", status_code=303)
        try:
            served = await run_in_threadpool(portal.current, share_id)
        except WorkbenchError:  # the vault changed under the portal (its keys were rotated, its log broke)
            return None, page(request, "message.html", 503, title="Portal unavailable", logged_in=False,
                              message="The portal cannot check this share now. Its operator has to restart it.")
        now = portal.now()
        if served is None or served.share.revoked:
            portal.end_session(sid)
            request.session.clear()
            return None, page(request, "message.html", 403, title="Share revoked", logged_in=False,
                              message="The owner has revoked this share. Ask them if you still need it.")
        if served.share.status(now) == "expired":
            portal.end_session(sid)
            request.session.clear()
            return None, page(request, "message.html", 403, title="Share expired", logged_in=False,
                              message="This share has expired. Ask its owner for a new one.")
        if served.problem == "suspended":
            return None, page(request, "message.html", 403, title="Share suspended", logged_in=True,
                              message="Sharing of this set is suspended: a patient whose photographs it "
                                      "included has withdrawn consent. The owner must rebuild the set "
                                      "without them and share the new version.")
        if served.problem or served.dataset is None:
            return None, page(request, "message.html", 503, title="Share unavailable", logged_in=True,
                              message="This set is unavailable: its files no longer match what was "
                                      "shared. The owner has to check and rebuild it.")
        return (served, served.share.account), None

    def index_of(request: Request, served: _Served) -> int | None:
        try:
            n = int(request.path_params["n"])
        except (KeyError, ValueError):
            return None
        return n if 0 <= n < len(served.dataset.images) else None

    async def seen(request: Request, served: _Served, what: str, kind: str = "share_view") -> None:
        """Audit a view or download, once per session and item (a reload is not a new view)."""
        key = (request.session.get("sid"), kind, what)
        if kind == "share_view" and key in portal.seen:
            return
        portal.seen.add(key)
        await run_in_threadpool(portal.audit, kind, {"share": served.share.share_id,
                                                     "account": served.share.account, "item": what})

    async def home(request: Request):
        if portal.session_share(request.session.get("sid")):
            return RedirectResponse("/gallery", status_code=303)
        return RedirectResponse("/login", status_code=303)

    async def login(request: Request):
        if request.method == "GET":
            return page(request, "login.html", logged_in=False, error=None)
        form = await checked_form(request)
        if form is None:
            return csrf_refused(request)
        account = str(form.get("account", "")).strip().lower()[:64]
        password = str(form.get("password", ""))[:256]
        share_id, why = await run_in_threadpool(portal.login, account, password, address(request))
        return _logged_in(request, share_id, why, "login.html")

    def _logged_in(request: Request, share_id, why: str, template: str, **context):
        if share_id is None:
            error = ("Too many failed attempts. Try again later." if why == "locked"
                     else "The account name or password is wrong.")
            return page(request, template, 429 if why == "locked" else 401, logged_in=False,
                        error=error, **context)
        portal.end_session(request.session.get("sid"))
        request.session.clear()  # a new session at login: no fixation
        request.session.update({"sid": portal.new_session(share_id), "csrf": _secrets.new_session_id()})
        return RedirectResponse("/gallery", status_code=303)

    async def link(request: Request):
        if request.method == "GET":
            return page(request, "link.html", logged_in=False, error=None,
                        share=request.path_params["share"], token=request.path_params["token"])
        form = await checked_form(request)
        if form is None:
            return csrf_refused(request)
        share = str(form.get("share", ""))[:64]
        token = str(form.get("token", ""))[:256]
        share_id, why = await run_in_threadpool(portal.login, "link", token, address(request), link_share=share)
        return _logged_in(request, share_id, why, "link.html", share=share, token="")

    async def logout(request: Request):
        form = await checked_form(request)
        if form is None:
            return csrf_refused(request)
        sid = request.session.get("sid")
        share_id = portal.session_share(sid)
        if share_id:
            await run_in_threadpool(portal.audit, "share_logout", {"share": share_id})
        portal.end_session(sid)
        request.session.clear()
        return page(request, "message.html", title="Logged out", message="You have logged out.",
                    logged_in=False)

    async def gallery(request: Request):
        who, refusal = await viewer(request)
        if refusal:
            return refusal
        served, account = who
        await seen(request, served, "gallery")
        return page(request, "gallery.html", logged_in=True, account=account, share=served.share,
                    dataset=served.dataset, rebuilt=served.rebuilt)

    async def view(request: Request):
        who, refusal = await viewer(request)
        if refusal:
            return refusal
        served, account = who
        n = index_of(request, served)
        if n is None:
            return page(request, "message.html", 404, title="Not found", message="No such image.",
                        logged_in=True)
        await seen(request, served, served.dataset.images[n].image_id)
        return page(request, "viewer.html", logged_in=True, account=account, share=served.share,
                    dataset=served.dataset, image=served.dataset.images[n], n=n)

    async def image(request: Request):
        who, refusal = await viewer(request)
        if isinstance(refusal, RedirectResponse):
            return refusal
        if refusal:
            return PlainTextResponse("not available", status_code=refusal.status_code)
        served, account = who
        n = index_of(request, served)
        if n is None:
            return PlainTextResponse("not found", status_code=404)
        thumb = request.url.path.startswith("/thumb/")
        try:
            data = await _served_bytes(served, n, account, thumb)
        except IntegrityError:
            served.problem = "unavailable"
            return PlainTextResponse("unavailable", status_code=503)
        if not thumb:
            await seen(request, served, served.dataset.images[n].image_id)
        return Response(data, media_type=_mime(data), headers={"content-disposition": "inline"})

    async def _served_bytes(served, n, account, thumb):
        if thumb or served.share.watermark:
            return await run_in_threadpool(portal.served_image, served, n, account, thumb=thumb)
        return portal.served_image(served, n, account)  # cached verified bytes, no re-encoding

    async def download(request: Request):
        who, refusal = await viewer(request)
        if refusal:
            return refusal
        served, account = who
        if not served.share.download:
            return page(request, "message.html", 403, title="Not permitted", logged_in=True,
                        message="This share does not permit downloads.")
        dataset = served.dataset
        try:
            if request.url.path == "/download-all":
                data = await run_in_threadpool(_set_zip, portal, served, account)
                name, mime, what = f"{dataset.path.name}.zip", "application/zip", "all"
            else:
                n = index_of(request, served)
                if n is None:
                    return page(request, "message.html", 404, title="Not found", message="No such image.",
                                logged_in=True)
                data = await run_in_threadpool(portal.served_image, served, n, account)
                image_ = dataset.images[n]
                name, mime, what = f"{image_.image_id}.{image_.ext}", _mime(data), image_.image_id
        except IntegrityError:
            served.problem = "unavailable"
            return PlainTextResponse("unavailable", status_code=503)
        await seen(request, served, what, "share_download")
        return Response(data, media_type=mime, headers={"content-disposition": f'attachment; filename="{name}"'})

    async def datacard(request: Request):
        who, refusal = await viewer(request)
        if refusal:
            return refusal
        served, account = who
        try:
            text = served.dataset.read_datacard()
        except IntegrityError:
            served.problem = "unavailable"
            return PlainTextResponse("unavailable", status_code=503)
        await seen(request, served, "datacard")
        return page(request, "datacard.html", logged_in=True, account=account, share=served.share,
                    dataset=served.dataset, text=text)

    async def stylesheet(request: Request):
        return Response(css, media_type="text/css")

    routes = [
        Route("/", home),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/l/{share}/{token}", link, methods=["GET"]),
        Route("/l", link, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/gallery", gallery),
        Route("/view/{n:int}", view),
        Route("/image/{n:int}", image),
        Route("/thumb/{n:int}", image),
        Route("/download/{n:int}", download),
        Route("/download-all", download),
        Route("/datacard", datacard),
        Route("/static/portal.css", stylesheet),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=portal.allowed_hosts),
        Middleware(SessionMiddleware, secret_key=_secrets.new_session_secret(), session_cookie="wb_share",
                   max_age=SESSION_HOURS * 3600, same_site="strict", https_only=portal.tls),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn's shutdown (Ctrl+C, SIGTERM) runs this before the process ends
        with contextlib.suppress(WorkbenchError):
            await run_in_threadpool(portal.audit, "portal_stop", {})

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = _secrets.new_session_id()
        request.session["csrf"] = token
    return token


def _set_zip(portal: Portal, served: _Served, account: str) -> bytes:
    dataset = served.dataset
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        base = dataset.path.name
        zf.writestr(f"{base}/manifest.csv", dataset.read_manifest())
        zf.writestr(f"{base}/DATACARD.md", dataset.read_datacard())
        for image in dataset.images:
            zf.writestr(f"{base}/{image.relpath}", portal.served_image(served, image.index, account))
    return buf.getvalue()


# --- serving ---------------------------------------------------------------------------


#: On Ctrl+C or SIGTERM the portal stops taking connections and gives those
#: open this many seconds to finish, then ends them. Unbounded, a browser
#: holding an HTTPS connection open without answering the TLS close kept
#: the portal running for 30 s and more (asyncio's TLS shutdown wait).
STOP_WITHIN_S = 5


def serve(vault: Vault, *, host: str = "127.0.0.1", port: int = 8443, share_ids: list[str] | None = None,
          tls_self_signed: bool = False, behind_proxy: bool = False, allowed_hosts: list[str] | None = None,
          datasets: str | os.PathLike | None = None, ready=None) -> None:
    """Run the portal with uvicorn until interrupted.

    Parameters
    ----------
    vault : Vault
        Opened by a ``portal`` account.
    host : str
        Address to bind: 127.0.0.1 unless told otherwise.
    port : int
    share_ids : list of str, optional
        Serve only these shares.
    tls_self_signed : bool
        Serve HTTPS with a certificate made now (kept in a private temporary
        folder, deleted at exit).
    behind_proxy : bool
        TLS ends at a reverse proxy on this machine (nginx, Caddy): cookies
        are Secure, and the client address comes from the proxy's
        ``X-Forwarded-For`` (trusted from 127.0.0.1 only).
    allowed_hosts : list of str, optional
        Host names to answer to (the proxy's public name).
    datasets : path-like, optional
        Where the shared folders are now, if moved (see :class:`Portal`).
    ready : callable, optional
        Called with the base URL and the certificate's SHA-256 fingerprint
        (None without ``tls_self_signed``) once listening.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port "
                           "or --host") from None
    hosts = list(allowed_hosts or []) + ["127.0.0.1", "localhost", host]
    try:
        portal = Portal(vault, share_ids=share_ids, tls=tls_self_signed or behind_proxy, allowed_hosts=hosts,
                        datasets=datasets)
    except BaseException:
        sock.close()
        raise
    app = create_app(portal)
    folder = None
    fingerprint = None
    options = {}
    if tls_self_signed:
        folder = Path(tempfile.mkdtemp(prefix="workbench-tls-"))
        cert, key = _secrets.self_signed_certificate(host)
        fingerprint = _secrets.certificate_fingerprint(cert)
        (folder / "cert.pem").write_bytes(cert)
        fd = os.open(folder / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        options = {"ssl_certfile": str(folder / "cert.pem"), "ssl_keyfile": str(folder / "key.pem")}
    # no access log: a link's URL carries its token
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            proxy_headers=behind_proxy, forwarded_allow_ips="127.0.0.1" if behind_proxy else None,
                            server_header=False, timeout_graceful_shutdown=STOP_WITHIN_S, **options)
    server = uvicorn.Server(config)
    scheme = "https" if tls_self_signed else "http"

    async def run():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if folder is not None:  # loaded into the server's SSL context: off the disk now
            shutil.rmtree(folder, ignore_errors=True)
        if server.started and ready is not None:
            ready(f"{scheme}://{host}:{sock.getsockname()[1]}", fingerprint)
        await task

    try:
        asyncio.run(run())
    finally:
        sock.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
