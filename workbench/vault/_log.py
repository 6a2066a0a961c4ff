"""The vault's signed log: who wrote what, and the only source of write authority.

Every change to the vault and every access is one *record* in the ``log``
table of the index, written in the same SQLite transaction as the rows it
adds, so a crash leaves both or neither. A record holds its sequence number,
time, author, action, details, the full content of every index row it adds,
and the hash of the record before it, and it is signed with the author's own
Ed25519 key (:mod:`._crypto`). The index's other tables are a materialised
view of the log: a reader replays the log, checks each record's signature
against the registry and the author's role against what the action may
write, and then checks that each table holds exactly the rows the log says
were added, in order (a running hash per table). A row that anyone edits,
inserts, deletes or moves with the index key alone is therefore caught on the
next read that uses its table, and named.

The registry (users, roles, public keys) is itself made of log rows that only
an admin's signature can add, starting from the genesis record that every
user's key slot pins. This is The Update Framework's idea of a signed root
naming the keys of each role, in a single append-only log as Certificate
Transparency keeps one.

What the log cannot do alone is notice that it was cut short or rolled back
as a whole (an older copy of ``index.db`` put back). Each user keeps a
*witness* of the last log head they verified, outside the vault folder and
sealed with a key derived from their own signing key, and a *checkpoint*
(:func:`make_checkpoint`) can be kept anywhere else; a log that no longer
extends either is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IntegrityError, InvalidInput
from . import _crypto
from ._files import atomic_write

GENESIS = "0" * 64
_RECORD_DOMAIN = "workbench log record v1"
_CHECKPOINT_DOMAIN = "workbench checkpoint v1"
_WITNESS_DOMAIN = "workbench witness v1"
_EMPTY_HEAD = "0" * 64

#: signed tables: name -> the columns each row's content is made of, in order.
#: Columns not listed are not part of a row's content: a blob's wrapped key
#: (authenticated on its own: the blob id and kind are bound into its
#: encryption), which shredding erases and key rotation re-wraps.
TABLES: dict[str, tuple[str, ...]] = {
    "users": ("user", "role", "sign_pub", "box_pub", "status", "changed", "changed_by"),
    "patients": ("patient_ref", "lookup", "identity", "created"),
    "consent_events": ("seq", "patient_ref", "action", "scopes", "effective", "expires",
                       "identifiable", "form_blob", "recorded_by", "recorded"),
    "blobs": ("blob_id", "photo_id", "kind", "tier", "size", "file_sha256"),
    "photos": ("photo_id", "patient_ref", "content_key", "format", "width", "height", "body_site",
               "laterality", "diagnosis", "capture_date", "ingested", "ingested_by",
               "metadata_blob", "pixels_blob", "identifiers"),
    "reviews": ("photo_id", "version", "state", "reason", "regions", "reviewed_by", "reviewed"),
    "deid_results": ("blob_id", "photo_id", "policy_digest", "ext", "width", "height", "regions",
                     "verified", "warnings", "created", "created_by"),
    "shreds": ("patient_ref", "blobs", "shredded_by", "shredded"),
}

#: the column of each table that names its author (must be the record's signer)
AUTHOR_COLUMN = {
    "users": "changed_by",
    "consent_events": "recorded_by",
    "photos": "ingested_by",
    "reviews": "reviewed_by",
    "deid_results": "created_by",
    "shreds": "shredded_by",
}

CONSENT_ROLES = frozenset({"admin", "photographer", "clinician"})
INGEST_ROLES = frozenset({"admin", "photographer", "clinician"})
REVIEW_ROLES = frozenset({"admin", "clinician", "analyst"})
DERIVATIVE_ROLES = frozenset({"admin", "clinician", "analyst", "researcher", "educator"})
ADMIN_ROLES = frozenset({"admin"})
#: who may bundle a cohort and create or revoke its shares (workbench.share)
SHARE_ROLES = frozenset({"admin", "researcher", "educator"})
#: the share portal's own account: only its audit records
PORTAL_ROLES = frozenset({"portal"})
#: what the share portal records (logins, views, downloads); only it may sign them
PORTAL_ACTIONS = ("portal_start", "portal_stop", "share_login", "share_login_failed", "share_logout",
                  "share_view", "share_download")


@dataclass(frozen=True)
class Rule:
    """Who may sign an action, and which rows it may add.

    ``files`` names the kinds of file the action may add, each with the tier
    its key must be sealed to; ``other_files`` is the tier for any kind not
    reserved to an action (None: no other kind).
    """

    roles: frozenset[str]
    tables: frozenset[str] = frozenset()
    files: Mapping[str, str] = field(default_factory=dict)
    other_files: str | None = None

    def file_tier(self, kind: str) -> str | None:
        """The tier a file of ``kind`` added by this action must be sealed to (None: not allowed)."""
        if kind in self.files:
            return self.files[kind]
        return self.other_files if kind not in _RESERVED_KINDS else None


#: what each action may write, and who may sign it. Actions not listed add no
#: rows and may be signed by any active user (opens, queries, reads, refusals).
RULES: dict[str, Rule] = {
    "user_add": Rule(ADMIN_ROLES, frozenset({"users"})),
    "user_remove": Rule(ADMIN_ROLES, frozenset({"users"})),
    "user_reset": Rule(ADMIN_ROLES, frozenset({"users"})),
    "consent_grant": Rule(CONSENT_ROLES, frozenset({"patients", "consent_events", "blobs"}),
                          {"consent_form": "identities"}),
    "consent_withdraw": Rule(CONSENT_ROLES, frozenset({"patients", "consent_events"})),
    # a photo is split (_imageio.split_metadata): its pixels for the roles
    # that review redactions, the rest of the file as imported, identifiers
    # and all, for the roles that may see identities
    "ingest": Rule(INGEST_ROLES, frozenset({"patients", "blobs", "photos"}),
                   {"metadata": "identities", "pixels": "originals", "preview": "originals"}),
    # a card import's manifest names the card's files (identifiers): sealed
    # to the identities tier, written by those who may ingest
    "card_import": Rule(INGEST_ROLES, frozenset({"blobs"}), {"import_manifest": "identities"}),
    # the raw file of a RAW+JPEG shot, kept whole beside its photo: its
    # metadata cannot be split off, so it is sealed to the identities tier
    "raw_companion": Rule(INGEST_ROLES, frozenset({"blobs"}), {"raw": "identities"}),
    "render_previews": Rule(REVIEW_ROLES, frozenset({"blobs"}), {"preview": "originals"}),
    "review_state": Rule(REVIEW_ROLES, frozenset({"reviews"})),
    "deid_store": Rule(REVIEW_ROLES, frozenset({"blobs", "deid_results"}), {"deid": "derivatives"}),
    "derivative_add": Rule(DERIVATIVE_ROLES, frozenset({"blobs"}), other_files="derivatives"),
    "shred": Rule(CONSENT_ROLES, frozenset({"shreds"})),
    # re-keying re-seals identity records in place; the admin's record states
    # the new heads of the tables it re-sealed (see ROTATION_TABLES)
    "key_rotation": Rule(ADMIN_ROLES),
    # a cohort build names its manifest's digest and its patients (random
    # refs), so that a share can be checked without any key; signed only by
    # the roles that may build one
    "cohort_build": Rule(DERIVATIVE_ROLES),
    # sharing (workbench.share) adds no rows: a share (its account, Argon2id
    # hash, expiry, permissions) is the signed detail of its record, which the
    # portal reads back from the verified log; only these roles may sign one
    "share_create": Rule(SHARE_ROLES),
    "share_revoke": Rule(SHARE_ROLES),
    "share_bundle": Rule(SHARE_ROLES),
    **{action: Rule(PORTAL_ROLES) for action in PORTAL_ACTIONS},
}
#: tables whose sealed columns a key rotation re-seals
ROTATION_TABLES = ("patients", "photos")
#: blob kinds that only their own action may add
_RESERVED_KINDS = frozenset({"metadata", "pixels", "preview", "consent_form", "deid", "import_manifest", "raw"})


# --- rows --------------------------------------------------------------------


def _encode(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _decode(value):
    if isinstance(value, dict):
        return base64.b64decode(value["b"])
    return value


def row_digest(values: tuple) -> bytes:
    """Digest of a row's content (a tuple of str, int, bytes or None, as SQLite returns it)."""
    return hashlib.sha256(repr(values).encode("utf-8")).digest()


