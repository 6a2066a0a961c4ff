"""A real JupyterLab and a real Chromium for the tests that need them.

JupyterLab is started the way the README says (``workbench lab``), headless
on a free port behind a token, with its own home so that nothing of the
developer's settings leaks in. Chromium is Debian's (``/usr/bin/chromium``),
driven by Playwright's Python package; nothing is ever downloaded
(``playwright install`` is never run). Without Chromium or Playwright the
browser tests skip with the reason, except under CI (``CI=true``), where
they fail: CI installs both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
#: what the machine's closed network needs: no background connections, no GPU, no sandbox as root
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


def http_get(url: str, token: str | None):
    """``(status, body)`` of a GET, redirects not followed."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def running_lab(home: Path, token: str, env: dict | None = None, notebook_dir: Path | None = None):
    """``workbench lab`` on a free port; yields ``(base_url, port)``; stopped on exit.

    ``notebook_dir``: serve copies (a test that saves a notebook must not
    touch the project's own files)."""
    port = free_port()
    environment = dict(os.environ, JUPYTER_TOKEN=token, HOME=str(home),
                       JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"),
                       JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
                       JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), **(env or {}))
    log = open(home / "lab.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "lab", "--port", str(port), "--no-browser", "--allow-root",
         *(["--notebook-dir", str(notebook_dir)] if notebook_dir else [])],
        env=environment, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_get(f"{base}/api/status", token)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"workbench lab did not start:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield base, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must install it (.ci/run)")
    pytest.skip(f"{reason}: install Debian's chromium and `pip install -e .[test]` to run the browser tests")


@contextlib.contextmanager
def chromium_page(viewport=(1400, 1000), **page_options):
    """A page of a fresh headless Chromium (its own empty profile); ``page_options`` go to ``new_page``."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright's Python package is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, **page_options)
            console: list[str] = []  # the page's warnings and errors, for a failure's note
            page.on("console", lambda m: console.append(f"{m.type}: {m.text[:300]}")
                    if m.type in ("error", "warning") else None)
            try:
                yield page
            except Exception as exc:
                # what the page showed when a step failed or timed out (generated photos only),
                # kept with the other artefacts and told in the failure itself (CI shows notes)
                exc.add_note(_keep_failure(page, console))
                raise
        finally:
            browser.close()


#: what a failure report quotes from the page: the widgets' status and error lines, and stderr output
_STATUS = ".wb-status, .wb-error, .jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']"


def _keep_failure(page, console: list[str]) -> str:
    """Save a screenshot, the page's status lines, its widgets' images and its console errors to
    tests/artifacts/failure-*; return them as a note."""
    folder = ROOT / "tests" / "artifacts"
    folder.mkdir(exist_ok=True)
    stem = folder / f"failure-{time.strftime('%Y%m%d-%H%M%S')}"
    lines = ["(the page could not be read)"]
    with contextlib.suppress(Exception):  # the page may be gone: the failure itself is what matters
        page.screenshot(path=f"{stem}.png", full_page=True)
    with contextlib.suppress(Exception):
        lines = page.evaluate("sel => [...document.querySelectorAll(sel)]"
                              ".map(e => e.className + ': ' + e.textContent.trim().slice(0, 300))", _STATUS)
        lines += page.evaluate("() => [...document.querySelectorAll('.wb-widget img')].map(i => 'img ' + i.className"
                               " + ': src ' + (i.getAttribute('src') ? 'set' : 'none') + ', complete ' + i.complete"
                               " + ', natural ' + i.naturalWidth + 'x' + i.naturalHeight + ', shown '"
                               " + Math.round(i.getBoundingClientRect().width) + 'x' + Math.round(i.getBoundingClientRect().height)"
                               " + ' in ' + Math.round(i.parentElement.getBoundingClientRect().width) + ' px, display '"
                               " + getComputedStyle(i).display + ', connected ' + i.isConnected)")
    lines += console[-20:]
    Path(f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return f"the page when it failed ({stem.name}.png):\n  " + "\n  ".join(lines)


def open_notebook(page, base: str, token: str, name: str, *, kernel: str = "Workbench (Python 3)"):
    """Open ``name`` in JupyterLab and wait until its kernel is connected."""
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.wait_for_function(
        "k => [...document.querySelectorAll('.jp-NotebookPanel .jp-Toolbar-kernelName')]"
        ".some(e => e.textContent.trim() === k) || document.querySelector('.jp-Dialog') !== null",
        arg=kernel, timeout=60_000)
    # ...and has started: Run All Cells while it is still starting marks the cells and runs
    # none of them (seen on a loaded machine, the notebook then waited for ever)
    page.wait_for_function(
        "() => document.querySelector('.jp-Dialog') !== null || document.querySelector("
        "'.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status=\"idle\"]') !== null",
        polling=250, timeout=120_000)


def menu(page, top: str, item: str):
    """Click a menu of JupyterLab's menu bar, then one of its items, as a person would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=item).first.click()


def run_all_cells(page, timeout_s: float = 300):
    """Run > Run All Cells, then wait until every code cell ran (or one failed) and the kernel is idle.

    On a loaded machine the cells may not even be queued a moment after the
    menu: "no cell running" alone would pass before any ran.
    """
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        "() => { const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];"
        " const busy = document.querySelector(\".jp-NotebookPanel .jp-Notebook-ExecutionIndicator\");"
        " const ran = prompts.every(p => /\\[\\d+\\]/.test(p.textContent));"
        " const failed = document.querySelector(\".jp-NotebookPanel .jp-OutputArea-output\""
        "   + \"[data-mime-type='application/vnd.jupyter.stderr']\") !== null;"
        " return prompts.every(p => !p.textContent.includes('*')) && (ran || failed)"
        " && (!busy || busy.getAttribute('data-status') === 'idle'); }",
        # on a timer, not on animation frames: an idle notebook draws no frames, and
        # on a loaded machine the frame-driven check was seen never to run again
        polling=250, timeout=timeout_s * 1000)


def save_notebook(page):
    """Ctrl+S, as a person saves, and wait until JupyterLab says it is saved."""
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_function("() => document.querySelector('.jp-NotebookPanel.jp-mod-dirty') === null"
                           " && document.querySelector('.jp-mod-dirty') === null", timeout=30_000)
    page.wait_for_timeout(500)
