"""Shares: collaborator accounts and links, kept as signed records of the vault's log.

A share is the detail of a ``share_create`` record, signed by the admin,
researcher or educator who made it (the log's rules refuse any other role's
signature, and every reader checks them); a ``share_revoke`` record ends it.
Nothing about a share lives in a file a local user could edit: the portal
reads shares back from the verified log at start and whenever the log grows.

A share names one dataset (its folder, run id and manifest digest), one
account (a collaborator's name, or ``link`` for a share link), the Argon2id
hash of its generated password or link token, an expiry time, and whether
downloads and a watermark are on. The password or token is generated,
returned once, and stored only as its hash. The hash sits in the log, which
every vault user can read: a random 150- or 256-bit secret makes it useless
to a guesser.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING

from ..errors import AlreadyExists, InvalidInput, NotFound
from ..vault import Vault
from ..vault._base import _iso, _parse_time
from ..vault._log import SHARE_ROLES
from . import _secrets
from ._dataset import verified_records, verify_dataset

if TYPE_CHECKING:
    import pandas as pd


_ACCOUNT_RE = re.compile(r"^[a-z][a-z0-9_.@-]{1,63}$")
#: the longest a share may run
MAX_DAYS = 365


@dataclass(frozen=True, repr=False)
class Share:
    """One share, as its signed records say."""

    share_id: str
    kind: str  # "account" or "link"
    account: str
    secret_hash: str
    dataset: str
    run_id: str
    manifest_sha256: str
    expires: datetime
    download: bool
    watermark: bool
    created_by: str
    created: str
    revoked: bool = False
    revoked_by: str | None = None

    def __repr__(self) -> str:  # never the hash
        return f"Share({self.share_id!r}, {self.kind}, account={self.account!r}, dataset={self.dataset!r})"

    def status(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked:
            return "revoked"
        return "expired" if now >= self.expires else "active"


def shares_from_records(records) -> dict[str, Share]:
    """Every share the (verified) log records, by id, revocations applied."""
    shares: dict[str, Share] = {}
    for record in records:
        detail = record.content.get("detail", {})
        if record.action == "share_create":
            try:
                share = Share(str(detail["share"]), str(detail["kind"]), str(detail["account"]),
                              str(detail["password_argon2id"]), str(detail["dataset"]), str(detail["run_id"]),
                              str(detail["manifest_sha256"]), _parse_time(detail["expires"]),
                              bool(detail["download"]), bool(detail["watermark"]), record.user,
                              str(record.content.get("time")))
            except (KeyError, TypeError, ValueError):
                continue  # not a share this version can serve: never served
            if share.share_id not in shares:
                shares[share.share_id] = share
        elif record.action == "share_revoke":
            share = shares.get(str(detail.get("share")))
            if share is not None and not share.revoked:
                shares[share.share_id] = Share(**{**share.__dict__, "revoked": True, "revoked_by": record.user})
    return shares


def _expiry(expires, now: datetime) -> datetime:
    if isinstance(expires, int):
        moment = now + timedelta(days=expires)
    elif isinstance(expires, datetime):
        moment = expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)
    else:
        try:
            day = expires if isinstance(expires, date) else date.fromisoformat(str(expires))
        except ValueError:
            raise InvalidInput("--expires is a date written YYYY-MM-DD, or a number of days") from None
        moment = datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc)
    if moment <= now:
        raise InvalidInput("a share's expiry must be in the future")
    if moment > now + timedelta(days=MAX_DAYS):
        raise InvalidInput(f"a share runs at most {MAX_DAYS} days; choose an earlier expiry")
    return moment


@dataclass(frozen=True, repr=False)
class NewShare:
    """A share just made, with its secret: shown once, stored only as a hash."""

    share: Share
    secret: str

    def __repr__(self) -> str:
        return f"NewShare({self.share!r})"

    @property
    def link_path(self) -> str | None:
        """For a link share, the path to append to the portal's address."""
        return f"/l/{self.share.share_id}/{self.secret}" if self.share.kind == "link" else None


