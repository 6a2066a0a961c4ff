"""Notebooks are tested by running them: each as every role that may run it, papermill for builds.

A small demo vault (generated photos, fake identities) is built once; the
notebooks find it through WORKBENCH_VAULT / WORKBENCH_USER and the
scripts-and-tests-only WORKBENCH_PASSPHRASE. Each executed notebook is saved
as a user would save it, and the saved file is searched for the vault's
identifiers and for pixels of its originals.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from workbench.demo import build_demo_vault, review_demo_photos

from conftest import STRONG_PASSPHRASE as PASSPHRASE
from conftest import jpeg_bytes

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("nbdemo")
    # 24 small photos: at 320 px (as at 640) a ruler's print reads weakly
    # (0.14-0.53) and sends 10 photos to review, and the tour still has four
    # approved research photos (it needs three). A text pass enlarges a small
    # photo at most twice: at 640 px the review took 66 s (1280 px passes),
    # at 320 px 20 s (one thread, AMD EPYC)
    vault = build_demo_vault(work, photos=24, passphrase=PASSPHRASE, width=320, height=213)
    review_demo_photos(vault, PASSPHRASE, workers=0)
    env = dict(os.environ, WORKBENCH_VAULT=str(vault), WORKBENCH_USER="demo",
               WORKBENCH_PASSPHRASE=PASSPHRASE, WORKBENCH_DATASETS=str(work / "datasets"))
    return work, vault, env


# Who runs each notebook here: the role it is written for and the admin (who
# holds every key), and for the tour every role that may read derivatives. A
# role with the same key set as one listed adds nothing (clinician = admin,
# educator = researcher). The demo's users: demo (admin), photo, analyst,
# research, teach.
RUNS = {
    "00_tour": ["research", "teach", "analyst", "demo"],
    "10_ingest": ["photo", "demo"],
    # the widgets send photos over the comm only; a researcher's widgets say what it may do
    "20_review": ["analyst", "demo", "research"],
    "30_build_cohort": ["research", "demo"],
    "40_teaching_set": ["teach", "demo"],
    "50_audit_report": ["demo", "research"],
    "60_redaction_quality": ["analyst"],  # generated phantoms, and the vault's review figures beside them
}
# a role that may not run a notebook stops at the first cell that needs a key it lacks
REFUSED = {("00_tour", "photo"): "AccessDenied"}
INGEST_PATIENT = "MRN-NB-0001"  # reaches the ingest notebook only through its hidden prompt


def _execute(path: Path, user: str, parameters: dict, env: dict, out: Path):
    """Run a notebook as ``user`` with nbclient and save it as a user would; return the error name or None."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(path)), dict(parameters, user=user))
    # python3: the interpreter running the tests (the notebooks name the project's
    # kernel, which `workbench lab` installs)
    client = NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(path.parent)}})
    error = None
    try:
        client.execute(env=dict(env, WORKBENCH_USER=user))
    except CellExecutionError as exc:
        error = exc.ename
    nbformat.write(nb, out)
    return error


@pytest.fixture(scope="module")
def executed(demo_env):
    """Every notebook run by each role that may run it, saved to disk: {(stem, user): path}."""
    work, vault, env = demo_env
    # the kernels' temporary files go where a test can see what they leave behind
    (work / "kernel-tmp").mkdir()
    env = dict(env, WORKBENCH_PATIENT=INGEST_PATIENT, TMPDIR=str(work / "kernel-tmp"))
    folder = work / "executed"
    folder.mkdir()
    saved, errors, aside = {}, {}, {}
    # the quality notebook spends its time on generated phantoms and only reads the vault:
    # it runs beside the others (two cores), which run one after another
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        for path in sorted(NOTEBOOKS, key=lambda p: p.stem != "60_redaction_quality"):  # it first
            users = RUNS[path.stem] + [u for (stem, u) in REFUSED if stem == path.stem]
            for user in users:
                params = {"vault_path": str(vault)}
                if path.stem in ("30_build_cohort", "40_teaching_set"):
                    params["name"] = f"{path.stem}-{user}"
                out = folder / f"{path.stem}-{user}.ipynb"
                saved[path.stem, user] = out
                if path.stem == "60_redaction_quality":
                    params = {"count": 3}  # enough for its tables and chart; each phantom costs about 6 s
                    aside[path.stem, user] = pool.submit(_execute, path, user, params, env, out)
                else:
                    errors[path.stem, user] = _execute(path, user, params, env, out)
        for key, future in aside.items():
            errors[key] = future.result()
    finally:
        pool.shutdown(wait=True)
    return saved, errors


