"""The review widgets, played as the browser plays them: traits, action messages, callbacks.

Each test drives a widget through ``set_state`` / ``get_state``, the action
messages its JavaScript sends (``{"action": name, "args": {...}}``) or the
methods those call, and checks what the vault holds afterwards, what went
to the browser (images as custom messages with binary buffers), and that
the state a notebook could save holds no pixel and no identifier.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image

from workbench.deid import DeidResult, Region
from workbench.review import review_figures, risk_queue
from workbench.widgets import ConsentForm, Gallery, RedactionEditor, ReviewQueue

from conftest import open_as
from test_review import TATTOO, tattoo_photo

IDENTIFIERS = ("MRN-0001", "MRN-0009", "ZZTEST", "Alpha", "Beta")


def capture(widget):
    """Record what the widget sends to the browser from now on, and ask it to resend (a view renders)."""
    sent = []
    widget.send = lambda content, buffers=None: sent.append((content, list(buffers or [])))
    browser(widget, "hello")
    return sent


def browser(widget, action, buffers=(), **args):
    """What the widget's JavaScript does: one action message."""
    widget._on_browser_message(widget, {"action": action, "args": args}, list(buffers))


def assert_state_is_clean(widget):
    """The state JupyterLab could save: JSON, no binary buffer, no JPEG, no identifier."""
    state, _, buffers = _remove_buffers(widget.get_state())
    assert buffers == []
    text = json.dumps(state)
    assert "/9j/" not in text and "\\u00ff\\u00d8" not in text  # no JPEG, base64 or raw
    for word in IDENTIFIERS:
        assert word not in text, word


def _result(width, height, regions, verified=True, warnings=()):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buf, "JPEG")
    return DeidResult(buf.getvalue(), "jpg", width, height, regions, verified, list(warnings))


@pytest.fixture
def photos(vault_path, clock):
    """Three photos of MRN-0001 (research); the first has a weak face box, the second failed verification."""
    with open_as(vault_path, "admin", clock) as v:
        ids = [v.add_photo(tattoo_photo(seed), patient="MRN-0001", body_site=site, diagnosis="L40.0").photo_id
               for seed, site in ((3, "forearm"), (4, "knee"), (5, "forearm"))]
        v.store_deid(ids[0], _result(240, 160, [Region("face", (10, 10, 40, 40), 0.2, "centerface")]), "p")
        v.store_deid(ids[1], _result(240, 160, [Region("text", (100, 100, 60, 12), 0.9, "rapidocr")], False), "p")
        v.store_deid(ids[2], _result(240, 160, []), "p")
    return vault_path, ids


# --- the redaction editor -------------------------------------------------------------


