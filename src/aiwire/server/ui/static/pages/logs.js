// Logs: the request log with filters (key, model, status, time) and one request in detail:
// retries, fallback, deployment, tokens, cost, latency, TTFT, content if it was kept
// (GET /admin/logs, /admin/logs/{id}).
import { api } from "../api.js";
import { badge, clear, field, fmt, h, select, table } from "../dom.js";

function localToIso(value) {
  return value ? new Date(value).toISOString() : "";
}

function statusBadge(code) {
  return badge(String(code), code < 400 ? "ok" : code === 429 || code < 500 ? "warn" : "bad");
}

export async function render(root, { notify }) {
  const [keys, models] = await Promise.all([api("/admin/keys"), api("/admin/models")]);
  const key = select([["", "Any key"], ...keys.data.map((k) => [k.id, `${k.name} (${k.key_prefix}…)`])], "", { name: "key" });
  const model = select([["", "Any model"], ...[...new Set(models.data.map((d) => d.name))].sort().map((m) => [m, m])], "", { name: "model" });
  const status = select([["", "Any status"], ["ok", "Succeeded (< 400)"], ["error", "Failed (≥ 400)"], ["429", "429 rate limited"], ["500", "500"], ["502", "502"], ["503", "503"]], "", { name: "status" });
  const since = h("input", { type: "datetime-local", name: "since" });
  const until = h("input", { type: "datetime-local", name: "until" });
  const form = h("form", { class: "inline panel", "aria-label": "Filter the log" }, field("Key", key), field("Model", model), field("Status", status), field("From", since), field("To", until), h("button", { type: "submit", class: "primary" }, "Apply"));
  const list = h("div");
  const more = h("button", { type: "button", class: "hidden" }, "Load more");
  const detail = h("aside", { class: "panel hidden", "aria-label": "Request detail", "aria-live": "polite" });
  let rows = [];
  let cursor = null;

  function query() {
    return { key: key.value, model: model.value, status: status.value, since: localToIso(since.value), until: localToIso(until.value), limit: 50 };
  }

  async function show(row) {
    let d;
    try {
      d = await api(`/admin/logs/${encodeURIComponent(row.request_id)}`);
    } catch (err) {
      notify(err.message, "error");
      return;
    }
    const facts = [
      ["Request id", h("code", {}, d.request_id)],
      ["Time", fmt.time(d.ts)],
      ["Key", d.key_name ? `${d.key_name} (${d.key_id})` : d.key_id || "master key"],
      ["Team", d.team || "–"],
      ["Endpoint", d.endpoint],
      ["Model asked for", d.model],
      ["Answered by", d.deployment || "–"],
      ["Provider", d.provider || "–"],
      ["Status", statusBadge(d.status)],
      ["Error", d.error_type || "–"],
      ["Retries", fmt.int(d.retries)],
      ["Fallback used", d.fallback ? "yes" : "no"],
      ["Streamed", d.stream ? "yes" : "no"],
      ["Cache hit", d.cache_hit ? "yes" : "no"],
      ["Tokens in / out (cached)", `${fmt.int(d.input_tokens)} / ${fmt.int(d.output_tokens)} (${fmt.int(d.cached_tokens)})`],
      ["Cost", fmt.usd(d.cost_usd)],
      ["Latency", fmt.ms(d.latency_ms)],
      ["Time to first token", fmt.ms(d.ttft_ms)],
    ];
    const close = h("button", { type: "button", onclick: () => detail.classList.add("hidden") }, "Close");
    clear(detail).append(
      h("h2", {}, "Request detail"),
      h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h3", {}, "Prompt"),
      d.prompt === null ? h("p", { class: "muted" }, "Not stored (content logging is off for this key or gateway).") : h("pre", {}, d.prompt),
      h("h3", {}, "Completion"),
      d.completion === null ? h("p", { class: "muted" }, "Not stored.") : h("pre", {}, d.completion),
      h("p", {}, close),
    );
    detail.classList.remove("hidden");
    detail.querySelector("h2").setAttribute("tabindex", "-1");
    detail.querySelector("h2").focus();
  }

  function draw() {
    clear(list).append(
      rows.length
        ? table(
            [
              { label: "Time", cell: (r) => fmt.time(r.ts) },
              { label: "Key", cell: (r) => r.key_name || (r.key_id ? r.key_id : "master") },
              { label: "Model", cell: (r) => r.model },
              { label: "Deployment", cell: (r) => r.deployment || "–" },
              { label: "Status", cell: (r) => statusBadge(r.status) },
              { label: "Tokens in/out", cell: (r) => `${fmt.int(r.input_tokens)} / ${fmt.int(r.output_tokens)}`, num: true },
              { label: "Cost", cell: (r) => fmt.usd(r.cost_usd), num: true },
              { label: "Latency", cell: (r) => fmt.ms(r.latency_ms), num: true },
              { label: "Retries", cell: (r) => `${r.retries}${r.fallback ? " · fallback" : ""}`, num: true },
              { label: "", cell: (r) => h("button", { type: "button", "aria-label": `Details of request ${r.request_id}`, onclick: () => show(r) }, "Details") },
            ],
            rows,
            { caption: "Requests, newest first", rowAttrs: (r) => ({ "data-request-id": r.request_id }) },
          )
        : h("p", { class: "panel muted" }, "No requests match."),
    );
    more.classList.toggle("hidden", !cursor);
  }

  async function load(reset) {
    const page = await api("/admin/logs", { query: { ...query(), cursor: reset ? null : cursor } });
    rows = reset ? page.data : rows.concat(page.data);
    cursor = page.next_cursor;
    draw();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(true).catch((err) => notify(err.message, "error"));
  });
  more.addEventListener("click", () => load(false).catch((err) => notify(err.message, "error")));
  root.append(h("h1", {}, "Logs"), form, h("div", { class: "cols-log" }, list, more, detail));
  await load(true);
  return null;
}
