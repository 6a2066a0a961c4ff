"""The share package's one crypto module: generated secrets, Argon2id hashes, TLS certificates.

Security decisions are not parameters: the hash is argon2-cffi's
``PasswordHasher`` with its defaults (Argon2id, RFC 9106 low-memory profile:
t=3, 64 MiB, p=4), secrets come from :mod:`secrets`, and a self-signed
certificate is an ECDSA P-256 key valid for 30 days, made with
``cryptography``. Nothing else in ``workbench.share`` imports a crypto library.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import ipaddress
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random secret, verified when an account is unknown, so that an unknown account
    costs as much as a wrong password (made on first use: an Argon2id hash is ~0.15 s and 64 MiB,
    which ``import workbench`` should not pay)."""
    return _HASHER.hash(secrets.token_urlsafe(24))


def warm() -> None:
    """Make the hash that unknown accounts are checked against now (a portal does it as it starts)."""
    _dummy_hash()

# no 0/O, 1/l/I: a bundle passphrase is read off a screen and typed into 7-Zip
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"


def new_passphrase(groups: int = 6) -> str:
    """A random passphrase such as ``k7qm2-xw9tr-...``: 6 groups of 5 (150 bits)."""
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(5)) for _ in range(groups))


def new_token() -> str:
    """A random URL-safe token (256 bits) for a share link."""
    return secrets.token_urlsafe(32)


def new_id() -> str:
    """A random share id (64 bits, hex)."""
    return secrets.token_hex(8)


def new_session_secret() -> str:
    """The portal's per-start key for signing session cookies (itsdangerous, in Starlette)."""
    return secrets.token_urlsafe(48)


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    """An Argon2id hash (PHC string) of a password or link token."""
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Whether ``secret`` matches ``stored_hash``; an unknown account (None) costs the same."""
    try:
        return _HASHER.verify(stored_hash or _dummy_hash(), secret) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def equal(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens."""
    return secrets.compare_digest(a.encode(), b.encode())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def self_signed_certificate(host: str) -> tuple[bytes, bytes]:
    """``(certificate PEM, private key PEM)`` for ``host``, valid for 30 days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workbench share portal")])
    try:
        alt = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def certificate_fingerprint(cert_pem: bytes) -> str:
    """The SHA-256 fingerprint of a PEM certificate, as browsers show it (``AB:CD:...``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)
