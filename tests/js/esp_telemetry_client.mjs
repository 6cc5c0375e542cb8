// The seed's complete WebSocket example (seed S4, "Complete WebSocket Example"), run against
// examples/esp_telemetry by tests/python/test_example_esp_telemetry.py:
//   node esp_telemetry_client.mjs URL TOKEN HEARTBEAT_MS WELL...
// It connects with the token in `auth` and transports ['websocket', 'polling'], subscribes to
// each WELL on connect, pings every HEARTBEAT_MS (the seed: 25,000) while connected, and
// prints one JSON line per event it gets: {"on": name, "args": [...]}. Each line read on stdin
// is a JSON [event, data] to emit; when stdin closes, it disconnects and exits. It exits on
// its own after 60 s, whatever happens.
import { io } from "socket.io-client";
import readline from "node:readline";

const [url, token, heartbeatText, ...wells] = process.argv.slice(2);
const print = (on, args) => process.stdout.write(JSON.stringify({ on, args }) + "\n");

const socket = io(url, {
  auth: { token },
  transports: ["websocket", "polling"],
  reconnection: false,
});

socket.on("connect", () => {
  print("connect", [socket.id]);
  for (const well_id of wells) socket.emit("subscribe", { well_id });
});
socket.on("disconnect", (reason) => print("disconnect", [reason]));
socket.on("connect_error", (error) => print("connect_error", [error.message, error.data]));
for (const event of ["connected", "subscribed", "unsubscribed", "telemetry_update", "alert",
                     "pong", "stats", "error", "rate_limited"]) {
  socket.on(event, (...args) => print(event, args));
}

const heartbeat = setInterval(() => {
  if (socket.connected) socket.emit("ping");
}, Number(heartbeatText));

const finish = () => {
  clearInterval(heartbeat);
  clearTimeout(deadline);
  socket.close();
  // A pipe is written asynchronously: exit once the last line is out.
  process.stdout.write("", () => process.exit(0));
};
const deadline = setTimeout(finish, 60000);

const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  const [event, data] = JSON.parse(line);
  socket.emit(event, data);
});
input.on("close", finish);
