// Small DOM helpers: elements are built with createElement and textContent, never from HTML
// strings, so nothing a model, a key name or a log row contains can become markup.

const SVG = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.setAttribute("class", value);
    } else if (name === "value" && "value" in el) {
      el.value = value;
    } else if (name === "checked" || name === "selected" || name === "disabled") {
      el[name] = Boolean(value);
      if (name === "disabled") el.toggleAttribute("disabled", Boolean(value));
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("button", {class: "primary", onclick}, "Save"). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  add(el, children);
  return el;
}

/** An SVG element (same call shape as h). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  apply(el, attrs);
  add(el, children);
  return el;
}

let uid = 0;
/** A unique id for label/aria wiring. */
export function id(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: field("Name", input) wires <label for>. */
export function field(label, control, hint) {
  if (!control.id) control.id = id();
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = id("hint");
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { id: hintId, class: "muted" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A <select> from [value, label] pairs. */
export function select(options, value, attrs = {}) {
  return h(
    "select",
    attrs,
    options.map(([v, label]) => h("option", { value: v, selected: String(v) === String(value) }, label)),
  );
}

/** A table in a scrolling wrapper; columns: [{label, cell(row) -> node|text, num}] */
export function table(columns, rows, { caption, rowAttrs } = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) =>
    h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", { class: c.num ? "num" : c.wrap ? "wrap" : null }, c.cell(row)))),
  );
  const t = h("table", {}, caption ? h("caption", { class: "hidden" }, caption) : null, h("thead", {}, head), h("tbody", {}, body));
  return h("div", { class: "table-wrap", role: "region", "aria-label": caption || "table", tabindex: "0" }, t);
}

export function badge(text, kind = "info") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// -- formatting ------------------------------------------------------------------------------

const int = new Intl.NumberFormat("en-US");
export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : int.format(n)),
  usd(n) {
    if (n === null || n === undefined) return "–";
    if (n === 0) return "$0";
    if (Math.abs(n) < 0.01) return `$${n.toPrecision(2)}`;
    return `$${n.toFixed(2)}`;
  },
  ms: (n) => (n === null || n === undefined ? "–" : n < 1000 ? `${n.toFixed(0)} ms` : `${(n / 1000).toFixed(2)} s`),
  pct: (n) => (n === null || n === undefined ? "–" : `${(n * 100).toFixed(n < 0.1 ? 1 : 0)} %`),
  time(value) {
    if (value === null || value === undefined) return "–";
    const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  },
  json: (v) => JSON.stringify(v, null, 2),
};
