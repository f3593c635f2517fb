// ANSI escape sequences to styled spans: SGR colours and weights are kept, the rest dropped.

// SGR sequences are captured; other CSI sequences and OSC strings are removed.
const ESCAPES = /\x1b\[([0-9;:]*)m|\x1b\[[0-9;?:]*[A-Za-z@`]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>]/g;

/** The style state carried from line to line. */
export function newState() {
  return { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
}

const PALETTE = [
  "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
  "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
];

function color256(n) {
  if (n < 16) return { index: n };
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    const i = n - 16;
    return { css: `rgb(${v[Math.floor(i / 36)]},${v[Math.floor(i / 6) % 6]},${v[i % 6]})` };
  }
  const g = 8 + (n - 232) * 10;
  return { css: `rgb(${g},${g},${g})` };
}

function extended(codes, i) {
  // 38;5;n or 38;2;r;g;b: returns [colour, codes consumed after the 38/48]
  if (codes[i + 1] === 5 && codes.length > i + 2) return [color256(codes[i + 2] & 255), 2];
  if (codes[i + 1] === 2 && codes.length > i + 4) {
    return [{ css: `rgb(${codes[i + 2] & 255},${codes[i + 3] & 255},${codes[i + 4] & 255})` }, 4];
  }
  return [null, 0];
}

/** Apply one SGR parameter string to the state. */
export function applySgr(state, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => Number(p) || 0);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(state, newState());
    else if (c === 1) state.bold = true;
    else if (c === 2) state.dim = true;
    else if (c === 3) state.italic = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) { state.bold = false; state.dim = false; }
    else if (c === 23) state.italic = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = { index: c - 30 };
    else if (c >= 90 && c <= 97) state.fg = { index: c - 90 + 8 };
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = { index: c - 40 };
    else if (c >= 100 && c <= 107) state.bg = { index: c - 100 + 8 };
    else if (c === 49) state.bg = null;
    else if (c === 38 || c === 48) {
      const [colour, used] = extended(codes, i);
      if (c === 38) state.fg = colour; else state.bg = colour;
      i += used;
    }
  }
}

function styled(text, state) {
  const plain = !state.fg && !state.bg && !state.bold && !state.dim && !state.italic && !state.underline;
  if (plain) return document.createTextNode(text);
  const span = document.createElement("span");
  const classes = [];
  if (state.bold) classes.push("ansi-bold");
  if (state.dim) classes.push("ansi-dim");
  if (state.italic) classes.push("ansi-italic");
  if (state.underline) classes.push("ansi-underline");
  if (state.fg) {
    if (state.fg.index !== undefined) classes.push(`ansi-fg${state.fg.index}`);
    else span.style.color = state.fg.css;
  }
  if (state.bg) {
    if (state.bg.index !== undefined) classes.push(`ansi-bg${state.bg.index}`);
    else span.style.backgroundColor = state.bg.css;
  }
  span.className = classes.join(" ");
  span.textContent = text;
  return span;
}

/** Drop what a carriage return overwrote: keep the text after the last bare \r. */
function lastOverwrite(text) {
  const cr = text.lastIndexOf("\r", text.length - 2);
  return cr >= 0 ? text.slice(cr + 1) : text.replace(/\r$/, "");
}

/** Append `text` (one line, no newline) to `parent` as text and spans; updates `state`. */
export function render(parent, text, state) {
  text = lastOverwrite(text);
  let last = 0;
  ESCAPES.lastIndex = 0;
  for (let m = ESCAPES.exec(text); m; m = ESCAPES.exec(text)) {
    if (m.index > last) parent.append(styled(text.slice(last, m.index), state));
    if (m[1] !== undefined) applySgr(state, m[1]);
    last = ESCAPES.lastIndex;
  }
  if (last < text.length) parent.append(styled(text.slice(last), state));
}

/** Update `state` as rendering `text` would, without making nodes (for skipped lines). */
export function advance(text, state) {
  ESCAPES.lastIndex = 0;
  for (let m = ESCAPES.exec(text); m; m = ESCAPES.exec(text)) {
    if (m[1] !== undefined) applySgr(state, m[1]);
  }
}

