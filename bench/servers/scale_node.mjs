// Node peers for the connection-scale run (run_scale.py): `ws` (plain frames at /ws/bench) or
// socket.io 4.8 (namespace "/"), holding every connection idle through heartbeats and
// publishing one message to all per PUBLISH line on stdin; says PUBLISHED after each. COUNT
// answers with the connections held; GC runs a full collection (with --expose-gc) before the
// driver reads the RSS, so garbage from the handshakes is not counted as held memory.
// Args: --port P --protocol ws|socketio [--heartbeat S] [--max-seconds S]
//       [--certfile F --keyfile F]  (https / wss: node:https with Node's TLS defaults)
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { createInterface } from "node:readline";
import { WebSocketServer } from "ws";
import { Server } from "socket.io";

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? process.argv[i + 1] : d; };
const port = Number(arg("--port")), protocol = arg("--protocol", "ws");
const heartbeatMs = Number(arg("--heartbeat", 25)) * 1000;
const maxSeconds = Number(arg("--max-seconds", 4000));
const pad = "x".repeat(60);
const message = (seq) => `{"t":${process.hrtime.bigint()},"seq":${seq},"pad":"${pad}"}`;
const certfile = arg("--certfile"), keyfile = arg("--keyfile");
const http = certfile
  ? createTlsServer({ cert: readFileSync(certfile), key: readFileSync(keyfile) })
  : createServer();
let publish, count;

if (protocol === "ws") {
  const wss = new WebSocketServer({ server: http, path: "/ws/bench", perMessageDeflate: false });
  // ws's documented keep-alive: ping everyone each interval, drop who did not answer the last.
  wss.on("connection", (ws) => { ws.alive = true; ws.on("pong", () => { ws.alive = true; }); });
  setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.alive) { ws.terminate(); continue; }
      ws.alive = false;
      ws.ping();
    }
  }, heartbeatMs);
  publish = (seq) => { const text = message(seq); for (const ws of wss.clients) ws.send(text); };
  count = () => wss.clients.size;
} else {
  const io = new Server(http, { pingInterval: heartbeatMs, pingTimeout: 20000,
                                transports: ["websocket"] });
  publish = (seq) => io.emit("tick", JSON.parse(message(seq)));
  count = () => io.engine.clientsCount;
}
http.listen(port, "127.0.0.1");
setTimeout(() => process.exit(0), maxSeconds * 1000).unref();

let seq = 0;
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const cmd = line.trim();
  if (cmd === "PUBLISH") { publish(seq++); console.log("PUBLISHED"); }
  else if (cmd === "COUNT") console.log(`COUNT ${count()}`);
  else if (cmd === "GC") { globalThis.gc?.(); console.log("GCED"); }  // run with --expose-gc
  else if (cmd === "QUIT") process.exit(0);
});
lines.on("close", () => process.exit(0));
