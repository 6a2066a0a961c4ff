"""DICOM in and out of the de-identification pipeline.

Four verbs, all working on bytes and datasets in memory (the input is
usually a decrypted original, so nothing touches disk):

- :func:`read_dicom` decodes every frame of any image object whose pixels
  this installation can decode (CT, MR, CR, DX, MG, US single and
  multi-frame, XA, secondary capture, VL photographic, endoscopic and
  microscopic, ...; uncompressed, or JPEG, JPEG-LS, JPEG 2000 and RLE
  through pydicom's pylibjpeg plugins) and returns the dataset without its
  pixel data. The dataset is *identifiable*: keep it in memory only.
- :func:`deidentify_dataset` returns a new dataset cleaned by the DICOM
  PS3.15 Annex E Basic Application Level Confidentiality Profile with the
  Retain Longitudinal Temporal Information With Modified Dates and Clean
  Descriptors Options (and Clean Pixel Data, once text in every frame has
  been hidden), applied from PS3.15 Table E.1-1 kept as data (see
  :mod:`._profile`).
- :func:`write_dicom` writes a de-identified dataset and its (redacted)
  frames as a new Part 10 file: Explicit VR Little Endian, uncompressed,
  file meta rebuilt from scratch, byte-for-byte reproducible.
- :func:`profile_problems` re-reads a written file whole, file meta
  included, and names every attribute the profile would not have left.

Every failure is a :class:`workbench.errors.InvalidInput` subclass; no
pydicom or numpy exception escapes, and no message quotes a value from the
file (names, IDs and UIDs identify patients). pydicom's own warnings and log
records do quote values, so they are silenced while these functions run.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import struct
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from ..._imageio import MAX_PIXELS, _as_bytes
from ...errors import DecompressionBomb, InvalidInput, UnsupportedFormat, WorkbenchError
from . import _pixels, _profile
from ._profile import Cleaner, uid_text

__all__ = [
    "DicomImage",
    "PROFILE",
    "is_dicom",
    "read_dicom",
    "deidentify_dataset",
    "write_dicom",
    "profile_problems",
]

#: PS3.15 Table E.1-1 as the workbench applies it: one :class:`._profile.Row`
#: per attribute (``row.action`` is the action taken).
PROFILE: tuple[_profile.Row, ...] = tuple(_profile.profile().rows)

# --------------------------------------------------------------------------
# What is written
# --------------------------------------------------------------------------

# A fixed UUID-derived root: no organisation root is registered for the
# workbench, and a constant keeps the output reproducible.
_IMPLEMENTATION_CLASS_UID = "2.25.59381377046425268623484463478815149411"
_IMPLEMENTATION_VERSION = "WORKBENCH_0_1"

_METHOD_TEXT = [
    "PS3.15 E Basic Application Confidentiality Profile",
    "Retain Longitudinal Temporal Information Modified Dates",
    "Clean Descriptors (by removal)",
    "workbench: private, overlay, curve, unlisted text removed",
]
# CID 7050 De-identification Method
_CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
_CODE_PIXELS = ("113101", "Clean Pixel Data Option")
_CODE_DESCRIPTORS = ("113105", "Clean Descriptors Option")
_CODE_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")

_SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
_SC_SINGLE_BIT = "1.2.840.10008.5.1.4.1.1.7.1"
_SC_GRAY_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"
_SC_GRAY_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
_SC_TRUE_COLOR = "1.2.840.10008.5.1.4.1.1.7.4"
# These IODs require MONOCHROME2 pixels; written as RGB they become plain
# Secondary Capture, the one SC IOD that allows any photometric interpretation.
_GRAYSCALE_MULTIFRAME_SC = {_SC_SINGLE_BIT, _SC_GRAY_BYTE, _SC_GRAY_WORD}

_PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_SHIFT_DAYS = 36_525  # a century: anything larger is a bug, not a shift
_MIN_UID_KEY_BYTES = 16

# --------------------------------------------------------------------------
# Messages: what happened and what to do; never a value from the file
# --------------------------------------------------------------------------

_MSG_EMPTY = "the DICOM file is empty (0 bytes); copy or export it again"
_MSG_NOT_DICOM = (
    "the data is not a DICOM Part 10 file (no 128-byte preamble followed by 'DICM'); "
    "export the image from the PACS or viewer as a DICOM file"
)
_MSG_META = (
    "the DICOM file meta information is missing or damaged; "
    "export the file again from the PACS or modality"
)
_MSG_CORRUPT = (
    "the DICOM file is truncated or corrupt; copy it again, or export it again "
    "from the PACS or modality"
)
_MSG_MEMORY = "the DICOM image is too large to decode in the memory available"
_MSG_DEFLATED = (
    "deflated DICOM (Deflated Explicit VR Little Endian) is not read: it would be inflated "
    "whole before any size check; export the image uncompressed, or convert it first "
    "(e.g. dcmconv +te or gdcmconv --raw)"
)
_MSG_SYNTAX = (
    "the pixel data of this DICOM file is compressed in a way this installation cannot "
    "decode (read: uncompressed, JPEG, JPEG-LS, JPEG 2000, HTJ2K and RLE; MPEG and other "
    "video syntaxes are not); export the image uncompressed from the PACS, or decompress "
    "it first (e.g. dcmdjpeg or gdcmconv --raw)"
)
_MSG_NO_PIXELS = (
    "the DICOM file has no pixel data that can be decoded (a report, presentation state, "
    "waveform, document or float pixel data); only image objects are de-identified, "
    "so choose an image file"
)
_MSG_BOMB = (
    f"the DICOM header claims more than {MAX_PIXELS:,} pixels (rows x columns x frames); "
    "the file is corrupt or hostile and was not decoded"
)
_MSG_PIXEL_FORMAT = (
    "this DICOM pixel format is not supported: grayscale of 1 to 32 bits, palette colour, "
    "and RGB or YBR colour of 8 or 16 bits are read; export the image as RGB or grayscale"
)
_MSG_JPEG_MISMATCH = (
    "a compressed frame inside the DICOM file does not match the DICOM header (size, "
    "samples or precision); the file is corrupt, so export it again"
)
_MSG_NOT_DATASET = "expected a pydicom Dataset (as returned by read_dicom)"
_MSG_PSEUDONYM = (
    "patient_pseudonym must be 1-64 characters of letters, digits, '.', '_' or '-', "
    "starting with a letter or digit; use the pseudonym the workbench generated"
)
_MSG_SHIFT = f"date_shift_days must be an integer between -{_MAX_SHIFT_DAYS} and {_MAX_SHIFT_DAYS}"
_MSG_UID_KEY = (
    f"uid_key must be at least {_MIN_UID_KEY_BYTES} random bytes; "
    "use the key the workbench generated for this cohort"
)
_MSG_FLAG = "burned_in_text_redacted must be True or False"
_MSG_DEID = (
    "the dataset has not been de-identified (PatientIdentityRemoved is not YES, or "
    "private, overlay or curve data remain); pass it through deidentify_dataset first"
)
_MSG_NO_SOP = (
    "the dataset has no SOP Class UID or SOP Instance UID; "
    "de-identify a dataset returned by read_dicom"
)
_MSG_PIXELS_ARG = (
    "pixels must be a numpy array: uint8 RGB of shape ([frames,] rows, columns, 3), or "
    "grayscale integers of shape ([frames,] rows, columns) that fit the dataset's Bits Stored, "
    "with both sides between 1 and 65535"
)
_MSG_WRITE = "the dataset could not be written as DICOM; it holds a malformed value"


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DicomImage:
    """Decoded DICOM frames and the identifiable dataset.

    Attributes
    ----------
    frames : numpy.ndarray
        Every frame, a new writeable array. Grayscale: the stored values,
        shape ``(frames, rows, columns)``, in the file's own bit depth and
        signedness (single-bit pixels become 0 and 255 in ``uint8``).
        Colour: ``uint8`` RGB of shape ``(frames, rows, columns, 3)``
        (palette colour looked up, YBR converted, samples of more than 8
        bits scaled over the range Bits Stored allows).
    dataset : pydicom.Dataset
        The original dataset without Pixel Data. It identifies the patient:
        keep it in memory, and pass it to :func:`deidentify_dataset` before
        anything is written. For lossy-compressed input, Lossy Image
        Compression is set to ``01`` as PS3.3 requires.
    burned_in_annotation : bool or None
        Burned In Annotation (0028,0301): True for ``YES``, False for
        ``NO``, None when absent or not one of these.
    pixels : numpy.ndarray
        The first frame as 8-bit RGB, as :meth:`display` shows it.
    """

    frames: np.ndarray
    dataset: Dataset
    burned_in_annotation: bool | None
    pixels: np.ndarray = field(repr=False)

    @property
    def frame_count(self) -> int:
        """How many frames the image has."""
        return int(self.frames.shape[0])

    def display(self, index: int) -> np.ndarray:
        """Frame ``index`` as 8-bit RGB for detection (see :func:`._pixels.display`)."""
        return _pixels.display(self.frames[index], self.dataset)


def is_dicom(data: bytes) -> bool:
    """Tell whether bytes look like a DICOM Part 10 file.

    Only the standard layout is accepted: a 128-byte preamble followed by
    ``DICM``. A bare dataset without preamble is not recognised, because
    nothing but the preamble marks it as DICOM.

    Parameters
    ----------
    data : bytes
        The file's contents (or at least its first 132 bytes).

    Returns
    -------
    bool
        True if ``DICM`` sits at offset 128.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return False
    return len(data) >= 132 and bytes(data[128:132]) == b"DICM"


