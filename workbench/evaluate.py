"""Measured quality of de-identification on a phantom set.

Runs :func:`workbench.deid.deidentify` on every phantom written by
:mod:`workbench.phantoms` and compares what was hidden with the ground
truth:

- recall per kind (face, text, barcode) and size band: a ground-truth
  identifying object counts as hidden when the redacted regions together
  cover at least 80 % of its box;
- precision per kind: the share of redacted detector regions (not manual
  ones) that lie on some ground-truth object;
- the share of the image redacted on photos with nothing identifying, and
  the number of regions on them (``false_regions``);
- clinical findings hidden (``findings_hidden``): photos in which a region
  that hides nothing identifying overlaps a lesion, wound or scar (a
  ``finding`` object of the ground truth), i.e. where the redaction took
  away what the photo was taken for;
- metadata leaks: outputs in which ``exiftool -a -G1 -s -u -U`` lists any
  tag outside the File, JFIF, Composite, ICC and System/ExifTool groups;
- identifying strings still readable: a byte search of every output for
  every planted string, and OCR of every output (rapidocr, bundled models)
  compared with the planted strings;
- time per image.

The report never contains a planted string: per-image entries hold counts,
kinds, boxes and names of phantom files only.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ._progress import progress_bar
from .errors import AlreadyExists, InvalidInput, WorkbenchError
from .phantoms import SIZE_BANDS

#: A ground-truth box counts as hidden when redacted regions cover this much of it.
HIDDEN_COVERAGE = 0.8
#: A redacted region is on target when this much of it lies on one object...
ON_TARGET_OWN = 0.3
#: ...or when it covers this much of one object.
ON_TARGET_OBJECT = 0.5
#: A region that lies on no identifying object hides a finding when their
#: overlap is at least this share of the smaller of the two boxes.
FINDING_OVERLAP = 0.05
#: exiftool groups that describe the file and its pixels, not the patient or camera.
ALLOWED_GROUPS = ("File", "JFIF", "Composite", "System", "ExifTool")
#: Planted strings shorter than this (letters and digits) are not looked for by
#: OCR: a short string turns up by chance in unrelated text.
OCR_MIN_CHARS = 6
# rapidocr reduces anything larger than this; bigger frames are also read in tiles.
_OCR_TILE = 2000
_OCR_OVERLAP = 600
#: exiftool is run over this many outputs at once (bounds the temporary disk use).
_EXIFTOOL_BATCH = 64

#: name: (comparison, target value, description)
TARGETS = {
    "metadata_leaks": ("<=", 0, "outputs with metadata beyond file structure"),
    "strings_readable": ("<=", 0, "planted identifying strings readable in outputs (bytes or OCR)"),
    "face_recall_40px_up": (">=", 0.99, "face recall, faces 40 px or taller"),
    "face_recall_20_40px": (">=", 0.95, "face recall, faces 20-40 px tall"),
    "barcode_recall": (">=", 1.0, "barcode recall"),
    "text_recall": (">=", 0.99, "identifying-text recall"),
    "clean_area_max": ("<=", 0.02, "largest share of a clean photo redacted"),
    "findings_hidden": ("<=", 0, "photos with a lesion, wound or scar under a region that hides nothing identifying"),
    "false_regions_per_clean_photo": ("<=", 0.01, "regions per photo that holds nothing identifying"),
}

_KINDS = ("face", "text", "barcode")


# --------------------------------------------------------------------------- one image

def _normalise(text: str) -> str:
    # Case, spaces and punctuation are what OCR gets wrong or drops first;
    # comparing letters and digits only finds more leaks, not fewer.
    return re.sub(r"[^0-9a-z]", "", text.lower())


_ocr = None


def _ocr_engine():
    """rapidocr with its default, bundled models (never the downloading ones)."""
    global _ocr
    if _ocr is None:
        import logging

        from .deid._detect._ocr import _import_rapidocr

        RapidOCR = _import_rapidocr()
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        _ocr = RapidOCR(params={"Global.log_level": "error"})
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return _ocr


def _spans(length: int) -> list[int]:
    if length <= _OCR_TILE:
        return [0]
    n = int(np.ceil((length - _OCR_OVERLAP) / (_OCR_TILE - _OCR_OVERLAP)))
    return [int(round(v)) for v in np.linspace(0, length - _OCR_TILE, n)]


def _read_lines(data: bytes) -> list[str]:
    """Every text line OCR reads in an output file.

    The whole image is read once (rapidocr shrinks it to 2000 px, which
    suits large text), then in overlapping 2000 px tiles so that small text
    is read near full resolution: frames over 4000 px are halved first, so a
    20 MP frame costs three passes rather than twelve.
    """
    with Image.open(io.BytesIO(data)) as im:
        if max(im.size) > 2 * _OCR_TILE:
            im.draft("RGB", (im.size[0] // 2, im.size[1] // 2))
        pixels = np.asarray(im.convert("RGB"))
    engine = _ocr_engine()
    lines: list[str] = []

    def read(part: np.ndarray) -> None:
        out = engine(np.ascontiguousarray(part))
        lines.extend(t for t in (getattr(out, "txts", None) or ()) if t)

    read(pixels)
    h, w = pixels.shape[:2]
    if max(h, w) > _OCR_TILE:
        for y in _spans(h):
            for x in _spans(w):
                read(pixels[y:y + _OCR_TILE, x:x + _OCR_TILE])
    return lines


def _on_target(box, objects: list[dict]) -> bool:
    """Does a region lie on a ground-truth object that may be redacted (anything but a finding)?"""
    from .deid import coverage

    return any(coverage(tuple(box), [tuple(o["box"])]) >= ON_TARGET_OWN
               or coverage(tuple(o["box"]), [tuple(box)]) >= ON_TARGET_OBJECT
               for o in objects if o["kind"] != "finding")


def _overlap(a, b) -> float:
    """Overlap of two ``(x, y, w, h)`` boxes as a share of the smaller one."""
    from .deid import coverage

    return max(coverage(tuple(a), [tuple(b)]), coverage(tuple(b), [tuple(a)]))


def _findings_hidden(regions: list[dict], objects: list[dict]) -> int:
    """How many findings a region that hides nothing identifying overlaps (see :data:`FINDING_OVERLAP`)."""
    false = [r["box"] for r in regions if not r["on_target"]]
    return sum(any(_overlap(o["box"], box) >= FINDING_OVERLAP for box in false)
               for o in objects if o["kind"] == "finding")


def _evaluate_one(truth_path: str, policy, out_dir: str) -> dict:
    """De-identify one phantom and measure it (runs in a worker process)."""
    from .deid import coverage, deidentify

    truth = json.loads(Path(truth_path).read_text())
    data = (Path(truth_path).parent / truth["image"]).read_bytes()
    start = time.perf_counter()
    result = deidentify(data, policy)
    seconds = time.perf_counter() - start
    if (result.width, result.height) != (truth["width"], truth["height"]):
        raise InvalidInput("a phantom's output size differs from its ground truth; regenerate the set",
                           image=truth["image"])
    boxes = [r.box for r in result.regions]
    objects = []
    for obj in (o for o in truth["objects"] if o["kind"] != "finding"):
        covered = coverage(tuple(obj["box"]), boxes) if boxes else 0.0
        objects.append({"kind": obj["kind"], "size_band": obj["size_band"], "identifying": obj["identifying"],
                        "box": obj["box"], "coverage": round(covered, 3), "hidden": covered >= HIDDEN_COVERAGE})
    regions = [{"kind": r.kind, "box": list(r.box), "detector": r.detector, "score": round(r.score, 3),
                "on_target": _on_target(r.box, truth["objects"])}
               for r in result.regions if r.detector != "manual"]
    findings = [o for o in truth["objects"] if o["kind"] == "finding"]
    area = coverage((0, 0, result.width, result.height), boxes) if boxes else 0.0

    check = time.perf_counter()
    strings = [s for s in truth["strings"] if s]
    byte_hits = sum(s.encode() in result.data for s in strings)
    lines = [_normalise(t) for t in _read_lines(result.data)]
    targets = {_normalise(s) for s in strings}
    ocr_hits = sum(any(t in line for line in lines) for t in targets if len(t) >= OCR_MIN_CHARS)
    check_seconds = time.perf_counter() - check

    out = Path(out_dir) / f"{Path(truth['image']).stem}.{result.ext}"
    out.write_bytes(result.data)
    return {
        "image": truth["image"], "width": result.width, "height": result.height, "clean": truth["clean"],
        "seconds": round(seconds, 3), "check_seconds": round(check_seconds, 3),
        "verified": result.verified, "warnings": len(result.warnings),
        "objects": objects, "regions": regions, "redacted_area": round(area, 5),
        "findings": len(findings), "findings_hidden": _findings_hidden(regions, findings),
        # a weak face or text box sends the photo to a person before any build uses it
        "review": bool(result.review_reasons),
        "byte_hits": byte_hits, "ocr_hits": ocr_hits, "output": out.name,
    }


# --------------------------------------------------------------------------- metadata

def _exiftool_leaks(paths: list[Path]) -> dict[str, list[str]]:
    """Tags (``Group:Name``, never values) outside the allowed groups, per file name."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        raise WorkbenchError("exiftool is needed to check outputs for metadata; install "
                             "libimage-exiftool-perl (Debian) and run the evaluation again")
    found: dict[str, list[str]] = {}
    for i in range(0, len(paths), _EXIFTOOL_BATCH):
        batch = paths[i:i + _EXIFTOOL_BATCH]
        proc = subprocess.run([exiftool, "-a", "-G1", "-s", "-u", "-U", "-j", *map(str, batch)],
                              capture_output=True, text=True)
        if proc.returncode not in (0, 1) or not proc.stdout.strip():
            raise WorkbenchError("exiftool failed on the de-identified outputs; run it by hand on one "
                                 "output to see why", returncode=proc.returncode)
        for entry in json.loads(proc.stdout):
            tags = [k for k in entry if k != "SourceFile"
                    and not (k.split(":", 1)[0] in ALLOWED_GROUPS or k.startswith("ICC"))]
            found[Path(entry["SourceFile"]).name] = sorted(tags)
        for path in batch:
            path.unlink()
    return found


