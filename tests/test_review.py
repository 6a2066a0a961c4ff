"""Review decisions in the vault: versions, conflicts, roles, consent, and what a cohort does with them."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.cohort import build_cohort, prepare_derivatives
from workbench.deid import Policy
from workbench.vault import _log

from conftest import ROLE_USERS, insider_index, open_as
from test_insider import _insider_slot

NO_DETECT = {"detectors": []}
#: where the generated "tattoo" sits in :func:`tattoo_photo` (x, y, w, h)
TATTOO = (120, 40, 48, 32)


def tattoo_photo(seed: int = 3, size=(240, 160)) -> bytes:
    """A skin-coloured photo with a dark-blue mark that no detector looks for."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = np.full((h, w, 3), (205, 160, 135), np.uint8) + rng.integers(0, 12, (h, w, 3), dtype=np.uint8)
    x, y, bw, bh = TATTOO
    pixels[y + 4:y + bh - 4, x + 4:x + bw - 4] = (30, 40, 110)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def photo(vault_path, clock):
    with open_as(vault_path, "admin", clock) as v:
        photo_id = v.add_photo(tattoo_photo(), patient="MRN-0001", body_site="forearm").photo_id
    return vault_path, photo_id


def test_a_save_is_a_signed_version_with_clipped_regions_and_their_authors(photo, clock):
    path, photo_id = photo
    with open_as(path, "analyst", clock) as v:
        assert v.review(photo_id).version == 0 and v.review(photo_id).state == "unreviewed"
        first = v.save_review(photo_id, based_on=0, regions=[
            {"kind": "tattoo", "box": list(TATTOO)},
            {"kind": "other", "box": [230, 150, 40, 40]},     # partly outside: clipped to 10 x 10
            {"kind": "text", "box": [20, 20, 0, 15]},         # empty: ignored
            {"kind": "face", "box": [300, 10, 20, 20]},       # wholly outside: ignored
            {"kind": "birthmark", "box": [60, 90, -20, -30]},  # drawn right to left, bottom to top
        ])
    assert first.version == 1 and first.state == "in_review" and first.reviewed_by == "ana"
    assert sorted((r["kind"], tuple(r["box"])) for r in first.regions) == [
        ("birthmark", (40, 60, 20, 30)), ("other", (230, 150, 10, 10)), ("tattoo", TATTOO)]
    assert {r["author"] for r in first.regions} == {"ana"}
    clock.moment += timedelta(hours=1)
    with open_as(path, "clinician", clock) as v:
        kept = [r for r in v.review(photo_id).regions if r["kind"] != "other"]
        second = v.save_review(photo_id, based_on=1, state="approved",
                               regions=kept + [{"kind": "face", "box": [0, 0, 30, 30]}])
        history = v.review_history([photo_id])
        records = v.audit_records()
    assert second.version == 2 and second.state == "approved" and second.reviewed_by == "cli"
    authors = {r["kind"]: r["author"] for r in second.regions}
    assert authors == {"tattoo": "ana", "birthmark": "ana", "face": "cli"}  # first author kept
    assert list(history["version"]) == [1, 2] and list(history["reviewed_by"]) == ["ana", "cli"]
    saves = records[records["action"] == "review_state"]
    assert list(saves["user"]) == ["ana", "cli"] and [d["version"] for d in saves["detail"]] == [1, 2]


def test_a_later_save_from_an_older_version_is_refused_and_loses_nothing(photo, clock):
    path, photo_id = photo
    with open_as(path, "analyst", clock) as ana, open_as(path, "clinician", clock) as cli:
        start_a, start_c = ana.review(photo_id).version, cli.review(photo_id).version
        ana.save_review(photo_id, based_on=start_a, state="approved", regions=[{"kind": "tattoo", "box": list(TATTOO)}])
        mine = [{"kind": "face", "box": [10, 10, 30, 30]}]
        with pytest.raises(wb.ConflictError) as caught:
            cli.save_review(photo_id, based_on=start_c, state="rejected", regions=mine, reason="missed a face")
        err = caught.value
        assert "ana" in str(err) and "approved" in str(err) and "version 1" in str(err)
        assert err.version == 1 and err.based_on == 0
        (change,) = err.changes
        assert change["reviewed_by"] == "ana" and change["state"] == "approved"
        assert change["regions_added"] == [{"kind": "tattoo", "box": list(TATTOO)}]
        assert err.refused == {"state": "rejected", "reason": "missed a face", "regions": mine}
        # nothing of the refused save was written; it can be saved again from the new version
        assert cli.review(photo_id).state == "approved" and len(cli.review_history([photo_id])) == 1
        again = cli.save_review(photo_id, based_on=err.version, **err.refused)
        assert again.version == 2 and again.state == "rejected" and again.reason == "missed a face"


