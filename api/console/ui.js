// Small DOM helpers shared by the pages. Text always goes in as text nodes
// (never as HTML), so data from the server cannot inject markup.

/** h("p", {class: "x", onclick: fn}, "text", child) builds an element. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** The polite live region under the header: "Saved", "Deleted"... */
export function announce(message) {
  const status = document.getElementById("status");
  status.textContent = "";
  // A fresh text node, so screen readers repeat an identical message.
  setTimeout(() => {
    status.textContent = message;
  }, 30);
}

/** A labelled input (or textarea/select) with a slot for its error. */
export function field(label, name, options = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  const errorId = `${id}-error`;
  const common = { id, name, "aria-describedby": errorId };
  let control;
  if (options.textarea) {
    control = h("textarea", { ...common, rows: 4 }, options.value || "");
  } else if (options.choices) {
    control = h("select", common, options.choices.map(([value, text]) =>
      h("option", { value, selected: value === options.value }, text)));
  } else {
    control = h("input", {
      ...common,
      type: options.type || "text",
      autocomplete: options.autocomplete || "off",
      required: options.required,
      minlength: options.minlength,
      accept: options.accept,
    });
    if (options.value !== undefined && options.value !== null) control.value = options.value;
  }
  return h("div", { class: "field" },
    h("label", { for: id }, label, options.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    control,
    h("p", { class: "field-error", id: errorId }));
}

/** A form-level error box (role=alert), placed first in a form. */
export function errorBox() {
  return h("div", { class: "form-error", role: "alert", hidden: true });
}

/** Clears the error messages a previous submit left on a form. */
export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((c) => c.removeAttribute("aria-invalid"));
  const box = form.querySelector(".form-error");
  if (box) {
    box.hidden = true;
    box.replaceChildren();
  }
}

/**
 * Shows a Problem on a form: `detail` in the error box, each `errors[]`
 * entry next to its field (or in the box when no field has that name).
 * `extra` nodes (a Reload button) go in the box too. Focus moves to the
 * first invalid field, or to the box.
 */
export function showProblem(form, problem, ...extra) {
  clearErrors(form);
  const box = form.querySelector(".form-error");
  const unplaced = [];
  let first = null;
  for (const error of problem.errors || []) {
    const control = form.elements.namedItem(error.field);
    if (control && control.id) {
      control.setAttribute("aria-invalid", "true");
      document.getElementById(`${control.id}-error`).textContent = error.message;
      first = first || control;
    } else {
      unplaced.push(`${error.field}: ${error.message}`);
    }
  }
  if (box) {
    box.append(h("p", {}, problem.detail || problem.message), ...extra);
    if (unplaced.length) box.append(h("ul", {}, unplaced.map((text) => h("li", {}, text))));
    box.hidden = false;
  }
  if (first) first.focus();
  else if (box) {
    box.setAttribute("tabindex", "-1");
    box.focus();
  }
}

/** Disables a button while `work` runs and marks it busy. */
export async function busy(button, work) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = `${label}…`;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

/** A field's value, `null` for blank (the API clears optional fields on null). */
export function valueOf(form, name) {
  const control = form.elements.namedItem(name);
  const value = control ? control.value.trim() : "";
  return value === "" ? null : value;
}

export function when(timestamp) {
  return timestamp ? new Date(timestamp).toLocaleString() : "";
}

/** A page heading that takes focus on arrival, for keyboard and screen reader users. */
export function heading(text) {
  return h("h1", { tabindex: "-1" }, text);
}

/** Shows a page's load failure in place of its content. */
export function loadFailed(container, problem, retry) {
  container.replaceChildren(h("div", { class: "form-error", role: "alert" },
    h("p", {}, problem.detail || problem.message),
    retry ? h("button", { type: "button", onclick: retry }, "Try again") : null));
}
