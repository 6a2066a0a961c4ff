"""De-identification: files rebuilt from pixels, regions redacted, outputs verified.

>>> from workbench import deid
>>> result = deid.deidentify("IMG_0001.JPG")            # doctest: +SKIP
>>> result.verified, [r.kind for r in result.regions]   # doctest: +SKIP

The pieces work on in-memory pixels, so vault photos never touch disk in
plaintext: ``detect`` proposes regions, ``redact`` hides them, ``rebuild``
writes a new file holding nothing but pixels, ``verify`` checks it again.
"""

from ._pipeline import DISMISS_IOU, DeidResult, deidentify, detect, grow, metadata_problems, rebuild, redact, verify
from ._policy import STYLES, Policy
from ._pseudonym import Pseudonyms, generate_key, load_key, save_key
from ._regions import KINDS, REVIEW_FACE_SCORE, REVIEW_TEXT_SCORE, Region, coverage, review_reasons

__all__ = [
    "DISMISS_IOU",
    "KINDS",
    "REVIEW_FACE_SCORE",
    "REVIEW_TEXT_SCORE",
    "STYLES",
    "DeidResult",
    "Policy",
    "Pseudonyms",
    "Region",
    "coverage",
    "deidentify",
    "detect",
    "generate_key",
    "grow",
    "load_key",
    "metadata_problems",
    "rebuild",
    "redact",
    "review_reasons",
    "save_key",
    "verify",
]
