// Charts as inline SVG: a stacked bar chart over time and a horizontal bar list. No library;
// colours come from CSS classes (s0..s9), so the strict CSP needs no inline style.
import { h, s } from "./dom.js";

const W = 760;
const H = 240;
const PAD = { left: 56, right: 12, top: 12, bottom: 42 };

function niceMax(value) {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * exp) return m * exp;
  return 10 * exp;
}

function shortBucket(label) {
  // 2030-01-31T13:00:00Z -> 31 13:00 ; 2030-01-31 -> 01-31
  if (label.includes("T")) return `${label.slice(8, 10)} ${label.slice(11, 16)}`;
  return label.slice(5);
}

/**
 * A stacked bar chart of series.data (points {bucket, group, <metric>}) per series.buckets,
 * one colour per group. Returns a <figure> with the SVG, a legend and the numbers as a table
 * (inside <details>) for screen readers and exact values.
 */
export function stackedBars(series, metric, { title, format = String } = {}) {
  const groups = series.groups;
  const index = new Map(groups.map((g, i) => [g, i]));
  const values = new Map(); // bucket -> array per group
  for (const b of series.buckets) values.set(b, new Array(groups.length).fill(0));
  for (const p of series.data) {
    const row = values.get(p.bucket);
    if (row && index.has(p.group)) row[index.get(p.group)] += p[metric] || 0;
  }
  const totals = series.buckets.map((b) => values.get(b).reduce((a, v) => a + v, 0));
  const top = niceMax(Math.max(0, ...totals));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const n = Math.max(1, series.buckets.length);
  const step = innerW / n;
  const barW = Math.max(1, step * 0.75);
  const y = (v) => PAD.top + innerH - (v / top) * innerH;

  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": `${title || metric}: ${groups.length} groups over ${n} ${series.bucket}s, highest ${format(Math.max(0, ...totals))}`,
  });
  for (let i = 0; i <= 4; i += 1) {
    const v = (top / 4) * i;
    svg.append(
      s("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
      s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)),
    );
  }
  const every = Math.ceil(n / 8);
  series.buckets.forEach((bucket, i) => {
    const x = PAD.left + i * step + (step - barW) / 2;
    let base = 0;
    values.get(bucket).forEach((v, g) => {
      if (!v) return;
      const rect = s("rect", {
        class: `s${g % 10}`,
        x: x.toFixed(2),
        y: y(base + v).toFixed(2),
        width: barW.toFixed(2),
        height: Math.max(0.5, y(base) - y(base + v)).toFixed(2),
      });
      rect.append(s("title", {}, `${bucket} · ${series.labels[groups[g]] || groups[g]}: ${format(v)}`));
      svg.append(rect);
      base += v;
    });
    if (i % every === 0) {
      svg.append(s("text", { x: x + barW / 2, y: H - PAD.bottom + 16, "text-anchor": "middle" }, shortBucket(bucket)));
    }
  });
  svg.append(s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0) }));

  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    groups.map((g, i) => h("li", {}, h("span", { class: `swatch s${i % 10}`, "aria-hidden": "true" }), series.labels[g] || g)),
  );
  const rows = series.buckets
    .map((b, i) => [b, totals[i], values.get(b)])
    .filter(([, total]) => total > 0);
  const data = h(
    "details",
    {},
    h("summary", {}, "Show the numbers"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, series.bucket), groups.map((g) => h("th", { scope: "col", class: "num" }, series.labels[g] || g)))),
        h("tbody", {}, rows.map(([b, , vals]) => h("tr", {}, h("td", {}, b), vals.map((v) => h("td", { class: "num" }, format(v)))))),
      ),
    ),
  );
  return h("figure", { class: "panel" }, title ? h("figcaption", {}, h("strong", {}, title)) : null, svg, legend, data);
}

/** Horizontal bars: items [{label, value}] -> an SVG list (e.g. time per flow step). */
export function hbars(items, { title, format = String } = {}) {
  const rowH = 26;
  const labelW = 150;
  const width = 560;
  const max = Math.max(0, ...items.map((i) => i.value));
  const scale = max > 0 ? (width - labelW - 80) / max : 0;
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${Math.max(rowH, items.length * rowH)}`,
    role: "img",
    "aria-label": `${title || "bars"}: ${items.map((i) => `${i.label} ${format(i.value)}`).join(", ")}`,
  });
  items.forEach((item, k) => {
    const yy = k * rowH;
    svg.append(
      s("text", { x: 0, y: yy + 17 }, item.label.length > 22 ? `${item.label.slice(0, 21)}…` : item.label),
      s("rect", { class: "bar-track", x: labelW, y: yy + 5, width: width - labelW - 80, height: 16 }),
      s("rect", { class: `s${k % 10}`, x: labelW, y: yy + 5, width: Math.max(0, item.value * scale).toFixed(2), height: 16 }),
      s("text", { x: width - 74, y: yy + 17 }, format(item.value)),
    );
  });
  return h("figure", { class: "panel" }, title ? h("figcaption", {}, h("strong", {}, title)) : null, svg);
}
