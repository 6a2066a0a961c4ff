"""`workbench lab`: JupyterLab for an air-gapped workstation.

The server is started the way the README says (through the command line),
headless on a free port, and asked over HTTP what a browser would get.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest

from workbench.lab import KERNEL_NAME, SETTINGS_OVERRIDES, write_settings

from _browser import ROOT, chromium_page, http_get, running_lab

TOKEN = "lab-test-token"


def _outside_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent for a UDP connect
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _get(url: str, token: str | None = TOKEN):
    return http_get(url, token)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("labhome"), TOKEN) as server:
        yield server


def test_lab_listens_on_loopback_only_and_wants_the_token(lab):
    base, port = lab
    assert _get(f"{base}/api/status")[0] == 200
    assert _get(f"{base}/api/contents", token=None)[0] == 403
    status, _ = _get(f"{base}/lab", token=None)
    assert status in (302, 403)  # to the login page, never the application
    assert _get(f"{base}/api/contents", token="not-the-token")[0] == 403
    outside = _outside_address()
    if outside is not None:
        with pytest.raises(OSError):
            socket.create_connection((outside, port), timeout=2).close()


def test_lab_chooses_the_project_kernel(lab):
    base, _ = lab
    status, body = _get(f"{base}/api/kernelspecs")
    specs = json.loads(body)
    assert status == 200 and specs["default"] == KERNEL_NAME
    argv = specs["kernelspecs"][KERNEL_NAME]["spec"]["argv"]
    assert Path(argv[0]).resolve() == Path(sys.executable).resolve()
    # onnxruntime's telemetry is off in the kernel whatever a notebook imports first
    assert specs["kernelspecs"][KERNEL_NAME]["spec"]["env"]["ORT_DISABLE_TELEMETRY"] == "1"
    # every notebook names that kernel, so opening one asks nothing
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == KERNEL_NAME, path.name


def test_lab_settings_turn_news_and_the_extension_manager_off(lab):
    base, _ = lab

    def composite(plugin):
        # what the browser applies: the user's settings over the schema's defaults,
        # which the server has already replaced with the overrides
        status, body = _get(f"{base}/lab/api/settings/{plugin}")
        assert status == 200, plugin
        doc = json.loads(body)
        defaults = {k: v.get("default") for k, v in doc["schema"]["properties"].items()}
        return {**defaults, **doc["settings"]}

    notification = composite("@jupyterlab/apputils-extension:notification")
    assert notification["fetchNews"] == "false" and notification["checkForUpdates"] is False
    assert composite("@jupyterlab/extensionmanager-extension:plugin")["enabled"] is False
    # and server side: no news feed to fetch, no update check, no PyPI listing
    status, page = _get(f"{base}/lab")
    config = json.loads(re.search(rb'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert config["news"] == {"disabled": True}
    assert config["extensionManager"]["name"] == "read-only"
    status, body = _get(f"{base}/lab/api/news")
    assert status == 200 and json.loads(body)["news"] == []
    status, body = _get(f"{base}/lab/api/update")
    assert status == 200 and json.loads(body)["notification"] is None
    status, body = _get(f"{base}/lab/api/extensions?refresh=0&query=anything")
    assert status == 200 and all(e.get("installed") for e in json.loads(body))


def test_write_settings_keeps_other_settings_and_refuses_a_broken_file(tmp_path):
    from workbench import AlreadyExists

    path = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
                                "@jupyterlab/apputils-extension:notification": {"doNotDisturbMode": True}}))
    assert write_settings(tmp_path) == path
    written = json.loads(path.read_text())
    assert written["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert written["@jupyterlab/apputils-extension:notification"]["doNotDisturbMode"] is True
    for plugin, values in SETTINGS_OVERRIDES.items():
        assert values.items() <= written[plugin].items()
    path.write_text("[]")
    with pytest.raises(AlreadyExists, match="overrides.json"):
        write_settings(tmp_path)
    assert path.read_text() == "[]"


def test_a_notebook_opens_in_a_real_browser_with_the_kernel_chosen_and_no_popup(lab):
    """Chromium opens a notebook: its kernel (the project's) starts without a "Select Kernel"
    dialog, and no popup asks about Jupyter news, in the first seconds a person would see."""
    base, _ = lab
    with chromium_page() as page:
        page.goto(f"{base}/lab/tree/00_tour.ipynb?token={TOKEN}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
        # the kernel's name shows once it is connected; a dialog would block that
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-Toolbar-kernelName')]"
            ".some(e => e.textContent.trim() === 'Workbench (Python 3)')"
            " || document.querySelector('.jp-Dialog') !== null", timeout=60_000)
        page.wait_for_timeout(3000)  # a news question or kernel dialog would be up by now
        assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").first.inner_text()
        body = page.locator("body").inner_text()
        assert "news" not in body.lower() and "Select Kernel" not in body
        page.screenshot(path=str(ROOT / "tests" / "artifacts" / "lab-notebook.png"))
