// Socket.IO connection state recovery with the official client: a transport that drops
// comes back to the same socket and gets exactly the events it missed, in order.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import net from "node:net";
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

// Resolves or rejects as `promise` does, or rejects with `what` after `ms`.
function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

after(async () => {
  server.stdin.end();
  const timer = setTimeout(() => server.kill("SIGKILL"), 5000);
  await once(server, "exit");
  clearTimeout(timer);
});

// The client's WebSocket is cut under it (the TCP connection destroyed, no goodbye), both when
// it opened over WebSocket and when it upgraded from polling. (A polling-only client closing
// its transport sends a goodbye; the test below cuts it from outside instead.)
for (const transports of [["websocket"], ["polling", "websocket"]]) {
  test(`${transports.join("+")}: recovery replays exactly the missed events`, async () => {
    const socket = io(url, { transports, forceNew: true, reconnectionDelay: 1000,
                             reconnectionDelayMax: 1000, randomizationFactor: 0, timeout: 5000 });
    await once(socket, "connect");
    assert.equal(socket.recovered, false);
    if (transports.length === 2 && socket.io.engine.transport.name !== "websocket") {
      // Wait for the upgrade, so that the cut hits the WebSocket.
      await withDeadline(once(socket.io.engine, "upgrade"), 15000, "no upgrade");
    }
    assert.equal(socket.io.engine.transport.name, "websocket");
    const firstId = socket.id;
    const total = 60;
    const seen = [];
    let acked = false;
    let dropped = false;
    // The cut comes after the 10th tick and after the ack: an ack is not replayed by recovery
    // (nor by the reference server), and a loaded machine may deliver it after a few ticks.
    const cutIfDue = () => {
      if (dropped || !acked || seen.length < 10) return;
      dropped = true;
      // Cut the connection under the client, without a goodbye: a lost transport.
      socket.io.engine.transport.ws._socket.destroy();
    };
    const done = new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${seen.length} ticks`)), 20000);
      socket.on("tick", ({ n }) => {
        seen.push(n);
        cutIfDue();
        if (n === total - 1) { clearTimeout(t); resolve(); }
      });
    });
    done.catch(() => {});  // awaited below; keeps an early failure from going unhandled
    const reconnected = new Promise((resolve) => socket.io.once("reconnect", resolve));
    assert.equal(await socket.timeout(10000).emitWithAck("join_ticks", total), "started");
    acked = true;
    cutIfDue();
    assert.ok(dropped || seen.length < total, "every tick came before the ack: nothing to cut");
    await reconnected;
    await done;
    assert.equal(socket.recovered, true);
    assert.equal(socket.id, firstId);
    assert.deepEqual(seen, [...Array(total).keys()]);  // every tick once, in order
    socket.disconnect();
  });
}

// A TCP proxy in front of the server that can cut every connection through it and refuse new
// ones for a while: the network failing under a client, whatever its transport.
async function startProxy(target) {
  const open = new Set();
  let refusing = false;
  const proxy = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(target, "127.0.0.1");
    open.add(client);
    open.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  return {
    port: proxy.address().port,
    cut(refuseMs) {
      refusing = true;
      for (const s of open) s.destroy();
      setTimeout(() => { refusing = false; }, refuseMs);
    },
    close() {
      for (const s of open) s.destroy();
      proxy.close();
    },
  };
}

// Events to the client's room, to everyone and to the client alone, interleaved: after the
// network fails under it and comes back, it has every one once and in order, over polling only
// and over WebSocket.
for (const transports of [["polling"], ["websocket"]]) {
  test(`${transports[0]}: recovery after the network fails replays rooms, broadcasts and direct events in order`, async () => {
    const proxy = await startProxy(Number(new URL(url).port));
    // The client retries every 300 ms while the proxy refuses.
    const socket = io(`http://127.0.0.1:${proxy.port}`, {
      transports, forceNew: true, reconnectionDelay: 300, reconnectionDelayMax: 300,
      randomizationFactor: 0, timeout: 5000 });
    const handshake = new Promise((resolve) => socket.io.engine.once("handshake", resolve));
    try {
      await once(socket, "connect");
      // A polling session whose client vanished is let go by the server after at most one
      // ping interval and one ping timeout (from the handshake). The network stays down that
      // long and a second more, so that the client comes back to a detached socket.
      const { pingInterval, pingTimeout } = await handshake;
      const refuseMs = pingInterval + pingTimeout + 1000;
      const firstId = socket.id;
      const total = 90;
      const seen = [];
      let acked = false;
      let cut = false;
      // After the 12th tick and the ack (an ack is not replayed, and may come after a few ticks).
      const cutIfDue = () => {
        if (cut || !acked || seen.length < 12) return;
        cut = true;
        proxy.cut(refuseMs);
      };
      const done = new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`only ${seen.length} ticks: ${seen}`)),
                             20000 + refuseMs);
        socket.on("tick", ({ n, blob }) => {
          if (n % 3 === 0 && !(Buffer.isBuffer(blob) && blob.equals(Buffer.from([n, n, n]))))
            return reject(new Error(`tick ${n} came without its attachment: ${blob}`));
          seen.push(n);
          cutIfDue();
          if (n === total - 1) { clearTimeout(t); resolve(); }
        });
      });
      done.catch(() => {});  // awaited below; keeps an early failure from going unhandled
      const disconnected = new Promise((resolve) => socket.once("disconnect", resolve));
      const reconnected = new Promise((resolve) => socket.io.once("reconnect", resolve));
      assert.equal(await socket.timeout(10000).emitWithAck("join_mixed", total), "started");
      acked = true;
      cutIfDue();
      assert.ok(cut || seen.length < total, "every tick came before the ack: nothing to cut");
      // Polling sees a failed request ("transport error"), WebSocket a closed socket.
      assert.ok(["transport error", "transport close"].includes(await disconnected));
      await reconnected;
      await done;
      assert.equal(socket.recovered, true);
      assert.equal(socket.id, firstId);
      assert.deepEqual(seen, [...Array(total).keys()]);
    } finally {
      socket.disconnect();
      proxy.close();
    }
  });
}

