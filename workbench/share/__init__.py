"""Sharing verified cohorts with collaborators: encrypted bundles and a share portal.

>>> from workbench import share
>>> result = share.bundle(vault, "datasets/forearms", "forearms.zip", collaborator="Dr Ng")  # doctest: +SKIP
>>> new = share.create_share(vault, "datasets/forearms", account="ng", expires=14)           # doctest: +SKIP
>>> share.revoke_share(vault, new.share.share_id)                                          # doctest: +SKIP

Only a cohort or teaching set built from the vault, whose files still match
its signed build record and whose patients are all still consented, can be
shared (:func:`verify_dataset`). Shares are signed records of the vault's log;
the portal (:mod:`workbench.share.portal`, ``workbench share serve``) runs as
its own ``portal`` account, which holds no key that decrypts anything.
"""

from ._dataset import Dataset, verify_dataset
from ._store import NewShare, Share, create_share, list_shares, revoke_share
from .bundle import BundleResult, bundle

__all__ = ["BundleResult", "Dataset", "NewShare", "Share", "bundle", "create_share", "list_shares",
           "revoke_share", "verify_dataset"]