@pytest.mark.slow
def test_notebooks_leave_no_temporary_files_behind(demo_env, executed):
    """The demo card that 10_ingest writes and the phantoms 60_redaction_quality generates go when the kernel stops."""
    work, _, _ = demo_env
    left = sorted(p.name for p in (work / "kernel-tmp").iterdir())
    assert not left, f"the notebooks' kernels left temporary files: {left}"


def test_the_run_table_names_every_notebook():
    assert sorted(RUNS) == [p.stem for p in NOTEBOOKS]


@pytest.mark.slow
def test_every_notebook_runs_as_each_role_that_may_run_it(demo_env, executed):
    work, _, _ = demo_env
    saved, errors = executed
    failed = {key: name for key, name in errors.items() if name != REFUSED.get(key)}
    assert not failed, f"notebooks stopped with an error (open {work / 'executed'}): {failed}"
    # what the build notebooks wrote is consented and pseudonymous
    manifest = pd.read_csv(work / "datasets" / "30_build_cohort-research" / "manifest.csv")
    assert len(manifest) > 0 and manifest["patient_id"].str.startswith("PT-").all()
    teaching = work / "datasets" / "40_teaching_set-teach"
    assert (teaching / "gallery.html").exists() and (teaching / "deck.pptx").exists()


@pytest.mark.slow
def test_a_role_that_may_not_run_a_notebook_fails_closed(demo_env, executed, tmp_path):
    saved, errors = executed
    for key, ename in REFUSED.items():
        assert errors[key] == ename, key
        text = saved[key].read_text()
        assert "role cannot" in text and "ask an admin" in text, key  # says what to do
    # and cheaply, in this process: the same calls the notebooks make
    from workbench import AccessDenied, ingest, open_vault
    from workbench.cohort import load_deidentified_previews

    _, vault, _ = demo_env
    card = tmp_path / "card"
    card.mkdir()
    (card / "IMG_0001.JPG").write_bytes(jpeg_bytes(1))
    with open_vault(vault, user="photo", passphrase=PASSPHRASE) as photographer:
        with pytest.raises(AccessDenied, match="photographer role cannot view de-identified"):
            load_deidentified_previews(photographer, "research")
    with open_vault(vault, user="research", passphrase=PASSPHRASE) as researcher:
        with pytest.raises(AccessDenied, match="researcher role cannot"):
            ingest(researcher, [card], patient=INGEST_PATIENT, body_site="forearm", allow_no_consent=True)


def test_committed_notebooks_carry_no_outputs():
    # outputs can hold identifiers; notebooks are committed clean
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, path.name


def test_committed_notebooks_give_every_cell_a_stable_id():
    # nbformat 4.5: a cell without an id draws MissingIDFieldWarning, and a reader
    # that fills it in invents a random one on every open (a diff on every save)
    for path in NOTEBOOKS:
        doc = json.loads(path.read_text())
        assert (doc["nbformat"], doc["nbformat_minor"]) >= (4, 5), path.name
        ids = [cell.get("id") for cell in doc["cells"]]
        assert all(ids) and len(set(ids)) == len(ids), (path.name, ids)


