// Copyright 2026 the @eventbus/core authors. MIT license.
// The dashboard's one page: HTML, CSS and JavaScript inline, no framework,
// nothing fetched from anywhere but this server. Data reaches the DOM only
// through textContent, never as HTML.

/** What the page script reads at start. */
export interface PageConfig {
  /** The backend's name, for the title. */
  readonly backend: string;
  /** Whether replay and purge buttons are shown. */
  readonly writes: boolean;
  /** The token every POST carries ("" when read-only). */
  readonly token: string;
}

/** The page, with its config and the CSP nonce of its script and style. */
export function renderPage(
  { nonce, config }: { nonce: string; config: PageConfig },
): string {
  // JSON in a script element: "<" escaped so no "</script>" can close it.
  const data = JSON.stringify(config).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dead letters · ${escapeHtml(config.backend)}</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header>
  <h1>Dead letters</h1>
  <span class="backend" id="backend"></span>
  <span class="badge" id="mode"></span>
  <span class="spacer"></span>
  <label class="auto"><input type="checkbox" id="auto" checked> refresh every 10 s</label>
  <button type="button" id="refresh">Refresh</button>
</header>
<main>
  <section>
    <h2>Handlers <span class="muted" id="total"></span></h2>
    <table id="handlers">
      <thead><tr><th>Handler</th><th class="num">Delivered</th><th class="num">Failed tries</th><th class="num">Dead-lettered</th><th>Event types</th><th class="actions-col">Actions</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="muted note" id="note"></p>
  </section>
  <section id="letters-section" hidden>
    <h2>Dead letters of <span id="current"></span> <span class="muted" id="shown"></span></h2>
    <table id="letters">
      <thead><tr><th>Ref</th><th>Type</th><th>Id</th><th class="num">Attempts</th><th>Reason</th><th>Error</th><th>Time</th><th class="actions-col">Actions</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="detail" hidden>
    <h2>Dead letter <span id="detail-ref"></span></h2>
    <dl id="detail-fields"></dl>
    <h3>Payload</h3>
    <pre id="payload"></pre>
    <h3>Event</h3>
    <pre id="event"></pre>
  </section>
</main>
<div id="status" role="status" aria-live="polite"></div>
<dialog id="confirm">
  <p id="confirm-text"></p>
  <div class="buttons">
    <button type="button" id="confirm-cancel">Cancel</button>
    <button type="button" id="confirm-ok" class="danger">Confirm</button>
  </div>
</dialog>
<script type="application/json" id="config">${data}</script>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => `&#${c.charCodeAt(0)};`,
  );
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1d2330; --muted: #6b7385; --bg: #f6f7f9; --card: #fff;
  --line: #e2e5ea; --accent: #2f5bd3; --danger: #c23a3a; --sel: #eaf0ff; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8ee; --muted: #9aa2b3; --bg: #14171d;
  --card: #1c2029; --line: #2d3340; --accent: #7d9cff; --danger: #ff7b7b; --sel: #243052; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 12px; padding: 12px 24px;
  background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 15px; margin: 0 0 8px; }
