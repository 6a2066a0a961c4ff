"""Hard cases pinned from the 500-phantom evaluations (seeds 2026-2032): each once failed a target or verification.

Each phantom is regenerated alone (``one_phantom``), de-identified with the
default policy, and checked against its ground truth the way ``workbench
evaluate`` checks it: an identifying object counts as hidden when the
redacted regions cover at least 80% of it.
"""

from __future__ import annotations

import pytest

from workbench import deid
from workbench.deid._regions import coverage
from workbench.evaluate import HIDDEN_COVERAGE
from workbench.phantoms import one_phantom

SET = {"count": 500, "seed": 2026}


def _run(number: int, seed: int = SET["seed"]):
    data, truth = one_phantom(number, count=SET["count"], seed=seed)
    result = deid.deidentify(data)
    boxes = [r.box for r in result.regions]
    return truth, result, boxes


def _hidden(obj: dict, boxes) -> bool:
    return coverage(tuple(obj["box"]), boxes) >= HIDDEN_COVERAGE


def _finding_stays_visible(truth: dict, result, boxes, finding: str) -> None:
    """No region on nothing identifying overlaps a ``finding`` of the phantom, and every identifying object is hidden."""
    from workbench.evaluate import FINDING_OVERLAP, _on_target, _overlap

    findings = [o for o in truth["objects"] if o["kind"] == "finding" and o["finding"] == finding]
    false = [r.box for r in result.regions if not _on_target(r.box, truth["objects"])]
    assert findings and not any(_overlap(o["box"], box) >= FINDING_OVERLAP for o in findings for box in false), false
    assert all(_hidden(o, boxes) for o in truth["objects"] if o["identifying"] and o["height"] >= 20)


@pytest.mark.parametrize("number, kind, box", [
    (120, "face", [542, 688, 22, 22]),      # 22 px face, 1600 px frame: needs the enlarged fine pass
    (341, "face", [1231, 514, 20, 20]),     # 20 px face, turned 23 degrees
    (494, "face", [0, 250, 23, 55]),        # face cut by the left edge: its box is completed inward
    (169, "text", [1244, 619, 221, 14]),    # name line ending beside a Data Matrix
    (92, "text", [1147, 311, 267, 84]),     # tilted name line above a Code128
])
def test_hard_object_is_hidden(number, kind, box):
    truth, result, boxes = _run(number)
    (obj,) = [o for o in truth["objects"] if o["box"] == box and o["kind"] == kind]
    assert obj["identifying"]
    assert _hidden(obj, boxes), (kind, box, boxes)


@pytest.mark.parametrize("number, box", [
    (28, [69, 0, 92, 48]),       # 97 px face cut at the top: only mouth and chin in the frame
    (481, [175, 0, 260, 140]),   # 272 px face cut at the top: its box stops 7 px below the edge
])
def test_face_cut_by_the_top_edge_is_hidden(number, box):
    # held-out set (seed 2027): both were missed until the fine pass padded
    # the frame's edges and boxes near an edge counted as cut by it
    truth, result, boxes = _run(number, seed=2027)
    (obj,) = [o for o in truth["objects"] if o["box"] == box and o["kind"] == "face"]
    assert obj["identifying"] and obj["visible"] < 1
    assert _hidden(obj, boxes), (box, boxes)


