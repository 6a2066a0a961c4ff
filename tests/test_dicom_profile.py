"""PS3.15 Table E.1-1 as data: every row has its action, and every action is taken.

An identifier is planted in every attribute of the table that pydicom can
hold (at the top level and again inside a sequence), the dataset is
de-identified and written, and each attribute is checked against its row's
action; then the written bytes are searched for every planted value. The
same search on a file written with one row switched off shows that the
search would notice.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_description, dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from workbench import deid
from workbench.deid._dicom import _profile
from workbench.deid._dicom import deidentify_dataset, profile_problems, read_dicom, write_dicom

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "part15_table_e1-1_excerpt.xml"
KEY = bytes(range(32))
SHIFT = -137
PSEUDONYM = "P-TABLE01"
PLANTED_DATE = "19610704"


def concrete_rows():
    """(row, tag, VR) for every row with one tag that pydicom can hold in a dataset."""
    out = []
    for row in _profile.load_table():
        if "x" in row.tag or "g" in row.tag:
            continue
        tag = int(row.tag[1:5] + row.tag[6:10], 16)
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command and file meta groups: tested on their own below
        # the few 2025 attributes pydicom 3.0.2 does not know arrive as UN
        vr = dictionary_VR(tag).split(" or ")[0] if dictionary_has_tag(tag) else "UN"
        out.append((row, tag, vr))
    return out


def planted_value(n: int, vr: str):
    """A value for the VR that carries the marker ZZPLANT<n> where the VR can hold text."""
    marker = f"ZZPLANT{n:04d}"
    if vr == "PN":
        return f"{marker}^Name"
    if vr in ("LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE"):
        return marker
    if vr == "UR":
        return f"http://{marker.lower()}.example"
    if vr == "AS":
        return "061Y"
    if vr == "DA":
        return PLANTED_DATE
    if vr == "DT":
        return PLANTED_DATE + "101500"
    if vr == "TM":
        return "101500"
    if vr == "UI":
        return f"1.2.826.0.1.3680043.8.498.77{n:04d}"
    if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
        return marker.encode() + b"!!!!!"[: (8 - len(marker) % 8) % 8]
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return 7
    if vr in ("FL", "FD"):
        return 7.0
    if vr in ("DS", "IS"):
        return "7"
    if vr == "AT":
        return 0x00100010
    if vr == "SQ":
        item = Dataset()
        item.PatientName = f"{marker}^Item"
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.78{n:04d}"
        return Sequence([item])
    raise AssertionError(vr)


def needles_of(n: int, vr: str) -> list[bytes]:
    marker = f"ZZPLANT{n:04d}".encode()
    if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE", "OB", "OW", "UN", "SQ"):
        return [marker]
    if vr == "UR":
        return [marker.lower()]
    if vr == "UI":
        return [f"1.2.826.0.1.3680043.8.498.77{n:04d}".encode()]
    if vr in ("DA", "DT"):
        return [PLANTED_DATE.encode()]
    return []


def planted_dataset() -> tuple[Dataset, list]:
    ds = Dataset()
    rows = concrete_rows()
    nested = Dataset()
    for n, (row, tag, vr) in enumerate(rows):
        ds.add(DataElement(tag, vr, planted_value(n, vr)))
        nested.add(DataElement(tag, vr, planted_value(n, vr)))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    # every attribute once more, one sequence down, in a sequence the table does not list
    ds.AnatomicRegionSequence = Sequence([nested])
    return ds, rows


def clean(ds: Dataset, **kw) -> Dataset:
    args = dict(patient_pseudonym=PSEUDONYM, date_shift_days=SHIFT, uid_key=KEY, burned_in_text_redacted=False)
    args.update(kw)
    return deidentify_dataset(ds, **args)


def write(ds: Dataset) -> bytes:
    return write_dicom(ds, np.zeros((4, 4, 3), np.uint8))


def check_row(where: Dataset, row, tag: int, vr: str, n: int) -> None:
    action = row.action
    if _profile.dropped_group(tag >> 16):
        action = "X"  # a group removed whole (DICOMDIR 0004 ...): stricter than the row
    label = f"{row.tag} {row.name} ({row.basic} -> {action})"
    if tag in (0x00100010, 0x00100020):  # Patient's Name and ID carry the pseudonym
        assert str(where[tag].value) == PSEUDONYM, label
        return
    if action == "X" or (action == "C" and vr not in ("DA", "DT", "TM")):
        assert tag not in where, label
        return
    assert tag in where, label
    value = where[tag].value
    if action == "Z":
        assert value in (None, "", b"") or (vr == "SQ" and len(value) == 0), label
    elif action == "D":
        assert value != planted_value(n, vr) or vr in ("DA", "DT", "TM"), label
        if vr == "SQ":
            assert len(value) == 0, label
    elif action == "U":
        if vr == "UI":
            assert str(value).startswith("2.25."), label
        elif vr == "SQ":
            assert str(value[0].ReferencedSOPInstanceUID).startswith("2.25."), label
            assert str(value[0].PatientName) == PSEUDONYM, label
    elif action == "C":
        if vr == "DA":
            expected = (dt.date(1961, 7, 4) + dt.timedelta(days=SHIFT)).strftime("%Y%m%d")
            assert value == expected, label
        elif vr == "DT":
            assert str(value).startswith((dt.date(1961, 7, 4) + dt.timedelta(days=SHIFT)).strftime("%Y%m%d")), label
        else:
            assert value == "101500", label  # times kept: the shift is whole days
    else:
        raise AssertionError(label)


def _letters(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


# --------------------------------------------------------------------------
# The table itself
# --------------------------------------------------------------------------


def test_table_is_complete_data_and_every_row_has_an_action():
    rows = _profile.load_table()
    assert len(rows) == 631  # the 2025a edition
    tags = [r.tag for r in rows]
    assert len(set(tags)) == len(tags)
    for row in rows:
        assert row.action in _profile.ACTIONS, row
    assert {"(50xx,xxxx)", "(60xx,3000)", "(60xx,4000)", "(gggg,eeee)"} <= set(tags)
    # every single tag is the standard's attribute as pydicom names it, except
    # the eight that are newer than pydicom 3.0.2's dictionary
    newer = []
    for row in rows:
        if "x" in row.tag or "g" in row.tag:
            continue
        tag = int(row.tag[1:5] + row.tag[6:10], 16)
        if not dictionary_has_tag(tag):
            newer.append(row.tag)
            continue
        assert _letters(row.name) == _letters(dictionary_description(tag)), row
    assert newer == ["(0008,1301)", "(0008,1302)", "(0008,1303)", "(0008,1304)",
                     "(0040,B034)", "(0040,B036)", "(0040,B03B)", "(0040,B03F)"]
    # the options the workbench claims decide the action where the table says so
    by_tag = {r.tag: r for r in rows}
    assert by_tag["(0008,0020)"].action == "C"  # Study Date: Z, Modified Dates C
    assert by_tag["(0018,1000)"].action == "X"  # Device Serial Number: X/Z/D, no Retain Device Identity
    assert by_tag["(0008,1030)"].action == "X"  # Study Description: X, cleaned by removal
    assert by_tag["(0020,000D)"].action == "U"  # Study Instance UID: no Retain UIDs
    assert by_tag["(0008,1140)"].action == "U"  # Referenced Image Sequence: X/Z/U*


@pytest.mark.parametrize("tag, action", [
    (0x50001234, "X"), (0x50FE0020, "X"),  # (50xx,xxxx)
    (0x60004000, "X"), (0x60023000, "X"),  # (60xx,4000), (60xx,3000)
    (0x00091001, "X"), (0x7FE10010, "X"),  # private
    (0x00080020, "C"), (0x00100010, "P"),
])
def test_patterns_and_private_tags_match(tag, action):
    assert _profile.profile().action(tag, "LO") == action


def test_attributes_outside_the_table_are_kept_only_when_safe():
    rules = _profile.profile()
    kw = pydicom.datadict.tag_for_keyword
    assert rules.action(kw("SecondaryCaptureDeviceID"), "LO") == "X"  # not in the table: removed
    assert rules.action(kw("SecondaryCaptureDeviceManufacturer"), "LO") == "X"
    assert rules.action(kw("WindowCenterWidthExplanation"), "LO") == "X"
    assert rules.action(kw("PositionReferenceIndicator"), "LO") == "X"
    assert rules.action(kw("Manufacturer"), "LO") == "K"  # on the retained list
    assert rules.action(kw("Rows"), "US") == "K"
    assert rules.action(kw("ImageType"), "CS") == "K"
    assert rules.action(kw("SOPClassUID"), "UI") == "K"
    assert rules.action(kw("MediaStorageSOPClassUID"), "UI") == "X"  # file meta in a body
    assert rules.action(0x00180000, "UL") == "X"  # group length
    assert rules.action(0x00191000, "UN") == "X"  # private
    assert rules.action(0x00231234, "UN") == "X"
    assert rules.action(0x00080099, "UN") == "X"  # unknown to the dictionary


def test_every_attribute_of_the_table_gets_its_action():
    ds, rows = planted_dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # values deliberately exceed some VRs' lengths
        out = clean(ds)
    nested = out.AnatomicRegionSequence[0]
    for n, (row, tag, vr) in enumerate(rows):
        check_row(out, row, tag, vr, n)
        check_row(nested, row, tag, vr, n)


def _leaks(data: bytes, rows) -> list[bytes]:
    return [needle for n, (_, _, vr) in enumerate(rows) for needle in needles_of(n, vr) if needle in data]


def test_no_planted_value_reaches_the_written_bytes():
    ds, rows = planted_dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = io.BytesIO()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        pydicom.dcmwrite(raw, ds, enforce_file_format=True)
        data = write(clean(ds))
    planted = _leaks(raw.getvalue(), rows)
    assert len(planted) > 400  # the search finds what was planted ...
    assert _leaks(data, rows) == []  # ... and none of it in the de-identified file
    assert profile_problems(data) == []


def test_the_byte_search_notices_a_row_switched_off(monkeypatch):
    # Proof that the test above can fail: keep Patient's Address (X) as it is.
    ds, rows = planted_dataset()
    rules = _profile.Profile(_profile.load_table(), _profile.load_retained())
    rules.exact[0x00101040] = "K"
    monkeypatch.setattr(_profile, "profile", lambda: rules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = write(clean(ds))
    leaked = _leaks(data, rows)
    assert leaked and all(b"ZZPLANT" in n for n in leaked)
    # verification judges by the real table, which says X
    monkeypatch.undo()
    assert any("PatientAddress (0010,1040)" in p for p in profile_problems(data))


def test_file_meta_is_rebuilt_and_checked():
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.826.0.1.3680043.8.498.1"
    ds.PatientName = "ZZTEST^Meta"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(16)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.SourceApplicationEntityTitle = "ZZPLANTAE"
    ds.file_meta.ImplementationVersionName = "ZZPLANTIMPL"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.8.498.99"
    ds.file_meta.PrivateInformation = b"ZZPLANTPRIV!"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    data = buf.getvalue()
    assert b"ZZPLANTAE" in data and b"ZZPLANTPRIV" in data
    out = write_dicom(clean(read_dicom(data).dataset), read_dicom(data).frames)
    for needle in (b"ZZPLANT", b"1.2.826.0.1.3680043.8.498.99", b"1.2.826.0.1.3680043.8.498.1\x00", b"ZZTEST"):
        assert needle not in out
    assert profile_problems(out) == []
    # a file meta element the profile does not write is named
    back = pydicom.dcmread(io.BytesIO(out))
    back.file_meta.SourceApplicationEntityTitle = "ANYWHERE"
    again = io.BytesIO()
    pydicom.dcmwrite(again, back, enforce_file_format=True)
    assert profile_problems(again.getvalue()) == [
        "file meta attribute SourceApplicationEntityTitle (0002,0016) present"
    ]


def test_an_attribute_left_behind_makes_the_report_unverified(monkeypatch):
    # The Secondary Capture Device ID case: if the cleaner kept it, the
    # re-read must fail closed and name it.
    from test_dicom import sc_gray16

    data, _ = sc_gray16()
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SecondaryCaptureDeviceID = "SN-ZZ4455"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    planted = buf.getvalue()
    result = deid.deidentify(planted, deid.Policy(detectors=()))
    assert result.verified and b"SN-ZZ4455" not in result.data

    real = _profile.Cleaner.element

    def keep_device_id(self, elem):
        return elem if elem.keyword == "SecondaryCaptureDeviceID" else real(self, elem)

    monkeypatch.setattr(_profile.Cleaner, "element", keep_device_id)
    leaky = deid.deidentify(planted, deid.Policy(detectors=()))
    assert b"SN-ZZ4455" in leaky.data
    assert not leaky.verified
    assert any("SecondaryCaptureDeviceID (0018,1010)" in w for w in leaky.warnings)
    assert not any("SN-ZZ4455" in w for w in leaky.warnings)
    entry = leaky.report_entry("in.dcm", "out.dcm")
    assert entry["verified"] is False


def test_method_codes_record_what_was_done():
    from test_dicom import vl_photo

    image = read_dicom(vl_photo())
    for redacted, expected in ((True, ["113100", "113101", "113107", "113105"]),
                               (False, ["113100", "113107", "113105"])):
        out = clean(image.dataset, burned_in_text_redacted=redacted)
        assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == expected
        assert {i.CodingSchemeDesignator for i in out.DeidentificationMethodCodeSequence} == {"DCM"}
        assert out.PatientIdentityRemoved == "YES"


# --------------------------------------------------------------------------
# The script that regenerates the data
# --------------------------------------------------------------------------


def test_the_script_reads_the_standards_docbook():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import dicom_profile_table as tool
    finally:
        sys.path.pop(0)
    import xml.etree.ElementTree as ET

    rows = {r["tag"]: r for r in tool.parse_table(ET.parse(FIXTURE).getroot())}
    assert list(rows) == sorted(rows, key=str.lower)
    assert rows["(0008,0022)"]["basic"] == "X/Z"
    assert rows["(0008,0022)"]["rtn_long_modified_dates"] == "C"
    assert rows["(0008,0022)"]["rtn_long_full_dates"] == "K"
    assert rows["(50xx,xxxx)"]["clean_graphics"] == "C"
    assert rows["(60xx,4000)"]["basic"] == "X"
    assert rows["(gggg,eeee)"]["rtn_safe_private"] == "C"
    assert rows["(0088,0200)"]["name"] == "Icon Image Sequence"  # "(see Note 12)" dropped
    # the generated CSV loads, and agrees with the shipped table on every row it has
    out = io.StringIO()
    tool.write_csv(list(rows.values()), out, "fixture")
    loaded = {r.tag: r for r in _profile.load_table(out.getvalue())}
    shipped = {r.tag: r for r in _profile.load_table()}
    for tag, row in loaded.items():
        assert row.basic == shipped[tag].basic, tag
        assert row.action == shipped[tag].action, tag
    # and the shipped CSV has the columns the script writes
    header = next(csv.reader(line for line in _profile_table_text().splitlines() if not line.startswith("#")))
    assert header == tool.COLUMNS


def _profile_table_text() -> str:
    from importlib import resources

    return resources.files("workbench.deid").joinpath("data", _profile.TABLE_FILE).read_text("utf-8")


def test_the_script_refuses_a_table_it_does_not_recognise(tmp_path):
    text = FIXTURE.read_text()
    (tmp_path / "wrong.xml").write_text(text.replace("Clean Graph. Opt.", "Something Else"))
    (tmp_path / "none.xml").write_text(text.replace('xml:id="table_E.1-1"', 'xml:id="table_X"'))
    for name in ("wrong.xml", "none.xml"):
        run = subprocess.run([sys.executable, str(ROOT / "tools" / "dicom_profile_table.py"), str(tmp_path / name)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and "dicom_profile_table:" in run.stderr and not run.stdout
    ok = subprocess.run([sys.executable, str(ROOT / "tools" / "dicom_profile_table.py"), str(FIXTURE)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.count("\n") == 2 + 1 + 8