@pytest.mark.parametrize("role", ["researcher", "educator", "photographer"])
def test_roles_that_do_not_review_cannot_save_a_review(photo, clock, role):
    path, photo_id = photo
    with open_as(path, role, clock) as v:
        with pytest.raises(wb.AccessDenied, match=f"the {role} role cannot review redactions"):
            v.save_review(photo_id, based_on=0, state="approved")
        with pytest.raises(wb.AccessDenied):
            v.set_review_state(photo_id, "approved")
        assert v.review(photo_id).version == 0


def test_bad_input_is_refused_with_advice(photo, clock):
    path, photo_id = photo
    with open_as(path, "analyst", clock) as v:
        with pytest.raises(wb.InvalidInput, match="tattoo, birthmark, other"):
            v.save_review(photo_id, based_on=0, regions=[{"kind": "scar", "box": [1, 2, 3, 4]}])
        with pytest.raises(wb.InvalidInput, match="four numbers"):
            v.save_review(photo_id, based_on=0, regions=[{"kind": "face", "box": [1, 2, "x", 4]}])
        with pytest.raises(wb.InvalidInput, match="review state"):
            v.save_review(photo_id, based_on=0, state="done")
        with pytest.raises(wb.NotFound):
            v.save_review("nope", based_on=0)
        assert v.review(photo_id).version == 0


def test_a_photo_whose_patient_withdrew_cannot_be_approved(photo, clock):
    path, photo_id = photo
    with open_as(path, "analyst", clock) as ana:
        version = ana.save_review(photo_id, based_on=0, regions=[{"kind": "tattoo", "box": list(TATTOO)}]).version
        clock.moment += timedelta(minutes=5)
        with open_as(path, "clinician", clock) as cli:  # withdrawn while the analyst has it open
            cli.withdraw_consent("MRN-0001")
        clock.moment += timedelta(minutes=5)
        with pytest.raises(wb.ConsentError, match="withdrew consent") as caught:
            ana.save_review(photo_id, based_on=version, state="approved")
        assert caught.value.refused["state"] == "approved"
        assert caught.value.refused["regions"][0]["kind"] == "tattoo"
        with pytest.raises(wb.ConsentError):
            ana.set_review_state(photo_id, "approved")
        assert ana.review(photo_id).state == "in_review"
        assert ana.save_review(photo_id, based_on=version, state="rejected", reason="consent withdrawn").version == 2


def test_an_approved_region_is_redacted_in_a_cohort_built_afterwards(photo, clock, tmp_path):
    path, photo_id = photo
    policy = Policy(detectors=())
    with open_as(path, "analyst", clock) as v:
        # a derivative made before review: the tattoo is untouched there
        before = prepare_derivatives(v, [photo_id], policy, purpose="research", workers=0)
        assert before.loc[0, "regions"] == []
        version = v.review(photo_id).version
        v.save_review(photo_id, based_on=version, state="approved", regions=[{"kind": "tattoo", "box": list(TATTOO)}])
    with open_as(path, "analyst", clock) as v:
        result = build_cohort(v, {"name": "marked", "purpose": "research", "policy": NO_DETECT},
                              tmp_path / "marked", workers=0)
    assert result.images == 1
    (image,) = (tmp_path / "marked" / "images").iterdir()
    out = np.asarray(Image.open(image).convert("RGB")).astype(int)
    src = np.asarray(Image.open(io.BytesIO(tattoo_photo())).convert("RGB")).astype(int)
    x, y, w, h = TATTOO
    inside = out[y + 1:y + h - 1, x + 1:x + w - 1]  # JPEG blurs the edge's ring
    assert inside.max() <= 24, "the marked tattoo is not filled"
    # and nothing else was: the rest of the frame matches the original
    outside = np.ones(out.shape[:2], bool)
    outside[max(0, y - 8):y + h + 8, max(0, x - 8):x + w + 8] = False
    assert np.abs(out - src)[outside].mean() < 3
    provenance = json.loads((tmp_path / "marked" / "provenance.json").read_text())
    (entry,) = provenance["photos"]
    assert entry["approved_by"] == ROLE_USERS["analyst"] and entry["review_state"] == "approved"
    assert entry["regions"] == {"tattoo": 1}


