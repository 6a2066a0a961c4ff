"""DICOM input and de-identification: planted identifiers must not survive.

Every DICOM file here is generated with pydicom. The two main fixtures (a VL
Photographic RGB image and a 12-bit MONOCHROME2 Secondary Capture image)
carry identifiers in many places -- top level, private tags, overlays,
curves, nested sequences -- and the tests prove that none of them reaches
the output bytes, that what must survive (pixels, intervals between dates,
series membership) does, and that damaged input only ever raises the
workbench's own errors.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import io
import logging
import shutil
import subprocess
import time
import warnings

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence

from workbench.deid._dicom import (
    DicomImage,
    deidentify_dataset,
    is_dicom,
    read_dicom,
    write_dicom,
)
from workbench.errors import DecompressionBomb, InvalidInput, UnsupportedFormat, WorkbenchError

VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
SC_MULTIFRAME_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

NAME = "ZZTEST^Alvaro"
MRN = "MRN-1234567"
INSTITUTION = "Zzyzx Memorial Hospital"
SERIAL = "SN-99887766"
ACCESSION = "ACC-5550123"
STATION = "ZZSTATION01"
REFERRER = "ZZREF^Bartholomew"
OPERATOR = "ZZOPS^Cordelia"
UIDS = {
    "study": "1.2.826.0.1.3680043.8.498.4242.1",
    "series": "1.2.826.0.1.3680043.8.498.4242.2",
    "sop": "1.2.826.0.1.3680043.8.498.4242.3",
    "frame": "1.2.826.0.1.3680043.8.498.4242.4",
    "ref": "1.2.826.0.1.3680043.8.498.4242.5",
    "patient": "1.2.826.0.1.3680043.8.498.4242.6",
    "creator": "1.2.826.0.1.3680043.8.498.4242.7",
}
STUDY_DATE = "20230104"
BIRTH_DATE = "19610704"
NESTED_DATE = "20230110"  # six days after the study, one sequence down
DEEP_DATE = "20230112"  # eight days after the study, two sequences down

PLANTED = [
    b"ZZTEST",
    b"Alvaro",
    MRN.encode(),
    INSTITUTION.encode(),
    b"Zzyzx",
    SERIAL.encode(),
    ACCESSION.encode(),
    STATION.encode(),
    b"ZZREF",
    b"Bartholomew",
    b"ZZOPS",
    b"Cordelia",
    b"ZZHOSP",
    b"ZZPRIV",
    *(uid.encode() for uid in UIDS.values()),
    STUDY_DATE.encode(),
    BIRTH_DATE.encode(),
    NESTED_DATE.encode(),
    DEEP_DATE.encode(),
]

PSEUDONYM = "P-7Q3K9X"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SHIFT = -137


def deid(ds, **kw):
    args = dict(patient_pseudonym=PSEUDONYM, date_shift_days=SHIFT, uid_key=KEY, burned_in_text_redacted=True)
    args.update(kw)
    return deidentify_dataset(ds, **args)


def expected_uid(uid: str, key: bytes = KEY) -> str:
    digest = hmac.new(key, uid.encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def shifted(date: str, days: int = SHIFT) -> str:
    return (dt.datetime.strptime(date, "%Y%m%d").date() + dt.timedelta(days=days)).strftime("%Y%m%d")


# --------------------------------------------------------------------------
# Generated DICOM files
# --------------------------------------------------------------------------


def plant_identifiers(ds: Dataset, sop_class: str) -> None:
    """Identifiers everywhere a careless de-identifier would miss one."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = UIDS["sop"]
    ds.StudyInstanceUID = UIDS["study"]
    ds.SeriesInstanceUID = UIDS["series"]
    ds.FrameOfReferenceUID = UIDS["frame"]
    ds.InstanceCreatorUID = UIDS["creator"]
    ds.PatientName = NAME
    ds.PatientID = MRN
    ds.IssuerOfPatientID = "ZZHOSP"
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "M"
    ds.PatientAge = "061Y"
    ds.PatientWeight = "81"
    ds.PatientAddress = "12 Zzyzx Road"
    ds.OtherPatientIDsSequence = Sequence([_item(PatientID=MRN, IssuerOfPatientID="ZZHOSP", TypeOfPatientID="TEXT")])
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = "1 Zzyzx Plaza"
    ds.InstitutionalDepartmentName = "ZZTEST wound clinic"
    ds.ReferringPhysicianName = REFERRER
    ds.OperatorsName = OPERATOR
    ds.PerformingPhysicianName = REFERRER
    ds.StationName = STATION
    ds.DeviceSerialNumber = SERIAL
    ds.Manufacturer = "Canon"
    ds.AccessionNumber = ACCESSION
    ds.StudyID = "STUDY-ZZTEST"
    ds.StudyDescription = "Wound photo of Alvaro ZZTEST"
    ds.SeriesDescription = f"{MRN} left leg"
    ds.ImageComments = f"patient {MRN}, see notes"
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.AcquisitionDate = STUDY_DATE
    ds.ContentDate = STUDY_DATE
    ds.StudyTime = "101500"
    ds.ContentTime = "101502"
    ds.AcquisitionDateTime = STUDY_DATE + "101501.000000+0100"
    ds.Modality = "XC" if sop_class == VL_PHOTO else "OT"
    ds.SeriesNumber = "1"
    ds.InstanceNumber = "1"
    ds.BurnedInAnnotation = "YES"
    ds.CameraOwnerName = "Alvaro ZZTEST"
    ds.GPSLatitude = [51.5]
    ds.RequestAttributesSequence = Sequence([_item(RequestedProcedureID="RP-ZZTEST", ScheduledProcedureStepID=MRN)])
    ds.ReferencedPatientSequence = Sequence(
        [_item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.1.1", ReferencedSOPInstanceUID=UIDS["patient"])]
    )
    # The same referenced UID in two places: it must map to one new UID.
    ds.ReferencedImageSequence = Sequence(
        [_item(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=UIDS["ref"])]
    )
    deeper = _item(
        ReferencedSOPClassUID=sop_class,
        ReferencedSOPInstanceUID=UIDS["ref"],
        ContentDate=DEEP_DATE,
        InstanceCreationDate=DEEP_DATE,
    )
    ds.ContributingEquipmentSequence = Sequence(
        [
            _item(
                Manufacturer="Workbench test rig",
                InstitutionName=INSTITUTION,
                StationName=STATION,
                PersonName=NAME,
                OperatorsName=OPERATOR,
                ContributionDateTime=NESTED_DATE + "093000",
                AcquisitionDateTime=NESTED_DATE + "093000",
                ContributionDescription=f"scanned for {NAME}",
                SourceImageSequence=Sequence([deeper]),
            )
        ]
    )
    # Private data: a creator and an element holding the MRN, and a private
    # sequence with the name inside.
    ds.add_new(0x00090010, "LO", "ZZPRIV")
    ds.add_new(0x00091001, "LO", MRN)
    ds.add_new(0x00091002, "SQ", Sequence([_item(PatientName=NAME)]))
    # An overlay (60xx) and a curve (50xx), both with text.
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", f"{NAME} annotation")
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\xff\x00" * 4)
    ds.add_new(0x50002500, "LO", MRN)


def _item(**attrs) -> Dataset:
    item = Dataset()
    for keyword, value in attrs.items():
        setattr(item, keyword, value)
    return item


def set_pixels(ds: Dataset, arr: np.ndarray, photometric: str, bits_stored: int | None = None) -> None:
    ds.Rows, ds.Columns = arr.shape[:2]
    ds.SamplesPerPixel = 3 if arr.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = (bits_stored or bits) - 1
    ds.PixelRepresentation = 0
    if arr.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()


def to_bytes(ds: Dataset, syntax: str = EXPLICIT_LE) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", VL_PHOTO)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", UIDS["sop"])
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def rgb_pixels(rows=24, columns=32, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (rows, columns, 3), dtype=np.uint8)


