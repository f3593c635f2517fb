// Small inline-SVG charts: stacked bars per time bucket, and a line with its peak.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 160;
const PAD = { left: 44, right: 8, top: 10, bottom: 22 };

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

function frame(label, data, max, unit) {
  const svg = svgEl("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label, class: "chart" });
  svg.append(svgEl("title", {}, label));
  const bottom = HEIGHT - PAD.bottom;
  svg.append(svgEl("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: bottom, y2: bottom, class: "axis" }));
  svg.append(svgEl("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: PAD.top, y2: PAD.top, class: "grid" }));
  svg.append(svgEl("text", { x: PAD.left - 4, y: PAD.top + 4, class: "tick", "text-anchor": "end" }, `${fmt(max)}${unit}`));
  svg.append(svgEl("text", { x: PAD.left - 4, y: bottom, class: "tick", "text-anchor": "end" }, "0"));
  if (data.length) {
    svg.append(svgEl("text", { x: PAD.left, y: HEIGHT - 6, class: "tick" }, clock(data[0].at)));
    svg.append(svgEl("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, class: "tick", "text-anchor": "end" }, "now"));
  }
  return svg;
}

function fmt(n) {
  return n >= 100 ? Math.round(n).toString() : n >= 10 ? n.toFixed(0) : n.toFixed(n % 1 ? 1 : 0);
}

/** Stacked bars: `series` is [{key, class, label}], each bucket has a count per key. */
export function barChart(label, buckets, series, stepSeconds) {
  const totals = buckets.map((b) => series.reduce((sum, s) => sum + (b[s.key] || 0), 0));
  const max = Math.max(1, ...totals);
  const svg = frame(label, buckets, max, "");
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const barW = plotW / Math.max(1, buckets.length);
  buckets.forEach((bucket, i) => {
    let y = HEIGHT - PAD.bottom;
    for (const s of series) {
      const value = bucket[s.key] || 0;
      if (!value) continue;
      const height = (value / max) * plotH;
      y -= height;
      const rect = svgEl("rect", {
        x: PAD.left + i * barW + 0.5, y, width: Math.max(1, barW - 1), height, class: s.class,
      });
      rect.append(svgEl("title", {}, `${clock(bucket.at)} (+${stepSeconds / 60} min): ${value} ${s.label}`));
      svg.append(rect);
    }
  });
  return svg;
}

/** A line of `key` over the buckets (gaps where there is no value), in seconds. */
export function lineChart(label, buckets, key, peakKey) {
  const values = buckets.map((b) => b[peakKey] ?? b[key]).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...values);
  const svg = frame(label, buckets, max, " s");
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, buckets.length);
  const point = (i, v) => `${(PAD.left + (i + 0.5) * step).toFixed(1)},${(HEIGHT - PAD.bottom - (v / max) * plotH).toFixed(1)}`;
  for (const [k, cls] of [[peakKey, "line-peak"], [key, "line-main"]]) {
    let path = "";
    let pen = "M";
    buckets.forEach((b, i) => {
      const v = b[k];
      if (v === null || v === undefined) { pen = "M"; return; }
      path += `${pen}${point(i, v)} `;
      pen = "L";
    });
    if (path) svg.append(svgEl("path", { d: path, class: cls }));
  }
  return svg;
}
