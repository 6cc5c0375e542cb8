// The tracker dashboard over Socket.IO, with the official socket.io-client (served by the demo
// at /vendor/socket.io.min.js from the npm package).
import { applyMetrics, applyPositions, applyStatus, applyTracks, applyWindows, mount, onReconnect, setState, view } from "./dashboard.js";

mount({ subtitle: " over Socket.IO", footer: `The same events as <a href="/">the main page</a>, here through the official socket.io-client (Engine.IO polling, then WebSocket).` });

if (!window.io) {
  document.getElementById("elements").textContent =
    "socket.io-client was not found: run `npm ci` in the skyrelay checkout (make demo does) or start the demo with --socketio-client.";
  throw new Error("socket.io-client missing");
}
const socket = window.io({ reconnectionDelay: 1000, reconnectionDelayMax: 30000 });
view.transport = "socket.io-client";
setState("connecting");

socket.on("connect", () => {
  setState("connected");
  // Rooms do not survive a new connection: subscribe again, as the seed's client does (no
  // ack: the replies are the events satellite_update, window_update and server_metrics).
  socket.emit("subscribe_satellites");
  socket.emit("subscribe_windows");
  socket.emit("subscribe_metrics");
  socket.timeout(10000).emit("get_ground_tracks", null, (err, answer) => { if (!err) applyTracks(answer); });
});
socket.on("disconnect", () => setState(socket.active ? "reconnecting" : "disconnected"));
socket.io.on("reconnect_attempt", () => setState("reconnecting"));
socket.on("connect_error", () => setState(socket.active ? "reconnecting" : "disconnected"));

onReconnect(() => {
  socket.disconnect();
  setState("connecting");
  socket.connect();
});

socket.on("satellite_positions", (data) => applyPositions(data));
socket.on("satellite_update", (data) => applyPositions(data));
socket.on("communication_windows", (data) => applyWindows(data));
socket.on("window_update", (data) => applyWindows(data));
socket.on("server_status", (data) => applyStatus(data));
socket.on("server_metrics", (data) => applyMetrics(data));
setInterval(() => {
  if (socket.connected) socket.timeout(10000).emit("get_ground_tracks", null, (err, answer) => { if (!err) applyTracks(answer); });
}, 600000);
