"""A labelled phantom set: generated clinical photos with ground truth.

Each phantom is a JPEG that looks like a clinical close-up (skin with
lesions and wounds, sometimes a drape, a ruler and a colour card) with the
things that identify a patient planted in its pixels at known places: faces,
patient labels, wristbands, marker writing on skin, and QR / Data Matrix /
Code128 symbols. Every file also carries planted metadata of every kind
(EXIF with a Canon EOS R6 make, model and serial, owner, GPS and dates; XMP;
IPTC; a comment; an embedded thumbnail), written by :mod:`workbench._synth`.
Next to ``phantom_00001.jpg`` lies ``phantom_00001.json``, the ground truth:
every object's kind and box, whether it identifies anyone, its size band,
and every identifying string planted in pixels or metadata. The evaluation
(:mod:`workbench.evaluate`) measures the de-identification pipeline against it.

Sizes are drawn in pixels, balanced over the size bands in which recall is
reported (faces 14 px to ~1000 px tall, at most 0.55 of the frame height;
text from 14 px fonts up; barcodes of at least 2 px per module, 3 px in a
20 MP frame, so that every planted symbol decodes), in 1600x1067 frames and
a share of 20 MP (5472x3648) ones. About a fifth of the phantoms are clean:
nothing identifying in their pixels (a ruler's digits and a colour card may
be there), but planted metadata all the same.

Faces come from public-domain images that ship inside the scikit-image
wheel: the astronaut portrait (NASA) and the first 100 crops of the LFW
subset (the rest of that subset are non-faces). Identities are generated
(``ZZTEST`` names); nothing is downloaded, and the same seed gives the same
bytes.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import _synth
from .errors import AlreadyExists, InvalidInput

#: Canon EOS R6 full frame, and the size most phantoms get (fast to make and to test).
FULL_SIZE = (5472, 3648)
SMALL_SIZE = (1600, 1067)
#: Object height bands (pixels) in which recall is reported.
SIZE_BANDS = ("<20", "20-40", "40-100", ">=100")
#: Share of phantoms with nothing identifying in their pixels (metadata is still planted).
CLEAN_SHARE = 0.2
JPEG_QUALITY = 90
#: Smallest font size (px) used for identifying text.
MIN_TEXT_PX = 14

# Astronaut portrait: the head crop that is pasted (y0, y1, x0, x1), the face
# box inside the full image (x, y, w, h; forehead to chin, cheek to cheek, as
# face detectors draw it), measured once on the 512x512 image, and the
# head-and-hair ellipse (centre, semi-axes) that fades into the background.
_ASTRO_CROP = (16, 210, 142, 310)
_ASTRO_FACE = (178, 76, 96, 102)
_ASTRO_HEAD = ((226, 112), (82, 96))
#: skimage.data.lfw_subset(): the first 100 crops are faces, the rest are not.
_LFW_FACES = 100

# ColorChecker Classic patches (sRGB, row by row), for the colour card.
_COLOUR_CARD = np.array([
    (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177), (103, 189, 170),
    (214, 126, 44), (80, 91, 166), (193, 90, 99), (94, 60, 108), (157, 188, 64), (224, 163, 46),
    (56, 61, 150), (70, 148, 73), (175, 54, 60), (231, 199, 31), (187, 86, 149), (8, 133, 161),
    (243, 243, 242), (200, 200, 200), (160, 160, 160), (122, 122, 121), (85, 85, 85), (52, 52, 52),
], np.float32)

_LABEL_PAPER = ((252, 252, 248), (246, 244, 232), (250, 240, 170), (236, 246, 252))
_LABEL_INK = ((18, 18, 18), (12, 24, 86), (64, 64, 64))
_BAND_COLOURS = ((38, 88, 178), (26, 58, 138), (20, 120, 150), (196, 60, 110))
# Skin markers: gentian violet is the surgical one; yellow and green show on any skin.
_MARKER_INK = ((236, 214, 36), (40, 168, 72), (112, 40, 150), (24, 24, 24))
_WARDS = ("Dermatology", "Wound Clinic", "Plastic Surgery", "Ward 7B", "Burns Unit")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------- helpers

def size_band(height: float) -> str:
    """Name the size band of an object ``height`` pixels tall.

    Parameters
    ----------
    height : float
        Object height in pixels (its upright, unclipped height).

    Returns
    -------
    str
        One of :data:`SIZE_BANDS`.
    """
    if height < 20:
        return "<20"
    if height < 40:
        return "20-40"
    if height < 100:
        return "40-100"
    return ">=100"


def _clip(box, width: int, height: int) -> tuple[int, int, int, int] | None:
    x, y, w, h = box
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _overlaps(a, b, margin: float) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return not (ax + aw + margin <= bx or bx + bw + margin <= ax
                or ay + ah + margin <= by or by + bh + margin <= ay)


class _Strings(list):
    """Ordered, de-duplicated strings (the evaluation searches for each)."""

    def add(self, *values: str) -> None:
        self.extend(v for v in values if v and v not in self)


@functools.lru_cache(maxsize=1)
def _font_files() -> tuple[str, ...]:
    """TrueType fonts that exist on this machine, sorted so runs are repeatable.

    Only local files: nothing is ever downloaded. Pillow's own default
    font (``None`` here) is always available.
    """
    found: set[str] = set()
    for root in ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts")):
        found.update(glob.glob(os.path.join(root, "**", "*.ttf"), recursive=True))
    # Symbol and maths fonts draw no Latin letters an OCR would read.
    usable = sorted(p for p in found if not any(k in p.lower() for k in ("math", "symbol", "emoji")))
    return (None, *usable[:24])


@functools.lru_cache(maxsize=512)
def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size)


def _font_name(path: str | None) -> str:
    return "pillow-default" if path is None else Path(path).stem


def _text_mask(text: str, font: ImageFont.FreeTypeFont) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Coverage mask (float 0..1) of ``text`` and its ink box inside the mask."""
    left, top, right, bottom = font.getbbox(text)
    pad = 2
    im = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(im).text((pad - left, pad - top), text, fill=255, font=font)
    mask = np.asarray(im, np.float32) / 255.0
    rows, cols = np.nonzero(mask > 0.25)
    if rows.size == 0:
        raise RuntimeError("a phantom text line rendered no ink; the font lacks these glyphs")
    ink = (int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1))
    return mask, ink


