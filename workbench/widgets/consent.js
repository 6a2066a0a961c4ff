// The consent form's view. What identifies the patient (id, name, birth
// date, the scanned form) is sent once in an action message and cleared
// from the page; it is never set on the model.

function field(label, input) {
  const l = h("label", null, label + " ");
  l.append(input);
  return l;
}

function render({ model, el }) {
  const root = h("div", "wb-widget wb-form wb-consent");
  const patient = h("input", "wb-patient"); patient.autocomplete = "off";
  const name = h("input", "wb-name"); name.autocomplete = "off";
  const birth = h("input", "wb-birth-date"); birth.type = "date";
  const expires = h("input", "wb-expires"); expires.type = "date";
  const identifiable = h("input", "wb-identifiable"); identifiable.type = "checkbox";
  const file = h("input", "wb-form-file"); file.type = "file"; file.accept = "image/*,application/pdf";
  const scopes = h("div", "wb-scopes");
  const boxes = {};
  for (const s of model.get("scopes")) {
    const b = h("input"); b.type = "checkbox"; b.value = s; boxes[s] = b;
    const l = h("label", null); l.append(b, " " + s); l.style.display = "inline"; scopes.append(l, " ");
  }
  const grant = h("button", "wb-grant", "record consent");
  const withdraw = h("button", "wb-withdraw", "withdraw the ticked scopes");
  const status = h("div", "wb-status");
  const error = h("div", "wb-error");
  const history = h("table", "wb-history");
  root.append(field("patient id (MRN)", patient), field("name (new patients)", name),
              field("birth date (new patients)", birth), scopes, field("expires", expires),
              field("identifiable use allowed", identifiable), field("scanned form", file),
              grant, withdraw, status, error, history);
  el.append(root);
  const chosen = () => Object.values(boxes).filter((b) => b.checked).map((b) => b.value);
  const clear = () => { patient.value = ""; name.value = ""; birth.value = ""; file.value = ""; };

  grant.onclick = async () => {
    const args = { patient: patient.value, scopes: chosen(), expires: expires.value || null,
                   identifiable: identifiable.checked, name: name.value || null, birth_date: birth.value || null };
    const buffers = file.files && file.files[0] ? [await file.files[0].arrayBuffer()] : [];
    model.send({ action: "grant", args }, undefined, buffers);
    clear();
  };
  withdraw.onclick = () => {
    model.send({ action: "withdraw", args: { patient: patient.value, scopes: chosen() } });
    clear();
  };

  function draw() {
    showMessages(model, status, error);
    grant.disabled = withdraw.disabled = !model.get("can_record");
    const rows = model.get("history");
    history.replaceChildren(...(rows.length ? [Object.keys(rows[0])] : []).concat(rows.map(Object.values)).map((cells, n) => {
      const tr = h("tr");
      for (const c of cells) tr.append(h(n === 0 ? "th" : "td", null, c === null ? "" : String(c)));
      return tr;
    }));
  }
  for (const n of ["status", "error", "history", "can_record"]) model.on(`change:${n}`, draw);
  draw();
}

export default { render };
