// Keys: list, create (the secret shown once, with a copy button), scopes, budgets, expiry,
// rotate, revoke (GET/POST/PATCH /admin/keys, /admin/budgets).
import { api } from "../api.js";
import { badge, clear, field, fmt, h, select, table } from "../dom.js";

function status(key) {
  const now = Date.now();
  if (key.revoked_at && Date.parse(key.revoked_at) <= now) return badge("revoked", "bad");
  if (key.expires_at && Date.parse(key.expires_at) <= now) return badge("expired", "bad");
  if (key.grace_until) return badge("rotating", "warn");
  return badge("active", "ok");
}

/** The one place a secret appears: shown once, copyable, removed from the page when done. */
function secretPanel(title, secret, onDone) {
  const out = h("output", { id: "new-secret", "aria-label": "The new key" }, secret);
  const copy = h("button", { type: "button", class: "primary" }, "Copy key");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
      copy.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(out);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      copy.textContent = "Selected: press Ctrl+C";
    }
  });
  const done = h("button", { type: "button", onclick: onDone }, "I have stored it");
  const panel = h(
    "section",
    { class: "panel secret", role: "alert", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, title),
    h("p", {}, "This is the only time the key is shown. Store it now (a password manager or your secret store); aiwire keeps only its hash."),
    out,
    h("div", { class: "actions" }, copy, done),
  );
  return panel;
}

