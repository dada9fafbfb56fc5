// Small DOM helpers: building elements, forms whose errors sit next to the control that caused
// them, a confirmation dialog and a copy button. No inline styles or handlers (the CSP forbids
// them).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name in el && typeof value !== "string") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A labelled control with a place for its error. `form` prefixes the ids; `name` is the API
// field the control sends, so API field errors find it.
export function field(form, { name, label, type = "text", value, options, hint, attrs = {} }) {
  const id = `${form}-${name}`;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ");
  let control;
  if (type === "select") {
    control = h(
      "select",
      { id, name, "aria-describedby": describedBy, ...attrs },
      options.map(([optionValue, text]) =>
        h("option", { value: optionValue, selected: String(optionValue) === String(value ?? "") }, text),
      ),
    );
  } else if (type === "textarea") {
    control = h("textarea", { id, name, "aria-describedby": describedBy, spellcheck: "false", ...attrs });
    control.value = value ?? "";
  } else if (type === "checkbox") {
    control = h("input", { id, name, type, "aria-describedby": describedBy, checked: !!value, ...attrs });
    return h(
      "div",
      { class: "field check" },
      control,
      h("label", { for: id }, label),
      hint && h("p", { class: "hint", id: hintId }, hint),
      h("p", { class: "field-error", id: errorId, hidden: true }),
    );
  } else {
    control = h("input", { id, name, type, "aria-describedby": describedBy, ...attrs });
    if (value !== undefined && value !== null) control.value = value;
  }
  return h(
    "div",
    { class: `field field-${type}` },
    h("label", { for: id }, label),
    control,
    hint && h("p", { class: "hint", id: hintId }, hint),
    h("p", { class: "field-error", id: errorId, hidden: true }),
  );
}

// A form whose submit runs `onSubmit(values, form)`; errors it throws (ApiError or Error) are
// shown next to the fields they name, or next to the submit button.
export function form(id, { fields, submit, onSubmit, extra = [], inline = false, grid = false }) {
  const button = h("button", { type: "submit", id: `${id}-submit` }, submit);
  const formError = h("p", { class: "form-error", id: `${id}-error`, role: "alert", hidden: true });
  const el = h(
    "form",
    { id, class: inline ? "form inline" : grid ? "form grid" : "form", novalidate: true },
    fields,
    extra,
    h("div", { class: "actions" }, button, formError),
  );
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(el);
    button.disabled = true;
    try {
      await onSubmit(values(el), el);
    } catch (err) {
      showErrors(el, err);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

export function values(formEl) {
  const out = {};
  for (const control of formEl.elements) {
    if (!control.name || control.disabled) continue;
    if (control.type === "checkbox") out[control.name] = control.checked;
    else out[control.name] = control.value;
  }
  return out;
}

export function clearErrors(formEl) {
  for (const el of formEl.querySelectorAll(".field-error, .form-error")) {
    el.hidden = true;
    el.textContent = "";
  }
  for (const el of formEl.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

// Shows `err` in `formEl`: field messages under their control, the rest under the submit button.
export function showErrors(formEl, err) {
  const fields = err && err.fields ? err.fields : {};
  const general = [];
  let first = null;
  for (const [name, messages] of Object.entries(fields)) {
    const control = formEl.elements.namedItem(name);
    const target = control && formEl.querySelector(`#${CSS.escape(control.id)}-error`);
    if (target) {
      setFieldError(control, messages.join(" "));
      first ??= control;
    } else {
      general.push(name === "non_field_errors" ? messages.join(" ") : `${name}: ${messages.join(" ")}`);
    }
  }
  if (err && err.detail) general.push(err.detail);
  if (!err || (!err.detail && Object.keys(fields).length === 0)) general.push(err ? err.message : "Failed.");
  if (general.length) {
    const formError = formEl.querySelector(".form-error");
    formError.textContent = general.join(" ");
    formError.hidden = false;
  }
  if (first) first.focus();
}

export function setFieldError(control, message) {
  const target = document.getElementById(`${control.id}-error`);
  if (!message) {
    control.removeAttribute("aria-invalid");
    target.hidden = true;
    target.textContent = "";
    return;
  }
  control.setAttribute("aria-invalid", "true");
  target.textContent = message;
  target.hidden = false;
}

// A modal confirmation; resolves true when confirmed. Escape or Cancel resolve false.
export function confirmDialog({ title, message, confirm = "Delete" }) {
  return new Promise((resolve) => {
    const cancelButton = h("button", { type: "button", class: "secondary", value: "cancel" }, "Cancel");
    const confirmButton = h("button", { type: "button", class: "danger", id: "confirm-ok" }, confirm);
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, message),
      h("div", { class: "actions" }, cancelButton, confirmButton),
    );
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancelButton.addEventListener("click", () => done(false));
    confirmButton.addEventListener("click", () => done(true));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancelButton.focus();
  });
}

// Copies `text`; falls back to selecting it where the clipboard API is unavailable (plain http
// on another host is not a secure context).
export function copyButton(text, fallbackInput) {
  const button = h("button", { type: "button", class: "secondary small" }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      if (fallbackInput) {
        fallbackInput.focus();
        fallbackInput.select();
      }
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => (button.textContent = "Copy"), 2000);
  });
  return button;
}

// A message in the page's live region (read out by screen readers).
export function announce(text) {
  const region = document.getElementById("status");
  region.textContent = text;
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function loading() {
  return h("p", { class: "muted" }, "Loading…");
}

export function failure(err) {
  return h("p", { class: "form-error", role: "alert" }, err.message || String(err));
}

// A table that scrolls sideways on narrow screens instead of breaking the layout.
export function table(headers, rows, { caption, id } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id },
      caption && h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {}, rows),
    ),
  );
}