def test_the_editor_sends_the_photo_over_the_comm_and_keeps_pixels_out_of_its_state(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        editor = RedactionEditor(v, ids)
        sent = capture(editor)
        ((content, buffers),) = sent
        assert content["slot"] == "photo" and content["photo_id"] == ids[0]
        shown = Image.open(io.BytesIO(buffers[0]))
        assert shown.format == "JPEG" and shown.size == (240, 160)
        assert editor.image_size == [240, 160] and editor.display_size == [240, 160]
        assert editor.proposed == [{"kind": "face", "box": [10, 10, 40, 40], "score": 0.2, "detector": "centerface"}]
        assert editor.can_review and editor.error == ""
        assert ["a", "approve"] in editor.shortcuts
        assert_state_is_clean(editor)


def test_a_box_left_visible_as_slough_is_shown_and_one_click_marks_it_as_a_face(photos, clock):
    from workbench.deid._regions import SLOUGH_NOTE

    path, ids = photos
    note = SLOUGH_NOTE.format(kind="face", box=[150, 60, 30, 32], score=0.16)
    with open_as(path, "admin", clock) as v:
        v.store_deid(ids[2], _result(240, 160, [], warnings=[note]), "p")
    with open_as(path, "analyst", clock) as v:
        (row,) = [r for r in risk_queue(v).to_dict("records") if r["photo_id"] == ids[2]]
        assert "a weak face box left visible as slough in a wound" in row["reasons"]
        editor = RedactionEditor(v, ids[2])
        capture(editor)
        assert editor.proposed == [] and editor.left_visible == [{"kind": "face", "box": [150, 60, 30, 32],
                                                                   "score": 0.16}]
        browser(editor, "draw", box=[150, 60, 30, 32], kind="face")  # what clicking its label sends
        assert editor.regions == [{"kind": "face", "box": [150, 60, 30, 32]}] and editor.error == ""
        assert_state_is_clean(editor)


def test_drawing_moving_resizing_kinds_and_deleting(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        editor = RedactionEditor(v, ids[0])
        capture(editor)
        browser(editor, "draw", box=[200, 140, 80, 50], kind="tattoo")  # partly outside: clipped
        assert editor.regions == [{"kind": "tattoo", "box": [200, 140, 40, 20]}] and editor.selected == 0
        browser(editor, "draw", box=[5, 5, 0, 20])                        # empty: ignored, said so
        assert len(editor.regions) == 1 and "ignored" in editor.status
        editor.draw([60, 80, -20, -30], "face")                           # right to left
        assert editor.regions[1] == {"kind": "face", "box": [40, 50, 20, 30]}
        browser(editor, "set_box", index=0, box=list(TATTOO))             # moved and resized
        assert editor.regions[0]["box"] == list(TATTOO)
        editor.set_state({"regions": [editor.regions[0], {"kind": "other", "box": [230, 0, 50, 10]}]})
        assert editor.regions[1] == {"kind": "other", "box": [230, 0, 10, 10]}  # the browser's edit, clipped
        browser(editor, "set_kind", kind="birthmark", index=1)
        assert editor.regions[1]["kind"] == "birthmark" and editor.kind == "birthmark"
        browser(editor, "select", index=1)
        browser(editor, "delete")
        assert [r["kind"] for r in editor.regions] == ["tattoo"] and editor.dirty
        browser(editor, "set_kind", kind="scar")
        assert "kind is one of" in editor.error and editor.kind == "birthmark"
        browser(editor, "delete", index=7)
        assert "no marked box number 7" in editor.error
        browser(editor, "no_such_action")
        assert "unknown action" in editor.error
        assert editor.regions[0]["box"] == list(TATTOO)


def test_zoom_and_redacted_preview_send_other_pixels(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        editor = RedactionEditor(v, ids[0])
        sent = capture(editor)
        editor.draw(list(TATTOO), "tattoo")
        browser(editor, "zoom")  # on the selected box, with context around it
        content, buffers = sent[-1]
        x, y, w, h = content["box"]
        assert x <= TATTOO[0] and y <= TATTOO[1] and x + w >= TATTOO[0] + TATTOO[2] and editor.zoom_box == [x, y, w, h]
        zoomed = np.asarray(Image.open(io.BytesIO(buffers[0])))
        assert zoomed.shape[:2] == (h, w)  # full resolution
        browser(editor, "zoom")
        assert editor.zoom_box == [] and sent[-1][0]["box"] == [0, 0, 240, 160]
        browser(editor, "toggle_preview")
        assert editor.redacted_preview
        preview = np.asarray(Image.open(io.BytesIO(sent[-1][1][0])).convert("RGB")).astype(int)
        tx, ty, tw, th = TATTOO
        assert preview[ty + 2:ty + th - 2, tx + 2:tx + tw - 2].max() < 30      # the marked box is filled
        assert preview[15:45, 15:45].max() < 30                                 # the proposed face box too
        assert preview[120:150, 20:60].mean() > 100                             # elsewhere: the photo
        assert_state_is_clean(editor)


def test_a_proposed_box_is_dismissed_only_as_it_was_proposed_and_the_preview_leaves_it(photos, clock):
    """The weak "face" on the first photo is picked and dismissed; it stays fixed, and undoes cleanly."""
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        editor = RedactionEditor(v, ids[0])
        sent = capture(editor)
        browser(editor, "dismiss")
        assert "pick a proposed box first" in editor.error and editor.regions == []
        browser(editor, "pick")                       # Tab: the next proposed box
        assert editor.picked == 0 and "x dismisses it" in editor.status
        browser(editor, "dismiss")
        assert editor.regions == [{"kind": "face", "box": [10, 10, 40, 40], "dismissed": True}]
        browser(editor, "set_box", index=0, box=[0, 0, 80, 80])
        assert "cannot be moved" in editor.error and editor.regions[0]["box"] == [10, 10, 40, 40]
        browser(editor, "set_kind", kind="tattoo", index=0)
        assert "cannot be given another kind" in editor.error and editor.regions[0]["kind"] == "face"
        browser(editor, "toggle_preview")
        preview = np.asarray(Image.open(io.BytesIO(sent[-1][1][0])).convert("RGB")).astype(int)
        assert preview[15:45, 15:45].mean() > 100     # left visible in the preview
        browser(editor, "dismiss", index=0)           # again: hidden again
        assert editor.regions == []
        preview = np.asarray(Image.open(io.BytesIO(sent[-1][1][0])).convert("RGB")).astype(int)
        assert preview[15:45, 15:45].max() < 30
        browser(editor, "dismiss", index=0)
        browser(editor, "approve")
        review = v.review(ids[0])
    assert [(r["kind"], r["box"], r.get("dismissed")) for r in review.regions] == [("face", [10, 10, 40, 40], True)]
    assert review.state == "approved"


def test_approve_saves_one_version_calls_back_and_moves_on(photos, clock):
    path, ids = photos
    saved = []
    with open_as(path, "analyst", clock) as v:
        editor = RedactionEditor(v, ids)
        editor.on_save(saved.append)
        capture(editor)
        editor.draw(list(TATTOO), "tattoo")
        browser(editor, "approve", reason="")
        assert editor.error == "" and editor.index == 1 and editor.photo_id == ids[1]
        (review,) = saved
        assert review["state"] == "approved" and review["version"] == 1 and review["reviewed_by"] == "ana"
        assert [(r["kind"], r["box"]) for r in review["regions"]] == [("tattoo", list(TATTOO))]
        browser(editor, "reject", reason="")
        assert "say why" in editor.error and len(saved) == 1
        editor.draw([1, 1, 10, 10], "text")
        browser(editor, "previous")  # unsaved marks become a draft, not lost
        assert editor.photo_id == ids[0]
        assert v.review(ids[1]).state == "in_review" and v.review(ids[1]).regions[0]["kind"] == "text"
        browser(editor, "next")
        browser(editor, "reject", reason="a name on the drape is not covered")
        assert v.review(ids[1]).state == "rejected" and v.review(ids[1]).reason.startswith("a name")
    with open_as(path, "admin", clock) as v:
        assert v.manual_regions([ids[0]])[ids[0]] == [{"kind": "tattoo", "box": list(TATTOO), "score": 1.0,
                                                       "detector": "manual"}]


def test_two_editors_on_one_photo_the_later_save_is_refused_and_kept(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as ana, open_as(path, "clinician", clock) as cli:
        first, second = RedactionEditor(ana, ids[2]), RedactionEditor(cli, ids[2])
        first.draw(list(TATTOO), "tattoo")
        first.approve()
        second.draw([0, 0, 30, 30], "face")
        second.approve()
        assert "saved by someone else" in second.error and "ana" in second.error
        assert second.conflict["version"] == 1 and second.conflict["changes"][0]["reviewed_by"] == "ana"
        assert second.regions == [{"kind": "face", "box": [0, 0, 30, 30]}]  # nothing lost
        assert cli.review(ids[2]).regions[0]["kind"] == "tattoo"            # nothing overwritten
        browser(second, "keep_mine")
        browser(second, "approve")
        assert second.error == "" and cli.review(ids[2]).version == 2
        assert [r["kind"] for r in cli.review(ids[2]).regions] == ["face"]
        first.draw([5, 5, 5, 5], "other")
        first.save()
        browser(first, "load_theirs")  # no conflict pending: just loads the newest
        assert first.version == 2


def test_a_withdrawal_while_the_editor_is_open_blocks_approval(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        editor = RedactionEditor(v, ids[0])
        editor.draw(list(TATTOO), "tattoo")
        with open_as(path, "clinician", clock) as cli:
            cli.withdraw_consent("MRN-0001")
        clock.moment += timedelta(minutes=1)
        browser(editor, "approve")
        assert "withdrew consent" in editor.error
        assert editor.regions[0]["box"] == list(TATTOO) and v.review(ids[0]).version == 0


@pytest.mark.parametrize("role", ["researcher", "educator", "photographer"])
def test_roles_that_do_not_review_are_told_what_they_may_do(photos, clock, role):
    path, ids = photos
    with open_as(path, role, clock) as v:
        editor = RedactionEditor(v, ids)
        sent = capture(editor)
        assert not editor.can_review and sent == []  # no pixels at all
        assert f"the {role} role cannot review redactions" in editor.error
        assert "it may:" in editor.status
        browser(editor, "approve")
        browser(editor, "draw", box=[1, 1, 5, 5])
        assert "cannot review redactions" in editor.error
        queue = ReviewQueue(v)
        assert not queue.can_review and "cannot review redactions" in queue.error
    with open_as(path, "admin", clock) as v:
        assert v.review_history().empty


# --- the gallery ------------------------------------------------------------------------


def test_gallery_pages_filters_and_selects(photos, clock):
    path, ids = photos
    picked = []
    with open_as(path, "analyst", clock) as v:
        gallery = Gallery(v, purpose="research", page_size=2)
        gallery.on_select(picked.append)
        sent = capture(gallery)
        assert gallery.mode == "originals" and gallery.total == 3 and gallery.pages == 2
        content, buffers = sent[-1]
        assert content["type"] == "thumbs" and len(content["ids"]) == 2 == len(buffers)
        assert all(Image.open(io.BytesIO(b)).format == "JPEG" for b in buffers)
        browser(gallery, "next_page")
        assert gallery.page == 1 and len(gallery.items) == 1 and len(sent[-1][1]) == 1
        gallery.set_state({"filters": {"body_site": "knee"}})
        assert gallery.total == 1 and gallery.page == 0 and gallery.items[0]["photo_id"] == ids[1]
        browser(gallery, "set_filters", body_site=None, date_from="June 1st")
        assert "YYYY-MM-DD" in gallery.error and gallery.total == 1
        browser(gallery, "set_filters", body_site=None, date_from=None)
        assert gallery.total == 3
        browser(gallery, "toggle", photo_id=ids[2])
        browser(gallery, "toggle", photo_id=ids[0])
        selection = gallery.selection()
        assert list(selection["photo_id"]) == [ids[2], ids[0]] and "patient_name" not in selection
        assert list(picked[-1]["photo_id"]) == [ids[2], ids[0]]
        browser(gallery, "toggle", photo_id="nope")
        assert "not in the gallery" in gallery.error
        gallery.set_state({"page": 5})
        assert gallery.page == 0 and "pages" in gallery.error
        assert_state_is_clean(gallery)


def test_gallery_pages_cost_one_audited_read_each_and_nothing_when_seen_again(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        gallery = Gallery(v, purpose="research", page_size=1)
        reads = lambda: int((v.audit_records()["action"] == "decrypt_previews").sum())  # noqa: E731
        queries = lambda: int((v.audit_records()["action"] == "query").sum())  # noqa: E731
        first, asked = reads(), queries()
        gallery.next_page()
        gallery.next_page()
        assert reads() == first + 2  # one read per new page, of that page's thumbnails only
        gallery.previous_page()
        gallery.previous_page()
        assert reads() == first + 2 and gallery.page == 0  # pages seen are not read again
        gallery.set_filters(body_site="forearm")
        assert queries() == asked  # filters and pages work on the one query the gallery made


def test_gallery_for_a_researcher_shows_only_approved_verified_deidentified_previews(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        v.set_review_state(ids[2], "approved")   # verified
        v.set_review_state(ids[1], "approved")   # not verified
    with open_as(path, "researcher", clock) as v:
        gallery = Gallery(v, purpose="research")
        sent = capture(gallery)
        assert gallery.mode == "deidentified" and "de-identified previews only" in gallery.notice
        content, buffers = sent[-1]
        assert content["ids"] == [ids[2]] and len(buffers) == 1
        shown = {item["photo_id"]: item["shown"] for item in gallery.items}
        assert shown == {ids[0]: False, ids[1]: False, ids[2]: True}
        assert_state_is_clean(gallery)
    with open_as(path, "researcher", clock) as v:
        gallery = Gallery(v, purpose="marketing")  # said in the widget, not raised
        assert "not a consent purpose" in gallery.error and gallery.items == []


# --- the review queue ------------------------------------------------------------------


def test_the_queue_puts_the_riskiest_first_and_records_decisions(photos, clock):
    path, ids = photos
    decisions = []
    with open_as(path, "analyst", clock) as v:
        queue = ReviewQueue(v, second_share=0.0)
        queue.on_decision(decisions.append)
        sent = capture(queue)
        order = queue.photo_ids()
        assert order[:2] == [ids[1], ids[0]]  # failed verification (6), then a weak face box (5)
        assert "output failed verification" in queue.items[0]["reasons"]
        assert any("low-confidence face" in r for r in queue.items[1]["reasons"])
        assert {c["slot"] for c, _ in sent} == {"original", "redacted"} and all(len(b) == 1 for _, b in sent)
        browser(queue, "send_back", reason="")
        assert "say why" in queue.error
        browser(queue, "send_back", reason="text box too small")
        assert v.review(ids[1]).state == "rejected" and decisions[-1]["reason"] == "text box too small"
        assert queue.photo_id == ids[0]
        browser(queue, "accept")
        assert v.review(ids[0]).state == "approved" and len(decisions) == 2
        assert_state_is_clean(queue)


def test_second_blind_review_and_the_figures(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        for photo_id in ids:
            v.save_review(photo_id, based_on=0, state="approved", regions=[{"kind": "tattoo", "box": list(TATTOO)}])
            clock.moment += timedelta(seconds=40)
        # the approver never gets their own photos back
        assert risk_queue(v, second_share=1.0).empty
    with open_as(path, "clinician", clock) as v:
        queue = ReviewQueue(v, second_share=1.0)
        assert sorted(queue.photo_ids()) == sorted(ids)
        assert all(item["state"] == "second review" and item["second_review"] for item in queue.items)
        assert "ana" not in json.dumps(queue.items)  # blind: who approved is not shown
        queue.accept()
        queue.send_back("the tattoo box misses its left edge")
        figures = queue.figures
        assert figures["compared"] == 2 and figures["agreement"] == 0.5
        assert figures["seconds_per_photo"] == 40.0
        queue.set_state({"second_share": 0.0})
        assert [item["state"] for item in queue.items] == ["rejected"]  # only the one sent back
    with open_as(path, "admin", clock) as v:
        history = v.review_history()
        history.loc[len(history)] = [ids[0], 9, "approved", None, [], "ada", "2026-06-01T13:00:00+00:00"]
        assert review_figures(v.review_history())["corrections"] == {}
        v.save_review(ids[2], based_on=v.review(ids[2]).version, state="approved",
                      regions=[{"kind": "face", "box": [0, 0, 9, 9]}])
        assert review_figures(v.review_history())["corrections"] == {
            "face": {"added": 1, "removed": 0}, "tattoo": {"added": 0, "removed": 1}}


def test_a_blind_second_review_sees_neither_the_first_regions_nor_decision_and_uncovers_nothing(photos, clock):
    path, ids = photos
    with open_as(path, "analyst", clock) as v:
        for photo_id in ids[:2]:
            v.save_review(photo_id, based_on=0, state="approved", reason="fine",
                          regions=[{"kind": "tattoo", "box": list(TATTOO)}])
    with open_as(path, "clinician", clock) as v:
        queue = ReviewQueue(v, second_share=1.0)
        assert sorted(queue.photo_ids(second_review=True)) == sorted(ids[:2])
        sent = capture(queue)
        redacted = {c["slot"]: b for c, b in sent}["redacted"][0]
        pixels = np.asarray(Image.open(io.BytesIO(redacted)).convert("RGB")).astype(int)
        x, y, w, h = TATTOO
        assert pixels[y + 6:y + h - 6, x + 6:x + w - 6, 2].mean() > 80  # the first reviewer's box is not shown
        editor = RedactionEditor(v, ids[:2], blind=True)
        assert editor.regions == [] and editor.state == "second review" and editor.reason == ""
        assert_state_is_clean(editor)
        assert "ana" not in json.dumps(editor.get_state())
        editor.draw([x - 2, y + 1, w + 2, h], "tattoo")   # the same tattoo, drawn by another hand
        editor.approve()
        editor.approve()                                  # the second photo: nothing of its own marked
        first, second = v.review(ids[0]), v.review(ids[1])
        figures = review_figures(v.review_history())
    # nothing the first reviewer hid was uncovered
    assert {(r["author"], r["kind"]) for r in first.regions} == {("ana", "tattoo"), ("cli", "tattoo")}
    assert [(r["author"], tuple(r["box"])) for r in second.regions] == [("ana", TATTOO)]
    # the regions agree on the first photo, not at all on the second
    assert figures["region_pairs"] == 2 and figures["region_agreement"] == 0.5
    assert figures["compared"] == 2 and figures["agreement"] == 1.0


# --- the consent form -------------------------------------------------------------------


def test_the_consent_form_records_grants_and_withdrawals_and_keeps_no_identifier(photos, clock):
    path, ids = photos
    recorded = []
    with open_as(path, "clinician", clock) as v:
        form = ConsentForm(v)
        form.on_record(recorded.append)
        browser(form, "grant", buffers=[b"%PDF-1.4 scanned form"], patient="MRN-0009",
                scopes=["research", "education"], expires="2027-01-31", name="ZZTEST Beta",
                birth_date="1980-02-03", identifiable=False)
        assert form.error == "" and recorded[-1]["action"] == "grant" and recorded[-1]["form"]
        ref = form.last["patient_ref"]
        assert v.consent_status(ref, "research") and not v.consent_status(ref, "publication")
        assert form.history[0]["expires"] == "2027-01-31" and form.history[0]["has_form"]
        assert v.patient_identity(ref)["name"] == "ZZTEST Beta"
        browser(form, "withdraw", patient="MRN-0009", scopes=["research"])
        assert not v.consent_status(ref, "research") and v.consent_status(ref, "education")
        browser(form, "grant", patient="MRN-0009", scopes=["marketing"])
        assert "choose at least one scope" in form.error
        browser(form, "grant", patient="", scopes=["care"])
        assert "patient's id" in form.error
        assert_state_is_clean(form)
    with open_as(path, "researcher", clock) as v:
        form = ConsentForm(v)
        assert not form.can_record and "cannot record consent" in form.error
        browser(form, "grant", patient="MRN-0010", scopes=["care"])
        assert "cannot record consent" in form.error


def test_a_photo_that_may_not_be_shown_is_skipped_with_a_message(photos, clock):
    path, ids = photos
    with open_as(path, "admin", clock) as v:
        other = v.add_photo(tattoo_photo(9), patient="MRN-0002", body_site="knee").photo_id
        v.withdraw_consent("MRN-0002")
    clock.moment += timedelta(minutes=1)
    with open_as(path, "analyst", clock) as v:
        editor = RedactionEditor(v, [ids[0], other, ids[2]])
        sent = capture(editor)
        editor.draw(list(TATTOO), "tattoo")
        browser(editor, "next")  # the draft is saved, the next photo refused for consent
        assert "not consented for care" in editor.error and editor.photo_id == other
        assert editor.regions == [] and editor.proposed == [] and sent[-1][1] == []  # nothing of it shown
        assert v.review(ids[0]).regions[0]["box"] == list(TATTOO)
        browser(editor, "approve")
        assert "no photo is open" in editor.error and v.review(other).version == 0
        browser(editor, "next")
        assert editor.error == "" and editor.photo_id == ids[2] and len(sent[-1][1]) == 1
