// Echo load generator for run_handlers.py: N connections, each sending its next request when
// the answer to the previous one arrives (closed loop). Socket.IO: emit("echo", data, ack);
// JSON protocol: {"type":"request","id":...,"event":"echo","data":...} answered by a response.
// Bounded in time (--seconds, at most 60) and count (--max answers). Prints one JSON line:
//   {"answers": n, "seconds": s, "errors": e} for the measured window (after --warmup).
// Args: --proto sio|json --port P [--clients 100] [--warmup 1] [--seconds 5] [--max 2000000]
import { io } from "socket.io-client";
import WebSocket from "ws";

const argv = process.argv;
const arg = (k, d) => { const i = argv.indexOf(k); return i > 0 ? argv[i + 1] : d; };
const proto = arg("--proto", "sio"), port = Number(arg("--port"));
const clients = Number(arg("--clients", 100)), warmup = Number(arg("--warmup", 1));
const seconds = Math.min(Number(arg("--seconds", 5)), 60), max = Number(arg("--max", 2e6));
const data = { seq: 0, pad: "x".repeat(40) };  // ~64 bytes of JSON each way

let counting = false, answers = 0, errors = 0, stopped = false;
const done = () => {
  if (counting) answers++;
  if (answers >= max) finish();
};

function sioClient(ready) {
  const s = io(`http://127.0.0.1:${port}`, { transports: ["websocket"], reconnection: false });
  const send = () => {
    if (stopped) return;
    s.emit("echo", data, (reply) => {
      if (!reply || reply.pad !== data.pad) errors++;
      done();
      send();
    });
  };
  s.on("connect", () => ready(send));
  s.on("connect_error", (e) => { console.error("connect_error", e.message); process.exit(1); });
  return () => s.close();
}

function jsonClient(ready) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  let id = 0;
  const send = () => {
    if (stopped) return;
    ws.send(JSON.stringify({ type: "request", id: String(++id), event: "echo", data }));
  };
  ws.on("message", (raw) => {
    const m = JSON.parse(raw);
    if (m.type !== "response") return;  // welcome, pings
    if (!m.ok || m.data.pad !== data.pad) errors++;
    done();
    send();
  });
  ws.on("open", () => ready(send));
  ws.on("error", (e) => { console.error("ws error", e.message); process.exit(1); });
  return () => ws.terminate();
}

const closers = [], senders = [];
const make = proto === "json" ? jsonClient : sioClient;
for (let i = 0; i < clients; i++) {
  closers.push(make((send) => { senders.push(send); if (senders.length === clients) start(); }));
}
setTimeout(() => { console.error("too few connections"); process.exit(1); }, 30000).unref();

let t0 = 0;
function start() {
  for (const send of senders) send();
  setTimeout(() => { counting = true; t0 = performance.now(); }, warmup * 1000);
  setTimeout(finish, (warmup + seconds) * 1000);
}

function finish() {
  if (stopped) return;
  stopped = true;
  const elapsed = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ answers, seconds: Number(elapsed.toFixed(3)), errors }));
  for (const close of closers) close();
  setTimeout(() => process.exit(0), 100);
}
