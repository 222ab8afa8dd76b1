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
// Times in one format, 24 h, UTC unless this browser was told to use its own zone (the
// header's button), as the CLI prints them.
const TZ_KEY = "gridrun.tz";
function utc() { return localStorage.getItem(TZ_KEY) !== "local"; }
function stamp(date) {
  const p = (n) => String(n).padStart(2, "0");
  const [y, mo, d, hh, mm, ss] = utc()
    ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(),
      date.getUTCMinutes(), date.getUTCSeconds()]
    : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(),
      date.getMinutes(), date.getSeconds()];
  return `${y}-${p(mo)}-${p(d)} ${p(hh)}:${p(mm)}:${p(ss)}`;
}
function when(iso) { return iso ? stamp(new Date(iso)) : ""; }
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
function span2(secs) {
  if (secs < 60) return secs.toFixed(2) + " s";
  const m = Math.floor(secs / 60), s2 = Math.floor(secs % 60);
  if (m < 60) return `${m}m ${String(s2).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}
function seconds(a, b) { return a && b ? span2((new Date(b) - new Date(a)) / 1000) : ""; }
// how long a task ran, or has been running (…)
function took(t) {
  if (!t.started_at) return "";
  if (t.finished_at) return seconds(t.started_at, t.finished_at);
  return TERMINAL.has(t.state) ? "" : span2(Math.max(0, (Date.now() -
    new Date(t.started_at)) / 1000)) + "…";
}
// why a task ended as it did, or why it waits: its error, else its limit or unschedulable reason
function reason(t) { return t.error || (t.state === "queued" ? t.unschedulable : "") || ""; }
// a table that scrolls sideways on a narrow screen rather than widening the page
function scroll(table) { return h("div", {class: "scroll"}, table); }

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
      h("h2", {}, "Tasks per state"),
      scroll(h("table", {id: "states"},
        h("tr", {}, states.map(([s]) => h("th", {}, badge(s)))),
        h("tr", {}, states.map(([s, n]) => h("td", {"data-count": s},
          h("a", {href: "#/tasks?state=" + s}, n)))))));
  };
  events("/v1/events", (name, data) => { if (name === "overview") { live.classList.add("on");
    say(""); draw(data); } }, signal)
    .catch((e) => { if (!signal.aborted) say(e.message); })
    .finally(() => live.classList.remove("on"));
  main.append(h("h2", {}, "The last hour ", h("span", {class: "muted", id: "charts-note"})),
    charts(signal));
  // who holds the grid: tasks queued and running per owner and queue (a heavier read than
  // the overview's counts, so every 5 s rather than each second)
  const owners = h("table", {id: "owners"});
  const storage = h("div", {class: "cards", id: "storage"});
  main.append(h("h2", {}, "Owners and queues"), scroll(owners), h("h2", {}, "Storage"), storage);
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
      card("oldest task", s.oldest_task_at ? when(s.oldest_task_at) : "-",
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

// ---- the overview's charts (uPlot, served by the master): the grid sampled every step
// (GET /v1/history), redrawn every 2 s; each chart's element carries its series' last
// values and sums (data-last, data-sum) for whoever reads the page without eyes.

const COLORS = ["#2457c5", "#b54708", "#c0362c", "#1a7f37"];

function span(s) {
  if (s < 1) return Math.round(s * 1000) + "ms";
  if (s < 60) return s + "s";
  if (s < 3600) return s / 60 + "m";
  return s / 3600 + "h";
}

function chart(id, title) {
  const box = h("div", {class: "chart", id}, h("div", {class: "chart-title"}, title));
  return {box, plot: null, opts: null};
}

function plotData(c, opts, data, counted) {
  const box = c.box;
  const raw = (counted || data).slice(1); // counts, where the chart draws rates
  box.dataset.last = raw.map((ys) => ys.length ? ys[ys.length - 1] : 0).join(",");
  box.dataset.sum = raw.map((ys) => ys.reduce((a, b) => a + b, 0)).join(",");
  box.dataset.points = data[0].length;
  if (!c.plot) {
    c.plot = new uPlot(Object.assign({width: Math.max(200, box.clientWidth - 16), height: 170},
      opts), data, box);
  } else {
    c.plot.setData(data);
  }
}

function lines(labels, perMinute) {
  const tz = utc() ? (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC") : undefined;
  return {
    tzDate: tz,
    scales: {x: {time: true}, y: {range: (u, min, max) => [0, Math.max(perMinute ? 1 : 2, max)]}},
    // the time axis in the dashboard's one format (24 h; UTC unless asked otherwise)
    axes: [{values: (u, splits) => {
      const fine = splits.length > 1 && splits[1] - splits[0] < 60; // ticks within a minute
      return splits.map((v) => stamp(new Date(v * 1e3)).slice(11, fine ? 19 : 16));
    }},
      {size: 44}],
    series: [{label: utc() ? "UTC" : "time", value: (u, v) => v == null ? "-" :
      stamp(new Date(v * 1e3)).slice(11)}, ...labels.map((label, i) => ({label,
      stroke: COLORS[i], width: 2, fill: i === 0 ? COLORS[i] + "1a" : undefined,
      points: {show: false}, value: (u, v) => v == null ? "-" : (perMinute ? v.toFixed(1) : v)}))],
  };
}

function bars(bounds) {
  const names = [...bounds.map((b) => "≤" + span(b)), ">" + span(bounds[bounds.length - 1])];
  return {
    scales: {x: {time: false, range: [-0.5, names.length - 0.5]}, y: {range: (u, min, max) =>
      [0, Math.max(1, max)]}},
    // a label on every few bars, as many as the width holds
    axes: [{splits: () => names.map((_, i) => i), values: (u, splits) => {
      const every = Math.max(1, Math.ceil(names.length * 48 / Math.max(1, u.bbox.width /
        devicePixelRatio)));
      return splits.map((i) => i % every === 0 ? names[i] : "");
    }, gap: 4}, {size: 44}],
    series: [{label: "bucket", value: (u, v) => v == null ? "-" : names[v]},
      {label: "tasks", stroke: COLORS[0], fill: COLORS[0] + "99",
        paths: uPlot.paths.bars({size: [0.8, 40]}), points: {show: false}}],
    cursor: {points: {show: false}},
  };
}

function charts(signal) {
  const made = {
    queue: chart("chart-queue", "Queue depth (and sent to workers, not started)"),
    running: chart("chart-running", "Running vs slots"),
    finished: chart("chart-finished", "Finished and failed per minute"),
    latency: chart("chart-latency", "Dispatch latency (submitted to started)"),
    duration: chart("chart-duration", "Run duration"),
  };
  const panel = h("div", {class: "charts", id: "charts"}, Object.values(made).map((c) => c.box));
  const resize = () => {
    for (const c of Object.values(made)) {
      if (c.plot) c.plot.setSize({width: Math.max(200, c.box.clientWidth - 16), height: 170});
    }
  };
  window.addEventListener("resize", resize);
  signal.addEventListener("abort", () => {
    window.removeEventListener("resize", resize);
    for (const c of Object.values(made)) if (c.plot) c.plot.destroy();
  });
  repeat(async () => {
    const got = await api("/v1/history");
    if (signal.aborted) return;
    const xs = got.samples.map((p) => p.at / 1000);
    const col = (k) => got.samples.map((p) => p[k]);
    const rate = (k) => got.samples.map((p, i) => {
      // the live end's step is still open: its rate is of the part of the step gone by
      const took = i === got.samples.length - 1 && i > 0
        ? Math.max(1, (p.at - got.samples[i - 1].at) / 1000) : got.step_s;
      return p[k] * 60 / took;
    });
    const note = document.getElementById("charts-note");
    if (note) note.textContent = `(a sample every ${got.step_s} s; finishes as this master saw them)`;
    plotData(made.queue, lines(["queued", "assigned"]), [xs, col("queued"), col("assigned")]);
    plotData(made.running, lines(["running", "slots"]), [xs, col("running"), col("slots")]);
    plotData(made.finished, lines(["finished", "failed"], true),
      [xs, rate("finished"), rate("failed")], [xs, col("finished"), col("failed")]);
    const idx = (d) => d.counts.map((_, i) => i);
    plotData(made.latency, bars(got.latency.bounds_s), [idx(got.latency), got.latency.counts]);
    plotData(made.duration, bars(got.duration.bounds_s), [idx(got.duration),
      got.duration.counts]);
  }, 2000, signal);
  return panel;
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
    h("label", {}, "job", h("input", {name: "job", size: 12})),
    h("button", {type: "submit"}, "Filter"));
  for (const [k, v] of query) if (form.elements[k]) form.elements[k].value = v;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const k of ["state", "worker", "label", "name", "owner", "queue", "job"]) {
      if (form.elements[k].value.trim()) q.set(k, form.elements[k].value.trim());
    }
    location.hash = "#/tasks" + (q.toString() ? "?" + q : "");
  });
  const table = h("table", {id: "tasks"});
  const pager = h("div", {class: "pager"});
  main.replaceChildren(h("h1", {}, "Tasks"), form, scroll(table), pager);
  const cursors = [null]; // cursors of the pages seen, to go back
  const load = async () => {
    const q = new URLSearchParams(query);
    q.set("limit", "25");
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    const list = await api("/v1/tasks?" + q);
    table.replaceChildren(
      h("tr", {}, ["id", "name", "state", "command", "owner", "worker", "created", "took",
        "exit", "reason"].map((c) => h("th", {}, c))),
      ...list.tasks.map((t) => h("tr", {"data-id": t.id},
        h("td", {class: "mono"}, h("a", {href: "#/task/" + t.id}, t.id)),
        h("td", {}, t.name || ""), h("td", {}, badge(t.state)),
        h("td", {class: "cmd", title: command(t)}, command(t)),
        h("td", {"data-field": "owner"}, t.owner || ""),
        h("td", {}, t.worker_id || ""), h("td", {class: "when"}, when(t.created_at)),
        h("td", {"data-field": "took", class: "when"}, took(t)),
        h("td", {"data-field": "exit"}, t.exit_code ?? (t.signal ? "signal " + t.signal : "")),
        h("td", {"data-field": "reason", class: "reason", title: reason(t)}, reason(t)))));
    if (!list.tasks.length) table.append(h("tr", {}, h("td", {colspan: 10, class: "muted"},
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
  const files = h("table", {id: "files"});
  const filesPart = h("section", {id: "files-part", hidden: true}, h("h2", {}, "Files"),
    scroll(files));
  const output = h("pre", {class: "output", id: "output"});
  const state = h("span", {id: "task-state"});
  const raw = (stream) => h("button", {type: "button", class: "small", id: "download-" + stream,
    onclick: () => download("/v1/tasks/" + id + "/output?stream=" + stream,
      id + "." + stream)}, stream);
  // the output first, as it was written across both streams; the spec folded below it
  const jobLink = h("span", {id: "job-link"});
  main.replaceChildren(h("div", {}, title, state, " ", cancel, " ", jobLink),
    h("h2", {}, "Output ", h("span", {class: "downloads"}, "download: ", raw("stdout"), " ",
      raw("stderr"))), output,
    h("details", {id: "spec-fold"}, h("summary", {}, "Spec"), spec),
    h("h2", {}, "Attempts"), scroll(attempts), filesPart);
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { await api("/v1/tasks/" + id + "/cancel", {method: "POST"}); await refresh(); }
    catch (e) { say(e.message); cancel.disabled = false; }
  });
  const refresh = async () => {
    const t = await api("/v1/tasks/" + id);
    state.replaceChildren(badge(t.state));
    jobLink.replaceChildren(...(t.job ? [h("a", {href: "#/job/" + t.job}, "job " + t.job +
      (t.job_index == null ? "" : ", index " + t.job_index))] : []));
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
    // only what the task has: an empty row says nothing
    const said = rows.filter(([, v]) => v !== "" && v !== null && v !== undefined);
    spec.replaceChildren(...said.flatMap(([k, v]) => [h("dt", {}, k),
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
    if ((t.collect || []).length) await showFiles();
    return t;
  };
  // the files collected from its attempts: each complete one a download (with the token)
  const showFiles = async () => {
    const listed = (await api("/v1/tasks/" + id + "/files")).files;
    filesPart.hidden = false;
    const link = (f) => h("button", {type: "button", class: "small", "data-path": f.path,
      onclick: () => download("/v1/tasks/" + id + "/files/" +
        f.path.split("/").map(encodeURIComponent).join("/") + "?attempt=" + f.attempt,
      f.path.split("/").pop())}, "download");
    files.replaceChildren(
      h("tr", {}, ["#", "path", "size", "sha256", "state", ""].map((c) => h("th", {}, c))),
      ...listed.map((f) => h("tr", {"data-file": f.path},
        h("td", {}, f.attempt), h("td", {class: "mono"}, f.path), h("td", {}, bytes(f.size)),
        h("td", {class: "mono", title: f.sha256}, f.sha256.slice(0, 12)),
        h("td", {}, f.reason ? f.state + ": " + f.reason : f.state),
        h("td", {}, f.state === "complete" ? link(f) : ""))));
    if (!listed.length) files.replaceChildren(h("tr", {}, h("td", {}, "none collected (yet)")));
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

// ---- jobs: arrays, --file batches and broadcasts, each as one

function progress(j) {
  const pct = j.size ? Math.round(100 * j.ended / j.size) : 0;
  return h("span", {class: "progress"}, h("progress", {max: j.size || 1, value: j.ended}),
    ` ${j.ended.toLocaleString("en")} / ${j.size.toLocaleString("en")} (${pct}%)`);
}

function jobsPage(signal) {
  const table = h("table", {id: "jobs"});
  main.replaceChildren(h("h1", {}, "Jobs"), scroll(table));
  repeat(async () => {
    const list = (await api("/v1/jobs?limit=50")).jobs;
    table.replaceChildren(
      h("tr", {}, ["id", "kind", "name", "progress", "succeeded", "not succeeded", "owner",
        "created", "command"].map((c) => h("th", {}, c))),
      ...list.map((j) => h("tr", {"data-id": j.id},
        h("td", {class: "mono"}, h("a", {href: "#/job/" + j.id}, j.id)),
        h("td", {}, j.kind), h("td", {}, j.name || ""), h("td", {}, progress(j)),
        h("td", {"data-count": "succeeded"}, j.succeeded),
        h("td", {"data-count": "unsuccessful"}, j.ended - j.succeeded),
        h("td", {}, j.owner || ""), h("td", {class: "when"}, when(j.created_at)),
        h("td", {class: "cmd", title: j.command}, j.command))));
    if (!list.length) table.append(h("tr", {}, h("td", {colspan: 9, class: "muted"},
      "no jobs yet: gridrun submit --array 1-10 -- CMD")));
  }, 3000, signal);
}

function jobPage(signal, id) {
  const head = h("div", {id: "job-head"});
  const counts = h("div", {id: "job-counts", class: "counts"});
  const matrix = h("div", {id: "matrix", class: "matrix"});
  const failed = h("table", {id: "unsuccessful"});
  const cancel = h("button", {type: "button", class: "danger", id: "job-cancel", hidden: true},
    "Cancel");
  const retry = h("button", {type: "button", id: "job-retry", hidden: true}, "Retry failed");
  main.replaceChildren(h("h1", {}, "Job ", h("span", {class: "mono"}, id), " "),
    h("div", {class: "actions"}, cancel, " ", retry), head, counts,
    h("h2", {}, "Tasks ", h("span", {class: "muted"}, "(one cell each, by index)")), matrix,
    h("h2", {}, "Did not succeed"), scroll(failed));
  const act = (button, path) => button.addEventListener("click", async () => {
    button.disabled = true;
    try { await api("/v1/jobs/" + id + path, {method: "POST"}); await load(); }
    catch (e) { say(e.message); }
    button.disabled = false;
  });
  act(cancel, "/cancel");
  act(retry, "/retry");
  const load = async () => {
    const [j, cells, who] = await Promise.all([api("/v1/jobs/" + id + "?tasks=false"),
      api("/v1/jobs/" + id + "/cells"), whoami()]);
    const mine = who && who.name === j.owner;
    cancel.hidden = !(may(who, "cancel any task") || (may(who, "cancel own tasks") && mine));
    retry.hidden = cancel.hidden || !may(who, "submit");
    cancel.disabled = j.ended === j.size;
    retry.disabled = j.ended === j.succeeded;
    head.replaceChildren(h("dl", {class: "spec"},
      h("dt", {}, "kind"), h("dd", {"data-field": "kind"}, j.kind),
      ...(j.name ? [h("dt", {}, "name"), h("dd", {}, j.name)] : []),
      h("dt", {}, "command"), h("dd", {class: "mono"}, j.command),
      h("dt", {}, "owner"), h("dd", {}, j.owner || ""),
      h("dt", {}, "created"), h("dd", {}, when(j.created_at)),
      ...(j.max_running ? [h("dt", {}, "at most"), h("dd", {}, j.max_running + " at once")] : []),
      h("dt", {}, "progress"), h("dd", {"data-field": "progress"}, progress(j))));
    counts.replaceChildren(...Object.entries(j.counts).filter(([, n]) => n).map(([s, n]) =>
      h("span", {class: "count", "data-count": s}, badge(s), " ", n.toLocaleString("en"))));
    matrix.classList.toggle("few", cells.ids.length <= 400); // bigger cells for a small job
    matrix.replaceChildren(...cells.ids.map((taskId, i) => {
      const state = cells.states[i], index = cells.indexes[i];
      return h("a", {href: "#/task/" + taskId, class: "cell " + state, "data-state": state,
        "data-index": index ?? "", title: (index == null ? "" : "index " + index + ": ") + state});
    }));
    if (cells.more) matrix.append(h("span", {class: "muted"}, ` and ${cells.more} more`));
    failed.replaceChildren(
      h("tr", {}, ["index", "task", "state", "exit", "error"].map((c) => h("th", {}, c))),
      ...j.unsuccessful.map((t) => h("tr", {"data-index": t.index ?? ""},
        h("td", {}, t.index ?? ""), h("td", {class: "mono"}, h("a", {href: "#/task/" + t.id},
          t.id)), h("td", {}, badge(t.state)),
        h("td", {}, t.exit_code ?? (t.signal ? "signal " + t.signal : "")),
        h("td", {}, t.error || ""))));
    if (!j.unsuccessful.length) failed.append(h("tr", {}, h("td", {colspan: 5, class: "muted"},
      "none")));
  };
  repeat(load, 2000, signal);
}

function workersPage(signal) {
  const table = h("table", {id: "workers"});
  main.replaceChildren(h("h1", {}, "Workers"), scroll(table));
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
  const field = (label, attrs) => h("label", {}, label, h("input", attrs));
  const form = h("form", {class: "submit", id: "submit-form"},
    h("label", {class: "full"}, "command", h("input", {name: "cmd", class: "wide",
      required: true, placeholder: "python3 etl.py --day 2026-11-24"})),
    h("label", {class: "inline"}, h("input", {type: "checkbox", name: "shell"}),
      " run with /bin/sh"),
    h("label", {class: "inline"}, h("input", {type: "checkbox", name: "all"}),
      " once on every matching worker"),
    field("name", {name: "name", size: 14}),
    field("labels (k=v, space-separated)", {name: "labels", size: 24}),
    field("on (selector: k!=v, 'k in (a,b)', !k)", {name: "on", size: 24,
      placeholder: "zone in (a,b), !spot"}),
    field("env (K=V, space-separated)", {name: "env", size: 24}),
    field("cwd", {name: "cwd", size: 16, placeholder: "/srv/etl"}),
    field("priority", {name: "priority", type: "number", step: 1, value: 0, size: 5}),
    field("tries in all", {name: "max_attempts", type: "number", min: 1, max: 100, step: 1,
      value: 1, size: 4}),
    field("timeout (s)", {name: "timeout", type: "number", min: 0, step: "any", size: 6}),
    field("queue", {name: "queue", size: 10, placeholder: "default"}),
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
    const body = {cmd: f.cmd.value, shell: f.shell.checked, labels: {}, env: {}};
    const pairs = (text, into, what) => { // env values may hold commas, labels may not
      for (const item of text.split(what === "env" ? /\s+/ : /[\s,]+/).filter(Boolean)) {
        const at = item.indexOf("=");
        if (at < 1) { say(`${what} ${item} must look like ${what === "env" ? "K=V" : "key=value"}`);
          return false; }
        into[item.slice(0, at)] = item.slice(at + 1);
      }
      return true;
    };
    if (!pairs(f.labels.value, body.labels, "label") || !pairs(f.env.value, body.env, "env")) {
      return;
    }
    for (const k of ["name", "on", "cwd", "queue"]) {
      if (f[k].value.trim()) body[k] = f[k].value.trim();
    }
    if (f.priority.value) body.priority = Number(f.priority.value);
    if (f.max_attempts.value) body.max_attempts = Number(f.max_attempts.value);
    if (f.timeout.value) body.timeout_s = Number(f.timeout.value);
    if (f.all.checked) {
      try {
        const job = await api("/v1/jobs", {method: "POST", body: JSON.stringify(body),
          headers: {"Content-Type": "application/json"}});
        location.hash = "#/tasks?job=" + encodeURIComponent(job.id);
      } catch (e) { say(e.message); }
      return;
    }
    try {
      const task = await api("/v1/tasks", {method: "POST", body: JSON.stringify(body),
        headers: {"Content-Type": "application/json"}});
      location.hash = "#/task/" + task.id;
    } catch (e) { say(e.message); }
  });
}

// Allocation queues (admin): each with its caps, state and reason, pause/resume, and its
// allocations (Slurm job ids, states, workers online, errors).
function allocPage(signal) {
  const body = h("div", {id: "alloc-queues"});
  main.replaceChildren(h("h1", {}, "Allocation queues"), body);
  const secs = (s) => s % 3600 === 0 ? s / 3600 + "h" : s % 60 === 0 ? s / 60 + "m" : s + "s";
  repeat(async () => {
    const who = await whoami();
    if (who && !may(who, "manage allocation queues")) {
      body.replaceChildren(h("p", {class: "muted", id: "alloc-denied"},
        `this token (${who.name}, role ${who.role}) may not see the allocation queues:`
        + " an admin token may"));
      return;
    }
    const list = (await api("/v1/alloc/queues")).queues;
    const queues = await Promise.all(list.map((q) => api("/v1/alloc/queues/"
      + encodeURIComponent(q.name))));
    if (!queues.length) {
      body.replaceChildren(h("p", {class: "muted"}, "no allocation queues: gridrun alloc add"
        + " slurm --name Q --time-limit 1h -- SBATCH-ARGS"));
      return;
    }
    body.replaceChildren(...queues.map((q) => {
      const paused = q.state === "paused";
      const toggle = h("button", {type: "button", class: "alloc-toggle", "data-queue": q.name},
        paused ? "Resume" : "Pause");
      toggle.addEventListener("click", async () => {
        toggle.disabled = true;
        try {
          await api("/v1/alloc/queues/" + encodeURIComponent(q.name)
            + (paused ? "/resume" : "/pause"), {method: "POST"});
        } catch (e) { say(e.message); }
      });
      const c = q.config;
      const caps = [c.backend, "time limit " + secs(c.time_limit), "backlog " + c.backlog,
        "max workers " + (c.max_workers ?? "-"),
        c.workers_per_alloc + (c.workers_per_alloc === 1 ? " worker" : " workers") + " each",
        "idle " + secs(c.idle_timeout)].concat(c.slots ? [c.slots + " slots"] : [],
        Object.entries(c.labels).map(([k, v]) => k + "=" + v),
        c.args.length ? ["arguments: " + c.args.join(" ")] : []);
      const rows = (q.allocations || []).map((a) => h("tr", {"data-alloc": a.id},
        h("td", {class: "mono"}, a.id), h("td", {class: "mono"}, a.backend_id || "-"),
        h("td", {}, badge(a.state)), h("td", {}, a.workers_online + " / " + a.workers),
        h("td", {class: "when"}, when(a.created_at)), h("td", {class: "when"},
          when(a.ended_at)), h("td", {}, a.error || "")));
      const table = h("table", {class: "allocations"}, h("tr", {}, ["allocation", "job",
        "state", "online", "created", "ended", "error"].map((t) => h("th", {}, t))), ...rows);
      if (!rows.length) table.append(h("tr", {}, h("td", {colspan: 7, class: "muted"},
        "no allocations yet")));
      return h("section", {class: "alloc-queue", "data-queue": q.name},
        h("h2", {}, q.name, " ", badge(q.state), " ", toggle),
        h("p", {class: "muted"}, caps.join(", ")),
        q.reason ? h("p", {class: "reason", "data-field": "reason"}, q.reason) : null,
        scroll(table));
    }));
  }, 3000, signal);
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
    const nav = name === "task" ? "tasks" : name === "job" ? "jobs" : name;
    a.classList.toggle("active", a.dataset.page === nav);
  }
  const query = new URLSearchParams(qs || "");
  if (name === "tasks") tasksPage(page.signal, query);
  else if (name === "jobs") jobsPage(page.signal);
  else if (name === "job" && parts[1]) jobPage(page.signal, decodeURIComponent(parts[1]));
  else if (name === "task" && parts[1]) taskPage(page.signal, decodeURIComponent(parts[1]));
  else if (name === "workers") workersPage(page.signal);
  else if (name === "alloc") allocPage(page.signal);
  else if (name === "submit") submitPage(page.signal);
  else overviewPage(page.signal);
}

const tzButton = document.getElementById("tz-button");
tzButton.textContent = utc() ? "UTC" : "local time";
tzButton.addEventListener("click", () => {
  if (utc()) localStorage.setItem(TZ_KEY, "local");
  else localStorage.removeItem(TZ_KEY);
  tzButton.textContent = utc() ? "UTC" : "local time";
  route();
});
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