@functools.lru_cache(maxsize=1)
def _face_sources() -> dict:
    """The astronaut head and the LFW faces, prepared once per process."""
    from skimage import data  # imported here: only generation needs it

    astro = data.astronaut().astype(np.float32)
    y0, y1, x0, x1 = _ASTRO_CROP
    head = astro[y0:y1, x0:x1]
    (cx, cy), (ax, ay) = _ASTRO_HEAD
    alpha = np.zeros(head.shape[:2], np.float32)
    cv2.ellipse(alpha, (cx - x0, cy - y0), (ax, ay), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 5)
    fx, fy, fw, fh = _ASTRO_FACE
    face = (fx - x0, fy - y0, fw, fh)
    # Mean skin colour of the cheeks and forehead: the reference for tone shifts.
    skin = astro[fy + fh // 4:fy + 3 * fh // 4, fx + fw // 4:fx + 3 * fw // 4].reshape(-1, 3).mean(0)

    lfw = data.lfw_subset()[:_LFW_FACES].astype(np.float32)
    # LFW crops are tight on the face; fade their corners (background, hair)
    # with a soft super-ellipse so that no square edge is pasted.
    yy, xx = np.mgrid[-1:1:25j, -1:1:25j]
    lfw_alpha = np.clip((1.0 - (np.abs(xx) ** 4 + np.abs(yy) ** 4)) * 4, 0, 1).astype(np.float32)
    return {"astro": head, "astro_alpha": alpha, "astro_face": face, "astro_skin": skin,
            "lfw": lfw, "lfw_alpha": lfw_alpha}


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0, len(_synth._SKIN) - 1)
    i = min(int(t), len(_synth._SKIN) - 2)
    return _synth._SKIN[i] + (_synth._SKIN[i + 1] - _synth._SKIN[i]) * (t - i)


