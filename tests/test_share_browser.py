"""The share portal in a real Chromium, as a collaborator uses it.

``workbench share serve`` runs as the portal account on 127.0.0.1; Debian's
Chromium (driven by Playwright's Python package, never `playwright install`)
logs in, browses the gallery, opens an image, downloads it and logs out, over
HTTPS with the certificate the portal generates (``--tls-self-signed``).
Screenshots go to ``tests/artifacts/``; with ``WORKBENCH_SCREENSHOTS=1`` the
gallery's also replaces ``docs/screenshots/share-portal.png`` (shown in the
README; a plain test run leaves the tree clean). Without
Chromium this skips, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import io
import os
import shutil
import ssl
import tempfile
from pathlib import Path

from PIL import Image

import workbench as wb
from workbench import share

from _browser import ROOT, chromium_page
from _share import copy_template, start_server
from conftest import passphrase

ARTIFACTS = ROOT / "tests" / "artifacts"


def test_a_collaborator_logs_in_browses_opens_downloads_and_logs_out(share_template, tmp_path):
    root = copy_template(share_template, tmp_path / "work")
    with wb.open_vault(root / "vault", user="edu", passphrase=passphrase("edu")) as edu:
        new = share.create_share(edu, root / "datasets" / "teaching", account="ito", download=True)
    ARTIFACTS.mkdir(exist_ok=True)
    # the portal's own self-signed certificate: this browser is told to accept it
    with chromium_page(viewport=(1100, 760), ignore_https_errors=True) as page:
        proc, base = start_server(root, args=("--tls-self-signed",))
        try:
            assert base.startswith("https://127.0.0.1:")
            served_cert = ssl.get_server_certificate(("127.0.0.1", int(base.rsplit(":", 1)[1])))
            from workbench.share._secrets import certificate_fingerprint
            assert certificate_fingerprint(served_cert.encode()) in proc.banner  # what it printed
            assert not list(Path(tempfile.gettempdir()).glob("workbench-tls-*/key.pem"))  # off the disk
            page.goto(f"{base}/gallery")
            assert page.url.endswith("/login")  # nothing without logging in
            page.fill("#account", "ito")
            page.fill("#password", "not the password")
            page.click("#login")
            assert "wrong" in page.inner_text("[role=alert]")
            page.fill("#account", "ito")
            page.fill("#password", new.secret)
            page.click("#login")
            page.wait_for_url(f"{base}/gallery")
            cookie = next(c for c in page.context.cookies() if c["name"] == "wb_share")
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            thumbs = page.locator("a.thumb img")
            assert thumbs.count() == 3
            page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(ARTIFACTS / "share-portal-gallery.png"))
            thumbs.nth(1).click()
            page.wait_for_url(f"{base}/view/1")
            page.wait_for_function("() => document.querySelector('#full').naturalWidth > 0")
            page.screenshot(path=str(ARTIFACTS / "share-portal-viewer.png"))
            with page.expect_download() as info:
                page.click("#download")
            data = open(info.value.path(), "rb").read()
            with Image.open(io.BytesIO(data)) as img:
                assert img.size == (320, 240)  # a whole image, watermarked with the viewer's name
            assert info.value.suggested_filename.startswith("IM-")
            page.click("#logout")
            assert "logged out" in page.inner_text("main").lower()
            page.goto(f"{base}/view/1")
            assert page.url.endswith("/login")  # the session is gone, not just the page
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    if os.environ.get("WORKBENCH_SCREENSHOTS") == "1":
        shutil.copyfile(ARTIFACTS / "share-portal-gallery.png", ROOT / "docs" / "screenshots" / "share-portal.png")
    with wb.open_vault(root / "vault", user="ada", passphrase=passphrase("ada")) as admin:
        records = admin.audit_records()
    portal = records[records["user"] == "portal"]["action"].tolist()
    for action in ("share_login_failed", "share_login", "share_view", "share_download", "share_logout"):
        assert action in portal, action
