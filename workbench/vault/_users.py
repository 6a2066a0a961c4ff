"""Users and their keys: the registry, slots, grants, and rotation on removal."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from . import _crypto, _index, _keys, _log
from ._files import atomic_write, fsync_dir
from ._base import _ask_new_passphrase, _index_identity, _iso, _read_header

if TYPE_CHECKING:
    import pandas as pd


def _rekey_rows(db, old: _keys.KeySet, new: _keys.KeySet) -> dict[str, list]:
    """Re-wrap every blob key and re-seal every identity record of ``db`` under ``new``.

    Returns the new heads of the tables whose signed content changed.
    """
    def reseal(tier, sealed, label):
        plain = _crypto.open_sealed(old.keys[tier], sealed, label.encode())
        return _crypto.seal_to_public(new.keys[tier + "_pub"], plain, label.encode())

    db.execute("BEGIN IMMEDIATE")
    try:
        for blob_id, kind, tier, wrapped in db.execute(
                "SELECT blob_id, kind, tier, wrapped_key FROM blobs WHERE wrapped_key IS NOT NULL").fetchall():
            aad = _crypto.blob_aad(blob_id, kind)
            if tier in ("originals", "identities"):
                data_key = _crypto.open_sealed(old.keys[tier], wrapped, aad)
                wrapped = _crypto.seal_to_public(new.keys[tier + "_pub"], data_key, aad)
            else:
                data_key = _crypto.open_symmetric(old.keys[tier], wrapped, aad)
                wrapped = _crypto.seal_symmetric(new.keys[tier], data_key, aad)
            db.execute("UPDATE blobs SET wrapped_key = ? WHERE blob_id = ?", (wrapped, blob_id))
        for ref, sealed in db.execute("SELECT patient_ref, identity FROM patients").fetchall():
            db.execute("UPDATE patients SET identity = ? WHERE patient_ref = ?",
                       (reseal("identities", sealed, "patient:" + ref), ref))
        for photo_id, sealed in db.execute("SELECT photo_id, identifiers FROM photos").fetchall():
            db.execute("UPDATE photos SET identifiers = ? WHERE photo_id = ?",
                       (reseal("identities", sealed, "photo:" + photo_id), photo_id))
        heads = {}
        for table in _log.ROTATION_TABLES:
            columns = ", ".join(_log.TABLES[table])
            count, head = _log.table_head(db.execute(f"SELECT {columns} FROM {table} ORDER BY rowid"))
            heads[table] = [count, head.hex()]
        db.execute("COMMIT")
    except _crypto.CryptoFailure:
        db.execute("ROLLBACK")
        raise IntegrityError(
            "a wrapped key or identity record did not open during key rotation; nothing was "
            "changed; run `workbench audit verify` and `workbench vault check`"
        ) from None
    return heads


class UsersMixin:
    """The :class:`~workbench.vault.Vault` methods that users and their keys."""

    def users(self) -> pd.DataFrame:
        """Active user names and roles, from the admin-signed registry.

        ``passphrase_kdf`` is the Argon2id cost each user's slot file
        records (what a stolen copy of it costs to guess) and ``slot`` its
        format, read from the file: an older format says that a new
        passphrase (``workbench user passwd``) rewrites it.
        """
        import pandas as pd

        self._check_tables("users")
        rows = self._query("SELECT user, role, status, changed FROM users ORDER BY rowid")
        latest = {user: (role, status, changed) for user, role, status, changed in rows}
        active = sorted((u, r, c, *_keys.slot_cost(self.root, u)) for u, (r, st, c) in latest.items()
                        if st == "active")
        return pd.DataFrame(active, columns=["user", "role", "created", "passphrase_kdf", "slot"])

    def _registered(self, name: str) -> tuple[str, str] | None:
        """``(role, public key hex)`` of an active user, from the verified registry."""
        self._sync()
        entry = self._state.registry.get(name)
        return (entry[0], entry[1]) if entry and entry[2] == "active" else None

    def add_user(self, name: str, role: str, passphrase: str | None = None) -> None:
        """Create a user with ``role`` (admins only).

        The new slot wraps only the tier keys the role grants, and a new
        signing key whose public half the admin's record registers.
        """
        name = _keys.check_user_name(name)
        role = _keys.check_role(role)
        if self.role != "admin":
            raise self._denied("manage users", "admin")
        if self._registered(name) is not None or _keys.slot_path(self.root, name).exists():
            raise AlreadyExists("a user with this name already exists", user=name)
        if passphrase is None:
            passphrase = _ask_new_passphrase(name)
        _keys.check_passphrase(passphrase, user=name)
        with self._write("user_add", {"target": name, "role": role}):
            self._new_keys_for(name, role, passphrase, replace=False)

    def _new_keys_for(self, name: str, role: str, passphrase: str, *, replace: bool) -> None:
        """Inside a write: new own keys for ``name``, registered, slotted and granted the role's tiers."""
        signing, public = _crypto.generate_signing_key()
        box, box_pub = _crypto.generate_keypair()
        self._insert("users", (name, role, public.hex(), box_pub.hex(), "active", _iso(self._clock()),
                               self.user))
        _keys.write_grant(self.root, self.vault_id, name, box_pub,
                          [(self._epoch, self._keys.restricted_to(role))])
        _keys.write_slot(self.root, self.vault_id, name, role, signing=signing, box=box,
                         genesis=self._genesis, passphrase=passphrase, replace=replace)

    def set_passphrase(self, name: str, passphrase: str | None = None) -> None:
        """Change a user's passphrase: your own, or anyone's if you are an admin.

        An admin resetting someone else's passphrase gives them a new signing
        key too (the admin cannot know the old one); the registry records it.
        """
        name = _keys.check_user_name(name)
        entry = self._registered(name)
        if entry is None:
            raise NotFound("no such user in this vault", user=name)
        role = entry[0]
        if name != self.user and self.role != "admin":
            raise self._denied("change another user's passphrase", "admin")
        if passphrase is None:
            passphrase = _ask_new_passphrase(name)
        _keys.check_passphrase(passphrase, user=name)
        if name == self.user:
            with self._write("user_passwd", {"target": name}):
                _keys.write_slot(self.root, self.vault_id, name, role, signing=self._signing, box=self._box,
                                 genesis=self._genesis, passphrase=passphrase, replace=True)
            return
        with self._write("user_reset", {"target": name}):
            self._new_keys_for(name, role, passphrase, replace=True)

    def remove_user(self, name: str) -> None:
        """Remove a user and replace every key they could unwrap (admins only).

        The registry ends their signing key; every encryption tier is given a
        new key (originals, identities, derivatives and the index itself);
        every blob's wrapped key and every sealed identity record is re-done
        under the new keys in a re-keyed copy of the index, which then
        replaces the old one; each remaining user's grant is re-sealed to
        their box key. The removed user's slot and grant are deleted, and one
        put back opens nothing: their tier keys no longer open the index.
        Records they signed before stay valid. The pseudonym and lookup keys
        are kept (new ones would unlink every cohort and every patient
        lookup). Other sessions that have the vault open must open it again.
        The last admin cannot be removed.
        """
        name = _keys.check_user_name(name)
        if self.role != "admin":
            raise self._denied("manage users", "admin")
        entry = self._registered(name)
        if entry is None:
            raise NotFound("no such user in this vault", user=name)
        admins = sum(1 for e in self._state.registry.values() if e[0] == "admin" and e[2] == "active")
        if entry[0] == "admin" and admins <= 1:
            raise InvalidInput("refusing to remove the last admin; add another admin first")
        with self._exclusive():
            self._rotate_keys(name)
        self._auto_checkpoint()

    def _rotate_keys(self, removed: str) -> None:
        old, new = self._keys, _keys.rotated(self._keys)
        epoch = self._epoch + 1
        self._sync()
        registry = {u: e for u, e in self._state.registry.items() if e[2] == "active" and u != removed}
        # 1. every remaining user can open the new index before it exists
        for user, (role, _, _, box_pub) in registry.items():
            _keys.write_grant(self.root, self.vault_id, user, bytes.fromhex(box_pub),
                              [(epoch, new.restricted_to(role)), (self._epoch, old.restricted_to(role))])
        # 2. a re-keyed copy of the index with every wrapped key and sealed record re-done
        index, rotating = self.root / "index.db", self.root / "index.db.rotating"
        for path in (rotating, Path(f"{rotating}-wal"), Path(f"{rotating}-shm")):
            path.unlink(missing_ok=True)
        db = self._conn()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute(f"ATTACH DATABASE ? AS rotated KEY \"{_crypto.index_key_pragma(new.keys['index'])}\"",
                   (str(rotating),))
        db.execute("SELECT sqlcipher_export('rotated')")
        db.execute("DETACH DATABASE rotated")
        fresh = _index.connect(rotating, new.keys["index"])
        try:
            heads = _rekey_rows(fresh, old, new)
            self._db, self._keys = fresh, new
            self._data_version = self._pragma_data_version()
            entry = self._state.registry[removed]
            with self._write("user_remove", {"target": removed}):
                self._insert("users", (removed, entry[0], entry[1], entry[3], "removed",
                                       _iso(self._clock()), self.user))
            with self._write("key_rotation", {"epoch": epoch, "heads": heads}):
                pass
            fresh.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except BaseException:
            fresh.close()
            self._db, self._keys = db, old
            raise
        # 3. the new index replaces the old one (its WAL must not outlive it).
        # The header names the new epoch first: it says which keys are
        # current, for a clear error to old ones, and a removal killed after
        # the swap must still give the removed user that error, not a
        # damaged index. Killed before the swap, the old index still opens
        # with every old key (the removal is not done; running it again
        # completes it).
        db.close()
        fresh.close()
        header = _read_header(self.root)
        header["epoch"] = epoch
        atomic_write(self.root / "VAULT.json", (json.dumps(header, indent=1) + "\n").encode(),
                     overwrite=True, sync_dir=False)
        fsync_dir(self.root)
        for suffix in ("-wal", "-shm"):
            Path(f"{index}{suffix}").unlink(missing_ok=True)
        os.replace(rotating, index)
        fsync_dir(self.root)
        for suffix in ("-wal", "-shm"):
            Path(f"{rotating}{suffix}").unlink(missing_ok=True)
        self._db = _index.connect(index, new.keys["index"])
        self._index_id = _index_identity(self.root)
        self._data_version = self._pragma_data_version()
        self._epoch = epoch
        self._verified.clear()
        self._rows.clear()
        # 4. the old keys go; so do the removed user's slot and grant
        for user, (role, _, _, box_pub) in registry.items():
            _keys.write_grant(self.root, self.vault_id, user, bytes.fromhex(box_pub),
                              [(epoch, new.restricted_to(role))])
        with contextlib.suppress(NotFound):
            _keys.remove_slot(self.root, removed)
