"""``workbench deid``: de-identify files and folders into an output folder with a report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

from .._progress import progress_bar
from ..errors import AlreadyExists, InvalidInput, WorkbenchError
from ..vault._files import atomic_write, read_input
from ._pipeline import deidentify
from ._policy import Policy
from ._pseudonym import Pseudonyms
from ._regions import Region

INPUT_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".hif", ".avif",
    ".cr3", ".cr2", ".dng", ".dcm", ".dicom",
})


def collect_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named, plus image and DICOM files found in folders, in a stable order."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(
                p for p in path.rglob("*")
                if p.is_file() and not p.name.startswith(".")
                and (p.suffix.lower() in INPUT_EXTENSIONS or p.suffix == "")
            ))
        else:
            out.append(path)
    return out


def load_regions(path: str | os.PathLike | None) -> dict[str, list[Region]]:
    """Read ``{"IMG_0001.JPG": [{"kind": "manual", "box": [x, y, w, h]}]}``."""
    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        raise InvalidInput("cannot read the regions file; it must be JSON keyed by input file name") from None
    if not isinstance(doc, dict):
        raise InvalidInput('the regions file maps file names to lists: {"IMG_0001.JPG": [...]}')
    return {name: [Region.from_json(r) for r in regions] for name, regions in doc.items()}


def run_batch(
    inputs: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    policy: Policy,
    pseudonyms: Pseudonyms,
    regions: dict[str, list[Region]] | None = None,
    on_error: Callable[[int, int, Path, WorkbenchError], None] | None = None,
) -> dict:
    """De-identify every input into ``out_dir``; return the report.

    Output names are ``<pseudonym>.<ext>``, derived from the file's content
    under the key, never from its name. A file that fails gets an entry with
    ``output: null``, ``verified: false`` and the error as its warning; the
    others go on. An existing output file is never overwritten.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = collect_inputs(inputs)
    regions = regions or {}
    report: dict = {"files": []}
    if policy.detectors:
        from ._detect import model_digests

        # which models ran, and on which instruction set (see ._models)
        report["models"] = model_digests()
    for number, path in enumerate(progress_bar(files, desc="de-identify", unit="file"), start=1):
        manual = regions.get(path.name, regions.get(str(path), []))
        try:
            data = read_input(path)
            result = deidentify(data, policy, regions=manual, pseudonyms=pseudonyms)
            name = f"{pseudonyms.file_stem(data)}.{result.ext}"
            target = out_dir / name
            if target.exists():
                raise AlreadyExists(
                    "an output with this content's name exists already (the same file given "
                    "twice, or an earlier run): remove it or choose another --out"
                )
            atomic_write(target, result.data)
            report["files"].append(result.report_entry(str(path), name))
        except WorkbenchError as exc:
            if on_error is not None:
                on_error(number, len(files), path, exc)
            report["files"].append({
                "input": str(path), "output": None, "width": 0, "height": 0, "regions": [],
                "verified": False, "warnings": [f"{type(exc).__name__}: {exc}"],
            })
    return report

