// Models & providers: each deployment's health (circuit, cooldown), pacing utilisation,
// prices and deprecation (GET /admin/models).
import { api } from "../api.js";
import { badge, clear, fmt, h, table } from "../dom.js";

function health(d) {
  const hl = d.health;
  if (hl.state === "open") return badge(`cooling down ${Math.ceil(hl.cooldown_seconds)} s`, "bad");
  if (hl.state === "half-open") return badge("probing", "warn");
  if (hl.rate_limited_seconds > 0) return badge(`provider pause ${Math.ceil(hl.rate_limited_seconds)} s`, "warn");
  return badge("healthy", "ok");
}

function utilisation(label, used, limit, share) {
  if (!limit) return h("span", { class: "muted" }, `${fmt.int(used)} ${label}/min, not paced`);
  const meter = h("meter", { min: "0", max: "1", low: "0.7", high: "0.9", optimum: "0.2", value: String(Math.min(1, share || 0)), "aria-label": `${label} per minute used: ${fmt.pct(share)}` });
  return h("span", {}, meter, ` ${fmt.int(used)} / ${fmt.int(limit)} ${label}`);
}

function deprecation(d) {
  const dep = d.deprecation;
  if (!dep) return "–";
  const text = `${dep.retired ? "retired" : "deprecated"} ${dep.date}${dep.replacement ? ` → ${dep.replacement}` : ""}`;
  return badge(text, dep.retired ? "bad" : "warn");
}

export async function render(root) {
  const body = h("div");
  const note = h("p", { class: "muted" });
  root.append(h("h1", {}, "Models & providers"), note, body);

  async function load() {
    const data = await api("/admin/models");
    note.textContent = `Prices in USD per million tokens (catalog of ${data.catalog_as_of || "?"}); utilisation counts the last minute of every replica's traffic.`;
    const providers = new Map();
    for (const d of data.data) {
      if (!providers.has(d.provider)) providers.set(d.provider, []);
      providers.get(d.provider).push(d);
    }
    clear(body);
    for (const [provider, deployments] of providers) {
      body.append(
        h("h2", {}, `${provider} `, h("span", { class: "muted" }, `(${deployments[0].provider_type})`)),
        table(
          [
            { label: "Model name", cell: (d) => h("strong", {}, d.name) },
            { label: "Upstream model", cell: (d) => h("code", {}, d.model) },
            { label: "Health", cell: health },
            { label: "Failures", cell: (d) => fmt.int(d.health.consecutive_failures), num: true },
            { label: "In flight", cell: (d) => `${d.health.inflight}${d.health.max_concurrency ? ` / ${d.health.max_concurrency}` : ""}`, num: true },
            { label: "Requests/min", cell: (d) => utilisation("req", d.pacing.requests_last_minute, d.pacing.rpm_limit, d.pacing.rpm_utilisation) },
            { label: "Tokens/min", cell: (d) => utilisation("tok", d.pacing.tokens_last_minute, d.pacing.tpm_limit, d.pacing.tpm_utilisation) },
            { label: "Input $/1M", cell: (d) => (d.prices ? fmt.usd(d.prices.input_per_1m) : "not in catalog"), num: true },
            { label: "Output $/1M", cell: (d) => (d.prices ? fmt.usd(d.prices.output_per_1m) : "–"), num: true },
            { label: "Context", cell: (d) => (d.prices ? fmt.int(d.prices.context_window) : "–"), num: true },
            { label: "Deprecation", cell: deprecation },
            { label: "Fallbacks", cell: (d) => d.fallbacks.join(", ") || "–" },
          ],
          deployments,
          { caption: `Deployments of ${provider}`, rowAttrs: (d) => ({ "data-deployment": d.id }) },
        ),
      );
    }
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
