// The tracker dashboard's view: applies the tracker's events and draws the map and panels.
// The transport (app.js: skyrelay.js; sio.js: the official socket.io-client) feeds it.
// Satellites are keyed by catalogue number: names repeat in real catalogues (gpredict's has 19
// "SL-16 R/B"), and a trail keyed by name would join different objects across the map.
import { MAX_GAP_TICKS, trailPieces } from "./trail.js";

const TRAIL = 120;            // positions kept per satellite for its ground track
const TRAIL_STYLE = "rgba(255, 209, 102, 0.45)";
const $ = (id) => document.getElementById(id);
const keyOf = (s) => s.catalog_number ?? s.name;

export const view = {
  state: "disconnected",
  transport: "",
  updates: 0,
  positionsAt: null,          // timestamp of the last satellite_positions
  satellites: new Map(),      // catalog_number -> {name, lat, lon, alt, t, trail: [[lon, lat, tMs], ...]}
  tickMs: 10000,              // the positions interval (server_status.intervals), 10 s until known
  trailStyle: TRAIL_STYLE,    // the stroke of the trails (the browser test tells them apart by it)
  metrics: null,              // the last server_metrics
  windows: [],
  tracks: [],                 // [{name, points: [[lat, lon], ...]}]: 45 min back to 90 ahead
  stations: [],
  land: [],
  status: null,
};
window.__tracker = view;      // read by the browser test

/** Shows a connection state on the badge: connected (green), connecting or reconnecting
 * (yellow), disconnected (red). */
export function setState(state) {
  view.state = state;
  const badge = $("badge");
  badge.className = state;
  badge.textContent = state;
}

/** Calls `fn` when the reconnect button is pressed. */
export function onReconnect(fn) {
  $("reconnect").addEventListener("click", fn);
}

// -- data ---------------------------------------------------------------------------------

export function applyPositions(snapshot) {
  if (!snapshot || snapshot.timestamp === view.positionsAt) return;
  view.positionsAt = snapshot.timestamp;
  view.updates += 1;
  const t = Date.parse(snapshot.timestamp);
  const maxGap = MAX_GAP_TICKS * view.tickMs;
  for (const s of snapshot.satellites) {
    const key = keyOf(s);
    let sat = view.satellites.get(key);
    if (!sat) view.satellites.set(key, (sat = { trail: [] }));
    // A late or older position (a reconnect, a missed tick) starts the trail again.
    if (sat.t != null && !(t > sat.t && t - sat.t <= maxGap)) sat.trail = [];
    sat.name = s.name;
    sat.t = t;
    sat.lat = s.position.latitude;
    sat.lon = s.position.longitude;
    sat.alt = s.position.altitude_km;
    sat.trail.push([sat.lon, sat.lat, t]);
    if (sat.trail.length > TRAIL) sat.trail.shift();
  }
  // Satellites gone from the catalogue (new elements) leave the map after a few ticks.
  for (const [key, sat] of view.satellites) if (t - sat.t > 3 * view.tickMs) view.satellites.delete(key);
  $("st-updates").textContent = String(view.updates);
  $("st-sats").textContent = String(snapshot.count);
  scheduleDraw();
}

export function applyWindows(snapshot) {
  if (!snapshot) return;
  view.windows = snapshot.windows.map((w) => ({
    ...w, start: Date.parse(w.start_time), end: Date.parse(w.end_time),
  }));
  $("window-count").textContent = `(${snapshot.count} of ${snapshot.total} in the next ${snapshot.lookahead_hours} h)`;
  renderWindows();
  scheduleDraw();
}

export function applyTracks(answer) {
  if (!answer) return;
  view.tracks = answer.tracks;
  scheduleDraw();
}

