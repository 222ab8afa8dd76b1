// gridrun dashboard: plain JS over the /v1 API. Every user-supplied string goes through
// text nodes (never parsed as HTML), so a command or label cannot inject markup.
"use strict";

const TOKEN_KEY = "gridrun.token";
const main = document.getElementById("main");
const notice = document.getElementById("notice");
const live = document.getElementById("live");
const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "lost", "delivered",
  "expired", "rejected", "skipped"]);
let page = null; // {abort: AbortController} of the page on screen
let me = null; // a promise of GET /v1/me: who the token is, what it may do (null: unknown)

function whoami() {
  if (!me) me = api("/v1/me").catch(() => null);
  return me;
}
function may(who, permission) { return !!who && who.permissions.includes(permission); }

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function say(message) {
  notice.hidden = !message;
  notice.textContent = message || "";
}

function headers(extra) {
  const token = localStorage.getItem(TOKEN_KEY);
  return Object.assign(token ? {Authorization: "Bearer " + token} : {}, extra || {});
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    if (response.status === 401) detail += " (use the Token button)";
    throw new Error(detail);
  }
  return response.json();
}

// A stream's raw bytes saved as a file (fetched with the token, then handed to the browser).
async function download(path, name) {
  const response = await fetch(path, {headers: headers()});
  if (!response.ok) { say("download failed: " + response.statusText); return; }
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", {href: url, download: name});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Server-Sent Events over fetch, so the bearer token can go in a header (EventSource can't).
async function events(path, onEvent, signal) {
  const response = await fetch(path, {headers: headers(), signal});
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

function badge(state) { return h("span", {class: "state " + state, "data-state": state}, state); }
function when(iso) { return iso ? new Date(iso).toLocaleTimeString() : ""; }
function needs(t) {
  const parts = [];
  if (t.cpu) parts.push(t.cpu + " CPU");
  if (t.memory_mb) parts.push(t.memory_mb + " MiB");
  if (t.gpus) parts.push(t.gpus + " GPU");
  return parts.join(", ");
}

function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => k + "=" + v).join(" ");
}
function resources(r) {
  if (!r || !r.cpus) return "";
  const parts = [r.cpus + " CPU"];
  if (r.memory_mb) parts.push((r.memory_mb / 1024).toFixed(1) + " GiB");
  if (r.gpus) parts.push(r.gpus + " GPU");
  return parts.join(" · ");
}
function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}
function command(task) { return task.shell ? task.cmd : (task.argv || []).join(" "); }
function seconds(a, b) {
  return a && b ? ((new Date(b) - new Date(a)) / 1000).toFixed(2) + " s" : "";
}

function repeat(fn, ms, signal) {
  const run = async () => {
    if (signal.aborted) return;
    try { await fn(); say(""); } catch (e) { if (!signal.aborted) say(e.message); }
    if (!signal.aborted) setTimeout(run, ms);
  };
  run();
}

// ---- pages

