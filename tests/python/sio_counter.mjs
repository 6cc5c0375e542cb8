// Socket.IO clients for test_redis_faults.py's 100,000-event test (Python's client cannot keep
// up with it on this machine): `node sio_counter.mjs ROOM TOTAL PORT...` connects one
// socket.io-client per port, joined to ROOM (auth {room}, redis_node.py's connect handler),
// prints "ready" once all are connected; for each `mark` event a client gets, a JSON line
// {"port", "mark": data.round} (the test paces its rounds by them); then for each client, once
// it has TOTAL `tick` events or its connection ended (or 150 s passed, or 15 s after the mark
// with data.last): a JSON line
// {"port", "ns": [the ticks' n in arrival order], "ended": bool}. Exits when all reported.
import { io } from "socket.io-client";

const [room, totalText, ...ports] = process.argv.slice(2);
const total = Number(totalText);
let connected = 0;
let reported = 0;
const report = (port, ns, ended) => {
  const last = ++reported === ports.length;
  // A pipe is written asynchronously: exit only once the last line is out.
  process.stdout.write(JSON.stringify({ port: Number(port), ns, ended }) + "\n",
                       () => { if (last) process.exit(0); });
};
for (const port of ports) {
  const ns = [];
  let done = false;
  const socket = io(`http://127.0.0.1:${port}`, {
    auth: { room }, transports: ["websocket"], reconnection: false,
  });
  const finish = (ended) => {
    if (done) return;
    done = true;
    socket.close();
    report(port, ns, ended);
  };
  socket.on("connect", () => {
    if (++connected === ports.length) process.stdout.write("ready\n");
  });
  socket.on("tick", (data) => {
    ns.push(data.n);
    if (ns.length >= total) finish(false);
  });
  socket.on("mark", (data) => {
    if (done) return;
    process.stdout.write(JSON.stringify({ port: Number(port), mark: data.round }) + "\n");
    if (data.last) setTimeout(() => finish(false), 15_000).unref();
  });
  socket.on("disconnect", () => finish(true));
  socket.on("connect_error", () => finish(true));
  setTimeout(() => finish(false), 150_000).unref();
}
