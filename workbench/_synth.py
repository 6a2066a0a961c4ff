"""Generated clinical photographs that carry planted, obviously fake identifiers.

The demo vault, the tests and the benchmarks need photographs that look and
weigh like a Canon EOS R6's output and that carry identifying metadata in
every place a real file can hide it: EXIF (including the Canon maker note,
the GPS block and the embedded thumbnail), XMP, IPTC and comments. Every
identifier here is generated: names carry the ``ZZTEST`` marker, nothing is
drawn from real people, and nothing is downloaded.

Each planted string is recorded so that a test can search the bytes of any
later artefact (the vault at rest, a de-identified export) and prove that it
is not there. Each carrier also gets its own marker (``EXIF-<mrn>``,
``XMP-<mrn>``, ``THUMB-<mrn>`` ...) so that a leak names the carrier that
survived.

Everything is a pure function of the ``numpy.random.Generator`` passed in:
the same seed and arguments give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PIL.TiffImagePlugin import IFDRational

#: Every generated person name starts with this, so that nobody can mistake a
#: generated identity for a real one and a grep finds all of them.
MARKER = "ZZTEST"

#: File extension a Canon body (or its companion software) would use.
EXTENSIONS = {"jpeg": ".JPG", "png": ".PNG", "tiff": ".TIF", "webp": ".WEBP", "heif": ".HEIC"}

# Carriers that get their own "<CARRIER>-<mrn>" marker, in planting order.
_CARRIERS = ("EXIF", "UCOM", "GPS", "THUMB", "XMP", "IPTC", "COM")

_MAKE = "Canon"
_MODEL = "Canon EOS R6"
_LENS = "RF24-105mm F4 L IS USM"

_SOI = b"\xff\xd8"
_APP1, _APP13, _COM = 0xE1, 0xED, 0xFE
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_PS_ID = b"Photoshop 3.0\x00"
#: Largest payload a JPEG marker segment can hold (its length field counts itself).
_MAX_SEGMENT = 65533


# --------------------------------------------------------------------------- identities

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "kr", "tr", "st", "th", "qu", "sk")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "io", "ou", "y")
_CODAS = ("", "", "n", "r", "l", "s", "x", "nd", "rk", "m")


def _fake_word(rng: np.random.Generator, syllables: int) -> str:
    # Invented syllables rather than a list of real names: the result cannot
    # be a real person's name by construction, only by rare accident.
    parts = [
        _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
        + _CODAS[rng.integers(len(_CODAS))]
        for _ in range(syllables)
    ]
    return "".join(parts).capitalize()


def _fake_person(rng: np.random.Generator) -> str:
    given = _fake_word(rng, 2)[:8]
    family = _fake_word(rng, int(rng.integers(2, 4)))[:9]
    if rng.random() < 0.3:
        family += "-" + _fake_word(rng, 2)[:6]
    return f"{MARKER} {given} {family}"


@dataclass(frozen=True)
class FakeIdentity:
    """A generated patient and the camera that photographed them.

    Attributes
    ----------
    name : str
        Patient name; always starts with ``ZZTEST`` so it is obviously fake.
    mrn : str
        Medical record number, ``MRN-`` and seven digits.
    birth_date : datetime.date
        Patient's date of birth.
    owner : str
        Camera owner name, planted in EXIF Artist / Copyright, the EXIF
        CameraOwnerName, the Canon maker note and the IPTC By-line.
    serial : str
        Camera body serial number, twelve digits.
    """

    name: str
    mrn: str
    birth_date: date
    owner: str
    serial: str

    def planted_strings(self) -> list[str]:
        """Return every identifying string a fully planted JPEG carries.

        These are the identity's own fields, the birth date in EXIF
        (``YYYY:MM:DD``) and ISO (``YYYY-MM-DD``) form, the GPS position as
        XMP text, and one marker per carrier (``EXIF-``, ``UCOM-``, ``GPS-``,
        ``THUMB-``, ``XMP-``, ``IPTC-``, ``COM-`` followed by the MRN). The
        capture time is per photo, not per identity: see the ``strings`` that
        :func:`synth_photo` returns.

        Returns
        -------
        list of str
            Strings to search for as literal (ASCII) bytes.
        """
        lat, lon = _gps_text(self)
        return [
            self.name, self.mrn, self.owner, self.serial,
            self.birth_date.strftime("%Y:%m:%d"), self.birth_date.isoformat(),
            lat, lon,
            *(_mark(self, carrier) for carrier in _CARRIERS),
        ]


def fake_identity(rng: np.random.Generator) -> FakeIdentity:
    """Generate an obviously fake patient and camera owner.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness; the same state gives the same identity.

    Returns
    -------
    FakeIdentity
        Names carry the ``ZZTEST`` marker; the MRN is ``MRN-`` and seven
        digits; the camera serial is twelve digits.
    """
    name = _fake_person(rng)
    mrn = f"MRN-{int(rng.integers(1_000_000, 10_000_000))}"
    birth = date(1930, 1, 1) + timedelta(days=int(rng.integers(0, 31_000)))
    owner = _fake_person(rng)
    serial = str(int(rng.integers(10**11, 10**12)))
    return FakeIdentity(name=name, mrn=mrn, birth_date=birth, owner=owner, serial=serial)


def _mark(identity: FakeIdentity, carrier: str) -> str:
    return f"{carrier}-{identity.mrn}"


def _gps(identity: FakeIdentity) -> tuple[float, float]:
    # Derived from the identity rather than drawn from the rng, so that
    # planted_strings() can name it without knowing the photo.
    digest = hashlib.sha256(f"{identity.mrn}/{identity.serial}".encode()).digest()
    u, v = (int.from_bytes(digest[i:i + 4], "big") / 2**32 for i in (0, 4))
    return 35.0 + 25.0 * u, -10.0 + 40.0 * v


def _dms(value: float) -> tuple[int, int]:
    """Whole degrees and minutes x 10000 (the precision of XMP's GPS text)."""
    deg = int(abs(value))
    minutes = round((abs(value) - deg) * 60 * 10_000)
    return (deg + 1, 0) if minutes == 60 * 10_000 else (deg, minutes)


def _gps_text(identity: FakeIdentity) -> tuple[str, str]:
    """Latitude and longitude in the XMP GPSCoordinate form ``DD,MM.mmmmN``."""
    lat, lon = _gps(identity)
    (la, lam), (lo, lom) = _dms(lat), _dms(lon)
    return (f"{la},{lam // 10_000:02d}.{lam % 10_000:04d}{'N' if lat >= 0 else 'S'}",
            f"{lo},{lom // 10_000:02d}.{lom % 10_000:04d}{'E' if lon >= 0 else 'W'}")


# --------------------------------------------------------------------------- pixels

# Skin tones from light to dark (sRGB), interpolated for variety.
_SKIN = np.array([(242, 200, 176), (226, 176, 143), (200, 140, 105), (164, 108, 78),
                  (118, 76, 56), (82, 54, 42)], np.float32)
_DRAPES = np.array([(38, 96, 128), (44, 112, 92), (70, 120, 150)], np.float32)
#: Working resolution (long side) for the smooth content; detail comes from noise.
_LOW_RES = 960


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Zero-mean, unit-ish low-frequency noise of ``shape`` (rows, cols)."""
    h, w = shape
    ch, cw = max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))
    small = rng.standard_normal((ch, cw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _stamp(canvas: np.ndarray, rng: np.random.Generator, colour: np.ndarray, *, centre,
           radius: float, aspect: float, wobble: float, edge: float, alpha: float,
           texture: float = 0.0) -> tuple[int, int, int, int] | None:
    """Blend an (irregular) ellipse of ``colour`` into ``canvas`` in place.

    Returns the box ``(x0, y0, x1, y1)`` of the pixels it visibly changed
    (blended at 5% or more), or None.
    """
    h, w = canvas.shape[:2]
    angle = rng.uniform(0, np.pi)
    ks = np.arange(2, 7)
    amps = rng.uniform(0, wobble, ks.size) / ks
    phases = rng.uniform(0, 2 * np.pi, ks.size)
    reach = radius * (1 + amps.sum()) + 3 * edge + 2
    cx, cy = centre
    x0, x1 = int(max(0, cx - reach)), int(min(w, cx + reach + 1))
    y0, y1 = int(max(0, cy - reach)), int(min(h, cy + reach + 1))
    if x1 <= x0 or y1 <= y0:
        return None
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    c, s = np.cos(angle), np.sin(angle)
    u, v = dx * c + dy * s, (dy * c - dx * s) / aspect
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    boundary = radius * (1 + sum(a * np.cos(k * theta + p) for k, a, p in zip(ks, amps, phases)))
    mask = np.clip((boundary - rho) / edge + 0.5, 0, 1) * alpha
    region = canvas[y0:y1, x0:x1]
    paint = np.broadcast_to(colour, region.shape)
    if texture:
        # Lesions are not flat: variegated pigment, granulation, crusts.
        grain = 1 + texture * _smooth_noise(rng, region.shape[:2], 9)[..., None]
        paint = paint * grain
    region += (paint - region) * mask[..., None]
    rows, cols = np.nonzero(mask >= 0.05)
    if rows.size == 0:
        return None
    return x0 + int(cols.min()), y0 + int(rows.min()), x0 + int(cols.max()) + 1, y0 + int(rows.max()) + 1


def _union(*boxes):
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _lesions(canvas: np.ndarray, rng: np.random.Generator, skin: np.ndarray) -> list[tuple[str, tuple]]:
    """Draw one to four clinical findings; return each one's kind and box ``(x0, y0, x1, y1)`` in ``canvas``."""
    h, w = canvas.shape[:2]
    side = min(h, w)
    kinds = ("nevus", "blob", "wound", "erythema", "scar")
    count = int(rng.integers(1, 5))
    found = []
    for kind in rng.choice(kinds, size=count, p=(0.25, 0.25, 0.25, 0.1, 0.15)):
        centre = (rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h)
        if kind == "nevus":
            box = _stamp(canvas, rng, skin * rng.uniform([0.3, 0.22, 0.2], [0.55, 0.42, 0.38]),
                         centre=centre, radius=rng.uniform(0.02, 0.07) * side,
                         aspect=rng.uniform(0.7, 1.0), wobble=0.08, edge=1.2, alpha=0.92, texture=0.12)
        elif kind == "blob":
            box = _stamp(canvas, rng, skin * rng.uniform([0.35, 0.25, 0.25], [0.7, 0.5, 0.48]),
                         centre=centre, radius=rng.uniform(0.05, 0.14) * side,
                         aspect=rng.uniform(0.5, 1.0), wobble=0.6, edge=2.5, alpha=0.85, texture=0.2)
        elif kind == "wound":
            radius = rng.uniform(0.06, 0.16) * side
            aspect = rng.uniform(0.45, 0.9)
            # Erythematous rim, then granulation, then patches of yellow slough.
            parts = [_stamp(canvas, rng, skin * np.float32([1.0, 0.72, 0.7]), centre=centre,
                            radius=radius * 1.35, aspect=aspect, wobble=0.3, edge=radius * 0.2,
                            alpha=0.55),
                     _stamp(canvas, rng, np.float32([168, 44, 46]), centre=centre, radius=radius,
                            aspect=aspect, wobble=0.4, edge=1.5, alpha=0.95, texture=0.25)]
            for _ in range(int(rng.integers(1, 4))):
                off = rng.uniform(-0.4, 0.4, 2) * radius
                parts.append(_stamp(canvas, rng, np.float32([206, 184, 112]),
                                    centre=(centre[0] + off[0], centre[1] + off[1] * aspect),
                                    radius=radius * rng.uniform(0.15, 0.35), aspect=rng.uniform(0.5, 1),
                                    wobble=0.7, edge=1.5, alpha=0.85, texture=0.15))
            # The wound bed (granulation and slough) is the finding; the faint rim is not.
            box = _union(*parts[1:])
        elif kind == "erythema":
            box = _stamp(canvas, rng, skin * np.float32([1.03, 0.78, 0.76]), centre=centre,
                         radius=rng.uniform(0.12, 0.3) * side, aspect=rng.uniform(0.5, 1),
                         wobble=0.5, edge=0.05 * side, alpha=0.5)
        else:  # a healed linear scar, paler and pinker than the skin
            box = _stamp(canvas, rng, skin * np.float32([1.06, 0.9, 0.9]), centre=centre,
                         radius=rng.uniform(0.12, 0.3) * side, aspect=rng.uniform(0.03, 0.08),
                         wobble=0.05, edge=1.0, alpha=0.8)
        if box is not None:
            found.append((str(kind), box))
    return found


def _render_low(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list]:
    """The smooth content (skin, shading, drape, lesions) at a working size, and the findings drawn."""
    scale = min(1.0, _LOW_RES / max(width, height))
    lw, lh = max(8, round(width * scale)), max(8, round(height * scale))
    t = rng.uniform(0, len(_SKIN) - 1)
    i = min(int(t), len(_SKIN) - 2)
    skin = _SKIN[i] + (_SKIN[i + 1] - _SKIN[i]) * (t - i) + rng.uniform(-6, 6, 3).astype(np.float32)

    yy = np.linspace(-1, 1, lh, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, lw, dtype=np.float32)[None, :]
    light, axis = rng.uniform(0, 2 * np.pi, 2)
    # Directional light across the frame, and the fall-off of a curved limb.
    across = xx * np.cos(axis) + yy * np.sin(axis)
    illum = (1 + rng.uniform(0.04, 0.18) * (xx * np.cos(light) + yy * np.sin(light))
             ) * (1 - rng.uniform(0.08, 0.35) * across**2)
    mottle = _smooth_noise(rng, (lh, lw), 12)
    canvas = skin * (illum * (1 + 0.035 * mottle))[..., None]
    canvas[..., 0] += 5 * _smooth_noise(rng, (lh, lw), 20)  # uneven redness

    findings = _lesions(canvas, rng, skin)

    if rng.random() < 0.5:
        # A surgical drape along one side, with a wavy edge.
        along = xx * np.sin(axis) - yy * np.cos(axis)
        side = rng.choice([-1.0, 1.0])
        edge = side * across - rng.uniform(0.55, 0.85) - 0.05 * np.sin(along * rng.uniform(4, 9))
        cover = np.clip(edge * min(lw, lh) / 3 + 0.5, 0, 1)[..., None]
        drape = _DRAPES[rng.integers(len(_DRAPES))] * illum[..., None]
        canvas += (drape - canvas) * cover
    return np.clip(canvas, 0, 255).astype(np.uint8), findings


def _draw_ruler(img: np.ndarray, rng: np.random.Generator, offset: int) -> None:
    """A paper scale along the bottom or top edge, as clinical photos carry.

    Colours are lowered by ``offset``, the mean of the noise added later.
    """
    h, w = img.shape[:2]
    mm = max(1.0, w / 300)  # a 30 cm wide field of view
    length = int(min(w * 0.5, 150 * mm))
    if length < 20 or h < 40:
        return
    band = max(6, int(12 * mm))
    x0 = int(rng.uniform(0.05, 0.45) * w)
    y0 = int(0.04 * h) if rng.random() < 0.5 else int(0.96 * h) - band
    paper, ink = tuple(c - offset for c in (236, 236, 228)), (30 - offset,) * 3
    cv2.rectangle(img, (x0, y0), (x0 + length, y0 + band), paper, -1)
    thick = max(1, int(mm / 4))
    for k in range(int(length / mm) + 1):
        x = x0 + int(k * mm)
        tick = band * (0.7 if k % 10 == 0 else 0.45 if k % 5 == 0 else 0.25)
        cv2.line(img, (x, y0), (x, y0 + int(tick)), ink, thick)


def _render(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[dict]]:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    low, drawn = _render_low(rng, width, height)
    sx, sy = width / low.shape[1], height / low.shape[0]
    findings = []
    for kind, (x0, y0, x1, y1) in drawn:
        # A drape drawn later may cover part of a finding; its box stays whole.
        fx0, fy0 = max(0, int(x0 * sx)), max(0, int(y0 * sy))
        fx1, fy1 = min(width, int(np.ceil(x1 * sx))), min(height, int(np.ceil(y1 * sy)))
        findings.append({"kind": "finding", "finding": kind, "box": [fx0, fy0, fx1 - fx0, fy1 - fy0]})
    # Sensor-like noise is what makes JPEG sizes realistic. Subtract half its
    # range before upscaling (linear interpolation keeps a constant offset)
    # so that one saturating add of non-negative noise is zero-mean.
    amp = int(rng.integers(8, 12))
    low = cv2.subtract(low, np.full_like(low, amp))
    img = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.6:
        _draw_ruler(img, rng, amp)
    # Noise at full resolution costs a lot of random numbers, so draw one
    # band twice the width and add it to successive strips at random shifts.
    rows = min(height, 96)
    band = rng.integers(0, 2 * amp + 1, size=(rows, 2 * width, 3), dtype=np.uint8)
    shifts = rng.integers(0, width + 1, size=-(-height // rows))
    for y0, shift in zip(range(0, height, rows), shifts):
        strip = img[y0:y0 + rows]
        cv2.add(strip, band[:strip.shape[0], shift:shift + width], dst=strip)
    return img, findings


def synth_pixels(rng: np.random.Generator, width: int = 1600, height: int = 1067) -> np.ndarray:
    """Generate the pixels of a clinical close-up photograph.

    Skin-toned, shaded background (sometimes with a surgical drape and a
    paper ruler) with one or more lesions or wounds (ellipses and irregular
    blobs) and mild sensor-like noise, so that encoded sizes resemble a real
    camera's. A 20 MP frame takes well under half a second.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness; different states give visibly different
        content, the same state gives identical pixels.
    width, height : int
        Frame size in pixels.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` RGB ``uint8`` array.
    """
    return _render(rng, int(width), int(height))[0]


def synth_pixels_with_findings(rng: np.random.Generator, width: int = 1600,
                               height: int = 1067) -> tuple[np.ndarray, list[dict]]:
    """:func:`synth_pixels`, and the clinical findings it drew (the same pixels for the same ``rng``).

    Returns
    -------
    numpy.ndarray, list of dict
        The pixels, and one ``{"kind": "finding", "finding": "nevus" | "blob"
        | "wound" | "erythema" | "scar", "box": [x, y, w, h]}`` per lesion,
        wound or scar: what a de-identified copy must still show.
    """
    return _render(rng, int(width), int(height))


# --------------------------------------------------------------------------- JPEG segments

def _segment(marker: int, payload: bytes) -> bytes:
    """One JPEG marker segment: FF, marker, big-endian length (itself included), payload."""
    if len(payload) > _MAX_SEGMENT:
        raise ValueError(f"JPEG segment payload of {len(payload)} bytes exceeds {_MAX_SEGMENT}")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _splice(jpeg: bytes, segments: list[bytes]) -> bytes:
    """Insert ``segments`` after SOI and the APPn segments the encoder wrote.

    Keeping the encoder's JFIF/EXIF segments first keeps strict readers (that
    expect APP0 or APP1 Exif straight after SOI) happy.
    """
    if not jpeg.startswith(_SOI):
        raise ValueError("not a JPEG stream: no SOI marker")
    pos = 2
    while jpeg[pos] == 0xFF and 0xE0 <= jpeg[pos + 1] <= 0xEF:
        pos += 2 + struct.unpack(">H", jpeg[pos + 2:pos + 4])[0]
    return jpeg[:pos] + b"".join(segments) + jpeg[pos:]


def _iptc(identity: FakeIdentity) -> bytes:
    """IPTC-IIM records (1:90 UTF-8, 2:00 version, 2:25, 2:80, 2:120)."""
    def dataset(record: int, number: int, value: bytes) -> bytes:
        return bytes((0x1C, record, number)) + struct.pack(">H", len(value)) + value

    return b"".join([
        dataset(1, 90, b"\x1b%G"),
        dataset(2, 0, b"\x00\x04"),
        dataset(2, 25, identity.name.encode()),
        dataset(2, 80, identity.owner.encode()),
        dataset(2, 120, _caption(identity, "IPTC").encode()),
    ])


def _photoshop(iptc: bytes) -> bytes:
    """APP13 payload: 8BIM resources 0x0404 (IPTC) and 0x0425 (its MD5 digest)."""
    def resource(rid: int, data: bytes) -> bytes:
        # Empty Pascal name padded to even length; data padded to even length.
        return (b"8BIM" + struct.pack(">H", rid) + b"\x00\x00" + struct.pack(">I", len(data))
                + data + b"\x00" * (len(data) % 2))

    # Photoshop's digest lets readers tell the IPTC is current; MD5 by its spec.
    digest = hashlib.md5(iptc, usedforsecurity=False).digest()
    return _PS_ID + resource(0x0404, iptc) + resource(0x0425, digest)


def _caption(identity: FakeIdentity, carrier: str) -> str:
    return (f"{_mark(identity, carrier)} {identity.name} {identity.mrn} "
            f"DOB {identity.birth_date.isoformat()}")


def _xmp(identity: FakeIdentity, when: datetime, width: int, height: int,
         rng: np.random.Generator) -> bytes:
    """An XMP packet naming the patient (people in image, MWG face region)."""
    lat, lon = _gps_text(identity)
    fx, fy = rng.uniform(0.2, 0.8, 2)
    e = {k: escape(v, {'"': "&quot;"}) for k, v in (
        ("name", identity.name), ("owner", identity.owner),
        ("desc", _caption(identity, "XMP")))}
    packet = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="workbench synthetic">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
   xmp:CreateDate="{when.isoformat()}"
   xmp:CreatorTool="{_MODEL}"
   photoshop:DateCreated="{when.isoformat()}"
   exif:GPSLatitude="{lat}"
   exif:GPSLongitude="{lon}">
   <dc:creator><rdf:Seq><rdf:li>{e["owner"]}</rdf:li><rdf:li>{e["name"]}</rdf:li></rdf:Seq></dc:creator>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{e["desc"]}</rdf:li></rdf:Alt></dc:description>
   <Iptc4xmpExt:PersonInImage><rdf:Bag><rdf:li>{e["name"]}</rdf:li></rdf:Bag></Iptc4xmpExt:PersonInImage>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="{width}" stDim:h="{height}" stDim:unit="pixel"/>
    <mwg-rs:RegionList><rdf:Bag><rdf:li rdf:parseType="Resource">
     <mwg-rs:Name>{e["name"]}</mwg-rs:Name>
     <mwg-rs:Type>Face</mwg-rs:Type>
     <mwg-rs:Area stArea:x="{fx:.4f}" stArea:y="{fy:.4f}" stArea:w="0.1200" stArea:h="0.1600" stArea:unit="normalized"/>
    </rdf:li></rdf:Bag></mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""
    # Writers pad packets so they can be edited in place; readers expect it.
    padding = (" " * 99 + "\n") * 20
    return (packet + padding + '<?xpacket end="w"?>').encode()


# --------------------------------------------------------------------------- EXIF

def _thumbnail(img: np.ndarray, identity: FakeIdentity) -> bytes:
    """A 160-pixel JPEG of the uncensored frame with its own COM marker."""
    h, w = img.shape[:2]
    tw, th = (160, max(1, round(160 * h / w))) if w >= h else (max(1, round(160 * w / h)), 160)
    step = max(1, min(w // (4 * tw), h // (4 * th)))
    # Subsample first: INTER_AREA straight from 20 MP costs more than the rest.
    small = cv2.resize(np.ascontiguousarray(img[::step, ::step]), (tw, th),
                       interpolation=cv2.INTER_AREA)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, "JPEG", quality=80)
    return _splice(buf.getvalue(), [_segment(_COM, _mark(identity, "THUMB").encode())])


def _maker_note(identity: FakeIdentity, base: int, order: str) -> bytes:
    """A minimal Canon maker note IFD whose data starts at TIFF offset ``base``.

    Tags: 0x0006 ImageType, 0x0009 OwnerName (32 bytes), 0x0096
    InternalSerialNumber. As in Canon files there is no header before the
    IFD and value offsets count from the TIFF header, not from the note.
    """
    values = [
        (0x0006, _MODEL.encode() + b"\x00"),
        (0x0009, identity.owner.encode()[:31].ljust(32, b"\x00")),
        (0x0096, identity.serial.encode() + b"\x00"),
    ]
    data_at = 2 + 12 * len(values) + 4
    entries, data = b"", b""
    for tag, value in values:
        entries += struct.pack(order + "HHII", tag, 2, len(value), base + data_at + len(data))
        data += value + b"\x00" * (len(value) % 2)
    return struct.pack(order + "H", len(values)) + entries + b"\x00" * 4 + data


def _entries(tiff: bytearray, at: int, order: str):
    """Yield (entry position, tag, type, count) for the IFD at offset ``at``."""
    (count,) = struct.unpack_from(order + "H", tiff, at)
    for pos in range(at + 2, at + 2 + 12 * count, 12):
        yield (pos, *struct.unpack_from(order + "HHI", tiff, pos))


# Tags whose EXIF type is UNDEFINED; Pillow, not knowing them, writes BYTE.
_UNDEFINED_TAGS = {0x9000, 0x9101, 0x927C, 0x9286, 0xA000}


def _finish_tiff(tiff: bytearray, identity: FakeIdentity) -> None:
    """Fix what Pillow cannot express, in place, once the layout is final.

    Sets the EXIF types that Pillow gets wrong, IPTC-NAA (TIFF only) to LONG,
    and writes the Canon maker note into the space reserved for it: its
    offsets are absolute, so they can only be filled in after placement.
    """
    order = "<" if tiff[:2] == b"II" else ">"
    exif_at = None
    for pos, tag, _typ, count in _entries(tiff, struct.unpack_from(order + "I", tiff, 4)[0], order):
        if tag == 0x8769:
            (exif_at,) = struct.unpack_from(order + "I", tiff, pos + 8)
        elif tag == 33723:  # IPTC-NAA is LONG by convention (data padded to 4)
            struct.pack_into(order + "HI", tiff, pos + 2, 4, count // 4)
    for pos, tag, _typ, count in _entries(tiff, exif_at, order):
        if tag in _UNDEFINED_TAGS:
            struct.pack_into(order + "H", tiff, pos + 2, 7)
        if tag == 0x927C:
            (at,) = struct.unpack_from(order + "I", tiff, pos + 8)
            tiff[at:at + count] = _maker_note(identity, at, order)


def _exif(identity: FakeIdentity, when: datetime, width: int, height: int,
          thumb: bytes | None) -> bytes:
    """EXIF (``Exif\\0\\0`` + TIFF) with IFD0, Exif IFD, GPS IFD, maker note and IFD1."""
    lat, lon = _gps(identity)
    stamp = when.strftime("%Y:%m:%d %H:%M:%S")
    exif = Image.Exif()
    exif.endian = "<"  # Canon bodies write little-endian EXIF
    exif.update({
        0x010E: _caption(identity, "EXIF"),  # ImageDescription
        0x010F: _MAKE, 0x0110: _MODEL, 0x0112: 1,
        0x011A: IFDRational(72, 1), 0x011B: IFDRational(72, 1), 0x0128: 2,
        0x0131: "Firmware Version 1.8.1", 0x0132: stamp,
        0x013B: identity.owner,  # Artist
        0x0213: 2,  # YCbCrPositioning: co-sited, as Canon writes
        0x8298: f"Copyright {identity.owner}",
    })
    sub = exif.get_ifd(0x8769)
    sub.update({
        0x829A: IFDRational(1, 125), 0x829D: IFDRational(8, 1), 0x8827: 400,
        0x9000: b"0231", 0x9003: stamp, 0x9004: stamp, 0x9101: b"\x01\x02\x03\x00",
        0x920A: IFDRational(50, 1),
        0x927C: bytes(len(_maker_note(identity, 0, "<"))),  # filled by _finish_tiff
        0x9286: b"ASCII\x00\x00\x00" + (f"{_mark(identity, 'UCOM')} DOB "
                                         f"{identity.birth_date.strftime('%Y:%m:%d')}").encode(),
        0xA000: b"0100", 0xA001: 1, 0xA002: width, 0xA003: height,
        0xA430: identity.owner,   # CameraOwnerName
        0xA431: identity.serial,  # BodySerialNumber
        0xA434: _LENS,
    })
    gps = exif.get_ifd(0x8825)
    (la, lam), (lo, lom) = _dms(lat), _dms(lon)
    gps.update({
        0x0000: b"\x02\x03\x00\x00",
        0x0001: "N" if lat >= 0 else "S",
        0x0002: (IFDRational(la, 1), IFDRational(lam, 10_000), IFDRational(0, 1)),
        0x0003: "E" if lon >= 0 else "W",
        0x0004: (IFDRational(lo, 1), IFDRational(lom, 10_000), IFDRational(0, 1)),
        0x001B: b"ASCII\x00\x00\x00MANUAL",  # GPSProcessingMethod
        0x001C: b"ASCII\x00\x00\x00"  # GPSAreaInformation, readable position text
                + " ".join((_mark(identity, "GPS"), *_gps_text(identity))).encode(),
    })
    blob = exif.tobytes()
    tiff = bytearray(blob[6:])
    _finish_tiff(tiff, identity)
    if thumb is not None:
        _append_ifd1(tiff, thumb)
    return blob[:6] + bytes(tiff)


def _append_ifd1(tiff: bytearray, thumb: bytes) -> None:
    """Chain an IFD1 holding a JPEG thumbnail after IFD0 (Pillow writes none)."""
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd0)
    next_at = ifd0 + 2 + 12 * count
    if struct.unpack_from(order + "I", tiff, next_at)[0] != 0:
        raise ValueError("EXIF already has an IFD1")
    tiff += b"\x00" * (len(tiff) % 2)  # IFDs start on a word boundary
    ifd1 = len(tiff)
    n = 6
    rationals = ifd1 + 2 + 12 * n + 4
    entries = [
        (0x0103, 3, struct.pack(order + "HH", 6, 0)),  # Compression: JPEG (old-style)
        (0x011A, 5, struct.pack(order + "I", rationals)),
        (0x011B, 5, struct.pack(order + "I", rationals + 8)),
        (0x0128, 3, struct.pack(order + "HH", 2, 0)),
        (0x0201, 4, struct.pack(order + "I", rationals + 16)),  # JPEGInterchangeFormat
        (0x0202, 4, struct.pack(order + "I", len(thumb))),  # ...Length
    ]
    tiff += struct.pack(order + "H", n)
    tiff += b"".join(struct.pack(order + "HHI", tag, typ, 1) + value for tag, typ, value in entries)
    tiff += b"\x00" * 4 + struct.pack(order + "IIII", 72, 1, 72, 1) + thumb
    struct.pack_into(order + "I", tiff, next_at, ifd1)


# --------------------------------------------------------------------------- files

class _Strings(list):
    """Ordered, de-duplicated record of what was planted."""

    def add(self, *values: str) -> None:
        self.extend(v for v in values if v not in self)


def _encode(img: np.ndarray, fmt: str, quality: int, identity: FakeIdentity, when: datetime,
            planted: bool, rng: np.random.Generator) -> tuple[bytes, list[str]]:
    h, w = img.shape[:2]
    im = Image.fromarray(img)
    strings = _Strings()
    if not planted:
        buf = io.BytesIO()
        if fmt == "heif":
            _heif_save(im, buf, quality)
        else:
            im.save(buf, fmt.upper(), **_plain_options(fmt, quality))
        return buf.getvalue(), []

    dob_exif, dob_iso = identity.birth_date.strftime("%Y:%m:%d"), identity.birth_date.isoformat()
    lat, lon = _gps_text(identity)
    thumb = None if fmt == "tiff" else _thumbnail(img, identity)
    exif = _exif(identity, when, w, h, thumb)
    strings.add(identity.name, identity.mrn, identity.owner, identity.serial, dob_iso, dob_exif,
                lat, lon, _mark(identity, "EXIF"), _mark(identity, "UCOM"), _mark(identity, "GPS"),
                when.strftime("%Y:%m:%d %H:%M:%S"))
    if thumb is not None:
        strings.add(_mark(identity, "THUMB"))
    xmp = _xmp(identity, when, w, h, rng)
    strings.add(_mark(identity, "XMP"), when.isoformat())
    iptc = _iptc(identity)
    comment = f"{_caption(identity, 'COM')} photographed by {identity.owner}"

    buf = io.BytesIO()
    if fmt == "jpeg":
        im.save(buf, "JPEG", quality=quality, exif=exif, dpi=(72, 72))
        data = _splice(buf.getvalue(), [
            _segment(_APP1, _XMP_ID + xmp),
            _segment(_APP13, _photoshop(iptc)),
            _segment(_COM, comment.encode()),
        ])
        strings.add(_mark(identity, "IPTC"), _mark(identity, "COM"))
    elif fmt == "png":
        info = PngInfo()
        info.add_text("Author", identity.owner)
        info.add_text("Comment", comment)
        info.add_itxt("XML:com.adobe.xmp", xmp.decode(), zip=False)
        im.save(buf, "PNG", pnginfo=info, exif=exif, compress_level=1)
        data = buf.getvalue()
        strings.add(_mark(identity, "COM"))
    elif fmt == "tiff":
        ifd = Image.Exif()
        ifd.load(exif)
        ifd.get_ifd(0x8825)  # materialise so Pillow writes it as a sub-IFD
        for tag in (0x9101, 0xA002, 0xA003):  # compressed-data tags, not for TIFF
            del ifd.get_ifd(0x8769)[tag]
        ifd[700] = xmp  # XMLPacket
        ifd[33723] = iptc + bytes(-len(iptc) % 4)  # IPTC-NAA
        im.save(buf, "TIFF", exif=ifd)
        # Pillow re-lays out every tag, so fix types and the maker note again.
        tiff = bytearray(buf.getvalue())
        _finish_tiff(tiff, identity)
        data = bytes(tiff)
        strings.add(_mark(identity, "IPTC"))
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=quality, exif=exif, xmp=xmp, method=4)
        data = buf.getvalue()
    elif fmt == "heif":
        _heif_save(im, buf, quality, exif=exif, xmp=xmp)
        data = buf.getvalue()
    else:  # pragma: no cover - checked by the caller
        raise AssertionError(fmt)
    return data, list(strings)


def _plain_options(fmt: str, quality: int) -> dict:
    return {"jpeg": {"quality": quality}, "png": {"compress_level": 1}, "tiff": {},
            "webp": {"quality": quality, "method": 4}}[fmt]


def _heif_save(im: Image.Image, buf: io.BytesIO, quality: int, **meta) -> None:
    import pillow_heif  # imported here: only HEIF needs it, and it is slow to load

    heif = pillow_heif.from_pillow(im)
    heif.save(buf, quality=quality, **meta)


def _check(data: bytes, fmt: str, width: int, height: int, strings: list[str]) -> None:
    """Fail loudly if the file does not decode or a recorded string is absent."""
    if fmt == "heif":
        import pillow_heif

        size = pillow_heif.read_heif(io.BytesIO(data)).size
    else:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
            if fmt == "jpeg":
                # DCT-scaled decode still walks every entropy-coded block.
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            im.load()
    if size != (width, height):
        raise RuntimeError(f"synthetic {fmt} decodes as {size}, expected {(width, height)}")
    missing = [s for s in strings if s.encode() not in data]
    if missing:
        raise RuntimeError(f"synthetic {fmt} lost {len(missing)} planted strings; "
                           "the encoder rewrote metadata, fix the generator")


def synth_photo(rng: np.random.Generator, *, identity: FakeIdentity | None = None,
                width: int = 1600, height: int = 1067, format: str = "jpeg",
                quality: int = 92, planted: bool = True,
                capture_time: datetime | None = None,
                tattoo: tuple[int, int, int, int] | None = None) -> tuple[bytes, dict]:
    """Generate an encoded clinical photograph with planted identifiers.

    A planted JPEG carries EXIF (Make ``Canon``, Model ``Canon EOS R6``,
    BodySerialNumber, CameraOwnerName, Artist, Copyright, dates, an
    ImageDescription and UserComment naming the patient, a Canon maker note
    with owner and serial, a GPS IFD, and an IFD1 thumbnail whose own COM
    segment holds ``THUMB-<mrn>``), an XMP packet (people in image, MWG face
    region name), an IPTC block in a Photoshop APP13 segment, and a COM
    comment. Other formats carry what they can hold; ``strings`` lists
    exactly what was planted, and each is checked to be in the bytes.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness (identity if not given, capture time if not
        given, pixels); the same state and arguments give identical bytes.
    identity : FakeIdentity, optional
        Whose photo it is; generated from ``rng`` if omitted.
    width, height : int
        Frame size in pixels (the R6 writes 5472x3648).
    format : {"jpeg", "png", "tiff", "webp", "heif"}
        Container to write. PNG: tEXt Author/Comment, iTXt XMP and eXIf
        (with thumbnail). TIFF: EXIF tags in IFD0 plus Exif/GPS sub-IFDs,
        XMP (tag 700) and IPTC (tag 33723); no thumbnail. WebP and HEIF:
        EXIF (with thumbnail) and XMP.
    quality : int
        Encoder quality for JPEG, WebP and HEIF; ignored for PNG and TIFF.
    planted : bool
        If False, write pixels only (no metadata at all): a clean control.
    capture_time : datetime.datetime, optional
        Camera clock at capture; drawn from ``rng`` if omitted.
    tattoo : tuple of int, optional
        ``(x, y, w, h)``: draw a tattoo there (:func:`draw_tattoo`), a mark no
        detector looks for, which only a person can mark in review. Drawn
        without ``rng``, so the rest of the photo is the same as without it.

    Returns
    -------
    data : bytes
        The encoded file.
    info : dict
        ``identity`` (FakeIdentity), ``capture_time`` (datetime),
        ``strings`` (list of every planted string, empty if not planted) and
        ``format``.

    Raises
    ------
    ValueError
        If ``format`` is not one of the supported names or the size is not
        positive.
    """
    if format not in EXTENSIONS:
        raise ValueError(f"unknown format {format!r}; use one of {sorted(EXTENSIONS)}")
    if identity is None:
        identity = fake_identity(rng)
    if capture_time is None:
        capture_time = datetime(2023, 1, 2, 8) + timedelta(
            days=int(rng.integers(0, 3 * 365)), seconds=int(rng.integers(0, 10 * 3600)))
    img = synth_pixels(rng, width, height)
    if tattoo is not None:
        draw_tattoo(img, tattoo)
    data, strings = _encode(img, format, quality, identity, capture_time, planted, rng)
    _check(data, format, width, height, strings)
    return data, {"identity": identity, "capture_time": capture_time, "strings": strings,
                  "format": format}


def draw_tattoo(img: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Draw a tattoo (a filled blue-black heart with a ring around it) inside ``box``, in place.

    Solid shapes in tattoo ink, no strokes that read as text, no face, no
    code: what the detectors do not look for, so a test can check that a
    person's mark in review is what hides it.
    """
    x, y, w, h = (int(v) for v in box)
    yy, xx = np.mgrid[0:h, 0:w]
    u = (xx - w / 2) / (w / 2)                  # -1..1 across the box
    v = (h / 2 - yy) / (h / 2) * 1.1 + 0.15     # -1..1 down the box, heart's notch at the top
    heart = (u * u + v * v - 0.6) ** 3 - u * u * v ** 3 <= 0
    r = np.sqrt(u * u + ((yy - h / 2) / (h / 2)) ** 2)
    ring = (r > 0.86) & (r < 0.97)
    ink = np.array([38, 44, 92], np.float32)
    part = img[y:y + h, x:x + w].astype(np.float32)
    mask = (heart | ring)[:part.shape[0], :part.shape[1], None]
    img[y:y + h, x:x + w] = np.where(mask, 0.2 * part + 0.8 * ink, part).astype(np.uint8)


def write_card(root: Path, rng: np.random.Generator, *, count: int, width: int = 1600,
               height: int = 1067, formats: tuple[str, ...] = ("jpeg",)) -> list[dict]:
    """Write a memory-card-like tree of generated photos.

    Files go to ``root/DCIM/100CANON/IMG_0001.JPG`` onwards (a new
    ``101CANON`` folder after 9999 files, as the camera does). Photos come in
    sessions: a few identities, each photographed several times a few
    seconds to minutes apart. Formats cycle through ``formats``; file
    modification times are set to the capture times.

    Parameters
    ----------
    root : pathlib.Path
        Card root; created if missing. Existing files are never overwritten.
    rng : numpy.random.Generator
        Source of all randomness.
    count : int
        Number of files to write.
    width, height : int
        Frame size in pixels.
    formats : tuple of str
        Formats to cycle through (see :func:`synth_photo`).

    Returns
    -------
    list of dict
        One per file, in order: ``path``, ``identity``, ``strings``,
        ``capture_time`` and ``format``.

    Raises
    ------
    FileExistsError
        If a file of that name is already on the card.
    """
    root = Path(root)
    for fmt in formats:
        if fmt not in EXTENSIONS:
            raise ValueError(f"unknown format {fmt!r}; use one of {sorted(EXTENSIONS)}")
    people = [fake_identity(rng) for _ in range(max(1, min(count, 1 + count // 5, 8)))]
    when = datetime(2023, 1, 2, 8) + timedelta(days=int(rng.integers(0, 3 * 365)))
    who = 0
    records = []
    for i in range(count):
        if i and rng.random() < 0.3:  # next patient: new session later that day or after
            who = (who + 1) % len(people)
            when += timedelta(minutes=int(rng.integers(20, 3 * 24 * 60)))
        when += timedelta(seconds=int(rng.integers(2, 240)))
        fmt = formats[i % len(formats)]
        data, info = synth_photo(rng, identity=people[who], width=width, height=height,
                                 format=fmt, capture_time=when)
        folder = root / "DCIM" / f"{100 + i // 9999}CANON"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IMG_{i % 9999 + 1:04d}{EXTENSIONS[fmt]}"
        with open(path, "xb") as fh:  # "x": never overwrite a file silently
            fh.write(data)
        stamp = when.timestamp()
        os.utime(path, (stamp, stamp))
        records.append({"path": path, **info})
    return records
