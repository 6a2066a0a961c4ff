// The review queue's view: the list, the two images (custom messages with a
// binary buffer each), accept / send back, and the figures.

function render({ model, el }) {
  const root = keyedRoot("wb-widget wb-queue");
  const act = actor(model);
  const bar = h("div", "wb-toolbar");
  const prev = h("button", "wb-prev", "◀ previous (p)");
  const next = h("button", "wb-next", "next (n) ▶");
  const reason = h("input", "wb-reason");
  reason.placeholder = "reason (needed to send back)";
  const accept = h("button", "wb-approve wb-accept", "accept (a)");
  const back = h("button", "wb-reject wb-send-back", "send back (r)");
  const share = h("input", "wb-second-share");
  share.type = "number"; share.min = 0; share.max = 1; share.step = 0.05;
  bar.append(prev, next, reason, accept, back, h("span", null, "second review share:"), share);
  const list = h("div", "wb-queue-list");
  const side = h("div", "wb-side");
  const figs = {};
  for (const slot of ["original", "redacted"]) {
    const fig = h("figure");
    const img = h("img", `wb-${slot}`);
    img.alt = slot;
    fig.append(img, h("figcaption", null, slot === "original" ? "original" : "redacted (stored version)"));
    figs[slot] = { fig, img, url: null };
    side.append(fig);
  }
  const status = h("div", "wb-status");
  const error = h("div", "wb-error");
  const figures = h("div", "wb-info wb-figures");
  root.append(bar, list, side, status, error, figures);
  el.append(root);

  function draw() {
    const items = model.get("items");
    const current = model.get("index");
    list.replaceChildren(...items.map((item, n) => {
      const row = h("div", n === current ? "wb-current" : "",
        `${n + 1}. risk ${item.risk} · ${item.state} · ${item.body_site} · ${item.reasons.join("; ")}`);
      row.onclick = () => act("go", { index: n });
      return row;
    }));
    showMessages(model, status, error);
    const f = model.get("figures");
    const pct = (x) => (x === null || x === undefined ? "n/a" : `${Math.round(x * 100)}%`);
    const corr = Object.entries(f.corrections || {}).map(([k, v]) => `${k} +${v.added}/-${v.removed}`).join(", ");
    figures.textContent = `agreement between reviewers ${pct(f.agreement)} (${f.compared || 0} compared), ` +
      `on regions ${pct(f.region_agreement)} (${f.region_pairs || 0} photos) · ` +
      `corrections by kind: ${corr || "none"} · time per photo ` +
      `${f.seconds_per_photo == null ? "n/a" : Math.round(f.seconds_per_photo) + " s"}`;
    if (document.activeElement !== share) share.value = model.get("second_share");
    if (document.activeElement !== reason) reason.value = model.get("reason");
    for (const b of [accept, back, next, prev]) b.disabled = !model.get("can_review");
  }

  const onImage = (msg, buffers) => {
    if (!msg || msg.type !== "image" || !figs[msg.slot]) return;
    const f = figs[msg.slot];
    f.url = showBuffer(f.img, buffers, f.url);
  };
  model.on("msg:custom", onImage);
  prev.onclick = () => act("previous");
  next.onclick = () => act("next");
  accept.onclick = () => act("accept", { reason: reason.value });
  back.onclick = () => act("send_back", { reason: reason.value });
  share.onchange = () => { model.set("second_share", Number(share.value)); model.save_changes(); };
  root.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    const k = event.key;
    let handled = true;
    if (k === "a") act("accept", { reason: reason.value });
    else if (k === "r") act("send_back", { reason: reason.value });
    else if (k === "n") act("next");
    else if (k === "p") act("previous");
    else handled = false;
    if (handled) { event.preventDefault(); event.stopPropagation(); }
  });
  for (const n of ["items", "index", "status", "error", "figures", "second_share", "reason", "can_review"]) {
    model.on(`change:${n}`, draw);
  }
  draw();
  showEarlyOrAsk(model, onImage, act);
  return () => { for (const f of Object.values(figs)) if (f.url) URL.revokeObjectURL(f.url); };
}

export default { initialize, render };
