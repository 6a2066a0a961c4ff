"""Regenerate workbench/deid/data/ps3.15_table_e1-1.csv from the DICOM standard.

Reads the DocBook source of DICOM PS3.15 (``part15.xml``, published by NEMA with
every edition of the standard under ``source/docbook/part15/``) and writes Table
E.1-1, Application Level Confidentiality Profile Attributes, as the CSV the
workbench applies. Nothing is downloaded: fetch ``part15.xml`` by hand, then

    python tools/dicom_profile_table.py part15.xml > workbench/deid/data/ps3.15_table_e1-1.csv

and review the diff (``tests/test_dicom_profile.py`` checks that every row of the
result has an action the workbench implements).

The table's columns, in the standard's order: Attribute Name, Tag, Retired, In
Std. Comp. IOD, Basic Profile, and the ten options (Retain Safe Private, Retain
UIDs, Retain Device Identity, Retain Institution Identity, Retain Patient
Characteristics, Retain Longitudinal Full Dates, Retain Longitudinal Modified
Dates, Clean Descriptors, Clean Structured Content, Clean Graphics). The header
is checked against those words, so a reordered table in a later edition is
refused rather than read into the wrong columns.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import xml.etree.ElementTree as ET

TABLE_ID = "table_E.1-1"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"

#: CSV columns after tag and name (the same order as the standard's action columns)
ACTION_COLUMNS = [
    "basic",
    "rtn_safe_private",
    "rtn_uids",
    "rtn_device_identity",
    "rtn_institution_identity",
    "rtn_patient_characteristics",
    "rtn_long_full_dates",
    "rtn_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
]
COLUMNS = ["tag", "name", *ACTION_COLUMNS]

# Words each header cell of the standard's table must contain (lower case),
# in order: name, tag, retired, in std. comp. IOD, then the action columns.
_HEADER_WORDS = [
    ("name",), ("tag",), ("ret",), ("iod",), ("basic",),
    ("safe", "priv"), ("uid",), ("dev",), ("inst",), ("pat",),
    ("full",), ("modif",), ("desc",), ("struct",), ("graph",),
]
_TAG = re.compile(r"\(([0-9A-Fa-fxX]{4}),([0-9A-Fa-fxX]{4})\)")
_PRIVATE = re.compile(r"\(gggg,eeee\)", re.IGNORECASE)
_CODE = re.compile(r"^(?:[XZDUKC]\*?)(?:/[XZDUKC]\*?)*$")


class TableError(ValueError):
    """The XML does not hold Table E.1-1 in the expected shape."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(cell: ET.Element) -> str:
    return " ".join("".join(cell.itertext()).split())


def _cells(row: ET.Element) -> list[str]:
    return [_text(c) for c in row if _local(c.tag) in ("td", "th")]


def find_table(root: ET.Element) -> ET.Element:
    """The ``table`` element whose xml:id is ``table_E.1-1``."""
    for element in root.iter():
        if _local(element.tag) == "table" and element.get(XML_ID) == TABLE_ID:
            return element
    raise TableError(f"no table with xml:id {TABLE_ID} in this document; is it PS3.15 (part15.xml)?")


def _check_header(table: ET.Element) -> None:
    heads = [c for c in table.iter() if _local(c.tag) == "thead"]
    if not heads:
        raise TableError("Table E.1-1 has no header row")
    cells = [_text(c).lower() for c in heads[0].iter() if _local(c.tag) == "th"]
    if len(cells) != len(_HEADER_WORDS):
        raise TableError(f"Table E.1-1 has {len(cells)} header cells, expected {len(_HEADER_WORDS)}")
    for index, (cell, words) in enumerate(zip(cells, _HEADER_WORDS)):
        if not all(word in cell for word in words):
            raise TableError(f"header cell {index + 1} ({cell!r}) is not the expected column {words}")


def normalise_tag(text: str) -> str:
    """The tag as the CSV writes it: ``(0008,0050)``, ``(60xx,4000)`` or ``(gggg,eeee)``."""
    if _PRIVATE.search(text):
        return "(gggg,eeee)"
    match = _TAG.search(text)
    if not match:
        raise TableError(f"no tag in cell {text!r}")
    group, element = (part.upper().replace("X", "x") for part in match.groups())
    return f"({group},{element})"


def _code(text: str, where: str) -> str:
    code = text.replace(" ", "")
    if code and not _CODE.match(code):
        raise TableError(f"unknown action {text!r} in {where}")
    return code


def parse_table(root: ET.Element) -> list[dict[str, str]]:
    """Rows of Table E.1-1 as dicts with :data:`COLUMNS` keys, sorted by tag."""
    table = find_table(root)
    _check_header(table)
    rows = {}
    bodies = [b for b in table.iter() if _local(b.tag) == "tbody"]
    if not bodies:
        raise TableError("Table E.1-1 has no body")
    for tr in bodies[0]:
        if _local(tr.tag) != "tr":
            continue
        cells = _cells(tr)
        if len(cells) != len(_HEADER_WORDS):
            raise TableError(f"a row of Table E.1-1 has {len(cells)} cells, expected {len(_HEADER_WORDS)}")
        name = re.sub(r"\s*\(see Note \d+\)\s*$", "", cells[0])
        tag = normalise_tag(cells[1])
        row = {"tag": tag, "name": name}
        for column, text in zip(ACTION_COLUMNS, cells[4:]):
            row[column] = _code(text, f"{tag} {column}")
        if not row["basic"]:
            raise TableError(f"{tag} has no Basic Profile action")
        if tag in rows:
            raise TableError(f"{tag} appears twice in Table E.1-1")
        rows[tag] = row
    if not rows:
        raise TableError("Table E.1-1 has no rows")
    return [rows[t] for t in sorted(rows, key=str.lower)]


def write_csv(rows: list[dict[str, str]], out, source: str) -> None:
    """Write the rows with a comment header naming their source."""
    out.write(
        "# DICOM PS3.15 Table E.1-1, Application Level Confidentiality Profile Attributes.\n"
        f"# Generated by tools/dicom_profile_table.py from {source}; do not edit by hand.\n"
    )
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part15", help="path of part15.xml (the DocBook source of PS3.15)")
    args = parser.parse_args(argv)
    try:
        rows = parse_table(ET.parse(args.part15).getroot())
    except (OSError, ET.ParseError, TableError) as exc:
        print(f"dicom_profile_table: {exc}", file=sys.stderr)
        return 1
    name = args.part15.replace("\\", "/").rsplit("/", 1)[-1]
    write_csv(rows, sys.stdout, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