def vl_photo(pixels=None, syntax=EXPLICIT_LE) -> bytes:
    ds = Dataset()
    plant_identifiers(ds, VL_PHOTO)
    set_pixels(ds, rgb_pixels() if pixels is None else pixels, "RGB")
    return to_bytes(ds, syntax)


def sc_gray16() -> tuple[bytes, np.ndarray]:
    ds = Dataset()
    plant_identifiers(ds, SC_IMAGE)
    ds.ConversionType = "WSD"
    ds.DateOfSecondaryCapture = STUDY_DATE
    ramp = (np.arange(16 * 20, dtype=np.uint16).reshape(16, 20) * 13) % 4096
    set_pixels(ds, ramp, "MONOCHROME2", bits_stored=12)
    return to_bytes(ds), ramp


def simple(photometric: str, arr: np.ndarray, sop_class=VL_PHOTO, syntax=EXPLICIT_LE, **extra) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = UIDS["sop"]
    ds.PatientName = NAME
    set_pixels(ds, arr, photometric)
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return to_bytes(ds, syntax)


def jpeg_dicom(rgb: np.ndarray, photometric="YBR_FULL_422", jpeg: bytes | None = None, **extra) -> bytes:
    if jpeg is None:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=95)
        jpeg = buf.getvalue()
    ds = Dataset()
    ds.SOPClassUID = VL_PHOTO
    ds.SOPInstanceUID = UIDS["sop"]
    ds.PatientName = NAME
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = encapsulate([jpeg])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds, JPEG_BASELINE)