def _rotate(rgb: np.ndarray, alpha: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate a patch (degrees, counter-clockwise) onto a canvas that holds all of it.

    Returns the rotated colour and alpha and the 2x3 matrix that maps patch
    coordinates to rotated-canvas coordinates.
    """
    h, w = alpha.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    if angle == 0:
        return rgb, alpha, m
    out = cv2.warpAffine(rgb, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0)
    return out, a, m


def _box_through(m: np.ndarray, box) -> tuple[float, float, float, float]:
    """Bounding box of a patch box after the affine map ``m``."""
    x, y, w, h = box
    corners = np.array([(x, y, 1), (x + w, y, 1), (x, y + h, 1), (x + w, y + h, 1)], np.float64)
    pts = corners @ m.T
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    return x0, y0, x1 - x0, y1 - y0


# --------------------------------------------------------------------------- the canvas

class _Phantom:
    """One frame under construction: pixels, occupied areas, objects, strings."""

    def __init__(self, img: np.ndarray, rng: np.random.Generator):
        self.img = img
        self.rng = rng
        self.height, self.width = img.shape[:2]
        self.occupied: list[tuple[int, int, int, int]] = []
        self.objects: list[dict] = []
        self.strings = _Strings()

    def spot(self, w: int, h: int, *, partial: bool = False, key=None) -> tuple[int, int] | None:
        """A free place for a ``w`` x ``h`` patch, or None after a few tries.

        With ``partial``, the box ``key`` (x, y, w, h inside the patch; the
        whole patch if omitted) is put across a frame edge with 40-85 % of it
        inside, as when a face is cut off by the framing.
        """
        W, H = self.width, self.height
        kx, ky, kw, kh = key if key is not None else (0, 0, w, h)
        margin = 0.01 * max(W, H)
        for _ in range(40):
            if partial:
                inside = self.rng.uniform(0.4, 0.85)
                edge = self.rng.integers(4)
                if edge == 0:    # left
                    bx, by = -kw * (1 - inside), self.rng.uniform(0, H - kh)
                elif edge == 1:  # right
                    bx, by = W - kw * inside, self.rng.uniform(0, H - kh)
                elif edge == 2:  # top
                    bx, by = self.rng.uniform(0, W - kw), -kh * (1 - inside)
                else:            # bottom
                    bx, by = self.rng.uniform(0, W - kw), H - kh * inside
                x, y = int(round(bx - kx)), int(round(by - ky))
            else:
                if w >= W or h >= H:
                    return None
                x, y = int(self.rng.integers(0, W - w)), int(self.rng.integers(0, H - h))
            footprint = _clip((x, y, w, h), W, H)
            if footprint is None:
                continue
            if not any(_overlaps(footprint, o, margin) for o in self.occupied):
                self.occupied.append(footprint)
                return x, y
        return None

    def blend(self, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
        """Alpha-blend a float patch into the frame at (x, y), clipped to the frame."""
        h, w = alpha.shape
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
        src = rgb[y0 - y:y1 - y, x0 - x:x1 - x]
        region = self.img[y0:y1, x0:x1].astype(np.float32)
        self.img[y0:y1, x0:x1] = np.clip(region + (src - region) * a + 0.5, 0, 255).astype(np.uint8)

    def add(self, kind: str, box, *, identifying: bool, height: float, **extra) -> None:
        """Record a ground-truth object (box in frame pixels, clipped to the frame)."""
        clipped = _clip(box, self.width, self.height)
        if clipped is None:
            return
        self.objects.append({"kind": kind, "box": list(clipped), "identifying": identifying,
                             "size_band": size_band(height), "height": int(round(height)), **extra})

    def paste(self, rgb, alpha, parts, *, angle: float = 0.0, carrier: str | None = None) -> bool:
        """Rotate, place and blend a patch; record its parts as objects.

        ``parts`` is a list of (kind, box in patch, identifying, height, extra);
        ``carrier`` (label, wristband ...) is recorded with each. Returns
        False (and draws nothing) when no free place was found.
        """
        rot, a, m = _rotate(rgb, alpha, angle)
        where = self.spot(a.shape[1], a.shape[0])
        if where is None:
            return False
        x, y = where
        self.blend(rot, a, x, y)
        for kind, box, identifying, height, extra in parts:
            bx, by, bw, bh = _box_through(m, box)
            if carrier is not None:
                extra = {**extra, "carrier": carrier}
            self.add(kind, (bx + x, by + y, bw, bh), identifying=identifying, height=height, **extra)
        return True


# --------------------------------------------------------------------------- faces

def _face_height(rng: np.random.Generator, frame_h: int) -> float:
    # Balanced over the bands so that each band's recall rests on enough
    # faces; the largest are up to ~1000 px in a 20 MP frame.
    band = rng.choice(4, p=(0.1, 0.3, 0.3, 0.3))
    top = max(110.0, min(1000.0, 0.55 * frame_h))
    low, high = ((14, 20), (20, 40), (40, 100), (100, top))[band]
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


_HAIR = ((24, 20, 18), (58, 40, 28), (98, 68, 44), (176, 146, 98), (150, 148, 144))


def _lfw_head(rng: np.random.Generator, src: dict, size: int, tone: np.ndarray):
    """An LFW face (``size`` px) on a head: hair around it and a neck below.

    LFW crops hold only the inner face; at 20-40 px a face is seen as much
    by the outline of hair and head as by its features, so the crop is set
    in one. Returns colour, alpha and the face box inside the patch.
    """
    k = int(rng.integers(_LFW_FACES))
    gray = cv2.resize(src["lfw"][k], (size, size), interpolation=cv2.INTER_CUBIC)
    # Grey faces become skin: the crop's mean grey maps to the drawn tone.
    face_rgb = tone * np.clip(gray / max(1e-3, float(gray.mean())), 0, 1.6)[..., None] * 0.95
    face_alpha = cv2.resize(src["lfw_alpha"], (size, size), interpolation=cv2.INTER_LINEAR)
    w, h = int(round(1.6 * size)), int(round(1.8 * size))
    fx, fy = int(round(0.3 * size)), int(round(0.42 * size))
    hair = np.float32(_HAIR[rng.integers(len(_HAIR))])
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = hair
    alpha = np.zeros((h, w), np.float32)
    s = float(size)
    cv2.ellipse(alpha, (int(0.8 * s), int(0.78 * s)), (int(0.66 * s), int(0.74 * s)), 0, 0, 360, 1.0, -1)
    neck = (slice(int(1.2 * s), h), slice(int(0.52 * s), int(1.08 * s)))
    rgb[neck] = tone * 0.85
    alpha[neck] = 1.0
    region = rgb[fy:fy + size, fx:fx + size]
    region += (face_rgb - region) * face_alpha[..., None]
    alpha[fy:fy + size, fx:fx + size] = np.maximum(alpha[fy:fy + size, fx:fx + size], face_alpha)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, s / 40))
    return rgb, alpha, (float(fx), float(fy), s, s)


def _add_face(ph: _Phantom, *, height: float | None = None) -> bool:
    rng = ph.rng
    src = _face_sources()
    height = height or _face_height(rng, ph.height)
    use_lfw = height < 100 and rng.random() < (0.6 if height < 60 else 0.3)
    tone = _skin_tone(rng)
    if use_lfw:
        rgb, alpha, face = _lfw_head(rng, src, max(8, int(round(height))), tone)
        source = "lfw"
    else:
        head, alpha0 = src["astro"], src["astro_alpha"]
        fx, fy, fw, fh = src["astro_face"]
        s = height / fh
        w, h = max(4, int(round(head.shape[1] * s))), max(4, int(round(head.shape[0] * s)))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        rgb = cv2.resize(head, (w, h), interpolation=interp)
        alpha = cv2.resize(alpha0, (w, h), interpolation=cv2.INTER_LINEAR)
        face = (fx * w / head.shape[1], fy * h / head.shape[0], fw * w / head.shape[1], fh * h / head.shape[0])
        # Darker and lighter skin: shift the whole head towards the drawn tone.
        rgb = rgb * (tone / src["astro_skin"])
        if rng.random() < 0.5:  # mirror: the face looks the other way
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
            face = (w - face[0] - face[2], face[1], face[2], face[3])
        source = "astronaut"
    # Dim or bright light on this face, on top of the frame's own lighting.
    rgb = np.clip(rgb * rng.choice([rng.uniform(0.45, 0.75), rng.uniform(0.9, 1.1), rng.uniform(1.1, 1.3)],
                                   p=(0.25, 0.5, 0.25)), 0, 255).astype(np.float32)
    rgb, alpha = np.ascontiguousarray(rgb, np.float32), np.ascontiguousarray(alpha, np.float32)
    angle = float(rng.uniform(-30, 30)) if rng.random() < 0.6 else 0.0
    partial = rng.random() < 0.15

    rot, a, m = _rotate(rgb, alpha, angle)
    # The face is an ellipse in its box; its rotated box is the ellipse's
    # bounding box, which is what a detector would draw around a tilted face.
    cx, cy = face[0] + face[2] / 2, face[1] + face[3] / 2
    (rcx, rcy) = m @ np.array([cx, cy, 1.0])
    t = np.deg2rad(angle)
    ex = np.hypot(face[2] / 2 * np.cos(t), face[3] / 2 * np.sin(t))
    ey = np.hypot(face[2] / 2 * np.sin(t), face[3] / 2 * np.cos(t))
    key = (rcx - ex, rcy - ey, 2 * ex, 2 * ey)
    where = ph.spot(a.shape[1], a.shape[0], partial=partial, key=key)
    if where is None:
        return False
    x, y = where
    ph.blend(rot, a, x, y)
    fbox = (key[0] + x, key[1] + y, key[2], key[3])
    inside_w = min(ph.width, fbox[0] + fbox[2]) - max(0.0, fbox[0])
    inside_h = min(ph.height, fbox[1] + fbox[3]) - max(0.0, fbox[1])
    visible = max(0.0, inside_w) * max(0.0, inside_h) / (fbox[2] * fbox[3])
    ph.add("face", fbox, identifying=True, height=face[3], source=source, angle=round(angle, 1),
           visible=round(visible, 2))
    return True


# --------------------------------------------------------------------------- text and barcodes

def _text_size(rng: np.random.Generator, width: int) -> int:
    # Label text is a few millimetres tall in a ~30 cm field of view: 0.7-3.5 %
    # of the frame width, never below 14 px (capitals of ~10 px: smaller is
    # not readable, so not an identifier a reader could take from the photo).
    return int(np.clip(width * np.exp(rng.uniform(np.log(0.007), np.log(0.035))), MIN_TEXT_PX, 200))


def _pick_font(rng: np.random.Generator) -> str | None:
    fonts = _font_files()
    return fonts[int(rng.integers(len(fonts)))]


def _name_line(rng, identity) -> tuple[str, list[str]]:
    parts = identity.name.split(" ", 2)  # ZZTEST, given, family
    given, family = parts[1], parts[2]
    variant = rng.integers(3)
    if variant == 0:
        line = identity.name
    elif variant == 1:
        line = f"Name: {identity.name}"
    else:
        line = f"{_synth.MARKER} {family.upper()}, {given}"
    return line, [line, identity.name if variant < 2 else "", given, family]


def _mrn_line(rng, identity) -> tuple[str, list[str]]:
    digits = identity.mrn.split("-", 1)[1]
    line = (identity.mrn, f"MRN: {digits}", f"Hosp No {digits}", f"#{digits}")[rng.integers(4)]
    return line, [line, digits]


def _dob_line(rng, identity) -> tuple[str, list[str]]:
    d = identity.birth_date
    value = (d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%d.%m.%Y"),
             f"{d.day} {_MONTHS[d.month - 1]} {d.year}")[rng.integers(4)]
    line = (f"DOB {value}", f"DOB: {value}", f"D.O.B. {value}", f"b. {value}")[rng.integers(4)]
    return line, [line, value]


def _barcode(rng: np.random.Generator, symbology: str, payload: str, module: int,
             bar_height: int | None = None) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A symbol (grey, with quiet zone) scaled to ``module`` px, and its box without quiet zone."""
    import zxingcpp  # imported here: only barcodes need it

    fmt = {"qr": zxingcpp.BarcodeFormat.QRCode, "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
           "code128": zxingcpp.BarcodeFormat.Code128}[symbology]
    sym = np.asarray(zxingcpp.create_barcode(payload, fmt).to_image(scale=1, add_quiet_zones=True))
    if symbology == "code128":
        # One row per module column; bars are drawn as tall as the label wants.
        sym = sym[:1]
        height = bar_height or max(12, int(sym.shape[1] * module * 0.2))
        img = cv2.resize(sym, (sym.shape[1] * module, height), interpolation=cv2.INTER_NEAREST)
        # Quiet zones above and below, as on a printed label.
        pad = np.full((module * 4, img.shape[1]), 255, np.uint8)
        img = np.vstack([pad, img, pad])
    else:
        img = cv2.resize(sym, (sym.shape[1] * module, sym.shape[0] * module), interpolation=cv2.INTER_NEAREST)
    rows, cols = np.nonzero(img < 128)
    box = (int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1))
    return img.astype(np.float32), box


