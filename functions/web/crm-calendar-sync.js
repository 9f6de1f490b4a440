// <crm-calendar-sync>: the Google Calendar settings and conflict center a CRM embeds in its settings page.
//
// Plain custom element, no build step, no dependencies. The host supplies the signed-in user's Firebase / Identity
// Platform ID token through `element.getIdToken = async () => token` (called before every request, so a refreshed
// token is always used) or `element.idToken = token`. `api-base` is the API Gateway's origin (default: this page's).
// Strict-CSP compatible: no inline script or style; styles come from crm-calendar-sync.css next to this module.
//
// Returning from Google: the OAuth callback sends the browser back to the page holding this element (Terraform's
// oauth_return_url) with `#google_code=…&google_state=…` in the fragment; the element removes them from the address
// bar at once and finishes with `POST /oauth/callback {code, state}` under the signed-in user's ID token, which binds
// the Google account to that user. A refusal comes back as `?google=error&reason=<code>` and is shown in words.

const ROUTES = {
  oauthStart: "/oauth/start",
  oauthCallback: "/oauth/callback",
  oauthDisconnect: "/oauth/disconnect",
  enable: "/sync/enable",
  disable: "/sync/disable",
  status: "/sync/status",
  conflicts: "/sync/conflicts",
  resolve: "/sync/resolve",
};
const POLL_FAST_MS = 1500;
const POLL_MAX_MS = 30000;
const POLL_BUSY_MAX_MS = 3000; // while the user waits for an action (an import runs inside enable)
const FIELD_LABELS = {
  title: "Title",
  description: "Description",
  location: "Location",
  start: "Starts",
  end: "Ends",
  status: "Status",
  attendees: "Guests",
  reminders: "Reminders",
  recurrence: "Repeats",
  attachments: "Attachments",
  conference_link: "Video call",
  visibility: "Visibility",
  transparency: "Shows as",
  deleted: "Deleted",
};
const ERROR_WORDS = {
  unauthenticated: "You are signed out of the CRM. Sign in again and reload this page.",
  needs_reauth: "Google access was lost. Reconnect your Google account to resume syncing.",
  conflict: "That could not be done right now.",
  google_unavailable: "Google Calendar is not answering right now. Try again in a minute.",
  google_error: "Google Calendar refused the request. Try again in a minute.",
  store_unavailable: "The CRM's database is busy. Try again in a minute.",
  internal: "Something went wrong on our side. Try again in a minute.",
};

// Why a connection did not happen, by the error code of the callback's redirect or of POST /oauth/callback.
const OAUTH_ERROR_WORDS = {
  access_denied: "Google access was not granted, so nothing was connected. Choose Connect and allow access to your calendars.",
  invalid_state: "That Google sign-in expired or was already used, so nothing was connected. Start again with Connect.",
  oauth_user_mismatch:
    "That Google sign-in was started by a different CRM user, so nothing was connected. Start again with Connect here.",
  google_account_in_use:
    "That Google account is already connected to another CRM user. Disconnect it there first, or connect a different Google account.",
  oauth_exchange_failed: "Google did not accept the sign-in, so nothing was connected. Start again with Connect.",
  forbidden: "Not every calendar permission was granted, so nothing was connected. Connect again and allow all of them.",
  unauthenticated: ERROR_WORDS.unauthenticated,
};
const OAUTH_ERROR_DEFAULT = "Connecting to Google did not finish, so nothing was connected. Start again with Connect.";
// Google's special event types the sync can import (sync_enable `import_types`, shown by sync_status).
const IMPORT_TYPES = [
  ["out_of_office", "Out of office", "The time you marked as out of office in Google Calendar."],
  ["focus_time", "Focus time", "The focus time blocks of your Google Calendar."],
  ["working_location", "Working location", "Where you work each day (home, an office), one entry a day."],
  ["birthday", "Birthdays", "The birthdays Google Calendar shows (from your Google contacts)."],
];