def fold(head: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(head + digest).digest()


def table_digest(rows: list[tuple]) -> str:
    """One fast digest of a whole table's rows (not incremental: see :attr:`State.verified`).

    Pickle (only ever written, never loaded) is six times faster than repr
    here. Equal rows read the same way give equal bytes; should they ever
    not, the reader just checks the rows one by one again, never the reverse.
    """
    return hashlib.sha256(pickle.dumps(rows, protocol=5)).hexdigest()


def table_head(rows) -> tuple[int, bytes]:
    """``(count, running hash)`` over rows in insertion order."""
    head = bytes(32)
    count = 0
    for values in rows:
        head = fold(head, row_digest(tuple(values)))
        count += 1
    return count, head


# --- records -----------------------------------------------------------------


@dataclass
class Record:
    """One log record as stored: the canonical body, its signature and its parsed content."""

    seq: int
    body: bytes
    sig: bytes
    content: dict = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.body + self.sig).hexdigest()

    @property
    def user(self) -> str:
        return self.content.get("user", "?")

    @property
    def action(self) -> str:
        return self.content.get("action", "?")

    def rows(self, table: str) -> list[tuple]:
        """The record's rows of ``table`` as SQLite returns them (decoded once)."""
        cache = self.__dict__.setdefault("_rows", {})
        if table not in cache:
            cache[table] = [tuple(_decode(v) for v in row)
                            for row in self.content.get("rows", {}).get(table, [])]
        return cache[table]


