"""The encrypted vault: keys and roles, blobs, index, consent and audit.

>>> import workbench as wb
>>> vault = wb.open_vault("vault", user="ana")          # doctest: +SKIP
>>> vault.photos(purpose="research", body_site="forearm")  # doctest: +SKIP
"""

from ._consent import SCOPES
from ._keys import ROLE_HELP, ROLES
from ._vault import (
    CHECKPOINT_ENV,
    IDENTIFIER_COLUMNS,
    PHOTO_COLUMNS,
    REVIEW_STATES,
    IngestReport,
    PhotoResult,
    Vault,
    init_vault,
    open_vault,
)

__all__ = [
    "CHECKPOINT_ENV",
    "IDENTIFIER_COLUMNS",
    "PHOTO_COLUMNS",
    "REVIEW_STATES",
    "ROLES",
    "ROLE_HELP",
    "SCOPES",
    "IngestReport",
    "PhotoResult",
    "Vault",
    "init_vault",
    "open_vault",
]
