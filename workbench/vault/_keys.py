"""Key tiers, roles and per-user key slots.

A vault has one random key set, split into tiers. Each user's slot wraps only
the tiers that the user's role grants, under a key derived from the user's
passphrase. What a role may read is therefore decided by which keys it holds,
not by a check in Python that a user's own kernel could skip.

A slot holds the user's own keys: an Ed25519 signing key, with which they
sign every record they add to the vault's log (what a role may *write* is
decided by whose signature the log accepts, see ``_log``), an X25519 box key
that opens their *grant* (the tier keys, sealed to it by an admin), and the
hash of the log's genesis record, so that a log rewritten from its first
record is refused.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AccessDenied, AlreadyExists, IntegrityError, InvalidInput, NotFound
from . import _crypto
from ._files import atomic_write

#: tier name -> what it protects
TIERS = {
    "originals": "X25519 private key: open identifiable originals and their previews",
    "originals_pub": "X25519 public key: seal new originals (write-only)",
    "identities": "X25519 private key: open patient identities and photo identifiers",
    "identities_pub": "X25519 public key: seal new identities (write-only)",
    "derivatives": "AES key: de-identified derivatives",
    "index": "SQLCipher key of the index",
    "pseudonym": "HMAC key for de-identified pseudonyms",
    "lookup": "HMAC key: find a patient by MRN, find duplicate photos",
}

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(TIERS),
    "photographer": frozenset({"originals_pub", "identities_pub", "index", "lookup"}),
    "clinician": frozenset(TIERS),
    "analyst": frozenset(
        {"originals", "originals_pub", "derivatives", "index", "pseudonym"}
    ),
    "researcher": frozenset({"derivatives", "index", "pseudonym"}),
    "educator": frozenset({"derivatives", "index", "pseudonym"}),
    # the share portal (workbench.share): the index key alone, to read the
    # signed log (its shares, consent withdrawals) and append its own audit
    # records with its own signing key. No key of any file, identity or
    # pseudonym: it serves only de-identified files from cohort folders.
    "portal": frozenset({"index"}),
}

ROLE_HELP = {
    "admin": "everything, including user management",
    "photographer": "add photos and consent; cannot read originals back",
    "clinician": "read originals and patient identities",
    "analyst": "read originals for redaction review; no identities",
    "researcher": "de-identified derivatives and non-identifying fields only",
    "educator": "de-identified derivatives and non-identifying fields only",
    "portal": "the share portal's own account: signs its audit records; decrypts no file",
}

_USER_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
#: Version 3 records each slot's Argon2id cost (and binds it into the slot's
#: associated data); version 2 slots, written before, used ``ARGON2_COST`` and
#: still open. ``user passwd`` rewrites a slot as version 3.
_SLOT_VERSION = 3
_SLOT_VERSIONS = (2, 3)

#: The environment variable that sets the Argon2id cost of new slots, in the
#: PHC string's form: ``m=<KiB>,t=<passes>,p=<lanes>``.
ARGON2_ENV = "WORKBENCH_ARGON2"


def argon2_cost() -> tuple[int, int, int]:
    """The Argon2id cost (passes, KiB, lanes) new slots are written with.

    ``_crypto.ARGON2_COST`` unless ``WORKBENCH_ARGON2`` says otherwise, e.g.
    ``m=131072,t=4,p=4`` to make a stolen slot dearer to guess, or the floor
    ``m=19456,t=2,p=1`` that the test suite uses. Never below the floor.
    """
    text = os.environ.get(ARGON2_ENV, "").strip()
    if not text:
        return _crypto.ARGON2_COST
    floor_t, floor_m, floor_p = _crypto.ARGON2_FLOOR
    top_t, top_m, top_p = _crypto.ARGON2_CEILING
    try:
        pairs = dict(part.split("=", 1) for part in text.split(","))
        if sorted(pairs) != ["m", "p", "t"]:
            raise ValueError
        cost = (int(pairs["t"]), int(pairs["m"]), int(pairs["p"]))
    except ValueError:
        cost = None
    if cost is None or not _crypto.argon2_cost_allowed(cost):
        raise InvalidInput(
            f"{ARGON2_ENV} must read m=<KiB>,t=<passes>,p=<lanes> with m {floor_m}-{top_m}, "
            f"t {floor_t}-{top_t} and p {floor_p}-{top_p}; unset it for the default cost"
        )
    return cost


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_RE.match(name):
        raise InvalidInput(
            "a user name must be 1-32 characters: lower-case letters, digits, '.', '_' "
            "or '-', starting with a letter"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(
            f"unknown role {role!r}; choose one of: {', '.join(ROLES)}", role=role
        )
    return role


@dataclass(frozen=True, repr=False)
class KeySet:
    """The tier keys one user unwrapped. ``repr`` never shows key material."""

    role: str
    keys: dict[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"KeySet(role={self.role!r}, tiers={sorted(self.keys)})"

    def has(self, tier: str) -> bool:
        return tier in self.keys

    def get(self, tier: str, action: str) -> bytes:
        """Return a tier key, or raise ``AccessDenied`` naming the action refused."""
        try:
            return self.keys[tier]
        except KeyError:
            raise AccessDenied(
                f"the {self.role} role cannot {action}; ask an admin for a role that may",
                role=self.role,
                tier=tier,
            ) from None

    def restricted_to(self, role: str) -> "KeySet":
        """The subset of this key set that ``role`` is granted."""
        wanted = ROLES[check_role(role)]
        missing = wanted - set(self.keys)
        if missing:
            raise AccessDenied(
                f"cannot grant the {role} role: your own keys lack tiers it needs",
                role=self.role,
            )
        return KeySet(role=role, keys={t: self.keys[t] for t in wanted})


#: the tiers a rotation replaces: every key that encrypts. The HMAC keys
#: (pseudonym, lookup) stay: new ones would unlink every cohort's pseudonyms
#: and every patient's lookup.
ROTATED_TIERS = frozenset({"originals", "originals_pub", "identities", "identities_pub",
                           "derivatives", "index"})


def rotated(keyset: KeySet) -> KeySet:
    """A copy of a complete key set with every :data:`ROTATED_TIERS` key new."""
    fresh = generate_keyset().keys
    return KeySet(role=keyset.role, keys={t: fresh[t] if t in ROTATED_TIERS else k
                                          for t, k in keyset.keys.items()})


def generate_keyset() -> KeySet:
    """A complete, fresh key set for a new vault (the admin's)."""
    orig_priv, orig_pub = _crypto.generate_keypair()
    id_priv, id_pub = _crypto.generate_keypair()
    keys = {
        "originals": orig_priv,
        "originals_pub": orig_pub,
        "identities": id_priv,
        "identities_pub": id_pub,
        "derivatives": _crypto.random_key(),
        "index": _crypto.random_key(),
        "pseudonym": _crypto.random_key(),
        "lookup": _crypto.random_key(),
    }
    return KeySet(role="admin", keys=keys)


def _slot_aad(vault_id: str, user: str, role: str, version: int, cost: tuple[int, int, int]) -> bytes:
    head = f"workbench slot v{version}|{vault_id}|{user}|{role}"
    if version == 2:
        return head.encode()
    passes, memory_kib, lanes = cost
    return f"{head}|argon2id m={memory_kib},t={passes},p={lanes}".encode()


def slot_path(root: Path, user: str) -> Path:
    return root / "users" / f"{check_user_name(user)}.slot"


@dataclass(frozen=True, repr=False)
class Slot:
    """What a user's passphrase unlocks.

    The slot file (passphrase-wrapped) holds the user's own keys: an Ed25519
    signing key, an X25519 *box* key and the genesis pin. The tier keys of
    their role are in a separate *grant* file, sealed to their box key, so
    that an admin can hand everyone new tier keys (after removing a user)
    without knowing anyone's passphrase. A grant holds one key set per key
    epoch, newest first, while a rotation is in progress.
    """

    keysets: tuple[tuple[int, KeySet], ...]
    signing: bytes
    box: bytes
    genesis: str

    @property
    def keyset(self) -> KeySet:
        return self.keysets[0][1]

    @property
    def role(self) -> str:
        return self.keysets[0][1].role

    def __repr__(self) -> str:
        return f"Slot(role={self.role!r}, epochs={[e for e, _ in self.keysets]})"


def grant_path(root: Path, user: str) -> Path:
    return root / "users" / f"{check_user_name(user)}.grant"


def _grant_aad(vault_id: str, user: str, role: str, epoch: int) -> bytes:
    return f"workbench grant v1|{vault_id}|{user}|{role}|{epoch}".encode()


def write_grant(
    root: Path, vault_id: str, user: str, box_pub: bytes, keysets: list[tuple[int, KeySet]]
) -> None:
    """Seal ``keysets`` (``(epoch, KeySet)``, newest first) to a user's box key, atomically."""
    epochs = []
    for epoch, keyset in keysets:
        payload = json.dumps({t: _crypto.b64e(k) for t, k in sorted(keyset.keys.items())}).encode()
        sealed = _crypto.seal_to_public(box_pub, payload, _grant_aad(vault_id, user, keyset.role, epoch))
        epochs.append({"epoch": epoch, "role": keyset.role, "sealed": _crypto.b64e(sealed)})
    doc = {"version": 1, "user": user, "epochs": epochs}
    atomic_write(grant_path(root, user), (json.dumps(doc, indent=1) + "\n").encode(), overwrite=True)


def read_grant(root: Path, vault_id: str, user: str, role: str, box: bytes) -> list[tuple[int, KeySet]]:
    """The key sets a user's grant holds for ``role``, newest first (raises ``CryptoFailure``)."""
    try:
        doc = json.loads(grant_path(root, user).read_text("utf-8"))
        out = []
        for entry in doc["epochs"]:
            epoch = int(entry["epoch"])
            if entry["role"] != role:
                continue
            payload = _crypto.open_sealed(box, _crypto.b64d(entry["sealed"]),
                                          _grant_aad(vault_id, user, role, epoch))
            keys = {t: _crypto.b64d(v) for t, v in json.loads(payload).items()}
            if set(keys) == ROLES[role]:
                out.append((epoch, KeySet(role=role, keys=keys)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _crypto.CryptoFailure() from exc
    if not out:
        raise _crypto.CryptoFailure()
    return sorted(out, key=lambda e: -e[0])


def write_slot(
    root: Path, vault_id: str, user: str, role: str, *, signing: bytes, box: bytes, genesis: str,
    passphrase: str, replace: bool,
) -> None:
    """Wrap a user's own keys under ``passphrase`` and store the slot atomically."""
    check_passphrase(passphrase, user=user)
    path = slot_path(root, user)
    if path.exists() and not replace:
        raise AlreadyExists(
            "a user with this name already exists; choose another name or use "
            "`workbench user passwd`",
            user=user,
        )
    cost = argon2_cost()
    salt = _crypto.new_salt()
    kek = _crypto.derive_kek(passphrase, salt, cost)
    payload = json.dumps({
        "signing": _crypto.b64e(signing),
        "box": _crypto.b64e(box),
        "genesis": genesis,
    }).encode()
    wrapped = _crypto.seal_symmetric(kek, payload, _slot_aad(vault_id, user, role, _SLOT_VERSION, cost))
    passes, memory_kib, lanes = cost
    doc = {
        "version": _SLOT_VERSION,
        "user": user,
        "role": role,
        "argon2id": {"m": memory_kib, "t": passes, "p": lanes},
        "salt": _crypto.b64e(salt),
        "wrapped": _crypto.b64e(wrapped),
    }
    atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode(), overwrite=replace)


# A fixed salt for the dummy derivation, so an unknown user costs as much as a
# wrong passphrase and the two cannot be told apart by timing.
_DUMMY_SALT = b"\x00" * _crypto.SALT_BYTES


def _dummy_cost() -> tuple[int, int, int]:
    """The cost of the dummy derivation: that of this vault's new slots."""
    try:
        return argon2_cost()
    except InvalidInput:
        return _crypto.ARGON2_COST


def _denied() -> AccessDenied:
    return AccessDenied(
        "could not unlock the vault: the user name or passphrase is wrong; "
        "check both and try again"
    )


def _recorded_cost(doc: dict) -> tuple[int, tuple[int, int, int]]:
    """A slot file's version and the Argon2id cost (passes, KiB, lanes) it is opened at; ValueError if unusable.

    Version 2 recorded no cost: it is always the default one. The cost a
    slot records is bound into its associated data, so an edited one opens
    nothing; one outside the floor and ceiling is not even tried.
    """
    version = doc.get("version")
    if version not in _SLOT_VERSIONS:
        raise ValueError
    if version == 2:
        return version, _crypto.ARGON2_COST
    kdf = doc["argon2id"]
    if sorted(kdf) != ["m", "p", "t"]:
        raise ValueError
    cost = (kdf["t"], kdf["m"], kdf["p"])
    if not _crypto.argon2_cost_allowed(cost):
        raise ValueError
    return version, cost


def slot_cost(root: Path, user: str) -> tuple[str, str]:
    """What guards ``user``'s slot, as ``workbench user list`` shows it (no secret: the file says as much).

    ``("argon2id m=65536,t=3,p=4", "version 3")``; a version-2 slot says
    that a new passphrase rewrites it; a missing or unreadable slot says so.
    """
    try:
        doc = json.loads(slot_path(root, user).read_text("utf-8"))
        version, (passes, memory_kib, lanes) = _recorded_cost(doc)
    except FileNotFoundError:
        return "", "missing"
    except (InvalidInput, OSError, ValueError, KeyError, TypeError, AttributeError):
        return "", "unreadable"
    kdf = f"argon2id m={memory_kib},t={passes},p={lanes}"
    return kdf, (f"version {version}" if version == _SLOT_VERSION
                 else f"version {version}: run user passwd")


def unlock_slot(root: Path, vault_id: str, user: str, passphrase: str) -> Slot:
    """Unwrap a user's keys. Any failure is the same ``AccessDenied``."""
    try:
        path = slot_path(root, user)
        doc = json.loads(path.read_text("utf-8"))
        role = doc["role"]
        salt = _crypto.b64d(doc["salt"])
        wrapped = _crypto.b64d(doc["wrapped"])
        if role not in ROLES or doc.get("user") != user:
            raise ValueError
        version, cost = _recorded_cost(doc)
    except (InvalidInput, OSError, ValueError, KeyError, TypeError, AttributeError,
            _crypto.CryptoFailure):
        _crypto.derive_kek(passphrase or "", _DUMMY_SALT, _dummy_cost())
        raise _denied() from None
    kek = _crypto.derive_kek(passphrase, salt, cost)
    try:
        payload = json.loads(_crypto.open_symmetric(kek, wrapped, _slot_aad(vault_id, user, role, version, cost)))
        signing = _crypto.b64d(payload["signing"])
        box = _crypto.b64d(payload["box"])
        genesis = str(payload["genesis"])
        keysets = read_grant(root, vault_id, user, role, box)
    except (_crypto.CryptoFailure, ValueError, KeyError, TypeError, AttributeError):
        raise _denied() from None
    return Slot(tuple(keysets), signing, box, genesis)


# --- capabilities: an unlocked slot handed to a child process ----------------

_CAPABILITY_VERSION = 1


def _capability_aad(vault_id: str, user: str) -> bytes:
    return f"workbench capability v{_CAPABILITY_VERSION}|{vault_id}|{user}".encode()


def seal_capability(vault_id: str, user: str, slot: Slot, expires: str) -> tuple[bytes, bytes]:
    """What ``slot``'s passphrase unlocks, sealed under a fresh one-time key until ``expires``.

    Returns ``(key, sealed)``: the key goes to the child process, the sealed
    bytes into a file only this account can read, deleted when the child is
    done. Neither holds the passphrase, and the pair opens nothing once the
    file is gone or the time has passed.
    """
    key = _crypto.random_key()
    payload = json.dumps({
        "role": slot.role, "signing": _crypto.b64e(slot.signing), "box": _crypto.b64e(slot.box),
        "genesis": slot.genesis, "expires": expires,
    }).encode()
    return key, _crypto.seal_symmetric(key, payload, _capability_aad(vault_id, user))


def open_capability(root: Path, vault_id: str, user: str, key: bytes, sealed: bytes) -> tuple[Slot, str]:
    """The slot a capability carries and when it expires; any failure is ``AccessDenied``."""
    try:
        doc = json.loads(_crypto.open_symmetric(key, sealed, _capability_aad(vault_id, user)))
        box = _crypto.b64d(doc["box"])
        keysets = read_grant(root, vault_id, user, doc["role"], box)
        slot = Slot(tuple(keysets), _crypto.b64d(doc["signing"]), box, str(doc["genesis"]))
        return slot, str(doc["expires"])
    except (_crypto.CryptoFailure, ValueError, KeyError, TypeError):
        raise AccessDenied(
            "the vault capability handed to this process does not open this vault for this "
            "user; run the command again"
        ) from None


def list_slots(root: Path) -> list[dict]:
    """User names and roles (slot files are readable without a key)."""
    out = []
    for path in sorted((root / "users").glob("*.slot")):
        try:
            doc = json.loads(path.read_text("utf-8"))
            out.append({"user": doc["user"], "role": doc["role"]})
        except (OSError, ValueError, KeyError) as exc:
            raise IntegrityError(
                "a user key slot is damaged; restore the users/ folder from a backup",
                slot=path.name,
            ) from exc
    return out


def remove_slot(root: Path, user: str) -> None:
    """Delete a user's slot and grant."""
    path = slot_path(root, user)
    if not path.exists():
        raise NotFound("no such user in this vault; `workbench user list` shows them", user=user)
    os.unlink(path)
    grant_path(root, user).unlink(missing_ok=True)


#: a new passphrase has at least this many characters ...
MIN_PASSPHRASE_LENGTH = 12
#: ... and at least this zxcvbn score: 3 is "safely unguessable" (about 10^8
#: guesses and more), which Argon2id's cost per guess turns into years offline
MIN_PASSPHRASE_SCORE = 3
# zxcvbn refuses longer input; a prefix that scores well is enough
_SCORED_LENGTH = 72


def check_passphrase(passphrase: str, *, user: str | None = None) -> str:
    """Refuse a new passphrase that is short or easy to guess; return it unchanged.

    The one place the rule lives (:func:`write_slot` applies it to every
    passphrase it wraps keys under). Opening a vault never applies it, so a
    passphrase set before the rule existed still opens.

    Parameters
    ----------
    passphrase : str
        The new passphrase.
    user : str, optional
        The user it is for: a passphrase built on the user name scores lower.

    Raises
    ------
    InvalidInput
        Fewer than ``MIN_PASSPHRASE_LENGTH`` characters, or a zxcvbn score
        below ``MIN_PASSPHRASE_SCORE`` (a common password, a keyboard run,
        repeats, a date). The message never contains the passphrase.
    """
    advice = ("choose at least 12 characters, e.g. three or four uncommon words with spaces "
              "or dashes between them")
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise InvalidInput(f"this passphrase is too short; {advice}")
    hints = ["workbench", "vault"] + ([user] if user else [])
    from zxcvbn import zxcvbn  # about 40 ms to load: only when a passphrase is chosen

    result = zxcvbn(passphrase[:_SCORED_LENGTH], user_inputs=hints)
    if result["score"] < MIN_PASSPHRASE_SCORE:
        # zxcvbn's warning is a fixed sentence about the kind of pattern, never the text
        warning = result["feedback"].get("warning", "").rstrip(".")
        raise InvalidInput(
            f"this passphrase is too easy to guess{f' ({warning})' if warning else ''}; {advice}, "
            "and no common password, name, date or keyboard run"
        )
    return passphrase