def smooth_rgb(rows=32, columns=48) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:columns]
    return np.stack([x * 5, y * 7, 128 + (x - y)], axis=2).clip(0, 255).astype(np.uint8)


def exiftool_dump(data: bytes) -> str:
    run = subprocess.run(
        ["exiftool", "-a", "-G1", "-s", "-u", "-U", "-"],
        input=data,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return run.stdout.decode("utf-8", "replace")


@pytest.fixture(params=["vl_photo", "sc_gray16"])
def planted(request) -> bytes:
    return vl_photo() if request.param == "vl_photo" else sc_gray16()[0]


def deidentified_file(data: bytes, **kw) -> bytes:
    image = read_dicom(data)
    return write_dicom(deid(image.dataset, **kw), image.pixels)


# --------------------------------------------------------------------------
# (1), (2), (8): nothing planted survives
# --------------------------------------------------------------------------


def test_planted_strings_are_really_in_the_input(planted):
    # The byte search below is only a proof if it finds them in the input.
    for needle in PLANTED:
        assert needle in planted, needle


def test_output_bytes_hold_no_planted_identifier(planted):
    out = deidentified_file(planted)
    found = [needle for needle in PLANTED if needle in out]
    assert found == []
    assert PSEUDONYM.encode() in out


def test_output_dataset_is_marked_and_clean(planted):
    out = pydicom.dcmread(io.BytesIO(deidentified_file(planted)))
    assert out.PatientIdentityRemoved == "YES"
    assert out.PatientID == PSEUDONYM
    assert str(out.PatientName) == PSEUDONYM
    codes = [(item.CodeValue, item.CodingSchemeDesignator) for item in out.DeidentificationMethodCodeSequence]
    # CID 7050: Basic Profile, Clean Pixel Data (text was redacted), Modified Dates, Clean Descriptors
    assert codes == [("113100", "DCM"), ("113101", "DCM"), ("113107", "DCM"), ("113105", "DCM")]
    assert out.DeidentificationMethod
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert out.BurnedInAnnotation == "NO"
    elements = list(out.iterall())
    assert not [e for e in elements if e.tag.is_private]
    assert not [e for e in elements if 0x6000 <= e.tag.group <= 0x60FF or 0x5000 <= e.tag.group <= 0x50FF]
    for keyword in (
        "OtherPatientIDsSequence",
        "RequestAttributesSequence",
        "ReferencedPatientSequence",
        "InstitutionName",
        "InstitutionAddress",
        "OperatorsName",
        "StationName",
        "DeviceSerialNumber",
        "StudyDescription",
        "SeriesDescription",
        "ImageComments",
        "IssuerOfPatientID",
        "PatientAge",
        "PatientWeight",
        "PatientAddress",
        "CameraOwnerName",
        "GPSLatitude",
    ):
        assert keyword not in out, keyword
    assert out.PatientBirthDate == ""
    assert out.PatientSex == ""
    assert out.AccessionNumber == ""
    assert out.ReferringPhysicianName == ""
    assert out.StudyID == ""
    assert out.Manufacturer == "Canon"  # not identifying: kept
    nested = out.ContributingEquipmentSequence[0]
    assert "PersonName" in nested and str(nested.PersonName) == "ANONYMIZED"
    assert "InstitutionName" not in nested and "OperatorsName" not in nested
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_LE


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_exiftool_lists_no_planted_identifier(planted):
    # exiftool prints DICOM dates as YYYY:MM:DD: look for that form too.
    dates = [STUDY_DATE, BIRTH_DATE, NESTED_DATE, DEEP_DATE]
    needles = [n.decode() for n in PLANTED] + [f"{d[:4]}:{d[4:6]}:{d[6:]}" for d in dates]
    before = exiftool_dump(planted)
    assert "ZZTEST" in before and MRN in before and "2023:01:04" in before  # exiftool reads them
    after = exiftool_dump(deidentified_file(planted))
    assert PSEUDONYM in after  # ... and reads the output
    assert [needle for needle in needles if needle in after] == []


def test_burned_in_annotation_follows_redaction():
    image = read_dicom(vl_photo())
    assert image.burned_in_annotation is True
    assert deid(image.dataset, burned_in_text_redacted=True).BurnedInAnnotation == "NO"
    assert deid(image.dataset, burned_in_text_redacted=False).BurnedInAnnotation == "YES"
    plain = read_dicom(simple("RGB", rgb_pixels()))
    assert plain.burned_in_annotation is None
    assert deid(plain.dataset, burned_in_text_redacted=False).BurnedInAnnotation == "YES"
    clean = read_dicom(simple("RGB", rgb_pixels(), BurnedInAnnotation="NO"))
    assert clean.burned_in_annotation is False
    assert deid(clean.dataset, burned_in_text_redacted=False).BurnedInAnnotation == "NO"


# --------------------------------------------------------------------------
# (3) dates, (4) UIDs, (9) no mutation
# --------------------------------------------------------------------------


def test_date_shift_keeps_intervals_and_times():
    out = deid(read_dicom(vl_photo()).dataset)
    assert out.StudyDate == shifted(STUDY_DATE)
    assert out.ContentDate == shifted(STUDY_DATE)
    assert out.StudyTime == "101500"  # times are kept by the Modified Dates option
    assert out.AcquisitionDateTime == shifted(STUDY_DATE) + "101501.000000+0100"
    nested = out.ContributingEquipmentSequence[0]
    assert nested.AcquisitionDateTime == shifted(NESTED_DATE) + "093000"
    assert nested.ContributionDateTime == shifted(NESTED_DATE) + "093000"
    assert nested.SourceImageSequence[0].InstanceCreationDate == shifted(DEEP_DATE)
    deep = nested.SourceImageSequence[0].ContentDate

    def days(a: str, b: str) -> int:
        return (dt.datetime.strptime(b[:8], "%Y%m%d") - dt.datetime.strptime(a[:8], "%Y%m%d")).days

    assert days(out.StudyDate, nested.AcquisitionDateTime) == days(STUDY_DATE, NESTED_DATE) == 6
    assert days(out.StudyDate, deep) == days(STUDY_DATE, DEEP_DATE) == 8


def test_dates_that_cannot_be_shifted_are_dropped_not_kept():
    ds = read_dicom(simple("RGB", rgb_pixels())).dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom rightly warns about the bad date
        ds.StudyDate = "2023XX04"
        ds.SeriesDate = ["20230104", "20230105"]
        ds.AcquisitionDateTime = "202301"
        ds.ContentDate = "20230230"  # no 30 February
    out = deid(ds, date_shift_days=10)
    assert out.StudyDate == ""
    assert list(out.SeriesDate) == ["20230114", "20230115"]
    assert out.AcquisitionDateTime == "202301"  # month precision: 1 Jan + 10 days
    assert out.ContentDate == ""


def test_uid_mapping_is_keyed_deterministic_and_consistent():
    ds = read_dicom(vl_photo()).dataset
    first, again, other = deid(ds), deid(ds), deid(ds, uid_key=OTHER_KEY)
    assert first.StudyInstanceUID == expected_uid(UIDS["study"])
    assert first.SeriesInstanceUID == expected_uid(UIDS["series"])
    assert first.SOPInstanceUID == expected_uid(UIDS["sop"])
    assert first.FrameOfReferenceUID == expected_uid(UIDS["frame"])
    assert first.InstanceCreatorUID == expected_uid(UIDS["creator"])
    top = first.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    deep = first.ContributingEquipmentSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    assert top == deep == expected_uid(UIDS["ref"])
    # Class UIDs keep their meaning.
    assert first.SOPClassUID == VL_PHOTO
    assert first.ReferencedImageSequence[0].ReferencedSOPClassUID == VL_PHOTO
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert first[keyword].value == again[keyword].value
        assert first[keyword].value != other[keyword].value
        assert len(first[keyword].value) <= 64
        assert pydicom.uid.UID(first[keyword].value).is_valid


def test_two_files_of_one_series_stay_one_series():
    photo = read_dicom(vl_photo()).dataset
    gray = read_dicom(sc_gray16()[0]).dataset
    gray.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242.99"
    a, b = deid(photo), deid(gray)
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID


def test_input_dataset_is_not_mutated():
    image = read_dicom(vl_photo())
    before = copy.deepcopy(image.dataset)
    out = deid(image.dataset)
    write_dicom(out, image.pixels)
    assert image.dataset == before
    assert image.dataset.file_meta == before.file_meta
    assert str(image.dataset.PatientName) == NAME
    assert image.dataset[0x00091001].value == MRN
    # No value object is shared: changing the output leaves the input alone.
    out.ContributingEquipmentSequence[0].Manufacturer = "changed"
    assert image.dataset.ContributingEquipmentSequence[0].Manufacturer == "Workbench test rig"


def test_arguments_are_checked():
    ds = read_dicom(vl_photo()).dataset
    for kw in (
        {"patient_pseudonym": ""},
        {"patient_pseudonym": NAME},
        {"patient_pseudonym": "x" * 65},
        {"date_shift_days": 1.5},
        {"date_shift_days": True},
        {"date_shift_days": 10**6},
        {"uid_key": b"short"},
        {"uid_key": "a string key of enough length"},
        {"burned_in_text_redacted": None},
    ):
        with pytest.raises(InvalidInput):
            deid(ds, **kw)
    with pytest.raises(InvalidInput):
        deidentify_dataset(b"not a dataset", patient_pseudonym=PSEUDONYM, date_shift_days=0, uid_key=KEY,
                           burned_in_text_redacted=True)


# --------------------------------------------------------------------------
# (5) writing: pixels round-trip, output is reproducible
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(24, 32), (5, 7), (1, 1)])
def test_pixels_round_trip_exactly(shape):
    pixels = rgb_pixels(*shape, seed=7)
    image = read_dicom(vl_photo(pixels))
    assert np.array_equal(image.pixels, pixels)
    out = write_dicom(deid(image.dataset), image.pixels)
    back = read_dicom(out)
    assert np.array_equal(back.pixels, pixels)
    ds = pydicom.dcmread(io.BytesIO(out))
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration) == (3, "RGB", 0)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
    assert (ds.Rows, ds.Columns) == shape
    assert out[:128] == b"\x00" * 128 and out[128:132] == b"DICM"


