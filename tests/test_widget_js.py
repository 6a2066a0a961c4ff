"""The widgets' JavaScript in a headless Chromium, against a stand-in model (no JupyterLab).

Each view is rendered from the module its widget ships (``common.js`` and
its own file) with a model that records what the view sends; the page plays
a mouse drag and the keys, and writes what was sent into the page, which
Chromium dumps. This checks the view's own arithmetic (a drag on a photo
shown at a tenth of its size gives a box in the photo's full-size pixels)
and that every key and button asks Python for the right action; the whole
path through JupyterLab is the browser test's.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess

import pytest
from PIL import Image

from workbench.widgets import ConsentForm, Gallery, RedactionEditor, ReviewQueue

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (Debian: apt-get install chromium); these tests need it",
)


def run_page(tmp_path, widget_class, state: dict, script: str, before: str = "") -> dict:
    """Render ``widget_class``'s view with ``state``, run ``script``, return what it wrote to ``out``.

    ``before`` runs after the model's ``initialize`` and before the view
    renders (as messages Python sends while the widget is made arrive).
    """
    code = str(widget_class._esm)
    for default in ("export default { initialize, render };", "export default { render };"):
        code = code.replace(default, "window.__render = render; window.__initialize = "
                                     "typeof initialize === 'function' ? initialize : null;")
    css = str(widget_class._css)
    page = f"""<!doctype html><html><head><style>{css}</style></head><body><div id=host></div><pre id=out>not run</pre>
<script>window.onerror = (m) => {{ document.getElementById("out").textContent = JSON.stringify({{error: String(m)}}); }};</script>
<script type=module>
{code}
const state = {json.dumps(state)};
const handlers = {{}};
const sent = [];
const model = {{ get: (k) => state[k], set: (k, v) => {{ state[k] = v; }}, save_changes: () => {{}},
  on: (ev, fn) => {{ (handlers[ev] = handlers[ev] || []).push(fn); }}, send: (m) => sent.push(m) }};
if (window.__initialize) window.__initialize({{ model }});
{before}
window.__render({{ model, el: document.getElementById("host") }});
const finish = (extra) => {{ document.getElementById("out").textContent = JSON.stringify({{ sent, ...extra }}); }};
{script}
</script></body></html>"""
    path = tmp_path / "page.html"
    path.write_text(page)
    done = subprocess.run([CHROMIUM, *FLAGS, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                          timeout=120)
    text = done.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]
    import html

    return json.loads(html.unescape(text))


def _jpeg(size) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 150, 120)).save(buf, "JPEG")
    return base64.b64encode(buf.getvalue()).decode()


EDITOR_STATE = {
    "kinds": ["face", "text", "barcode", "tattoo", "birthmark", "other"], "shortcuts": [["a", "approve"]],
    "image_size": [4000, 2000], "proposed": [{"kind": "face", "box": [100, 100, 400, 400], "score": 0.8,
                                               "detector": "centerface"}],
    "regions": [{"kind": "tattoo", "box": [2000, 1000, 400, 200]}], "selected": 0, "kind": "tattoo", "reason": "",
    "status": "", "error": "", "conflict": {}, "photo_ids": ["x"], "index": 0, "version": 0,
    "state": "unreviewed", "dirty": False, "verified": True, "role": "analyst", "redacted_preview": False,
    "can_review": True, "zoom_box": [], "picked": -1,
}


def test_a_drag_on_the_photo_is_a_box_in_full_size_pixels_and_keys_ask_for_actions(tmp_path):
    script = f"""
