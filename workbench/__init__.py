"""Research workbench for clinical photographs.

``import workbench as wb`` gives the vault (``wb.init_vault``,
``wb.open_vault``), ingest (``wb.ingest``), cameras and cards
(``wb.open_camera``, ``wb.import_card``, ``wb.capture``) and the error family
(``wb.WorkbenchError`` and subclasses), and sharing (``wb.share``).
"""

import os as _os
import sys as _sys

# onnxruntime's wheels (1.29 and later) send usage telemetry to Microsoft
# from Linux as well, and keep a device id and a cache of unsent events under
# ~/.cache/Microsoft. A clinical workstation sends nothing anywhere. The
# switch is read once, when onnxruntime loads, and is inherited by the
# kernels and workers this process starts; it is set here, before any module
# of the package imports onnxruntime. Not a setting: see tests/test_offline.py.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
if "onnxruntime" in _sys.modules:  # loaded before the package: stop what can still be stopped
    _sys.modules["onnxruntime"].disable_telemetry_events()

from .errors import (
    AccessDenied,
    AlreadyExists,
    CameraError,
    ConflictError,
    ConsentError,
    DecompressionBomb,
    IntegrityError,
    InvalidInput,
    NotFound,
    NotVerified,
    UnsupportedFormat,
    WorkbenchError,
)
from .camera import ImportReport, capture, import_card, list_cameras, open_camera
from .ingest import ingest
from .vault import ROLES, SCOPES, Vault, init_vault, open_vault

__version__ = "0.1.0"

from . import share  # noqa: E402  (wb.share.bundle, wb.share.create_share; the portal loads on demand)

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "CameraError",
    "ConflictError",
    "ConsentError",
    "DecompressionBomb",
    "ImportReport",
    "IntegrityError",
    "InvalidInput",
    "NotFound",
    "NotVerified",
    "ROLES",
    "SCOPES",
    "UnsupportedFormat",
    "Vault",
    "WorkbenchError",
    "capture",
    "import_card",
    "ingest",
    "init_vault",
    "list_cameras",
    "open_camera",
    "open_vault",
]