function overviewPage(signal) {
  const body = h("div", {id: "overview"}, h("p", {class: "muted"}, "connecting…"));
  main.replaceChildren(h("h1", {}, "Overview"), body);
  const draw = (o) => {
    const card = (k, n, id) => h("div", {class: "card", id}, h("div", {class: "n"}, n),
      h("div", {class: "k"}, k));
    const states = Object.entries(o.tasks);
    body.replaceChildren(
      h("div", {class: "cards"},
        card("workers online", o.workers.online, "workers-online"),
        card("draining", o.workers.draining, "workers-draining"),
        card("offline", o.workers.offline, "workers-offline"),
        card("slots used", o.slots_used + " / " + o.slots, "slots"),
        card("queued", o.queue_depth, "queue-depth")),
      h("h2", {}, "Tasks finished, last " + (o.throughput.finished.length *
        o.throughput.bucket_s / 60) + " minutes (per " + o.throughput.bucket_s + " s)"),
      sparkline(o.throughput.finished),
      h("h2", {}, "Tasks per state"),
      h("table", {id: "states"},
        h("tr", {}, states.map(([s]) => h("th", {}, badge(s)))),
        h("tr", {}, states.map(([s, n]) => h("td", {"data-count": s},
          h("a", {href: "#/tasks?state=" + s}, n))))));
  };
  events("/v1/events", (name, data) => { if (name === "overview") { live.classList.add("on");
    say(""); draw(data); } }, signal)
    .catch((e) => { if (!signal.aborted) say(e.message); })
    .finally(() => live.classList.remove("on"));
  // who holds the grid: tasks queued and running per owner and queue (a heavier read than
  // the overview's counts, so every 5 s rather than each second)
  const owners = h("table", {id: "owners"});
  const storage = h("div", {class: "cards", id: "storage"});
  main.append(h("h2", {}, "Owners and queues"), owners, h("h2", {}, "Storage"), storage);
  repeat(async () => {
    const s = await api("/v1/storage");
    const card = (k, n, id) => h("div", {class: "card", id}, h("div", {class: "n"}, n),
      h("div", {class: "k"}, k));
    const days = (secs) => secs >= 86400 ? (secs / 86400).toFixed(0) + " d" : secs + " s";
    storage.replaceChildren(
      card("database", s.db_bytes == null ? "?" : bytes(s.db_bytes), "storage-db"),
      card("output kept" + (s.output_budget ? " of " + bytes(s.output_budget) : ""),
        bytes(s.output_bytes), "storage-output"),
      card("tasks kept", s.tasks_kept, "storage-tasks"),
      card("oldest task", s.oldest_task_at ? new Date(s.oldest_task_at).toLocaleString() : "-",
        "storage-oldest"),
      card("disk used", s.disk_used == null ? "?" : Math.round(s.disk_used * 100) + "%",
        "storage-disk"),
      card("next clean-up (keeps " + days(s.retain_s) + ")", s.next_retention_in_s == null ? "-" :
        Math.round(s.next_retention_in_s) + " s", "storage-next"),
      card("schedule slots skipped", s.schedule_slots_skipped, "storage-skipped"));
  }, 30000, signal);
  repeat(async () => {
    const list = (await api("/v1/owners")).owners;
    const link = (k, v) => h("a", {href: "#/tasks?" + new URLSearchParams({[k]: v})}, v);
    owners.replaceChildren(
      h("tr", {}, ["owner", "queue", "queued", "running"].map((c) => h("th", {}, c))),
      ...list.map((o) => h("tr", {"data-owner": o.owner, "data-queue": o.queue},
        h("td", {}, link("owner", o.owner)), h("td", {}, link("queue", o.queue)),
        h("td", {"data-count": "queued"}, o.queued),
        h("td", {"data-count": "running"}, o.running))));
    if (!list.length) owners.append(h("tr", {}, h("td", {colspan: 4, class: "muted"},
      "nothing queued or running")));
  }, 5000, signal);
}

function sparkline(values) {
  const w = 600, hgt = 80, max = Math.max(1, ...values);
  const step = w / Math.max(1, values.length - 1);
  const points = values.map((v, i) => (i * step).toFixed(1) + "," +
    (hgt - 4 - (v / max) * (hgt - 8)).toFixed(1)).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", hgt);
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("data-values", values.join(","));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2457c5");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  const peak = document.createElementNS(ns, "text");
  peak.setAttribute("x", 4);
  peak.setAttribute("y", 14);
  peak.setAttribute("font-size", 11);
  peak.setAttribute("fill", "#667085");
  peak.textContent = "peak " + max;
  svg.append(peak);
  return svg;
}

