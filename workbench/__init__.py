"""Research workbench for clinical photographs.

``import workbench as wb`` gives the vault (``wb.init_vault``,
``wb.open_vault``), ingest (``wb.ingest``) and the error family
(``wb.WorkbenchError`` and subclasses).
"""

from .errors import (
    AccessDenied,
    AlreadyExists,
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
from .ingest import ingest
from .vault import ROLES, SCOPES, Vault, init_vault, open_vault

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "ConflictError",
    "ConsentError",
    "DecompressionBomb",
    "IntegrityError",
    "InvalidInput",
    "NotFound",
    "NotVerified",
    "ROLES",
    "SCOPES",
    "UnsupportedFormat",
    "Vault",
    "WorkbenchError",
    "ingest",
    "init_vault",
    "open_vault",
]
