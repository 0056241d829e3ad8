// Overview: today's and this month's totals, and traffic over time split by model, provider
// or key (GET /admin/stats/overview, /admin/stats/series).
import { api } from "../api.js";
import { stackedBars } from "../chart.js";
import { clear, field, fmt, h, select } from "../dom.js";

const METRICS = [
  ["requests", "Requests", fmt.int],
  ["errors", "Errors", fmt.int],
  ["tokens", "Tokens", fmt.int],
  ["cost_usd", "Spend (USD)", fmt.usd],
  ["avg_latency_ms", "Average latency", fmt.ms],
];

function stat(id, label, value) {
  return h("div", { class: "stat", "data-stat": id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function figures(prefix, title, f) {
  return h(
    "section",
    { "aria-labelledby": `${prefix}-title` },
    h("h2", { id: `${prefix}-title` }, title),
    h(
      "div",
      { class: "grid" },
      stat(`${prefix}-requests`, "Requests", fmt.int(f.requests)),
      stat(`${prefix}-error-rate`, "Error rate", f.requests ? fmt.pct(f.error_rate) : "–"),
      stat(`${prefix}-p50`, "p50 latency", fmt.ms(f.p50_latency_ms)),
      stat(`${prefix}-p95`, "p95 latency", fmt.ms(f.p95_latency_ms)),
      stat(`${prefix}-tokens`, "Tokens in / out", `${fmt.int(f.input_tokens)} / ${fmt.int(f.output_tokens)}`),
      stat(`${prefix}-spend`, "Spend", fmt.usd(f.cost_usd)),
    ),
  );
}

export async function render(root) {
  const totals = h("div", { "aria-live": "polite" });
  const bucket = select([["hour", "Hourly (last 24 h)"], ["day", "Daily (last 30 days)"]], "hour", { name: "bucket" });
  const by = select([["model", "Model"], ["provider", "Provider"], ["key", "Key"]], "model", { name: "by" });
  const metric = select(METRICS.map(([v, l]) => [v, l]), "requests", { name: "metric" });
  const refresh = h("button", { type: "button" }, "Refresh");
  const chart = h("div");
  root.append(
    h("h1", {}, "Overview"),
    totals,
    h("h2", {}, "Traffic over time"),
    h("form", { class: "inline", "aria-label": "Chart options" }, field("Period", bucket), field("Split by", by), field("Show", metric), refresh),
    chart,
  );

  async function load() {
    const [o, series] = await Promise.all([
      api("/admin/stats/overview"),
      api("/admin/stats/series", { query: { bucket: bucket.value, by: by.value } }),
    ]);
    clear(totals).append(figures("today", "Today (UTC)", o.today), figures("month", "This month (UTC)", o.month));
    const [, label, format] = METRICS.find(([v]) => v === metric.value);
    clear(chart).append(
      series.groups.length
        ? stackedBars(series, metric.value, { title: `${label} by ${by.value}`, format })
        : h("p", { class: "panel muted" }, "No requests in this period yet."),
    );
  }
  for (const control of [bucket, by, metric]) control.addEventListener("change", load);
  refresh.addEventListener("click", load);
  await load();
  const timer = setInterval(() => load().catch(() => {}), 15000);
  return () => clearInterval(timer);
}
