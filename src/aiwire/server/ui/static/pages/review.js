// Review queue: the model's draft beside the source record; approve, edit or reject with a
// reason; keyboard shortcuts; acceptance rate per flow (GET /admin/review, /admin/review/{id},
// /admin/review/stats, POST /admin/review/{id}/approve|edit|reject).
import { api } from "../api.js";
import { badge, clear, field, fmt, h, select, table } from "../dom.js";

const SHORTCUTS = [
  ["j", "next item"],
  ["k", "previous item"],
  ["a", "approve as drafted"],
  ["e", "save your edits"],
  ["r", "reject (with the reason typed)"],
];

function show(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

export async function render(root, { notify, session }) {
  const statsArea = h("div");
  const flowSel = select([["", "All flows"]], "", { name: "flow" });
  const statusSel = select([["pending", "Waiting"], ["approved", "Approved"], ["edited", "Edited"], ["rejected", "Rejected"], ["expired", "Expired"], ["all", "All"]], "pending", { name: "status" });
  const listArea = h("ul", { class: "review-list", "aria-label": "Review items" });
  const itemArea = h("section", { "aria-label": "The selected item", "aria-live": "polite" });
  const count = h("p", { class: "muted" });
  let items = [];
  let index = -1;
  let editors = new Map(); // path -> control
  let reason = null;

  root.append(
    h("h1", {}, "Review queue"),
    h(
      "aside",
      { class: "panel shortcuts", "aria-label": "Keyboard shortcuts" },
      h("strong", {}, "Keyboard shortcuts "),
      h("ul", {}, SHORTCUTS.map(([k, what]) => h("li", {}, h("kbd", {}, k), ` ${what}`))),
    ),
    h("h2", {}, "Acceptance rate per flow"),
    statsArea,
    h("form", { class: "inline", "aria-label": "Filter the queue" }, field("Flow", flowSel), field("Status", statusSel)),
    count,
    h("div", { class: "split" }, h("nav", { "aria-label": "Queue" }, listArea), itemArea),
  );

  async function loadStats() {
    const stats = (await api("/admin/review/stats")).data;
    const flows = Object.keys(stats).sort();
    const chosen = flowSel.value;
    clear(flowSel).append(h("option", { value: "" }, "All flows"), flows.map((f) => h("option", { value: f, selected: f === chosen }, f)));
    clear(statsArea).append(
      flows.length
        ? table(
            [
              { label: "Flow", cell: (f) => h("strong", {}, f) },
              { label: "Waiting", cell: (f) => fmt.int(stats[f].pending), num: true },
              { label: "Approved", cell: (f) => fmt.int(stats[f].approved), num: true },
              { label: "Edited", cell: (f) => fmt.int(stats[f].edited), num: true },
              { label: "Rejected", cell: (f) => fmt.int(stats[f].rejected), num: true },
              {
                label: "Acceptance rate",
                cell: (f) => {
                  const rate = stats[f].acceptance_rate;
                  if (rate === null) return "no decisions yet";
                  return h("span", { "data-acceptance": f }, h("meter", { min: "0", max: "1", value: String(rate), "aria-label": `Acceptance rate of ${f}` }), ` ${fmt.pct(rate)}`);
                },
              },
              { label: "Sent as drafted", cell: (f) => fmt.pct(stats[f].approved_as_is_rate) },
            ],
            flows,
            { caption: "Acceptance per flow" },
          )
        : h("p", { class: "muted" }, "No reviews yet."),
    );
  }

  async function loadList(keep) {
    const page = await api("/admin/review", { query: { status: statusSel.value, flow: flowSel.value, limit: 200 } });
    items = page.data;
    count.textContent = `${page.total} item(s)${page.total > items.length ? `, first ${items.length} shown` : ""}`;
    clear(listArea);
    items.forEach((item, i) => {
      listArea.append(
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", "data-review": item.id, "data-record": item.record, onclick: () => select_(i) },
            h("span", {}, item.record),
            h("br"),
            h("span", { class: "muted" }, `${item.flow} · ${item.status} · ${fmt.time(item.created_at)}`),
          ),
        ),
      );
    });
    if (!items.length) {
      index = -1;
      shown = null;
      clear(itemArea).append(h("p", { class: "panel muted" }, "Nothing here: the queue is empty."));
      return;
    }
    await select_(Math.min(Math.max(0, keep ?? 0), items.length - 1), true);
  }

  let selecting = 0;
  let shown = null; // the id of the item on screen
  async function select_(i, redraw = false) {
    index = i;
    for (const [k, b] of [...listArea.querySelectorAll("button")].entries()) b.setAttribute("aria-current", String(k === i));
    if (items[i].id === shown && !redraw) return; // keep what the reviewer typed
    const turn = ++selecting; // only the latest selection may draw
    const item = await api(`/admin/review/${encodeURIComponent(items[i].id)}`);
    if (turn !== selecting) return;
    shown = item.id;
    editors = new Map();
    const pending = item.status === "pending";
    const draftRows = Object.entries(item.draft).map(([path, value]) => {
      if (pending && item.editable.includes(path)) {
        const text = show(value);
        const control = text.length > 60 || typeof value !== "string" ? h("textarea", { name: path, rows: "4" }, text) : h("input", { name: path, value: text });
        editors.set(path, { control, original: text, json: typeof value !== "string" });
        return field(`${path} (editable)`, control);
      }
      return h("div", { class: "field" }, h("span", { class: "label" }, path), h("pre", {}, value === null ? "–" : show(value)));
    });
    reason = h("textarea", { name: "reason", rows: "2", placeholder: "Why this should not go out" });
    const approve = h("button", { type: "button", class: "primary", onclick: () => decide("approve") }, "Approve (a)");
    const save = h("button", { type: "button", onclick: () => decide("edit") }, "Save edits (e)");
    const reject = h("button", { type: "button", class: "danger", onclick: () => decide("reject") }, "Reject (r)");
    clear(itemArea).append(
      h("h2", {}, `${item.flow}: record ${item.record} `, badge(item.status, item.status === "pending" ? "info" : "ok")),
      item.instructions ? h("p", { class: "muted" }, item.instructions) : null,
      h(
        "div",
        { class: "cols" },
        h("section", { class: "panel", "aria-labelledby": "src-title" }, h("h3", { id: "src-title" }, "Source record"), h("pre", { "data-source": "" }, fmt.json(item.source))),
        h("section", { class: "panel", "aria-labelledby": "draft-title" }, h("h3", { id: "draft-title" }, "Draft"), draftRows),
      ),
      pending
        ? h("div", { class: "panel" }, field("Reason (needed to reject)", reason), h("div", { class: "actions" }, approve, save, reject))
        : h("p", { class: "muted" }, `Decided by ${item.reviewer || "–"} ${item.decided_at ? fmt.time(item.decided_at) : ""}${item.reason ? `: ${item.reason}` : ""}`),
    );
  }

  async function decide(action) {
    if (index < 0) return;
    const item = items[index];
    const body = { reviewer: session.name };
    if (action === "edit") {
      const edits = {};
      for (const [path, { control, original, json }] of editors) {
        if (control.value === original) continue;
        try {
          edits[path] = json ? JSON.parse(control.value) : control.value;
        } catch {
          notify(`${path}: not valid JSON`, "error");
          return;
        }
      }
      if (!Object.keys(edits).length) {
        notify("Change an editable field first (or approve as drafted).", "error");
        return;
      }
      body.edits = edits;
    }
    if (action === "reject") {
      if (!reason.value.trim()) {
        notify("Give a reason to reject.", "error");
        reason.focus();
        return;
      }
      body.reason = reason.value.trim();
    }
    try {
      await api(`/admin/review/${encodeURIComponent(item.id)}/${action}`, { method: "POST", body });
    } catch (err) {
      notify(err.message, "error");
      return;
    }
    // The note comes once the queue is redrawn, so what it announces is what the page shows.
    await Promise.all([loadStats(), loadList(index)]);
    notify(`${action === "approve" ? "Approved" : action === "edit" ? "Edited and approved" : "Rejected"} ${item.record}`);
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target && event.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    const actions = {
      j: () => index + 1 < items.length && select_(index + 1),
      k: () => index > 0 && select_(index - 1),
      a: () => decide("approve"),
      e: () => decide("edit"),
      r: () => decide("reject"),
    };
    const act = actions[event.key];
    if (act) {
      event.preventDefault();
      act();
    }
  }

  flowSel.addEventListener("change", () => loadList(0));
  statusSel.addEventListener("change", () => loadList(0));
  document.addEventListener("keydown", onKey);
  await loadStats();
  await loadList(0);
  return () => document.removeEventListener("keydown", onKey);
}
