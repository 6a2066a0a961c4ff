"""The demo shows the product at its best: consistent captions, every exclusion reason, a readable data card."""

from __future__ import annotations

import pandas as pd
import pytest

import workbench as wb
from workbench.cohort import build_cohort
from workbench.demo import DEFAULT_PASSPHRASE, build_demo_vault, review_demo_photos
from workbench.teaching import DIAGNOSIS_NAMES, build_teaching_set, caption

SITE_WORDS = ("trunk", "head", "neck", "face", "back", "abdomen", "hand", "knee", "shin", "heel", "limb")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    # 9 photos: the smallest demo with three candidates for each build
    path = build_demo_vault(root, photos=9, width=320, height=213, passphrase=DEFAULT_PASSPHRASE)
    counts = review_demo_photos(path, DEFAULT_PASSPHRASE, workers=0)
    return root, path, counts


def test_captions_name_only_the_photos_own_site():
    for code in DIAGNOSIS_NAMES:
        text = caption({"diagnosis": code, "body_site": "forearm", "laterality": "left"})
        assert text.endswith(" - left forearm") and code in text
        assert not [w for w in SITE_WORDS if w in text.lower()], text


def test_demo_diagnoses_agree_with_body_sites(demo):
    _, path, _ = demo
    with wb.open_vault(path, user="demo", passphrase=DEFAULT_PASSPHRASE) as vault:
        photos = vault.photos("care")
    allowed = {"C43.5": {"back", "abdomen"}, "D22.5": {"back", "abdomen"}, "T20.2": {"face"}}
    assert len(photos) == 9
    for row in photos.itertuples():
        assert row.body_site in allowed.get(row.diagnosis, {row.body_site}), (row.diagnosis, row.body_site)
        if row.body_site in ("back", "abdomen", "face"):
            assert pd.isna(row.laterality)  # no "left back"


def test_demo_builds_show_unreviewed_and_rejected_with_a_readable_datacard(demo, tmp_path):
    _, path, counts = demo
    assert counts["unreviewed"] >= 2 and counts["rejected"] >= 2
    with wb.open_vault(path, user="research", passphrase=DEFAULT_PASSPHRASE) as vault:
        cohort = build_cohort(vault, {"name": "c", "purpose": "research"}, tmp_path / "c", workers=0)
        records = vault.audit_records()
    with wb.open_vault(path, user="teach", passphrase=DEFAULT_PASSPHRASE) as vault:
        teaching = build_teaching_set(vault, {"name": "t"}, tmp_path / "t", workers=0)
    for result in (cohort, teaching):
        assert result.excluded.get("unreviewed") and result.excluded.get("rejected in review"), result.excluded
    rejected = [r for r in records.itertuples() if r.action == "review_state" and r.detail["state"] == "rejected"]
    assert rejected and all(r.detail.get("reason") for r in rejected)
    card = (tmp_path / "c" / "DATACARD.md").read_text()
    assert f"Code workbench {wb.__version__}" in card and "{" not in card.split("## Provenance")[1]


def test_the_demo_leaves_a_tattoo_for_a_person_and_a_cohort_hides_it_once_marked(demo, tmp_path):
    """The demo's tattoo: no detector finds it, the analyst marks it in the editor, a cohort hides exactly it."""
    import json
    import shutil

    import numpy as np
    from PIL import Image

    from workbench.demo import TATTOO_PHOTO, tattoo_box
    from workbench.widgets import RedactionEditor

    _, source, _ = demo
    path = tmp_path / "vault"
    shutil.copytree(source, path)  # the other tests keep the demo as it was
    with wb.open_vault(path, user="analyst", passphrase=DEFAULT_PASSPHRASE) as vault:
        ids = list(vault.photos("care").sort_values("ingested")["photo_id"])
        photo_id = ids[TATTOO_PHOTO]
        assert vault.review(photo_id).state == "unreviewed"
        (result,) = vault.deid_results([photo_id], purpose="care").to_dict("records")
        x, y, w, h = box = tattoo_box(result["width"], result["height"])
        assert result["verified"] and not [r for r in result["regions"] if r["box"][0] < x + w and x < r["box"][0]
                                           + r["box"][2] and r["box"][1] < y + h and y < r["box"][1] + r["box"][3]]
        original = vault.load_original(photo_id)
        editor = RedactionEditor(vault, photo_id)
        editor.draw(list(box), "tattoo")
        editor.approve()
        assert editor.error == "" and vault.review(photo_id).state == "approved"
        built = build_cohort(vault, {"name": "marked", "purpose": "research"}, tmp_path / "marked", workers=0)
        hidden = vault.deid_results([photo_id], purpose="research")["regions"].iloc[0]
    provenance = json.loads((tmp_path / "marked" / "provenance.json").read_text())
    (entry,) = [p for p in provenance["photos"] if p["regions"].get("tattoo")]
    assert entry["approved_by"] == "analyst" and built.images >= 1
    image = Image.open(tmp_path / "marked" / "images" / f"{entry['image_id']}.jpg").convert("RGB")
    out = np.asarray(image).astype(int)
    assert out[y + 1:y + h - 1, x + 1:x + w - 1].max() <= 24  # the tattoo is filled
    assert [r["box"] for r in hidden if r["detector"] == "manual"] == [list(box)]  # used as drawn
    rest = np.ones(out.shape[:2], bool)
    for rx, ry, rw, rh in [r["box"] for r in hidden]:  # the tattoo and what the detectors found
        rest[max(0, ry - 6):ry + rh + 6, max(0, rx - 6):rx + rw + 6] = False
    # and elsewhere the photo is as it was (JPEG re-encoding aside)
    assert rest.mean() > 0.5 and np.abs(out - original.astype(int))[rest].mean() < 4
