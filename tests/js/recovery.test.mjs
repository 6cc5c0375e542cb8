// Socket.IO connection state recovery with the official client: a transport that drops
// comes back to the same socket and gets exactly the events it missed, in order.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { io } from "socket.io-client";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let server, url;

before(async () => {
  server = spawn(path.join(root, ".venv/bin/python"),
                 [path.join(root, "tests/js/sio_server.py"), "--recovery"],
                 { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  for await (const chunk of server.stdout) {
    out += chunk;
    const m = out.match(/PORT (\d+)\n/);
    if (m) { url = `http://127.0.0.1:${m[1]}`; break; }
  }
  assert.ok(url, "the server did not start");
});

after(async () => {
  server.stdin.end();
  const timer = setTimeout(() => server.kill("SIGKILL"), 5000);
  await once(server, "exit");
  clearTimeout(timer);
});

// The client's WebSocket is cut under it (the TCP connection destroyed, no goodbye), both when
// it opened over WebSocket and when it upgraded from polling. (Polling-only clients cannot
// lose their transport silently from inside the client: closing it sends a goodbye.)
for (const transports of [["websocket"], ["polling", "websocket"]]) {
  test(`${transports[0]}: recovery replays exactly the missed events`, async () => {
    const socket = io(url, { transports, forceNew: true, reconnectionDelay: 1000,
                             reconnectionDelayMax: 1000, randomizationFactor: 0, timeout: 5000 });
    await once(socket, "connect");
    assert.equal(socket.recovered, false);
    if (transports.length === 2) {  // wait for the upgrade, so the cut hits the WebSocket
      for (let i = 0; i < 50 && socket.io.engine.transport.name !== "websocket"; i++)
        await new Promise((r) => setTimeout(r, 100));
      assert.equal(socket.io.engine.transport.name, "websocket");
    }
    const firstId = socket.id;
    const total = 60;
    const seen = [];
    let dropped = false;
    const done = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${seen.length} ticks`)), 15000);
      socket.on("tick", ({ n }) => {
        seen.push(n);
        if (seen.length === 10 && !dropped) {
          dropped = true;
          // Cut the connection under the client, without a goodbye: a lost transport.
          socket.io.engine.transport.ws._socket.destroy();
        }
        if (n === total - 1) { clearTimeout(t); resolve(); }
      });
    });
    const reconnected = new Promise((resolve) => socket.io.once("reconnect", resolve));
    assert.equal(await socket.timeout(5000).emitWithAck("join_ticks", total), "started");
    await reconnected;
    await done;
    assert.equal(socket.recovered, true);
    assert.equal(socket.id, firstId);
    assert.deepEqual(seen, [...Array(total).keys()]);  // every tick once, in order
    socket.disconnect();
  });
}
