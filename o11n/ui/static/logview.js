// A live log: text arrives in chunks, is rendered once per animation frame, and only the
// last `maxLines` lines are kept in the page, so megabytes of output do not freeze it.

import { advance, newState, render } from "./ansi.js";

export class LogView {
  constructor(container, { maxLines = 5000 } = {}) {
    this.container = container;
    this.maxLines = maxLines;
    this.notice = document.createElement("div");
    this.notice.className = "log-notice";
    this.notice.hidden = true;
    this.lines = document.createElement("div");
    this.lines.className = "log-lines";
    container.replaceChildren(this.notice, this.lines);
    this.pending = [];
    this.scheduled = false;
    this.open = null; // the last line, until a newline closes it
    this.openStream = null;
    this.state = newState();
    this.dropped = 0;
    this.count = 0;
    this.bytes = 0;
    this.follow = true;
    this.onflush = null;
  }

  /** Queue a chunk of output of one stream. */
  append(text, stream = "stdout") {
    this.bytes += text.length;
    this.pending.push({ text, stream });
    this.schedule();
  }

  /** Queue a line of our own (an attempt separator), on a line of its own. */
  marker(text) {
    this.pending.push({ marker: text });
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => this.flush());
  }

  /** Render everything queued: one DOM insertion, then trim to the line cap. */
  flush() {
    this.scheduled = false;
    const items = this.pending;
    this.pending = [];
    let skip = Math.max(0, this.newlines(items) - this.maxLines);
    const fragment = document.createDocumentFragment();
    for (const item of items) {
      if (item.marker !== undefined) {
        this.open = null;
        if (skip > 0) { skip--; this.dropped++; continue; }
        fragment.append(this.newLine("marker", item.marker));
        this.open = null;
        continue;
      }
      skip = this.addText(fragment, item, skip);
    }
    this.lines.append(fragment);
    this.trim();
    if (this.follow) this.container.scrollTop = this.container.scrollHeight;
    if (this.onflush) this.onflush();
  }

  newlines(items) {
    let n = 0;
    for (const item of items) {
      if (item.marker !== undefined) { n++; continue; }
      for (let i = item.text.indexOf("\n"); i >= 0; i = item.text.indexOf("\n", i + 1)) n++;
    }
    return n;
  }

  addText(fragment, { text, stream }, skip) {
    const parts = text.split("\n");
    for (let i = 0; i < parts.length; i++) {
      if (i > 0) this.open = null;
      const part = parts[i];
      const closed = i < parts.length - 1;
      if (part === "" && !closed) continue;
      if (skip > 0 && closed && this.open === null) {
        advance(part, this.state);
        skip--;
        this.dropped++;
        continue;
      }
      if (this.open === null || this.openStream !== stream) {
        this.open = this.newLine(stream === "stderr" ? "stderr" : "", null);
        this.openStream = stream;
        fragment.append(this.open);
      }
      render(this.open, part, this.state);
    }
    return skip;
  }

  newLine(kind, text) {
    const line = document.createElement("div");
    line.className = kind ? `log-line ${kind}` : "log-line";
    if (text !== null) line.textContent = text;
    this.count++;
    return line;
  }

  trim() {
    const excess = this.count - this.maxLines;
    if (excess > 0) {
      const range = document.createRange();
      range.setStartBefore(this.lines.firstChild);
      range.setEndAfter(this.lines.children[excess - 1]);
      range.deleteContents();
      this.count -= excess;
      this.dropped += excess;
    }
    if (this.dropped) {
      this.notice.hidden = false;
      this.notice.textContent =
        `${this.dropped.toLocaleString()} earlier lines are not shown (the page keeps the last ${this.maxLines.toLocaleString()}; "Download the log" has all of it)`;
    }
  }
}
