// The official socket.io-client 4.8 against skyrelay, over each transport configuration.
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
  server = spawn(path.join(root, ".venv/bin/python"), [path.join(root, "tests/js/sio_server.py")],
                 { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  for await (const chunk of server.stdout) {
    out += chunk;
    const m = out.match(/PORT (\d+)\n/);  // whole line: a chunk may end mid-number
    if (m) { url = `http://127.0.0.1:${m[1]}`; break; }
  }
  assert.ok(url, "the server did not start");
});

after(async () => {
  server.stdin.end();  // the server stops when its stdin closes
  const timer = setTimeout(() => server.kill("SIGKILL"), 5000);
  await once(server, "exit");
  clearTimeout(timer);
});

const configs = {
  "websocket only": { transports: ["websocket"] },
  "polling only": { transports: ["polling"] },
  "polling with upgrade": { transports: ["polling", "websocket"] },
};

function connect(opts, nsp = "/") {
  return io(url + nsp, { reconnection: false, timeout: 5000, forceNew: true, ...opts });
}

function next(socket, event) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within 5 s`)), 5000);
    socket.once(event, (...args) => { clearTimeout(t); resolve(args); });
  });
}

for (const [name, opts] of Object.entries(configs)) {
  test(`${name}: events, acks both ways and binary`, async () => {
    const socket = connect({ ...opts, auth: { token: "t-1" } });
    const [welcome] = await next(socket, "welcome");
    assert.deepEqual(welcome.auth, { token: "t-1" });
    assert.equal(welcome.sid, socket.id);

    socket.emit("echo", { nested: [1, "two", { three: true }] });
    assert.deepEqual((await next(socket, "echo"))[0], { nested: [1, "two", { three: true }] });

    assert.equal(await socket.timeout(5000).emitWithAck("sum", [1, 2, 3, 4]), 10);

    const bytes = Uint8Array.from([1, 2, 3, 250]);
    const reply = await socket.timeout(5000).emitWithAck("blob", bytes);
    assert.equal(reply.size, 4);
    assert.deepEqual([...new Uint8Array(reply.reversed)], [250, 3, 2, 1]);

    socket.on("question", (n, ack) => ack(n + 1));
    assert.deepEqual(await socket.timeout(5000).emitWithAck("ask_me", 41), { client_said: 42 });

    if (opts.transports.length === 2) {
      // The upgrade happened and traffic keeps flowing over it.
      for (let i = 0; i < 50 && socket.io.engine.transport.name !== "websocket"; i++)
        await new Promise((r) => setTimeout(r, 100));
      assert.equal(socket.io.engine.transport.name, "websocket");
      assert.equal(await socket.timeout(5000).emitWithAck("sum", [5, 5]), 10);
    }
    socket.disconnect();
  });

  test(`${name}: refused auth and namespaces`, async () => {
    const refused = connect({ ...opts, auth: { token: "bad" } });
    const [err] = await next(refused, "connect_error");
    assert.equal(err.message, "invalid token");
    assert.deepEqual(err.data, { code: "auth_failed" });
    refused.close();

    const admin = connect({ ...opts, auth: { role: "admin" } }, "/admin");
    await next(admin, "connect");
    const stats = await admin.timeout(5000).emitWithAck("stats", null);
    assert.equal(stats.namespace, "/admin");
    admin.close();

    const intruder = connect({ ...opts, auth: { role: "guest" } }, "/admin");
    const [denied] = await next(intruder, "connect_error");
    assert.ok(denied.message.length > 0);
    intruder.close();

    const lost = connect(opts, "/nowhere");
    const [invalid] = await next(lost, "connect_error");
    assert.equal(invalid.message, "Invalid namespace");
    lost.close();
  });

  test(`${name}: reconnects after the server drops the transport`, async () => {
    const socket = io(url, { ...opts, forceNew: true, reconnectionDelay: 100,
                             reconnectionDelayMax: 200, timeout: 5000 });
    const [first] = await next(socket, "welcome");
    // Kill the underlying Engine.IO connection: the client must reconnect by itself.
    socket.io.engine.close();
    const [second] = await next(socket, "welcome");
    assert.notEqual(second.sid, first.sid);
    assert.equal(await socket.timeout(5000).emitWithAck("sum", [2, 2]), 4);
    socket.disconnect();
  });
}
