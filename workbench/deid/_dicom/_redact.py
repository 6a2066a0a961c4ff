"""DICOM frames through the pipeline: detect on what a reader sees, fill stored values, verify.

Each frame is shown in 8 bits as a reader would see it (windowed, or over
its own range; see :func:`._pixels.display`) and the policy's detectors run
on that; what they find, and the regions a person marked, are filled in the
frame's stored values (:func:`._pixels.fill_value`), so a 16-bit CT slice
stays a 16-bit CT slice. The header goes through the confidentiality
profile. Verification reads the written file back: the whole dataset
against the profile, every region's stored values, and the detectors again
around every region of every frame.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from ...errors import InvalidInput, UnsupportedFormat
from .._pipeline import (
    MORE_PASSES,
    DeidResult,
    _Dismissals,
    _detect_around,
    _detection_copy,
    _hide_more,
    detect,
    grow,
    metadata_problems,
)
from .._policy import SECOND_PASS_NOTE, Policy
from .._pseudonym import Pseudonyms
from .._regions import HIDDEN_COVERAGE, SLOUGH_LABEL, Region, coverage
from . import _pixels, deidentify_dataset, read_dicom, write_dicom


#: Why a DICOM output's redactions are solid fills whatever the policy's style.
DICOM_FILL_NOTE = (
    "DICOM redactions are solid fills of the frame's darkest stored value (or the fill colour): "
    "a mosaic or blur has no meaning in stored values of more than 8 bits"
)


def deidentify_frames(dcm, policy: Policy, manual: list[Region], pseudonyms,
                      dismissed: Sequence[Region] = ()) -> DeidResult:
    """De-identify every frame of a decoded DICOM image and its header; verify the file written.

    ``dcm`` is a :class:`DicomImage`; ``manual`` regions are hidden in every
    frame, and a detection a person ``dismissed`` in review is left visible
    (as ``deid.deidentify`` does for a photo). What is found in one frame
    is hidden in every frame: burned-in text sits where the modality writes
    it (a cine loop's name line moves by a few pixels at most), and the
    result's regions are then true of every frame, so ``deid.verify`` can
    check the file on its own. Returns the pipeline's :class:`DeidResult`
    (``ext`` ``dcm``).
    """
    frames = dcm.frames.copy()
    count, height, width = (int(v) for v in frames.shape[:3])
    notes: list[str] = []
    if policy.style != "fill":
        notes.append(DICOM_FILL_NOTE)
    keep = _Dismissals(list(dismissed), policy, width, height)
    found: list[list[Region]] = []
    for index in range(count):
        first = []
        if policy.detectors:
            small, scale = _detection_copy(Image.fromarray(dcm.display(index)))
            first, left_visible = keep.split(detect(small, policy, scale=scale), manual)
            notes += [note for note in left_visible if note not in notes]
        found.append(first)
    shared = _distinct(grow([r for first in found for r in first] + manual, policy, width, height))
    hidden = [shared] * count  # one list: every frame hides every region
    # what a redaction writes: decided once, from the frame as decoded
    fills = [_pixels.fill_value(frames[i], dcm.dataset, tuple(policy.fill)) for i in range(count)]
    text_redacted = "text" in policy.detectors

    def write() -> bytes:
        for index in range(count):
            _pixels.fill(frames[index], [r.box for r in hidden[index]], fills[index])
        return _rebuild(dcm, frames, policy, pseudonyms, text_redacted)

    data = write()
    problems, leftover = _verify(data, hidden, found, fills, policy, keep)
    for _ in range(MORE_PASSES):
        more = _distinct(_hide_more([r for left in leftover for r in left], policy, width, height))
        if not more:
            break
        shared += more
        data = write()
        problems, leftover = _verify(data, hidden, found, fills, policy, keep)
        notes.append(SECOND_PASS_NOTE.format(n=len(more)))
    return DeidResult(data, "dcm", width, height, list(shared), not problems, notes + problems)


def _distinct(regions: list[Region]) -> list[Region]:
    """The regions, each (kind, box) once: a region hidden in many frames is reported once."""
    seen, out = set(), []
    for region in regions:
        key = (region.kind, tuple(region.box))
        if key not in seen:
            seen.add(key)
            out.append(region)
    return out


def _verify(data: bytes, hidden: list[list[Region]], found: list[list[Region]], fills: list,
            policy: Policy, keep: _Dismissals | None = None) -> tuple[list[str], list[list[Region]]]:
    """Warnings about a written DICOM file, and per frame what the detectors still find beside a region."""
    warnings = metadata_problems(data, "dcm")
    leftover: list[list[Region]] = [[] for _ in hidden]
    try:
        out = read_dicom(data)
    except (InvalidInput, UnsupportedFormat):
        return warnings + ["the written DICOM file cannot be decoded again"], leftover
    if out.frame_count != len(hidden):
        return warnings + ["the written DICOM file does not hold every frame"], leftover
    run_detectors = bool(policy.verify_detectors and policy.detectors)
    for index, regions in enumerate(hidden):
        frame = out.frames[index]
        height, width = frame.shape[:2]
        for region in regions:
            x, y, w, h = region.box
            patch = frame[max(0, y):min(height, y + h), max(0, x):min(width, x + w)]
            if patch.size and not np.all(patch == fills[index]):
                warnings.append(f"{region.kind} region at {list(region.box)} in frame {index} is not filled")
        if not run_detectors or not regions:
            continue  # elsewhere the frame is the input's, where the detectors found nothing
        boxes = [r.box for r in regions]
        for first in found[index]:
            if coverage(first.box, boxes) < HIDDEN_COVERAGE:
                warnings.append(f"{first.kind} detected at {list(first.box)} in frame {index} was not hidden")
        small, scale = _detection_copy(Image.fromarray(out.display(index)))
        for again in _detect_around(small, regions, policy, scale):
            if keep is not None and keep.matches(again):
                continue  # a person judged it not identifying (the result notes it)
            if coverage(again.box, boxes) < HIDDEN_COVERAGE:
                warnings.append(f"{again.kind} still detected at {list(again.box)} in frame {index}")
                leftover[index].append(again)
    return warnings, leftover


def verify_file(data: bytes, regions: Sequence[Region], policy: Policy, warnings: list[str],
                       run_detectors: bool, check_fill: bool,
                       detections: Sequence[Region] | None) -> tuple[list[str], list[Region]]:
    """``deid.verify`` for a DICOM file: every frame, as a reader shows it."""
    try:
        out = read_dicom(data)
    except (InvalidInput, UnsupportedFormat):
        return warnings + ["the DICOM file cannot be decoded"], []
    leftover: list[Region] = []
    boxes = [r.box for r in regions]
    for index in range(out.frame_count):
        image = Image.fromarray(out.display(index))
        if check_fill:
            # stored values, exactly: the file is lossless, and a fill is the
            # frame's darkest value (or the fill colour), see _pixels.fill_value
            warnings += _unfilled_frame(out.frames[index], regions, out.dataset, policy, index)
        if not run_detectors:
            continue
        small, scale = _detection_copy(image)
        if detections is None:
            again = detect(small, policy, scale=scale)
        else:
            for first in detections:
                if coverage(first.box, boxes) < HIDDEN_COVERAGE:
                    warnings.append(f"{first.kind} detected at {list(first.box)} was not hidden")
            again = _detect_around(small, regions, policy, scale)
        for item in again:
            if item.label == SLOUGH_LABEL and coverage(item.box, boxes) < HIDDEN_COVERAGE:
                continue  # left visible for a person to judge, as deidentify does (its result notes it)
            if coverage(item.box, boxes) < HIDDEN_COVERAGE:
                warnings.append(f"{item.kind} still detected at {list(item.box)} in frame {index}")
                leftover.append(item)
    return warnings, leftover


def _unfilled_frame(frame: np.ndarray, regions: Sequence[Region], ds, policy: Policy, index: int) -> list[str]:
    value = _pixels.fill_value(frame, ds, tuple(policy.fill))
    height, width = frame.shape[:2]
    out = []
    for region in regions:
        x, y, w, h = region.box
        patch = frame[max(0, y):min(height, y + h), max(0, x):min(width, x + w)]
        if patch.size and not np.all(patch == value):
            out.append(f"{region.kind} region at {list(region.box)} in frame {index} is not filled")
    return out


def _rebuild(dcm, frames: np.ndarray, policy: Policy, pseudonyms, text_redacted: bool) -> bytes:
    pseudonyms = pseudonyms or Pseudonyms(os.urandom(32), date_shift_days=policy.date_shift_days)
    ds = dcm.dataset
    patient = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "unknown")
    clean = deidentify_dataset(
        ds,
        patient_pseudonym=pseudonyms.patient(patient),
        date_shift_days=pseudonyms.date_shift(patient),
        uid_key=pseudonyms.uid_key(),
        burned_in_text_redacted=text_redacted,
    )
    return write_dicom(clean, frames)