def canonical(content: dict) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def make_record(
    *, vault_id: str, seq: int, prev: str, time: str, user: str, action: str, detail: dict,
    rows: dict[str, list[tuple]], signing_key: bytes,
) -> Record:
    content = {
        "seq": seq, "time": time, "user": user, "action": action, "detail": detail, "prev": prev,
        "rows": {t: [[_encode(v) for v in r] for r in rs] for t, rs in rows.items() if rs},
    }
    body = canonical(content)
    sig = _crypto.sign(signing_key, _RECORD_DOMAIN, vault_id.encode() + b"|" + body)
    return Record(seq, body, sig, content)


def parse(seq: int, body: bytes, sig: bytes) -> Record:
    record = Record(seq, bytes(body), bytes(sig))
    try:
        record.content = json.loads(record.body)
    except ValueError:
        record.content = {}
    return record


# --- replay ------------------------------------------------------------------


@dataclass
class State:
    """What a replay of the log up to ``seq`` established.

    ``registry`` maps user -> ``[role, signing key hex, status, box key hex]``; ``heads``
    maps table -> ``[row count, running hash hex]``. ``verified`` maps table ->
    ``[running hash hex, table digest hex]``: a table whose rows were checked
    against that head, and a fast digest of those rows (:func:`table_digest`),
    so that a reader who finds the same rows again need not re-hash them one
    by one. It is only as good as the witness that carries it, which is
    sealed with the user's own key.
    """

    seq: int = 0
    hash: str = GENESIS
    genesis: str | None = None
    registry: dict[str, list] = field(default_factory=dict)
    heads: dict[str, list] = field(default_factory=dict)
    verified: dict[str, list] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"seq": self.seq, "hash": self.hash, "genesis": self.genesis,
                "registry": self.registry, "heads": self.heads, "verified": self.verified}

    @classmethod
    def from_json(cls, doc: dict) -> "State":
        return cls(int(doc["seq"]), str(doc["hash"]), doc.get("genesis"),
                   {k: list(v) for k, v in doc["registry"].items()},
                   {k: list(v) for k, v in doc["heads"].items()},
                   {k: list(v) for k, v in doc.get("verified", {}).items()})

    def copy(self) -> "State":
        return State.from_json(json.loads(json.dumps(self.to_json())))

    def head(self, table: str) -> tuple[int, bytes]:
        count, head = self.heads.get(table, [0, _EMPTY_HEAD])
        return int(count), bytes.fromhex(head)

    def role_of(self, user: str) -> str | None:
        entry = self.registry.get(user)
        return entry[0] if entry and entry[2] == "active" else None

    def public_key(self, user: str) -> bytes | None:
        entry = self.registry.get(user)
        return bytes.fromhex(entry[1]) if entry else None

    def box_key(self, user: str) -> bytes | None:
        entry = self.registry.get(user)
        return bytes.fromhex(entry[3]) if entry else None