# --------------------------------------------------------------------------- the set

def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


def _summarise(per_image: list[dict]) -> dict:
    by_kind = {}
    for kind in _KINDS:
        objs = [o for p in per_image for o in p["objects"] if o["kind"] == kind and o["identifying"]]
        bands = {}
        for band in SIZE_BANDS:
            inside = [o for o in objs if o["size_band"] == band]
            hidden = sum(o["hidden"] for o in inside)
            bands[band] = {"objects": len(inside), "hidden": hidden, "recall": _ratio(hidden, len(inside))}
        regs = [r for p in per_image for r in p["regions"] if r["kind"] == kind]
        matched = sum(r["on_target"] for r in regs)
        hidden = sum(o["hidden"] for o in objs)
        other = [o for p in per_image for o in p["objects"] if o["kind"] == kind and not o["identifying"]]
        by_kind[kind] = {
            "objects": len(objs), "hidden": hidden, "recall": _ratio(hidden, len(objs)), "by_band": bands,
            "regions": len(regs), "on_target": matched, "precision": _ratio(matched, len(regs)),
            # e.g. ruler digits: text, but nobody's identifier (redacted or not is policy)
            "non_identifying": {"objects": len(other), "hidden": sum(o["hidden"] for o in other)},
        }
    return by_kind


