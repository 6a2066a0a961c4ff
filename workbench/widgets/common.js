// What every workbench widget's view shares; each widget's module is this
// file followed by its own (see _base.module): anywidget loads one module.

function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The root of a widget that takes keys: focusable, and JupyterLab's notebook
// shortcuts (a: insert a cell, 4: heading...), which match from the focused
// element upwards, stop at data-lm-suppress-shortcuts: its keys are its own.
function keyedRoot(cls) {
  const root = h("div", cls);
  root.tabIndex = 0;
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  return root;
}

// An action for Python: {action, args}; Python runs the method of that name.
function actor(model) {
  return (action, args) => model.send({ action, args: args || {} });
}

// Show an image message's one buffer in ``img`` (no buffer: clear it). Returns
// the new object URL, after letting ``old`` go.
function showBuffer(img, buffers, old) {
  if (old) URL.revokeObjectURL(old);
  if (!buffers || !buffers.length) {
    img.removeAttribute("src");
    return null;
  }
  const url = URL.createObjectURL(new Blob([buffers[0]], { type: "image/jpeg" }));
  img.src = url;
  return url;
}

// The status and error lines, from the model's traits.
function showMessages(model, status, error) {
  status.textContent = model.get("status");
  error.textContent = model.get("error");
  error.style.display = model.get("error") ? "" : "none";
}

// Images reach a view as custom messages, and a view that has none asks
// Python for them ("hello"). That round trip is made as soon as the model
// exists, while JupyterLab is still making the view (about 70 ms of a
// gallery's first page were spent waiting for it after the view). The model
// keeps the last message of each slot (in the page's memory, never in its
// state), so a view made later shows it at once.
const _early = new WeakMap();

function initialize({ model }) {
  const kept = new Map();
  _early.set(model, kept);
  const keep = (msg, buffers) => {
    if (msg && msg.type) kept.set(msg.slot || msg.type, [msg, buffers]);
  };
  model.on("msg:custom", keep);
  model.send({ action: "hello", args: {} });
  return () => model.off("msg:custom", keep);
}

// Show a new view what the model has; the answer to the model's "hello" reaches
// ``handler`` when it comes. A host that never ran ``initialize`` gets asked here.
function showEarlyOrAsk(model, handler, act) {
  const kept = _early.get(model);
  if (kept === undefined) {
    act("hello");
    return;
  }
  for (const [msg, buffers] of kept.values()) handler(msg, buffers);
}