def read_dicom(data: bytes) -> DicomImage:
    """Decode every frame of a DICOM image object.

    Everything happens in memory. The transfer syntax is checked from the
    file meta information before the dataset is parsed, the pixel count
    (rows x columns x frames) before pixel data is decoded, and each
    compressed frame's own header against the DICOM header before it is
    decompressed.

    Parameters
    ----------
    data : bytes
        The whole Part 10 file.

    Returns
    -------
    DicomImage
        The frames, the identifiable dataset without Pixel Data, and the
        Burned In Annotation flag.

    Raises
    ------
    UnsupportedFormat
        Not a Part 10 file; a transfer syntax this installation cannot
        decode (deflated, video); an unsupported pixel format.
    DecompressionBomb
        Rows x Columns x Frames exceeds :data:`workbench._imageio.MAX_PIXELS`.
    InvalidInput
        Empty, truncated or corrupt data, or no pixel data.
    """
    data = _as_bytes(data)
    if not data:
        raise InvalidInput(_MSG_EMPTY)
    if not is_dicom(data):
        raise UnsupportedFormat(_MSG_NOT_DICOM)
    syntax = _file_meta_transfer_syntax(data)
    if syntax == _pixels.DEFLATED:
        raise UnsupportedFormat(_MSG_DEFLATED, transfer_syntax=_standard_name(syntax))
    if syntax not in _pixels.readable_syntaxes():
        raise UnsupportedFormat(_MSG_SYNTAX, transfer_syntax=_standard_name(syntax))
    with _quiet(), _failing_closed(_MSG_CORRUPT):
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
        # pydicom converts element values lazily; converting them all here
        # makes damage anywhere in the file fail now, inside this guard,
        # rather than later in code that does not expect it.
        for _ in ds.iterall():
            pass
        if str(ds.file_meta.get("TransferSyntaxUID", "")) != syntax:
            raise InvalidInput(_MSG_META)
        if "PixelData" not in ds:
            raise InvalidInput(_MSG_NO_PIXELS)
        layout = _pixels.check_layout(ds, syntax, _MSG_PIXEL_FORMAT)
        rows, columns = _check_size(ds, layout.frames)
        if syntax in _pixels.NATIVE:
            _pixels.check_native_length(ds, rows, columns, layout, _MSG_CORRUPT)
        else:
            _pixels.check_frames(ds, syntax, rows, columns, layout, _MSG_CORRUPT, _MSG_JPEG_MISMATCH)
        frames = _pixels.decode(ds, layout, rows, columns, _MSG_CORRUPT)
        for tag in [t for t in ds.keys() if t.group == 0x7FE0]:
            del ds[tag]  # also drops pydicom's cached pixel array
        if syntax in _pixels.LOSSY:
            _record_lossy_compression(ds, _pixels.LOSSY[syntax])
        _describe_decoded(ds, layout)
        burned_in = {"YES": True, "NO": False}.get(str(ds.get("BurnedInAnnotation", "")).strip().upper())
        first = _pixels.display(frames[0], ds)
    return DicomImage(frames=frames, dataset=ds, burned_in_annotation=burned_in,
                      pixels=np.array(first, dtype=np.uint8, copy=True, order="C"))


