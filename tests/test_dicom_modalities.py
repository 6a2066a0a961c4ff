"""Every kind of image DICOM a department meets, with burned-in text, through ``deid``.

Each generated object carries identifiers in its header (top level, nested
sequences, private tags, overlays, curves, the file meta group) and a name
and birth date burned into the pixels of every frame. After ``deid`` no
planted string may appear in the output bytes, OCR must read none of the
burned-in text in any frame, the frames keep their stored bit depth, and the
header says truthfully what was done.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate

from workbench import deid
from workbench.deid._dicom import read_dicom
from workbench.errors import UnsupportedFormat

from test_dicom import PLANTED, UIDS, plant_identifiers

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
BURNED = "ZZTEST 19610704"
META_PLANTED = [b"ZZPLANTAE", b"ZZPLANTIMPL", b"ZZPLANTPRIV", b"1.2.826.0.1.3680043.8.498.4242.77"]
KEYS = deid.Pseudonyms(bytes(range(32)))
TEXT_ONLY = deid.Policy(detectors=("text",))

# kind: SOP class, modality, photometric, bits stored, signed, frames, syntax, window
KINDS = {
    "CT": ("1.2.840.10008.5.1.4.1.1.2", "CT", "MONOCHROME2", 16, True, 1, EXPLICIT_LE, (40, 400)),
    "CT-j2k": ("1.2.840.10008.5.1.4.1.1.2", "CT", "MONOCHROME2", 12, False, 1, J2K_LOSSLESS, None),
    "MR": ("1.2.840.10008.5.1.4.1.1.4", "MR", "MONOCHROME2", 12, False, 1, EXPLICIT_LE, None),
    "MR-rle": ("1.2.840.10008.5.1.4.1.1.4", "MR", "MONOCHROME2", 16, False, 1, RLE, None),
    "CR": ("1.2.840.10008.5.1.4.1.1.1", "CR", "MONOCHROME1", 12, False, 1, EXPLICIT_LE, None),
    "DX": ("1.2.840.10008.5.1.4.1.1.1.1", "DX", "MONOCHROME2", 14, False, 1, EXPLICIT_LE, (8000, 16000)),
    "MG": ("1.2.840.10008.5.1.4.1.1.1.2", "MG", "MONOCHROME2", 12, False, 1, EXPLICIT_LE, None),
    "US": ("1.2.840.10008.5.1.4.1.1.6.1", "US", "RGB", 8, False, 1, EXPLICIT_LE, None),
    "US-multiframe": ("1.2.840.10008.5.1.4.1.1.3.1", "US", "RGB", 8, False, 3, EXPLICIT_LE, None),
    "US-multiframe-jpeg": ("1.2.840.10008.5.1.4.1.1.3.1", "US", "YBR_FULL_422", 8, False, 2, JPEG_BASELINE, None),
    "XA": ("1.2.840.10008.5.1.4.1.1.12.1", "XA", "MONOCHROME2", 8, False, 2, EXPLICIT_LE, None),
    "SC": ("1.2.840.10008.5.1.4.1.1.7", "OT", "RGB", 8, False, 1, EXPLICIT_LE, None),
    "VL-photo-jpeg": ("1.2.840.10008.5.1.4.1.1.77.1.4", "XC", "YBR_FULL_422", 8, False, 1, JPEG_BASELINE, None),
    "VL-endoscopic": ("1.2.840.10008.5.1.4.1.1.77.1.1", "ES", "RGB", 8, False, 1, EXPLICIT_LE, None),
}
ROWS, COLUMNS = 160, 256


def _text_mask(frame_index: int) -> np.ndarray:
    mask = np.zeros((ROWS, COLUMNS), np.uint8)
    cv2.putText(mask, BURNED, (10, 30 + 8 * frame_index), cv2.FONT_HERSHEY_SIMPLEX, 0.65, 255, 2, cv2.LINE_AA)
    return mask > 96


def _frame(kind: str, index: int) -> np.ndarray:
    _, _, photometric, bits, signed, _, _, window = KINDS[kind]
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    body = np.hypot((x - COLUMNS / 2) / 1.3, y - ROWS * 0.6) < ROWS * 0.35
    text = _text_mask(index)
    if photometric in ("RGB", "YBR_FULL_422"):
        rgb = np.stack([40 + x * 0.2, 30 + y * 0.3, 60 + 0 * x], axis=2).astype(np.uint8)
        rgb[body] = (120, 90, 80)
        rgb[text] = (255, 255, 255)
        return rgb
    if signed:  # CT in Hounsfield units; text burned in at bone level
        values = np.where(body, 40, -1000)
        values = np.where(text, 1500, values)
        return values.astype(np.int16)
    top = (1 << bits) - 1
    if window is not None:
        center, width = window
        base, bright = center - width // 4, min(top, center + width)
    else:
        base, bright = top // 5, top
    values = np.where(body, base + top // 10, base)
    if photometric == "MONOCHROME1":
        values = top - values
        values = np.where(text, 0, values)  # shown white
    else:
        values = np.where(text, bright, values)
    return values.astype(np.uint8 if bits <= 8 else np.uint16)


def make(kind: str) -> bytes:
    sop, modality, photometric, bits, signed, frames, syntax, window = KINDS[kind]
    ds = Dataset()
    plant_identifiers(ds, sop)
    ds.Modality = modality
    if kind == "SC":
        ds.SecondaryCaptureDeviceID = "SN-ZZ4455"
        ds.SecondaryCaptureDeviceManufacturer = "ZZTEST scanner shop"
    arrays = np.stack([_frame(kind, i) for i in range(frames)])
    ds.Rows, ds.Columns = ROWS, COLUMNS
    color = arrays.ndim == 4
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = "RGB" if color else photometric
    if color:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if arrays.dtype.itemsize == 1 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = "33.3"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if signed:
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
    pixels = arrays if frames > 1 else arrays[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if syntax == JPEG_BASELINE:
            jpegs = []
            for rgb in arrays:
                buf = io.BytesIO()
                Image.fromarray(rgb).save(buf, "JPEG", quality=92)
                jpegs.append(buf.getvalue())
            ds.PhotometricInterpretation = "YBR_FULL_422"
            ds.PixelData = encapsulate(jpegs)
            ds["PixelData"].VR = "OB"
        elif syntax in (J2K_LOSSLESS, RLE):
            ds.PixelData = pixels.tobytes()
            ds.compress(syntax, pixels, encoding_plugin="pylibjpeg" if syntax == RLE else "",
                        generate_instance_uid=False)
        else:
            ds.PixelData = pixels.tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = UIDS["sop"]
        ds.file_meta.TransferSyntaxUID = syntax
        ds.file_meta.SourceApplicationEntityTitle = "ZZPLANTAE"
        ds.file_meta.ImplementationVersionName = "ZZPLANTIMPL"
        ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.8.498.4242.77"
        ds.file_meta.PrivateInformation = b"ZZPLANTPRIV!"
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def ocr_lines(rgb: np.ndarray) -> list[str]:
    """What the project's OCR engine reads in a frame."""
    from workbench.deid._detect._ocr import _ocr_engine

    result = _ocr_engine()(np.ascontiguousarray(rgb))
    return [str(t) for t in (result.txts or ())]