class Broken(Exception):
    """A record failed a check: carries the record's number, its claimed author and why."""

    def __init__(self, seq: int, user: str, reason: str):
        super().__init__(reason)
        self.seq, self.user, self.reason = seq, user, reason


def apply(state: State, record: Record, vault_id: str) -> None:
    """Check one record against ``state`` and fold it in. Raises :class:`Broken`."""
    c = record.content
    seq = record.seq
    if not c or c.get("seq") != seq:
        raise Broken(seq, record.user, f"record {seq} is not readable or carries another number")
    if seq != state.seq + 1:
        raise Broken(state.seq + 1, record.user,
                     f"record {state.seq + 1} is missing (record {seq} follows record {state.seq}): "
                     "records were deleted")
    if c.get("prev") != state.hash:
        raise Broken(seq, record.user, f"record {seq} does not link to the record before it: "
                                       "records were deleted, inserted or reordered")
    user = c.get("user")
    action = c.get("action")
    rows = c.get("rows", {})
    if seq == 1:
        role, public = _genesis(record)
    else:
        role = state.role_of(user)
        public = state.public_key(user)
        if role is None or public is None:
            raise Broken(seq, str(user), f"record {seq} is signed as {user!r}, who is not an active "
                                         "user of the vault at that point")
    try:
        _crypto.verify_signature(public, record.sig, _RECORD_DOMAIN, vault_id.encode() + b"|" + record.body)
    except _crypto.CryptoFailure:
        raise Broken(seq, str(user), f"record {seq}'s signature does not verify with {user}'s key: "
                                     "the record was altered or forged") from None
    if seq > 1:
        _authorise(seq, user, role, action, record, state)
    for table in rows:
        count, head = state.head(table)
        for values in record.rows(table):
            head = fold(head, row_digest(values))
            count += 1
            if table == "users":
                name, urole, pub, box, status = values[:5]
                state.registry[name] = [urole, pub, status, box]
        state.heads[table] = [count, head.hex()]
    if action == "key_rotation" and seq > 1:
        heads = c.get("detail", {}).get("heads", {})
        if set(heads) - set(ROTATION_TABLES):
            raise Broken(seq, str(user), f"record {seq} resets tables a key rotation does not touch")
        for table, (count, head) in heads.items():
            if int(count) != state.head(table)[0]:
                raise Broken(seq, str(user), f"record {seq} changes the number of {table} rows")
            state.heads[table] = [int(count), str(head)]
    state.seq = seq
    state.hash = record.hash
    if seq == 1:
        state.genesis = record.hash


def _genesis(record: Record) -> tuple[str, bytes]:
    c = record.content
    users = record.rows("users")
    if (c.get("action") != "vault_init" or set(c.get("rows", {})) != {"users"} or len(users) != 1
            or len(users[0]) != len(TABLES["users"]) or users[0][0] != c.get("user")
            or users[0][1] != "admin" or users[0][4] != "active"):
        raise Broken(1, str(c.get("user")), "record 1 is not the vault's genesis record")
    return "admin", bytes.fromhex(users[0][2])