function tasksPage(signal, query) {
  const form = h("form", {class: "filters"},
    h("label", {}, "state", h("select", {name: "state"}, h("option", {value: ""}, "any"),
      ["waiting", "queued", "assigned", "running", ...TERMINAL].map((s) => h("option", {value: s}, s)))),
    h("label", {}, "worker", h("input", {name: "worker", size: 12})),
    h("label", {}, "label", h("input", {name: "label", size: 14, placeholder: "k=v"})),
    h("label", {}, "name", h("input", {name: "name", size: 12})),
    h("label", {}, "owner", h("input", {name: "owner", size: 10})),
    h("label", {}, "queue", h("input", {name: "queue", size: 10})),
    h("button", {type: "submit"}, "Filter"));
  for (const [k, v] of query) if (form.elements[k]) form.elements[k].value = v;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const k of ["state", "worker", "label", "name", "owner", "queue"]) {
      if (form.elements[k].value.trim()) q.set(k, form.elements[k].value.trim());
    }
    location.hash = "#/tasks" + (q.toString() ? "?" + q : "");
  });
  const table = h("table", {id: "tasks"});
  const pager = h("div", {class: "pager"});
  main.replaceChildren(h("h1", {}, "Tasks"), form, table, pager);
  const cursors = [null]; // cursors of the pages seen, to go back
  const load = async () => {
    const q = new URLSearchParams(query);
    q.set("limit", "25");
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    const list = await api("/v1/tasks?" + q);
    table.replaceChildren(
      h("tr", {}, ["id", "name", "state", "command", "owner", "worker", "created", "exit"].map(
        (c) => h("th", {}, c))),
      ...list.tasks.map((t) => h("tr", {"data-id": t.id},
        h("td", {class: "mono"}, h("a", {href: "#/task/" + t.id}, t.id)),
        h("td", {}, t.name || ""), h("td", {}, badge(t.state)),
        h("td", {class: "cmd", title: command(t)}, command(t)),
        h("td", {"data-field": "owner"}, t.owner || ""),
        h("td", {}, t.worker_id || ""), h("td", {}, when(t.created_at)),
        h("td", {}, t.exit_code ?? (t.signal ? "signal " + t.signal : "")))));
    if (!list.tasks.length) table.append(h("tr", {}, h("td", {colspan: 8, class: "muted"},
      "no tasks")));
    pager.replaceChildren(
      h("button", {type: "button", disabled: cursors.length === 1, onclick: () => {
        cursors.pop(); load().catch((e) => say(e.message)); }}, "← Newer"),
      h("button", {type: "button", id: "older", disabled: !list.next_cursor, onclick: () => {
        cursors.push(list.next_cursor); load().catch((e) => say(e.message)); }}, "Older →"));
  };
  repeat(() => (cursors.length === 1 ? load() : Promise.resolve()), 2000, signal);
}

