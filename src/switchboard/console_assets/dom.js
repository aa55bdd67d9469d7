// Building the page from data without ever parsing data as HTML: every text goes through
// textContent or a text node, never innerHTML.

const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "open", "type"]);

/** h("a", {href: "#/x", class: "link"}, "text", child, [more]) → an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace everything inside `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const SYMBOLS = {
  delivered: "✓", failed: "✕", ignored: "–", pending: "…", held: "‖", duplicate: "=",
  live: "●", idle: "○", paused: "‖", ended: "■", waiting: "⧗",
  connected: "✓", disabled: "–", failing: "✕", retrying: "↻", ok: "✓", error: "✕",
  matched: "✓", "no match": "✕", active: "✓", revoked: "–", "not delivered": "✕",
};

/** A status as colour AND a word (and a symbol), never colour alone. */
export function badge(word, kind = "status") {
  const text = word || "unknown";
  const slug = text.replace(/[^a-z0-9]+/gi, "-");
  return h("span", { class: `badge ${kind}-${slug}`, "data-status": text },
    h("span", { class: "sym", "aria-hidden": "true", text: SYMBOLS[text] || "•" }), text);
}

/** `<time>` in the reader's local time, the exact instant in the title. */
export function when(iso, { short = false } = {}) {
  if (!iso) return h("span", { class: "muted", text: "—" });
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  const text = short && today ? date.toLocaleTimeString() : date.toLocaleString();
  return h("time", { datetime: iso, title: iso, text });
}

export function ms(value) {
  if (value === null || value === undefined) return "—";
  return value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`;
}

/** A definition list from [label, value] pairs, skipping empty values. */
export function fields(pairs) {
  const dl = h("dl", { class: "fields" });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(h("dt", { text: label }), h("dd", {}, value));
  }
  return dl;
}

/** A table that scrolls sideways on a laptop and turns into cards on a phone. */
export function table(headers, rows, { caption, empty = "Nothing to show." } = {}) {
  const body = h("tbody", {}, rows);
  const tbl = h("table", { class: "grid" },
    caption ? h("caption", { class: "sr-only", text: caption }) : null,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col", text: name })))),
    body);
  const wrap = h("div", { class: "table-wrap", tabindex: "0", role: "region",
    "aria-label": caption || headers.join(", ") }, tbl);
  const none = h("p", { class: "muted empty", text: empty, hidden: rows.length > 0 });
  return { wrap: h("div", {}, wrap, none), body, none };
}

/** A table cell labelled for the narrow, card-like layout. */
export function cell(label, ...children) {
  return h("td", { "data-label": label }, h("div", { class: "cell" }, children));
}

export function select(name, label, options, value) {
  const id = `f-${name}`;
  const all = value && !options.includes(value) ? [...options, value] : options;
  const el = h("select", { id, name }, h("option", { value: "", text: "any" }),
    all.map((opt) => h("option", { value: opt, text: opt })));
  el.value = value || "";
  return h("label", { for: id, class: "field" }, h("span", { text: label }), el);
}

export function input(name, label, value = "", attrs = {}) {
  const id = `f-${name}`;
  return h("label", { for: id, class: "field" }, h("span", { text: label }),
    h("input", { id, name, value: value || "", ...attrs }));
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}
