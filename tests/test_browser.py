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
    vault = build_demo_vault(work, photos=8, passphrase=PASSPHRASE, width=320, height=213,
                             out=open(os.devnull, "w"))
    review_demo_photos(vault, PASSPHRASE, workers=0)
    # What the demo leaves for a person because of a weak box (at 640 px a ruler's print reads as
    # guesses), a person approves: the tour shows approved photos only, and needs one for research.
    from workbench import open_vault
    from workbench.deid import review_reasons

    with open_vault(vault, user="analyst", passphrase=PASSPHRASE) as analyst:
        results = analyst.deid_results(purpose="care")
        for photo_id, regions in zip(results["photo_id"], results["regions"]):
            if review_reasons(regions):
                analyst.set_review_state(photo_id, "approved", reason="checked: the weak box hides no finding")
        assert (analyst.photos("research")["review_state"] == "approved").any()
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


# --- the review widgets, used with a mouse and a keyboard ----------------------


def _tattoo_photo(seed: int = 7, width: int = 1600, height: int = 1067):
    """A clinical close-up with a tattoo (an anchor in blue-black ink): no detector is made for it.

    Returns the JPEG bytes and the tattoo's box [x, y, w, h].
    """
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    from workbench import _synth

    pixels = _synth.synth_pixels(np.random.default_rng(seed), width, height)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    x, y, w, h = int(width * 0.62), int(height * 0.2), int(width * 0.16), int(height * 0.3)
    ink, stroke, cx = (38, 44, 78), max(4, w // 14), x + w // 2
    draw.line([(cx, y + h * 0.12), (cx, y + h * 0.9)], fill=ink, width=stroke)
    draw.ellipse([cx - w * 0.12, y, cx + w * 0.12, y + h * 0.16], outline=ink, width=max(3, w // 20))
    draw.line([(x + w * 0.2, y + h * 0.32), (x + w * 0.8, y + h * 0.32)], fill=ink, width=stroke)
    draw.arc([x, y + h * 0.45, x + w, y + h], 20, 160, fill=ink, width=stroke)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue(), [x, y, w, h]


@pytest.fixture(scope="module")
def tattoo_vault(tmp_path_factory):
    """One patient (research consent), one photo with a tattoo, de-identified (nothing found)."""
    import workbench as wb
    from workbench.cohort import prepare_derivatives

    work = tmp_path_factory.mktemp("tattoo")
    vault = work / "vault"
    data, box = _tattoo_photo()
    with wb.init_vault(vault, admin="ada", passphrase=PASSPHRASE) as admin:
        for user, role in (("ana", "analyst"), ("res", "researcher")):
            admin.add_user(user, role, PASSPHRASE)
        admin.add_consent("MRN-TATTOO-1", "care,research", name="ZZTEST Tattoo Person")
        photo_id = admin.add_photo(data, patient="MRN-TATTOO-1", body_site="forearm").photo_id
    with wb.open_vault(vault, user="ana", passphrase=PASSPHRASE) as analyst:
        prepare_derivatives(analyst, [photo_id], purpose="research", workers=0)
        assert analyst.deid_results([photo_id], purpose="research")["regions"][0] == []  # none found
    return work, vault, photo_id, box


@pytest.mark.slow
def test_a_person_marks_a_tattoo_in_the_editor_and_the_cohort_hides_exactly_it(tattoo_vault):
    import numpy as np

    import workbench as wb
    from workbench import _imageio
    from workbench.cohort import build_cohort

    work, vault, photo_id, (tx, ty, tw, th) = tattoo_vault
    folder, lab = _lab_as(work, vault, "ana", "editor")
    with lab as (base, _), chromium_page() as page:
        open_notebook(page, base, TOKEN, "20_review.ipynb")
        run_all_cells(page)
        assert _errors_shown(page) == []
        surface = page.locator(".wb-editor-surface").first
        surface.scroll_into_view_if_needed()
        page.wait_for_function("() => { const s = document.querySelector('.wb-editor-surface');"
                               " const i = s && s.querySelector('img, canvas');"
                               " return i && (i.complete === undefined || i.complete) && i.getBoundingClientRect().width > 100; }",
                               polling=250, timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        # drag over the tattoo, in display pixels: the surface shows the whole upright photo
        photo = surface.locator("img").first
        photo.scroll_into_view_if_needed()
        page.wait_for_timeout(300)  # let the scroll settle before measuring
        shown = photo.bounding_box()
        sx, sy = shown["width"] / 1600, shown["height"] / 1067
        x0, y0 = shown["x"] + (tx - 8) * sx, shown["y"] + (ty - 8) * sy
        x1, y1 = shown["x"] + (tx + tw + 8) * sx, shown["y"] + (ty + th + 8) * sy
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
        page.mouse.move(x1, y1, steps=5)
        page.mouse.up()
        page.keyboard.press("4")  # tattoo
        page.locator(".wb-editor").first.screenshot(path=str(ARTIFACTS / "redaction-editor.png"))
        page.keyboard.press("a")  # approve
        page.wait_for_function("() => [...document.querySelectorAll('.wb-status')]"
                               ".some(e => /saved: approved/.test(e.textContent))", timeout=30_000)
        for name in ("queue", "gallery"):  # the README shows these (generated photos only)
            widget = page.locator(f".wb-{name}").first
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=str(ARTIFACTS / f"review-{name}.png"))
        save_notebook(page)
    with wb.open_vault(vault, user="ana", passphrase=PASSPHRASE) as analyst:
        review = analyst.review(photo_id)
        assert review.state == "approved" and review.reviewed_by == "ana"
        (marked,) = review.regions
        x, y, w, h = marked["box"]
        assert marked["kind"] == "tattoo"
        # the box covers the tattoo, give or take the drag's display rounding
        assert x <= tx + 2 and y <= ty + 2 and x + w >= tx + tw - 2 and y + h >= ty + th - 2
        assert w * h <= 1.6 * tw * th
        # the derivative made before the review is stale: the analyst makes it again, with the mark
        from workbench.cohort import prepare_derivatives

        prepare_derivatives(analyst, [photo_id], purpose="research", workers=0)
    with wb.open_vault(vault, user="res", passphrase=PASSPHRASE) as researcher:
        result = build_cohort(researcher, {"name": "tattoo", "purpose": "research"},
                              work / "datasets" / "tattoo", workers=0)
    assert result.images == 1
    (image_path,) = [p for p in (work / "datasets" / "tattoo").glob("images/*") if p.is_file()]
    out = _imageio.decode(image_path.read_bytes()).astype(int)
    inside = out[ty + 4:ty + th - 4, tx + 4:tx + tw - 4]
    assert inside.std(axis=(0, 1)).max() < 3, "the tattoo is filled"
    original, _ = _tattoo_photo()
    before = _imageio.decode(original).astype(int)
    outside = np.ones(out.shape[:2], bool)
    outside[max(0, y - 16):y + h + 16, max(0, x - 16):x + w + 16] = False
    assert np.abs(out - before)[outside].mean() < 3, "nothing else is hidden"
    saved = folder / "20_review.ipynb"
    text = saved.read_text()
    assert "ZZTEST" not in text and "MRN-TATTOO" not in text and "data:image" not in text
    assert _embedded_images(json.loads(text)) == []