@pytest.mark.slow
def test_cohort_build_through_papermill_withdrawal_and_check(demo_env, tmp_path):
    work, vault, env = demo_env
    env = dict(env, WORKBENCH_USER="research")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=600)

    built = cli("cohort", "build", "--param", "name=pm", "--param", "stratify=body_site")
    assert built.returncode == 0, built.stderr[-3000:]
    folder = tmp_path / "datasets" / "pm"
    executed = json.loads((folder / "30_build_cohort.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["name"] == "pm"
    text = (folder / "30_build_cohort.ipynb").read_text()
    assert "ZZTEST" not in text and "MRN-" not in text and PASSPHRASE not in text
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["images"] > 0 and prov["excluded"]
    assert cli("cohort", "check", str(folder)).returncode == 0
    # a patient in the cohort withdraws: the cohort is flagged, a rebuild drops them
    from workbench import open_vault

    with open_vault(vault, user="demo", passphrase=PASSPHRASE) as admin:
        ids = admin.photos("research", include_identifiers=True)
        first = ids.sort_values("photo_id").iloc[0]["patient_id"]
        admin.withdraw_consent(first, "research")
    checked = cli("cohort", "check", str(folder))
    assert checked.returncode == 1 and "withdrawn" in checked.stdout
    rebuilt = cli("cohort", "rebuild", str(folder))
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    new = pd.read_csv(tmp_path / "datasets" / "pm-v2" / "manifest.csv")
    old = pd.read_csv(folder / "manifest.csv")
    assert len(new) < len(old)
    assert cli("cohort", "check", str(tmp_path / "datasets" / "pm-v2")).returncode == 0


# -- what a saved notebook must never hold ----------------------------------

_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,([A-Za-z0-9+/=\s]+)")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{64,}")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _embedded_images(doc: dict) -> list[np.ndarray]:
    """Every raster image anywhere in a notebook: outputs, attachments, widget
    state, data URIs inside HTML or SVG; decoded to RGB pixels."""
    images = []
    for text in _strings(doc):
        candidates = _DATA_URI.findall(text)
        if _BASE64.fullmatch(text):
            candidates.append(text)
        for b64 in candidates:
            try:
                with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
                    images.append(np.asarray(image.convert("RGB")))
            except (ValueError, OSError):  # base64 that is not an image (binascii.Error is a ValueError)
                continue
    return images


def _shows_identifiable_pixels(image: np.ndarray, originals: list) -> bool:
    """Whether ``image`` is an original (or its preview) with an identifying part visible.

    ``originals`` holds (pixels, regions) per photo: the regions its
    de-identification hid as [x, y, w, h], or None when it has no derivative.
    The photo that matches ``image`` best outside those regions, if it matches
    closely (generated photos share skin tones, so a loose match is no match),
    is the one shown; it leaks when it also matches inside any region (a
    derivative has them filled), or when it has no derivative at all.
    """
    h, w = image.shape[:2]
    best = None
    for pixels, regions in originals:
        height, width = pixels.shape[:2]
        if h < 16 or w < 16 or abs(w / h - width / height) > 0.03:
            continue
        ref = np.asarray(Image.fromarray(pixels).resize((w, h), Image.BILINEAR), dtype=np.int16)
        diff = np.abs(image.astype(np.int16) - ref).mean(axis=2)
        if best is None or np.median(diff) < best[0]:
            best = (np.median(diff), diff, regions, w / width, h / height)
    if best is None or best[0] > 5:  # the same photo rescaled and re-encoded differs by 1-3
        return False
    _, diff, regions, sx, sy = best
    if regions is None:
        return True
    for x, y, bw, bh in regions:
        x0, y0 = int(x * sx) + 1, int(y * sy) + 1  # inside the box: its edges blur when scaled
        x1, y1 = int((x + bw) * sx) - 1, int((y + bh) * sy) - 1
        if (x1 - x0) * (y1 - y0) >= 9 and diff[y0:y1, x0:x1].mean() < 12:
            return True
    return False


def _vault_secrets(vault: Path) -> tuple[list[str], list]:
    """As the admin: every identifier string and every original's pixels with its hidden regions."""
    from workbench import open_vault

    with open_vault(vault, user="demo", passphrase=PASSPHRASE) as admin:
        photos = admin.photos("care", include_identifiers=True)
        strings = {"ZZTEST", PASSPHRASE, INGEST_PATIENT}
        for column in ("patient_id", "patient_name", "original_name", "camera_serial"):
            strings.update(str(v) for v in photos[column].dropna() if str(v))
        for value in photos["birth_date"].dropna():
            born = pd.Timestamp(value)
            strings.update(born.strftime(f) for f in ("%Y-%m-%d", "%Y:%m:%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y"))
        results = admin.deid_results(purpose="care").set_index("photo_id")
        originals = []
        for photo_id in photos["photo_id"]:
            regions = None
            if photo_id in results.index:
                regions = [r["box"] for r in results.loc[photo_id, "regions"]]
            originals.append((admin.load_original(photo_id), regions))
    return sorted(strings), originals


def _leaks(path: Path, identifiers: list[str], originals: list) -> list[str]:
    text = path.read_text()
    found = [f"identifier #{identifiers.index(s)}" for s in identifiers if s in text]
    images = _embedded_images(json.loads(text))
    found += [f"image #{n}" for n, image in enumerate(images) if _shows_identifiable_pixels(image, originals)]
    return found


@pytest.mark.slow
def test_saved_notebooks_hold_no_identifier_and_no_original_pixels(demo_env, executed):
    _, vault, _ = demo_env
    saved, _ = executed
    identifiers, originals = _vault_secrets(vault)
    assert len(identifiers) > 20 and any(regions for _, regions in originals)
    for (stem, user), path in saved.items():
        assert not _leaks(path, identifiers, originals), f"{stem} run as {user}: {_leaks(path, identifiers, originals)}"
    # the check looked at photos: the tour's page holds several de-identified ones
    assert len(_embedded_images(json.loads(saved["00_tour", "research"].read_text()))) >= 3


@pytest.mark.slow
def test_the_leak_check_finds_an_original_preview_and_an_identifier(demo_env, tmp_path):
    # a check that cannot fail proves nothing: plant what the old tour showed
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from workbench import open_vault
    from workbench.cohort import load_deidentified_previews

    _, vault, _ = demo_env
    identifiers, originals = _vault_secrets(vault)
    with open_vault(vault, user="demo", passphrase=PASSPHRASE) as admin:
        clean = load_deidentified_previews(admin, "care", limit=100)  # whatever consent the other tests withdrew
        redacted = [p for p in clean if admin.deid_results([p], purpose="care")["regions"].iloc[0]]
        previews = admin.load_previews(redacted[:1])
        name = admin.photos("care", include_identifiers=True)["patient_name"].iloc[0]

    def saved(outputs, source=""):
        path = tmp_path / f"nb{len(list(tmp_path.iterdir()))}.ipynb"
        nbformat.write(new_notebook(cells=[new_code_cell(source, outputs=outputs)]), path)
        return _leaks(path, identifiers, originals)

    original = base64.b64encode(next(iter(previews.values()))).decode()
    assert saved([new_output("display_data", data={"image/jpeg": original})])
    html = f'<div><img src="data:image/jpeg;base64,{original}"></div>'
    assert saved([new_output("execute_result", data={"text/html": html}, execution_count=1)])
    assert saved([new_output("stream", name="stdout", text=name)])
    # and it passes what the tour shows now: the same photos, redacted
    derived = base64.b64encode(clean[redacted[0]]).decode()
    assert not saved([new_output("display_data", data={"image/jpeg": derived})])


def _outputs(path: Path, marker: str) -> list[dict]:
    """The outputs of the one code cell whose source holds ``marker``."""
    cells = [c for c in json.loads(path.read_text())["cells"]
             if c["cell_type"] == "code" and marker in "".join(c["source"])]
    assert len(cells) == 1, (path.name, marker)
    return cells[0]["outputs"]


@pytest.mark.slow
def test_charts_render_as_images_in_the_executed_notebooks(executed):
    saved, _ = executed
    for stem, user in (("50_audit_report", "demo"), ("60_redaction_quality", "analyst")):
        source = NOTEBOOKS[[p.stem for p in NOTEBOOKS].index(stem)]
        charts = [c for c in json.loads(source.read_text())["cells"] if "plt.subplots" in "".join(c["source"])]
        assert charts, stem
        for chart in charts:
            outputs = _outputs(saved[stem, user], "".join(chart["source"]))
            assert any("image/png" in o.get("data", {}) for o in outputs), (stem, "".join(chart["source"])[:60])


@pytest.mark.slow
def test_the_tour_prints_whole_counts_and_shows_its_page_in_a_row(executed):
    saved, _ = executed
    counts = _outputs(saved["00_tour", "research"], "wb.SCOPES")
    table = "".join("".join(o["data"]["text/plain"]) for o in counts if "data" in o)
    assert "research" in table and not re.search(r"\d\.0\b", table), table
    page = "".join("".join(o["data"].get("text/html", ""))
                   for o in _outputs(saved["00_tour", "research"], "load_deidentified_previews"))
    assert page.count("<img") >= 3 and "display:flex" in page