@pytest.mark.parametrize("number, seed, box", [
    (45, 2032, [596, 0, 20, 12]),       # 20 px face cut at the top, 12 px in view
    (71, 2029, [30, 0, 23, 11]),        # 22 px face turned 25 degrees, cut at the top
    (90, 2029, [3629, 0, 23, 17]),      # 24 px face cut at the top of a 20 MP frame
    (304, 2032, [31, 689, 25, 25]),     # 24 px face turned 24 degrees
    (424, 2032, [249, 1007, 26, 26]),   # 25 px face turned 21 degrees
    (56, 2035, [1442, 857, 27, 28]),    # 27 px face turned 27 degrees, boxed at 0.16: confirmed turned
    (122, 2035, [271, 963, 24, 24]),    # 23 px face turned 30 degrees, boxed at 0.17: confirmed turned
])
def test_small_face_cut_by_the_edge_or_turned_is_hidden(number, seed, box):
    # held-out sets: missed until the edge pass and the turned second look;
    # the two of seed 2035 are weak boxes that the frontal cascade confirms
    # only turned (_faces._confirmed must not drop them)
    truth, result, boxes = _run(number, seed=seed)
    (obj,) = [o for o in truth["objects"] if o["box"] == box and o["kind"] == "face"]
    assert obj["identifying"] and 20 <= obj["height"] < 40
    assert _hidden(obj, boxes), (box, boxes)


@pytest.mark.parametrize("number, seed, box", [
    (394, 2038, [1389, 270, 52, 52]),  # a pale face at 0.28 that the second look dropped; the cascade finds it in 12 looks
    (308, 2038, [505, 0, 70, 32]),     # cut at the top, its box 3.7 px below the edge: taken for a wide, weak whole face
    (333, 2038, [3193, 159, 93, 93]),  # 20 MP, turned 16 degrees: 0.10 upright in its pass, 0.39 turned
    (322, 2041, [552, 67, 50, 50]),    # a grey face with glasses at 0.28 that the second look dropped; 11 looks
    (176, 2052, [76, 717, 61, 61]),    # boxed at 0.18, 0.22 upright alone, 0.51 turned; 7 looks
])
def test_face_of_40_px_or_more_missed_on_a_fresh_set_is_hidden(number, seed, box):
    # seeds 2038, 2041 and 2052 (fresh): the faces of 40 px or more they left visible
    truth, result, boxes = _run(number, seed=seed)
    (obj,) = [o for o in truth["objects"] if o["box"] == box and o["kind"] == "face"]
    assert obj["identifying"] and obj["height"] >= 40
    assert _hidden(obj, boxes), (box, boxes)


@pytest.mark.parametrize("number, seed, box", [
    (262, 2044, [1293, 200, 40, 40]),  # boxed 29x36 at 0.43, 1 cascade look; CenterFace alone: 0.58
    (158, 2043, [857, 865, 35, 35]),   # boxed at 0.57, 1 cascade look; CenterFace alone: 0.66
])
def test_a_face_the_cascade_misses_stays_when_centerface_alone_finds_it(number, seed, box):
    # seeds 2043 and 2044 (fresh): weak boxes on real faces that the cascade check dropped
    truth, result, boxes = _run(number, seed=seed)
    (obj,) = [o for o in truth["objects"] if o["box"] == box and o["kind"] == "face"]
    assert obj["identifying"]
    assert _hidden(obj, boxes), (box, boxes)


def test_small_code128_in_a_20mp_frame_is_hidden():
    # 3 px modules, read from the pipeline's half-size copy: 1.5 px there
    truth, result, boxes = _run(329)
    assert truth["width"] == 5472
    codes = [o for o in truth["objects"] if o["kind"] == "barcode"]
    assert codes and all(_hidden(o, boxes) for o in codes)


@pytest.mark.parametrize("number, seed, numbered", [
    (450, 2026, True), (77, 2026, True),  # tick rows read as letters ("wlanuuuu...", "Laddaud")
    (261, 2028, True),                    # numbers 1-12 cut by PP-OCR's box: read as "4101994957"
    (493, 2028, False),                   # a 198 px piece whose strokes repeat only in its tick band
    (122, 2033, True),                    # bold oblique numbers turned upside down by the classifier
    (345, 2038, True),                    # 1-14 read as one line with "12" as "2" (7.9% hidden)
])
def test_ruler_on_a_clean_photo_stays_visible(number, seed, numbered):
    truth, result, boxes = _run(number, seed=seed)
    assert truth["clean"]
    # Numbered rulers are in the ground truth as text that identifies no one.
    rulers = [o for o in truth["objects"] if o["kind"] == "text" and not o["identifying"]]
    assert bool(rulers) == numbered, "the phantom should hold the ruler it was pinned for"
    if not numbered:  # it was the only thing hidden
        assert boxes == []
    area = sum(w * h for _, _, w, h in boxes) / (truth["width"] * truth["height"])
    assert area <= 0.02, area


