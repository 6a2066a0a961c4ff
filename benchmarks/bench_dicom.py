"""A 512x512 CT series of 200 slices through ``deid``, against pydicom's read + write.

The series is generated in memory: 16-bit signed CT slices (a body in
Hounsfield units, a window, a rescale), a header with identifiers planted the
way tests/test_dicom.py plants them (nested sequences, private tags, an
overlay), and a name and birth date burned into every slice. Timed in the
same run, on the same bytes, one slice after another on one thread:

- floor: ``pydicom.dcmread`` + ``save_as`` (to memory) of every slice;
- ``deid.deidentify`` with no detector: the confidentiality profile, the
  decode, the write and the re-read that verifies the whole dataset;
- ``deid.deidentify`` with the default policy (faces, text, barcodes), as
  ``workbench deid`` runs it: every slice shown through its window, the
  detectors, the fill in stored values, and verification around each fill.

Every output must be verified and free of the planted identifiers. Prints the
ratios to the floor and the CPU model (from /proc/cpuinfo); the JSON goes to
benchmarks/results/dicom.json.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._util import save, table

SLICES = 200
SIDE = 512


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    isa = ""
    if flags:
        have = set(flags.group(1).split())
        isa = " (AVX-512 VNNI)" if "avx512_vnni" in have else (" (AVX2)" if "avx2" in have else "")
    return (model.group(1).strip() if model else "unknown") + isa


def series(count: int = SLICES, side: int = SIDE) -> list[bytes]:
    """``count`` CT slices as Part 10 bytes, one series, identifiers planted."""
    import cv2
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_dicom import plant_identifiers

    y, x = np.mgrid[0:side, 0:side]
    out = []
    for index in range(count):
        ds = Dataset()
        plant_identifiers(ds, "1.2.840.10008.5.1.4.1.1.2")
        ds.Modality = "CT"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.4242.3.{index + 1}"
        ds.InstanceNumber = str(index + 1)
        ds.ImagePositionPatient = [0, 0, float(index)]
        body = np.hypot((x - side / 2) / 1.2, y - side / 2) < side * (0.35 + 0.05 * np.sin(index / 30))
        values = np.where(body, 40, -1000).astype(np.int16)
        values[(x - side / 2) ** 2 + (y - side * 0.55) ** 2 < (side * 0.06) ** 2] = 700  # a spine
        text = np.zeros((side, side), np.uint8)
        cv2.putText(text, f"ZZTEST^Alvaro 19610704 IM {index + 1}", (12, 28),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2, cv2.LINE_AA)
        values[text > 96] = 1500
        ds.Rows = ds.Columns = side
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = values.tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> dict:
    import pydicom

    from workbench import deid

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=SLICES)
    args = parser.parse_args(argv)
    files = series(args.slices)
    keys = deid.Pseudonyms(bytes(range(32)))

    def floor() -> None:
        for data in files:
            ds = pydicom.dcmread(io.BytesIO(data))
            ds.save_as(io.BytesIO(), enforce_file_format=True)

    def run(policy) -> list:
        return [deid.deidentify(data, policy, pseudonyms=keys) for data in files]

    floor()  # warm caches and imports
    deid.deidentify(files[0], deid.Policy(), pseudonyms=keys)  # load the models once

    started = time.perf_counter()
    floor()
    floor_s = time.perf_counter() - started
    started = time.perf_counter()
    header_only = run(deid.Policy(detectors=()))
    header_s = time.perf_counter() - started
    started = time.perf_counter()
    full = run(deid.Policy())
    full_s = time.perf_counter() - started

    for result in header_only + full:
        assert result.verified, result.warnings
        assert b"ZZTEST" not in result.data and b"MRN-1234567" not in result.data
    hidden = sum(1 for r in full if any(region.kind == "text" for region in r.regions))
    n = len(files)
    result = {
        "cpu": cpu_model(),
        "slices": n,
        "side": SIDE,
        "pydicom_read_write_s": round(floor_s, 3),
        "deid_no_detectors_s": round(header_s, 3),
        "deid_default_policy_s": round(full_s, 3),
        "ratio_no_detectors": round(header_s / floor_s, 1),
        "ratio_default_policy": round(full_s / floor_s, 1),
        "slices_with_text_hidden": hidden,
    }
    print(f"DICOM: {n} CT slices {SIDE}x{SIDE} 16-bit, one thread, on {result['cpu']}")
    print(table([
        ("pydicom dcmread + save_as", f"{floor_s:.2f} s ({1000 * floor_s / n:.1f} ms/slice)"),
        ("deid, no detectors", f"{header_s:.2f} s ({1000 * header_s / n:.1f} ms/slice), {header_s / floor_s:.1f}x"),
        ("deid, default policy", f"{full_s:.2f} s ({1000 * full_s / n:.1f} ms/slice), {full_s / floor_s:.1f}x"),
        ("slices with text hidden", f"{hidden}/{n}"),
    ]))
    save("dicom", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