def deidentify_dataset(
    ds: Dataset,
    *,
    patient_pseudonym: str,
    date_shift_days: int,
    uid_key: bytes,
    burned_in_text_redacted: bool,
) -> Dataset:
    """Return a de-identified copy of a dataset (PS3.15 Annex E).

    Applies the Basic Application Level Confidentiality Profile with the
    Retain Longitudinal Temporal Information With Modified Dates and Clean
    Descriptors Options to every level of the dataset, from PS3.15 Table
    E.1-1 (see :mod:`._profile` and :data:`PROFILE`). The input is not changed.

    Parameters
    ----------
    ds : pydicom.Dataset
        The identifiable dataset, usually :attr:`DicomImage.dataset`.
    patient_pseudonym : str
        Written as Patient's Name and Patient ID: 1-64 letters, digits,
        ``.``, ``_`` or ``-``.
    date_shift_days : int
        Days added to every date (negative to go back); the same value for
        all of a patient's files keeps intervals between them.
    uid_key : bytes
        Key of the UID mapping (at least 16 bytes). The same key maps the
        same UID to the same new UID, so a series stays a series.
    burned_in_text_redacted : bool
        True once text in every frame has been found and hidden: only then
        is Burned In Annotation set to ``NO`` and the Clean Pixel Data
        Option (DCM 113101) recorded. Otherwise the original value is kept
        (``YES`` if it was absent or not ``NO``).

    Returns
    -------
    pydicom.Dataset
        A new dataset with Patient Identity Removed ``YES``, De-identification
        Method and its code sequence (CID 7050: DCM 113100, 113107, 113105,
        and 113101 when pixels were cleaned), Longitudinal Temporal
        Information Modified ``MODIFIED``, and new file meta information
        whose Media Storage SOP Instance UID matches the new SOP Instance
        UID. It holds no pixel data.

    Raises
    ------
    InvalidInput
        An argument is malformed, or the dataset holds a value that cannot be
        read.
    """
    if not isinstance(ds, Dataset):
        raise InvalidInput(_MSG_NOT_DATASET)
    if not isinstance(patient_pseudonym, str) or not _PSEUDONYM.fullmatch(patient_pseudonym):
        raise InvalidInput(_MSG_PSEUDONYM)
    if (
        isinstance(date_shift_days, bool)
        or not isinstance(date_shift_days, int)
        or abs(date_shift_days) > _MAX_SHIFT_DAYS
    ):
        raise InvalidInput(_MSG_SHIFT)
    if not isinstance(uid_key, (bytes, bytearray)) or len(uid_key) < _MIN_UID_KEY_BYTES:
        raise InvalidInput(_MSG_UID_KEY)
    if not isinstance(burned_in_text_redacted, bool):
        raise InvalidInput(_MSG_FLAG)
    cleaner = Cleaner(patient_pseudonym, date_shift_days, bytes(uid_key))
    with _quiet(), _failing_closed(_MSG_CORRUPT):
        # Work on a private deep copy: reading converts pydicom's raw
        # elements in place, and no value object may be shared between the
        # input and the output.
        source = copy.deepcopy(ds)
        out = cleaner.dataset(source)
        out.PatientName = patient_pseudonym
        out.PatientID = patient_pseudonym
        if "SOPInstanceUID" not in out:
            meta_uid = uid_text(getattr(source, "file_meta", Dataset()).get("MediaStorageSOPInstanceUID"))
            if meta_uid:
                out.SOPInstanceUID = cleaner.uid(meta_uid)
        if "SOPClassUID" not in out:
            meta_class = uid_text(getattr(source, "file_meta", Dataset()).get("MediaStorageSOPClassUID"))
            if meta_class.startswith("1.2.840.10008."):
                out.SOPClassUID = meta_class
        out.PatientIdentityRemoved = "YES"
        codes = [_CODE_BASIC, _CODE_DATES, _CODE_DESCRIPTORS]
        if burned_in_text_redacted:
            codes.insert(1, _CODE_PIXELS)
        out.DeidentificationMethod = list(_METHOD_TEXT) + (["Clean Pixel Data"] if burned_in_text_redacted else [])
        out.DeidentificationMethodCodeSequence = Sequence([_code(v, m) for v, m in codes])
        out.LongitudinalTemporalInformationModified = "MODIFIED"
        original = str(source.get("BurnedInAnnotation", "") or "").strip().upper()
        if burned_in_text_redacted:
            out.BurnedInAnnotation = "NO"
        else:
            out.BurnedInAnnotation = "NO" if original == "NO" else "YES"
        out.file_meta = _file_meta(uid_text(out.get("SOPClassUID")), uid_text(out.get("SOPInstanceUID")))
    return out


