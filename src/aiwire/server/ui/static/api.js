// The console's only way to the gateway: same-origin fetches to the admin, review and batch
// APIs. The session cookie rides along (HttpOnly: script never sees it); state changes carry
// the session's CSRF token, which lives in this module's memory only.

let csrf = null;
let onSignedOut = () => {};

export function setSession(token, signedOut) {
  csrf = token;
  if (signedOut) onSignedOut = signedOut;
}

export class ApiError extends Error {
  constructor(status, body) {
    const err = body && body.error ? body.error : null;
    super(err && err.message ? err.message : `HTTP ${status}`);
    this.status = status;
    this.code = err ? err.code : null;
    this.param = err ? err.param : null;
  }
}

/** Call the gateway: api("/admin/keys"), api("/admin/keys", {method: "POST", body}). */
export async function api(path, { method = "GET", body, query, headers = {} } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  }
  const sent = { accept: "application/json", ...headers };
  if (method !== "GET" && method !== "HEAD" && csrf) sent["x-csrf-token"] = csrf;
  if (body !== undefined) sent["content-type"] = "application/json";
  const resp = await fetch(url, {
    method,
    headers: sent,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!resp.ok) {
    const error = new ApiError(resp.status, data);
    if (resp.status === 401 && path !== "/ui/session") onSignedOut(error);
    throw error;
  }
  return data;
}