// A socket in several rooms (one publication to two of them at once) that also gets direct
// emits: each event carries the socket's own offset, "1", "2", ... with no gap, and after its
// WebSocket is cut it gets exactly what it missed, in order, once, with the offsets going on.
test("several rooms and direct emits: per-socket offsets, exact replay", async () => {
  const socket = io(url, { transports: ["websocket"], forceNew: true, reconnectionDelay: 500,
                           reconnectionDelayMax: 500, randomizationFactor: 0, timeout: 5000 });
  // Every event's offset (its last argument), the connect handler's "welcome"s included.
  const offsets = [];
  socket.onAny((...args) => offsets.push(args[args.length - 1]));
  await once(socket, "connect");
  const firstId = socket.id;
  const total = 60;
  const seen = [];
  let acked = false;
  let dropped = false;
  const cutIfDue = () => {
    if (dropped || !acked || seen.length < 10) return;
    dropped = true;
    socket.io.engine.transport.ws._socket.destroy();
  };
  const done = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`only ${seen.length} ticks: ${seen}`)), 20000);
    socket.on("tick", ({ n }) => {
      seen.push(n);
      cutIfDue();
      if (n === total - 1) { clearTimeout(t); resolve(); }
    });
  });
  done.catch(() => {});
  const reconnected = new Promise((resolve) => socket.io.once("reconnect", resolve));
  assert.equal(await socket.timeout(10000).emitWithAck("join_rooms", total), "started");
  acked = true;
  cutIfDue();
  assert.ok(dropped || seen.length < total, "every tick came before the ack: nothing to cut");
  await reconnected;
  await done;
  assert.equal(socket.recovered, true);
  assert.equal(socket.id, firstId);
  assert.deepEqual(seen, [...Array(total).keys()]);  // once each, in order, none from elsewhere
  // The ticks and the two "welcome"s (the connect handler runs again on recovery); the ack is
  // not an event. Offsets "1", "2", ... without a gap or a repeat.
  assert.equal(offsets.length, total + 2);
  assert.deepEqual(offsets, [...Array(total + 2).keys()].map((i) => String(i + 1)));
  socket.disconnect();
});
