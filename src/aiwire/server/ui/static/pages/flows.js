// Flows: each flow's records and last run; its runs with per-step timings; the dead-letter
// queue with replay (GET /admin/flows, /admin/flows/{name}/runs[/{id}],
// /admin/flows/{name}/dead-letters, POST /admin/flows/{name}/replay).
import { api } from "../api.js";
import { hbars } from "../chart.js";
import { badge, clear, fmt, h, table } from "../dom.js";

const RUN_KIND = { done: "ok", succeeded: "ok", completed: "ok", failed: "bad", interrupted: "warn", running: "info" };

function states(records) {
  const parts = Object.entries(records).map(([s, n]) => `${s} ${n}`);
  return parts.length ? parts.join(" · ") : "no records yet";
}

export async function render(root, { notify }) {
  const flows = (await api("/admin/flows")).data;
  root.append(h("h1", {}, "Flows"));
  if (!flows.length) {
    root.append(h("p", { class: "panel muted" }, "No flows on this gateway. Flow files come from $AIWIRE_FLOWS (default ./flows) when it starts."));
    return null;
  }
  const picker = h("div", { class: "actions", role: "group", "aria-label": "Choose a flow" });
  const detail = h("div");
  root.append(
    table(
      [
        { label: "Flow", cell: (f) => h("strong", {}, f.name) },
        { label: "Source", cell: (f) => `${f.source}${f.schedule ? ` · ${f.schedule}` : ""}` },
        { label: "Records", cell: (f) => states(f.records), wrap: true },
        { label: "Waiting review", cell: (f) => fmt.int(f.pending_reviews), num: true },
        { label: "Dead letters", cell: (f) => (f.open_dead_letters ? badge(String(f.open_dead_letters), "bad") : "0"), num: true },
        { label: "Last run", cell: (f) => (f.last_run ? h("span", {}, badge(f.last_run.status, RUN_KIND[f.last_run.status] || "info"), ` ${fmt.time(f.last_run.started_at)}`) : "never") },
      ],
      flows,
      { caption: "Flows", rowAttrs: (f) => ({ "data-flow": f.name }) },
    ),
    picker,
    detail,
  );

  let chosen = null;
  async function choose(name) {
    chosen = name;
    for (const b of picker.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.flow === name));
    await loadFlow();
  }

  async function showRun(run) {
    const full = await api(`/admin/flows/${encodeURIComponent(chosen)}/runs/${encodeURIComponent(run.id)}`);
    const steps = Object.entries(full.steps).map(([sid, t]) => ({ label: sid, value: t.avg_ms || 0 }));
    const panel = detail.querySelector("[data-run-detail]");
    clear(panel).append(
      h("h3", {}, `Run ${full.id}`),
      steps.length ? hbars(steps, { title: "Average time per record, by step", format: fmt.ms }) : null,
      table(
        [
          { label: "Step", cell: (r) => r[0] },
          { label: "Done", cell: (r) => fmt.int(r[1].done), num: true },
          { label: "Skipped", cell: (r) => fmt.int(r[1].skipped), num: true },
          { label: "Failed", cell: (r) => fmt.int(r[1].failed), num: true },
          { label: "Total time", cell: (r) => fmt.ms(r[1].ms), num: true },
          { label: "Avg / record", cell: (r) => fmt.ms(r[1].avg_ms), num: true },
          { label: "Model calls", cell: (r) => fmt.int(r[1].calls), num: true },
          { label: "Cost", cell: (r) => fmt.usd(r[1].cost_usd), num: true },
        ],
        Object.entries(full.steps),
        { caption: "Per-step totals" },
      ),
      h("h3", {}, `Step checkpoints${full.truncated ? " (first 500)" : ""}`),
      table(
        [
          { label: "Record", cell: (r) => r.record },
          { label: "Step", cell: (r) => r.step },
          { label: "Status", cell: (r) => r.status },
          { label: "Time", cell: (r) => fmt.ms(r.ms), num: true },
          { label: "Confidence", cell: (r) => (r.confidence === null ? "–" : r.confidence.toFixed(2)), num: true },
          { label: "Cost", cell: (r) => fmt.usd(r.cost_usd), num: true },
        ],
        full.records,
        { caption: "Step checkpoints of the run" },
      ),
    );
    panel.classList.remove("hidden");
  }

  async function replay(ids) {
    try {
      const result = await api(`/admin/flows/${encodeURIComponent(chosen)}/replay`, { method: "POST", body: ids ? { ids } : {} });
      notify(`Requeued ${result.requeued.length} record(s) of ${chosen}`);
    } catch (err) {
      notify(err.message, "error");
    }
    await loadFlow();
  }

  async function loadFlow() {
    const name = chosen;
    const [runs, dlq] = await Promise.all([
      api(`/admin/flows/${encodeURIComponent(name)}/runs`, { query: { limit: 20 } }),
      api(`/admin/flows/${encodeURIComponent(name)}/dead-letters`),
    ]);
    if (name !== chosen) return;
    clear(detail).append(
      h("h2", {}, `Runs of ${name}`),
      runs.data.length
        ? table(
            [
              { label: "Started", cell: (r) => fmt.time(r.started_at) },
              { label: "Trigger", cell: (r) => r.trigger },
              { label: "Status", cell: (r) => badge(r.status, RUN_KIND[r.status] || "info") },
              { label: "Duration", cell: (r) => fmt.ms(r.duration_ms), num: true },
              { label: "Records", cell: (r) => states(r.counts), wrap: true },
              { label: "Cost", cell: (r) => fmt.usd(r.cost_usd), num: true },
              { label: "", cell: (r) => h("button", { type: "button", "aria-label": `Steps of run ${r.id}`, onclick: () => showRun(r) }, "Steps") },
            ],
            runs.data,
            { caption: `Runs of ${name}` },
          )
        : h("p", { class: "muted" }, "No runs yet."),
      h("section", { class: "hidden", "data-run-detail": "", "aria-live": "polite" }),
      h("h2", {}, "Dead-letter queue"),
      dlq.data.length
        ? h(
            "div",
            {},
            h("p", {}, h("button", { type: "button", class: "primary", onclick: () => replay(null) }, `Replay all ${dlq.data.length} open`)),
            table(
              [
                { label: "Record", cell: (d) => d.record },
                { label: "Failed at", cell: (d) => d.stage },
                { label: "Error", cell: (d) => h("span", {}, badge(d.error_class, "bad"), " ", d.error), wrap: true },
                { label: "Attempts", cell: (d) => fmt.int(d.attempts), num: true },
                { label: "When", cell: (d) => fmt.time(d.created_at) },
                { label: "", cell: (d) => h("button", { type: "button", "aria-label": `Replay record ${d.record}`, onclick: () => replay([d.id]) }, "Replay") },
              ],
              dlq.data,
              { caption: "Open dead letters", rowAttrs: (d) => ({ "data-dead-letter": d.id }) },
            ),
          )
        : h("p", { class: "muted" }, "No open dead letters."),
    );
  }

  for (const f of flows) {
    picker.append(h("button", { type: "button", "data-flow": f.name, "aria-pressed": "false", onclick: () => choose(f.name) }, `Open ${f.name}`));
  }
  await choose(flows[0].name);
  return null;
}
