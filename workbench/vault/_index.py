"""The vault index: one SQLite database encrypted whole with SQLCipher.

Every page is encrypted and authenticated (SQLCipher's per-page HMAC), so a
damaged or edited page is an error, never a silently wrong answer.
Identifiers never sit in plain columns even here: they are sealed to the
identities tier, because every role holds the index key.
"""

from __future__ import annotations

from pathlib import Path

from sqlcipher3 import dbapi2 as sqlcipher

from ..errors import IntegrityError
from . import _crypto

SCHEMA_VERSION = 4

# The tables other than ``meta`` and ``log`` are a materialised view of the
# signed log (see ``_log``): rows are only ever added, in the same
# transaction as the log record that lists them, and every read checks them
# against the log. Nothing is updated in place except a blob's wrapped key
# (erased by shredding), which is not part of a row's signed content.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    sig BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    sign_pub TEXT NOT NULL,
    box_pub TEXT NOT NULL,
    status TEXT NOT NULL,
    changed TEXT NOT NULL,
    changed_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS patients (
    patient_ref TEXT PRIMARY KEY,
    lookup TEXT NOT NULL UNIQUE,
    identity BLOB NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_ref TEXT NOT NULL REFERENCES patients(patient_ref),
    action TEXT NOT NULL CHECK (action IN ('grant', 'withdraw')),
    scopes TEXT NOT NULL,
    effective TEXT NOT NULL,
    expires TEXT,
    identifiable INTEGER NOT NULL DEFAULT 0,
    form_blob TEXT,
    recorded_by TEXT NOT NULL,
    recorded TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs (
    blob_id TEXT PRIMARY KEY,
    photo_id TEXT,
    kind TEXT NOT NULL,
    tier TEXT NOT NULL,
    size INTEGER NOT NULL,
    file_sha256 TEXT NOT NULL,
    wrapped_key BLOB          -- NULL once shredded
);
CREATE INDEX IF NOT EXISTS blobs_photo ON blobs(photo_id);
CREATE TABLE IF NOT EXISTS photos (
    photo_id TEXT PRIMARY KEY,
    patient_ref TEXT NOT NULL REFERENCES patients(patient_ref),
    content_key TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    body_site TEXT NOT NULL,
    laterality TEXT,
    diagnosis TEXT,
    capture_date TEXT,
    ingested TEXT NOT NULL,
    ingested_by TEXT NOT NULL,
    metadata_blob TEXT NOT NULL REFERENCES blobs(blob_id),   -- the file as imported but its pixels (identities tier)
    pixels_blob TEXT NOT NULL REFERENCES blobs(blob_id),     -- its pixels alone (originals tier)
    identifiers BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS photos_patient ON photos(patient_ref);
-- one row per saved review of a photo: its version (1, 2, ... per photo),
-- decision, and the regions a person marked (JSON: kind, box, author, time)
CREATE TABLE IF NOT EXISTS reviews (
    photo_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    regions TEXT NOT NULL,
    reviewed_by TEXT NOT NULL,
    reviewed TEXT NOT NULL,
    UNIQUE (photo_id, version)
);
CREATE INDEX IF NOT EXISTS reviews_photo ON reviews(photo_id);
CREATE TABLE IF NOT EXISTS deid_results (
    blob_id TEXT PRIMARY KEY,
    photo_id TEXT NOT NULL,
    policy_digest TEXT NOT NULL,
    ext TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    regions TEXT NOT NULL,
    verified INTEGER NOT NULL,
    warnings TEXT NOT NULL,
    created TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deid_photo ON deid_results(photo_id);
CREATE TABLE IF NOT EXISTS shreds (
    patient_ref TEXT NOT NULL,
    blobs TEXT NOT NULL,
    shredded_by TEXT NOT NULL,
    shredded TEXT NOT NULL
);
"""


def connect(path: Path, index_key: bytes, *, create: bool = False):
    """Open (or create) the encrypted index.

    Every page is authenticated when it is read, so a damaged page is an
    error on the read that meets it; :func:`check_pages` reads them all (for
    ``vault check`` and ``audit verify``: at 50,000 photos that costs a third
    of a second, too much for every open). Raises :class:`WrongKey` when the
    key does not open the first page (another key epoch, or damage there),
    ``IntegrityError`` for other damage.
    """
    if not create and not path.exists():
        raise IntegrityError(
            "the vault's index file is missing; restore index.db from a backup"
        )
    try:
        db = sqlcipher.connect(str(path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA cipher_log_level = NONE")
        db.execute(f'PRAGMA key = "{_crypto.index_key_pragma(index_key)}"')
        if not create:
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlcipher.DatabaseError:
                db.close()
                raise WrongKey() from None
        db.execute("PRAGMA cipher_memory_security = ON")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA secure_delete = ON")
        db.execute("PRAGMA foreign_keys = ON")
        # Every statement is IF NOT EXISTS: tables added by later versions
        # appear in older vaults on first open.
        db.executescript(SCHEMA)
        if create:
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None:
            raise sqlcipher.DatabaseError("unknown schema version")
        if version[0] != str(SCHEMA_VERSION):
            db.close()
            raise IntegrityError(
                f"this vault's index has format version {version[0]} and this workbench reads "
                f"version {SCHEMA_VERSION}; open it with the workbench release that made it"
            )
    except sqlcipher.Error as exc:
        raise damaged() from exc
    return db


def check_pages(db) -> None:
    """Authenticate every page and check the structure; raise ``IntegrityError`` if any fails."""
    try:
        problems = db.execute("PRAGMA cipher_integrity_check").fetchall()
        ok = db.execute("PRAGMA quick_check").fetchone()
    except sqlcipher.Error as exc:
        raise damaged() from exc
    if problems or not ok or ok[0] != "ok":
        raise damaged()


class WrongKey(Exception):
    """The key does not open the index's first page: another key epoch, or a damaged header."""


def damaged() -> IntegrityError:
    return IntegrityError(
        "the vault's index failed its integrity check (a damaged or altered page); "
        "restore index.db from a backup and run `workbench audit verify`"
    )


DatabaseError = sqlcipher.Error