function taskPage(signal, id) {
  const title = h("h1", {}, "Task ", h("span", {class: "mono"}, id), " ");
  const cancel = h("button", {type: "button", class: "danger", id: "cancel", disabled: true},
    "Cancel");
  const spec = h("dl", {class: "spec", id: "spec"});
  const attempts = h("table", {id: "attempts"});
  const output = h("pre", {class: "output", id: "output"});
  const state = h("span", {id: "task-state"});
  const raw = (stream) => h("button", {type: "button", class: "small", id: "download-" + stream,
    onclick: () => download("/v1/tasks/" + id + "/output?stream=" + stream,
      id + "." + stream)}, stream);
  // the output first, as it was written across both streams; the spec folded below it
  main.replaceChildren(h("div", {}, title, state, " ", cancel),
    h("h2", {}, "Output ", h("span", {class: "downloads"}, "download: ", raw("stdout"), " ",
      raw("stderr"))), output,
    h("details", {id: "spec-fold"}, h("summary", {}, "Spec"), spec),
    h("h2", {}, "Attempts"), attempts);
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { await api("/v1/tasks/" + id + "/cancel", {method: "POST"}); await refresh(); }
    catch (e) { say(e.message); cancel.disabled = false; }
  });
  const refresh = async () => {
    const t = await api("/v1/tasks/" + id);
    state.replaceChildren(badge(t.state));
    const who = await whoami();
    cancel.hidden = !(may(who, "cancel any task") ||
      (may(who, "cancel own tasks") && who.name === t.submitted_by));
    cancel.disabled = TERMINAL.has(t.state);
    const rows = [["name", t.name || ""], ["command", command(t)], ["shell", t.shell ? "yes" : "no"],
      ["env", Object.keys(t.env || {}).join(" ")],
      ["secret env", (t.secret_env || []).join(" ")], ["cwd", t.cwd || ""],
      ["labels", labelText(t.labels)], ["on", t.on || ""], ["needs", needs(t)],
      ["after", (t.after || []).join(" ")], ["job", t.job ? t.job + " (on " + t.pinned_worker + ")" : ""],
      // a limit's reason (a quota, a concurrency key) says the task waits its turn (as `show`)
      [(t.unschedulable || "").startsWith("waiting") ? "waiting" : "unschedulable",
        t.unschedulable || ""], ["priority", t.priority],
      ["queue", t.queue || ""],
      ["concurrency", t.concurrency_key ? t.concurrency_key + " (at most " + t.concurrency_limit + " at once)" : ""],
      ["timeout", t.timeout_s ? t.timeout_s + " s" : ""], ["submitted by", t.submitted_by || ""],
      ["worker", t.worker_id || ""], ["exit code", t.exit_code ?? ""],
      ["signal", t.signal ?? ""], ["error", t.error || ""], ["created", when(t.created_at)],
      ["started", when(t.started_at)], ["finished", when(t.finished_at)],
      ["ran for", seconds(t.started_at, t.finished_at)]];
    spec.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k),
      h("dd", {"data-field": k, class: k === "command" ? "mono" : ""}, String(v))]));
    attempts.replaceChildren(
      h("tr", {}, ["#", "worker", "state", "started", "finished", "took", "exit", "cpu",
        "peak memory", "error"].map((c) => h("th", {}, c))),
      ...(t.attempts || []).map((a) => h("tr", {},
        h("td", {}, a.attempt), h("td", {}, a.worker_id), h("td", {}, badge(a.state)),
        h("td", {}, when(a.started_at)), h("td", {}, when(a.finished_at)),
        h("td", {}, seconds(a.started_at, a.finished_at)),
        h("td", {}, a.exit_code ?? (a.signal ? "signal " + a.signal : "")),
        h("td", {"data-field": "cpu"}, a.cpu_s == null ? "" : a.cpu_s.toFixed(2) + " s"),
        h("td", {"data-field": "peak memory"}, bytes(a.peak_memory_bytes)),
        h("td", {}, a.error || ""))));
    return t;
  };
  refresh().catch((e) => say(e.message));
  events("/v1/tasks/" + id + "/output?follow=true", (name, data) => {
    live.classList.add("on");
    if (name === "output") {
      output.append(h("span", {class: data.stream}, data.text));
      output.scrollTop = output.scrollHeight;
    } else if (name === "gap") {
      output.append(h("span", {class: "gap"},
        `[${data.dropped} bytes of ${data.stream} not kept]\n`));
    } else if (name === "state" || name === "end") {
      refresh().catch((e) => say(e.message));
    }
  }, signal).catch((e) => { if (!signal.aborted) say(e.message); })
    .finally(() => live.classList.remove("on"));
}

function workersPage(signal) {
  const table = h("table", {id: "workers"});
  main.replaceChildren(h("h1", {}, "Workers"), table);
  const load = async () => {
    const list = await api("/v1/workers");
    const canDrain = may(await whoami(), "drain workers");
    table.replaceChildren(
      h("tr", {}, ["id", "state", "host", "labels", "resources", "slots", "running",
        "assigned", "containment", "last heartbeat", "version", ""].map((c) => h("th", {}, c))),
      ...list.workers.map((w) => h("tr", {"data-id": w.id},
        h("td", {class: "mono"}, w.id), h("td", {title: w.quarantined || ""}, badge(w.quarantined ? "quarantined" : w.state)), h("td", {}, w.hostname),
        h("td", {}, labelText(w.labels)), h("td", {class: "resources"}, resources(w.resources)),
        h("td", {}, w.slots),
        h("td", {}, h("a", {href: "#/tasks?state=running&worker=" + encodeURIComponent(w.id)},
          w.running)),
        h("td", {title: "not started yet: on their way, or held until a slot frees"},
          h("a", {href: "#/tasks?state=assigned&worker=" + encodeURIComponent(w.id)},
            w.assigned)),
        h("td", {class: "containment"}, w.containment || ""),
        h("td", {}, when(w.last_seen)), h("td", {}, w.version),
        h("td", {}, !canDrain ? null : h("button", {type: "button", class: "danger",
          disabled: w.state !== "online" || w.legacy, onclick: async (ev) => {
            ev.target.disabled = true;
            try { await api("/v1/workers/" + encodeURIComponent(w.id) + "/drain",
              {method: "POST"}); await load(); } catch (e) { say(e.message); }
          }}, "Drain")))));
    if (!list.workers.length) table.append(h("tr", {}, h("td", {colspan: 12, class: "muted"},
      "no workers yet: start one with `gridrun worker`")));
  };
  repeat(load, 2000, signal);
}

