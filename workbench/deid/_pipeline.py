"""The de-identification pipeline: detect, redact, rebuild, verify.

Everything happens in memory: a vault photo's pixels never touch disk in
plaintext. The pipeline works on Pillow images so that a 20 MP frame is
decoded once, painted in place and handed straight to the encoder;
detection runs on a reduced copy.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFilter

from .. import _imageio
from ..errors import InvalidInput, NotVerified, UnsupportedFormat
from ._policy import REVERSIBLE_WARNING, SECOND_PASS_NOTE, Policy
from ._pseudonym import Pseudonyms
from ._regions import HIDDEN_COVERAGE, SLOUGH_LABEL, SLOUGH_NOTE, Region, coverage, iou, merge_overlapping
from ..vault._files import read_input

#: detection runs on a copy no longer than this (a 20 MP frame is halved)
DETECT_MAX_SIDE = 3000
#: mean absolute difference from the fill colour tolerated inside a filled box
FILL_TOLERANCE = 12.0


@dataclass
class DeidResult:
    """One de-identified image.

    Attributes
    ----------
    data : bytes
        The new file: nothing but pixels (and a de-identified header for DICOM).
    ext : str
        ``jpg``, ``png`` or ``dcm``.
    width, height : int
        Size of the output image.
    regions : list of Region
        What was hidden, in the output's pixel frame (grown by the margin).
    verified : bool
        True when verification found nothing left to hide.
    warnings : list of str
        Why it is not verified, and notes such as a reversible style or a
        second pass (what verification found was hidden and checked again).
    """

    data: bytes
    ext: str
    width: int
    height: int
    regions: list[Region]
    verified: bool
    warnings: list[str] = field(default_factory=list)

    def report_entry(self, input_name: str, output_name: str) -> dict:
        """The per-file entry of a ``workbench deid`` report."""
        return {
            "input": input_name,
            "output": output_name,
            "width": self.width,
            "height": self.height,
            "regions": [r.to_json() for r in self.regions],
            "verified": self.verified,
            "warnings": list(self.warnings),
            "review": self.review_reasons,
        }

    @property
    def review_reasons(self) -> list[str]:
        """Why a person must check this redaction before it is approved (see :func:`review_reasons`)."""
        from ._regions import review_reasons

        return review_reasons(self.regions, self.warnings)

    def require_verified(self) -> "DeidResult":
        """Return self, or raise ``NotVerified`` listing the warnings."""
        if not self.verified:
            raise NotVerified(
                "the de-identified output failed verification (" + "; ".join(self.warnings)
                + "); review it and mark the missed regions by hand"
            )
        return self


# --- loading ----------------------------------------------------------------


@dataclass
class _Source:
    image: Image.Image
    fmt: str                      # jpeg, png, tiff, webp, heif, raw, dicom, pixels
    data: bytes | None = None     # original file bytes when there is a file
    dicom: object | None = None   # workbench.deid._dicom.DicomImage


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def _load(source, *, reduce_to: int | None = None) -> _Source:
    if isinstance(source, Image.Image):
        return _Source(source.convert("RGB"), "pixels")
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise InvalidInput("pixels must be an RGB uint8 array of shape (height, width, 3)")
        return _Source(Image.fromarray(np.ascontiguousarray(source)), "pixels")
    if isinstance(source, (str, os.PathLike)):
        source = read_input(source)
    if not isinstance(source, (bytes, bytearray, memoryview)):
        raise InvalidInput("give file bytes, a path, a numpy RGB array or a Pillow image")
    data = bytes(source)
    if _is_dicom(data):
        from . import _dicom

        dcm = _dicom.read_dicom(data)
        return _Source(Image.fromarray(dcm.pixels), "dicom", data, dcm)
    image, info, icc = _imageio.open_upright(data, reduce_to=reduce_to)
    if icc and reduce_to is None:
        image = _to_srgb(image, icc)
    return _Source(image, info.format, data)


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """Convert pixels from an embedded profile to sRGB (the output carries no profile)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile) or ""
    except (OSError, ImageCms.PyCMSError, TypeError, ValueError):
        raise InvalidInput(
            "the image's colour profile (ICC) is damaged; re-export the photo as sRGB"
        ) from None
    if "srgb" in description.lower():
        return image
    try:
        return ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (OSError, ImageCms.PyCMSError, ValueError):
        raise InvalidInput(
            "the image's colour profile cannot be converted to sRGB; re-export the photo as sRGB"
        ) from None


