"""DICOM pixel data: checked, decoded into frames, shown in 8 bits, written back.

Frames keep their stored values: grayscale of any depth stays grayscale in
its own bit depth, so a CT slice stays a CT slice (Hounsfield units through
its Rescale Slope / Intercept) after text in it has been hidden. Colour is
RGB with 8 bits a sample; palette colour is looked up, YBR converted, and
single-bit pixels become 8-bit black and white.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ...errors import InvalidInput, UnsupportedFormat

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
NATIVE = (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE)

_JPEG = {
    "1.2.840.10008.1.2.4.50",  # baseline
    "1.2.840.10008.1.2.4.51",  # extended
    "1.2.840.10008.1.2.4.57",  # lossless
    "1.2.840.10008.1.2.4.70",  # lossless, first-order prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
}
_J2K = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}
_RLE = "1.2.840.10008.1.2.5"
#: Syntaxes whose pixels are always lossy, and the PS3.3 C.7.6.1.1.5 method name.
LOSSY = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
}


def readable_syntaxes() -> frozenset[str]:
    """Transfer syntaxes whose pixels this installation decodes (pydicom and its plugins)."""
    from pydicom.pixels import get_decoder

    out = set(NATIVE)
    for uid in (*_JPEG, *_J2K, _RLE):
        try:
            if get_decoder(pydicom.uid.UID(uid)).is_available:
                out.add(uid)
        except (NotImplementedError, ValueError):
            continue
    return frozenset(out)


@dataclass(frozen=True)
class Layout:
    """How the stored pixels are laid out."""

    photometric: str
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    frames: int


def check_layout(ds: Dataset, syntax: str, message: str) -> Layout:
    """The pixel layout, or UnsupportedFormat(message) when it is not one we handle."""
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = int(ds.get("SamplesPerPixel", 0) or 0)
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    stored = int(ds.get("BitsStored", allocated) or allocated)
    representation = int(ds.get("PixelRepresentation", 0) or 0)
    frames_value = ds.get("NumberOfFrames")
    frames = 1
    if frames_value is not None and str(frames_value).strip() != "":
        frames = int(frames_value)
        if frames < 1:
            raise InvalidInput("the DICOM header's Number of Frames is not a positive number; the file is corrupt")
    valid = (
        (samples == 1 and photometric in (*MONOCHROME, "PALETTE COLOR") and allocated in (8, 16, 32))
        or (samples == 3 and photometric in COLOR and allocated in (8, 16))
    ) and 1 <= stored <= allocated and representation in (0, 1)
    if allocated == 1:
        # Bit-packed black and white (single-bit SC, segmentations).
        valid = samples == 1 and photometric in MONOCHROME and stored == 1 and representation == 0
    if photometric == "YBR_FULL_422" and syntax in NATIVE:
        valid = valid and allocated == 8
    if photometric == "PALETTE COLOR":
        valid = valid and representation == 0 and allocated in (8, 16)
    if photometric in ("YBR_ICT", "YBR_RCT"):
        valid = valid and syntax in _J2K
    if not valid:
        raise UnsupportedFormat(message)
    return Layout(photometric, samples, allocated, stored, representation == 1, frames)


def check_native_length(ds: Dataset, rows: int, columns: int, layout: Layout, message: str) -> None:
    """Native Pixel Data must hold every frame (pydicom checks too; this keeps it ours)."""
    per_pixel = 2 if layout.photometric == "YBR_FULL_422" else layout.samples
    pixels = rows * columns * layout.frames
    if layout.bits_allocated == 1:
        expected = (pixels + 7) // 8
    else:
        expected = pixels * per_pixel * (layout.bits_allocated // 8)
    value = ds["PixelData"].value
    if not isinstance(value, (bytes, bytearray)) or len(value) < expected:
        raise InvalidInput(message)


# JPEG start-of-frame markers (all processes) and JPEG-LS's SOF55.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def check_frames(ds: Dataset, syntax: str, rows: int, columns: int, layout: Layout,
                 corrupt: str, mismatch: str) -> None:
    """Check every compressed frame's own header against the DICOM header.

    Decoders size their buffers from the frame's header, not from Rows and
    Columns, so a frame claiming a larger image would bypass the pixel limit.
    JPEG frames must also end with an EOI marker, so truncation fails whatever
    Pillow's global LOAD_TRUNCATED_IMAGES says.
    """
    value = ds["PixelData"].value
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidInput(corrupt)
    frames = list(pydicom.encaps.generate_frames(value, number_of_frames=layout.frames))
    if len(frames) != layout.frames:
        raise InvalidInput(corrupt)
    for frame in frames:
        if syntax in _JPEG:
            _check_jpeg(frame, rows, columns, layout, corrupt, mismatch)
        elif syntax in _J2K:
            _check_j2k(frame, rows, columns, layout, corrupt, mismatch)
        elif syntax == _RLE:
            if len(frame) < 64 or int.from_bytes(frame[:4], "little") > 15:
                raise InvalidInput(corrupt)


def _check_jpeg(frame: bytes, rows: int, columns: int, layout: Layout, corrupt: str, mismatch: str) -> None:
    if frame[:2] != b"\xff\xd8" or not frame.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise InvalidInput(corrupt)
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            raise InvalidInput(corrupt)
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if length < 2:
            raise InvalidInput(corrupt)
        if marker in _SOF_MARKERS:
            if pos + 10 > len(frame):
                raise InvalidInput(corrupt)
            precision = frame[pos + 4]
            height = int.from_bytes(frame[pos + 5 : pos + 7], "big")
            width = int.from_bytes(frame[pos + 7 : pos + 9], "big")
            components = frame[pos + 9]
            if (
                precision > layout.bits_allocated
                or (height, width) != (rows, columns)
                or components != layout.samples
            ):
                raise InvalidInput(mismatch)
            return
        if marker == 0xDA:
            break  # scan data before any frame header
        pos += 2 + length
    raise InvalidInput(corrupt)


def _check_j2k(frame: bytes, rows: int, columns: int, layout: Layout, corrupt: str, mismatch: str) -> None:
    # A bare codestream: SOC (FF4F) then SIZ (FF51) with the image size.
    if len(frame) < 42 or frame[:4] != b"\xff\x4f\xff\x51":
        raise InvalidInput(corrupt)
    xsiz, ysiz, xosiz, yosiz = (int.from_bytes(frame[8 + 4 * i : 12 + 4 * i], "big") for i in range(4))
    components = int.from_bytes(frame[40:42], "big")
    if (ysiz - yosiz, xsiz - xosiz) != (rows, columns) or components != layout.samples:
        raise InvalidInput(mismatch)


def decode(ds: Dataset, layout: Layout, rows: int, columns: int, corrupt: str) -> np.ndarray:
    """All frames: (frames, rows, columns) stored values, or (frames, rows, columns, 3) uint8 RGB."""
    # pydicom converts YBR_FULL and YBR_FULL_422 to RGB itself (as_rgb).
    arr = ds.pixel_array
    if layout.frames == 1:
        arr = arr[None, ...]
    if layout.photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:
            arr = scale_to_8bit(arr, 16, False)
        want = (layout.frames, rows, columns, 3)
    elif layout.samples == 3:
        if layout.bits_allocated != 8 or layout.bits_stored != 8:
            arr = scale_to_8bit(arr, layout.bits_stored, layout.signed)
        want = (layout.frames, rows, columns, 3)
    elif layout.bits_allocated == 1:
        arr = (arr != 0).astype(np.uint8) * np.uint8(255)
        if layout.photometric == "MONOCHROME1":
            arr = 255 - arr
        want = (layout.frames, rows, columns)
    else:
        want = (layout.frames, rows, columns)
    if arr.shape != want:
        raise InvalidInput(corrupt)
    if layout.samples == 3 or layout.photometric == "PALETTE COLOR":
        if arr.dtype != np.uint8:
            raise InvalidInput(corrupt)
    return np.array(arr, copy=True, order="C")


def stored_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _lookup(arr: np.ndarray, lut: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Map stored values to 8 bits through a table indexed by stored value.

    A table over every possible stored value (at most 65536 entries) is
    exact, and cheaper in memory than floating-point arithmetic on a large
    image. Values are clipped to the stored range.
    """
    lo, hi = stored_range(bits, signed)
    index = np.clip(arr.astype(np.int64), lo, hi) - lo
    return lut[index]