export async function render(root, { notify, session }) {
  const secretArea = h("div");
  const list = h("div");
  const models = (await api("/admin/models")).data.map((d) => d.name);
  const names = [...new Set(models)].sort();

  const name = h("input", { name: "name", required: true, maxlength: "200", placeholder: "billing-app" });
  const team = h("input", { name: "team", maxlength: "200" });
  const modelSel = h("select", { name: "models", multiple: true, size: String(Math.min(5, Math.max(2, names.length))) }, names.map((m) => h("option", { value: m }, m)));
  const expires = select([["", "Never"], ["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"], ["90d", "90 days"], ["365d", "1 year"]], "", { name: "expires_in" });
  const rpm = h("input", { name: "rpm", type: "number", min: "1", inputmode: "numeric" });
  const tpm = h("input", { name: "tpm", type: "number", min: "1", inputmode: "numeric" });
  const budget = h("input", { name: "budget", type: "number", min: "0", step: "0.01", inputmode: "decimal" });
  const admin = h("input", { type: "checkbox", name: "admin", id: "scope-admin", disabled: !session.is_master });
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "Create a key"),
    h(
      "div",
      { class: "toolbar" },
      field("Name", name),
      field("Team", team),
      field("Models (none selected: all)", modelSel),
      field("Expires", expires),
      field("Requests / min", rpm),
      field("Tokens / min", tpm),
      field("Monthly budget (USD)", budget),
    ),
    h(
      "p",
      { class: "check" },
      admin,
      h("label", { for: "scope-admin" }, "Admin scope (may use this console and the admin API)"),
      session.is_master ? null : h("span", { class: "muted" }, " — only the master key grants it"),
    ),
    h("button", { type: "submit", class: "primary" }, "Create key"),
  );

  function showSecret(title, secret) {
    clear(secretArea).append(secretPanel(title, secret, () => clear(secretArea)));
    secretArea.querySelector("button").focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim() };
    const chosen = [...modelSel.selectedOptions].map((o) => o.value);
    if (chosen.length) body.models = chosen;
    if (team.value.trim()) body.team = team.value.trim();
    if (expires.value) body.expires_in = expires.value;
    if (rpm.value) body.rpm = Number(rpm.value);
    if (tpm.value) body.tpm = Number(tpm.value);
    if (admin.checked) body.scopes = ["admin"];
    let created;
    try {
      created = await api("/admin/keys", { method: "POST", body });
    } catch (err) {
      notify(err.message, "error");
      return;
    }
    if (budget.value) {
      try {
        await api("/admin/budgets", { method: "POST", body: { scope: "key", scope_id: created.id, period: "month", limit_usd: Number(budget.value) } });
      } catch (err) {
        notify(`Key created, but its budget was not set: ${err.message}`, "error");
      }
    }
    form.reset();
    showSecret(`Key ${created.name} created`, created.key);
    notify(`Created key ${created.name}`);
    await load();
  });

  const editArea = h("div");

  /** Change a key's scope, expiry, limits and monthly budget (PATCH /admin/keys/{id}). */
  function edit(key, budgetOf) {
    const b = budgetOf;
    const exp = select([["keep", key.expires_at ? `Keep (${fmt.time(key.expires_at)})` : "Keep (never)"], ["never", "Never"], ["1d", "1 day from now"], ["7d", "7 days from now"], ["30d", "30 days from now"], ["90d", "90 days from now"]], "keep", { name: "expires" });
    const r = h("input", { type: "number", min: "1", name: "rpm", value: key.rpm ?? "" });
    const t = h("input", { type: "number", min: "1", name: "tpm", value: key.tpm ?? "" });
    const money = h("input", { type: "number", min: "0", step: "0.01", name: "budget", value: b ? b.limit_usd : "" });
    const scope = h("input", { type: "checkbox", id: "edit-admin", checked: key.scopes.includes("admin"), disabled: !session.is_master });
    const save = h("button", { type: "submit", class: "primary" }, "Save changes");
    const cancel = h("button", { type: "button", onclick: () => clear(editArea) }, "Cancel");
    const f = h(
      "form",
      { class: "panel", "aria-labelledby": "edit-title" },
      h("h2", { id: "edit-title" }, `Edit key ${key.name}`),
      h("div", { class: "toolbar" }, field("Expires", exp), field("Requests / min", r), field("Tokens / min", t), field("Monthly budget (USD)", money)),
      h("p", { class: "check" }, scope, h("label", { for: "edit-admin" }, "Admin scope")),
      h("div", { class: "actions" }, save, cancel),
    );
    f.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { rpm: r.value ? Number(r.value) : null, tpm: t.value ? Number(t.value) : null };
      if (exp.value === "never") body.expires_at = null;
      else if (exp.value !== "keep") body.expires_in = exp.value;
      if (session.is_master) body.scopes = scope.checked ? ["admin"] : [];
      try {
        await api(`/admin/keys/${encodeURIComponent(key.id)}`, { method: "PATCH", body });
        if (money.value) {
          await api("/admin/budgets", { method: "POST", body: { scope: "key", scope_id: key.id, period: "month", limit_usd: Number(money.value) } });
        } else if (b) {
          await api(`/admin/budgets/${encodeURIComponent(b.id)}`, { method: "DELETE" });
        }
        notify(`Saved ${key.name}`);
        clear(editArea);
      } catch (err) {
        notify(err.message, "error");
      }
      await load();
    });
    clear(editArea).append(f);
    exp.focus();
  }

  async function act(key, what) {
    if (what === "revoke" && !window.confirm(`Revoke key ${key.name}? Requests with it fail at once.`)) return;
    if (what === "rotate" && !window.confirm(`Rotate key ${key.name}? A new secret is issued; the old one stops working now.`)) return;
    try {
      const result = await api(`/admin/keys/${encodeURIComponent(key.id)}/${what}`, { method: "POST" });
      if (what === "rotate") showSecret(`Key ${key.name} rotated: its new secret`, result.key);
      notify(what === "rotate" ? `Rotated ${key.name}` : `Revoked ${key.name}`);
    } catch (err) {
      notify(err.message, "error");
    }
    await load();
  }

  async function load() {
    const [keys, budgets] = await Promise.all([api("/admin/keys"), api("/admin/budgets").catch(() => ({ data: [] }))]);
    const byKey = new Map(budgets.data.filter((b) => b.scope === "key").map((b) => [b.scope_id, b]));
    const rows = [...keys.data].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    clear(list).append(
      rows.length
        ? table(
            [
              { label: "Name", cell: (k) => h("strong", {}, k.name) },
              { label: "Key", cell: (k) => h("code", {}, `${k.key_prefix}…`) },
              { label: "Status", cell: status },
              { label: "Scopes", cell: (k) => (k.scopes.length ? k.scopes.map((sc) => badge(sc, "warn")) : "–") },
              { label: "Models", cell: (k) => (k.models.length ? k.models.join(", ") : "all"), wrap: true },
              { label: "Team", cell: (k) => k.team || "–" },
              { label: "Limits", cell: (k) => `${k.rpm ? `${k.rpm} rpm` : "–"} / ${k.tpm ? `${k.tpm} tpm` : "–"}` },
              {
                label: "Budget",
                cell: (k) => {
                  const b = byKey.get(k.id);
                  return b ? `${fmt.usd(b.spent_usd)} of ${fmt.usd(b.limit_usd)} / ${b.period}` : "–";
                },
              },
              { label: "Expires", cell: (k) => (k.expires_at ? fmt.time(k.expires_at) : "never") },
              { label: "Last used", cell: (k) => (k.last_used_at ? fmt.time(k.last_used_at) : "never") },
              {
                label: "Actions",
                cell: (k) => {
                  const dead = k.revoked_at && Date.parse(k.revoked_at) <= Date.now();
                  return h(
                    "div",
                    { class: "actions" },
                    h("button", { type: "button", disabled: dead, "aria-label": `Edit key ${k.name}`, onclick: () => edit(k, byKey.get(k.id)) }, "Edit"),
                    h("button", { type: "button", disabled: dead, "aria-label": `Rotate key ${k.name}`, onclick: () => act(k, "rotate") }, "Rotate"),
                    h("button", { type: "button", class: "danger", disabled: dead, "aria-label": `Revoke key ${k.name}`, onclick: () => act(k, "revoke") }, "Revoke"),
                  );
                },
              },
            ],
            rows,
            { caption: "Virtual keys", rowAttrs: (k) => ({ "data-key-id": k.id, "data-key-name": k.name }) },
          )
        : h("p", { class: "panel muted" }, "No keys yet: create one above."),
    );
  }

  root.append(h("h1", {}, "Keys"), secretArea, form, editArea, h("h2", {}, "All keys"), list);
  await load();
  return null;
}
