// The debug panel: connection testing, commands, feature flags and a live log. Status comes
// over the WebSocket, or over SSE (/sse/<telescope>) when the flag
// useWebSocketForStatusUpdates is off; commands over the WebSocket, or HTTP POST when
// useWebSocketForCommands is off. Query parameters (for tests): command_timeout_ms,
// reconnect_ms, attempts, heartbeat_ms.
import { WebSocketService } from "./websocket-service.js";
import { DEFAULT_FLAGS, featureFlags } from "./feature-flags.js";

const params = new URLSearchParams(location.search);
const num = (name, fallback) => (params.has(name) ? Number(params.get(name)) : fallback);
const $ = (id) => document.getElementById(id);

const service = new WebSocketService({
  commandTimeoutMs: num("command_timeout_ms", 15000),
  reconnectDelayMs: num("reconnect_ms", 1000),
  reconnectAttempts: num("attempts", 10),
  heartbeatIntervalMs: num("heartbeat_ms", 30000),
});
const panel = { log: [], results: [], sseStatus: {}, lastChanges: [] };
window.service = service;
window.panel = panel;

function log(line) {
  panel.log.push(line);
  const div = document.createElement("div");
  div.textContent = `${new Date().toISOString().slice(11, 23)} ${line}`;
  $("log").append(div);
  $("log").scrollTop = $("log").scrollHeight;
}

function renderStatus(status, changes) {
  const rows = Object.entries(status ?? {}).map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.cells[0].textContent = k;
    tr.cells[1].textContent = JSON.stringify(v);
    if (changes.includes(k)) tr.cells[1].className = "changed";
    return tr;
  });
  $("status").tBodies[0].replaceChildren(...rows);
}

const selected = () => $("telescope").value;

service.on("connectionStateChanged", (state) => {
  $("state").textContent = state;
  $("state").dataset.state = state;
  log(`connection: ${state}`);
});
service.on("queued", (f) => {
  $("queued").textContent = `${service.queue.length} queued`;
  log(`queued ${f.type} (offline)`);
});
service.on("sent", (f) => {
  $("queued").textContent = service.queue.length ? `${service.queue.length} queued` : "";
  if (featureFlags.isEnabled("enableWebSocketDebugLogs")) log(`→ ${JSON.stringify(f)}`);
});
service.on("message", (f) => {
  if (featureFlags.isEnabled("enableWebSocketDebugLogs")) log(`← ${JSON.stringify(f)}`);
});
service.on("statusUpdate", (id, status, changes) => {
  panel.lastChanges = changes;
  if (id === selected() && featureFlags.isEnabled("useWebSocketForStatusUpdates")) {
    renderStatus(status, changes);
  }
});
service.on("telescopeLost", (id, reason) => log(`telescope lost: ${id} (${reason})`));
service.on("error", (e) => log(`error: ${e.code}: ${e.message}`));

// Status over SSE, while the flag keeps it off the WebSocket.
let source = null;
function followOverSse(on) {
  source?.close();
  source = null;
  $("via").textContent = on ? "status via SSE" : "";
  if (!on) return;
  const id = selected();
  source = new EventSource(`/sse/${encodeURIComponent(id)}`);
  source.addEventListener("status_update", (e) => {
    const p = JSON.parse(e.data);
    if (p.full_update && !p.index) panel.sseStatus = {};
    panel.sseStatus = { ...panel.sseStatus, ...p.status };
    renderStatus(panel.sseStatus, p.changes ?? []);
  });
}

async function sendCommand(action, parameters) {
  const started = performance.now();
  let outcome;
  try {
    if (featureFlags.isEnabled("useWebSocketForCommands")) {
      outcome = { success: true, result: await service.sendCommand(action, parameters, selected()) };
    } else {
      const r = await fetch(`/api/telescopes/${encodeURIComponent(selected())}/commands`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ action, parameters }),
      });
      outcome = await r.json();
      outcome.via = "http";
    }
  } catch (err) {
    outcome = { success: false, code: err.code, message: err.message };
  }
  if (featureFlags.isEnabled("enablePerformanceMetrics")) {
    outcome.duration_ms = Math.round(performance.now() - started);
  }
  panel.results.push({ action, ...outcome });
  $("result").textContent = JSON.stringify(outcome, null, 2);
  log(`${action}: ${outcome.success ? "ok" : outcome.code}`);
  return outcome;
}
window.sendCommand = sendCommand;

for (const name of Object.keys(DEFAULT_FLAGS)) {
  const label = document.createElement("label");
  label.innerHTML = `<input type="checkbox" id="flag-${name}"> ${name} `;
  $("flags").append(label);
  const box = label.firstChild;
  box.checked = featureFlags.isEnabled(name);
  box.addEventListener("change", () => featureFlags.set(name, box.checked));
}
featureFlags.onChange((name, value) => {
  $(`flag-${name}`).checked = value;
  log(`flag ${name}: ${value}`);
  if (name === "useWebSocketForStatusUpdates") followOverSse(!value);
});

$("connect").addEventListener("click", () => {
  service.connect(selected()).catch(() => {});
  if (!featureFlags.isEnabled("useWebSocketForStatusUpdates")) followOverSse(true);
});
$("disconnect").addEventListener("click", () => service.disconnect());
$("full-update").addEventListener("click", () => service.requestFullUpdate(selected()));
$("send").addEventListener("click", () => {
  let parameters;
  try {
    parameters = JSON.parse($("parameters").value || "{}");
  } catch {
    $("result").textContent = "parameters: not JSON";
    return;
  }
  sendCommand($("action").value, parameters);
});

const telescopes = await fetch("/api/telescopes").then((r) => r.json());
$("telescope").replaceChildren(...telescopes.map((t) => new Option(t.telescope_id)));
window.ready = true;
