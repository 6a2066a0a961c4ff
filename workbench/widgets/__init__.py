"""The notebook's interactive parts: capture panel, gallery, redaction editor, review queue, consent form.

Each widget is thin: synced JSON traits (ids, boxes, kinds, states, messages)
and callbacks; the work is done by the vault and :mod:`workbench.review`.
Images reach the browser over the widget's comm only, so neither a saved
notebook's outputs nor its saved widget state hold a pixel, and identifiers
typed into the consent form are sent once and never kept in a trait.

>>> from workbench.widgets import RedactionEditor, ReviewQueue   # doctest: +SKIP
>>> queue = ReviewQueue(vault)                                   # doctest: +SKIP
>>> RedactionEditor(vault, queue.photo_ids())                    # doctest: +SKIP
"""

from ._capture import CapturePanel
from ._consent import ConsentForm
from ._editor import RedactionEditor
from ._gallery import Gallery
from ._queue import ReviewQueue

__all__ = ["CapturePanel", "ConsentForm", "Gallery", "RedactionEditor", "ReviewQueue"]