def _planted_text(lines: list[str]) -> list[str]:
    return [line for line in lines if "ZZ" in line.upper() or "1961" in line or "TEST" in line.upper()]


@pytest.fixture(scope="module")
def outputs():
    """Each kind's input and its deid result, made once for the tests below."""
    made = {}
    for kind in KINDS:
        data = make(kind)
        made[kind] = (data, deid.deidentify(data, TEXT_ONLY, pseudonyms=KEYS))
    return made


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_modality_comes_out_clean(kind, outputs):
    data, result = outputs[kind]
    sop, _, photometric, bits, signed, frames, syntax, _ = KINDS[kind]
    needles = PLANTED + META_PLANTED + ([b"SN-ZZ4455"] if kind == "SC" else [])
    assert [n for n in needles if n not in data] == []  # the byte search is a proof only if it finds them here
    source = read_dicom(data)
    assert source.frame_count == frames
    for index in range(frames):  # ... and OCR reads the burned-in text in every input frame
        assert _planted_text(ocr_lines(source.display(index))), (kind, index)
    assert result.ext == "dcm" and result.verified, result.warnings
    assert [n for n in needles if n in result.data] == []
    out = read_dicom(result.data)
    assert out.frame_count == frames
    for index in range(frames):
        assert _planted_text(ocr_lines(out.display(index))) == [], (kind, index)
    ds = pydicom.dcmread(io.BytesIO(result.data))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert ds.SOPClassUID == sop == ds.file_meta.MediaStorageSOPClassUID
    assert ds.BurnedInAnnotation == "NO"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100", "113101", "113107", "113105"]
    assert "SecondaryCaptureDeviceID" not in ds and "SourceApplicationEntityTitle" not in ds.file_meta
    if photometric.startswith("MONOCHROME"):
        assert (ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation) == (
            photometric, bits, 1 if signed else 0)
        assert out.frames.dtype == source.frames.dtype
        # only the text lines changed: the rest of every frame is the input's, value for value
        changed = out.frames != source.frames
        assert changed.any() and changed.mean() < 0.25
    else:
        assert ds.PhotometricInterpretation == "RGB"
    if syntax == JPEG_BASELINE:
        assert ds.LossyImageCompression == "01" and ds.LossyImageCompressionMethod == "ISO_10918_1"
    else:
        assert "LossyImageCompression" not in ds