export function applyStatus(status) {
  view.status = status;
  view.stations = status.ground_stations || [];
  if (status.intervals && status.intervals.positions_s > 0) view.tickMs = status.intervals.positions_s * 1000;
  $("st-clients").textContent = String(status.connected_clients);
  const subs = status.subscribers || {};
  $("st-subs").textContent = Object.entries(subs).map(([k, v]) => `${k} ${v}`).join(" · ");
  if (status.metrics) applyMetrics(status.metrics);
  $("elements").textContent = [status.elements, status.elements_error].filter(Boolean).join(" · ");
  scheduleDraw();
}

/** server_metrics (subscribe_metrics), also carried by server_status. */
export function applyMetrics(m) {
  if (!m) return;
  view.metrics = m;
  $("st-rate").textContent = m.messages_out_per_s ?? "–";
  $("st-cpu").textContent = m.cpu_percent ?? "–";
  $("st-rss").textContent = m.rss_mib ?? "–";
  $("st-uptime").textContent = m.uptime_s != null ? `${Math.round(m.uptime_s)} s` : "–";
}

// -- windows table --------------------------------------------------------------------------

function fmtIn(ms) {
  if (ms <= 0) return "now";
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

function renderWindows() {
  const now = Date.now();
  const rows = view.windows.filter((w) => w.end > now).slice(0, 14);
  const body = $("windows").tBodies[0];
  body.replaceChildren(...rows.map((w) => {
    const tr = document.createElement("tr");
    if (w.start <= now) tr.className = "now";
    const cells = [w.satellite, w.ground_station, w.start_time.slice(11, 19), fmtIn(w.start - now),
      w.duration_minutes.toFixed(1), `${w.max_elevation.toFixed(1)}°`];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const q = document.createElement("td");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(w.quality_score * 60)}px`;
    q.append(bar, ` ${w.quality_score.toFixed(2)}`);
    tr.append(q);
    return tr;
  }));
}

// -- map ----------------------------------------------------------------------------------

let canvas = null;
let ctx = null;
const X = (lon) => ((lon + 180) / 360) * canvas.width;
const Y = (lat) => ((90 - lat) / 180) * canvas.height;
let pending = false;

function scheduleDraw() {
  if (pending || !ctx) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; draw(); });
}

function draw() {
  const { width: w, height: h } = canvas;
  ctx.fillStyle = "#0b1a2a";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#15314a";
  ctx.lineWidth = 1;
  for (let lon = -150; lon <= 150; lon += 30) { ctx.beginPath(); ctx.moveTo(X(lon), 0); ctx.lineTo(X(lon), h); ctx.stroke(); }
  for (let lat = -60; lat <= 60; lat += 30) { ctx.beginPath(); ctx.moveTo(0, Y(lat)); ctx.lineTo(w, Y(lat)); ctx.stroke(); }
  ctx.fillStyle = "#1f3a2c";
  ctx.strokeStyle = "#2f5a43";
  for (const ring of view.land) {
    // A ring that runs along the antimeridian jumps from +180 to -180: move there, do not draw
    // a line across the whole map.
    ctx.beginPath();
    for (let i = 0; i < ring.length; i += 2) {
      const jump = i && Math.abs(ring[i] - ring[i - 2]) > 180;
      (i === 0 || jump ? ctx.moveTo : ctx.lineTo).call(ctx, X(ring[i]), Y(ring[i + 1]));
    }
    ctx.fill();
    ctx.stroke();
  }
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(120, 170, 230, 0.35)";
  for (const track of view.tracks) {
    ctx.beginPath();
    track.points.forEach(([lat, lon], i) => {
      const jump = i && Math.abs(lon - track.points[i - 1][1]) > 180;
      (i === 0 || jump ? ctx.moveTo : ctx.lineTo).call(ctx, X(lon), Y(lat));
    });
    ctx.stroke();
  }
  const now = Date.now();
  const inView = new Set(view.windows.filter((x) => x.start <= now && now <= x.end).map((x) => x.catalog_number ?? x.satellite));
  ctx.lineWidth = 1.5;
  const maxGap = MAX_GAP_TICKS * view.tickMs;
  for (const [, sat] of view.satellites) {
    ctx.strokeStyle = TRAIL_STYLE;
    ctx.beginPath();
    for (const piece of trailPieces(sat.trail, maxGap)) {
      piece.forEach(([lon, lat], i) => (i === 0 ? ctx.moveTo : ctx.lineTo).call(ctx, X(lon), Y(lat)));
    }
    ctx.stroke();
  }
  ctx.font = "12px system-ui, sans-serif";
  for (const [key, sat] of view.satellites) {
    const x = X(sat.lon), y = Y(sat.lat);
    ctx.fillStyle = inView.has(key) ? "#3fb950" : "#ffd166";
    ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI); ctx.fill();
    if (view.satellites.size <= 60) { ctx.fillStyle = "#c9d4e0"; ctx.fillText(sat.name, x + 6, y - 4); }
  }
  for (const g of view.stations) {
    const x = X(g.longitude), y = Y(g.latitude);
    ctx.fillStyle = "#ff6b9a";
    ctx.beginPath(); ctx.moveTo(x, y - 7); ctx.lineTo(x - 6, y + 5); ctx.lineTo(x + 6, y + 5); ctx.closePath(); ctx.fill();
    ctx.fillStyle = "#ffb3cb";
    ctx.fillText(g.name, x + 8, y + 4);
  }
}

// The page: both HTML files are shells and this writes their body, so the two transports show
// exactly the same dashboard. `subtitle` goes after the title; `footer` is HTML.
const bodyHtml = (subtitle, footer) => `<header>
  <h1>skyrelay · live satellite tracker<span class="muted small">${subtitle}</span></h1>
  <span id="badge" class="disconnected" data-testid="badge">disconnected</span>
  <button id="reconnect" type="button">reconnect</button>
  <span id="clock" class="muted"></span>
</header>
<main>
  <section class="card map-card">
    <canvas id="map" width="1440" height="720" aria-label="world map with satellites and ground stations"></canvas>
    <div class="legend"><span class="dot sat"></span> satellite (yellow: positions seen; blue: ground track 45 min back to 90 ahead) <span class="tri"></span> ground station <span class="dot vis"></span> in view of a station now</div>
  </section>
  <section class="card">
    <h2>upcoming communication windows <span id="window-count" class="muted"></span></h2>
    <table id="windows" data-testid="windows">
      <thead><tr><th>satellite</th><th>station</th><th>start (UTC)</th><th>in</th><th>min</th><th>max el</th><th>quality</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section class="card">
    <h2>server</h2>
    <dl id="status">
      <dt>clients</dt><dd id="st-clients">–</dd>
      <dt>subscribers</dt><dd id="st-subs">–</dd>
      <dt>messages out / s</dt><dd id="st-rate">–</dd>
      <dt>CPU %</dt><dd id="st-cpu">–</dd>
      <dt>RSS MiB</dt><dd id="st-rss">–</dd>
      <dt>uptime</dt><dd id="st-uptime">–</dd>
      <dt>satellites</dt><dd id="st-sats">–</dd>
      <dt>updates</dt><dd id="st-updates">0</dd>
    </dl>
    <p id="elements" class="muted small"></p>
  </section>
</main>
<footer class="muted small">${footer}
Land: Natural Earth 1:110m (public domain). <a href="/metrics">Prometheus metrics</a> ·
<a href="metrics.html">engine metrics page</a></footer>`;

export function mount({ subtitle = "", footer = "" } = {}) {
  document.body.insertAdjacentHTML("afterbegin", bodyHtml(subtitle, footer));
  canvas = $("map");
  ctx = canvas.getContext("2d");
  setInterval(() => {
    $("clock").textContent = new Date().toISOString().slice(11, 19) + " UTC";
    renderWindows();
  }, 1000);
  fetch("land.json").then((r) => r.json()).then((d) => { view.land = d.rings; scheduleDraw(); });
  scheduleDraw();
}