def _detection_factor(long_side: int) -> int:
    """The power of two an image with this long side is reduced by for detection (to at most DETECT_MAX_SIDE)."""
    factor = 1
    while long_side / factor > DETECT_MAX_SIDE:
        factor *= 2
    return factor


def _detection_copy(image: Image.Image) -> tuple[np.ndarray, float]:
    factor = _detection_factor(max(image.size))
    small = image.reduce(factor) if factor > 1 else image
    return np.asarray(small), 1.0 / factor


def _open_for_detection(data: bytes):
    """Decode a file straight at its detection size where JPEG's DCT scaling allows (else in full).

    A 20 MP JPEG is decoded at half size in one step: 56 ms for a quality-95
    output instead of 69 ms to decode it whole and 13 ms to halve it.
    Returns the image and the file's ImageInfo.
    """
    info = _imageio.probe(data)
    long_side = max(info.width, info.height)
    image, info, _ = _imageio.open_upright(data, reduce_to=-(-long_side // _detection_factor(long_side)))
    return image, info


# --- the pieces ---------------------------------------------------------------


def detect(image, policy: Policy | None = None, *, scale: float = 1.0,
           within: tuple[int, int] | None = None, hidden: Sequence[tuple[int, int, int, int]] = (),
           sides: tuple[bool, bool, bool, bool] | None = None) -> list[Region]:
    """Run the policy's detectors on an upright RGB image.

    Parameters
    ----------
    image : numpy.ndarray or PIL.Image.Image
        RGB pixels, possibly reduced from the full frame by ``scale``.
    policy : Policy
    scale : float
        Size of ``image`` relative to the full frame; boxes come back in
        full-frame pixels.
    within : (height, width), optional
        For a window cut from a larger image: that image's size in the same
        pixels, so that faces and text are searched at the scales the whole
        image is (see :func:`~workbench.deid._detect._text.detect_text`).
    hidden : sequence of (x, y, w, h)
        Boxes (full-frame pixels) already redacted, as verification knows
        them: text lines they hide are not read (see ``detect_text``).
    sides : (left, right, top, bottom) of bool, optional
        For a window: which of its sides are the whole image's edges (see
        ``detect_faces``; default all).

    Returns
    -------
    list of Region
        Raw detections, not yet grown by the margin.
    """
    policy = policy or Policy()
    if not policy.detectors:
        return []
    try:
        from ._detect import DETECTORS
    except ImportError as exc:  # pragma: no cover - only on a broken install
        raise UnsupportedFormat(
            "the detectors are not installed; run `make test` or `pip install -e .` again"
        ) from exc
    pixels = np.asarray(image)
    by_name: dict[str, list[Region]] = {}
    # Codes first: the text detector looks again beside each decoded code
    # (``codes``), whose modules can swallow a line of print next to it.
    if "barcode" in policy.detectors:
        by_name["barcode"] = DETECTORS["barcode"](pixels, scale=scale)
    for name in policy.detectors:
        if name == "text":
            codes = [r.box for r in by_name.get("barcode", [])]
            by_name[name] = DETECTORS[name](pixels, scale=scale, allow=policy.allow_text, codes=codes, within=within,
                                            hidden=hidden)
        elif name == "face":
            by_name[name] = DETECTORS[name](pixels, scale=scale, within=within, hidden=hidden, sides=sides)
        elif name not in by_name:
            by_name[name] = DETECTORS[name](pixels, scale=scale)
    return [region for name in policy.detectors for region in by_name[name]]


def grow(regions: Iterable[Region], policy: Policy, width: int, height: int) -> list[Region]:
    """Grow each region by its kind's margin and clip it to the image."""
    out = []
    for region in regions:
        grown = region.grown(policy.margin(region.kind), width, height)
        if grown is not None:
            out.append(grown)
    return out


def redact(image, regions: Sequence[Region], style: str = "fill", fill=(0, 0, 0)):
    """Hide ``regions`` in ``image`` (boxes used as given: grow them first).

    Returns a new image of the same type (numpy array or Pillow image); the
    input is not changed.
    """
    as_array = isinstance(image, np.ndarray)
    canvas = Image.fromarray(image) if as_array else image.copy()
    _paint(canvas, regions, style, tuple(fill))
    return np.asarray(canvas).copy() if as_array else canvas


def _paint(canvas: Image.Image, regions: Sequence[Region], style: str, fill: tuple) -> None:
    draw = ImageDraw.Draw(canvas)
    for region in regions:
        x, y, w, h = region.box
        box = (x, y, x + w, y + h)
        if style == "fill":
            draw.rectangle((x, y, x + w - 1, y + h - 1), fill=fill)
        elif style == "mosaic":
            cell = max(8, min(w, h) // 8)
            small = canvas.crop(box).resize((max(1, w // cell), max(1, h // cell)), Image.Resampling.BOX)
            canvas.paste(small.resize((w, h), Image.Resampling.NEAREST), box)
        else:  # blur
            crop = canvas.crop(box)
            canvas.paste(crop.filter(ImageFilter.GaussianBlur(radius=max(8, min(w, h) / 6))), box)


def rebuild(image, fmt: str = "jpeg", *, quality: int = 95) -> bytes:
    """Write pixels into a brand-new file that carries nothing else.

    JPEG: baseline, 4:4:4 chroma, a JFIF header and nothing more; PNG: only
    the image chunks. No EXIF, XMP, IPTC, comments, ICC or thumbnails can be
    copied, because nothing is copied: the encoder only sees pixels.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image))
    # A fresh info dict: Pillow copies some entries (e.g. a JPEG comment) on save.
    image.info = {}
    out = io.BytesIO()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=int(quality), subsampling=0, optimize=False)
    elif fmt == "png":
        image.save(out, "PNG", compress_level=6)
    else:
        raise InvalidInput("output format must be jpeg or png")
    return out.getvalue()


# --- verification -------------------------------------------------------------

_JPEG_ALLOWED = {0xD8, 0xDB, 0xC0, 0xC1, 0xC2, 0xC4, 0xDD, 0xDA, 0xD9} | set(range(0xD0, 0xD8))
_PNG_ALLOWED = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"cHRM", b"pHYs"}


def metadata_problems(data: bytes, ext: str) -> list[str]:
    """Anything in an output file beyond pixels (an empty list when clean)."""
    if ext == "jpg":
        return _jpeg_problems(data)
    if ext == "png":
        return _png_problems(data)
    if ext == "dcm":
        from . import _dicom

        return _dicom_problems(data, _dicom)
    return [f"unknown output type {ext}"]


def _jpeg_problems(data: bytes) -> list[str]:
    problems = []
    if not data.startswith(b"\xff\xd8"):
        return ["not a JPEG file"]
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return problems + ["JPEG marker structure is broken"]
        marker = data[pos + 1]
        if marker == 0xDA:
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xE0 and data[pos + 4:pos + 9] == b"JFIF\x00":
            pass
        elif marker not in _JPEG_ALLOWED:
            problems.append(f"JPEG segment 0x{marker:02X} ({_MARKER_NAMES.get(marker, 'metadata')}) present")
        pos += 2 + length
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        problems.append("data after the end of the JPEG image")
    return problems


_MARKER_NAMES = {0xE1: "EXIF/XMP", 0xE2: "ICC/FlashPix", 0xED: "IPTC/Photoshop", 0xFE: "comment"}


def _png_problems(data: bytes) -> list[str]:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ["not a PNG file"]
    problems, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind not in _PNG_ALLOWED:
            problems.append(f"PNG chunk {kind.decode('latin-1')} present")
        pos += 12 + length
        if kind == b"IEND":
            break
    if pos != len(data):
        problems.append("data after the end of the PNG image")
    return problems


def _dicom_problems(data: bytes, module) -> list[str]:
    """The whole file read again, file meta included, and judged by the profile (names, never values)."""
    return ["DICOM " + problem for problem in module.profile_problems(data)]


def verify(
    data: bytes,
    ext: str,
    regions: Sequence[Region],
    policy: Policy | None = None,
    *,
    painted: Image.Image | None = None,
    detections: Sequence[Region] | None = None,
) -> tuple[bool, list[str]]:
    """Check an output again: metadata re-read, fills present, detectors re-run.

    Parameters
    ----------
    data, ext : bytes, str
        The output file and its type (``jpg``, ``png``, ``dcm``).
    regions : sequence of Region
        What was redacted, in the output's pixel frame.
    policy : Policy
        Its detectors are re-run on the decoded output (unless
        ``verify_detectors`` is off).
    painted : PIL.Image.Image, optional
        The image that was encoded. When no detector has to run, fills are
        checked on it instead of decoding the output again.
    detections : sequence of Region, optional
        What the pipeline's own detection pass found on the input. Given
        this, verification checks that every one of them is hidden and
        re-runs the detectors on the decoded output around every redaction
        (where a partly hidden face or label would still show); elsewhere the
        output's pixels are the input's, on which the same detectors already
        found nothing. Without it (a file checked on its own), every detector
        runs on the whole output.

    Returns
    -------
    (bool, list of str)
        Verified, and the warnings. Anything a detector still finds outside
        the redacted regions makes the output unverified, with a warning
        naming the kind and box.
    """
    warnings, _ = _verify(data, ext, regions, policy, painted=painted, detections=detections)
    return not warnings, warnings


def _verify(data: bytes, ext: str, regions: Sequence[Region], policy: Policy | None = None, *,
            painted: Image.Image | None = None,
            detections: Sequence[Region] | None = None,
            dismissed: "_Dismissals | None" = None,
            notes: list[str] | None = None) -> tuple[list[str], list[Region]]:
    """:func:`verify`'s warnings, and the regions its detectors found not hidden (full-frame pixels).

    A face box the detector labels as slough (:data:`~._regions.SLOUGH_LABEL`)
    and no redaction covers is left visible, as ``deidentify`` leaves it,
    and noted in ``notes`` (which sends the photo to review).
    """
    policy = policy or Policy()
    warnings = metadata_problems(data, ext)
    run_detectors = bool(policy.verify_detectors and policy.detectors)
    check_fill = bool(regions) and policy.style == "fill"
    if not (run_detectors or check_fill):
        return warnings, []
    if painted is not None and not run_detectors:
        warnings += _unfilled(painted, regions, 1.0, policy.fill)
        return warnings, []
    if ext == "dcm":
        from ._dicom._redact import verify_file

        return verify_file(data, regions, policy, warnings, run_detectors, check_fill, detections)
    else:
        image, info = _open_for_detection(data)
        width = info.width
    scale = image.size[0] / width
    if check_fill:
        warnings += _unfilled(image, regions, scale, policy.fill)
    leftover = []
    if run_detectors:
        small, extra = _detection_copy(image)
        boxes = [r.box for r in regions]
        if detections is None:
            again = detect(small, policy, scale=scale * extra)
        else:
            for first in detections:
                if coverage(first.box, boxes) < HIDDEN_COVERAGE:
                    warnings.append(f"{first.kind} detected at {list(first.box)} was not hidden")
            again = _detect_around(small, regions, policy, scale * extra)
        for found in again:
            if dismissed is not None and dismissed.matches(found):
                continue  # a person judged it not identifying (deidentify notes it)
            if found.label == SLOUGH_LABEL and coverage(found.box, boxes) < HIDDEN_COVERAGE:
                note = SLOUGH_NOTE.format(kind=found.kind, box=list(found.box), score=found.score)
                if notes is not None and note not in notes:
                    notes.append(note)
                continue
            if coverage(found.box, boxes) < HIDDEN_COVERAGE:
                warnings.append(f"{found.kind} still detected at {list(found.box)}")
                leftover.append(found)
    return warnings, leftover


#: how far around a redaction verification looks again, as a share of its size
AROUND = 0.5


def _detect_around(pixels: np.ndarray, regions: Sequence[Region], policy: Policy, scale: float) -> list[Region]:
    """Run the detectors again on windows around each redacted region of a (reduced) output.

    Around a face, text or barcode region only that kind's detector runs: the
    first pass saw the whole frame with every detector (and its detections
    are checked separately), so what a redaction can have left is the part
    of the same object that stuck out of its box. Around a region a person
    marked (or any other kind) every detector runs. Windows are searched at
    the whole output's resolution, as the first pass searched the input
    (``within``), not enlarged: on 20 MP frames that made text verification
    about four times cheaper (545 -> 131 ms per frame on one core). Text
    lines that the redactions already hide count as hidden whatever they
    read, so they are not read (``hidden``). A text line cut by a window's
    side is judged again with what lies beyond it (:func:`_text_beyond`).
    """
    from dataclasses import replace

    height, width = pixels.shape[:2]
    boxes = [r.box for r in regions]
    by_kind: dict[tuple[str, ...], list[list[int]]] = {}
    for region in regions:
        kinds = (region.kind,) if region.kind in policy.detectors else tuple(policy.detectors)
        by_kind.setdefault(kinds, []).append(list(_window_around(region.box, AROUND, AROUND, scale, (width, height))))
    found = []
    for kinds, windows in by_kind.items():
        only = replace(policy, detectors=kinds)
        for window in merge_overlapping(windows):
            x0, y0, x1, y1 = window
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            for region in _detect_in_window(pixels, window, only, scale, boxes):
                if region.kind == "text" and _cut_by_window(region.box, window, (width, height), scale):
                    found += _text_beyond(pixels, region, policy, scale, boxes)
                else:
                    found.append(region)
    return found


def _window_around(box, across: float, down: float, scale: float, frame: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` (full-frame) grown by ``across`` of its width and ``down`` of its height each way (at least 32 px).

    Returned as ``x0, y0, x1, y1`` in the reduced pixels ``scale`` gives,
    clipped to ``frame`` (their width and height).
    """
    x, y, w, h = box
    width, height = frame
    pad_x, pad_y = max(w * across, 32 / scale), max(h * down, 32 / scale)
    return (max(0, int((x - pad_x) * scale)), max(0, int((y - pad_y) * scale)),
            min(width, int(np.ceil((x + w + pad_x) * scale))), min(height, int(np.ceil((y + h + pad_y) * scale))))


def _detect_in_window(pixels: np.ndarray, window, policy: Policy, scale: float, boxes) -> list[Region]:
    """:func:`detect` on ``window`` (``x0, y0, x1, y1`` of the reduced ``pixels``), searched as the whole frame is.

    Boxes come back in full-frame pixels; ``boxes`` are the full-frame
    redactions (see ``hidden``).
    """
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = window
    crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    ox, oy = int(round(x0 / scale)), int(round(y0 / scale))
    hidden = [(x - ox, y - oy, w, h) for x, y, w, h in boxes]
    sides = (x0 == 0, x1 >= width, y0 == 0, y1 >= height)  # the window's sides that are the frame's
    return [Region(r.kind, (r.box[0] + ox, r.box[1] + oy, r.box[2], r.box[3]), r.score, r.detector, r.label)
            for r in detect(crop, policy, scale=scale, within=(height, width), hidden=hidden, sides=sides)]


#: A text line cut by a verification window's side is read again in a
#: window around the line itself, this many of its heights above and below
#: (and :data:`AROUND` of its width to each side). Seed 2047's phantom 59:
#: the window around a label ended inside a ruler's tick row; read alone,
#: without the numbers beneath it that make it a ruler, the row's cut piece
#: scored 0.36 as text and was hidden over an erythema. Two heights reach
#: the row of numbers under a tick row.
_BEYOND_HEIGHTS = 2.0


def _cut_by_window(box, window, frame: tuple[int, int], scale: float) -> bool:
    """Whether a full-frame ``box`` found in ``window`` touches one of its sides that is not the frame's edge.

    ``window`` and ``frame`` (width, height) are in the reduced pixels ``scale`` gives.
    """
    x, y, w, h = (v * scale for v in box)
    x0, y0, x1, y1 = window
    width, height = frame
    return ((x0 > 0 and x <= x0 + 1) or (x1 < width and x + w >= x1 - 1)
            or (y0 > 0 and y <= y0 + 1) or (y1 < height and y + h >= y1 - 1))


def _text_beyond(pixels: np.ndarray, line: Region, policy: Policy, scale: float, boxes) -> list[Region]:
    """Text in a window around ``line`` (cut by a verification window's side) that overlaps it.

    The first pass, which saw the whole frame, did not hide this line: in
    a window that holds the whole line and its neighbours the text rules
    decide again, with the context (a ruler's numbers beside its ticks)
    that the cut window lacked. What that look finds over the line is
    returned (the line, or the part the rules still hide); a line the
    rules now leave visible is not.
    """
    from dataclasses import replace

    height, width = pixels.shape[:2]
    window = _window_around(line.box, AROUND, _BEYOND_HEIGHTS, scale, (width, height))
    text = replace(policy, detectors=("text",))
    return [r for r in _detect_in_window(pixels, window, text, scale, boxes) if coverage(line.box, [r.box]) > 0]


def _mean_distance(patch: np.ndarray, colour: np.ndarray) -> float:
    """Mean absolute difference between an 8-bit RGB patch and a colour, over every pixel and channel.

    cv2 works on the uint8 pixels directly, without the int16 copy numpy
    needs (a 1500x1200 box: 11 ms -> 0.4 ms).
    """
    import cv2

    channels = patch.shape[2] if patch.ndim == 3 else 1
    scalar = tuple(float(v) for v in colour[:channels]) + (0.0,) * (4 - channels)
    return float(np.mean(cv2.mean(cv2.absdiff(patch, scalar))[:channels]))


def _unfilled(image: Image.Image, regions: Sequence[Region], scale: float, fill) -> list[str]:
    target = np.array(fill, dtype=np.int16)
    out = []
    for region in regions:
        x, y, w, h = (int(round(v * scale)) for v in region.box)
        # JPEG ringing touches a box's edge: look at its interior (only the
        # boxes are converted, never the whole frame)
        inset = max(1, int(4 * scale))
        if w <= 2 * inset or h <= 2 * inset:
            continue
        patch = np.asarray(image.crop((x + inset, y + inset, x + w - inset, y + h - inset)))
        if patch.size and _mean_distance(patch, target) > FILL_TOLERANCE:
            out.append(f"{region.kind} region at {list(region.box)} is not filled")
    return out


# --- the whole pipeline ---------------------------------------------------------


def deidentify(
    source,
    policy: Policy | None = None,
    *,
    regions: Sequence[Region | dict] = (),
    dismissed: Sequence[Region | dict] = (),
    pseudonyms: Pseudonyms | None = None,
    output_format: str | None = None,
) -> DeidResult:
    """De-identify one image and verify the result.

    Parameters
    ----------
    source : bytes, path, numpy.ndarray or PIL.Image.Image
        A file's bytes or path (JPEG, PNG, TIFF, WebP, HEIC/HEIF, AVIF,
        CR3/CR2/DNG, DICOM), or upright RGB pixels already in memory (a vault
        photo's ``load_original``).
    policy : Policy, optional
        Defaults hide faces, text and barcodes with a solid fill.
    regions : sequence of Region or dict
        Regions marked by a person, in the upright image's pixel frame.
        They are always redacted. A dict with ``"dismissed": true`` is
        taken as one of ``dismissed`` instead (``Vault.manual_regions``
        gives both).
    dismissed : sequence of Region or dict
        Detector boxes a person judged not identifying in review (a "face"
        on a wound): the detection they name (same kind, and grown by its
        margin overlapping the box by :data:`DISMISS_IOU` or more) is left
        visible, verification does not count it, and ``warnings`` notes it.
        Any other detection is hidden as usual, so a dismissal never
        uncovers more than the box it was made on.
    pseudonyms : Pseudonyms, optional
        Needed for DICOM headers (patient pseudonym, date shift, UIDs). A
        random, single-use key is used when omitted.
    output_format : {"jpeg", "png"}, optional
        Default: JPEG for JPEG input, DICOM for DICOM input (unless the
        policy asks for PNG), PNG for everything else.

    Returns
    -------
    DeidResult
        What verification still finds beside a redaction (up to 2% of the
        frame each) is hidden and the new output verified again, at most
        :data:`MORE_PASSES` times; ``warnings`` then says so.

    Raises
    ------
    InvalidInput, UnsupportedFormat, DecompressionBomb
        The input cannot be read; nothing is written.
    """
    policy = policy or Policy()
    manual, dismissed = _marked(regions, dismissed)
    lossless = policy.lossless and isinstance(source, (bytes, bytearray, str, os.PathLike))
    if lossless:
        return _deidentify_lossless(source, policy, manual, dismissed)
    src = _load(source)
    if src.fmt == "dicom" and policy.dicom_output == "dicom" and output_format is None:
        from ._dicom._redact import deidentify_frames

        return deidentify_frames(src.dicom, policy, manual, pseudonyms, dismissed)
    if src.fmt == "dicom" and src.dicom.frame_count > 1:
        raise UnsupportedFormat(
            "a multi-frame DICOM image is written as DICOM only (a PNG holds one frame); "
            "run without --format png, or export the frame you need from a viewer"
        )
    image = src.image
    width, height = image.size
    found: list[Region] = []
    if policy.detectors:
        small, scale = _detection_copy(image)
        found = detect(small, policy, scale=scale)
    keep = _Dismissals(dismissed, policy, width, height)
    found, notes = keep.split(found, manual)
    hidden = grow(found + manual, policy, width, height)
    if policy.style != "fill" and hidden:
        notes.append(REVERSIBLE_WARNING.format(style=policy.style))

    def write(new: list[Region]) -> tuple[bytes, str, list[Region], Image.Image]:
        _paint(image, new, policy.style, tuple(policy.fill))
        fmt = output_format or ("jpeg" if src.fmt == "jpeg" else "png")
        return rebuild(image, fmt, quality=policy.jpeg_quality), ("jpg" if fmt == "jpeg" else "png"), hidden, image

    data, ext, problems = _write_verified(write, hidden, found, policy, width, height, notes, keep)
    return DeidResult(data, ext, width, height, hidden, not problems, notes + problems)


#: A detection is the one a person dismissed in review when, grown by its
#: kind's margin (as the editor showed it), it overlaps the dismissed box by
#: at least this intersection over union, and is of the same kind.
DISMISS_IOU = 0.5


def _marked(regions, dismissed) -> tuple[list[Region], list[Region]]:
    """The regions a person marked to hide, and the detector boxes they dismissed."""
    hide, keep = [], [r if isinstance(r, Region) else Region.from_json(r) for r in dismissed]
    for r in regions:
        if isinstance(r, dict) and r.get("dismissed"):
            keep.append(Region.from_json(r))
        else:
            hide.append(r if isinstance(r, Region) else Region.from_json(r))
    return hide, keep


@dataclass
class _Dismissals:
    """The detector boxes a person dismissed, and the test of whether a detection is one of them."""

    boxes: list[Region]
    policy: Policy
    width: int
    height: int

    def matches(self, region: Region) -> bool:
        if not self.boxes:
            return False
        grown = region.grown(self.policy.margin(region.kind), self.width, self.height)
        return grown is not None and any(
            d.kind == region.kind and iou(grown.box, d.box) >= DISMISS_IOU for d in self.boxes)

    def split(self, found: list[Region], manual: Sequence[Region] = ()) -> tuple[list[Region], list[str]]:
        """The detections to hide, and a note for each one left visible.

        Left visible: what a person dismissed, and face boxes the detector
        labelled as slough in a wound (:data:`~._regions.SLOUGH_LABEL`),
        whose note sends the photo to review, unless a region a person
        marked (``manual``) covers it: then it was judged a face, and is
        hidden as one.
        """
        kept, notes = [], []
        marked = [m.box for m in manual]
        for r in found:
            if self.matches(r):
                notes.append(DISMISSED_NOTE.format(kind=r.kind, box=list(r.box), score=r.score))
            elif r.label == SLOUGH_LABEL and coverage(r.box, marked) < HIDDEN_COVERAGE:
                notes.append(SLOUGH_NOTE.format(kind=r.kind, box=list(r.box), score=r.score))
            else:
                kept.append(r)
        return kept, notes


#: said of each detection left visible because a person dismissed it in review
DISMISSED_MARK = "left visible: dismissed in review"
DISMISSED_NOTE = "{kind} box at {box} (score {score:.2f}) " + DISMISSED_MARK + " as not identifying"


def _write_verified(write, hidden: list[Region], found: list[Region], policy: Policy, width: int, height: int,
                    notes: list[str], keep: "_Dismissals | None" = None) -> tuple[bytes, str, list[str]]:
    """Write the output and verify it; hide what verification still finds and verify again.

    ``write(new)`` hides the regions ``new`` (at first all of ``hidden``)
    and returns the output's bytes and type, the regions to check it
    against and the painted image (or None). What verification still finds
    beside a redaction (the rest of a line, or a face that stuck out of its
    box) is added to ``hidden``, written, and the new output verified from
    the start, at most :data:`MORE_PASSES` times; each pass adds a note.
    Returns the bytes, the type and the final verification's warnings.
    """
    data, ext, checked, painted = write(hidden)
    problems, leftover = _verify(data, ext, checked, policy, painted=painted, detections=found,
                                 dismissed=keep, notes=notes)
    for _ in range(MORE_PASSES):
        more = _hide_more(leftover, policy, width, height)
        if not more:
            break
        hidden += more
        data, ext, checked, painted = write(more)
        problems, leftover = _verify(data, ext, checked, policy, painted=painted, detections=found,
                                 dismissed=keep, notes=notes)
        notes.append(SECOND_PASS_NOTE.format(n=len(more)))
    return data, ext, problems


#: How many times verification's findings are hidden and the output verified
#: again (see ``deidentify``): each pass can show the next piece of a line
#: that PP-OCR finds piece by piece; two bound the cost.
MORE_PASSES = 2
#: A region verification finds is hidden by the pipeline only up to this
#: share of the frame; a larger one (a band of lesions merged into one
#: "label" by a window's detector, half of a seed-2030 phantom) is left for
#: a person to review, and the output stays unverified.
MORE_MAX_SHARE = 0.02


def _hide_more(leftover: Sequence[Region], policy: Policy, width: int, height: int) -> list[Region]:
    """The regions to hide after verification found ``leftover``: grown, each at most :data:`MORE_MAX_SHARE` of the frame."""
    return [r for r in grow(leftover, policy, width, height) if r.box[2] * r.box[3] <= MORE_MAX_SHARE * width * height]


def _deidentify_lossless(source, policy: Policy, manual: list[Region], dismissed: list[Region]) -> DeidResult:
    from ._lossless import redact_jpeg_lossless

    # a path's read errors are InvalidInput like everywhere else (fail closed)
    data = read_input(source) if isinstance(source, (str, os.PathLike)) else bytes(source)
    info = _imageio.probe(data)
    if info.format != "jpeg":
        raise UnsupportedFormat("lossless mode is for JPEG input only; run without --lossless")
    found: list[Region] = []
    if policy.detectors:
        small, _ = _open_for_detection(data)
        pixels, extra = _detection_copy(small)
        found = detect(pixels, policy, scale=small.size[0] / info.width * extra)
    keep = _Dismissals(dismissed, policy, info.width, info.height)
    found, notes = keep.split(found, manual)
    hidden = grow(found + manual, policy, info.width, info.height)

    def write(new: list[Region]) -> tuple[bytes, str, list[Region], None]:
        # Blocks are blanked from the original each time, for every hidden
        # region; verification checks what was actually blanked (whole MCUs,
        # a superset).
        out, blanked = redact_jpeg_lossless(data, [r.box for r in hidden], fill=tuple(policy.fill))
        return out, "jpg", [Region("manual", box) for box in blanked], None

    out, _, problems = _write_verified(write, hidden, found, policy, info.width, info.height, notes, keep)
    return DeidResult(out, "jpg", info.width, info.height, hidden, not problems, notes + problems)


__all__ = [
    "DeidResult",
    "deidentify",
    "detect",
    "grow",
    "metadata_problems",
    "rebuild",
    "redact",
    "verify",
]
