// The dashboard: live over /ws/updates while the WebSocket is up, HTTP polling every 30 s
// while it is not (the manager gave up), and a button to try the WebSocket again.
// Query parameters, for tests and slow links: poll_ms, heartbeat_ms, base_ms (first retry
// delay), attempts (retries before giving up).
import { ConnectionState, createWebSocketManager } from "./websocket.js";

const params = new URLSearchParams(location.search);
const num = (name, fallback) => (params.has(name) ? Number(params.get(name)) : fallback);
const POLL_MS = num("poll_ms", 30000);
const MAX_SIGNALS = 50;

const store = {
  services: {},
  websdrs: {},
  signals: [],
  localizations: [],
  polls: 0,
  events: 0,
  states: [],  // every connection state the page went through, in order
};
window.dashboardStore = store;  // for the debug console (and the browser tests)

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = createWebSocketManager(`${scheme}//${location.host}/ws/updates`, {
  heartbeatMs: num("heartbeat_ms", 30000),
  initialDelayMs: num("base_ms", 1000),
  maxReconnectAttempts: num("attempts", 5),
});
window.wsManager = ws;

const $ = (id) => document.getElementById(id);
const LABELS = {
  [ConnectionState.CONNECTED]: "Connected",
  [ConnectionState.CONNECTING]: "Connecting",
  [ConnectionState.RECONNECTING]: "Reconnecting",
  [ConnectionState.DISCONNECTED]: "Disconnected",
};

function row(cells, cls) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  if (cls) tr.lastChild.className = cls;
  return tr;
}

function renderTable(id, entries, describe) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...Object.entries(entries).map(([k, v]) => describe(k, v)));
}

function renderList(id, items, describe) {
  $(id).replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.textContent = describe(item);
    return li;
  }));
}

function render() {
  renderTable("services", store.services, (name, s) => row([name, s.status], s.status));
  renderTable("websdrs", store.websdrs, (id, s) =>
    row([`#${id}`, s.response_time_ms == null ? "—" : `${s.response_time_ms} ms`, s.status],
        s.status));
  renderList("signals", store.signals, (s) =>
    `${s.frequency_mhz} MHz, SNR ${s.snr_db} dB at WebSDR #${s.websdr_id} (${s.timestamp})`);
  renderList("localizations", store.localizations, (l) =>
    `${l.latitude}, ${l.longitude} ±${l.uncertainty_m} m, confidence ${l.confidence}`);
}

function live(handler) {
  return (data) => {
    store.events += 1;
    handler(data);
    render();
  };
}

ws.subscribe("services:health", live((d) => { store.services = d; }));
ws.subscribe("websdrs:status", live((d) => { store.websdrs = { ...store.websdrs, ...d }; }));
ws.subscribe("signals:detected", live((d) => {
  store.signals = [d, ...store.signals].slice(0, MAX_SIGNALS);
}));
ws.subscribe("localizations:updated", live((d) => {
  store.localizations = [d, ...store.localizations].slice(0, MAX_SIGNALS);
}));

// Polling: only while the WebSocket is given up (Disconnected).
let pollTimer = null;
async function poll() {
  try {
    const [status, websdrs] = await Promise.all([
      fetch("/api/v1/system/status").then((r) => r.json()),
      fetch("/api/v1/websdrs").then((r) => r.json()),
    ]);
    store.services = status.services;
    store.websdrs = websdrs;
    store.polls += 1;
    render();
  } catch {
    // the server is down too: the next poll tries again
  }
}
function startPolling() {
  if (pollTimer) return;
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}
function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

ws.onStateChange((state) => {
  store.states.push(state);
  const badge = $("state-badge");
  badge.className = `badge ${state}`;
  badge.dataset.state = state;
  badge.textContent = LABELS[state];
  $("reconnect").hidden = state !== ConnectionState.DISCONNECTED;
  if (state === ConnectionState.DISCONNECTED) {
    $("mode").textContent = `polling every ${POLL_MS / 1000} s`;
    startPolling();
  } else if (state === ConnectionState.CONNECTED) {
    $("mode").textContent = "live";
    stopPolling();
  }
});

$("reconnect").addEventListener("click", () => {
  ws.connect().catch(() => {});
});

// The first state: fetch what there is, then go live.
poll().then(() => ws.connect()).catch(() => {});
