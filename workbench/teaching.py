"""Teaching sets: education-consented, de-identified photos as a gallery and a deck.

A teaching set is a cohort built for the ``education`` purpose, plus:

- ``gallery.html``: one self-contained page (images embedded), so it opens
  from a USB stick with no server and no network;
- ``deck.pptx``: one photo per slide with its caption and a small
  pseudonymous source id.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import pandas as pd

from .cohort import CohortResult, CohortSpec, build_cohort, read_cohort
from .errors import InvalidInput
from .vault import Vault

#: a few codes used by the demo; any other code is shown as it is. The names
#: leave out the site some codes name ("of trunk"): a caption's site comes from
#: the photo's body site alone, so that the two can never disagree.
DIAGNOSIS_NAMES = {
    "L40.0": "Psoriasis vulgaris",
    "C43.5": "Malignant melanoma",
    "L89.1": "Pressure ulcer, stage 2",
    "T20.2": "Burn of second degree",
    "D22.5": "Melanocytic naevus",
}


def caption(row) -> str:
    """``Psoriasis vulgaris (L40.0) - left forearm`` from a manifest row."""
    dx = row.get("diagnosis") if hasattr(row, "get") else row["diagnosis"]
    site = row.get("body_site") if hasattr(row, "get") else row["body_site"]
    side = row.get("laterality") if hasattr(row, "get") else row["laterality"]
    parts = []
    if isinstance(dx, str) and dx:
        name = DIAGNOSIS_NAMES.get(dx)
        parts.append(f"{name} ({dx})" if name else dx)
    where = " ".join(p for p in (side if isinstance(side, str) else "", site if isinstance(site, str) else "") if p)
    if where:
        parts.append(where)
    return " - ".join(parts) or "Clinical photograph"


def build_teaching_set(vault: Vault, spec: CohortSpec | dict, out_dir: str | os.PathLike | None = None,
                       *, title: str | None = None, **kw) -> CohortResult:
    """Build an education cohort and add ``gallery.html`` and ``deck.pptx`` to it.

    Parameters
    ----------
    vault : Vault
    spec : CohortSpec or dict
        Its purpose must be ``education`` (the default for a dict here).
    out_dir : path, optional
        Default ``datasets/<name>``.
    title : str, optional
        Shown on the gallery and the title slide.
    **kw
        Passed to :func:`workbench.cohort.build_cohort` (workers, scheduler, notebook).
    """
    if isinstance(spec, dict):
        spec = CohortSpec.from_json({"purpose": "education", **spec})
    if spec.purpose != "education":
        raise InvalidInput("a teaching set is built for the education purpose only")
    result = build_cohort(vault, spec, out_dir, **kw)
    write_gallery(result.path, title=title or spec.name)
    write_deck(result.path, title=title or spec.name)
    return result


def _rows(folder: Path) -> pd.DataFrame:
    _, manifest = read_cohort(folder)
    return manifest.sort_values("image_id").reset_index(drop=True)


def write_gallery(folder: str | os.PathLike, *, title: str) -> Path:
    """A single self-contained HTML page with every image embedded."""
    folder = Path(folder)
    cards = []
    for row in _rows(folder).to_dict("records"):
        data = (folder / row["image"]).read_bytes()
        mime = "image/jpeg" if row["image"].endswith(".jpg") else "image/png"
        src = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        cards.append(
            f'<figure><img src="{src}" alt="{html.escape(caption(row))}" loading="lazy">'
            f"<figcaption>{html.escape(caption(row))}<small>{html.escape(row['image_id'])}</small>"
            "</figcaption></figure>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; background: #fafafa; color: #222; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 1.2rem; }}
figure {{ margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px; overflow: hidden; }}
img {{ width: 100%; display: block; }}
figcaption {{ padding: .6rem; font-size: .9rem; }}
small {{ display: block; color: #777; font-size: .7rem; margin-top: .3rem; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(cards)} de-identified photographs, used with the patients' consent for teaching.
Do not try to identify anyone.</p>
<main>
{chr(10).join(cards)}
</main></body></html>
"""
    path = folder / "gallery.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_deck(folder: str | os.PathLike, *, title: str) -> Path:
    """A PowerPoint deck: a title slide, then one photo per slide with its caption."""
    from pptx import Presentation
    from pptx.util import Emu, Pt
    from PIL import Image

    folder = Path(folder)
    deck = Presentation()
    deck.slide_width, deck.slide_height = Emu(12192000), Emu(6858000)  # 16:9
    # python-pptx stamps the current time and a default author into the core
    # properties; fix them so the deck says nothing about who built it, when.
    deck.core_properties.author = "workbench"
    deck.core_properties.last_modified_by = "workbench"
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = title
    first.placeholders[1].text = "De-identified photographs used with consent for teaching"
    blank = deck.slide_layouts[6]
    width, height = deck.slide_width, deck.slide_height
    for row in _rows(folder).to_dict("records"):
        slide = deck.slides.add_slide(blank)
        data = (folder / row["image"]).read_bytes()
        w, h = Image.open(io.BytesIO(data)).size
        box_w, box_h = int(width * 0.9), int(height * 0.78)
        scale = min(box_w / w, box_h / h)
        pic_w, pic_h = int(w * scale), int(h * scale)
        slide.shapes.add_picture(io.BytesIO(data), (width - pic_w) // 2, int(height * 0.04), pic_w, pic_h)
        text = slide.shapes.add_textbox(int(width * 0.05), int(height * 0.85), int(width * 0.9), int(height * 0.1))
        para = text.text_frame.paragraphs[0]
        para.text = caption(row)
        para.runs[0].font.size = Pt(20)
        small = text.text_frame.add_paragraph()
        small.text = row["image_id"]
        small.runs[0].font.size = Pt(10)
    path = folder / "deck.pptx"
    deck.save(path)
    return path
