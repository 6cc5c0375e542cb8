// socket.io-client over WebSocket only, for test_compression.py: its `ws` transport offers
// permessage-deflate by default. `node sio_deflate_client.mjs PORT` prints "ready" once
// connected, then waits for a `status` event, sends `echo` with a 4 KB text (over the client's
// 1 KB compression threshold), and prints one JSON line: whether the extension was accepted,
// the status, the echo and the binary `blob` it gets back. Gives up after 20 s.
import { io } from "socket.io-client";

const port = process.argv[2];
const result = {};
const socket = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], reconnection: false });
const finish = () => {
  socket.close();
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
};
socket.on("connect", () => {
  const ws = socket.io.engine.transport.ws;
  result.compressed = typeof ws?.extensions === "string" &&
                      ws.extensions.startsWith("permessage-deflate");
  process.stdout.write("ready\n");
});
socket.on("status", (data) => {
  result.status = data;
  socket.emit("echo", { text: "z".repeat(4000) });
});
socket.on("echoed", (data) => { result.echoed = data; });
socket.on("blob", (data) => {
  result.blob = Array.from(new Uint8Array(data.bytes));
  finish();
});
socket.on("connect_error", (err) => { result.error = String(err); finish(); });
setTimeout(finish, 20_000).unref();