def create_share(vault: Vault, dataset: str | os.PathLike, *, account: str | None = None,
                 link: bool = False, expires=30, download: bool = False,
                 watermark: bool = True) -> NewShare:
    """Share a verified cohort or teaching set with one collaborator account, or as a link.

    Parameters
    ----------
    vault : Vault
        Opened by an admin, researcher or educator.
    dataset : path-like
        The cohort folder; refused unless :func:`~workbench.share.verify_dataset` accepts it.
    account : str, optional
        The collaborator's account name (``a-z``, digits, ``._@-``), unique
        among active shares. Leave out with ``link=True``.
    link : bool
        A share link instead: whoever holds the link may view.
    expires : int, date, datetime or str
        Days from now (default 30), or the last day (``YYYY-MM-DD``, UTC);
        at most 365 days.
    download : bool
        Whether the collaborator may download single images and the whole set.
    watermark : bool
        Whether each served image names the viewer.

    Returns
    -------
    NewShare
        ``secret`` is the generated password (or the link token): shown once.
    """
    if vault.role not in SHARE_ROLES:
        raise vault._denied("share cohorts", "share")
    if link == (account is not None):
        raise InvalidInput("give a collaborator's account name, or ask for a link (not both)")
    now = vault.now()
    moment = _expiry(expires, now)
    records = verified_records(vault)
    checked = verify_dataset(vault, dataset, records=records)
    existing = shares_from_records(records)
    if link:
        name, kind = "link", "link"
    else:
        name, kind = str(account).strip().lower(), "account"
        if not _ACCOUNT_RE.match(name) or name == "link":
            raise InvalidInput("an account name is 2-64 characters: a-z, digits, '.', '_', '@', '-', "
                               "starting with a letter (and not 'link')")
        if any(s.account == name and s.status(now) == "active" for s in existing.values()):
            raise AlreadyExists("an active share already uses that account name; revoke it or choose "
                                "another name", account=name)
    share_id = _secrets.new_id()
    secret = _secrets.new_token() if link else _secrets.new_passphrase(4)
    detail = {"share": share_id, "kind": kind, "account": name,
              "password_argon2id": _secrets.hash_secret(secret),
              "dataset": str(checked.path), "cohort": checked.name, "run_id": checked.run_id,
              "manifest_sha256": checked.manifest_sha256, "expires": _iso(moment),
              "download": bool(download), "watermark": bool(watermark)}
    vault._record("share_create", detail)
    share = shares_from_records(verified_records(vault))[share_id]
    return NewShare(share, secret)


def revoke_share(vault: Vault, share_id: str) -> Share:
    """End a share now (the portal refuses it on its next request). Admin, researcher or educator."""
    if vault.role not in SHARE_ROLES:
        raise vault._denied("revoke shares", "share")
    shares = shares_from_records(verified_records(vault))
    share = shares.get(str(share_id))
    if share is None:
        raise NotFound("no share with that id; `workbench share list` shows them", share=share_id)
    if share.revoked:
        raise AlreadyExists("that share is revoked already", share=share_id)
    vault._record("share_revoke", {"share": share.share_id, "account": share.account})
    return shares_from_records(verified_records(vault))[share.share_id]


def list_shares(vault: Vault) -> pd.DataFrame:
    """Every share with its status (active, expired, revoked), never a secret or hash."""
    import pandas as pd

    now = vault.now()
    rows = [(s.share_id, s.kind, s.account, os.path.basename(s.dataset), s.expires.isoformat(timespec="minutes"),
             s.download, s.watermark, s.created_by, s.status(now))
            for s in shares_from_records(verified_records(vault)).values()]
    return pd.DataFrame(rows, columns=["share", "kind", "account", "dataset", "expires", "download",
                                       "watermark", "created_by", "status"])