@pytest.mark.parametrize("number", [
    461,  # slough in a wound read as two CJK characters at 0.55: 14.9% hidden
    175,  # a ruler's end read as "lulul" (0.64) after its "13"
])
def test_nothing_is_hidden_on_these_clean_photos_of_seed_2039(number):
    # seed 2039 (fresh): measured, then these two were fixed; a set generated
    # after the fix has not measured them
    truth, result, boxes = _run(number, seed=2039)
    assert truth["clean"] and boxes == [], boxes


def test_the_bare_start_of_a_ruler_stays_visible_though_its_box_reaches_the_skin():
    # seed 2038 (fresh): PP-OCR boxed the start of a ruler, before its
    # numbers, as a line reaching a row onto the skin above it; read as "mm"
    # at 0.63 and hidden, on a clean photo (nothing else there is hidden)
    truth, result, boxes = _run(362, seed=2038)
    assert truth["clean"] and boxes == []


def test_numbers_continuing_a_rulers_count_stay_visible():
    # seed 2037 (fresh): a nevus over the ruler's edge broke the row of ticks
    # above its "9 10", PP-OCR found no "6 7 8", and the "9 10", read as a
    # line of its own at 0.97 beside "1234 5", was hidden on a clean photo,
    # half over the nevus
    truth, result, boxes = _run(389, seed=2037)
    assert truth["clean"]
    (ruler,) = [o for o in truth["objects"] if o["kind"] == "text" and not o["identifying"]]
    assert not any(coverage(tuple(ruler["box"]), [box]) > 0 for box in boxes), boxes


@pytest.mark.parametrize("number, box", [
    (164, [466, 717, 278, 134]),     # tilted Code128 beside an upright Data Matrix on one label
    (417, [2954, 1321, 1376, 605]),  # 20 MP: tilted Code128 larger than the re-read tiles
])
def test_tilted_code128_is_hidden(number, box):
    # seed 2028 (first evaluated after session 3): both were left readable
    truth, result, boxes = _run(number, seed=2028)
    (obj,) = [o for o in truth["objects"] if o["box"] == box and o["kind"] == "barcode"]
    assert obj["identifying"] and obj["symbology"] == "code128"
    assert _hidden(obj, boxes), (box, boxes)


def test_a_small_data_matrix_beside_a_larger_one_is_hidden():
    # seed 2038 (fresh): a sticker's 24 px Data Matrix lay in one code-like
    # area with a label's larger one, which decoded unenlarged; the area was
    # not read enlarged, and the sticker's code was left readable
    truth, result, boxes = _run(290, seed=2038)
    codes = [o for o in truth["objects"] if o["kind"] == "barcode"]
    assert len(codes) == 2 and all(_hidden(o, boxes) for o in codes), boxes


def test_tilted_name_above_a_code128_in_a_20mp_frame_is_hidden():
    # seed 2034 (fresh): missed by the whole frame's text pass, and the
    # code's upright box, blanked for the second look, covered its start;
    # the output verified with the name readable
    truth, result, boxes = _run(248, seed=2034)
    (obj,) = [o for o in truth["objects"] if o["box"] == [905, 1490, 698, 191]]
    assert obj["identifying"] and truth["width"] == 5472
    assert _hidden(obj, boxes), boxes


def test_wristband_code128_beside_a_decoded_label_code_is_hidden():
    # seed 2029: the area holding both leaned 1.9 degrees overall (under the
    # 2-degree turn), the label's upright code decoded, the wristband's,
    # tilted 4 degrees, did not until the decoded code was blanked
    truth, result, boxes = _run(404, seed=2029)
    codes = [o for o in truth["objects"] if o["kind"] == "barcode"]
    assert len(codes) == 2 and all(_hidden(o, boxes) for o in codes), boxes