def test_ct_keeps_its_units_and_hides_text_in_stored_values(outputs):
    data, result = outputs["CT"]
    before = read_dicom(data).frames[0]
    after = read_dicom(result.data).frames[0]
    text = _text_mask(0)
    assert before[text].min() == 1500 and (after[text] == -1000).all()  # filled with the frame's lowest value
    ds = pydicom.dcmread(io.BytesIO(result.data))
    assert ds.RescaleType == "HU" and float(ds.WindowCenter) == 40
    assert ds.pixel_array.dtype == np.int16


def test_a_cleaner_switched_off_is_caught(monkeypatch):
    # Proof that the byte search and verification above can fail.
    from workbench.deid._dicom import _profile

    def keep_all_but_private_and_overlays(self, elem):
        # everything a careless cleaner keeps (write_dicom itself refuses private and overlay data)
        group = elem.tag.group
        return None if elem.tag.is_private or 0x5000 <= group <= 0x60FF else elem

    monkeypatch.setattr(_profile.Cleaner, "element", keep_all_but_private_and_overlays)
    data = make("MR")
    result = deid.deidentify(data, deid.Policy(detectors=()), pseudonyms=KEYS)
    assert not result.verified
    assert any("OtherPatientIDsSequence" in w for w in result.warnings)
    assert [n for n in PLANTED if n in result.data]


def test_text_is_hidden_in_every_frame_not_only_the_first(outputs):
    data, result = outputs["XA"]
    assert result.verified, result.warnings
    source, out = read_dicom(data), read_dicom(result.data)
    for index in range(out.frame_count):
        # where the text was: the frame's darkest stored value
        assert (out.frames[index][_text_mask(index)] == source.frames[index].min()).all(), index


def test_verify_checks_every_frame_of_a_dicom_file(outputs):
    data, result = outputs["XA"]
    ok, warnings_ = deid.verify(result.data, "dcm", result.regions, TEXT_ONLY)
    assert ok, warnings_
    # the input, checked as a file of unknown origin: text found in every frame, header refused
    ok, warnings_ = deid.verify(data, "dcm", [], TEXT_ONLY)
    assert not ok
    assert any("frame 0" in w for w in warnings_) and any("frame 1" in w for w in warnings_)
    assert any("PatientIdentityRemoved" in w for w in warnings_)
    assert not any("ZZTEST" in w or "1961" in w for w in warnings_)


def test_multi_frame_dicom_is_not_flattened_into_one_png(outputs):
    data, _ = outputs["XA"]
    with pytest.raises(UnsupportedFormat, match="multi-frame DICOM image is written as DICOM only"):
        deid.deidentify(data, deid.Policy(detectors=(), dicom_output="png"))


def test_a_detection_dismissed_in_review_stays_visible_in_dicom_too(outputs):
    data, first = outputs["CT"]
    text = [r for r in first.regions if r.kind == "text"]
    assert text
    again = deid.deidentify(data, TEXT_ONLY, pseudonyms=KEYS, dismissed=text)
    assert again.verified, again.warnings
    assert any("dismissed in review" in w for w in again.warnings)
    before, after = read_dicom(data).frames, read_dicom(again.data).frames
    assert np.array_equal(before, after)  # nothing hidden: the one detection was dismissed
    assert b"ZZTEST" not in again.data  # the header is cleaned all the same