def write_dicom(ds: Dataset, pixels: np.ndarray) -> bytes:
    """Write a de-identified dataset and its frames as a new DICOM file.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset returned by :func:`deidentify_dataset`. It is not changed.
    pixels : numpy.ndarray
        Either ``uint8`` RGB of shape ``([frames,] rows, columns, 3)``
        (usually redacted :attr:`DicomImage.pixels` or colour
        :attr:`DicomImage.frames`), written as 8-bit RGB; or grayscale
        integers of shape ``([frames,] rows, columns)`` (grayscale
        :attr:`DicomImage.frames`), written in the dataset's own bit depth,
        signedness, photometric interpretation, rescale and window.

    Returns
    -------
    bytes
        A Part 10 file: zero preamble, file meta rebuilt from scratch,
        Explicit VR Little Endian, uncompressed. Grayscale multi-frame SC
        objects written as RGB become plain Secondary Capture Image
        Storage, whose IOD allows RGB; single-bit SC objects are written as
        8-bit grayscale multi-frame SC. The same inputs always give the same
        bytes.

    Raises
    ------
    InvalidInput
        The pixels are not as described, the dataset has not been through
        :func:`deidentify_dataset`, lacks SOP UIDs, or holds a value that
        cannot be written.
    DecompressionBomb
        The pixels exceed :data:`workbench._imageio.MAX_PIXELS`.
    """
    if not isinstance(ds, Dataset):
        raise InvalidInput(_MSG_NOT_DATASET)
    frames, rgb = _frames_argument(pixels)
    count, rows, columns = (int(v) for v in frames.shape[:3])
    if count * rows * columns > MAX_PIXELS:
        raise DecompressionBomb(_MSG_BOMB, limit=MAX_PIXELS)
    with _quiet(), _failing_closed(_MSG_WRITE):
        _check_deidentified(ds)
        out = copy.deepcopy(ds)
        sop_class = uid_text(out.get("SOPClassUID"))
        sop_instance = uid_text(out.get("SOPInstanceUID"))
        if not sop_class or not sop_instance:
            raise InvalidInput(_MSG_NO_SOP)
        for tag in [t for t in out.keys() if t.group == 0x7FE0]:
            del out[tag]
        if rgb:
            sop_class = _describe_rgb(out, sop_class, count)
        else:
            sop_class = _describe_gray(out, sop_class, frames)
        out.Rows = rows
        out.Columns = columns
        if count > 1 or "NumberOfFrames" in out:
            out.NumberOfFrames = count
        data, vr = _pixels.encode(frames)
        out.add(DataElement(0x7FE00010, vr, data))
        out.file_meta = _file_meta(sop_class, sop_instance)
        out.preamble = b"\x00" * 128
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, out, enforce_file_format=True)
        return buf.getvalue()


