"""Cohort builds: consented only, reproducible byte for byte, checked after withdrawal."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import _synth
from workbench.cohort import build_cohort, check_cohort, rebuild_cohort

from conftest import open_as

NO_DETECT = {"detectors": []}


@pytest.fixture
def cohort_vault(vault_path, clock):
    rng = np.random.default_rng(5)
    ids = {}
    with open_as(vault_path, "admin", clock) as v:
        v.add_consent("MRN-0003", "research", expires="2026-06-05")
        for n, patient in enumerate(["MRN-0001"] * 4 + ["MRN-0002"] * 2 + ["MRN-0003"] * 2):
            data, _ = _synth.synth_photo(rng, width=240, height=160)
            site = ["forearm", "knee"][n % 2]
            ids.setdefault(patient, []).append(
                v.add_photo(data, patient=patient, body_site=site, diagnosis="L40.0").photo_id)
    with open_as(vault_path, "analyst", clock) as v:
        for photo_ids in ids.values():
            for photo_id in photo_ids[:-1]:
                v.set_review_state(photo_id, "approved")
    return vault_path, ids


def test_previews_of_approved_photos_only_and_none_is_an_empty_page(cohort_vault, clock):
    from workbench.cohort import load_deidentified_previews, prepare_derivatives
    from workbench.deid import Policy

    path, ids = cohort_vault
    with open_as(path, "researcher", clock) as v:
        assert load_deidentified_previews(v, "research") == {}  # nothing de-identified yet: no page, no error
    with open_as(path, "analyst", clock) as v:
        prepare_derivatives(v, [p for photos in ids.values() for p in photos], purpose="care", workers=0,
                            policy=Policy(detectors=()))
        for photo_ids in ids.values():
            v.set_review_state(photo_ids[0], "unreviewed")
    with open_as(path, "researcher", clock) as v:
        page = load_deidentified_previews(v, "research")
        # MRN-0001: photos 2 and 3 of 4 stay approved; MRN-0003: its approved one went back; MRN-0002: no consent
        assert sorted(page) == sorted(ids["MRN-0001"][1:3])
        assert all(data[:2] == b"\xff\xd8" for data in page.values())
    with open_as(path, "analyst", clock) as v:
        for photo_id in ids["MRN-0001"]:
            v.set_review_state(photo_id, "unreviewed")
    with open_as(path, "researcher", clock) as v:
        assert load_deidentified_previews(v, "research") == {}  # none approved: an empty page, not an error


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ("provenance.json", "DATACARD.md")}


def test_build_is_consented_reproducible_and_documented(cohort_vault, clock, tmp_path):
    path, ids = cohort_vault
    spec = {"name": "psoriasis", "purpose": "research", "policy": NO_DETECT}
    with open_as(path, "analyst", clock) as v:  # prepares derivatives (may read originals)
        first = build_cohort(v, spec, tmp_path / "a", workers=0)
    with open_as(path, "researcher", clock) as v:  # uses the stored derivatives only
        second = build_cohort(v, spec, tmp_path / "b", workers=0)
    # MRN-0001: 3 approved of 4 research photos; MRN-0002 has no research consent;
    # MRN-0003's research consent (expires 2026-06-05) is still valid on 2026-06-01 (2 photos, 1 approved)
    assert first.images == 4 and second.images == 4
    assert first.excluded["unreviewed"] == 2 and first.excluded["no consent"] == 2
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv")
    assert list(manifest.columns) == ["image", "image_id", "patient_id", "capture_date", "body_site",
                                      "laterality", "diagnosis", "width", "height", "sha256"]
    assert manifest["patient_id"].nunique() == 2
    for row in manifest.itertuples():
        data = (tmp_path / "a" / row.image).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert not wb.deid.metadata_problems(data, row.image.rsplit(".", 1)[1])
    parquet = pd.read_parquet(tmp_path / "a" / "manifest.parquet")
    assert parquet["sha256"].tolist() == manifest["sha256"].tolist()
    prov = json.loads((tmp_path / "a" / "provenance.json").read_text())
    prov2 = json.loads((tmp_path / "b" / "provenance.json").read_text())
    varying = {"run_id", "started", "finished", "built_by_role"}
    assert {k: v for k, v in prov.items() if k not in varying} == {k: v for k, v in prov2.items() if k not in varying}
    assert prov["excluded"] == first.excluded and len(prov["photos"]) == 4
    card = (tmp_path / "a" / "DATACARD.md").read_text()
    assert "research" in card and "unreviewed: 2" in card
    text = "".join(p.read_text(errors="ignore") for p in (tmp_path / "a").glob("*.*") if p.suffix != ".parquet")
    for real in ("MRN-0001", "MRN-0003", "ZZTEST"):
        assert real not in text
    # never overwrite
    with open_as(path, "researcher", clock) as v:
        with pytest.raises(wb.AlreadyExists):
            build_cohort(v, spec, tmp_path / "a", workers=0)


def test_pseudonyms_differ_between_cohorts_unless_domain_shared(cohort_vault, clock, tmp_path):
    path, _ = cohort_vault
    with open_as(path, "analyst", clock) as v:
        build_cohort(v, {"name": "a", "policy": NO_DETECT}, tmp_path / "a", workers=0)
        build_cohort(v, {"name": "b", "policy": NO_DETECT}, tmp_path / "b", workers=0)
        build_cohort(v, {"name": "c", "policy": NO_DETECT, "pseudonym_domain": "cohort:a"}, tmp_path / "c", workers=0)
    ids = {k: set(pd.read_csv(tmp_path / k / "manifest.csv")["patient_id"]) for k in "abc"}
    assert not ids["a"] & ids["b"]
    assert ids["a"] == ids["c"]


def test_sample_is_seeded_and_stratified(cohort_vault, clock, tmp_path):
    path, _ = cohort_vault
    spec = {"name": "s", "policy": NO_DETECT, "sample_size": 2, "seed": 3, "stratify": "body_site",
            "include_unreviewed": True}
    with open_as(path, "analyst", clock) as v:
        r1 = build_cohort(v, spec, tmp_path / "s1", workers=0)
        r2 = build_cohort(v, spec, tmp_path / "s2", workers=0)
    m1 = pd.read_csv(tmp_path / "s1" / "manifest.csv")
    assert r1.images == r2.images == 2 and sorted(m1["body_site"]) == ["forearm", "knee"]
    assert m1.equals(pd.read_csv(tmp_path / "s2" / "manifest.csv"))
    assert r1.excluded["not drawn in the sample"] == 4


def test_withdrawal_is_flagged_and_rebuild_drops_the_patient(cohort_vault, clock, tmp_path):
    path, ids = cohort_vault
    with open_as(path, "analyst", clock) as v:
        build_cohort(v, {"name": "w", "policy": NO_DETECT}, tmp_path / "w", workers=0)
    with open_as(path, "researcher", clock) as v:
        assert check_cohort(v, tmp_path / "w").empty
    with open_as(path, "admin", clock) as v:
        v.withdraw_consent("MRN-0001", "research")
    with open_as(path, "researcher", clock) as v:
        flagged = check_cohort(v, tmp_path / "w")
        assert len(flagged) == 1 and flagged.iloc[0]["images"] == 3 and flagged.iloc[0]["reason"] == "withdrawn"
        result = rebuild_cohort(v, tmp_path / "w")
    assert result.path.name == "w-v2" and result.images == 1
    prov = json.loads((result.path / "provenance.json").read_text())
    assert prov["supersedes"]["patients_removed"] == 1 and "withdrawn" in prov["supersedes"]["reason"]
    old = set(pd.read_csv(tmp_path / "w" / "manifest.csv")["patient_id"])
    new = set(pd.read_csv(result.path / "manifest.csv")["patient_id"])
    assert new < old  # same pseudonym domain: the remaining patient keeps its id


def test_expired_consent_excluded_at_build_time(cohort_vault, clock, tmp_path):
    path, _ = cohort_vault
    clock.moment = clock.moment.replace(day=20)  # after MRN-0003's research consent expired
    with open_as(path, "analyst", clock) as v:
        result = build_cohort(v, {"name": "x", "policy": NO_DETECT}, tmp_path / "x", workers=0)
    assert result.excluded["expired"] == 2 and result.images == 3


@pytest.mark.slow
def test_dask_cluster_path_matches_local_pool(cohort_vault, clock, tmp_path):
    """Workers get bytes and a policy, never a key; the results are the same bytes."""
    from distributed import Client, LocalCluster

    from workbench.cohort import prepare_derivatives
    from workbench.deid import Policy

    path, ids = cohort_vault
    photo_ids = ids["MRN-0001"][:2]
    policy = Policy(detectors=())
    with open_as(path, "admin", clock) as v:
        local = prepare_derivatives(v, photo_ids, policy, purpose="research", workers=2)
        local_bytes = {p: v.load_derivative(b, purpose="research") for p, b in zip(local["photo_id"], local["blob_id"])}
        v.shred_derivatives(v._photo_row(photo_ids[0]).patient_ref)
        assert v.deid_results(photo_ids, purpose="research").empty
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                remote = prepare_derivatives(v, photo_ids, policy, purpose="research", scheduler=client)
        remote_bytes = {p: v.load_derivative(b, purpose="research") for p, b in zip(remote["photo_id"], remote["blob_id"])}
    assert remote_bytes == local_bytes


def test_withdrawn_patient_never_in_teaching_set_gallery_or_deck(cohort_vault, clock, tmp_path):
    import zipfile

    from workbench.teaching import build_teaching_set

    path, ids = cohort_vault  # MRN-0002 consented to education (care,education)
    with open_as(path, "analyst", clock) as v:
        first = build_teaching_set(v, {"name": "t1", "policy": NO_DETECT}, tmp_path / "t1", workers=0)
    assert first.images == 1  # 1 of MRN-0002's 2 photos is approved
    with open_as(path, "admin", clock) as v:
        v.withdraw_consent("MRN-0002", "education")
    with open_as(path, "educator", clock) as v:
        after = build_teaching_set(v, {"name": "t2", "policy": NO_DETECT}, tmp_path / "t2", workers=0)
    assert after.images == 0 and after.excluded["withdrawn"] == 2
    gallery = (tmp_path / "t2" / "gallery.html").read_text()
    assert "data:image" not in gallery
    old_id = pd.read_csv(tmp_path / "t1" / "manifest.csv")["image_id"][0]
    assert old_id in (tmp_path / "t1" / "gallery.html").read_text()
    assert old_id not in gallery
    with zipfile.ZipFile(tmp_path / "t2" / "deck.pptx") as deck:
        assert not [n for n in deck.namelist() if n.startswith("ppt/media/")]


def test_a_face_box_left_visible_as_slough_keeps_its_photo_out_until_a_person_approves_it(vault_path, clock, tmp_path):
    """A phantom (seed 2040, no. 132: no face, a weak face box on slough in a wound) added like a photo:
    its redaction leaves the wound visible, and neither a cohort nor the review queue lets it pass unseen."""
    from workbench.deid._regions import SLOUGH_MARK
    from workbench.phantoms import one_phantom
    from workbench.review import risk_queue

    data, truth = one_phantom(132, count=500, seed=2040)
    assert truth["clean"]
    with open_as(vault_path, "admin", clock) as v:
        photo_id = v.add_photo(data, patient="MRN-0001", body_site="forearm", diagnosis="L97").photo_id
    spec = {"name": "s", "include_unreviewed": True}
    with open_as(vault_path, "analyst", clock) as v:
        result = build_cohort(v, spec, tmp_path / "s", workers=0)
        assert result.images == 0 and result.excluded == {"needs review (weak face or text box)": 1}
        (stored,) = v.deid_results([photo_id], purpose="research").to_dict("records")
        assert stored["regions"] == [] and any(SLOUGH_MARK in w for w in stored["warnings"])
        (row,) = risk_queue(v, purpose="research").to_dict("records")
        assert row["photo_id"] == photo_id and "a weak face box left visible as slough in a wound" in row["reasons"]
        v.set_review_state(photo_id, "approved")
        assert build_cohort(v, dict(spec, name="t"), tmp_path / "t", workers=0).images == 1
