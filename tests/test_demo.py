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
