"""Every cryptographic decision of the workbench, in one place.

This is the only module that imports a cryptography library. Nothing here
takes an algorithm, nonce, cost or key-length argument: those are fixed below.
Any failed check raises one exception (:class:`CryptoFailure`) that carries no
detail about why; callers turn it into ``AccessDenied`` or ``IntegrityError``.

Constructions
-------------
- Key slot: Argon2id(passphrase, 16-byte salt) -> 32-byte key-encryption key;
  AES-256-GCM over the JSON key set, with vault id, user, role and the
  Argon2id cost as associated data (so a slot cannot be renamed, promoted or
  given another cost). The one cost-like input: each slot records the
  Argon2id cost it was written with, which must lie within the bounds below.
- Blob: a random 256-bit data key per blob; AES-256-GCM with the blob id and
  kind as associated data. The data key is wrapped either with a symmetric
  tier key (AES-256-GCM) or sealed to a tier's X25519 public key (ephemeral
  X25519 + HKDF-SHA256 + AES-256-GCM, as age does), so that a writer holding
  only the public key cannot read back what it wrote.
- Keyed digests and pseudonyms: HMAC-SHA256 with a tier key and a domain
  label.
- Write authority: every user has an Ed25519 key pair; the private half sits
  in their slot, the public half in the admin-signed registry. Every record
  of the vault's log (and so every row it adds to the index) carries its
  author's signature over a domain label, the vault id and the record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: Argon2id cost of new key slots, as (passes, memory in KiB, lanes): RFC 9106's
#: second recommended option, lowered to 64 MiB so an old workstation opens the
#: vault in well under a second. Slots written before slot version 3 used it too.
ARGON2_COST = (3, 64 * 1024, 4)
#: The least cost a slot may record: OWASP's minimum for Argon2id (2 passes,
#: 19 MiB, 1 lane). Below it a slot is refused, whoever wrote it.
ARGON2_FLOOR = (2, 19 * 1024, 1)
#: The most: a slot cannot make every unlock take minutes or gigabytes.
ARGON2_CEILING = (10, 1024 * 1024, 16)
SALT_BYTES = 16
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
X25519_PUB_BYTES = 32

BLOB_MAGIC = b"WBB1"
_SEAL_INFO = b"workbench seal v1"


class CryptoFailure(Exception):
    """A decryption or verification failed. Deliberately says nothing more."""


def b64e(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def b64d(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise CryptoFailure() from exc


def random_key() -> bytes:
    """A fresh 256-bit symmetric key."""
    return secrets.token_bytes(KEY_BYTES)


def random_id(nbytes: int = 12) -> str:
    """A random identifier with no meaning (photo ids, patient references)."""
    return secrets.token_hex(nbytes)


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def generate_keypair() -> tuple[bytes, bytes]:
    """Return ``(private, public)`` raw X25519 keys."""
    private = X25519PrivateKey.generate()
    return (
        private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
        _public_raw(private.public_key()),
    )


def public_from_private(private_raw: bytes) -> bytes:
    return _public_raw(X25519PrivateKey.from_private_bytes(private_raw).public_key())


def _public_raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- signatures -------------------------------------------------------------

SIGNATURE_BYTES = 64


def generate_signing_key() -> tuple[bytes, bytes]:
    """Return ``(private, public)`` raw Ed25519 keys."""
    private = Ed25519PrivateKey.generate()
    return (
        private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
        signing_public(private),
    )


def signing_public(private: "bytes | Ed25519PrivateKey") -> bytes:
    if isinstance(private, bytes):
        private = Ed25519PrivateKey.from_private_bytes(private)
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(private_raw: bytes, domain: str, message: bytes) -> bytes:
    """Ed25519 signature over a domain label and ``message``."""
    key = Ed25519PrivateKey.from_private_bytes(private_raw)
    return key.sign(domain.encode("utf-8") + b"\x00" + message)


def verify_signature(public_raw: bytes, signature: bytes, domain: str, message: bytes) -> None:
    """Raise :class:`CryptoFailure` unless ``signature`` is the holder's over ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(
            signature, domain.encode("utf-8") + b"\x00" + message
        )
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise CryptoFailure() from exc