def test_redacted_pixels_are_what_is_written():
    image = read_dicom(vl_photo())
    redacted = image.pixels.copy()
    redacted[2:10, 3:12] = 0
    back = read_dicom(write_dicom(deid(image.dataset), redacted))
    assert np.array_equal(back.pixels, redacted)


def test_output_is_deterministic():
    data = vl_photo()
    assert deidentified_file(data) == deidentified_file(data)
    image = read_dicom(data)
    out = deid(image.dataset)
    assert write_dicom(out, image.pixels) == write_dicom(out, image.pixels)


def test_grayscale_multiframe_sc_with_one_frame_is_written_as_plain_sc():
    gray = np.arange(6 * 8, dtype=np.uint8).reshape(6, 8) * 5
    data = simple("MONOCHROME2", gray, sop_class=SC_MULTIFRAME_BYTE, NumberOfFrames=1)
    image = read_dicom(data)
    assert np.array_equal(image.pixels[..., 0], gray)
    ds = pydicom.dcmread(io.BytesIO(write_dicom(deid(image.dataset), image.pixels)))
    assert ds.SOPClassUID == SC_IMAGE == ds.file_meta.MediaStorageSOPClassUID
    assert "NumberOfFrames" not in ds


def test_write_refuses_what_was_not_deidentified():
    image = read_dicom(vl_photo())
    with pytest.raises(InvalidInput):
        write_dicom(image.dataset, image.pixels)
    out = deid(image.dataset)
    out.add_new(0x00110010, "LO", "sneaked in")
    with pytest.raises(InvalidInput):
        write_dicom(out, image.pixels)


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4, 4, 4), np.uint8),  # four samples
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4), np.bool_),
        np.zeros((0, 4, 3), np.uint8),
        np.full((4, 4), 5000, np.uint16),  # more than the 12 bits the SC dataset stores
        np.zeros((2, 4, 4, 3), np.uint16),  # colour of more than 8 bits is written as 8-bit RGB only
        [[0, 0, 0]],
    ],
)
def test_write_refuses_bad_pixels(pixels):
    image = read_dicom(sc_gray16()[0])
    with pytest.raises(InvalidInput):
        write_dicom(deid(image.dataset), pixels)


