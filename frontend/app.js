// notesctl browser frontend: wiring of views, API calls and live events.
import { api, ApiError, loadConfig, session, setUnauthorizedHandler, wsBaseUrl } from "./api.js";
import { connectLive } from "./live.js";
import { NoteList, defined, el } from "./notes.js";

const $ = (id) => document.getElementById(id);
const ui = {
  flash: $("flash"), error: $("error"), auth: $("auth"), dashboard: $("dashboard"),
  loginForm: $("login-form"), signupForm: $("signup-form"), noteForm: $("note-form"),
  whoami: $("whoami"), wsStatus: $("ws-status"),
};

let live = null;
let generation = 0; // bumped on login/logout so late responses from an old session are ignored
let wasOpen = false;

const mine = new NoteList($("my-notes"), { own: true, actions: { save: saveEdit, remove: removeNote } });
const pub = new NoteList($("public-notes"));
const lists = {
  mine: { list: mine, fetch: api.listNotes, more: $("my-more"), cursor: null },
  pub: { list: pub, fetch: api.listPublic, more: $("public-more"), cursor: null },
};

// ---- messages -------------------------------------------------------------

function clearMessages() {
  ui.error.hidden = true;
  ui.error.replaceChildren();
  ui.flash.hidden = true;
  ui.flash.textContent = "";
}

function showError(err) {
  const message = err instanceof Error ? err.message : String(err);
  ui.error.replaceChildren(el("p", {}, message));
  const fields = err instanceof ApiError ? err.errors : [];
  if (fields.length) {
    const items = fields.map((f) => {
      const path = Array.isArray(f.path) ? f.path.join(".") : f.path;
      return el("li", {}, path ? `${path}: ${f.message}` : String(f.message));
    });
    ui.error.append(el("ul", {}, ...items));
  }
  ui.error.hidden = false;
  if (err instanceof Error && !(err instanceof ApiError)) console.error(err); // a bug, not an API answer
}

/** Runs fn, showing any error; resolves to fn's result or undefined. */
async function attempt(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}