function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function when(value) {
  if (!value) return "never";
  const date = new Date(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function inWords(seconds) {
  const abs = Math.abs(seconds);
  const unit = abs >= 86400 ? [86400, "day"] : abs >= 3600 ? [3600, "hour"] : [60, "minute"];
  const n = Math.max(1, Math.round(abs / unit[0]));
  const text = `${n} ${unit[1]}${n === 1 ? "" : "s"}`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

function calendarErrorInWords(message) {
  if (!message) return null;
  if (message.startsWith("import failed")) return "The first import from Google did not finish; it is retried automatically.";
  if (message.startsWith("watch failed")) return "Google did not accept change notifications; the next renewal run tries again.";
  return `The last sync did not finish (${message}); it is retried automatically.`;
}

function showValue(field, value) {
  if (value === null || value === undefined || value === "") return "(empty)";
  if (field === "start" || field === "end") {
    if (value.date) return value.date;
    return `${when(value.date_time)}${value.time_zone ? ` (${value.time_zone})` : ""}`;
  }
  if (field === "attendees") return value.length ? value.map((a) => a.email).join(", ") : "(none)";
  if (field === "reminders") {
    if (value.use_default) return "calendar default";
    return value.overrides.map((o) => `${o.method} ${o.minutes} min before`).join(", ") || "none";
  }
  if (field === "recurrence") return value.length ? value.join("; ") : "does not repeat";
  if (field === "attachments") return value.length ? value.map((a) => a.title || a.file_url).join(", ") : "(none)";
  if (field === "transparency") return value === "transparent" ? "free" : "busy";
  if (field === "deleted") return value ? "deleted" : "kept";
  return String(value);
}

const SIDE = { crm: "CRM", google: "Google Calendar" };

class CrmCalendarSync extends HTMLElement {
  static get observedAttributes() {
    return ["api-base"];
  }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this._getIdToken = null;
    this._idToken = null;
    this._status = null;
    this._conflicts = [];
    this._nextConflictPage = null;
    this._busy = "";
    this._message = null;
    this._error = null;
    this._draft = null;
    this._handoff = null; // {code, state} from Google's redirect, posted once a token source is available
    this._pollTimer = null;
    this._pollDelay = POLL_FAST_MS;
    this._connected = false;
    this._onVisibility = () => {
      if (!document.hidden && this._pollTimer === null && this._needsPolling()) this._schedulePoll(0);
    };
  }

  // The host may set the token source before this module loads (an un-upgraded element keeps it as an own property).
  _upgradeProperty(name) {
    if (Object.prototype.hasOwnProperty.call(this, name)) {
      const value = this[name];
      delete this[name];
      this[name] = value;
    }
  }

  get getIdToken() {
    return this._getIdToken;
  }

  set getIdToken(callback) {
    this._getIdToken = typeof callback === "function" ? callback : null;
    if (this._connected && this._getIdToken) this.refresh({ calendars: true });
  }

  get idToken() {
    return this._idToken;
  }

  set idToken(token) {
    this._idToken = token || null;
    if (this._connected && this._idToken && !this._getIdToken) this.refresh({ calendars: true });
  }

  _hasTokenSource() {
    return Boolean(this._getIdToken || this._idToken);
  }

  connectedCallback() {
    this._upgradeProperty("getIdToken");
    this._upgradeProperty("idToken");
    this._connected = true;
    const link = h("link", { rel: "stylesheet", href: new URL("./crm-calendar-sync.css", import.meta.url).href });
    this._root = h("div", { class: "root" });
    this.shadowRoot.replaceChildren(link, this._root);
    document.addEventListener("visibilitychange", this._onVisibility);
    this._readReturnFromGoogle();
    this._render();
    if (this._hasTokenSource()) this.refresh({ calendars: true });
  }

  disconnectedCallback() {
    this._connected = false;
    document.removeEventListener("visibilitychange", this._onVisibility);
    clearTimeout(this._pollTimer);
    this._pollTimer = null;
  }

  attributeChangedCallback() {
    if (this._connected && this._hasTokenSource()) this.refresh({ calendars: true });
  }

  // --- API -----------------------------------------------------------------------------------------------------
  get apiBase() {
    return (this.getAttribute("api-base") || window.location.origin).replace(/\/+$/, "");
  }

  async _token() {
    if (this._getIdToken) return await this._getIdToken();
    if (this._idToken) return this._idToken;
    throw Object.assign(new Error(ERROR_WORDS.unauthenticated), { code: "unauthenticated" });
  }

  async _call(route, { method = "GET", body, query } = {}) {
    const url = new URL(this.apiBase + route);
    for (const [key, value] of Object.entries(query || {})) if (value !== undefined && value !== null) url.searchParams.set(key, value);
    const headers = { Authorization: `Bearer ${await this._token()}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    if (!response.ok) {
      const error = (payload && payload.error) || {};
      const words = ERROR_WORDS[error.code] && error.code !== "conflict" ? ERROR_WORDS[error.code] : error.message;
      throw Object.assign(new Error(words || `The request failed (${response.status}).`), {
        code: error.code,
        status: response.status,
      });
    }
    return payload;
  }

  // --- state -----------------------------------------------------------------------------------------------------
  // Takes what Google's redirect left in the address (the code and state in the fragment, or an error in the query)
  // and removes it from the address bar and the history entry at once, before anything else runs.
  _readReturnFromGoogle() {
    const url = new URL(window.location.href);
    const fragment = new URLSearchParams(url.hash.slice(1));
    const code = fragment.get("google_code");
    const state = fragment.get("google_state");
    let changed = false;
    if (fragment.has("google_code") || fragment.has("google_state")) {
      if (code && state) this._handoff = { code, state };
      else this._error = OAUTH_ERROR_DEFAULT;
      fragment.delete("google_code");
      fragment.delete("google_state");
      changed = true;
    }
    if (url.searchParams.get("google") === "error") {
      this._error = OAUTH_ERROR_WORDS[url.searchParams.get("reason")] || OAUTH_ERROR_DEFAULT;
      url.searchParams.delete("google");
      url.searchParams.delete("reason");
      changed = true;
    }
    if (!changed) return;
    const rest = fragment.toString();
    window.history.replaceState(window.history.state, "", `${url.pathname}${url.search}${rest ? `#${rest}` : ""}`);
  }

  // Finishes a connection Google handed back: the code and state are single-use, so they are posted once.
  async _finishConnection() {
    const handoff = this._handoff;
    this._handoff = null;
    this._busy = "Finishing the connection to Google…";
    this._render();
    try {
      const answer = await this._call(ROUTES.oauthCallback, { method: "POST", body: handoff });
      this._error = null;
      const account = answer.account_email ? `Your Google account ${answer.account_email}` : "Your Google account";
      this._message = `${account} is connected. Choose the calendars to sync, then Save and sync.`;
    } catch (error) {
      this._error = OAUTH_ERROR_WORDS[error.code] || (error.status >= 500 ? error.message : OAUTH_ERROR_DEFAULT);
    } finally {
      this._busy = "";
    }
  }

  async refresh({ calendars = false } = {}) {
    if (this._handoff && this._hasTokenSource()) {
      await this._finishConnection();
      calendars = true;
    }
    try {
      const status = await this._call(ROUTES.status, { query: calendars ? { include: "google_calendars" } : {} });
      if (!calendars && this._status && this._status.google_calendars) status.google_calendars = this._status.google_calendars;
      this._status = status;
      if (calendars || this._draft === null) this._draft = this._draftFrom(status);
      if (status.connected || status.needs_reauth) await this._loadConflicts();
    } catch (error) {
      this._error = error.message;
    }
    this._render();
    this._afterRefresh();
  }

  async _loadConflicts(more = false) {
    const page = await this._call(ROUTES.conflicts, { query: { page_size: 20, page: more ? this._nextConflictPage : null } });
    this._conflicts = more ? [...this._conflicts, ...page.conflicts] : page.conflicts;
    this._nextConflictPage = page.next_page;
  }

  _draftFrom(status) {
    const enabled = new Set(status.calendars.filter((c) => c.enabled).map((c) => c.calendar_id));
    const primary = (status.google_calendars || []).find((c) => c.primary);
    return {
      calendars: enabled.size ? enabled : new Set(primary ? [primary.calendar_id] : []),
      target: status.target_calendar_id && status.target_calendar_id !== "primary" ? status.target_calendar_id : primary?.calendar_id,
      conflictMode: status.conflict_mode || "last_write_wins",
      importTypes: status.import_types ? { ...status.import_types } : null,
    };
  }

  _needsPolling() {
    const status = this._status;
    if (!status || !status.connected) return false;
    return (
      status.calendars.some((c) => c.importing || (c.enabled && !c.channel)) ||
      status.events.pending > 0 ||
      this._busy !== ""
    );
  }

  // Poll while work is in progress (import, repair, pending pushes), backing off to POLL_MAX_MS (POLL_BUSY_MAX_MS
  // while an action of the user is still running), never while the page is hidden.
  _afterRefresh() {
    if (this._needsPolling()) this._schedulePoll(this._pollDelay);
    else this._pollDelay = POLL_FAST_MS;
  }

  _schedulePoll(delay) {
    clearTimeout(this._pollTimer);
    this._pollTimer = setTimeout(async () => {
      this._pollTimer = null;
      if (document.hidden || !this._connected) return;
      this._pollDelay = Math.min(this._busy ? POLL_BUSY_MAX_MS : POLL_MAX_MS, Math.round(this._pollDelay * 1.5));
      await this.refresh();
    }, delay);
  }

  async _act(label, work) {
    if (this._busy) return;
    this._busy = label;
    this._error = null;
    this._message = null;
    this._render();
    this._pollDelay = POLL_FAST_MS;
    this._schedulePoll(POLL_FAST_MS);
    try {
      await work();
    } catch (error) {
      this._error = error.message;
    } finally {
      this._busy = "";
    }
    await this.refresh({ calendars: Boolean(this._status && this._status.connected) });
  }

  // --- actions ---------------------------------------------------------------------------------------------------
  connect() {
    return this._act("Opening Google…", async () => {
      const email = this._status && this._status.account_email;
      const { authorization_url: url } = await this._call(ROUTES.oauthStart, { method: "POST", query: { login_hint: email || undefined } });
      window.location.assign(url);
    });
  }

  disconnect() {
    return this._act("Disconnecting…", async () => {
      await this._call(ROUTES.oauthDisconnect, { method: "POST", body: {} });
      this._message = "Google Calendar is disconnected. Your CRM meetings are kept.";
      this._draft = null;
    });
  }

  saveCalendars() {
    return this._act("Saving and importing…", async () => {
      const draft = this._draft;
      const chosen = [...draft.calendars];
      if (!chosen.length) throw new Error("Choose at least one calendar, or turn two-way sync off.");
      const target = chosen.includes(draft.target) ? draft.target : undefined;
      const body = { calendar_ids: chosen, target_calendar_id: target, conflict_mode: draft.conflictMode };
      // Only a sync that reports import choices accepts them.
      if (draft.importTypes && this._status.import_types) body.import_types = { ...draft.importTypes };
      await this._call(ROUTES.enable, { method: "POST", body });
      const dropped = this._status.calendars.filter((c) => c.enabled && !draft.calendars.has(c.calendar_id)).map((c) => c.calendar_id);
      if (dropped.length) await this._call(ROUTES.disable, { method: "POST", body: { calendar_ids: dropped } });
      this._message = "Saved. Changes now flow both ways.";
    });
  }

  toggleSync(on) {
    if (on) return this.saveCalendars();
    return this._act("Turning sync off…", async () => {
      await this._call(ROUTES.disable, { method: "POST", body: {} });
      this._message = "Two-way sync is off. Your CRM meetings are kept.";
    });
  }

  resolve(conflict, keep) {
    return this._act("Applying your choice…", async () => {
      const answer = await this._call(ROUTES.resolve, {
        method: "POST",
        body: { event_id: conflict.event_id, decision: conflict.decision, keep },
      });
      this._message = answer.changed
        ? `Keeping the ${SIDE[keep]} version of “${conflict.title}”; it is being synced.`
        : `Kept the ${SIDE[keep]} version of “${conflict.title}”.`;
    });
  }

  // --- rendering -------------------------------------------------------------------------------------------------
  _render() {
    if (!this._root) return;
    const focused = this.shadowRoot.activeElement && this.shadowRoot.activeElement.id;
    const status = this._status;
    const parts = [this._renderNotices()];
    if (status) {
      parts.push(this._renderAccount(status));
      if (status.connected) parts.push(this._renderSync(status), this._renderCalendars(status));
      if (status.connected || status.needs_reauth) parts.push(this._renderConflicts());
    } else if (!this._error) {
      parts.push(h("p", { class: "muted", text: "Loading…" }));
    }
    this._root.replaceChildren(...parts);
    if (focused) {
      const again = this.shadowRoot.getElementById(focused);
      if (again) again.focus();
    }
  }

  _renderNotices() {
    const status = this._status;
    return h(
      "div",
      { class: "notices" },
      status && status.needs_reauth
        ? h(
            "div",
            { class: "banner warn", role: "alert", id: "reauth-banner" },
            h("p", { text: "Google access was lost, so nothing is syncing. Reconnect your Google account to resume." }),
            h("button", { id: "reconnect", type: "button", onclick: () => this.connect(), text: "Reconnect Google" }),
          )
        : null,
      this._error ? h("p", { class: "banner error", role: "alert", id: "error", text: this._error }) : null,
      h("p", { class: "live", role: "status", "aria-live": "polite", id: "message", text: this._busy || this._message || "" }),
    );
  }

  _renderAccount(status) {
    const busy = this._busy !== "";
    const section = h("section", { "aria-labelledby": "account-heading" }, h("h2", { id: "account-heading", text: "Google account" }));
    if (status.connected) {
      section.append(
        h("p", {}, "Connected as ", h("strong", { id: "account-email", text: status.account_email || "(unknown)" })),
        h(
          "div",
          { class: "actions" },
          h("button", { id: "reconnect-account", type: "button", class: "secondary", disabled: busy, onclick: () => this.connect(), text: "Reconnect" }),
          h("button", { id: "disconnect", type: "button", class: "danger", disabled: busy, onclick: () => this.disconnect(), text: "Disconnect" }),
        ),
      );
    } else if (!status.needs_reauth) {
      section.append(
        h("p", { text: "Connect your Google account to see CRM meetings in Google Calendar and Google changes in the CRM." }),
        h("button", { id: "connect", type: "button", disabled: busy, onclick: () => this.connect(), text: "Connect Google Calendar" }),
      );
    } else {
      section.append(h("p", {}, "Was connected as ", h("strong", { text: status.account_email || "(unknown)" })));
    }
    return section;
  }

  _renderSync(status) {
    const on = status.calendars.some((c) => c.enabled);
    const draft = this._draft;
    const modes = [
      ["last_write_wins", "The latest change wins (recommended)", "When both sides changed a meeting, the newer change is kept; you can switch to the other version below."],
      ["ask_me", "Ask me", "When both sides changed the same detail, the meeting waits in the conflict center until you choose; other changes still merge."],
    ];
    return h(
      "section",
      { "aria-labelledby": "sync-heading" },
      h("h2", { id: "sync-heading", text: "Two-way sync" }),
      h(
        "label",
        { class: "switch" },
        h("input", {
          id: "sync-toggle",
          type: "checkbox",
          role: "switch",
          checked: on,
          "aria-checked": on ? "true" : "false",
          disabled: this._busy !== "",
          onchange: (event) => this.toggleSync(event.target.checked),
        }),
        h("span", { text: on ? "On: changes flow both ways" : "Off" }),
      ),
      h(
        "fieldset",
        { class: "modes" },
        h("legend", { text: "When the CRM and Google both changed a meeting" }),
        modes.map(([value, label, help]) =>
          h(
            "label",
            { class: "choice" },
            h("input", {
              type: "radio",
              name: "conflict-mode",
              id: `mode-${value}`,
              value,
              checked: draft && draft.conflictMode === value,
              onchange: () => {
                this._draft.conflictMode = value;
              },
            }),
            h("span", {}, label, h("small", { text: help })),
          ),
        ),
      ),
    );
  }

  _renderCalendars(status) {
    const draft = this._draft;
    const known = new Map(status.calendars.map((c) => [c.calendar_id, c]));
    const choices = status.google_calendars || status.calendars.map((c) => ({ calendar_id: c.calendar_id, summary: c.calendar_id, syncable: true, writable: c.is_target }));
    const rows = choices.map((choice, index) => {
      const state = known.get(choice.calendar_id);
      const checkboxId = `cal-${index}`;
      return h(
        "li",
        { class: "calendar" },
        h(
          "div",
          { class: "calendar-choice" },
          h("input", {
            type: "checkbox",
            id: checkboxId,
            "data-calendar": choice.calendar_id,
            checked: draft.calendars.has(choice.calendar_id),
            disabled: !choice.syncable,
            onchange: (event) => {
              if (event.target.checked) draft.calendars.add(choice.calendar_id);
              else draft.calendars.delete(choice.calendar_id);
            },
          }),
          h("label", { for: checkboxId }, choice.summary, choice.primary ? h("span", { class: "tag", text: "primary" }) : null),
          choice.writable
            ? h(
                "label",
                { class: "target" },
                h("input", {
                  type: "radio",
                  name: "target",
                  id: `target-${index}`,
                  value: choice.calendar_id,
                  checked: draft.target === choice.calendar_id,
                  onchange: () => {
                    draft.target = choice.calendar_id;
                  },
                }),
                h("span", { text: "receives CRM meetings" }),
              )
            : h("span", { class: "muted small", text: choice.syncable ? "read-only" : "free/busy only: cannot be synced" }),
        ),
        state ? this._renderCalendarState(state) : null,
      );
    });
    return h(
      "section",
      { "aria-labelledby": "calendars-heading" },
      h("h2", { id: "calendars-heading", text: "Calendars" }),
      h("ul", { class: "calendars" }, rows),
      this._renderImportTypes(status),
      h("button", { id: "save-calendars", type: "button", disabled: this._busy !== "", onclick: () => this.saveCalendars(), text: "Save and sync" }),
    );
  }

  // Which of Google's special event types are imported; hidden when the sync does not report the choice.
  _renderImportTypes(status) {
    const draft = this._draft;
    if (!status.import_types || !draft.importTypes) return null;
    const known = IMPORT_TYPES.filter(([key]) => key in status.import_types);
    if (!known.length) return null;
    return h(
      "fieldset",
      { class: "import-types", id: "import-types" },
      h("legend", { text: "Also import from Google" }),
      known.map(([key, label, help]) =>
        h(
          "label",
          { class: "choice" },
          h("input", {
            type: "checkbox",
            id: `import-${key}`,
            "data-import-type": key,
            checked: Boolean(draft.importTypes[key]),
            onchange: (event) => {
              draft.importTypes[key] = event.target.checked;
            },
          }),
          h("span", {}, label, h("small", { text: help })),
        ),
      ),
    );
  }

  _renderCalendarState(state) {
    const items = [];
    const statusWord = !state.enabled ? "Not syncing" : state.importing ? "Importing from Google" : state.health === "repairing" ? "Repairing: Google stopped sending change notifications; a new channel and a catch-up follow within minutes" : state.channel ? "Syncing" : "Waiting for Google notifications";
    items.push(["State", statusWord]);
    if (state.channel) items.push(["Notifications channel renews", `${inWords(state.channel.expires_in_seconds)} (expires ${when(state.webhook_expiration)})`]);
    if (state.enabled) items.push(["Last change notification", when(state.last_notification_at)], ["Last successful sync", when(state.last_sync_at)]);
    const error = calendarErrorInWords(state.last_error);
    const progress = state.import_progress;
    return h(
      "div",
      { class: "calendar-state" },
      h("dl", {}, items.map(([term, value]) => [h("dt", { text: term }), h("dd", { text: value })])),
      state.importing
        ? h(
            "div",
            { class: "progress", id: "import-progress" },
            h("progress", { "aria-label": "Import progress" }),
            h("span", { text: `${progress.events_seen} events read from Google (${progress.pages} pages)` }),
          )
        : null,
      error ? h("p", { class: "calendar-error", role: "note", text: error }) : null,
    );
  }

  _renderConflicts() {
    const open = this._conflicts.filter((c) => !c.resolved_by_user);
    const section = h(
      "section",
      { "aria-labelledby": "conflicts-heading", id: "conflict-center" },
      h("h2", { id: "conflicts-heading", text: `Conflicts${open.length ? ` (${open.length} to review)` : ""}` }),
    );
    if (!this._conflicts.length) {
      section.append(h("p", { class: "muted", text: "No conflicts: nothing was changed on both sides at once." }));
      return section;
    }
    section.append(h("ol", { class: "conflicts" }, this._conflicts.map((c, i) => this._renderConflict(c, i))));
    if (this._nextConflictPage) {
      section.append(
        h("button", {
          type: "button",
          class: "secondary",
          id: "more-conflicts",
          onclick: () => this._act("Loading…", () => this._loadConflicts(true)),
          text: "Show older conflicts",
        }),
      );
    }
    return section;
  }

  _renderConflict(conflict, index) {
    const other = conflict.winner === "crm" ? "google" : "crm";
    const won = conflict.pending ? "" : conflict.winner; // "ask me": held, nothing won yet
    const headingId = `conflict-${index}-title`;
    const table = h(
      "table",
      { class: "versions" },
      h("caption", { class: "visually-hidden", text: `Both versions of ${conflict.title}` }),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Field" }), ["crm", "google"].map((side) =>
        h("th", { scope: "col", class: side === won ? "won" : "" }, `${SIDE[side]} version`, side === won ? h("span", { class: "tag", text: "won" }) : null),
      ))),
      h(
        "tbody",
        {},
        conflict.fields.map((field) =>
          h(
            "tr",
            { class: "differs" },
            h("th", { scope: "row", text: FIELD_LABELS[field] || field }),
            ["crm", "google"].map((side) => h("td", { "data-side": side, "data-field": field, class: side === won ? "won" : won ? "lost" : "" }, h("mark", { text: showValue(field, conflict[side][field]) }))),
          ),
        ),
      ),
    );
    const resolution = conflict.resolved_by_user;
    return h(
      "li",
      { class: "conflict", "aria-labelledby": headingId, "data-event": conflict.event_id },
      h("h3", { id: headingId, text: conflict.title || "(untitled meeting)" }),
      conflict.pending
        ? h("p", { class: "why" }, h("strong", { text: "Waiting for your choice" }), ` since ${when(conflict.at)}: ${conflict.reason}.`)
        : h("p", { class: "why" }, h("strong", { text: `${SIDE[conflict.winner]} won` }), ` on ${when(conflict.at)}: ${conflict.reason}.`),
      h("div", { class: "table-scroll" }, table),
      resolution
        ? h("p", { class: "resolved", text: `You chose the ${SIDE[resolution.keep]} version on ${when(resolution.at)}.` })
        : conflict.resolvable
          ? h(
              "div",
              { class: "actions" },
              h("button", {
                type: "button",
                id: `keep-other-${index}`,
                "data-keep": other,
                disabled: this._busy !== "",
                onclick: () => this.resolve(conflict, other),
                text: `Keep the other version (${SIDE[other]})`,
              }),
              h("button", {
                type: "button",
                class: "secondary",
                id: `keep-winner-${index}`,
                "data-keep": conflict.winner,
                disabled: this._busy !== "",
                onclick: () => this.resolve(conflict, conflict.winner),
                text: `Keep ${SIDE[conflict.winner]}'s version`,
              }),
            )
          : h("p", { class: "muted small", text: "A deletion in Google cannot be undone here." }),
    );
  }
}

if (!customElements.get("crm-calendar-sync")) customElements.define("crm-calendar-sync", CrmCalendarSync);

export { CrmCalendarSync };