# --------------------------------------------------------------------------
# (6) reading: colour models and bit depths
# --------------------------------------------------------------------------


def test_rgb_is_read_as_is():
    pixels = rgb_pixels()
    image = read_dicom(vl_photo(pixels))
    assert isinstance(image, DicomImage)
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (24, 32, 3)
    assert image.pixels.flags.writeable
    assert np.array_equal(image.pixels, pixels)
    assert "PixelData" not in image.dataset
    assert str(image.dataset.PatientName) == NAME  # identifiable, as documented


def test_implicit_vr_input_reads_and_deidentifies():
    pixels = rgb_pixels(seed=3)
    data = vl_photo(pixels, syntax=IMPLICIT_LE)
    image = read_dicom(data)
    assert np.array_equal(image.pixels, pixels)
    out = deidentified_file(data)
    assert [needle for needle in PLANTED if needle in out] == []
    assert np.array_equal(read_dicom(out).pixels, pixels)


def test_signed_16bit_is_scaled_in_order():
    values = np.array([[-32768, -1, 0, 32767]], dtype=np.int16)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC_IMAGE, UIDS["sop"]
    set_pixels(ds, values, "MONOCHROME2")
    ds.PixelRepresentation = 1
    gray = read_dicom(to_bytes(ds)).pixels[0, :, 0]
    assert gray.tolist() == [0, 127, 128, 255]