/** Submit handler that shows errors and disables the button meanwhile (no double submits). */
function onSubmit(form, fn) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearMessages();
    const button = form.querySelector('[type="submit"]');
    button.disabled = true;
    try {
      await fn(form.elements);
    } catch (err) {
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- views ----------------------------------------------------------------

function showView(name) {
  clearMessages();
  ui.auth.hidden = name === "dashboard";
  ui.loginForm.hidden = name !== "login";
  ui.signupForm.hidden = name !== "signup";
  ui.dashboard.hidden = name !== "dashboard";
  const first = { login: ui.loginForm, signup: ui.signupForm, dashboard: ui.noteForm }[name];
  first.querySelector("input, textarea")?.focus();
}

function setWsState(state) {
  if (state === "open") wasOpen = true;
  ui.wsStatus.dataset.state = state;
  ui.wsStatus.textContent = state === "open" ? "live" : wasOpen ? "reconnecting…" : "connecting…";
}

// ---- session --------------------------------------------------------------

function enterDashboard() {
  const gen = ++generation;
  ui.whoami.textContent = session.username || "";
  showView("dashboard");
  wasOpen = false;
  live?.stop();
  live = connectLive({
    url: () => `${wsBaseUrl()}?token=${encodeURIComponent(session.token || "")}`,
    onEvent: applyEvent,
    onState: (s) => { if (gen === generation) setWsState(s); },
    // Events sent while the socket was down are lost: re-sync after a drop, or if
    // a note was submitted before the first connect.
    onOpen: (reconnected) => {
      if (gen === generation && (reconnected || mine.hasStatus("pending"))) refresh();
    },
    probe: () => api.getUser(),
  });
  refresh();
}

function logout(message) {
  generation++;
  live?.stop();
  live = null;
  session.clear();
  for (const entry of Object.values(lists)) {
    entry.list.clear();
    entry.more.hidden = true;
    entry.cursor = null;
  }
  ui.noteForm.reset();
  showView("login");
  if (message) showError(message);
}

setUnauthorizedHandler((rejectedToken) => {
  // Only the current session's 401 counts; parallel requests may all fail.
  if (session.token && session.token === rejectedToken) {
    logout("Your session has expired — please log in again.");
  }
});

// ---- lists ----------------------------------------------------------------

async function loadPage(kind, more = false) {
  const entry = lists[kind];
  const { list, more: button } = entry;
  const gen = generation;
  button.disabled = true;
  try {
    const data = await entry.fetch(more ? entry.cursor : undefined);
    if (gen !== generation) return;
    // Keep local-only state (pending placeholders, open editors) across a refresh.
    if (!more) list.clear((n, li) => n.status !== "saved" || li.classList.contains("editing"));
    for (const note of data.notes ?? []) list.upsert(note, { append: true });
    entry.cursor = data.cursor ?? null;
    button.hidden = entry.cursor == null;
  } finally {
    button.disabled = false;
  }
}

function refresh() {
  attempt(() => loadPage("mine"));
  attempt(() => loadPage("pub"));
}

lists.mine.more.addEventListener("click", () => attempt(() => loadPage("mine", true)));
lists.pub.more.addEventListener("click", () => attempt(() => loadPage("pub", true)));

/** Applies a content/flag change to every list that shows the note. */
function applyUpdate(noteId, fields) {
  const patch = defined({ noteId, ...fields });
  if (mine.has(noteId)) mine.upsert(patch);
  if (pub.has(noteId)) {
    if (fields.isPublic === false) pub.remove(noteId);
    else pub.upsert(patch);
  }
}

async function saveEdit(noteId, content) {
  clearMessages();
  const res = await attempt(() => api.updateNote(noteId, content));
  if (!res) return false;
  applyUpdate(noteId, { content: res.content ?? content, updatedAt: res.updatedAt });
  return true;
}

async function removeNote(noteId, button) {
  clearMessages();
  button.disabled = true;
  try {
    await api.deleteNote(noteId);
  } catch (err) {
    // 404: already gone (or never stored, e.g. failed) — drop it locally anyway.
    if (!(err instanceof ApiError && err.status === 404)) {
      showError(err);
      button.disabled = false;
      return;
    }
  }
  mine.remove(noteId);
  pub.remove(noteId);
}

// ---- live events ----------------------------------------------------------

// A retried notify may deliver an event twice; one already applied is ignored, so a late
// duplicate "note-saved" cannot bring back a note deleted since. Events are named by
// noteId, eventType and timestamp; the last 1000 are remembered.
const applied = new Set();
const APPLIED_MAX = 1000;

function firstDelivery(ev) {
  if (!ev.timestamp) return true;
  const key = `${ev.noteId}|${ev.eventType}|${ev.timestamp}`;
  if (applied.has(key)) return false;
  applied.add(key);
  if (applied.size > APPLIED_MAX) applied.delete(applied.values().next().value);
  return true;
}

function applyEvent(ev) {
  if (!firstDelivery(ev)) return;
  const me = session.username;
  switch (ev.eventType) {
    case "note-saved": {
      const note = {
        noteId: ev.noteId, username: ev.username, content: ev.content,
        isPublic: ev.isPublic, savedAt: ev.savedAt, status: "saved",
      };
      if (ev.username === me) mine.upsert(note); // replaces the pending placeholder
      if (ev.isPublic) pub.upsert(note);
      break;
    }
    case "note-failed":
      if (ev.username === me) mine.upsert({ noteId: ev.noteId, status: "failed", error: ev.error });
      break;
    case "note-updated":
      applyUpdate(ev.noteId, { content: ev.content, isPublic: ev.isPublic, updatedAt: ev.updatedAt });
      break;
    case "note-deleted":
      mine.remove(ev.noteId);
      pub.remove(ev.noteId);
      break;
    // anything else (pings, unknown types) is ignored
  }
}

// ---- forms ----------------------------------------------------------------

const credentials = (f) => [f.username.value.trim(), f.password.value];

onSubmit(ui.loginForm, async (f) => {
  const [username, password] = credentials(f);
  const res = await api.login(username, password);
  session.save(res.token, res.username || username);
  ui.loginForm.reset();
  enterDashboard();
});

onSubmit(ui.signupForm, async (f) => {
  const [username, password] = credentials(f);
  const res = await api.signup(username, password);
  ui.signupForm.reset();
  showView("login");
  ui.loginForm.elements.username.value = res.username || username;
  ui.loginForm.elements.password.focus();
  ui.flash.textContent = "Account created — log in";
  ui.flash.hidden = false;
});

onSubmit(ui.noteForm, async (f) => {
  const gen = generation;
  const content = f.content.value;
  const isPublic = f.isPublic.checked;
  const res = await api.createNote(content, isPublic);
  if (gen !== generation) return;
  ui.noteForm.reset();
  f.content.focus();
  // note-saved may already have arrived over the socket; don't downgrade it.
  if (res.noteId != null && !mine.has(res.noteId)) {
    mine.upsert({
      noteId: res.noteId, content, isPublic, username: session.username,
      status: "pending", createdAt: new Date().toISOString(),
    });
  }
});

$("show-signup").addEventListener("click", () => showView("signup"));
$("show-login").addEventListener("click", () => showView("login"));
$("logout").addEventListener("click", () => logout());

// ---- start ----------------------------------------------------------------

await loadConfig();
if (session.token) enterDashboard();
else showView("login");
