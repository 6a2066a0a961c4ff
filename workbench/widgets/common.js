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

// The status and error lines, from the model's traits.
function showMessages(model, status, error) {
  status.textContent = model.get("status");
  error.textContent = model.get("error");
  error.style.display = model.get("error") ? "" : "none";
}