def _authorise(seq: int, user: str, role: str, action: str, record: Record, state: State) -> None:
    rows = record.content.get("rows", {})
    rule = RULES.get(action)
    if rule is None:
        if rows:
            raise Broken(seq, user, f"record {seq} ({action}) adds rows, which that action never does")
        return
    if role not in rule.roles:
        raise Broken(seq, user, f"record {seq}: {user} ({role}) may not {action.replace('_', ' ')}")
    for table in rows:
        if table not in rule.tables or table not in TABLES:
            raise Broken(seq, user, f"record {seq} ({action}) adds rows to {table}, which it may not")
        columns = TABLES[table]
        author = AUTHOR_COLUMN.get(table)
        for values in record.rows(table):
            if len(values) != len(columns):
                raise Broken(seq, user, f"record {seq} adds a malformed {table} row")
            row = dict(zip(columns, values))
            if author and row[author] != user:
                raise Broken(seq, user, f"record {seq} adds a {table} row in another user's name")
            if table == "blobs":
                if row["tier"] != rule.file_tier(row["kind"]):
                    raise Broken(seq, user, f"record {seq} ({action}) adds a {row['kind']} file "
                                            f"of the {row['tier']} tier, which it may not")
            if table == "users":
                _check_user_row(seq, user, action, row, state)
    photos = record.rows("photos")
    if photos:  # a photo's files must be added by the same record, for that photo
        blobs = {b[0]: b for b in record.rows("blobs")}
        for values in photos:
            photo = dict(zip(TABLES["photos"], values))
            for column, kind in (("metadata_blob", "metadata"), ("pixels_blob", "pixels")):
                blob = blobs.get(photo[column])
                if blob is None or blob[1] != photo["photo_id"] or blob[2] != kind:
                    raise Broken(seq, user, f"record {seq} links a photo to a file it did not add")


def _check_user_row(seq: int, user: str, action: str, row: dict, state: State) -> None:
    current = state.registry.get(row["user"])
    wanted = {"user_add": "active", "user_reset": "active", "user_remove": "removed"}[action]
    if row["status"] != wanted:
        raise Broken(seq, user, f"record {seq} ({action}) sets an account to {row['status']}")
    if action == "user_add" and current is not None and current[2] == "active":
        raise Broken(seq, user, f"record {seq} adds an account that exists")
    if action in ("user_reset", "user_remove") and (current is None or current[2] != "active"
                                                    or current[0] != row["role"]):
        raise Broken(seq, user, f"record {seq} ({action}) changes an account that is not active "
                                "or changes its role")


def replay(records, state: State, vault_id: str) -> State:
    """Fold ``records`` (in order) into a copy of ``state``. Raises :class:`Broken`."""
    state = state.copy()
    for record in records:
        apply(state, record, vault_id)
    return state


# --- witnesses and checkpoints -----------------------------------------------


def state_dir() -> Path:
    """Where each user's witness of the log is kept: outside any vault folder."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "workbench" / "witness"


def _witness_key(signing_key: bytes) -> bytes:
    return _crypto.sha256(b"workbench witness key v1\x00" + signing_key)


def witness_path(vault_id: str, user: str) -> Path:
    return state_dir() / vault_id / f"{user}.json"


def load_witness(vault_id: str, user: str, signing_key: bytes) -> State | None:
    """The last state this user verified, or None (first open on this account and machine)."""
    path = witness_path(vault_id, user)
    try:
        doc = json.loads(path.read_text("utf-8"))
        mac = doc.pop("mac")
        state = State.from_json(doc["state"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    expected = _crypto.keyed_digest(_witness_key(signing_key), _WITNESS_DOMAIN,
                                    vault_id.encode() + b"|" + canonical(doc))
    if not _crypto.constant_time_equal(mac, expected):
        return None  # not ours: verify from the start instead
    return state


def save_witness(vault_id: str, user: str, signing_key: bytes, state: State) -> None:
    doc = {"state": state.to_json()}
    doc["mac"] = _crypto.keyed_digest(_witness_key(signing_key), _WITNESS_DOMAIN,
                                      vault_id.encode() + b"|" + canonical(doc))
    path = witness_path(vault_id, user)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, canonical(doc) + b"\n", overwrite=True, sync_dir=False)
    except OSError:
        pass  # a witness saves work and adds a check; the vault works without one


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the log had ``seq`` records ending in ``hash`` at ``time``."""

    vault_id: str
    seq: int
    hash: str
    state: str
    time: str
    user: str
    sig: str

    def text(self) -> str:
        lines = ["workbench checkpoint v1", f"vault {self.vault_id}", f"records {self.seq}",
                 f"head {self.hash}", f"state {self.state}", f"time {self.time}",
                 f"signed-by {self.user}", f"signature {self.sig}"]
        return "\n".join(lines) + "\n"