def profile_problems(data: bytes) -> list[str]:
    """Everything in a written DICOM file that the profile would have removed.

    The whole file is read again, file meta included, and every element at
    every depth judged by the profile's rules (see :func:`._profile.problems`).
    A file that cannot be read is a problem too. Messages name attributes by
    keyword and tag, never by value.
    """
    try:
        with _quiet():
            ds = pydicom.dcmread(io.BytesIO(_as_bytes(data)), force=False)
            for _ in ds.iterall():
                pass
            return _profile.problems(ds)
    except WorkbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read back is a failed check
        return [f"the written DICOM file cannot be read back ({type(exc).__name__})"]


# --------------------------------------------------------------------------
# Guards: errors and pydicom's chatter
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _failing_closed(message: str):
    """Turn any failure into InvalidInput, without chaining.

    pydicom and numpy messages may quote element values, so the original
    exception is not chained; its class name is kept as ``cause``.
    """
    try:
        yield
    except WorkbenchError:
        raise
    except MemoryError:
        raise InvalidInput(_MSG_MEMORY, cause="MemoryError") from None
    except Exception as exc:  # noqa: BLE001 - fail closed on anything pydicom raises
        raise InvalidInput(message, cause=type(exc).__name__) from None


_LOGGER = logging.getLogger("pydicom")
_LOG_LOCK = threading.Lock()
_log_depth = 0
_log_saved_level = logging.NOTSET


