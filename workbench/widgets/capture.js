// The capture panel's view. The patient's id is read from its input with
// each request and sent in the action message; it is never set on the
// model. The last shot arrives as a custom message with one binary buffer.

function render({ model, el }) {
  const root = h("div", "wb-widget wb-form wb-capture");
  const act = actor(model);
  const camera = h("div", "wb-camera");
  const patient = h("input", "wb-patient"); patient.autocomplete = "off";
  const site = h("input", "wb-body-site"); site.placeholder = "e.g. forearm";
  const side = h("select", "wb-laterality");
  const diagnosis = h("input", "wb-diagnosis"); diagnosis.placeholder = "optional (e.g. L40.0)";
  const shoot = h("button", "wb-capture-button", "take a picture");
  const watch = h("button", "wb-watch", "watch the camera's shutter");
  const refresh = h("button", "wb-refresh", "find the camera again");
  const status = h("div", "wb-status");
  const error = h("div", "wb-error");
  const img = h("img", "wb-last-shot");
  img.alt = "the last shot";
  const list = h("table", "wb-shots");
  const label = (text, input) => { const l = h("label", null, text + " "); l.append(input); return l; };
  root.append(camera, label("patient id (MRN)", patient), label("body site", site), label("laterality", side),
              label("diagnosis", diagnosis), shoot, watch, refresh, status, error, img, list);
  el.append(root);
  let url = null;

  side.replaceChildren(...model.get("lateralities").map((x) => { const o = h("option", null, x || "(none)"); o.value = x; return o; }));
  const fields = () => ({ patient: patient.value, body_site: site.value, laterality: side.value || null,
                          diagnosis: diagnosis.value || null });
  shoot.onclick = () => act("capture", fields());
  watch.onclick = () => act(model.get("watching") ? "stop" : "watch", model.get("watching") ? {} : fields());
  refresh.onclick = () => act("refresh");

  function draw() {
    const c = model.get("camera");
    camera.textContent = c && c.model
      ? `camera: ${c.model} (${c.port}) · battery ${c.battery || "not reported"} · ` +
        (c.free_mb === null || c.free_mb === undefined ? "free space not reported" : `${c.free_mb} MB free`)
      : "no camera connected";
    showMessages(model, status, error);
    const can = model.get("can_capture"), watching = model.get("watching"), busy = model.get("busy");
    shoot.disabled = !can || watching || busy || !(c && c.model);
    watch.disabled = !can || !(c && c.model);
    refresh.disabled = !can || watching;
    watch.textContent = watching ? "stop watching" : "watch the camera's shutter";
    root.classList.toggle("wb-watching", watching);
    const rows = model.get("shots");
    const head = ["#", "file", "status", "photo", "verified", "off the camera", "why"];
    list.replaceChildren(...[head].concat(rows.slice(-20).reverse().map((s) => [
      s.n, s.kind, s.status, s.photo_id || "", s.verified ? "yes" : "no", s.removed ? "yes" : "no", s.error || "",
    ])).map((cells, n) => {
      const tr = h("tr");
      for (const x of cells) tr.append(h(n === 0 ? "th" : "td", null, String(x)));
      return tr;
    }));
  }
  const onImage = (msg, buffers) => {
    if (!msg || msg.type !== "image" || msg.slot !== "last") return;
    url = showBuffer(img, buffers, url);
  };
  model.on("msg:custom", onImage);
  for (const n of ["camera", "status", "error", "can_capture", "watching", "busy", "shots"]) model.on(`change:${n}`, draw);
  draw();
  showEarlyOrAsk(model, onImage, act);
  return () => { if (url) URL.revokeObjectURL(url); };
}

export default { initialize, render };
