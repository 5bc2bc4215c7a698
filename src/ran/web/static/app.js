// The page of `ran serve`: draws the session from the server's event stream, sends requests as JSON.
// Everything it shows comes from events (a snapshot first, then passes as they run), so every open tab
// shows the same session; a request the server refuses is shown in the error bar and nothing is lost.
"use strict";

const $ = (id) => document.getElementById(id);

// Exposed for tests and for a person's console: the points plotted and first-token latencies seen here.
const page = (window.ranPage = { points: [], latencies: [], tokens: 0, snapshots: 0, gate: null, limits: null });

let current = null; // the log entry of the pass being streamed: {element, reply, first}
let pendingSend = null; // {text, started}: a message this tab sent, until its pass starts or is refused

// ----- plots (uPlot, vendored) --------------------------------------------------------------------
const PLOTS = {
  norm: { id: "plot-norm", title: "state norm ||r||", value: (p) => p.state_norm },
  change: { id: "plot-change", title: "change per pass ||r(t) - r(t-1)||", value: (p) => p.state_change },
  gate: { id: "plot-gate", title: "gate", value: (p) => p.gate_value, threshold: true },
  context: { id: "plot-context", title: "context length (tokens)", value: (p) => p.context_length },
};
const charts = {};

function plotWidth(element) {
  return Math.max(280, element.clientWidth - 2);
}

function makeChart(key) {
  const spec = PLOTS[key];
  const element = $(spec.id);
  const series = [
    { label: "tick" },
    { label: "pass", stroke: "#1f77b4", width: 1.5, points: { show: true, size: 5 } },
    { label: "prompted", stroke: "#d62728", width: 0, points: { show: true, size: 8, fill: "#d62728" } },
  ];
  if (spec.threshold) series.push({ label: "threshold", stroke: "#555", dash: [4, 4], width: 1, points: { show: false } });
  const options = {
    title: spec.title,
    width: plotWidth(element),
    height: 150,
    // every quantity here is >= 0: keep 0 in view, so a change of scale is not mistaken for a change of size
    scales: { x: { time: false }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{ label: "tick" }, { size: 60 }],
    series,
    legend: { show: false },
  };
  charts[key] = new uPlot(options, emptyData(spec), element);
}

function emptyData(spec) {
  return spec.threshold ? [[], [], [], []] : [[], [], []];
}

function redrawPlots() {
  const points = page.points;
  for (const [key, spec] of Object.entries(PLOTS)) {
    const xs = points.map((p) => p.tick);
    const ys = points.map(spec.value);
    const prompted = points.map((p) => (p.kind === "prompt" ? spec.value(p) : null));
    const data = [xs, ys, prompted];
    if (spec.threshold) data.push(points.map((p) => p.gate_threshold));
    charts[key].setData(data);
    $(spec.id).dataset.points = String(points.length);
  }
  const gate = page.gate;
  if (gate) {
    const title = gate.kind === "state" ? "gate p(speak): speaks at >= threshold" : "gate: next-token entropy (nats), speaks at <= threshold";
    charts.gate.root.querySelector(".u-title").textContent = title;
  }
}

window.addEventListener("resize", () => {
  for (const [key, spec] of Object.entries(PLOTS)) charts[key].setSize({ width: plotWidth($(spec.id)), height: 150 });
});

// ----- the log --------------------------------------------------------------------------------------
function entryElement(classes, who, text) {
  const element = document.createElement("div");
  element.className = "entry " + classes;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  element.appendChild(label);
  if (text !== undefined && text !== null) element.appendChild(document.createTextNode(text));
  return element;
}

function appendToLog(element) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.appendChild(element);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function gateText(point) {
  const symbol = point.gate_kind === "state" ? "p" : "entropy";
  return `${symbol}=${point.gate_value.toFixed(3)}`;
}

function metaText(point, firstToken) {
  let text = `tick ${point.tick} · ${gateText(point)} · norm ${point.state_norm.toFixed(4)} · change ${point.state_change.toFixed(4)} · context ${point.context_length} · ${point.seconds.toFixed(2)} s`;
  if (firstToken !== null && firstToken !== undefined) text += ` · first token ${firstToken.toFixed(2)} s`;
  if (point.interrupted) text += " · stopped";
  return text;
}

function startPass(kind, tick, text) {
  let element;
  if (kind === "prompt") {
    appendToLog(entryElement("you", "you", text));
    element = entryElement("ran", "ran");
  } else {
    element = entryElement("idle", `idle tick ${tick}:`);
  }
  const reply = document.createElement("span");
  reply.className = "reply";
  element.appendChild(reply);
  appendToLog(element);
  return { element, reply, kind, first: true };
}

function finishPass(entry, point, replyText, firstToken) {
  entry.reply.textContent = replyText;
  if (entry.kind === "idle") {
    if (point.emitted) {
      entry.element.classList.add("spoke");
    } else {
      const limit = point.gate_kind === "state" ? "<" : ">";
      let why = `silent (${gateText(point)} ${limit} ${point.gate_threshold.toFixed(2)})`;
      if (point.stop_token) why = "silent (the top token ends the turn)";
      entry.reply.textContent = " " + why;
      entry.element.classList.add("silent");
    }
  }
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = metaText(point, firstToken);
  entry.element.appendChild(meta);
}

function noteEntry(kind, text) {
  appendToLog(entryElement(kind, "", text));
}

