"""The tamper-evident audit trail.

``audit.log`` is a file of JSON lines. Each record carries its sequence
number, the MAC of the record before it and its own MAC (HMAC-SHA256 under
the vault's audit key over the canonical JSON of every other field), so that
an edited, deleted, inserted or reordered record breaks the chain. The head of
the chain (last sequence number and MAC) is also stored inside the encrypted
index, in the same transaction as the operation being recorded, so cutting
records off the end is caught too.

Records never hold identifiers: users are staff accounts, photos and patients
appear only as random ids.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..errors import IntegrityError
from . import _crypto

GENESIS = "0" * 64
_DOMAIN = "audit record v1"


@dataclass(frozen=True)
class AuditCheck:
    """Outcome of :func:`verify`.

    Attributes
    ----------
    ok : bool
        True when every record checks and the chain reaches the anchored head.
    records : int
        Number of records read.
    first_bad : int or None
        Sequence number (1-based line position) of the first bad record.
    reason : str
        What is wrong, in words, or ``"intact"``.
    """

    ok: bool
    records: int
    first_bad: int | None
    reason: str


def _canonical(record: dict) -> bytes:
    body = {k: v for k, v in record.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: bytes, record: dict) -> str:
    return _crypto.keyed_digest(key, _DOMAIN, _canonical(record))


def _read_tail(path: Path) -> tuple[int, str]:
    """Sequence number and MAC of the last complete record (``(0, GENESIS)`` if none).

    A final line without a newline is a write cut short by a crash; it is
    cut off here, under the writer lock, before anything is appended.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0, GENESIS
    if size == 0:
        return 0, GENESIS
    with open(path, "rb+") as fh:
        chunk = 1 << 16
        start = max(0, size - chunk)
        fh.seek(start)
        data = fh.read()
        while b"\n" not in data[:-1] and start > 0:
            start = max(0, start - chunk)
            fh.seek(start)
            data = fh.read()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            fh.truncate(start + cut)
            os.fsync(fh.fileno())
            data = data[:cut]
        lines = data.splitlines()
    if not lines:
        return 0, GENESIS
    try:
        last = json.loads(lines[-1])
        return int(last["seq"]), str(last["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(
            "the audit log's last record is damaged; run `workbench audit verify` and "
            "restore the vault from a backup"
        ) from exc


def append(
    path: Path, key: bytes, *, user: str, action: str, detail: dict, now: datetime,
    head: tuple[int, str] | None,
) -> tuple[int, str, bool]:
    """Append one record (caller holds the vault lock).

    Returns the new head and whether the log's end was consistent with the
    anchored ``head`` before this append. When it was not (records were cut
    off or reordered), the caller must keep the old anchor, so that appending
    never launders a damaged log.
    """
    seq, prev = _read_tail(path)
    consistent = True
    if head is not None:
        head_seq, head_mac = head
        consistent = seq > head_seq or (
            seq == head_seq and _crypto.constant_time_equal(prev, head_mac)
        )
    record = {
        "seq": seq + 1,
        "time": now.isoformat(timespec="microseconds"),
        "user": user,
        "action": action,
        "detail": detail,
        "prev": prev,
    }
    record["mac"] = _mac(key, record)
    line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return record["seq"], record["mac"], consistent


def read(path: Path) -> list[dict]:
    """All records, unchecked. Use :func:`verify` before trusting them."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"damaged": True})
    return out


def verify(path: Path, key: bytes, head: tuple[int, str] | None) -> AuditCheck:
    """Check every record's MAC and link, and that the anchored head is present."""
    prev = GENESIS
    count = 0
    macs: dict[int, str] = {}
    raw = path.read_bytes() if path.exists() else b""
    for position, line in enumerate(raw.splitlines(), start=1):
        count = position
        try:
            record = json.loads(line)
            seq, mac = record["seq"], record["mac"]
        except (ValueError, KeyError, TypeError):
            return AuditCheck(False, count, position, f"record {position} is not readable")
        if seq != position:
            return AuditCheck(
                False, count, position,
                f"record {position} carries sequence number {seq}: records were "
                "deleted, inserted or reordered",
            )
        if record.get("prev") != prev:
            return AuditCheck(
                False, count, position,
                f"record {position} does not link to the record before it: records were "
                "deleted or reordered",
            )
        if not _crypto.constant_time_equal(_mac(key, record), str(mac)):
            return AuditCheck(False, count, position, f"record {position} was altered")
        macs[seq] = mac
        prev = mac
    if head is not None:
        head_seq, head_mac = head
        if head_seq > count:
            return AuditCheck(
                False, count, count + 1,
                f"the log ends at record {count} but the index recorded {head_seq}: "
                "records were cut off the end",
            )
        if head_seq and not _crypto.constant_time_equal(macs.get(head_seq, ""), head_mac):
            return AuditCheck(
                False, count, head_seq,
                f"record {head_seq} differs from the head recorded in the index",
            )
    return AuditCheck(True, count, None, "intact")