def state_digest(state: State) -> str:
    return hashlib.sha256(canonical({"heads": state.heads, "registry": state.registry})).hexdigest()


def make_checkpoint(vault_id: str, state: State, time: str, user: str, signing_key: bytes) -> Checkpoint:
    message = _checkpoint_message(vault_id, state.seq, state.hash, state_digest(state), time, user)
    sig = _crypto.sign(signing_key, _CHECKPOINT_DOMAIN, message)
    return Checkpoint(vault_id, state.seq, state.hash, state_digest(state), time, user, sig.hex())


def _checkpoint_message(vault_id, seq, head, digest, time, user) -> bytes:
    return f"{vault_id}|{seq}|{head}|{digest}|{time}|{user}".encode()


def parse_checkpoint(text: str) -> Checkpoint:
    fields = {}
    try:
        lines = text.strip().splitlines()
        if lines[0].strip() != "workbench checkpoint v1":
            raise ValueError
        for line in lines[1:]:
            key, value = line.split(" ", 1)
            fields[key] = value.strip()
        return Checkpoint(fields["vault"], int(fields["records"]), fields["head"], fields["state"],
                          fields["time"], fields["signed-by"], fields["signature"])
    except (ValueError, KeyError, IndexError):
        raise InvalidInput(
            "that file is not a workbench checkpoint; give the file written by "
            "`workbench vault checkpoint --to FILE`"
        ) from None


def check_checkpoint(cp: Checkpoint, vault_id: str, state_at, registry_keys) -> None:
    """Raise ``IntegrityError`` unless the log still extends ``cp``.

    ``state_at(seq)`` returns the hash of record ``seq`` (or None when the log
    is shorter); ``registry_keys(user)`` the public keys that user ever had.
    """
    if cp.vault_id != vault_id:
        raise InvalidInput("that checkpoint belongs to another vault")
    message = _checkpoint_message(cp.vault_id, cp.seq, cp.hash, cp.state, cp.time, cp.user)
    for public in registry_keys(cp.user):
        try:
            _crypto.verify_signature(public, bytes.fromhex(cp.sig), _CHECKPOINT_DOMAIN, message)
            break
        except (_crypto.CryptoFailure, ValueError):
            continue
    else:
        raise IntegrityError(
            "the checkpoint's signature does not verify with its signer's key: it was altered, "
            "or the vault's registry was rewritten; keep the checkpoint and ask an admin",
            checkpoint_records=cp.seq,
        )
    actual = state_at(cp.seq)
    if actual is None:
        raise IntegrityError(
            f"the vault's log is shorter than the checkpoint of {cp.time} ({cp.seq} records): "
            "records were cut off or the vault was rolled back to an older copy; restore the "
            "newest backup and keep this checkpoint",
            checkpoint_records=cp.seq,
        )
    if not _crypto.constant_time_equal(actual, cp.hash):
        raise IntegrityError(
            f"the vault's log no longer extends the checkpoint of {cp.time}: record {cp.seq} "
            "differs, so the log was rewritten or rolled back; restore the newest backup",
            checkpoint_records=cp.seq,
        )


def refuse_inside(path: Path, root: Path) -> Path:
    """A checkpoint kept inside the vault folder protects nothing: refuse it."""
    path = Path(path).expanduser()
    resolved = path.resolve()
    if resolved == root.resolve() or root.resolve() in resolved.parents:
        raise InvalidInput(
            "keep checkpoints outside the vault folder (a removable drive, the admin's own "
            "folder): a copy of the vault would carry its checkpoint with it"
        )
    return path