def _module_px(rng: np.random.Generator, width: int) -> int:
    # At least 2 px per module in a small frame and 3 px in a full frame, so
    # that every planted symbol is decodable: a barcode nobody can read is no
    # identifier, and barcode recall is judged on readable ones.
    low = 2 if width < 3000 else 3
    high = max(low + 1, int(width / 500))
    return int(rng.integers(low, high + 1))


def _payload(rng, identity, symbology: str) -> str:
    if symbology == "code128":
        return identity.mrn if rng.random() < 0.5 else identity.mrn.split("-", 1)[1]
    if symbology == "datamatrix":
        return f"{identity.mrn}|{identity.birth_date.isoformat()}"
    return f"{identity.mrn}|{identity.name}|{identity.birth_date.isoformat()}"


class _Layout:
    """A rectangular patch being laid out: background, lines of text, symbols."""

    def __init__(self, width: int, height: int, background, alpha: float = 1.0):
        self.rgb = np.empty((height, width, 3), np.float32)
        self.rgb[:] = np.asarray(background, np.float32)
        self.alpha = np.full((height, width), alpha, np.float32)
        self.parts: list = []

    def text(self, x: int, y: int, mask: np.ndarray, ink_box, ink, *, identifying: bool, font: str,
             strength: float = 1.0) -> None:
        h, w = mask.shape
        region = self.rgb[y:y + h, x:x + w]
        a = mask[:region.shape[0], :region.shape[1], None] * strength
        region += (np.asarray(ink, np.float32) - region) * a
        ix, iy, iw, ih = ink_box
        self.parts.append(("text", (x + ix, y + iy, iw, ih), identifying, ih, {"font": font}))

    def symbol(self, x: int, y: int, grey: np.ndarray, box, symbology: str) -> None:
        h, w = grey.shape
        self.rgb[y:y + h, x:x + w] = grey[..., None]
        self.alpha[y:y + h, x:x + w] = 1.0
        bx, by, bw, bh = box
        self.parts.append(("barcode", (x + bx, y + by, bw, bh), True, bh, {"symbology": symbology}))