@pytest.mark.parametrize("number, seed", [(77, 2029), (379, 2029)])
def test_no_frame_sized_face_on_a_clean_photo(number, seed):
    # CenterFace's coarse pass boxed most of these clean frames as a face at 0.13-0.14
    truth, result, boxes = _run(number, seed=seed)
    assert truth["clean"]
    assert [r for r in result.regions if r.kind == "face"] == []


def test_slough_read_as_two_characters_stays_visible_on_a_clean_photo():
    # seed 2029: a lesion's slough boxed as a 234x239 px "line" and read as "at" (15.6% hidden)
    truth, result, boxes = _run(180, seed=2029)
    assert truth["clean"]
    area = sum(w * h for _, _, w, h in boxes) / (truth["width"] * truth["height"])
    assert area <= 0.02, (area, boxes)


@pytest.mark.parametrize("number", [123, 236, 314])
def test_ruler_numbers_beside_a_redaction_do_not_fail_verification(number):
    # seed 2030: a ruler number read alone was hidden, and verification then
    # found the next numbers beside the fill and failed the output
    truth, result, boxes = _run(number, seed=2030)
    assert result.verified, result.warnings
    rulers = [o for o in truth["objects"] if o["kind"] == "text" and not o["identifying"]]
    assert rulers and not any(coverage(tuple(o["box"]), boxes) > 0 for o in rulers), boxes


@pytest.mark.parametrize("number, finding", [
    (43, "blob"),     # clean: an 84x90 px "face" at 0.16 on a dark blob
    (402, "blob"),    # a 117x138 px "face" at 0.25 on a blob, beside real faces
    (25, "blob"),     # clean: a 20x25 px "face" at 0.17 on a blob's edge
    (170, "nevus"),   # a 28x30 px "face" at 0.18 on a naevus, beside a real face
    (465, "wound"),   # clean: a 45x46 px "face" at 0.32 on a wound
    (265, "blob"),    # a 167x139 px "face" at 0.53 on a blob, beside a real face cut by the edge
])
def test_a_weak_face_box_on_a_lesion_does_not_hide_the_finding(number, finding):
    # seed 2035: boxes on lesions at 0.15-0.3 that do not hold up when the
    # box is looked at alone (_faces._second_look, the first two), and boxes
    # under 0.6 in which the LBP cascade finds no face (_faces._confirmed,
    # the rest: the second look keeps small boxes and those over 0.3); the
    # finding stays visible, and every identifying object is still hidden
    truth, result, boxes = _run(number, seed=2035)
    _finding_stays_visible(truth, result, boxes, finding)


@pytest.mark.parametrize("number", [
    132,   # clean: a 58x60 px "face" at 0.16 on slough
    380,   # a 47x51 px "face" at 0.27, found only by verification beside a redacted label
    434,   # a 51x51 px "face" at 0.20 on slough, beside a real face
])
def test_slough_in_a_wound_taken_for_a_face_stays_visible_and_goes_to_review(number):
    # seed 2040: weak face boxes on yellow slough in a red wound bed that
    # passed the second look and the cascade check (_faces._like_slough):
    # left visible, noted, and the photo goes to a person
    from workbench.deid._regions import SLOUGH_MARK

    truth, result, boxes = _run(number, seed=2040)
    _finding_stays_visible(truth, result, boxes, "wound")
    assert any(SLOUGH_MARK in w for w in result.warnings), result.warnings
    assert result.review_reasons and result.verified
    # a reviewer who judges the box a face marks it: then it is hidden, and no longer noted
    from workbench.deid._regions import slough_boxes

    (left,) = slough_boxes(result.warnings)[:1]
    data, _ = one_phantom(number, count=SET["count"], seed=2040)
    marked = deid.deidentify(data, regions=[deid.Region("face", tuple(left["box"]))])
    assert not any(SLOUGH_MARK in w for w in marked.warnings), marked.warnings
    assert coverage(tuple(left["box"]), [r.box for r in marked.regions]) == 1.0