def _timing(per_image: list[dict]) -> dict:
    def stats(values):
        if not values:
            return {"images": 0}
        return {"images": len(values), "mean": round(statistics.fmean(values), 3),
                "median": round(statistics.median(values), 3), "max": round(max(values), 3)}

    sizes = sorted({(p["width"], p["height"]) for p in per_image})
    return {**stats([p["seconds"] for p in per_image]),
            "by_size": {f"{w}x{h}": stats([p["seconds"] for p in per_image if (p["width"], p["height"]) == (w, h)])
                        for w, h in sizes},
            "check_mean": round(statistics.fmean([p["check_seconds"] for p in per_image]), 3) if per_image else None}


def _recall_over(per_image, kind: str, bands) -> tuple[float | None, int]:
    objs = [o for p in per_image for o in p["objects"]
            if o["kind"] == kind and o["identifying"] and (bands is None or o["size_band"] in bands)]
    return _ratio(sum(o["hidden"] for o in objs), len(objs)), len(objs)


def _false_regions(per_image: list[dict]) -> int:
    """Detector regions on photos that hold nothing identifying."""
    return sum(len(p["regions"]) for p in per_image if p["clean"])


def _targets(per_image: list[dict], leaks: int) -> dict:
    clean = [p["redacted_area"] for p in per_image if p["clean"]]
    values = {
        "metadata_leaks": (leaks, len(per_image)),
        "strings_readable": (sum(p["byte_hits"] + p["ocr_hits"] for p in per_image), len(per_image)),
        "face_recall_40px_up": _recall_over(per_image, "face", ("40-100", ">=100")),
        "face_recall_20_40px": _recall_over(per_image, "face", ("20-40",)),
        "barcode_recall": _recall_over(per_image, "barcode", None),
        "text_recall": _recall_over(per_image, "text", None),
        "clean_area_max": (round(max(clean), 5) if clean else None, len(clean)),
        "findings_hidden": (sum(p.get("findings_hidden", 0) > 0 for p in per_image),
                            sum(p.get("findings", 0) > 0 for p in per_image)),
        "false_regions_per_clean_photo": (_ratio(_false_regions(per_image), len(clean)), len(clean)),
    }
    out = {}
    for name, (op, target, what) in TARGETS.items():
        value, n = values[name]
        # No samples proves nothing: a target without any is not met.
        met = value is not None and (value <= target if op == "<=" else value >= target)
        out[name] = {"value": value, "target": target, "op": op, "met": bool(met), "n": n, "what": what}
    return out