def _grain(rng: np.random.Generator, layout: _Layout, sigma: float = 3.0) -> None:
    # Printed labels are photographed too: a little noise, like the skin around them.
    h, w = layout.alpha.shape
    layout.rgb += rng.normal(0, sigma, (h, w, 1)).astype(np.float32)


def _fit_font(rng, ph: _Phantom, lines: list[str], share: float = 0.45) -> tuple[str | None, int]:
    """A font and size whose longest line fits in ``share`` of the frame width."""
    path = _pick_font(rng)
    size = _text_size(rng, ph.width)
    while size > MIN_TEXT_PX:
        if max(_font(path, size).getlength(t) for t in lines) <= share * ph.width:
            break
        size = int(size * 0.85)
    return path, max(MIN_TEXT_PX, size)


def _add_label(ph: _Phantom, identity) -> bool:
    """A printed patient label: dark text on paper, sometimes with a symbol."""
    rng = ph.rng
    lines, strings = [], []
    for make in (_name_line, _mrn_line, _dob_line):
        if make is _name_line or rng.random() < 0.8:
            line, found = make(rng, identity)
            lines.append((line, True))
            strings += found
    if len(lines) == 3 and rng.random() < 0.5:  # MRN and birth date in either order
        lines[1], lines[2] = lines[2], lines[1]
    if rng.random() < 0.3:  # a department line: text, but it names nobody
        lines.append((_WARDS[rng.integers(len(_WARDS))], False))
    path, size = _fit_font(rng, ph, [t for t, _ in lines])
    masks = [_text_mask(t, _font(path, size)) for t, _ in lines]
    symbology = rng.choice(["", "qr", "datamatrix", "code128"], p=(0.4, 0.2, 0.2, 0.2))
    sym = None
    if symbology:
        payload = _payload(rng, identity, symbology)
        strings.append(payload)
        sym = _barcode(rng, symbology, payload, _module_px(rng, ph.width))
    pad, gap = max(4, size // 2), max(2, size // 4)
    text_w = max(m.shape[1] for m, _ in masks)
    text_h = sum(m.shape[0] for m, _ in masks) + gap * (len(masks) - 1)
    below = sym is not None and (symbology == "code128" or rng.random() < 0.5)
    if sym is None:
        w, h = text_w + 2 * pad, text_h + 2 * pad
    elif below:
        w, h = max(text_w, sym[0].shape[1]) + 2 * pad, text_h + gap + sym[0].shape[0] + 2 * pad
    else:
        w, h = text_w + gap + sym[0].shape[1] + 2 * pad, max(text_h, sym[0].shape[0]) + 2 * pad
    layout = _Layout(w, h, _LABEL_PAPER[rng.integers(len(_LABEL_PAPER))])
    ink = _LABEL_INK[rng.integers(len(_LABEL_INK))]
    y = pad
    for (mask, box), (_, identifying) in zip(masks, lines):
        layout.text(pad, y, mask, box, ink, identifying=identifying, font=_font_name(path))
        y += mask.shape[0] + gap
    if sym is not None:
        sx, sy = (pad, y) if below else (pad + text_w + gap, pad)
        layout.symbol(sx, sy, sym[0], sym[1], str(symbology))
    _grain(rng, layout)
    angle = float(rng.uniform(-15, 15)) if rng.random() < 0.5 else 0.0
    if not ph.paste(layout.rgb, layout.alpha, layout.parts, angle=angle, carrier="label"):
        return False
    ph.strings.add(*strings)
    return True


def _add_wristband(ph: _Phantom, identity) -> bool:
    """A coloured wristband with white text across the frame, sometimes a Code128."""
    rng = ph.rng
    (name, s1), (mrn, s2), (dob, s3) = _name_line(rng, identity), _mrn_line(rng, identity), _dob_line(rng, identity)
    pieces = [name, mrn, dob]
    path, size = _fit_font(rng, ph, ["   ".join(pieces)], share=0.7)
    masks = [_text_mask(t, _font(path, size)) for t in pieces]
    strings = s1 + s2 + s3
    sym = None
    if rng.random() < 0.4:
        payload = _payload(rng, identity, "code128")
        strings.append(payload)
        module = _module_px(rng, ph.width)
        sym = _barcode(rng, "code128", payload, module, bar_height=max(24, int(size * 1.6)))
    gap = size
    line_h = max(m.shape[0] for m, _ in masks)
    band_h = max(line_h, 0 if sym is None else sym[0].shape[0]) + size // 2 + 8
    content = sum(m.shape[1] for m, _ in masks) + gap * (len(masks) - 1)
    if sym is not None:
        content += gap + sym[0].shape[1] + 2 * size // 2
    # The band runs on past its print on both sides, as around a wrist.
    extra = int(rng.uniform(0.1, 0.4) * content)
    layout = _Layout(content + 2 * extra, band_h, _BAND_COLOURS[rng.integers(len(_BAND_COLOURS))])
    x = extra
    for mask, box in masks:
        layout.text(x, (band_h - mask.shape[0]) // 2, mask, box, (246, 246, 246), identifying=True,
                    font=_font_name(path))
        x += mask.shape[1] + gap
    if sym is not None:
        # The symbol sits on a white print area of the band.
        gw = sym[0].shape[1] + size
        layout.rgb[:, x:x + gw] = 250.0
        layout.symbol(x + size // 2, (band_h - sym[0].shape[0]) // 2, sym[0], sym[1], "code128")
    _grain(rng, layout)
    angle = float(rng.uniform(-10, 10))
    if not ph.paste(layout.rgb, layout.alpha, layout.parts, angle=angle, carrier="wristband"):
        return False
    ph.strings.add(*strings)
    return True


def _luma(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def _add_marker(ph: _Phantom, identity) -> bool:
    """Hand-marked text on the skin (yellow, green, violet or black marker)."""
    rng = ph.rng
    makers = [_mrn_line, _dob_line, _name_line]
    picks = rng.choice(3, size=int(rng.integers(1, 3)), replace=False)
    texts = [makers[i](rng, identity) for i in sorted(picks)]
    path, size = _fit_font(rng, ph, [t for t, _ in texts], share=0.35)
    masks = [_text_mask(t, _font(path, size)) for t, _ in texts]
    gap = max(2, size // 3)
    w = max(m.shape[1] for m, _ in masks) + 4
    h = sum(m.shape[0] for m, _ in masks) + gap * (len(masks) - 1) + 4
    # A marker that does not show on this skin (black on dark skin) writes
    # nothing anyone could read: choose among the inks that contrast.
    skin = float(ph.img[::16, ::16].mean())
    inks = [c for c in _MARKER_INK if abs(_luma(c) - skin) >= 70] or [max(_MARKER_INK, key=lambda c: abs(_luma(c) - skin))]
    layout = _Layout(w, h, inks[rng.integers(len(inks))], alpha=0.0)
    strength = float(rng.uniform(0.8, 0.95))  # ink on skin is not opaque
    y = 2
    for mask, box in masks:
        mh, mw = mask.shape
        layout.alpha[y:y + mh, 2:2 + mw] = np.maximum(layout.alpha[y:y + mh, 2:2 + mw], mask * strength)
        layout.parts.append(("text", (2 + box[0], y + box[1], box[2], box[3]), True, box[3],
                             {"font": _font_name(path)}))
        y += mh + gap
    angle = float(rng.uniform(-20, 20))
    if not ph.paste(layout.rgb, layout.alpha, layout.parts, angle=angle, carrier="marker"):
        return False
    ph.strings.add(*(s for _, found in texts for s in found))
    return True


def _add_sticker(ph: _Phantom, identity) -> bool:
    """A loose barcode sticker, sometimes with its human-readable line under it."""
    rng = ph.rng
    symbology = str(rng.choice(["qr", "datamatrix", "code128"]))
    payload = _payload(rng, identity, symbology)
    grey, box = _barcode(rng, symbology, payload, _module_px(rng, ph.width))
    hrt = symbology == "code128" and rng.random() < 0.5
    pad = 4
    h = grey.shape[0] + 2 * pad
    mask = None
    if hrt:
        path = _pick_font(rng)
        size = max(MIN_TEXT_PX, grey.shape[0] // 5)
        mask, ink = _text_mask(payload, _font(path, size))
        h += mask.shape[0] + pad
    w = max(grey.shape[1], 0 if mask is None else mask.shape[1]) + 2 * pad
    layout = _Layout(w, h, (252, 252, 252))
    layout.symbol(pad, pad, grey, box, symbology)
    if mask is not None:
        layout.text(pad, pad + grey.shape[0], mask, ink, (12, 12, 12), identifying=True, font=_font_name(path))
    _grain(rng, layout, 2.0)
    angle = float(rng.uniform(-8, 8)) if rng.random() < 0.4 else 0.0
    if not ph.paste(layout.rgb, layout.alpha, layout.parts, angle=angle, carrier="sticker"):
        return False
    ph.strings.add(payload)
    return True


def _add_ruler(ph: _Phantom) -> bool:
    """A paper scale with mm ticks and cm digits: text that identifies nobody."""
    rng = ph.rng
    mm = ph.width / 300  # a 30 cm wide field of view
    cms = int(rng.integers(8, 16))
    length = int(cms * 10 * mm) + int(4 * mm)
    band = max(18, int(10 * mm))
    layout = _Layout(length, band, (238, 236, 226))
    ink = np.float32([28, 28, 28])
    thick = max(1, int(round(mm / 5)))
    x0 = int(2 * mm)
    for k in range(cms * 10 + 1):
        x = x0 + int(round(k * mm))
        tick = band * (0.45 if k % 10 == 0 else 0.3 if k % 5 == 0 else 0.18)
        layout.rgb[:int(tick), x:x + thick] = ink
    path = _pick_font(rng)
    size = max(10, int(band * 0.38))
    font = _font(path, size)
    boxes = []
    for c in range(1, cms + 1):
        mask, (ix, iy, iw, ih) = _text_mask(str(c), font)
        x = x0 + int(round(c * 10 * mm)) - mask.shape[1] // 2
        y = band - mask.shape[0] - max(1, band // 12)
        if x < 0 or x + mask.shape[1] > length:
            continue
        region = layout.rgb[y:y + mask.shape[0], x:x + mask.shape[1]]
        region += (ink - region) * mask[..., None]
        boxes.append((x + ix, y + iy, x + ix + iw, y + iy + ih))
    b = np.array(boxes)
    row = (int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max() - b[:, 0].min()),
           int(b[:, 3].max() - b[:, 1].min()))
    # One object for the row of digits: a text detector may report them one
    # by one or as one line, and either matches it.
    parts = [("text", row, False, row[3], {"font": _font_name(path)})]
    _grain(rng, layout, 2.0)
    angle = float(rng.uniform(-5, 5)) if rng.random() < 0.3 else 0.0
    return ph.paste(layout.rgb, layout.alpha, parts, angle=angle, carrier="ruler")


def _add_colour_card(ph: _Phantom) -> bool:
    """A ColorChecker-like card: 6 x 4 patches on black, no text."""
    rng = ph.rng
    cell = max(8, int(ph.width * rng.uniform(0.016, 0.03)))
    gap = max(2, cell // 6)
    w, h = 6 * cell + 7 * gap, 4 * cell + 5 * gap
    layout = _Layout(w, h, (20, 20, 20))
    for i, colour in enumerate(_COLOUR_CARD):
        r, c = divmod(i, 6)
        y, x = gap + r * (cell + gap), gap + c * (cell + gap)
        layout.rgb[y:y + cell, x:x + cell] = colour
    _grain(rng, layout, 2.0)
    angle = float(rng.uniform(-10, 10)) if rng.random() < 0.4 else 0.0
    return ph.paste(layout.rgb, layout.alpha, [], angle=angle)


# --------------------------------------------------------------------------- one phantom

def _lighting(rng: np.random.Generator, img: np.ndarray) -> str:
    kind = str(rng.choice(["dim", "normal", "bright"], p=(0.2, 0.6, 0.2)))
    gain = {"dim": rng.uniform(0.5, 0.75), "normal": rng.uniform(0.92, 1.08), "bright": rng.uniform(1.1, 1.25)}[kind]
    cv2.convertScaleAbs(img, dst=img, alpha=float(gain))
    return kind


def _find_paper(img: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box of the plain paper scale that synth_pixels sometimes draws, if any.

    It is the only bright, colourless area of a fresh background (skin is
    never that neutral, drapes are blue), found on a reduced copy.
    """
    step = 4
    small = img[::step, ::step].astype(np.int16)
    mask = ((small.min(2) > 190) & (small.max(2) - small.min(2) < 30)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[best])
    if area < 50:
        return None
    return (x - 1) * step, (y - 1) * step, (w + 2) * step, (h + 2) * step


def _make_phantom(rng: np.random.Generator, width: int, height: int, clean: bool) -> tuple[np.ndarray, dict]:
    identity = _synth.fake_identity(rng)
    pixels, findings = _synth.synth_pixels_with_findings(rng, width, height)
    ph = _Phantom(pixels, rng)
    scale = _find_paper(ph.img)
    if scale is not None:
        # synth_pixels may draw a plain paper scale: nothing may cover it.
        ph.occupied.append(scale)
    if rng.random() < 0.35:
        _add_colour_card(ph)
    if rng.random() < 0.5:
        _add_ruler(ph)
    if not clean:
        for _ in range(int(rng.choice(4, p=(0.3, 0.4, 0.2, 0.1)))):
            _add_face(ph)
        for _ in range(int(rng.choice(3, p=(0.4, 0.45, 0.15)))):
            _add_label(ph, identity)
        if rng.random() < 0.3:
            _add_wristband(ph, identity)
        if rng.random() < 0.3:
            _add_marker(ph, identity)
        if rng.random() < 0.25:
            _add_sticker(ph, identity)
        # A photo that is meant to identify someone must, even in a crowded frame.
        tries = 0
        while not any(o["identifying"] for o in ph.objects) and tries < 10:
            _add_face(ph, height=float(rng.uniform(40, 0.3 * height)))
            tries += 1
    lighting = _lighting(rng, ph.img)
    # Findings are what a redaction must leave visible (evaluate's findings_hidden).
    objects = ph.objects + [{**f, "identifying": False, "size_band": size_band(f["box"][3]),
                             "height": f["box"][3]} for f in findings]
    return ph.img, {"identity": identity, "objects": objects, "strings": list(ph.strings),
                    "lighting": lighting}


def _encode(rng: np.random.Generator, img: np.ndarray, identity) -> tuple[bytes, list[str]]:
    """JPEG with every kind of planted metadata, as the camera-like synthetic photos carry."""
    when = datetime(2023, 1, 2, 8) + timedelta(days=int(rng.integers(0, 3 * 365)),
                                               seconds=int(rng.integers(0, 10 * 3600)))
    data, strings = _synth._encode(img, "jpeg", JPEG_QUALITY, identity, when, True, rng)
    h, w = img.shape[:2]
    _synth._check(data, "jpeg", w, h, strings)
    return data, strings


def _shares(count: int, seed: int, full_size_share: float) -> tuple[set, set]:
    """Indices of the full-size and of the clean phantoms of a set."""
    master = np.random.default_rng(seed)
    # Exact shares rather than coin flips, so that a small set still holds
    # both a full frame (when asked) and a clean photo.
    full = set(master.permutation(count)[:int(round(count * full_size_share))].tolist())
    clean = set(master.permutation(count)[:int(round(count * CLEAN_SHARE))].tolist())
    return full, clean


def _phantom(seed: int, i: int, full: bool, clean: bool) -> tuple[bytes, dict]:
    # One generator per image: image i does not depend on the others.
    rng = np.random.default_rng([seed, i])
    width, height = FULL_SIZE if full else SMALL_SIZE
    img, info = _make_phantom(rng, width, height, clean)
    data, meta_strings = _encode(rng, img, info["identity"])
    strings = _Strings(info["strings"])
    strings.add(*meta_strings)
    truth = {"image": f"phantom_{i + 1:05d}.jpg", "width": width, "height": height, "clean": clean,
             "lighting": info["lighting"], "objects": info["objects"], "strings": list(strings)}
    return data, truth


def one_phantom(number: int, *, count: int, seed: int, full_size_share: float = 0.1) -> tuple[bytes, dict]:
    """Phantom ``number`` (1-based, as in ``phantom_00001.jpg``) of a set, made alone, in memory.

    The bytes and ground truth are the same as :func:`generate_phantoms`
    writes for that set (same ``count``, ``seed`` and share), so a test can
    pin one hard case of a large set without generating the rest.
    """
    if not 1 <= number <= count:
        raise InvalidInput("number is between 1 and count", number=number, count=count)
    full, clean = _shares(count, seed, full_size_share)
    return _phantom(seed, number - 1, number - 1 in full, number - 1 in clean)


def generate_phantoms(out_dir, *, count: int, seed: int, full_size_share: float = 0.1) -> list[dict]:
    """Write a phantom set: JPEGs with planted identifiers and ground truth.

    Parameters
    ----------
    out_dir : str or path
        Folder to write to (created if missing). ``phantom_00001.jpg`` and
        ``phantom_00001.json`` onwards, and ``manifest.json`` with the
        parameters. Existing files are never overwritten.
    count : int
        Number of phantoms.
    seed : int
        The same seed (and count and share) gives byte-identical files.
    full_size_share : float
        Share of 20 MP (5472x3648) frames; the rest are 1600x1067.

    Returns
    -------
    list of dict
        The ground truth of each phantom, as written to its JSON file:
        ``image``, ``width``, ``height``, ``clean``, ``lighting``,
        ``objects`` (``kind``, ``box`` [x, y, w, h] clipped to the frame,
        ``identifying``, ``size_band``, ``height`` and, by kind, ``source``,
        ``angle``, ``visible``, ``font``, ``symbology``, ``carrier``; objects
        of kind ``finding``, never identifying, are the lesions, wounds and
        scars, with their type as ``finding``) and ``strings`` (every
        identifying string planted in pixels or metadata).

    Raises
    ------
    InvalidInput
        If ``count`` is negative or ``full_size_share`` is not in [0, 1].
    AlreadyExists
        If a phantom file of the same name is already in ``out_dir``.
    """
    if count < 0:
        raise InvalidInput("count must be zero or more", count=count)
    if not 0.0 <= full_size_share <= 1.0:
        raise InvalidInput("full_size_share is a fraction between 0 and 1", full_size_share=full_size_share)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full, clean = _shares(count, seed, full_size_share)
    manifest = out / "manifest.json"
    truths = []
    for i in range(count):
        stem = f"phantom_{i + 1:05d}"
        for suffix in (".jpg", ".json"):
            if (out / (stem + suffix)).exists():
                raise AlreadyExists("a phantom file is already in the output folder; choose an empty folder",
                                    name=stem + suffix)
        data, truth = _phantom(seed, i, i in full, i in clean)
        with open(out / (stem + ".jpg"), "xb") as fh:
            fh.write(data)
        with open(out / (stem + ".json"), "x") as fh:
            json.dump(truth, fh, indent=1)
            fh.write("\n")
        truths.append(truth)
    from . import __version__

    manifest.write_text(json.dumps({
        "generator": "workbench.phantoms", "version": __version__, "count": count, "seed": seed,
        "full_size_share": full_size_share, "clean_share": CLEAN_SHARE,
        "fonts": [_font_name(p) for p in _font_files()],
    }, indent=1) + "\n")
    return truths


def run_phantoms(out_dir, count: int, seed: int) -> int:
    """Command-line entry (``workbench phantoms OUT --count N --seed S``).

    Prints one summary line and returns the exit status (0).
    """
    start = time.perf_counter()
    truths = generate_phantoms(out_dir, count=count, seed=seed)
    kinds = {"face": 0, "text": 0, "barcode": 0}
    for t in truths:
        for o in t["objects"]:
            if o["identifying"]:
                kinds[o["kind"]] += 1
    full = sum(t["width"] == FULL_SIZE[0] for t in truths)
    clean = sum(t["clean"] for t in truths)
    print(f"wrote {len(truths)} phantoms to {out_dir} ({full} at 20 MP, {clean} clean; "
          f"{kinds['face']} faces, {kinds['text']} text lines, {kinds['barcode']} barcodes) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


__all__ = ["FULL_SIZE", "SIZE_BANDS", "SMALL_SIZE", "generate_phantoms", "run_phantoms", "size_band"]
