// Rendering and in-place updates of a note list (<ul>). All user data goes
// through textContent / text nodes, never innerHTML.

const STATUSES = new Set(["pending", "saved", "failed"]);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children); // strings become text nodes
  return node;
}

/** Drops undefined fields so a partial event doesn't erase known data when merged. */
export function defined(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

function toDate(v) {
  if (v == null || v === "") return null;
  // Accept ISO strings, epoch ms, or epoch seconds.
  const d = new Date(typeof v === "number" && v < 1e12 ? v * 1000 : v);
  return Number.isNaN(d.getTime()) ? null : d;
}

export class NoteList {
  /**
   * own: render edit/delete controls.
   * actions: { save(id, content) -> Promise<boolean>, remove(id, button) }
   */
  constructor(ul, { own = false, actions = {} } = {}) {
    this.ul = ul;
    this.own = own;
    this.actions = actions;
    this.notes = new Map(); // noteId -> merged note data
    this.items = new Map(); // noteId -> <li>
  }

  has(id) { return this.notes.has(id); }

  hasStatus(status) {
    for (const n of this.notes.values()) if (n.status === status) return true;
    return false;
  }

  /** Insert or merge a note; new ones go on top (newest first) unless append. */
  upsert(note, { append = false } = {}) {
    const id = note.noteId;
    if (id == null) return;
    const merged = { ...this.notes.get(id), ...defined(note) };
    if (!STATUSES.has(merged.status)) merged.status = "saved";
    this.notes.set(id, merged);

    const old = this.items.get(id);
    // Don't blow away an open editor; the data is merged and shown when it closes.
    if (old?.classList.contains("editing")) return;
    const li = this.render(merged);
    this.items.set(id, li);
    if (old) old.replaceWith(li);
    else if (append) this.ul.append(li);
    else this.ul.prepend(li);
  }

  remove(id) {
    this.items.get(id)?.remove();
    this.items.delete(id);
    this.notes.delete(id);
  }

  /** Clear the list; keep(note, li) can spare items (e.g. pending placeholders). */
  clear(keep = () => false) {
    for (const [id, li] of this.items) {
      if (!keep(this.notes.get(id), li)) this.remove(id);
    }
  }

  render(n) {
    const li = el("li", { class: "note", "data-note-id": n.noteId, "data-status": n.status });
    const meta = el("div", { class: "note-meta" });
    if (!this.own && n.username) meta.append(el("span", { class: "note-author" }, n.username));
    if (this.own && n.isPublic) meta.append(el("span", { class: "badge" }, "public"));
    const when = toDate(n.updatedAt || n.savedAt || n.createdAt);
    if (when) {
      const label = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      meta.append(el("time", { datetime: when.toISOString() }, n.updatedAt ? `${label} (edited)` : label));
    }
    if (n.status === "pending") meta.append(el("span", { class: "note-state" }, "saving…"));
    if (n.status === "failed") {
      meta.append(el("span", { class: "note-state" }, `Failed: ${n.error || "unknown error"}`));
    }
    li.append(el("p", { class: "note-content" }, n.content ?? ""), meta);

    if (this.own) {
      const edit = el("button", { type: "button", class: "edit", disabled: n.status !== "saved" }, "Edit");
      const del = el("button", { type: "button", class: "delete", disabled: n.status === "pending" }, "Delete");
      edit.addEventListener("click", () => this.startEdit(n.noteId));
      del.addEventListener("click", () => this.actions.remove?.(n.noteId, del));
      li.append(el("div", { class: "note-actions" }, edit, del));
    }
    return li;
  }

  startEdit(id) {
    const li = this.items.get(id);
    const note = this.notes.get(id);
    if (!li || !note) return;
    li.classList.add("editing");

    const textarea = el("textarea", { name: "content", class: "edit-content", rows: 3, required: true, "aria-label": "Edit note" });
    textarea.value = note.content ?? "";
    const save = el("button", { type: "submit", class: "save" }, "Save");
    const cancel = el("button", { type: "button", class: "cancel" }, "Cancel");
    const form = el("form", { class: "edit-form" }, textarea, el("div", { class: "note-actions" }, save, cancel));

    const close = () => {
      li.classList.remove("editing");
      // Re-render with whatever arrived meanwhile (unless it was deleted).
      if (this.notes.has(id)) this.upsert({ noteId: id });
      else li.remove();
    };
    cancel.addEventListener("click", close);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      save.disabled = true;
      const ok = await this.actions.save?.(id, textarea.value);
      if (ok && li.isConnected) close();
      else save.disabled = false;
    });
    form.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });

    li.replaceChildren(form);
    textarea.focus();
  }
}
