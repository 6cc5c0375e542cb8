// A socket.io-client socket with connection state recovery, driven by a Python test
// (tests/python/test_sio_recovery_nodes.py) over its standard streams:
//
//   node sio_recovery_client.mjs URL ROOM [PID OFFSET]
//
// It connects to URL with auth {room: ROOM} (the test node joins it to that room) and prints
// one JSON line per happening: {"connect": {"id", "pid", "recovered"}}, {"disconnect": reason},
// {"connect_error": message}, {"event": {"name", "args"}}. With PID and OFFSET it presents
// them from its first CONNECT, as a client that claims a session would. Commands, one per
// line on stdin: "move URL" (its next reconnection goes to URL), "cut" (its WebSocket's TCP
// connection destroyed, no goodbye), "quit".
import readline from "node:readline";
import { io } from "socket.io-client";

const [url, room, pid, offset] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const socket = io(url, {
  transports: ["websocket"], forceNew: true, autoConnect: false, auth: { room },
  reconnectionDelay: 200, reconnectionDelayMax: 200, randomizationFactor: 0, timeout: 5000,
});
if (pid !== undefined) {
  // The client's own recovery fields: what it sends back in its next CONNECT.
  socket._pid = pid;
  socket._lastOffset = offset;
}
socket.on("connect", () =>
  say({ connect: { id: socket.id, pid: socket._pid ?? null, recovered: socket.recovered } }));
socket.on("disconnect", (reason) => say({ disconnect: reason }));
socket.on("connect_error", (err) => say({ connect_error: String(err.message) }));
socket.onAny((name, ...args) => say({ event: { name, args } }));
socket.connect();

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const [command, arg] = line.trim().split(" ");
  if (command === "move") socket.io.uri = arg;
  // The WebSocket's TCP connection destroyed under it: no goodbye, the server keeps the socket.
  if (command === "cut") socket.io.engine.transport.ws._socket.destroy();
  if (command === "quit") {
    socket.disconnect();
    process.exit(0);
  }
});
lines.on("close", () => process.exit(0));