def test_a_cohort_built_by_a_role_without_originals_leaves_out_a_stale_derivative(photo, clock, tmp_path):
    path, photo_id = photo
    policy = Policy(detectors=())
    with open_as(path, "analyst", clock) as v:
        prepare_derivatives(v, [photo_id], policy, purpose="research", workers=0)
        v.save_review(photo_id, based_on=0, state="approved", regions=[{"kind": "tattoo", "box": list(TATTOO)}])
    with open_as(path, "researcher", clock) as v:  # cannot de-identify again: must not use the old one
        result = build_cohort(v, {"name": "stale", "purpose": "research", "policy": NO_DETECT},
                              tmp_path / "stale", workers=0)
    assert result.images == 0 and result.excluded == {"not de-identified yet": 1}


def test_a_review_row_edited_by_sql_is_caught(photo, clock):
    """An analyst removes the tattoo from an approved review with the index key alone."""
    path, photo_id = photo
    with open_as(path, "analyst", clock) as v:
        v.save_review(photo_id, based_on=0, state="approved", regions=[{"kind": "tattoo", "box": list(TATTOO)}])
    db = insider_index(path, "analyst")
    db.execute("UPDATE reviews SET regions = '[]' WHERE photo_id = ?", (photo_id,))
    db.close()
    with open_as(path, "admin", clock) as v:
        with pytest.raises(wb.IntegrityError, match="reviews"):
            v.manual_regions()
        with pytest.raises(wb.IntegrityError, match="reviews"):
            v.photos("research")


def test_a_review_row_in_another_reviewers_name_is_refused(photo, clock):
    """An analyst signs a record whose review row names the clinician as its author."""
    path, photo_id = photo
    db = insider_index(path, "analyst")
    vault_id, slot = _insider_slot(path, "analyst")
    seq, body, sig = db.execute("SELECT seq, body, sig FROM log ORDER BY seq DESC LIMIT 1").fetchone()
    row = (photo_id, 1, "approved", None, "[]", "cli", "2026-06-03T00:00:00+00:00")
    record = _log.make_record(vault_id=vault_id, seq=seq + 1, prev=_log.parse(seq, body, sig).hash,
                              time=row[6], user="ana", action="review_state", detail={},
                              rows={"reviews": [row]}, signing_key=slot.signing)
    db.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    db.execute("INSERT INTO log VALUES (?, ?, ?)", (record.seq, record.body, record.sig))
    db.close()
    with pytest.raises(wb.IntegrityError, match="in another user's name"):
        open_as(path, "admin", clock)


def test_a_dismissal_counts_once_approved_and_makes_the_build_redo_the_derivative(photo, clock):
    """A draft's dismissal leaves nothing visible; an approved one does, and names itself in the provenance."""
    from workbench.cohort import policy_digest

    path, photo_id = photo
    box = [100, 30, 70, 50]
    with open_as(path, "analyst", clock) as v:
        draft = v.save_review(photo_id, based_on=0, regions=[
            {"kind": "face", "box": box, "dismissed": True}, {"kind": "tattoo", "box": list(TATTOO)}])
        assert [r.get("dismissed") for r in draft.regions] == [True, None]
        assert v.manual_regions([photo_id])[photo_id] == [
            {"kind": "tattoo", "box": list(TATTOO), "score": 1.0, "detector": "manual"}]
        with pytest.raises(wb.InvalidInput, match="dismissed is true or false"):
            v.save_review(photo_id, based_on=1, regions=[{"kind": "face", "box": box, "dismissed": "yes"}])
        approved = v.save_review(photo_id, based_on=1, state="approved")
        regions = v.manual_regions([photo_id])[photo_id]
        history = v.review_history([photo_id])
    assert approved.version == 2 and {"kind": "face", "box": box, "score": 1.0, "detector": "manual",
                                      "dismissed": True} in regions
    # the dismissal is part of what a derivative must have been made with
    plain = [dict(r, dismissed=False) for r in regions]
    assert policy_digest(Policy(), regions) != policy_digest(Policy(), plain)
    assert policy_digest(Policy(), [regions[1]]) == policy_digest(Policy(), [{"kind": "tattoo", "box": list(TATTOO)}])
    # a save that only dismisses is a change the conflict report names
    with open_as(path, "clinician", clock) as v, pytest.raises(wb.ConflictError) as caught:
        v.save_review(photo_id, based_on=0, state="approved", regions=[])
    added = caught.value.changes[0]["regions_added"]
    assert {"kind": "face", "box": box, "dismissed": True} in added
    assert len(history) == 2