function replayEntry(item) {
  if (item.kind === "prompt" || item.kind === "idle") {
    const entry = startPass(item.kind, item.tick, item.text);
    entry.reply.textContent = item.reply;
    if (item.done && item.point) finishPass(entry, item.point, item.reply, item.first_token_seconds);
    else if (item.error) failPass(entry, item.error);
    else current = entry; // still streaming: tokens that follow append here
  } else if (item.kind === "reset") {
    noteEntry("reset", `/reset ${item.what} (tick ${item.tick})`);
  } else if (item.kind === "saved") {
    noteEntry("saved", `saved at tick ${item.tick} to ${item.path}`);
  } else if (item.kind === "note") {
    noteEntry("note", item.text);
  }
}

function failPass(entry, error) {
  entry.element.classList.add("failed");
  entry.reply.textContent = ` failed: ${error}`;
}

// ----- events from the server -------------------------------------------------------------------------
function apply(event) {
  switch (event.event) {
    case "snapshot":
      return applySnapshot(event);
    case "busy":
      return setBusy(event.busy);
    case "pass_start":
      current = startPass(event.kind, event.tick, event.text);
      if (event.kind === "prompt" && pendingSend && event.text === pendingSend.text) {
        current.sent = pendingSend;
        pendingSend = null;
      }
      return;
    case "token":
      page.tokens += 1;
      if (!current) return;
      current.reply.textContent += event.text;
      if (current.first && current.sent) page.latencies.push((performance.now() - current.sent.started) / 1000);
      current.first = false;
      return;
    case "pass_end":
      if (current) finishPass(current, event.point, event.reply, event.first_token_seconds);
      current = null;
      page.points.push(event.point);
      redrawPlots();
      $("status").textContent = event.status;
      return;
    case "pass_failed":
      if (current) failPass(current, event.error);
      current = null;
      showError(`the pass failed: ${event.error}`);
      return;
    case "reset":
      noteEntry("reset", `/reset ${event.what} (tick ${event.tick})`);
      $("status").textContent = event.status;
      return;
    case "saved":
      noteEntry("saved", `saved at tick ${event.tick} to ${event.path}`);
      return;
    case "note":
      noteEntry("note", event.text);
      return;
  }
}

function applySnapshot(snapshot) {
  page.snapshots += 1;
  page.gate = snapshot.gate;
  page.limits = snapshot.limits;
  page.points = snapshot.points.slice();
  current = null;
  $("session-name").textContent = snapshot.session;
  const artifact = snapshot.artifact ? ` · artifact ${snapshot.artifact}` : " · untrained readout";
  $("model").textContent = `${snapshot.model}${artifact} · ${snapshot.ran.mode} mode, layer ${snapshot.ran.layer}, ${snapshot.ran.units} units · ${snapshot.gate.kind} gate · ${snapshot.pass_format.kind} format`;
  $("status").textContent = snapshot.status;
  $("tick-count").max = String(snapshot.limits.max_ticks);
  const list = $("session-list");
  list.replaceChildren(...snapshot.sessions.map((name) => Object.assign(document.createElement("option"), { value: name })));
  $("log").replaceChildren();
  for (const item of snapshot.log) replayEntry(item);
  $("log").scrollTop = $("log").scrollHeight;
  setBusy(snapshot.busy);
  redrawPlots();
  updateCount();
}

function setBusy(what) {
  const busy = $("busy");
  busy.hidden = !what;
  busy.textContent = what ? `running: ${what}…` : "";
  document.body.dataset.busy = what ? "1" : "";
}

// ----- requests ---------------------------------------------------------------------------------------
async function post(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
  } catch (error) {
    showError(`the server cannot be reached (${error.message})`);
    return null;
  }
  let data = {};
  try {
    data = await response.json();
  } catch (error) {
    data = { error: `HTTP ${response.status}` };
  }
  if (!response.ok) {
    showError(data.error || `HTTP ${response.status}`);
    return null;
  }
  hideError();
  return data;
}

function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

async function send() {
  const box = $("message");
  const text = box.value;
  if (!text.trim()) return;
  box.value = "";
  updateCount();
  pendingSend = { text, started: performance.now() };
  const result = await post("/api/message", { text });
  if (result === null) {
    if (pendingSend && pendingSend.text === text) pendingSend = null;
    if (!box.value) box.value = text; // refused: the text goes back into the box, nothing is lost
    updateCount();
  }
}

function updateCount() {
  const length = $("message").value.length;
  const limit = page.limits ? page.limits.max_input_chars : 0;
  $("chars").textContent = limit ? `${length} / ${limit} characters` : "";
  $("chars").classList.toggle("over", limit > 0 && length > limit);
}

function sessionName() {
  return $("session-input").value.trim();
}

function wire() {
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send();
    }
  });
  $("message").addEventListener("input", updateCount);
  $("tick").addEventListener("click", () => post("/api/tick", { count: 1 }));
  $("ticks").addEventListener("click", () => {
    const count = Number($("tick-count").value);
    post("/api/tick", { count: Number.isInteger(count) ? count : $("tick-count").value });
  });
  $("stop").addEventListener("click", () => post("/api/stop", {}));
  $("reset-context").addEventListener("click", () => post("/api/reset", { what: "context" }));
  $("reset-state").addEventListener("click", () => post("/api/reset", { what: "state" }));
  $("save").addEventListener("click", () => post("/api/save", {}));
  $("session-new").addEventListener("click", () => post("/api/session", { action: "new", name: sessionName() }));
  $("session-resume").addEventListener("click", () => post("/api/session", { action: "resume", name: sessionName() }));
  $("error-close").addEventListener("click", hideError);
}

function connect() {
  const source = new EventSource("/api/events");
  source.onmessage = (message) => apply(JSON.parse(message.data));
  source.onerror = () => {
    $("status").textContent = "disconnected from the server; reconnecting…";
  };
}

for (const key of Object.keys(PLOTS)) makeChart(key);
wire();
connect();
