// Small DOM and formatting helpers shared by the pages.

/** An element with attributes (on* are listeners) and children (strings become text). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** "1.2 s", "3 m 04 s", "2 h 05 m". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  if (seconds < 0) seconds = 0;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} m ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} m`;
}

/** Local time of a Unix timestamp, with the date when it is not today. */
export function when(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  const time = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === new Date().toDateString()
    ? time
    : `${d.toLocaleDateString()} ${time}`;
}

/** How long ago, roughly. */
export function ago(t) {
  if (!t) return "";
  return `${duration(Date.now() / 1000 - t)} ago`;
}

/** "2G", "512M" for a byte count. */
export function bytes(n) {
  if (!n) return "0";
  const units = ["", "K", "M", "G", "T"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1 && n % 1024 === 0) { n /= 1024; i++; }
  if (n >= 1024 * 10 && i < units.length - 1) { n /= 1024; i++; return `${n.toFixed(1)}${units[i]}`; }
  return `${n}${units[i]}`;
}

/** A coloured state badge. */
export function badge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

/** k=v pairs as small chips. */
export function chips(map) {
  const entries = Object.entries(map || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "chips" }, entries.map(([k, v]) => h("code", { class: "chip" }, `${k}=${v}`)));
}

/** A table from column titles and rows of cells; `empty` when there are no rows. */
export function table(label, columns, rows, empty = "nothing") {
  const body = rows.length
    ? rows.map((cells) => h("tr", null, cells.map((c) => h("td", null, c))))
    : [h("tr", null, h("td", { colspan: columns.length, class: "muted" }, empty))];
  return h("table", { "aria-label": label },
    h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", null, body));
}

/** A link to a job page. */
export function jobLink(id, text) {
  return h("a", { href: `#/jobs/${id}` }, text ?? `#${id}`);
}
