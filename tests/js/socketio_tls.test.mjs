// The official socket.io-client over TLS: skyrelay serving https and wss on its one port
// (sio_server.py --tls makes a CA and a certificate for 127.0.0.1 and prints the CA's path).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { io } from "socket.io-client";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let server, url, ca;

before(async () => {
  server = spawn(path.join(root, ".venv/bin/python"),
                 [path.join(root, "tests/js/sio_server.py"), "--tls"],
                 { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  for await (const chunk of server.stdout) {
    out += chunk;
    const m = out.match(/CA (.+)\nPORT (\d+)\n/);
    if (m) { ca = readFileSync(m[1]); url = `https://127.0.0.1:${m[2]}`; break; }
  }
  assert.ok(url, "the server did not start");
});

after(async () => {
  server.stdin.end();
  const timer = setTimeout(() => server.kill("SIGKILL"), 5000);
  await once(server, "exit");
  clearTimeout(timer);
});

function next(socket, event) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within 5 s`)), 5000);
    socket.once(event, (...args) => { clearTimeout(t); resolve(args); });
  });
}

const configs = {
  "websocket only": { transports: ["websocket"] },
  "polling only": { transports: ["polling"] },
  "polling with upgrade": { transports: ["polling", "websocket"] },
};

for (const [name, opts] of Object.entries(configs)) {
  test(`https ${name}: welcome, echo, ack`, async () => {
    const socket = io(url, { reconnection: false, timeout: 5000, forceNew: true, ca, ...opts,
                             auth: { token: "t-tls" } });
    try {
      const [welcome] = await next(socket, "welcome");
      assert.deepEqual(welcome.auth, { token: "t-tls" });
      socket.emit("echo", { over: "tls" });
      assert.deepEqual((await next(socket, "echo"))[0], { over: "tls" });
      assert.equal(await socket.timeout(5000).emitWithAck("sum", [1, 2, 3]), 6);
    } finally {
      socket.disconnect();
    }
  });
}

test("a client that does not trust the CA cannot connect", async () => {
  const socket = io(url, { reconnection: false, timeout: 3000, forceNew: true,
                           transports: ["websocket"] });
  try {
    const [err] = await next(socket, "connect_error");
    assert.ok(err instanceof Error);
    assert.equal(socket.connected, false);
  } finally {
    socket.disconnect();
  }
});
