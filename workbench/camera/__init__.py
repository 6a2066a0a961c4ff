"""Cameras and memory cards: card import and tethered capture through libgphoto2.

>>> import workbench as wb
>>> with wb.open_camera() as cam:                                   # doctest: +SKIP
...     wb.import_card(vault, cam, patient="MRN-1", body_site="forearm", remove=True)
>>> wb.import_card(vault, "/media/card", patient="MRN-1", body_site="forearm")  # doctest: +SKIP
>>> wb.capture(vault, patient="MRN-1", body_site="forearm", count=2)  # doctest: +SKIP

Modules: ``_device`` (the :class:`Camera`: finding, listing, downloading,
capturing, deleting; busy retries and error advice), ``_import`` (card import,
its report and its sealed manifest) and ``_capture`` (tethered capture and
watching the shutter).
"""

from ._capture import capture
from ._device import Camera, CameraFile, list_cameras, open_camera
from ._import import ImportedFile, ImportReport, import_card

__all__ = [
    "Camera",
    "CameraFile",
    "ImportReport",
    "ImportedFile",
    "capture",
    "import_card",
    "list_cameras",
    "open_camera",
]
