"""Notebooks are tested by running them: nbval over every notebook, papermill for builds.

A small demo vault (generated photos, fake identities) is built once; the
notebooks find it through WORKBENCH_VAULT / WORKBENCH_USER and the
scripts-and-tests-only WORKBENCH_PASSPHRASE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.demo import build_demo_vault, review_demo_photos

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("nbdemo")
    vault = build_demo_vault(work, photos=12, passphrase="demo-test", width=640, height=427)
    review_demo_photos(vault, "demo-test", workers=0)
    env = dict(os.environ, WORKBENCH_VAULT=str(vault), WORKBENCH_USER="demo",
               WORKBENCH_PASSPHRASE="demo-test", WORKBENCH_DATASETS=str(work / "datasets"))
    return work, vault, env


@pytest.mark.slow
def test_every_notebook_runs_under_nbval(demo_env):
    work, _, env = demo_env
    assert len(NOTEBOOKS) >= 6
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
         "--rootdir", str(ROOT / "notebooks"), *map(str, NOTEBOOKS)],
        capture_output=True, text=True, env=env, cwd=ROOT / "notebooks", timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    # what the build notebooks wrote is consented and pseudonymous
    manifest = pd.read_csv(work / "datasets" / "demo-cohort" / "manifest.csv")
    assert len(manifest) > 0 and manifest["patient_id"].str.startswith("PT-").all()
    assert (work / "datasets" / "demo-teaching" / "gallery.html").exists()
    assert (work / "datasets" / "demo-teaching" / "deck.pptx").exists()


def test_committed_notebooks_carry_no_outputs():
    # outputs can hold identifiers; notebooks are committed clean
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, path.name


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
    assert "ZZTEST" not in text and "MRN-" not in text and "demo-test" not in text
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["images"] > 0 and prov["excluded"]
    assert cli("cohort", "check", str(folder)).returncode == 0
    # a patient in the cohort withdraws: the cohort is flagged, a rebuild drops them
    from workbench import open_vault

    with open_vault(vault, user="demo", passphrase="demo-test") as admin:
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