@contextlib.contextmanager
def _quiet():
    """Silence pydicom's warnings and log records for the duration.

    They quote element values ("invalid value for VR PN: '...'"), which would
    put patient names into notebook output and logs. Records of the
    ``pydicom`` logger and its children are suppressed through the parent's
    level; a counter under a lock restores it only when the last concurrent
    caller leaves.
    """
    global _log_depth, _log_saved_level
    with _LOG_LOCK:
        if _log_depth == 0:
            _log_saved_level = _LOGGER.level
            _LOGGER.setLevel(logging.CRITICAL + 1)
        _log_depth += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        with _LOG_LOCK:
            _log_depth -= 1
            if _log_depth == 0:
                _LOGGER.setLevel(_log_saved_level)


def _standard_name(uid: str) -> str:
    """A DICOM-defined UID's name, or ``unknown``: never a value made up by the file.

    Looked up in pydicom's UID table directly: constructing a ``UID`` from a
    damaged value would make pydicom warn with the value quoted.
    """
    entry = pydicom.uid.UID_dictionary.get(uid)
    return entry[0] if entry else "unknown"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

# Explicit VRs with a 2-byte reserved field and a 4-byte length.
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _file_meta_transfer_syntax(data: bytes) -> str:
    """Read (0002,0010) from the file meta group without pydicom.

    The transfer syntax decides whether the dataset may be parsed at all
    (pydicom inflates a deflated dataset whole, before any check can run),
    so it is read by this small bounded parser first. Group 0002 is always
    Explicit VR Little Endian.
    """
    pos, end = 132, len(data)
    syntax = None
    while pos + 8 <= end:
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if not (vr.isalpha() and vr.isupper()):
            raise InvalidInput(_MSG_META)
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise InvalidInput(_MSG_META)
            length = struct.unpack_from("<I", data, pos + 8)[0]
            start = pos + 12
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            start = pos + 8
        if start + length > end:
            raise InvalidInput(_MSG_META)
        if element == 0x0010:
            try:
                syntax = data[start : start + length].rstrip(b"\x00 ").decode("ascii")
            except UnicodeDecodeError:
                raise InvalidInput(_MSG_META) from None
        pos = start + length
    if not syntax:
        raise InvalidInput(_MSG_META)
    return syntax


def _check_size(ds: Dataset, frames: int) -> tuple[int, int]:
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if rows is None or columns is None:
        raise InvalidInput(_MSG_CORRUPT)
    rows, columns = int(rows), int(columns)
    if rows <= 0 or columns <= 0:
        raise InvalidInput(_MSG_CORRUPT)
    if rows * columns * frames > MAX_PIXELS:
        raise DecompressionBomb(_MSG_BOMB, limit=MAX_PIXELS, pixels=rows * columns * frames)
    return rows, columns


def _record_lossy_compression(ds: Dataset, method: str) -> None:
    # PS3.3 C.7.6.1.1.5: once pixels have been lossy-compressed, Lossy Image
    # Compression stays "01" in every derived image.
    if str(ds.get("LossyImageCompression", "") or "").strip() != "01":
        ds.LossyImageCompression = "01"
    if "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = method


def _describe_decoded(ds: Dataset, layout: _pixels.Layout) -> None:
    """Make the dataset's pixel description match :attr:`DicomImage.frames`."""
    if layout.samples == 3 or layout.photometric == "PALETTE COLOR":
        return  # written as RGB by write_dicom, which rewrites the description
    if layout.bits_allocated == 1:
        ds.PhotometricInterpretation = "MONOCHROME2"  # decode() made black black
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

# Image Pixel and VOI/Modality LUT attributes that described the original
# pixels and are wrong for 8-bit RGB.
_PIXEL_DESCRIPTION = (
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "ModalityLUTSequence",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
)
_PALETTE = (
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "AlphaPaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "AlphaPaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "SegmentedAlphaPaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
)