@pytest.mark.parametrize("seed, number", [
    (2055, 406),  # a 55 px "face" at 0.37 in a wound, 0.37 slough inside, its ring 0.84 wound red
    (2056, 297),  # a 96 px "face" at 0.31 in a wound, no slough inside, its ring 0.93 wound red
])
def test_a_weak_face_box_lying_in_a_wound_bed_stays_visible_and_goes_to_review(seed, number):
    # fresh seeds 2055 and 2056: the only findings a face box still hid;
    # the box held too little slough for the slough test, but lay in wound
    # red (_faces._WOUND_ONLY_SHARE): left visible, noted, and reviewed
    from workbench.deid._regions import SLOUGH_MARK

    truth, result, boxes = _run(number, seed=seed)
    _finding_stays_visible(truth, result, boxes, "wound")
    assert any(SLOUGH_MARK in w for w in result.warnings), result.warnings
    assert result.review_reasons and result.verified


def test_a_tick_row_beside_a_redacted_label_is_left_alone_by_verification():
    # seed 2040: verification's window around the label read the ruler's
    # tick row with the fill's edge ("■mmmmmmmmmmmmmmm" at 0.60) and hid it
    # over the erythema; "■" is no letter, so the row is the ruler's ticks
    from workbench.evaluate import _on_target

    truth, result, boxes = _run(385, seed=2040)
    assert [r.box for r in result.regions if not _on_target(r.box, truth["objects"])] == []
    assert all(_hidden(o, boxes) for o in truth["objects"] if o["identifying"] and o["height"] >= 20)


def test_a_weak_box_cut_by_a_verification_windows_side_is_checked_like_any_other():
    # seed 2040 (20 MP): verification's window around a real face cut a
    # cluster of moles at its side; taken for a face cut by the frame's
    # edge, the 343x432 px box at 0.22 skipped the second look and was
    # hidden over the moles
    from workbench.evaluate import _on_target

    truth, result, boxes = _run(209, seed=2040)
    assert [r.box for r in result.regions if not _on_target(r.box, truth["objects"])] == []
    assert result.verified
    assert all(_hidden(o, boxes) for o in truth["objects"] if o["identifying"] and o["height"] >= 20)


def test_wounds_boxed_as_one_line_and_read_as_two_digits_stay_visible():
    # seed 2041: two wounds and a mole boxed as one 869x810 px line, read as
    # "90" at 0.74; 80% of the photo was hidden and it went out unreviewed
    truth, result, boxes = _run(486, seed=2041)
    assert [r for r in result.regions if r.kind == "text"] == []
    assert all(_hidden(o, boxes) for o in truth["objects"] if o["identifying"])


def test_numbers_continuing_a_lone_ruler_number_stay_visible_on_a_clean_photo():
    # seed 2042: "11 12" read at 0.94 beside a "10" found by its ticks
    truth, result, boxes = _run(65, seed=2042)
    assert truth["clean"]
    assert boxes == []


def test_a_tilted_two_line_label_in_a_20mp_frame_is_hidden_and_its_finding_is_not():
    # seed 2045 (fresh): two 33-35 px bold italic lines tilted 10 degrees touch in
    # the detector's map; DB scored the L-shaped candidate 0.48 over its rectangle
    # and dropped it, and the name and birth date were left readable unreviewed
    truth, result, boxes = _run(298, seed=2045)
    label = [o for o in truth["objects"] if o["kind"] == "text" and o["identifying"] and o["box"][1] > 2600]
    assert len(label) == 2 and all(_hidden(o, boxes) for o in label), boxes
    findings = [o for o in truth["objects"] if o["kind"] == "finding"]
    assert findings and not any(coverage(tuple(o["box"]), boxes) > 0 for o in findings)


