// The agentlog console: one page, routed by the URL's hash, reading /ui/api/*.
// DOM is built with el() (text nodes only, never innerHTML of data), so record
// contents can never inject markup.
"use strict";

const main = document.getElementById("main");
const HISTORY_MS = 10 * 60 * 1000; // charts show the last ten minutes
const SAMPLE_MS = 3000;
const samples = []; // {time, ends: {topic: sum of high watermarks}, lag: {group: lag}}
let refresh = null; // the current page's live-refresh timer
let settings = { actions: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(path, options) {
  const response = await fetch("/ui/api/" + path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function table(columns, rows, cell) {
  return el("table", {},
    el("tr", {}, columns.map((c) => el("th", {}, c))),
    rows.map((row) => el("tr", {}, columns.map((c) => {
      const value = cell ? cell(c, row) : row[c];
      const numeric = typeof value === "number";
      return el("td", numeric ? { class: "num" } : {}, value === null || value === undefined ? "–" : value);
    }))));
}

function show(title, ...content) {
  main.replaceChildren(el("h1", {}, title), ...content);
}

function fail(error) {
  main.append(el("p", { class: "error", id: "error" }, String(error.message || error)));
  document.body.dataset.ready = "error";
}

function time(ms) {
  return ms === null || ms === undefined || ms < 0 ? "–" : new Date(ms).toISOString();
}

// A value as text: JSON pretty-printed; bytes that are not UTF-8 as hex and base64.
function value(record) {
  if (record.value === null || record.value === undefined) return el("span", { class: "muted" }, "null");
  if (record.value_base64 !== undefined) {
    return el("div", {}, el("span", { class: "badge" }, "binary"),
      el("pre", { class: "hex" }, "hex " + record.value),
      el("pre", { class: "base64" }, "base64 " + record.value_base64));
  }
  try {
    const parsed = JSON.parse(record.value);
    if (typeof parsed === "object" && parsed !== null) {
      return el("pre", { class: "json" }, JSON.stringify(parsed, null, 2));
    }
  } catch (_) { /* not JSON: shown as text */ }
  return el("pre", {}, record.value);
}

function headers(record) {
  const entries = Object.entries(record.headers || {});
  return entries.length ? el("pre", {}, entries.map(([k, v]) => k + ": " + v).join("\n")) : "";
}

// --- samples and charts ---------------------------------------------------------

async function sample() {
  try {
    const overview = await api("overview");
    const ends = {};
    for (const t of overview.topics) ends[t.topic] = t.end_offsets;
    samples.push({ time: overview.time, ends, lag: overview.lag });
    while (samples.length && samples[0].time < overview.time - HISTORY_MS) samples.shift();
    return overview;
  } catch (error) {
    return null;
  }
}

// Records per second per topic between consecutive samples.
function rates() {
  const series = {};
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const seconds = Math.max((b.time - a.time) / 1000, 0.001);
    for (const [topic, end] of Object.entries(b.ends)) {
      if (!(topic in a.ends)) continue;
      (series[topic] = series[topic] || []).push([b.time, Math.max(0, end - a.ends[topic]) / seconds]);
    }
  }
  return series;
}

function lagSeries(only) {
  const series = {};
  for (const s of samples) {
    for (const [group, lag] of Object.entries(s.lag)) {
      if (only && group !== only) continue;
      (series[group] = series[group] || []).push([s.time, lag]);
    }
  }
  return series;
}

const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285"];

// An SVG line chart of up to six series of [time, value] points.
function chart(title, series, unit) {
  const width = 460, height = 160, pad = 30;
  const names = Object.keys(series)
    .sort((a, b) => Math.max(...series[b].map((p) => p[1])) - Math.max(...series[a].map((p) => p[1])))
    .slice(0, COLORS.length);
  const points = names.flatMap((n) => series[n]);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("class", "chart-svg");
  const now = Date.now();
  const t0 = now - HISTORY_MS;
  const max = Math.max(1, ...points.map((p) => p[1]));
  const x = (t) => pad + ((t - t0) / HISTORY_MS) * (width - pad - 5);
  const y = (v) => height - 15 - (v / max) * (height - 30);
  const line = (x1, y1, x2, y2) => {
    const l = document.createElementNS(ns, "line");
    Object.entries({ x1, y1, x2, y2, stroke: "#ccd" }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const label = (tx, ty, text) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", tx);
    t.setAttribute("y", ty);
    t.textContent = text;
    svg.append(t);
  };
  line(pad, height - 15, width - 5, height - 15);
  line(pad, 10, pad, height - 15);
  label(2, 14, max.toFixed(max < 10 ? 1 : 0));
  label(2, height - 17, "0");
  label(pad, height - 2, "-10 min");
  label(width - 30, height - 2, "now");
  names.forEach((name, i) => {
    const path = document.createElementNS(ns, "polyline");
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", COLORS[i]);
    path.setAttribute("stroke-width", "1.5");
    path.setAttribute("points", series[name].map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" "));
    svg.append(path);
  });
  return el("div", { class: "chart" }, el("div", {}, title + " (" + unit + ")"), svg,
    el("div", { class: "legend" }, names.length
      ? names.map((n, i) => el("span", { style: "color:" + COLORS[i] }, "■ " + n))
      : el("span", { class: "muted" }, "collecting samples…")));
}

// --- pages -------------------------------------------------------------------------

async function overviewPage() {
  const overview = await sample();
  if (!overview) return show("Overview", el("p", { class: "error", id: "error" }, "cannot read the cluster"));
  const rate = rates();
  const lastRate = (topic) => {
    const s = rate[topic];
    return s && s.length ? Number(s[s.length - 1][1].toFixed(1)) : null;
  };
  show("Overview",
    el("div", { class: "charts" }, chart("Throughput", rate, "records/s"), chart("Consumer lag", lagSeries(), "records")),
    el("h2", {}, "Topics (" + overview.topics.length + ")"),
    table(["topic", "partitions", "records", "records/s"], overview.topics, (c, t) =>
      c === "topic" ? el("a", { href: "#/topic/" + encodeURIComponent(t.topic) }, t.topic)
        : c === "records/s" ? lastRate(t.topic) : t[c]),
    el("h2", {}, "Consumer groups (" + overview.groups.length + ")"),
    table(["group", "state", "members", "lag"], overview.groups, (c, g) =>
      c === "group" ? el("a", { href: "#/group/" + encodeURIComponent(g.group) }, g.group)
        : c === "lag" ? overview.lag[g.group] : g[c]));
  document.body.dataset.ready = "overview";
}

async function topicPage(name, params) {
  const detail = await api("topics/" + encodeURIComponent(name));
  const from = params.get("from") || "last:50";
  const partition = params.get("partition") || "";
  const query = new URLSearchParams({ from, limit: params.get("limit") || "100" });
  if (partition !== "") query.set("partition", partition);
  const fromInput = el("input", { id: "from", value: from, size: 28, title: "beginning, end, offset:N, last:N, time:RFC3339 or time:ms" });
  const partitionInput = el("select", { id: "partition" }, el("option", { value: "" }, "all partitions"),
    detail.partitions.map((p) => el("option", p.partition === Number(partition) && partition !== "" ? { value: p.partition, selected: "" } : { value: p.partition }, "partition " + p.partition)));
  const go = () => {
    const next = new URLSearchParams({ from: fromInput.value });
    if (partitionInput.value !== "") next.set("partition", partitionInput.value);
    location.hash = "#/topic/" + encodeURIComponent(name) + "?" + next;
  };
  const seek = el("form", { class: "controls", onsubmit: (e) => { e.preventDefault(); go(); } },
    "from", fromInput, partitionInput, el("button", { type: "submit" }, "Seek"),
    el("span", { class: "muted" }, "beginning · end · offset:N · last:N · time:2024-05-01T12:00:00Z"));
  const replay = settings.actions && name.endsWith(".dlq")
    ? el("div", { class: "controls" }, el("button", {
      onclick: async () => {
        try {
          const done = await api("dlq/" + encodeURIComponent(name) + "/replay", { method: "POST" });
          alert("replayed: " + JSON.stringify(done.replayed));
        } catch (error) { fail(error); }
      },
    }, "Replay dead letters to their topics"))
    : null;
  show("Topic " + name,
    table(["partition", "leader", "low", "high"], detail.partitions), replay,
    el("h2", {}, "Records"), seek, el("div", { id: "records" }, "Loading…"));
  const records = document.getElementById("records");
  try {
    const found = await api("topics/" + encodeURIComponent(name) + "/records?" + query);
    records.replaceChildren(found.records.length
      ? table(["partition", "offset", "time", "key", "headers", "value"], found.records, (c, r) =>
        c === "time" ? time(r.timestamp) : c === "value" ? value(r) : c === "headers" ? headers(r) : r[c])
      : el("p", { class: "muted" }, "no records from " + from));
  } catch (error) {
    records.replaceChildren(el("p", { class: "error", id: "error" }, error.message));
  }
  document.body.dataset.ready = "topic";
}

async function groupsPage() {
  const groups = await api("groups");
  show("Consumer groups", table(["group", "state", "protocol_type", "members"], groups, (c, g) =>
    c === "group" ? el("a", { href: "#/group/" + encodeURIComponent(g.group) }, g.group) : g[c]));
  document.body.dataset.ready = "groups";
}

async function groupPage(name) {
  const render = async () => {
    const group = await api("groups/" + encodeURIComponent(name));
    const total = group.offsets.reduce((sum, o) => sum + o.lag, 0);
    const actions = settings.actions
      ? el("div", { class: "controls" }, "reset offsets (the group must be empty):",
        ["earliest", "latest"].map((to) => el("button", {
          onclick: async () => {
            try { await api("groups/" + encodeURIComponent(name) + "/reset?to=" + to, { method: "POST" }); }
            catch (error) { fail(error); }
          },
        }, "to " + to)))
      : el("p", { class: "muted" }, "read-only console (console.actions = false)");
    show("Group " + name,
      el("p", {}, "state ", el("strong", { id: "state" }, group.state), " · members " + group.members.length + " · total lag ",
        el("strong", { id: "total-lag" }, total)),
      chart("Lag", lagSeries(name), "records"),
      el("h2", {}, "Lag per partition"),
      table(["topic", "partition", "committed", "high_watermark", "lag"], group.offsets),
      el("h2", {}, "Members"),
      table(["member", "client_id", "host"], group.members),
      actions);
    document.body.dataset.ready = "group";
  };
  await render();
  refresh = setInterval(() => sample().then(render).catch(fail), SAMPLE_MS);
}

async function agentsPage() {
  let previous = null;
  const render = async () => {
    const agents = await api("agents");
    const now = Date.now();
    const perSecond = (a) => {
      const before = previous && previous.agents.find((p) => p.agent === a.agent);
      if (!before || a.processed === null || before.processed === null) return null;
      return Number(((a.processed - before.processed) / Math.max((now - previous.time) / 1000, 0.001)).toFixed(1));
    };
    const rows = agents.map((a) => ({
      ...a, "processed/s": perSecond(a),
      tokens: a.llm_tokens_in === null ? null : a.llm_tokens_in + a.llm_tokens_out,
      cost: a.llm_cost === null ? null : Number(a.llm_cost.toFixed(6)),
    }));
    previous = { time: now, agents };
    show("Agents (" + agents.length + ")",
      table(["agent", "kind", "group_state", "instances", "lag", "processed", "processed/s", "errors", "dead_lettered",
        "latency_p50_ms", "latency_p99_ms", "decisions", "llm_calls", "tokens", "cost"], rows, (c, a) =>
        c === "decisions" && a.decisions > 0
          ? el("a", { href: "#/topic/" + encodeURIComponent("agent.decisions." + a.agent) }, a.decisions) : a[c]),
      el("p", { class: "muted" }, "Counters (processed, errors, latency, tokens) are this process's agents; groups, decisions and model calls come from the cluster."));
    document.body.dataset.ready = "agents";
  };
  await render();
  refresh = setInterval(() => render().catch(fail), SAMPLE_MS);
}

function stepRow(step) {
  const envelope = step.envelope || {};
  const data = envelope.data || {};
  return {
    time: time(step.time),
    agent: envelope.agent_id || "–",
    step: data.decision || envelope.type || "record",
    trace: envelope.trace_id ? el("a", { href: "#/trace/" + envelope.trace_id, class: "trace-link" }, envelope.trace_id) : "–",
    where: step.topic + " " + step.partition + "/" + step.offset,
    details: el("pre", {}, JSON.stringify(data.details !== undefined ? data.details : (step.envelope ? data : step.value), null, 2)),
  };
}

async function tracesPage() {
  const steps = await api("steps?limit=50");
  const input = el("input", { id: "trace-id", size: 34, placeholder: "trace id (32 hex digits)" });
  show("Traces",
    el("form", { class: "controls", onsubmit: (e) => { e.preventDefault(); location.hash = "#/trace/" + input.value.trim(); } },
      input, el("button", { type: "submit" }, "Show trace")),
    el("h2", {}, "Latest decisions and steps"),
    steps.length ? table(["time", "agent", "step", "trace", "where"], steps.map(stepRow))
      : el("p", { class: "muted" }, "no agent has recorded a decision yet"));
  document.body.dataset.ready = "traces";
}

async function tracePage(id) {
  const trace = await api("traces/" + encodeURIComponent(id));
  const start = trace.steps.length ? trace.steps[0].time : 0;
  show("Trace " + id,
    trace.steps.length
      ? table(["#", "time", "+ms", "agent", "step", "where", "details"], trace.steps.map((s, i) =>
        ({ "#": i + 1, "+ms": s.time - start, ...stepRow(s) })))
      : el("p", { class: "muted", id: "no-steps" }, "no step of this trace in any agent.decisions.* or agent.traces topic"));
  document.body.dataset.ready = "trace";
}

// --- routing -----------------------------------------------------------------------

async function route() {
  clearInterval(refresh);
  refresh = null;
  delete document.body.dataset.ready;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  main.replaceChildren(el("p", {}, "Loading…"));
  try {
    if (parts[0] === "topic" && parts[1]) await topicPage(parts.slice(1).join("/"), params);
    else if (parts[0] === "groups") await groupsPage();
    else if (parts[0] === "group" && parts[1]) await groupPage(parts.slice(1).join("/"));
    else if (parts[0] === "agents") await agentsPage();
    else if (parts[0] === "traces") await tracesPage();
    else if (parts[0] === "trace" && parts[1]) await tracePage(parts[1]);
    else {
      await overviewPage();
      refresh = setInterval(() => overviewPage().catch(fail), SAMPLE_MS);
    }
  } catch (error) {
    fail(error);
  }
}

async function start() {
  try {
    settings = await api("settings");
    document.getElementById("mode").textContent = settings.bootstrap + (settings.actions ? " · actions enabled" : " · read-only");
  } catch (error) {
    fail(error);
  }
  window.addEventListener("hashchange", route);
  await route();
  // Keep sampling in the background so the charts have history on every page.
  setInterval(() => { if (!refresh || location.hash.startsWith("#/agents")) sample(); }, SAMPLE_MS);
}

start();
