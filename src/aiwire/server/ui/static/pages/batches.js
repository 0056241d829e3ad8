// Batches: progress, cost, output and error files, cancel (GET /v1/batches,
// POST /v1/batches/{id}/cancel, GET /v1/files/{id}/content).
import { api } from "../api.js";
import { badge, clear, fmt, h, table } from "../dom.js";

const ACTIVE = new Set(["validating", "in_progress", "finalizing"]);
const KIND = { completed: "ok", failed: "bad", expired: "bad", cancelled: "warn", cancelling: "warn" };

function progress(b) {
  const c = b.request_counts;
  const done = c.completed + c.failed;
  const bar = h("progress", { max: String(Math.max(1, c.total)), value: String(done), "aria-label": `Batch ${b.id}: ${done} of ${c.total} requests done` });
  return h("span", {}, bar, ` ${fmt.int(done)} / ${fmt.int(c.total)}`, c.failed ? h("span", { class: "muted" }, ` (${fmt.int(c.failed)} failed)`) : null);
}

function download(fileId, label, batchId, kind) {
  if (!fileId) return null;
  return h("a", { href: `/v1/files/${encodeURIComponent(fileId)}/content`, download: `${batchId}-${kind}.jsonl` }, label);
}

export async function render(root, { notify }) {
  const list = h("div");
  root.append(
    h("h1", {}, "Batches"),
    h("p", { class: "muted" }, "Batches submitted through /v1/batches (OpenAI's batch API) by every key. Create them with the openai SDK or aiwire batch."),
    list,
  );

  async function cancel(b) {
    if (!window.confirm(`Cancel batch ${b.id}? Requests not yet sent are dropped; finished ones are kept.`)) return;
    try {
      await api(`/v1/batches/${encodeURIComponent(b.id)}/cancel`, { method: "POST" });
      notify(`Cancelling ${b.id}`);
    } catch (err) {
      notify(err.message, "error");
    }
    await load();
  }

  async function load() {
    const page = await api("/v1/batches", { query: { limit: 100 } });
    clear(list).append(
      page.data.length
        ? table(
            [
              { label: "Batch", cell: (b) => h("code", {}, b.id) },
              { label: "Status", cell: (b) => badge(b.status, KIND[b.status] || "info") },
              { label: "Model", cell: (b) => b.model || "–" },
              { label: "Mode", cell: (b) => b.mode },
              { label: "Progress", cell: progress },
              { label: "Cost", cell: (b) => fmt.usd(b.cost_usd), num: true },
              { label: "Estimate", cell: (b) => fmt.usd(b.estimate_usd), num: true },
              { label: "Created", cell: (b) => fmt.time(b.created_at) },
              {
                label: "Files and actions",
                cell: (b) =>
                  h(
                    "div",
                    { class: "actions" },
                    download(b.output_file_id, "Output", b.id, "output"),
                    download(b.error_file_id, "Errors", b.id, "errors"),
                    ACTIVE.has(b.status)
                      ? h("button", { type: "button", class: "danger", "aria-label": `Cancel batch ${b.id}`, onclick: () => cancel(b) }, "Cancel")
                      : null,
                  ),
              },
            ],
            page.data,
            { caption: "Batches, newest first", rowAttrs: (b) => ({ "data-batch-id": b.id, "data-status": b.status }) },
          )
        : h("p", { class: "panel muted" }, "No batches yet."),
    );
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), 3000);
  return () => clearInterval(timer);
}