const bytes = Uint8Array.from(atob("{_jpeg((400, 200))}"), c => c.charCodeAt(0));
for (const fn of handlers["msg:custom"]) {{
  fn({{ type: "image", slot: "photo", photo_id: "x", box: [0, 0, 4000, 2000] }}, [new DataView(bytes.buffer)]);
}}
const img = document.querySelector(".wb-editor-surface img");  // a fresh element for each photo
img.onload = () => {{
  const surface = document.querySelector(".wb-editor-surface");
  const r = img.getBoundingClientRect();
  const at = (fx, fy) => ({{ clientX: r.left + fx * r.width, clientY: r.top + fy * r.height, bubbles: true, button: 0 }});
  surface.dispatchEvent(new MouseEvent("mousedown", at(0.1, 0.6)));
  window.dispatchEvent(new MouseEvent("mousemove", at(0.2, 0.8)));
  window.dispatchEvent(new MouseEvent("mouseup", at(0.2, 0.8)));
  const rect = document.querySelector("rect.wb-region");
  const rr = rect.getBoundingClientRect();
  const grab = {{ clientX: rr.left + 5, clientY: rr.top + 5, bubbles: true, button: 0 }};
  rect.dispatchEvent(new MouseEvent("mousedown", grab));
  window.dispatchEvent(new MouseEvent("mousemove", {{ ...grab, clientX: grab.clientX + 0.05 * r.width }}));
  window.dispatchEvent(new MouseEvent("mouseup", {{ ...grab, clientX: grab.clientX + 0.05 * r.width }}));
  const root = document.querySelector(".wb-editor");
  root.dispatchEvent(new KeyboardEvent("keydown", {{ key: "ArrowRight", bubbles: true }}));
  root.dispatchEvent(new KeyboardEvent("keydown", {{ key: "ArrowDown", shiftKey: true, bubbles: true }}));
  for (const key of ["4", "Delete", "z", "t", "n", "p", "a", "r", "s", "Tab", "x", "q"]) {{
    root.dispatchEvent(new KeyboardEvent("keydown", {{ key, bubbles: true }}));
  }}
  for (const cls of ["wb-approve", "wb-reject", "wb-next", "wb-prev", "wb-dismiss"]) document.querySelector("." + cls).click();
  // a proposed box is picked by its label, never moved or drawn over by it
  document.querySelector("text.wb-proposed-label").dispatchEvent(new MouseEvent("mousedown", {{ bubbles: true, button: 0 }}));
  finish({{ shown: [r.width, r.height], region: [rr.width, rr.height],
           keys: document.querySelector(".wb-shortcuts").textContent }});
}};
"""
    out = run_page(tmp_path, RedactionEditor, EDITOR_STATE, script)
    assert "error" not in out, out
    assert out["shown"] == [400, 200] and out["region"] == [40, 20]  # the overlay is in full-size pixels
    sent = out["sent"]
    assert sent[0] == {"action": "hello", "args": {}}  # a view asks for its photo
    assert sent[1] == {"action": "draw", "args": {"box": [400, 1200, 400, 400], "kind": "tattoo"}}
    assert sent[2] == {"action": "set_box", "args": {"index": 0, "box": [2200, 1000, 400, 200]}}  # moved
    # arrows: move by a hundredth of the shown extent (40 px here), Shift+arrow resizes
    assert sent[3] == {"action": "set_box", "args": {"index": 0, "box": [2040, 1000, 400, 200]}}
    assert sent[4] == {"action": "set_box", "args": {"index": 0, "box": [2000, 1000, 400, 240]}}
    sent = sent[:3] + sent[5:]
    actions = [m["action"] for m in sent[3:]]
    assert actions == ["set_kind", "delete", "zoom", "toggle_preview", "next", "previous", "approve", "reject",
                       "save", "pick", "dismiss", "approve", "reject", "next", "previous", "dismiss", "pick"]
    assert sent[-1]["args"] == {"index": 0}
    assert sent[3]["args"] == {"kind": "tattoo"}  # key 4
    assert "approve" in out["keys"]


def test_a_box_left_visible_as_slough_is_drawn_apart_and_its_label_marks_it_as_a_face(tmp_path):
    left = [{"kind": "face", "box": [3000, 200, 300, 300], "score": 0.16},
            {"kind": "face", "box": [2000, 1000, 400, 200], "score": 0.2}]  # the second is marked already
    script = """
const labels = [...document.querySelectorAll("text.wb-left-visible-label")];
const drawn = labels.map((t) => t.textContent);
const boxes = document.querySelectorAll("rect.wb-left-visible").length;
labels[0].dispatchEvent(new MouseEvent("mousedown", { bubbles: true, button: 0 }));
finish({ drawn, boxes });
"""
    state = dict(EDITOR_STATE, left_visible=left, regions=[{"kind": "face", "box": [2000, 1000, 400, 200]}])
    out = run_page(tmp_path, RedactionEditor, state, script)
    assert "error" not in out, out
    assert out["boxes"] == 1 and out["drawn"] == ["face 0.16 left visible (slough?): click to hide"]
    assert out["sent"][-1] == {"action": "draw", "args": {"box": [3000, 200, 300, 300], "kind": "face"}}


@pytest.mark.parametrize("widget_class, state", [
    (Gallery, {"choices": {"body_site": ["arm"], "diagnosis": [], "review_state": ["approved"]}, "filters": {},
               "items": [{"photo_id": "p1", "body_site": "arm", "diagnosis": None, "capture_date": None,
                          "review_state": "approved", "shown": False}], "selected": [], "status": "",
               "error": "", "notice": "", "page": 0, "pages": 2, "mode": "deidentified"}),
    (ReviewQueue, {"items": [{"photo_id": "p1", "risk": 3, "reasons": ["never reviewed"], "state": "unreviewed",
                              "second_review": False, "body_site": "arm"}], "index": 0, "status": "", "error": "",
                   "figures": {"agreement": 0.5, "compared": 2, "corrections": {}, "seconds_per_photo": 12.0},
                   "second_share": 0.1, "reason": "", "can_review": True}),
    (ConsentForm, {"scopes": ["care", "research"], "status": "", "error": "", "history": [], "can_record": True}),
])
def test_every_button_of_the_other_views_asks_for_an_action(tmp_path, widget_class, state):
    out = run_page(tmp_path, widget_class, state,
                   'for (const b of document.querySelectorAll("button")) b.click(); setTimeout(() => finish({}), 100);')
    assert "error" not in out, out
    actions = {m["action"] for m in out["sent"]}
    assert actions <= {"hello", "next_page", "previous_page", "select_page", "clear_selection", "previous", "next",
                       "accept", "send_back", "grant", "withdraw"}
    assert len(actions - {"hello"}) >= 2


def test_an_image_sent_before_the_view_exists_is_shown_without_asking_again(tmp_path):
    """The model asks for its images as it is made; a view made after the answer shows it at once."""
    before = f"""
const early = Uint8Array.from(atob("{_jpeg((400, 200))}"), c => c.charCodeAt(0));
for (const fn of handlers["msg:custom"]) {{
  fn({{ type: "image", slot: "photo", photo_id: "x", box: [0, 0, 4000, 2000] }}, [new DataView(early.buffer)]);
}}
"""
    script = """
const img = document.querySelector(".wb-editor-surface img");
const done = () => finish({ src: img.src.slice(0, 5), width: img.naturalWidth });
if (img.complete && img.naturalWidth) done(); else img.onload = done;
"""
    out = run_page(tmp_path, RedactionEditor, EDITOR_STATE, script, before=before)
    assert "error" not in out, out
    assert out["src"] == "blob:" and out["width"] == 400
    # one "hello", from the model as it was made; the view asked for nothing more
    assert out["sent"].count({"action": "hello", "args": {}}) == 1
