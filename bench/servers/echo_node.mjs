// Node peers for run_handlers.py, an in-process echo handler. --proto sio: socket.io 4.8,
// socket.on("echo", (data, ack) => ack(data)); --proto json: a `ws` server answering the
// JSON protocol's requests ({"type":"response","id":...,"ok":true,"data":...}). Prints READY.
import { createServer } from "node:http";
import { Server } from "socket.io";
import { WebSocketServer } from "ws";

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? process.argv[i + 1] : d; };
const port = Number(arg("--port")), proto = arg("--proto", "sio");
const http = createServer();
if (proto === "json") {
  const wss = new WebSocketServer({ server: http, path: "/ws" });
  wss.on("connection", (ws) => {
    ws.on("message", (raw) => {
      const m = JSON.parse(raw);
      if (m.type === "request") ws.send(JSON.stringify({ type: "response", id: m.id, ok: true, data: m.data }));
    });
  });
} else {
  const io = new Server(http, { pingInterval: 25000, pingTimeout: 20000 });
  io.on("connection", (socket) => socket.on("echo", (data, ack) => ack(data)));
}
http.listen(port, "127.0.0.1", () => console.log("READY"));
setTimeout(() => process.exit(0), 120000);  // bounded even if the driver dies