def evaluate(phantom_dir, *, policy=None, workers: int = 1) -> dict:
    """De-identify every phantom and measure the result against its ground truth.

    Parameters
    ----------
    phantom_dir : str or path
        A folder written by :func:`workbench.phantoms.generate_phantoms`
        (``phantom_*.jpg`` with ``phantom_*.json``).
    policy : workbench.deid.Policy, optional
        De-identification policy; the default policy when omitted.
    workers : int
        Processes to run in parallel. Times per image are measured inside
        each worker, so they grow when workers share too few cores; on two
        cores one worker is faster overall (onnxruntime already uses both).

    Returns
    -------
    dict
        ``images``, ``policy``, ``by_kind`` (per kind: ``objects``,
        ``hidden``, ``recall``, ``by_band``, ``regions``, ``on_target``,
        ``precision``, ``non_identifying``), ``clean`` (``images``,
        ``area_mean``, ``area_max``), ``findings_hidden`` (photos where a
        region that hides nothing identifying overlaps a clinical finding),
        ``findings_hidden_unreviewed`` (those of them that no rule sends to
        a person), ``review`` (photos a weak face or text box sends to review),
        ``false_regions`` (regions on photos that hold nothing identifying),
        ``metadata`` (``leaks``, ``tags``),
        ``strings`` (``readable``, ``bytes``, ``ocr``, ``images``),
        ``timing`` (seconds per image: ``mean``, ``median``, ``max``,
        ``by_size``), ``targets`` (name: ``value``, ``target``, ``met`` ...)
        and ``per_image``. No planted string appears in it.

    Raises
    ------
    InvalidInput
        If the folder holds no phantoms.
    WorkbenchError
        If exiftool is missing or fails.
    """
    from .deid import Policy

    policy = policy or Policy()
    folder = Path(phantom_dir)
    truths = sorted(folder.glob("phantom_*.json"))
    if not truths:
        raise InvalidInput("no phantoms found (phantom_*.json); generate them with `workbench phantoms`")
    start = time.perf_counter()
    # Outputs go to a private temporary folder for exiftool, and are deleted
    # as soon as it has read them.
    with tempfile.TemporaryDirectory(prefix="wb-evaluate-") as tmp:
        if workers > 1:
            import multiprocessing

            # spawn, not fork: onnxruntime's thread pools do not survive a fork.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                per_image = list(progress_bar(
                    pool.map(_evaluate_one, map(str, truths), [policy] * len(truths), [tmp] * len(truths)),
                    total=len(truths), desc="evaluate", unit="phantom"))
        else:
            per_image = [_evaluate_one(str(t), policy, tmp)
                         for t in progress_bar(truths, desc="evaluate", unit="phantom")]
        tags = _exiftool_leaks([Path(tmp) / p["output"] for p in per_image])
    wall = time.perf_counter() - start

    leaking = 0
    tag_counts: dict[str, int] = {}
    for p in per_image:
        found = tags.get(p["output"], [])
        p["metadata_tags"] = found
        leaking += bool(found)
        for t in found:
            tag_counts[t] = tag_counts.get(t, 0) + 1
    clean = [p["redacted_area"] for p in per_image if p["clean"]]
    return {
        "images": len(per_image),
        "policy": policy.to_json(),
        "by_kind": _summarise(per_image),
        "clean": {"images": len(clean), "area_mean": round(statistics.fmean(clean), 5) if clean else None,
                  "area_max": round(max(clean), 5) if clean else None},
        "metadata": {"leaks": leaking, "tags": dict(sorted(tag_counts.items()))},
        # photos in which a region that hides nothing identifying lies on a lesion, wound or scar
        "findings_hidden": sum(p["findings_hidden"] > 0 for p in per_image),
        # ...of which no rule sends to a person: these a build would use unseen
        "findings_hidden_unreviewed": sum(p["findings_hidden"] > 0 and not p["review"] for p in per_image),
        # photos a weak face or text box sends to review
        "review": sum(p["review"] for p in per_image),
        # detector regions on photos that hold nothing identifying
        "false_regions": _false_regions(per_image),
        "strings": {"readable": sum(p["byte_hits"] + p["ocr_hits"] for p in per_image),
                    "bytes": sum(p["byte_hits"] for p in per_image),
                    "ocr": sum(p["ocr_hits"] for p in per_image),
                    "images": sum(bool(p["byte_hits"] or p["ocr_hits"]) for p in per_image)},
        "timing": {**_timing(per_image), "wall_seconds": round(wall, 1), "workers": workers},
        "targets": _targets(per_image, leaking),
        "per_image": per_image,
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_report(report: dict) -> str:
    """The report as a plain-text table (what ``workbench evaluate`` prints)."""
    rows = [f"{report['images']} phantoms",
            f"{'kind':8} {'objects':>7} {'hidden':>6} {'recall':>6}  "
            + " ".join(f"{b:>12}" for b in SIZE_BANDS) + f"  {'regions':>7} {'precision':>9}"]
    for kind, k in report["by_kind"].items():
        bands = " ".join(f"{_fmt(k['by_band'][b]['recall']):>6} ({k['by_band'][b]['objects']:>3})" for b in SIZE_BANDS)
        rows.append(f"{kind:8} {k['objects']:>7} {k['hidden']:>6} {_fmt(k['recall']):>6}  {bands}  "
                    f"{k['regions']:>7} {_fmt(k['precision']):>9}")
    c, t = report["clean"], report["timing"]
    rows.append(f"clean photos: {c['images']}, redacted area mean {_fmt(c['area_mean'])}, max {_fmt(c['area_max'])}; "
                f"regions on them (false regions): {report['false_regions']}")
    rows.append(f"findings hidden: {report['findings_hidden']} photos with a lesion, wound or scar under a region "
                "that hides nothing identifying"
                + (f" ({report['findings_hidden'] - report['findings_hidden_unreviewed']} of them sent to review)"
                   if "findings_hidden_unreviewed" in report else ""))
    if "review" in report:
        rows.append(f"sent to review (a weak face or text box): {report['review']} photos")
    rows.append(f"metadata leaks: {report['metadata']['leaks']} outputs"
                + (f" ({', '.join(report['metadata']['tags'])})" if report["metadata"]["tags"] else ""))
    s = report["strings"]
    rows.append(f"identifying strings readable: {s['readable']} (bytes {s['bytes']}, OCR {s['ocr']}; "
                f"{s['images']} images)")
    sizes = ", ".join(f"{size} {v['mean']:.2f} s (max {v['max']:.2f})" for size, v in t["by_size"].items())
    rows.append(f"time per image: mean {_fmt(t.get('mean'))} s, median {_fmt(t.get('median'))} s; {sizes}")
    rows.append("targets:")
    for name, v in report["targets"].items():
        # n=0: the set holds nothing to measure (no barcode, no clean photo), which is
        # neither met nor missed; "met" stays false in the JSON (no samples prove nothing).
        status = "n/a " if v["n"] == 0 else "met " if v["met"] else "MISS"
        rows.append(f"  {status} {v['what']}: {_fmt(v['value'])} "
                    f"(target {v['op']} {v['target']}, n={v['n']})")
    if any(v["n"] == 0 for v in report["targets"].values()):
        rows.append("  n/a: this set holds nothing of that kind to measure, so the exit status counts it as "
                    "not met; generate more phantoms to measure it")
    return "\n".join(rows)


def run_evaluate(phantom_dir, report_path=None, *, workers: int = 1) -> int:
    """Command-line entry (``workbench evaluate PHANTOM_DIR [--report FILE]``).

    Prints the table, writes the JSON report when ``report_path`` is given
    (never over an existing file) and returns 0 when every target is met, 1
    otherwise.
    """
    if report_path is not None and Path(report_path).exists():
        raise AlreadyExists("the report file exists; choose a new name or remove it first")
    report = evaluate(phantom_dir, workers=workers)
    print(format_report(report))
    if report_path is not None:
        with open(report_path, "x") as fh:
            json.dump(report, fh, indent=1)
            fh.write("\n")
    return 0 if all(v["met"] for v in report["targets"].values()) else 1


__all__ = ["HIDDEN_COVERAGE", "TARGETS", "evaluate", "format_report", "run_evaluate"]
