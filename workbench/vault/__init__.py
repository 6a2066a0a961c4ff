"""The encrypted vault: keys and roles, blobs, index, consent and audit.

Modules, by what they keep: ``_vault`` (the :class:`Vault`, opening, the
signed write path and the blob store), ``_users`` (registry, slots, grants,
rotation), ``_patients`` (patients and consent), ``_photos`` (ingest, queries,
originals, previews), ``_review`` (review decisions, derivatives, shredding),
``_checks`` (whole-vault checks, checkpoints, stale files); ``_log`` says who
may write what (its ``RULES``) and checks it; ``_keys``, ``_crypto``,
``_index``, ``_files`` and ``_consent`` are the layers beneath.

>>> import workbench as wb
>>> vault = wb.open_vault("vault", user="ana")          # doctest: +SKIP
>>> vault.photos(purpose="research", body_site="forearm")  # doctest: +SKIP
"""

from ._consent import SCOPES
from ._keys import ROLE_HELP, ROLES
from ._base import CHECKPOINT_ENV, IDENTIFIER_COLUMNS, PHOTO_COLUMNS, REGION_KINDS, REVIEW_STATES
from ._checks import AuditCheck
from ._photos import IngestReport, PhotoResult
from ._review import Review
from ._vault import CAPABILITY_ENV, Vault, capability, forget_witness, init_vault, open_vault

__all__ = [
    "CAPABILITY_ENV",
    "capability",
    "forget_witness",
    "AuditCheck",
    "CHECKPOINT_ENV",
    "IDENTIFIER_COLUMNS",
    "PHOTO_COLUMNS",
    "REGION_KINDS",
    "REVIEW_STATES",
    "Review",
    "ROLES",
    "ROLE_HELP",
    "SCOPES",
    "IngestReport",
    "PhotoResult",
    "Vault",
    "init_vault",
    "open_vault",
]
