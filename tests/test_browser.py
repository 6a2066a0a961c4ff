"""The notebooks in a real JupyterLab, in a real Chromium, as a person uses them.

A small demo vault (generated photos, fake identities) is built once; each
test starts `workbench lab` on copies of the notebooks (saving must not touch
the project's own files) with the kernel's user set as a person would have
it, opens a notebook in Chromium, runs it from the Run menu, saves it with
Ctrl+S, and searches the saved file: JupyterLab itself writes it, widget
state and all.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from workbench.demo import build_demo_vault, review_demo_photos

from _browser import ROOT, chromium_page, open_notebook, run_all_cells, running_lab, save_notebook
from test_notebooks import PASSPHRASE, _embedded_images, _leaks, _vault_secrets

TOKEN = "browser-test-token"
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def demo_vault(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    vault = build_demo_vault(work, photos=8, passphrase=PASSPHRASE, width=640, height=427,
                             out=open(os.devnull, "w"))
    review_demo_photos(vault, PASSPHRASE, workers=0)
    return work, vault


def _lab_as(work, vault, user: str, name: str):
    """`workbench lab` serving fresh copies of the notebooks, its kernels running as ``user``."""
    folder = work / f"notebooks-{name}"
    shutil.copytree(ROOT / "notebooks", folder)
    home = work / f"home-{name}"
    home.mkdir()
    # PYTHONPATH: the kernels run this checkout's code, whatever the environment has installed
    env = {"WORKBENCH_VAULT": str(vault), "WORKBENCH_USER": user, "WORKBENCH_PASSPHRASE": PASSPHRASE,
           "PYTHONPATH": str(ROOT)}
    return folder, running_lab(home, TOKEN, env=env, notebook_dir=folder)


def _errors_shown(page) -> list[str]:
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                        ).filter(has_text="Error").all_inner_texts()


@pytest.mark.slow
def test_the_tour_runs_in_the_browser_and_its_saved_file_holds_nothing_identifying(demo_vault):
    work, vault = demo_vault
    folder, lab = _lab_as(work, vault, "research", "tour")
    with lab as (base, _), chromium_page() as page:
        open_notebook(page, base, TOKEN, "00_tour.ipynb")
        run_all_cells(page)
        assert _errors_shown(page) == []
        assert page.locator(".jp-NotebookPanel img").count() >= 1  # the page of de-identified photos
        save_notebook(page)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tour.png"))
    saved = folder / "00_tour.ipynb"
    doc = json.loads(saved.read_text())
    executed = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in executed), "JupyterLab saved the run"
    identifiers, originals = _vault_secrets(vault)
    assert len(_embedded_images(doc)) >= 1  # the search below looks at real photos
    assert _leaks(saved, identifiers, originals) == []
