// Runtime config + a thin fetch wrapper around the notes HTTP API.
// Config is fetched at runtime (not baked in) so the same files work behind the
// local dev server and on S3/CloudFront.

let config = { apiUrl: "", wsUrl: "" };
let onUnauthorized = () => {};

export async function loadConfig() {
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (res.ok) config = { ...config, ...(await res.json()) };
  } catch {
    // Missing/invalid config (or file://): fall back to same-origin defaults.
  }
  return config;
}

export function wsBaseUrl() {
  if (config.wsUrl) return config.wsUrl;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ws`;
}

export class ApiError extends Error {
  constructor(message, status = 0, errors = []) {
    super(message);
    this.status = status;
    this.errors = errors;
  }
}

// localStorage can throw (privacy modes, quota); treat that as "no session".
function store(fn, fallback = null) {
  try { return fn(localStorage); } catch { return fallback; }
}

export const session = {
  get token() { return store((s) => s.getItem("notes.token")); },
  get username() { return store((s) => s.getItem("notes.username")); },
  save(token, username) {
    store((s) => { s.setItem("notes.token", token); s.setItem("notes.username", username); });
  },
  clear() {
    store((s) => { s.removeItem("notes.token"); s.removeItem("notes.username"); });
  },
};

/** Called with the token that was rejected, so stale responses can be ignored. */
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

async function request(method, path, { body, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  const token = auth ? session.token : null;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const base = (config.apiUrl || "").replace(/\/+$/, "");

  let res;
  try {
    res = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("Network error — could not reach the server. Check your connection and try again.");
  }

  const data = await res.json().catch(() => null);
  if (res.ok) return data ?? {};
  if (res.status === 401 && token) onUnauthorized(token);
  throw new ApiError(
    data?.message || `Request failed (${res.status}${res.statusText ? " " + res.statusText : ""})`,
    res.status,
    Array.isArray(data?.errors) ? data.errors : [],
  );
}

function withCursor(path, cursor) {
  if (cursor == null) return path;
  const value = typeof cursor === "string" ? cursor : JSON.stringify(cursor);
  return `${path}?cursor=${encodeURIComponent(value)}`;
}

const notePath = (id) => `/notes/${encodeURIComponent(id)}`;

export const api = {
  signup: (username, password) =>
    request("POST", "/auth/signup", { body: { username, password }, auth: false }),
  login: (username, password) =>
    request("POST", "/auth/login", { body: { username, password }, auth: false }),
  getUser: () => request("GET", "/auth/user"),
  listNotes: (cursor) => request("GET", withCursor("/notes", cursor)),
  listPublic: (cursor) => request("GET", withCursor("/notes/public", cursor), { auth: false }),
  createNote: (content, isPublic) => request("POST", "/notes", { body: { content, isPublic } }),
  updateNote: (id, content) => request("PUT", notePath(id), { body: { content } }),
  deleteNote: (id) => request("DELETE", notePath(id)),
};