def test_a_code128_tilted_7_degrees_among_upright_texture_is_hidden():
    # seed 2045 (fresh): the code-like area around it averaged to a lean of 2.7
    # degrees, read turned by that the code did not decode; its own peak is 8
    truth, result, boxes = _run(335, seed=2045)
    (code,) = [o for o in truth["objects"] if o["kind"] == "barcode"]
    assert _hidden(code, boxes), (code["box"], boxes)


def test_a_rulers_numbers_read_run_together_stay_visible_over_a_scar():
    # seed 2045 (fresh): beyond the ruler's "1 2 3 4 5 6", its "10 11" was read
    # as "1011" in the window searched beside a sticker's code, hidden as text,
    # and the region lay over a scar: a finding hidden, and no review
    from workbench.evaluate import _findings_hidden, _on_target

    truth, result, boxes = _run(64, seed=2045)
    regions = [{"box": list(r.box), "on_target": _on_target(r.box, truth["objects"])} for r in result.regions]
    findings = [o for o in truth["objects"] if o["kind"] == "finding"]
    assert any(o["finding"] == "scar" for o in findings)
    assert _findings_hidden(regions, findings) == 0, regions
    identifying = [o for o in truth["objects"] if o["identifying"]]
    assert identifying and all(_hidden(o, boxes) for o in identifying)


def test_a_tick_row_cut_by_a_verification_window_is_judged_with_its_ruler():
    # seed 2047 (fresh): the window verification searched around a label ended
    # inside a ruler's tick row, above the numbers that make it a ruler; the
    # cut piece read at 0.36 as text and was hidden over an erythema
    from workbench.evaluate import _findings_hidden, _on_target

    truth, result, boxes = _run(59, seed=2047)
    regions = [{"box": list(r.box), "on_target": _on_target(r.box, truth["objects"])} for r in result.regions]
    assert [r for r in regions if not r["on_target"]] == []
    assert _findings_hidden(regions, [o for o in truth["objects"] if o["kind"] == "finding"]) == 0
    identifying = [o for o in truth["objects"] if o["identifying"] and o["height"] >= 20]
    assert identifying and all(_hidden(o, boxes) for o in identifying)
    assert result.verified


@pytest.mark.parametrize("number, finding", [
    (196, "wound"),  # a 107x130 px "face" at 0.31 on a wound: 0.07 at best alone, 6 cascade looks
    (255, "blob"),   # a 147x160 px "face" at 0.34 on a blob: 0.10 at best alone, 3 cascade looks
])
def test_a_face_box_over_0_3_on_a_lesion_that_fails_the_second_look_leaves_the_finding(number, finding):
    # seed 2049 (fresh): boxes scoring 0.3-0.6 were looked at only by the
    # cascade, which passed them; looked at alone, upright and turned
    # (_faces._SECOND_LOOK_MID), they do not hold up, and the finding stays visible
    truth, result, boxes = _run(number, seed=2049)
    _finding_stays_visible(truth, result, boxes, finding)


@pytest.mark.parametrize("number", [
    83,   # a wound and two blobs boxed as one tilted "line", read as two characters at 0.53 (_text._BLOB_ASPECT)
    335,  # slough in a wound boxed as a 127x104 px face at 0.67, one cascade look (_faces._CONFIRM_BELOW)
])
def test_a_clean_photo_of_fresh_seed_2051_keeps_its_findings_visible(number):
    # both hid findings on a clean photo and went out without a person
    truth, result, boxes = _run(number, seed=2051)
    assert truth["clean"] and [o for o in truth["objects"] if o["kind"] == "finding"]
    assert boxes == [] and result.verified and not result.review_reasons


def test_a_rulers_first_numbers_boxed_with_its_ticks_stay_visible_over_a_blob():
    # fresh seed 2052: "1 2" boxed with the tick row above, read as "12" at 0.89
    # beside the "8 10 11 12" read one by one, and hidden over a blob, unreviewed
    truth, result, boxes = _run(120, seed=2052)
    _finding_stays_visible(truth, result, boxes, "blob")
    (ruler,) = [o for o in truth["objects"] if o["kind"] == "text" and not o["identifying"]]
    assert not any(coverage(tuple(ruler["box"]), [box]) > 0 for box in boxes), boxes