function submitPage(signal) {
  const known = h("div", {id: "known-labels", class: "muted"});
  const form = h("form", {class: "submit", id: "submit-form"},
    h("label", {}, "command", h("input", {name: "cmd", class: "wide", required: true,
      placeholder: "python3 etl.py --day 2026-11-24"})),
    h("label", {class: "inline"}, h("input", {type: "checkbox", name: "shell"}),
      " run with /bin/sh"),
    h("label", {}, "labels (k=v, space-separated)", h("input", {name: "labels", size: 24})),
    h("label", {}, "name", h("input", {name: "name", size: 14})),
    h("label", {}, "timeout (s)", h("input", {name: "timeout", type: "number", min: 0,
      step: "any", size: 6})),
    h("button", {type: "submit", class: "primary"}, "Submit"));
  main.replaceChildren(h("h1", {}, "Submit a command"), form, known);
  whoami().then((who) => {
    if (who && !may(who, "submit")) {
      form.querySelector("button[type=submit]").disabled = true;
      form.after(h("p", {class: "muted", id: "submit-denied"},
        `this token (${who.name}, role ${who.role}) may not submit`));
    }
  });
  api("/v1/workers").then((list) => {
    const labels = new Set(list.workers.flatMap((w) => Object.entries(w.labels).map(
      ([k, v]) => k + "=" + v)));
    if (!labels.size) return;
    known.replaceChildren("workers offer: ", ...[...labels].sort().map((l) => h("button", {
      type: "button", class: "label-choice", onclick: () => {
        const field = form.elements.labels;
        const have = field.value.split(/\s+/).filter(Boolean);
        if (!have.includes(l)) field.value = [...have, l].join(" ");
      }}, l)));
  }).catch(() => { /* the form works without suggestions */ });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = {cmd: f.cmd.value, shell: f.shell.checked, labels: {}};
    for (const item of f.labels.value.split(/[\s,]+/).filter(Boolean)) {
      const at = item.indexOf("=");
      if (at < 1) { say(`label ${item} must look like key=value`); return; }
      body.labels[item.slice(0, at)] = item.slice(at + 1);
    }
    if (f.name.value.trim()) body.name = f.name.value.trim();
    if (f.timeout.value) body.timeout_s = Number(f.timeout.value);
    try {
      const task = await api("/v1/tasks", {method: "POST", body: JSON.stringify(body),
        headers: {"Content-Type": "application/json"}});
      location.hash = "#/task/" + task.id;
    } catch (e) { say(e.message); }
  });
}

function route() {
  if (page) page.abort();
  page = new AbortController();
  say("");
  live.classList.remove("on");
  const [path, qs] = location.hash.replace(/^#/, "").split("?");
  const parts = (path || "/").split("/").filter(Boolean);
  const name = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === (name === "task" ? "tasks" : name));
  }
  const query = new URLSearchParams(qs || "");
  if (name === "tasks") tasksPage(page.signal, query);
  else if (name === "task" && parts[1]) taskPage(page.signal, decodeURIComponent(parts[1]));
  else if (name === "workers") workersPage(page.signal);
  else if (name === "submit") submitPage(page.signal);
  else overviewPage(page.signal);
}

document.getElementById("token-button").addEventListener("click", () => {
  const token = prompt("API token (kept in this browser's local storage; empty to forget it)",
    localStorage.getItem(TOKEN_KEY) || "");
  if (token === null) return;
  if (token.trim()) localStorage.setItem(TOKEN_KEY, token.trim());
  else localStorage.removeItem(TOKEN_KEY);
  me = null;
  route();
});
window.addEventListener("hashchange", route);
route();
