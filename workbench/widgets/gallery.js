// The gallery's view: filters and paging are actions; thumbnails arrive as
// one custom message per page with a binary buffer per photo.

function render({ model, el }) {
  const root = h("div", "wb-widget wb-gallery");
  root.dataset.rendered = performance.now();  // when the view started (the benchmark reads these)
  const act = actor(model);
  const notice = h("div", "wb-notice");
  const bar = h("div", "wb-toolbar");
  const selects = {};
  for (const name of ["body_site", "diagnosis", "review_state"]) {
    selects[name] = h("select", `wb-filter-${name.replace("_", "-")}`);
    selects[name].onchange = () => act("set_filters", { [name]: selects[name].value || null });
    bar.append(h("span", null, name.replace("_", " ") + ":"), selects[name]);
  }
  const dates = {};
  for (const name of ["date_from", "date_to"]) {
    dates[name] = h("input", `wb-filter-${name.replace("_", "-")}`);
    dates[name].type = "date";
    dates[name].onchange = () => act("set_filters", { [name]: dates[name].value || null });
    bar.append(h("span", null, name === "date_from" ? "taken from:" : "to:"), dates[name]);
  }
  const prev = h("button", "wb-gallery-prev", "◀ page");
  const next = h("button", "wb-gallery-next", "page ▶");
  const all = h("button", "wb-select-page", "select page");
  const none = h("button", "wb-clear-selection", "clear selection");
  prev.onclick = () => act("previous_page");
  next.onclick = () => act("next_page");
  all.onclick = () => act("select_page");
  none.onclick = () => act("clear_selection");
  bar.append(prev, next, all, none);
  const grid = h("div", "wb-grid");
  const status = h("div", "wb-status");
  const error = h("div", "wb-error");
  root.append(notice, bar, grid, status, error);
  el.append(root);
  let imgs = {};  // one decoded element per thumbnail of the page shown (its src is the object URL)

  function options() {
    const choices = model.get("choices");
    const filters = model.get("filters");
    for (const [name, node] of Object.entries(selects)) {
      const values = [""].concat(choices[name] || []);
      node.replaceChildren(...values.map((v) => {
        const o = h("option", null, v || "(any)");
        o.value = v;
        return o;
      }));
      node.value = filters[name] || "";
    }
    for (const [name, node] of Object.entries(dates)) node.value = filters[name] || "";
  }

  function draw() {
    notice.textContent = model.get("notice");
    showMessages(model, status, error);
    const chosen = new Set(model.get("selected"));
    grid.replaceChildren(...model.get("items").map((item) => {
      const cell = h("div", "wb-thumb" + (chosen.has(item.photo_id) ? " wb-chosen" : ""));
      cell.dataset.photoId = item.photo_id;
      const img = imgs[item.photo_id];
      if (img) {
        img.alt = item.body_site || "photo";
        cell.append(img);
      } else {
        cell.append(h("div", "wb-placeholder", model.get("mode") === "deidentified"
          ? "no approved de-identified version yet" : "loading"));
      }
      cell.append(h("div", null, `${item.body_site || ""} · ${item.diagnosis || ""}`),
                  h("div", null, `${item.capture_date || "no date"} · ${item.review_state}`));
      cell.onclick = () => act("toggle", { photo_id: item.photo_id });
      return cell;
    }));
    prev.disabled = model.get("page") <= 0;
    next.disabled = model.get("page") + 1 >= model.get("pages");
  }

  const revoke = (page) => { for (const img of Object.values(page)) URL.revokeObjectURL(img.src); };
  // A page's thumbnails are decoded (in parallel, off the main thread) before
  // they are put in the grid: the page appears whole, never image by image.
  let latest = 0;
  const onImage = (msg, buffers) => {
    if (!msg || msg.type !== "thumbs") return;
    const seq = ++latest;
    root.dataset.thumbs = performance.now();
    const nextImgs = {};
    msg.ids.forEach((id, n) => {
      const img = nextImgs[id] = h("img");
      img.src = URL.createObjectURL(new Blob([buffers[n]], { type: "image/jpeg" }));
    });
    Promise.all(Object.values(nextImgs).map((img) => img.decode().catch(() => null))).then(() => {
      if (seq !== latest) {  // a newer page came first: this one is not shown
        revoke(nextImgs);
        return;
      }
      revoke(imgs);
      imgs = nextImgs;
      draw();
      root.dataset.shown = performance.now();
    });
  };
  model.on("msg:custom", onImage);
  // Python changes several traits at once (page, items, status): one redraw for them all.
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => { pending = false; draw(); });
  };
  for (const n of ["items", "selected", "status", "error", "notice", "page", "pages"]) model.on(`change:${n}`, redraw);
  for (const n of ["choices", "filters"]) model.on(`change:${n}`, options);
  options();
  draw();
  showEarlyOrAsk(model, onImage, act);
  return () => revoke(imgs);
}

export default { initialize, render };