# --- passphrases ------------------------------------------------------------


def argon2_cost_allowed(cost: tuple[int, int, int]) -> bool:
    """Whether ``cost`` (passes, KiB, lanes) lies within ``ARGON2_FLOOR``..``ARGON2_CEILING``."""
    return (
        isinstance(cost, tuple) and len(cost) == 3
        and all(type(v) is int for v in cost)
        and all(lo <= v <= hi for v, lo, hi in zip(cost, ARGON2_FLOOR, ARGON2_CEILING))
    )


def derive_kek(passphrase: str, salt: bytes, cost: tuple[int, int, int] = ARGON2_COST) -> bytes:
    """Argon2id key-encryption key for a user's slot (``CryptoFailure`` for a cost out of bounds)."""
    if not argon2_cost_allowed(cost):
        raise CryptoFailure()
    passes, memory_kib, lanes = cost
    return hash_secret_raw(
        passphrase.encode("utf-8"),
        salt,
        time_cost=passes,
        memory_cost=memory_kib,
        parallelism=lanes,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


def seal_symmetric(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM: ``nonce || ciphertext || tag``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_symmetric(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise CryptoFailure()
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise CryptoFailure() from exc


# --- sealing to a public key (write-only tiers) ------------------------------


def _seal_key(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=eph_pub + recipient_pub,
        info=_SEAL_INFO,
    ).derive(shared)


def seal_to_public(recipient_pub: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt so that only the holder of the matching private key can read."""
    eph = X25519PrivateKey.generate()
    eph_pub = _public_raw(eph.public_key())
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_pub))
    return eph_pub + seal_symmetric(_seal_key(shared, eph_pub, recipient_pub), plaintext, aad)


def open_sealed(recipient_priv: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < X25519_PUB_BYTES:
        raise CryptoFailure()
    eph_pub = sealed[:X25519_PUB_BYTES]
    try:
        private = X25519PrivateKey.from_private_bytes(recipient_priv)
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError as exc:
        raise CryptoFailure() from exc
    key = _seal_key(shared, eph_pub, _public_raw(private.public_key()))
    return open_symmetric(key, sealed[X25519_PUB_BYTES:], aad)


# --- blobs ------------------------------------------------------------------


def blob_aad(blob_id: str, kind: str) -> bytes:
    return b"workbench blob v1|" + blob_id.encode("ascii") + b"|" + kind.encode("ascii")


def encrypt_blob(blob_id: str, kind: str, plaintext: bytes) -> tuple[bytes, bytes]:
    """Encrypt under a fresh data key. Returns ``(data_key, file_bytes)``."""
    data_key = random_key()
    return data_key, BLOB_MAGIC + seal_symmetric(data_key, plaintext, blob_aad(blob_id, kind))


def decrypt_blob(data_key: bytes, blob_id: str, kind: str, file_bytes: bytes) -> bytes:
    if not file_bytes.startswith(BLOB_MAGIC):
        raise CryptoFailure()
    return open_symmetric(data_key, file_bytes[len(BLOB_MAGIC):], blob_aad(blob_id, kind))


# --- keyed digests ----------------------------------------------------------


def keyed_digest(key: bytes, domain: str, data: bytes) -> str:
    """HMAC-SHA256 of ``data`` in a named domain, as hex."""
    mac = hmac.new(key, domain.encode("utf-8") + b"\x00", hashlib.sha256)
    mac.update(data)
    return mac.hexdigest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """Plain HMAC-SHA256 (no domain label), for formats that fix the construction (DICOM UIDs)."""
    return hmac.new(key, data, hashlib.sha256).digest()


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def index_key_pragma(index_key: bytes) -> str:
    """SQLCipher raw-key literal: no PBKDF2 on open, the key is already random."""
    return "x'" + index_key.hex() + "'"