h3 { font-size: 13px; margin: 12px 0 4px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.backend { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; color: var(--muted); }
.badge { font-size: 12px; padding: 2px 8px; border-radius: 10px; border: 1px solid var(--line); }
.badge.writes { border-color: var(--danger); color: var(--danger); }
.spacer { flex: 1; }
.auto { color: var(--muted); font-size: 13px; }
main { padding: 16px 24px; display: grid; gap: 16px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
td.error { color: var(--danger); max-width: 420px; overflow-wrap: anywhere; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: var(--sel); }
tbody tr.selected { background: var(--sel); }
.muted { color: var(--muted); font-weight: normal; }
.note { margin: 10px 0 0; font-size: 12px; }
.reason { white-space: nowrap; font-size: 12px; padding: 1px 6px; border-radius: 4px; border: 1px solid var(--line); }
button { font: inherit; padding: 3px 10px; border-radius: 6px; border: 1px solid var(--line);
  background: var(--card); color: var(--fg); cursor: pointer; }
button:hover { border-color: var(--accent); }
button.danger { color: var(--danger); }
td.actions { white-space: nowrap; }
td.actions button + button { margin-left: 6px; }
pre { margin: 0; padding: 10px; background: var(--bg); border: 1px solid var(--line); border-radius: 6px;
  font-size: 12px; overflow: auto; max-height: 320px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
#status { position: fixed; right: 24px; bottom: 20px; max-width: 480px; padding: 8px 14px; border-radius: 6px;
  background: var(--fg); color: var(--bg); opacity: 0; transition: opacity .2s; pointer-events: none; }
#status.shown { opacity: .92; }
#status.error { background: var(--danger); color: #fff; }
dialog { border: 1px solid var(--line); border-radius: 8px; padding: 18px 20px; background: var(--card); color: var(--fg); max-width: 460px; }
dialog::backdrop { background: rgba(0, 0, 0, .35); }
dialog .buttons { display: flex; justify-content: flex-end; gap: 8px; margin-top: 14px; }
.empty { color: var(--muted); font-style: italic; }
td.unknown { color: var(--muted); font-style: italic; text-align: center; font-size: 12px; }
`;

// Plain JavaScript (no template literals inside: this is one).
const SCRIPT = `
"use strict";
const config = JSON.parse(document.getElementById("config").textContent);
const state = { handler: null, selected: null, busy: false, again: false };
const $ = (id) => document.getElementById(id);

function el(tag, props, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children || []) node.append(child);
  return node;
}

function text(value) {
  if (value === undefined || value === null || value === "") return "?";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function plural(n, noun) {
  return n + " " + noun + (n === 1 ? "" : "s");
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json", "x-dashboard-token": config.token },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  let data = {};
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error(data.error || response.status + " " + response.statusText);
  return data;
}

let statusTimer;
function status(message, isError) {
  const node = $("status");
  node.textContent = message;
  node.className = "shown" + (isError ? " error" : "");
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { node.className = ""; }, isError ? 8000 : 4000);
}

function confirmAction(message, label) {
  const dialog = $("confirm");
  $("confirm-text").textContent = message;
  $("confirm-ok").textContent = label;
  return new Promise((resolve) => {
    const done = (ok) => {
      $("confirm-ok").onclick = null;
      $("confirm-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(ok);
    };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-cancel").onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

async function act(action, target, what) {
  const verb = action === "replay" ? "Replay" : "Purge";
  const message = action === "replay"
    ? "Replay " + what + "? Each event goes again to the handler that failed, and to no other handler."
    : "Purge " + what + " for good? This cannot be undone.";
  if (!(await confirmAction(message, verb))) return;
  try {
    const result = await api("/api/" + action, target);
    const n = action === "replay" ? result.replayed : result.purged;
    status((action === "replay" ? "Replayed " : "Purged ") + plural(n, "dead letter"));
  } catch (error) {
    status(verb + " failed: " + error.message, true);
  }
  await refresh();
}

function actionButtons(target, what) {
  const replay = el("button", { type: "button", class: "replay", text: "Replay" });
  const purge = el("button", { type: "button", class: "purge danger", text: "Purge" });
  replay.onclick = (event) => { event.stopPropagation(); act("replay", target, what); };
  purge.onclick = (event) => { event.stopPropagation(); act("purge", target, what); };
  return el("td", { class: "actions" }, [replay, purge]);
}

function renderHandlers(summary) {
  $("backend").textContent = summary.backend;
  $("total").textContent = plural(summary.total, "dead letter") + (summary.truncated ? " (handler names found in the oldest " + summary.scanned + ")" : "");
  const body = $("handlers").tBodies[0];
  body.replaceChildren();
  $("note").textContent = summary.inProcess
    ? "Delivered and failed tries: this process's bus, since each handler was subscribed (stats().handlers). Dead-lettered: what the backend holds now."
    : "Delivered and failed tries are not known in this process: each worker's bus counts its own. Serve the page from a worker, with serveDashboard({ backend, stats: () => bus.stats() }), to see them. Dead-lettered: what the backend holds now.";
  if (summary.handlers.length === 0) {
    body.append(el("tr", {}, [el("td", { class: "empty", colSpan: 6, text: "No dead letters." })]));
  }
  for (const line of summary.handlers) {
    const types = Object.entries(line.types).map(([type, n]) => type + " (" + n + ")").join(", ");
    const totals = line.totals;
    const cells = [el("td", { class: "mono", text: line.handler })];
    if (totals) {
      cells.push(
        el("td", { class: "num delivered", text: String(totals.completed) }),
        el("td", { class: "num failed", text: String(totals.failed), title: totals.retried + " retried, " + totals.deadLettered + " given up" }),
      );
    } else {
      cells.push(el("td", { class: "unknown", colSpan: 2, text: "not known in this process" }));
    }
    cells.push(
      el("td", { class: "num count", text: String(line.deadLettered) }),
      el("td", { class: "mono", text: types }),
    );
    if (config.writes) {
      cells.push(line.deadLettered === 0 ? el("td", { class: "actions" }) : actionButtons({ handler: line.handler }, "all " + plural(line.deadLettered, "dead letter") + " of handler \\u201c" + line.handler + "\\u201d"));
    }
    const row = el("tr", { "data-handler": line.handler, class: line.handler === state.handler ? "selected" : "" }, cells);
    row.onclick = () => { state.handler = line.handler; state.selected = null; refresh(); };
    body.append(row);
  }
}

function renderLetters(handler, page) {
  $("letters-section").hidden = handler === null;
  $("current").textContent = handler === null ? "" : handler;
  $("shown").textContent = page.more ? "(the oldest " + page.items.length + " of " + page.total + ")" : "(" + page.items.length + ")";
  const body = $("letters").tBodies[0];
  body.replaceChildren();
  for (const letter of page.items) {
    const event = letter.event && typeof letter.event === "object" ? letter.event : {};
    const cells = [
      el("td", { class: "mono", text: text(letter.ref) }),
      el("td", { class: "mono", text: text(event.type) }),
      el("td", { class: "mono", text: text(event.id) }),
      el("td", { class: "num", text: text(letter.attempts) }),
      el("td", {}, [el("span", { class: "reason", text: text(letter.reason) })]),
      el("td", { class: "error", text: text(letter.error) }),
      el("td", { class: "mono", text: text(letter.time) }),
    ];
    if (config.writes) {
      cells.push(actionButtons({ refs: [letter.ref] }, "dead letter " + letter.ref + " (" + text(event.type) + ", handler \\u201c" + letter.handler + "\\u201d)"));
    }
    const row = el("tr", { "data-ref": letter.ref, class: letter.ref === state.selected ? "selected" : "" }, cells);
    row.onclick = () => { state.selected = letter.ref; renderLetters(handler, page); };
    body.append(row);
  }
  renderDetail(page.items.find((letter) => letter.ref === state.selected));
}

function renderDetail(letter) {
  $("detail").hidden = letter === undefined;
  if (letter === undefined) return;
  const event = letter.event && typeof letter.event === "object" ? letter.event : {};
  $("detail-ref").textContent = letter.ref;
  const fields = [["handler", letter.handler], ["type", event.type], ["id", event.id], ["attempts", letter.attempts],
    ["reason", letter.reason], ["error", letter.error], ["time", letter.time], ["source", event.source],
    ["emitted", event.time]];
  $("detail-fields").replaceChildren(...fields.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: text(value) })]));
  $("payload").textContent = JSON.stringify(event.data === undefined ? null : event.data, null, 2);
  $("event").textContent = JSON.stringify(letter.event, null, 2);
}

async function refresh() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  state.again = false;
  try {
    const summary = await api("/api/summary");
    const names = summary.handlers.map((line) => line.handler);
    if (!names.includes(state.handler)) {
      const first = summary.handlers.find((line) => line.deadLettered > 0);
      state.handler = first ? first.handler : null;
      state.selected = null;
    }
    renderHandlers(summary);
    const page = state.handler === null
      ? { items: [], total: 0, more: false }
      : await api("/api/dead-letters?limit=200&handler=" + encodeURIComponent(state.handler));
    renderLetters(state.handler, page);
    document.body.dataset.loaded = "true";
  } catch (error) {
    status("Cannot load the dead letters: " + error.message, true);
  } finally {
    state.busy = false;
  }
  if (state.again) await refresh();
}

$("mode").textContent = config.writes ? "replay and purge allowed" : "read-only";
$("mode").classList.toggle("writes", config.writes);
if (!config.writes) for (const th of document.querySelectorAll(".actions-col")) th.remove();
$("refresh").onclick = () => refresh();
setInterval(() => { if ($("auto").checked && !$("confirm").open) refresh(); }, 10000);
refresh();
`;