def test_a_20mp_label_of_two_lines_boxed_as_one_and_read_as_one_character_is_hidden():
    # fresh seed 2054: the name and record number (35 and 34 px) were boxed as one
    # 1032x176 px line in the detector's copy, read as "N" at 0.53 and dropped
    truth, result, boxes = _run(164, seed=2054)
    assert truth["width"] == 5472
    label = [o for o in truth["objects"] if o["kind"] == "text" and o["carrier"] == "label"]
    assert len(label) == 2 and all(o["identifying"] for o in label)
    assert all(_hidden(o, boxes) for o in label), boxes


@pytest.mark.parametrize("number, seed", [
    (145, 2053),  # violet marker on a blue drape, 14 px, tilted: 20 grey levels from its ground
    (232, 2052),  # black marker crossing a dark red blob in dim light, 11-14 px
])
def test_marker_ink_the_detector_misses_on_its_ground_is_found_with_the_ground_taken_away(number, seed):
    # both 1600 px; found by no pass at 1368 px (_text._FAINT_WINDOW) and left readable, unreviewed
    truth, result, boxes = _run(number, seed=seed)
    marker = [o for o in truth["objects"] if o["kind"] == "text" and o["carrier"] == "marker"]
    assert marker and all(o["identifying"] for o in marker)
    assert all(_hidden(o, boxes) for o in marker), boxes


def test_a_rulers_start_read_as_a_lone_two_digit_number_stays_visible_over_a_mole():
    # fresh seed 2055: "1 2", the tick row and a mole's edge boxed as one line,
    # read as "12" at 0.97 beside too few of the ruler's numbers, and hidden
    # over the mole and an erythema, unreviewed
    truth, result, boxes = _run(267, seed=2055)
    _finding_stays_visible(truth, result, boxes, "nevus")
    _finding_stays_visible(truth, result, boxes, "erythema")


def test_a_tick_row_read_with_a_1_above_a_rulers_numbers_stays_visible_over_a_scar():
    # seed 2057 (fresh): a ruler along the frame's top edge; its tick row, a
    # centimetre tick read as "1" ("[ll1ll" at 0.26), was no tick row, was
    # hidden over a scar, and sent the photo to review
    truth, result, boxes = _run(467, seed=2057)
    _finding_stays_visible(truth, result, boxes, "scar")
    assert not result.review_reasons, result.review_reasons


def test_ink_across_a_dark_naevus_is_hidden_whole_not_only_where_it_lies_on_skin():
    # seed 2058 (fresh): a name and a birth date written in ink across a dark
    # naevus; only the part on the skin was found, and "Name: ZZTE" and
    # "DOB: 1961-0" stayed legible: read on beyond the found part, it is whole
    truth, result, boxes = _run(69, seed=2058)
    identifying = [o for o in truth["objects"] if o["identifying"]]
    assert len(identifying) == 9 and all(_hidden(o, boxes) for o in identifying), boxes


def test_ink_over_a_wound_read_with_o_for_0_is_hidden_whole():
    # seed 2059 (fresh): "MRN: 1535047" and "D.O.B 3 Jan 1949" in violet ink
    # over a wound, found only as "MRN:" and "D.O.B"; read on, the next step
    # read "D.0.B" (a zero for the O) at 0.93, and "MRN:535047" at 0.82
    truth, result, boxes = _run(186, seed=2059)
    identifying = [o for o in truth["objects"] if o["identifying"]]
    assert identifying and all(_hidden(o, boxes) for o in identifying), boxes


def test_a_colour_checker_read_as_one_sign_repeated_stays_visible_on_a_clean_photo():
    # seed 2059 (fresh): a row of a colour checker's patches read as "日日日日"
    # at 0.80 and hidden, 4.1% of a clean photo
    truth, result, boxes = _run(110, seed=2059)
    assert truth["clean"] and boxes == []