def scale_to_8bit(arr: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Linear over the whole range ``bits`` allows (colour samples of more than 8 bits)."""
    lo, hi = stored_range(bits, signed)
    values = np.arange(lo, hi + 1, dtype=np.int64)
    lut = (((values - lo) * 255 + (hi - lo) // 2) // (hi - lo)).astype(np.uint8)
    return _lookup(arr, lut, bits, signed)


def display(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    """One frame as 8-bit RGB, as a reader would see it, for detection.

    Colour is returned as is. Grayscale of 8 bits or less is used as stored
    (a window would only lose contrast); deeper grayscale goes through the
    file's first VOI window (Window Center / Width after Rescale Slope /
    Intercept) when it has one, otherwise linearly over the frame's own
    minimum and maximum, so that text burned in at any level shows with the
    most contrast the frame allows. MONOCHROME1 is inverted, so white is
    white.
    """
    if frame.ndim == 3:
        return frame
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    bits = int(ds.get("BitsStored", 8) or 8)
    if frame.dtype == np.uint8 and bits <= 8:
        gray = frame
    else:
        gray = _gray_to_8bit(frame, ds)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[:, :, None], 3, axis=2)


def _gray_to_8bit(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    window = _window(ds)
    values = frame.astype(np.float64)
    if window is not None:
        center, width, slope, intercept, function = window
        x = values * slope + intercept
        if function == "SIGMOID":
            y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
        elif function == "LINEAR_EXACT":
            y = np.clip((x - center) / width + 0.5, 0.0, 1.0)
        elif width > 1:  # LINEAR, also for unknown function names
            y = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
        else:
            y = (x > center - 0.5).astype(np.float64)
        return np.rint(y * 255.0).astype(np.uint8)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(frame.shape, np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _first_number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        if not value:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _window(ds: Dataset):
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width < 1:
        return None  # no usable window: the frame's own range is used
    slope = _first_number(ds.get("RescaleSlope"))
    intercept = _first_number(ds.get("RescaleIntercept"))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return center, width, 1.0 if slope is None else slope, 0.0 if intercept is None else intercept, function


def fill_value(frame: np.ndarray, ds: Dataset, rgb_fill=(0, 0, 0)):
    """The stored value a redaction writes into a frame: what shows as black.

    Grayscale: the frame's lowest stored value (MONOCHROME2) or highest
    (MONOCHROME1), which the display mapping above shows as black; a
    redaction adds no value the frame did not hold. Colour: the fill colour.
    """
    if frame.ndim == 3:
        return np.array(rgb_fill, dtype=frame.dtype)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    return frame.max() if photometric == "MONOCHROME1" else frame.min()


def fill(frame: np.ndarray, boxes, value) -> None:
    """Write ``value`` into every (x, y, w, h) box of a frame, in place."""
    height, width = frame.shape[:2]
    for x, y, w, h in boxes:
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(width, int(x + w)), min(height, int(y + h))
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = value


def encode(frames: np.ndarray) -> tuple[bytes, str]:
    """Native little-endian Pixel Data and its VR for frames as decoded."""
    data = np.ascontiguousarray(frames)
    if data.dtype.itemsize > 1:
        data = data.astype(data.dtype.newbyteorder("<"), copy=False)
    return data.tobytes(), ("OB" if frames.dtype.itemsize == 1 else "OW")
