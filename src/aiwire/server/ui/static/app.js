// The console shell: sign-in, navigation (hash routes), a status area, one page at a time.
import { api, ApiError, setSession } from "./api.js";
import { clear, field, h } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as keys from "./pages/keys.js";
import * as models from "./pages/models.js";
import * as logs from "./pages/logs.js";
import * as batches from "./pages/batches.js";
import * as flows from "./pages/flows.js";
import * as review from "./pages/review.js";

const PAGES = [
  ["overview", "Overview", overview],
  ["keys", "Keys", keys],
  ["models", "Models & providers", models],
  ["logs", "Logs", logs],
  ["batches", "Batches", batches],
  ["flows", "Flows", flows],
  ["review", "Review queue", review],
];

const app = document.getElementById("app");
let session = null;
let current = null; // {name, cleanup}

/** A message in the corner (role=status, or role=alert for errors), gone after a while. */
export function notify(message, kind = "info") {
  const area = document.getElementById("status");
  if (!area) return;
  clear(area);
  const note = h("div", { class: `note ${kind === "error" ? "error" : ""}`, role: kind === "error" ? "alert" : "status" }, message);
  area.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 9000 : 4000);
}

function signedOut() {
  session = null;
  showSignIn("Your session ended; sign in again.");
}

async function start() {
  try {
    session = await api("/ui/session");
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    showSignIn();
    return;
  }
  setSession(session.csrf_token, signedOut);
  showShell();
}

function showSignIn(message) {
  stopPage();
  clear(app);
  const input = h("input", { type: "password", name: "key", autocomplete: "current-password", required: true, spellcheck: "false" });
  const error = h("p", { class: "muted", role: "alert" }, message || "");
  const form = h(
    "form",
    { class: "panel", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to the aiwire console"),
    h("p", { class: "muted" }, "Use the gateway's master key or a key with the admin scope. It is sent once to start a session and never stored in the browser."),
    field("Master key or admin key", input),
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Sign in")),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      session = await api("/ui/session", { method: "POST", headers: { authorization: `Bearer ${input.value.trim()}` } });
    } catch (err) {
      error.textContent = err.message;
      input.select();
      return;
    }
    input.value = "";
    setSession(session.csrf_token, signedOut);
    showShell();
  });
  app.append(h("main", { id: "main", class: "signin", tabindex: "-1" }, form));
  input.focus();
}

function showShell() {
  clear(app);
  const nav = h(
    "nav",
    { class: "side", "aria-label": "Console sections" },
    h("ul", {}, PAGES.map(([name, label]) => h("li", {}, h("a", { href: `#/${name}`, "data-page": name }, label)))),
  );
  const signOut = h("button", { type: "button", onclick: doSignOut }, "Sign out");
  const header = h(
    "header",
    { class: "topbar" },
    h("span", { class: "brand" }, "aiwire console"),
    h("span", { class: "who" }, `Signed in as ${session.name}${session.is_master ? " (master key)" : ""}`),
    signOut,
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  app.append(h("div", { class: "shell" }, header, nav, main), h("div", { id: "status", "aria-live": "polite" }));
  route();
}

async function doSignOut() {
  try {
    await api("/ui/session", { method: "DELETE" });
  } catch (err) {
    notify(err.message, "error");
  }
  session = null;
  setSession(null);
  showSignIn("Signed out.");
}

function stopPage() {
  if (current && current.cleanup) current.cleanup();
  current = null;
}

async function route() {
  if (!session) return;
  const name = (window.location.hash.replace(/^#\/?/, "").split("?")[0] || "overview").split("/")[0];
  const entry = PAGES.find(([n]) => n === name) || PAGES[0];
  const main = document.getElementById("main");
  if (!main) return;
  stopPage();
  for (const link of document.querySelectorAll("nav.side a")) {
    if (link.dataset.page === entry[0]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  document.title = `${entry[1]} · aiwire console`;
  const page = { name: entry[0], cleanup: null };
  current = page;
  try {
    page.cleanup = (await entry[2].render(main, { notify, session })) || null;
  } catch (err) {
    if (current !== page) return;
    main.append(h("p", { role: "alert" }, `Could not load ${entry[1]}: ${err.message}`));
  }
  if (current !== page && page.cleanup) page.cleanup();
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", route);
start();