def _frames_argument(pixels) -> tuple[np.ndarray, bool]:
    """(frames with a leading frame axis, whether they are RGB), or InvalidInput."""
    if not isinstance(pixels, np.ndarray):
        raise InvalidInput(_MSG_PIXELS_ARG)
    if pixels.ndim == 3 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8:
        frames, rgb = pixels[None, ...], True
    elif pixels.ndim == 4 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8:
        frames, rgb = pixels, True
    elif pixels.ndim in (2, 3) and pixels.dtype.kind in "iu" and pixels.dtype.itemsize in (1, 2, 4):
        frames, rgb = (pixels[None, ...] if pixels.ndim == 2 else pixels), False
    else:
        raise InvalidInput(_MSG_PIXELS_ARG)
    if frames.shape[0] < 1 or not (1 <= frames.shape[1] <= 0xFFFF and 1 <= frames.shape[2] <= 0xFFFF):
        raise InvalidInput(_MSG_PIXELS_ARG)
    return frames, rgb


def _describe_rgb(out: Dataset, sop_class: str, count: int) -> str:
    original_photometric = str(out.get("PhotometricInterpretation", "") or "").strip()
    for keyword in (*_PIXEL_DESCRIPTION, *_PALETTE):
        if keyword in out:
            delattr(out, keyword)
    # The Presentation LUT (2050) that described grayscale output.
    for tag in [t for t in out.keys() if t.group == 0x2050]:
        del out[tag]
    if original_photometric not in _pixels.COLOR and "ICCProfile" in out:
        del out.ICCProfile  # a grayscale profile does not describe RGB
    if sop_class in _GRAYSCALE_MULTIFRAME_SC:
        if count > 1:
            sop_class = _SC_TRUE_COLOR
        else:
            sop_class = _SC_IMAGE
            for keyword in ("NumberOfFrames", "FrameIncrementPointer"):
                if keyword in out:
                    delattr(out, keyword)
        out.SOPClassUID = sop_class
    elif sop_class == _SC_IMAGE and count == 1 and "NumberOfFrames" in out:
        del out.NumberOfFrames  # single-frame IODs have no Multi-frame Module
    out.SamplesPerPixel = 3
    out.PhotometricInterpretation = "RGB"
    out.PlanarConfiguration = 0
    out.BitsAllocated = 8
    out.BitsStored = 8
    out.HighBit = 7
    out.PixelRepresentation = 0
    return sop_class


def _describe_gray(out: Dataset, sop_class: str, frames: np.ndarray) -> str:
    photometric = str(out.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric not in _pixels.MONOCHROME:
        photometric = "MONOCHROME2"
    allocated = frames.dtype.itemsize * 8
    signed = frames.dtype.kind == "i"
    stored = int(out.get("BitsStored", allocated) or allocated)
    if not 1 <= stored <= allocated or int(out.get("BitsAllocated", allocated) or allocated) != allocated:
        stored = allocated
    lo, hi = _pixels.stored_range(stored, signed)
    if frames.size and (int(frames.min()) < lo or int(frames.max()) > hi):
        raise InvalidInput(_MSG_PIXELS_ARG)
    for keyword in _PALETTE:
        if keyword in out:
            delattr(out, keyword)
    if "PlanarConfiguration" in out:
        del out.PlanarConfiguration
    if sop_class == _SC_SINGLE_BIT:
        sop_class = _SC_GRAY_BYTE if allocated == 8 else _SC_GRAY_WORD
        out.SOPClassUID = sop_class
        out.NumberOfFrames = frames.shape[0]
    out.SamplesPerPixel = 1
    out.PhotometricInterpretation = photometric
    out.BitsAllocated = allocated
    out.BitsStored = stored
    out.HighBit = stored - 1
    out.PixelRepresentation = 1 if signed else 0
    return sop_class


def _check_deidentified(ds: Dataset) -> None:
    """Refuse a dataset that has visibly not been through deidentify_dataset."""
    if str(ds.get("PatientIdentityRemoved", "") or "").strip().upper() != "YES":
        raise InvalidInput(_MSG_DEID)
    for elem in ds.iterall():
        group = elem.tag.group
        if elem.tag.is_private or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            raise InvalidInput(_MSG_DEID)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = _pixels.EXPLICIT_LE
    meta.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    return meta
