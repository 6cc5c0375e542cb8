// Node socket.io 4.8 (ws): io.emit() to everyone. Args: --port P --clients N --rate R --seconds S
import { createServer } from "node:http";
import { Server } from "socket.io";

const arg = (k, d) => { const i = process.argv.indexOf(k); return i > 0 ? Number(process.argv[i + 1]) : d; };
const port = arg("--port"), clients = arg("--clients", 1000), rate = arg("--rate", 100);
const seconds = Math.min(arg("--seconds", 10), 120), connectTimeout = arg("--connect-timeout", 60);
const pad = "x".repeat(60);
const http = createServer();
const io = new Server(http, { pingInterval: 25000, pingTimeout: 20000 });
http.listen(port, "127.0.0.1");
const monoNs = () => process.hrtime.bigint();  // CLOCK_MONOTONIC on Linux, like the client

const started = Date.now();
const wait = setInterval(() => {
  if (io.engine.clientsCount >= clients) { clearInterval(wait); publish(); }
  else if (Date.now() - started > connectTimeout * 1000) { console.error("too few clients"); process.exit(1); }
}, 50);

function publish() {
  console.log("PUBLISHING");
  const t0 = Date.now();
  let seq = 0;
  const tick = () => {
    const elapsed = (Date.now() - t0) / 1000;
    if (elapsed >= seconds) { console.log(`DONE ${seq}`); io.close(); process.exit(0); }
    const due = Math.floor(rate * elapsed) + 1;
    while (seq < due) {
      io.emit("tick", JSON.parse(`{"t":${monoNs()},"seq":${seq},"pad":"${pad}"}`));
      seq++;
    }
    setTimeout(tick, 1);
  };
  tick();
}