def test_planar_configuration_1_is_interleaved():
    pixels = rgb_pixels(6, 5, seed=4)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTO, UIDS["sop"]
    set_pixels(ds, pixels, "RGB")
    ds.PlanarConfiguration = 1
    ds.PixelData = pixels.transpose(2, 0, 1).tobytes()
    assert np.array_equal(read_dicom(to_bytes(ds)).pixels, pixels)


def test_monochrome2_16bit_is_shown_over_the_frames_range_and_kept_as_stored():
    data, ramp = sc_gray16()
    image = read_dicom(data)
    assert image.frames.shape == (1, *ramp.shape) and np.array_equal(image.frames[0], ramp)  # stored values
    lo, hi = int(ramp.min()), int(ramp.max())
    expected = np.rint((ramp.astype(np.float64) - lo) * 255.0 / (hi - lo)).astype(np.uint8)
    assert np.array_equal(image.pixels[..., 0], expected)
    assert np.array_equal(image.pixels[..., 0], image.pixels[..., 2])
    # a frame that uses a tenth of the 12 bits is still shown with full contrast, so burned-in text shows
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC_IMAGE, UIDS["sop"]
    set_pixels(ds, (ramp // 10 + 1000).astype(np.uint16), "MONOCHROME2", bits_stored=12)
    shown = read_dicom(to_bytes(ds)).pixels[..., 0]
    assert shown.min() == 0 and shown.max() == 255


def test_monochrome_window_is_applied_when_present():
    ramp = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC_IMAGE, UIDS["sop"]
    set_pixels(ds, ramp, "MONOCHROME2", bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2048, 1024
    gray = read_dicom(to_bytes(ds)).pixels[..., 0]
    assert (gray[ramp < 1530] == 0).all()
    assert (gray[ramp > 2565] == 255).all()
    middle = gray[(ramp > 1600) & (ramp < 2500)]
    assert 0 < middle.min() and middle.max() < 255
    assert np.all(np.diff(gray.ravel().astype(int)) >= 0)  # monotonic


def test_single_bit_sc_is_black_and_white():
    bits = (np.indices((6, 8)).sum(axis=0) % 3 == 0).astype(np.uint8)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7.1", UIDS["sop"]
    set_pixels(ds, bits, "MONOCHROME2")
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.NumberOfFrames = 1
    ds.PixelData = np.packbits(bits.ravel(), bitorder="little").tobytes()
    image = read_dicom(to_bytes(ds))
    assert np.array_equal(image.pixels[..., 0], bits * 255)


def test_grayscale_jpeg_is_decoded():
    gray = smooth_rgb()[..., 0]
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "JPEG", quality=95)
    data = jpeg_dicom(np.stack([gray] * 3, axis=2), photometric="MONOCHROME2", jpeg=buf.getvalue(),
                      SamplesPerPixel=1)
    pixels = read_dicom(data).pixels
    assert np.abs(pixels[..., 0].astype(int) - gray).mean() < 2


def test_monochrome1_is_inverted():
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    image = read_dicom(simple("MONOCHROME1", gray))
    assert np.array_equal(image.pixels[..., 1], 255 - gray)


def test_ybr_full_is_converted_to_rgb():
    rgb = smooth_rgb()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    image = read_dicom(simple("YBR_FULL", ybr))
    assert np.abs(image.pixels.astype(int) - rgb).max() <= 2


def test_ybr_full_422_uncompressed_is_converted_to_rgb():
    rgb = smooth_rgb()
    rgb[:, 1::2] = rgb[:, 0::2]  # pairs share chroma, so 4:2:2 loses nothing
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    rows, columns = ybr.shape[:2]
    packed = np.empty((rows, columns // 2, 4), np.uint8)
    packed[..., 0] = ybr[:, 0::2, 0]
    packed[..., 1] = ybr[:, 1::2, 0]
    packed[..., 2] = ybr[:, 0::2, 1]
    packed[..., 3] = ybr[:, 0::2, 2]
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTO, UIDS["sop"]
    set_pixels(ds, rgb, "YBR_FULL_422")
    ds.PixelData = packed.tobytes()
    image = read_dicom(to_bytes(ds))
    assert np.abs(image.pixels.astype(int) - rgb).max() <= 2


def test_palette_colour_is_looked_up():
    index = (np.arange(48, dtype=np.uint8).reshape(6, 8) * 5)
    red = (np.arange(256, dtype=np.uint16) * 257)
    green = (255 - np.arange(256, dtype=np.uint16)) * 257
    blue = np.full(256, 0x8080, np.uint16)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC_IMAGE, UIDS["sop"]
    set_pixels(ds, index, "PALETTE COLOR")
    for colour, lut in (("Red", red), ("Green", green), ("Blue", blue)):
        ds[f"{colour}PaletteColorLookupTableDescriptor"] = pydicom.DataElement(
            pydicom.datadict.tag_for_keyword(f"{colour}PaletteColorLookupTableDescriptor"), "US", [256, 0, 16]
        )
        ds.add_new(pydicom.datadict.tag_for_keyword(f"{colour}PaletteColorLookupTableData"), "OW", lut.tobytes())
    pixels = read_dicom(to_bytes(ds)).pixels
    assert np.array_equal(pixels[..., 0], index)
    assert np.array_equal(pixels[..., 1], 255 - index)
    assert (pixels[..., 2] == 128).all()


def test_jpeg_baseline_is_decoded():
    rgb = smooth_rgb()
    image = read_dicom(jpeg_dicom(rgb))
    assert image.pixels.shape == rgb.shape
    assert np.abs(image.pixels.astype(int) - rgb).mean() < 3
    # Lossy once, lossy for ever (PS3.3 C.7.6.1.1.5).
    assert image.dataset.LossyImageCompression == "01"
    out = pydicom.dcmread(io.BytesIO(write_dicom(deid(image.dataset), image.pixels)))
    assert out.LossyImageCompression == "01"
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_LE


def test_jpeg_frame_that_disagrees_with_the_header_is_refused():
    small = smooth_rgb(16, 16)
    buf = io.BytesIO()
    Image.fromarray(smooth_rgb(64, 64)).save(buf, "JPEG", quality=90)
    with pytest.raises(InvalidInput):
        read_dicom(jpeg_dicom(small, jpeg=buf.getvalue()))


def test_truncated_jpeg_frame_is_refused():
    buf = io.BytesIO()
    Image.fromarray(smooth_rgb()).save(buf, "JPEG", quality=90)
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    with pytest.raises(InvalidInput):
        read_dicom(jpeg_dicom(smooth_rgb(), jpeg=cut))


# --------------------------------------------------------------------------
# (7) what is refused, and how
# --------------------------------------------------------------------------


def test_is_dicom_is_strict():
    assert is_dicom(vl_photo())
    assert not is_dicom(b"")
    assert not is_dicom(b"DICM" + b"\x00" * 200)
    assert not is_dicom(vl_photo()[128:])  # no preamble
    assert not is_dicom("not bytes")


def test_objects_without_pixel_data_are_refused():
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", UIDS["sop"]  # Basic Text SR
    ds.PatientName = NAME
    with pytest.raises(InvalidInput, match="no pixel data"):
        read_dicom(to_bytes(ds))


def test_unsupported_transfer_syntaxes_are_refused_before_parsing():
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTO, UIDS["sop"]
    ds.PatientName = NAME
    set_pixels(ds, rgb_pixels(4, 4), "RGB")
    deflated = to_bytes(copy.deepcopy(ds), "1.2.840.10008.1.2.1.99")
    with pytest.raises(UnsupportedFormat, match="deflated DICOM"):
        read_dicom(deflated)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 40])
    ds["PixelData"].VR = "OB"
    mpeg = to_bytes(ds, "1.2.840.10008.1.2.4.100")  # MPEG2: video, no decoder here
    with pytest.raises(UnsupportedFormat, match="cannot decode") as info:
        read_dicom(mpeg)
    assert info.value.transfer_syntax == "MPEG2 Main Profile / Main Level"


def test_unsupported_pixel_formats_are_refused():
    with pytest.raises(UnsupportedFormat):
        read_dicom(simple("RGB", np.zeros((4, 4), np.uint8)))  # one sample called RGB
    with pytest.raises(UnsupportedFormat):
        read_dicom(simple("MONOCHROME2", np.zeros((4, 4), np.uint64)))


def test_empty_junk_and_truncated_input_are_refused():
    with pytest.raises(InvalidInput):
        read_dicom(b"")
    with pytest.raises(UnsupportedFormat):
        read_dicom(b"\x89PNG\r\n\x1a\n" + b"\x00" * 300)
    with pytest.raises(InvalidInput):
        read_dicom("a string")
    with pytest.raises(InvalidInput):
        read_dicom(b"\x00" * 128 + b"DICM")
    with pytest.raises(InvalidInput):
        read_dicom(b"\x00" * 128 + b"DICM" + b"\xff" * 64)
    data = vl_photo()
    for cut in (140, 300, len(data) // 2, len(data) - 1):
        with pytest.raises(InvalidInput) as info:
            read_dicom(data[:cut])
        assert "ZZTEST" not in str(info.value)


def test_pixel_bomb_is_refused_before_decoding():
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTO, UIDS["sop"]
    set_pixels(ds, rgb_pixels(2, 2), "RGB")
    ds.Rows = ds.Columns = 65535
    start = time.perf_counter()
    with pytest.raises(DecompressionBomb) as info:
        read_dicom(to_bytes(ds))
    assert time.perf_counter() - start < 1.0
    assert info.value.limit == 120_000_000


def test_short_pixel_data_is_refused():
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTO, UIDS["sop"]
    set_pixels(ds, rgb_pixels(8, 8), "RGB")
    ds.Rows = ds.Columns = 9000  # under the bomb limit, but no data for it
    with pytest.raises(InvalidInput):
        read_dicom(to_bytes(ds))


def test_pydicom_warnings_and_logs_stay_quiet(caplog):
    # pydicom's validation warnings quote element values: an invalid UID
    # that holds the name would put the name into notebook output and logs.
    caplog.set_level(logging.DEBUG)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTO, UIDS["sop"]
    set_pixels(ds, rgb_pixels(4, 4), "RGB")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.StudyInstanceUID = "1.2.ZZTEST"
        ds.PatientName = "ZZTEST" * 20
    data = to_bytes(ds)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = pydicom.dcmread(io.BytesIO(data))
        list(raw.iterall())
    assert any("ZZTEST" in str(w.message) for w in caught)  # the risk is real
    caplog.clear()
    level = logging.getLogger("pydicom").level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_dicom(data)
        write_dicom(deid(image.dataset), image.pixels)
    assert caught == []
    assert "ZZTEST" not in caplog.text
    assert logging.getLogger("pydicom").level == level  # restored afterwards


def mutate(base: bytes, trial: int, rng: np.random.Generator) -> bytes:
    data = bytearray(base)
    kind = trial % 4
    if kind == 0:  # flip a few bytes anywhere past the preamble
        for pos in rng.integers(128, len(data), size=int(rng.integers(1, 9))):
            data[pos] = int(rng.integers(0, 256))
    elif kind == 1:  # cut
        del data[int(rng.integers(128, len(data))) :]
    elif kind == 2:  # insert junk
        pos = int(rng.integers(132, len(data)))
        data[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    else:  # damage what may be a length or size field
        pos = int(rng.integers(132, len(data) - 4))
        data[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\x00\x00"])
    return bytes(data)


@pytest.mark.parametrize("source", ["native", "jpeg"])
def test_fuzzed_files_raise_only_workbench_errors(source, caplog):
    # Small but varied files: nested sequences, private tags, an overlay; and
    # a JPEG frame, so that Pillow sees damaged data too.
    if source == "native":
        base = vl_photo(rgb_pixels(4, 6, seed=9))
    else:
        base = jpeg_dicom(smooth_rgb(16, 16), BurnedInAnnotation="YES", PatientID=MRN)
    rng = np.random.default_rng(20240601)
    outcomes = {"read": 0, "refused": 0}
    caplog.set_level(logging.DEBUG)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for trial in range(300):
            data = mutate(base, trial, rng)
            try:
                image = read_dicom(data)
                out = write_dicom(deid(image.dataset), image.pixels)
                read_dicom(out)
                outcomes["read"] += 1
            except WorkbenchError as exc:
                assert isinstance(exc, InvalidInput), (trial, type(exc))
                assert "ZZTEST" not in str(exc) and MRN not in str(exc)
                outcomes["refused"] += 1
    # a guard against a hang on some mutation, not a speed bar (those are in benchmarks/)
    assert time.perf_counter() - start < 120
    assert outcomes["read"] > 0 and outcomes["refused"] > 0
    assert [str(w.message) for w in caught] == []  # pydicom's chatter quotes values
    assert "ZZTEST" not in caplog.text and MRN not in caplog.text
