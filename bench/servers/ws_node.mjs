// Node `ws` (8.x) for the fan-out drivers (run_lightload.py): every message to every client with
// ws.send, as ws's README broadcasts. Args: --port P --clients N --rate R --seconds S.
// Paced like servers/common.py: a message is sent at the first 1 ms tick at or after its due
// time, and the timer sleeps until the next due message rather than waking every millisecond.
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? Number(process.argv[i + 1]) : d; };
const port = arg("--port"), clients = arg("--clients", 1000), rate = arg("--rate", 100);
const seconds = Math.min(arg("--seconds", 10), 120), connectTimeout = arg("--connect-timeout", 60);
const pad = "x".repeat(60);
const http = createServer();
const wss = new WebSocketServer({ server: http, path: "/ws/bench", perMessageDeflate: false });
http.listen(port, "127.0.0.1");
const monoNs = () => process.hrtime.bigint();  // CLOCK_MONOTONIC on Linux, like the client

const started = Date.now();
const wait = setInterval(() => {
  if (wss.clients.size >= clients) { clearInterval(wait); publish(); }
  else if (Date.now() - started > connectTimeout * 1000) { console.error("too few clients"); process.exit(1); }
}, 50);

function publish() {
  console.log("PUBLISHING");
  const t0 = performance.now();
  let seq = 0;
  const tick = () => {
    const elapsed = (performance.now() - t0) / 1000;
    if (elapsed >= seconds) { console.log(`DONE ${seq}`); process.exit(0); }
    const due = Math.floor(rate * elapsed) + 1;
    while (seq < due) {
      const text = `{"t":${monoNs()},"seq":${seq},"pad":"${pad}"}`;
      for (const ws of wss.clients) ws.send(text);
      seq++;
    }
    const nextDue = (seq / rate) * 1000;  // ms since t0
    const nextTick = Math.floor(elapsed * 1000) + 1;
    setTimeout(tick, Math.max(nextTick, nextDue) - performance.now() + t0);
  };
  tick();
}
