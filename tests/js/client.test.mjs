// skyrelay.js, the browser client of the JSON protocol, run in Node with the `ws` package's
// WebSocket against a real skyrelay server (tests/js/json_server.py) started from Python.
import { test, describe, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import net from "node:net";
import crypto from "node:crypto";
import WebSocket, { WebSocketServer } from "ws";
import { SkyRelay, SkyRelayError, connect, STATES, CLIENT_EVENTS }
  from "../../python/skyrelay/web/skyrelay.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- helpers ----------------------------------------------------------------------------------

const servers = new Set();
const clients = new Set();
const proxies = new Set();

/** Starts tests/js/json_server.py with `args`; resolves once it prints its port. */
async function startServer(args = []) {
  const child = spawn(path.join(root, ".venv/bin/python"),
                      [path.join(root, "tests/js/json_server.py"), ...args],
                      { stdio: ["pipe", "pipe", "inherit"] });
  const exited = once(child, "exit");
  const server = {
    child,
    async stop() {
      if (!servers.delete(server)) return;
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  servers.add(server);
  const timer = setTimeout(() => child.kill("SIGKILL"), 20000);
  let out = "";
  for await (const chunk of child.stdout) {
    out += chunk;
    const m = out.match(/PORT (\d+)\n/);
    if (m) { server.port = Number(m[1]); break; }
  }
  clearTimeout(timer);
  assert.ok(server.port, "the server did not start");
  server.url = `ws://127.0.0.1:${server.port}/ws`;
  return server;
}

/** A client with the ws package's WebSocket, closed after the test. */
function client(url, options = {}) {
  const c = new SkyRelay(url, { WebSocket, ...options });
  clients.add(c);
  return c;
}

/** Resolves with the arguments of the next `name` event of `c` that `accept` takes. */
function next(c, name, { timeout = 5000, accept = () => true } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no "${name}" within ${timeout} ms`)); },
                             timeout);
    const off = c.on(name, (...args) => {
      if (!accept(...args)) return;
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/** Polls `predicate` until it holds. */
async function until(predicate, what, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function connected(c) {
  if (c.state !== "connected") await next(c, "connected");
}

/** Records every state change of `c`. */
function stateLog(c) {
  const log = [];
  c.on("state", (state) => log.push(state));
  return log;
}

/** A TCP proxy in front of a port: cut() destroys every connection and refuses new ones until
 * allow(); freeze() stops carrying bytes on the open connections (a peer gone silent) while
 * new connections work. */
async function startProxy(target) {
  const pairs = new Set();
  let refusing = false;
  const proxy = net.createServer((downstream) => {
    if (refusing) return downstream.destroy();
    const upstream = net.connect(target, "127.0.0.1");
    const pair = { downstream, upstream };
    pairs.add(pair);
    const end = () => {
      downstream.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const s of [downstream, upstream]) s.on("error", end).on("close", end);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  const handle = {
    url: `ws://127.0.0.1:${proxy.address().port}/ws`,
    get open() { return pairs.size; },
    cut() {
      refusing = true;
      for (const { downstream, upstream } of pairs) { downstream.destroy(); upstream.destroy(); }
    },
    allow() { refusing = false; },
    freeze() {
      for (const { downstream, upstream } of pairs) {
        downstream.unpipe(upstream);
        upstream.unpipe(downstream);
        downstream.pause();
        upstream.pause();
      }
    },
    close() {
      proxies.delete(handle);
      handle.cut();
      proxy.close();
    },
  };
  proxies.add(handle);
  return handle;
}

/** A WebSocket class for the client that records when each socket is made and what it sends. */
function recordingWebSocket() {
  const made = [];
  const sent = [];
  class Recording extends WebSocket {
    constructor(...args) {
      super(...args);
      made.push(Date.now());
    }
    send(text, ...rest) {
      sent.push(JSON.parse(text));
      return super.send(text, ...rest);
    }
  }
  return { Recording, made, sent };
}

afterEach(() => {
  for (const c of clients) c.close();
  clients.clear();
  for (const p of [...proxies]) p.close();
});

after(async () => {
  await Promise.all([...servers].map((s) => s.stop()));
});

// -- a server for the tests that don't stop it -------------------------------------------------

let shared;
const sharedServer = async () => (shared ??= await startServer());

// -- connection and states --------------------------------------------------------------------

describe("connection", () => {
  test("states go connecting then connected, with per-state events; close() stops for good", async () => {
    const { url } = await sharedServer();
    const c = client(url);
    const log = stateLog(c);
    const transitions = [];
    c.on("state", (state, previous) => transitions.push([previous, state]));
    const [info] = await next(c, "connected");
    assert.deepEqual(transitions, [["disconnected", "connecting"], ["connecting", "connected"]]);
    assert.equal(c.state, "connected");
    assert.match(info.sid, /^[A-Za-z0-9_-]{16}$/);
    assert.equal(info.heartbeatMs, 30000);
    const me = await c.request("whoami");
    assert.equal(me.sid, c.sid);

    const closed = next(c, "disconnected");
    c.close();
    assert.equal(c.state, "disconnected");
    await closed;
    await sleep(300);  // no retry follows a close()
    assert.deepEqual(log, ["connecting", "connected", "disconnected"]);
    assert.deepEqual(STATES, ["disconnected", "connecting", "connected", "reconnecting",
                             "fallback-sse", "polling"]);
  });

  test("connect() helper, http:// URLs and autoConnect: false", async () => {
    const { port } = await sharedServer();
    const c = connect(`http://127.0.0.1:${port}/ws`, { WebSocket });
    clients.add(c);
    assert.equal(c.url, `ws://127.0.0.1:${port}/ws`);
    await connected(c);

    const idle = client(`ws://127.0.0.1:${port}/ws`, { autoConnect: false });
    await sleep(100);
    assert.equal(idle.state, "disconnected");
    idle.open();
    assert.equal(idle.state, "connecting");
    await connected(idle);
    assert.throws(() => new SkyRelay("/ws", { WebSocket }), TypeError);  // no page to be relative to
    assert.throws(() => new SkyRelay("ftp://x/ws", { WebSocket }), TypeError);
  });

  test("the server serves this module at /skyrelay.js (and its types), and it works as served", async () => {
    const { port, url } = await sharedServer();
    const res = await fetch(`http://127.0.0.1:${port}/skyrelay.js`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /javascript/);
    const served = await res.text();
    const { readFile } = await import("node:fs/promises");
    assert.equal(served, await readFile(path.join(root, "python/skyrelay/web/skyrelay.js"), "utf8"),
                 "the installed package serves another skyrelay.js: run make install");
    const types = await fetch(`http://127.0.0.1:${port}/skyrelay.d.ts`);
    assert.equal(types.status, 200);
    await types.text();
    const mod = await import(`data:text/javascript;base64,${Buffer.from(served).toString("base64")}`);
    const c = new mod.SkyRelay(url, { WebSocket });
    clients.add(c);
    assert.equal(await c.request("echo", "served"), "served");
  });

  test("the token goes as the `token` query parameter; a refused one never connects", async () => {
    const server = await startServer(["--token", "s3cret"]);
    const good = client(server.url, { token: "s3cret" });
    assert.equal((await good.request("whoami")).token, "s3cret");
    const asked = client(server.url, { token: async () => "s3cret" });
    assert.equal((await asked.request("whoami")).token, "s3cret");

    const bad = client(server.url, { token: "wrong", backoff: { base: 30, max: 30, jitter: 0 } });
    const log = stateLog(bad);
    await next(bad, "retry", { accept: ({ attempt }) => attempt === 3 });
    assert.equal(bad.state, "reconnecting");
    assert.deepEqual(log, ["connecting", "reconnecting"]);  // never connected
    await server.stop();
  });

  test("the application's disconnect (4002) ends the connection without retries", async () => {
    const { url } = await sharedServer();
    const c = client(url, { backoff: { base: 20, jitter: 0 } });
    const control = client(url);
    await connected(c);
    const retries = [];
    c.on("retry", (r) => retries.push(r));
    const gone = next(c, "disconnected");
    assert.equal(await control.request("kick", c.sid), true);
    const [info] = await gone;
    assert.equal(info.code, 4002);
    assert.equal(info.reason, "kicked");
    await sleep(200);
    assert.equal(c.state, "disconnected");
    assert.deepEqual(retries, []);
  });
});

// -- roles -------------------------------------------------------------------------------------

/** An HS256 JSON Web Token for `payload`, signed with `secret`. */
function hs256(secret, payload) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(payload)}`;
  return `${signed}.${crypto.createHmac("sha256", secret).update(signed).digest("base64url")}`;
}

describe("roles", () => {
  const secret = "a-secret-of-at-least-thirty-two-bytes";
  const tokenFor = (...roles) =>
    hs256(secret, { sub: roles[0] ?? "nobody", roles, exp: Math.floor(Date.now() / 1000) + 300 });

  test("a topic the token's roles do not open rejects subscribe() with `forbidden`; the others of the same batch still subscribe", async () => {
    const server = await startServer(["--jwt-secret", secret]);
    // Subscribed before the connection opens: both go to the server in one batched subscribe.
    const viewer = client(server.url, { token: tokenFor("viewer"), autoConnect: false });
    const news = viewer.subscribe("news");
    const well = viewer.subscribe("well:1");
    const errors = [];
    viewer.on("error", (err) => errors.push(err.code));
    viewer.open();
    await assert.rejects(well, (err) => err instanceof SkyRelayError && err.code === "forbidden" &&
      /requires the role operator/.test(err.message));
    assert.equal((await news).topic, "news");
    assert.deepEqual(viewer.topics, ["news"]);  // the refused topic is not retried
    assert.deepEqual(errors, ["forbidden"]);
    await assert.rejects(viewer.request("purge"), (err) => err.code === "forbidden");

    const operator = client(server.url, { token: tokenFor("operator") });
    const got = [];
    await operator.subscribe("well:1", (data) => got.push(data));
    await operator.request("publish", { topic: "well:1", count: 2 });
    await until(() => got.length === 2, "the operator's events");
    assert.deepEqual(got, [{ n: 0 }, { n: 1 }]);
    await server.stop();
  });
});

// -- subscriptions, events, requests ---------------------------------------------------------

describe("messages", () => {
  test("subscribe: the handler, on(event) and onAny() get the topic's events in order", async () => {
    const { url } = await sharedServer();
    const c = client(url);
    const control = client(url);
    const got = [];
    const byName = [];
    const any = [];
    const other = [];
    const position = await c.subscribe("sub-a", (data, meta) => got.push([data.n, meta.seq, meta.topic]));
    assert.equal(position.topic, "sub-a");
    assert.equal(position.seq, 0);
    assert.equal(typeof position.epoch, "string");
    assert.equal(position.recovered, false);
    c.subscribe("sub-b", (data) => other.push(data.n));
    c.on("tick", (data, meta) => byName.push(`${meta.topic}:${data.n}`));
    c.onAny((event, data, meta) => any.push(`${event}:${meta.topic}:${data.n}`));
    await c.request("echo", null);  // sub-b's subscribe was handled before this was read

    await control.request("publish", { topic: "sub-a", count: 3 });
    await control.request("publish", { topic: "sub-b", count: 1, start: 7 });
    await until(() => got.length === 3 && other.length === 1, "the events");
    assert.deepEqual(got, [[0, 1, "sub-a"], [1, 2, "sub-a"], [2, 3, "sub-a"]]);
    assert.deepEqual(other, [7]);
    assert.deepEqual(byName, ["sub-a:0", "sub-a:1", "sub-a:2", "sub-b:7"]);
    assert.deepEqual(any, ["tick:sub-a:0", "tick:sub-a:1", "tick:sub-a:2", "tick:sub-b:7"]);
    assert.deepEqual(c.position("sub-a"), { seq: 3, epoch: position.epoch });
    assert.deepEqual(c.topics.sort(), ["sub-a", "sub-b"]);

    // A topic the server refuses rejects with its code and is not retried.
    const errors = [];
    c.on("error", (err) => errors.push(err.code));
    await assert.rejects(c.subscribe("x".repeat(300)), { code: "bad_message" });
    assert.equal(c.topics.length, 2);
    assert.deepEqual(errors, ["bad_message"]);

    // A second subscribe to the same topic only adds a handler and answers from what it knows.
    const again = await c.subscribe("sub-a", () => {});
    assert.equal(again.epoch, position.epoch);

    // Unsubscribed: the server stops sending (its publish reaches nobody) and the handler is off.
    c.unsubscribe("sub-a");
    await c.request("echo", null);
    assert.deepEqual(await control.request("publish", { topic: "sub-a", count: 1 }), [0]);
    assert.equal(c.position("sub-a"), undefined);
  });

  test("events without a topic reach on(event); reserved names reach onAny() only", async () => {
    const { url } = await sharedServer();
    const c = client(url);
    const news = next(c, "news");
    const states = [];
    c.on("state", (...args) => states.push(args));
    const any = [];
    c.onAny((event, data) => any.push([event, data]));
    await connected(c);
    states.length = 0;
    await c.request("broadcast", { event: "state", data: "from the server" });
    await c.request("broadcast", { event: "news", data: { headline: "launch" } });
    const [data, meta] = await news;
    assert.deepEqual(states, []);  // "state" is the client's: the server's went to onAny only
    assert.deepEqual(any, [["state", "from the server"], ["news", { headline: "launch" }]]);
    assert.deepEqual(data, { headline: "launch" });
    assert.equal(meta.event, "news");
    assert.equal(meta.topic, undefined);
    assert.equal(meta.seq, undefined);
    assert.match(meta.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(CLIENT_EVENTS.includes("state") && CLIENT_EVENTS.includes("reset"));
  });

  test("request() resolves with the handler's answer", async () => {
    const { url } = await sharedServer();
    const c = client(url);
    assert.deepEqual(await c.request("echo", { a: [1, 2, { b: "ü" }] }), { a: [1, 2, { b: "ü" }] });
    assert.equal(await c.request("echo", "text"), "text");
    assert.equal(await c.request("echo"), null);
    const many = await Promise.all([...Array(20).keys()].map((n) => c.request("echo", n)));
    assert.deepEqual(many, [...Array(20).keys()]);
  });

  test("request() rejects with the code: handler error, the app's own code, unknown event", async () => {
    const { url } = await sharedServer();
    const c = client(url);
    await assert.rejects(c.request("fail", 1), (err) => {
      assert.ok(err instanceof SkyRelayError && err instanceof Error);
      assert.equal(err.code, "handler_error");
      // The exception's text stays in the server log (the server is not in debug mode).
      assert.doesNotMatch(err.message, /bad azimuth/);
      return true;
    });
    await assert.rejects(c.request("refuse"), { code: "not_allowed", message: "you may not" });
    await assert.rejects(c.request("no_such_event"), { code: "unknown_event" });
  });

  test("request() times out with code `timeout`; the late answer is ignored", async () => {
    const { url } = await sharedServer();
    const c = client(url, { requestTimeout: 150 });
    await connected(c);
    let started = Date.now();
    // The answers come after 2 s: a loaded machine may fire the timers late, never that late.
    await assert.rejects(c.request("slow", 2), { code: "timeout" });
    let took = Date.now() - started;
    assert.ok(took >= 145 && took < 1900, `timed out after ${took} ms`);
    started = Date.now();
    await assert.rejects(c.request("slow", 2, { timeout: 50 }), { code: "timeout" });
    took = Date.now() - started;
    assert.ok(took >= 45 && took < 1900, `timed out after ${took} ms`);
    await sleep(2300);  // both late answers arrive now
    assert.equal(await c.request("slow", 0), "late");
    assert.equal(c.state, "connected");
  });

  test("emit() reaches the handler in order; an unknown event comes back as an error event", async () => {
    const { url } = await sharedServer();
    const c = client(url);
    for (let n = 0; n < 10; n++) c.emit("record", { key: "emit-order", n });
    await connected(c);
    for (let n = 10; n < 20; n++) c.emit("record", { key: "emit-order", n });
    const recorded = await c.request("recorded", "emit-order");
    assert.deepEqual(recorded, [...Array(20).keys()]);

    const error = next(c, "error");
    c.emit("no_such_event", {});
    const [err] = await error;
    assert.equal(err.code, "unknown_event");
  });
});

// -- reconnecting, the offline queue, heartbeats ------------------------------------------------

describe("reconnect", () => {
  test("after a server restart on the same port: reconnecting, backoff delays, then connected with the subscriptions back", async () => {
    let server = await startServer();
    const { port, url } = server;
    const { Recording, made } = recordingWebSocket();
    const c = client(url, { WebSocket: Recording, backoff: { base: 50, max: 400, jitter: 0 } });
    const got = [];
    await c.subscribe("restart", (data) => got.push(data.n));
    const control = client(url, { backoff: { base: 50, max: 50, jitter: 0 } });
    await control.request("publish", { topic: "restart", count: 1 });
    await until(() => got.length === 1, "the first event");
    const log = stateLog(c);
    const retries = [];
    c.on("retry", (r) => retries.push({ ...r, at: Date.now() }));

    const lost = next(c, "reconnecting");
    await server.stop();
    const [info] = await lost;
    assert.equal(info.code, 1001);  // server shutdown
    await until(() => retries.length >= 6, "six retries");
    // Each failed attempt doubles the wait, capped at max; nothing reconnects early.
    assert.deepEqual(retries.slice(0, 6).map((r) => [r.attempt, r.delay]),
                     [[1, 50], [2, 100], [3, 200], [4, 400], [5, 400], [6, 400]]);
    for (let i = 1; i < 6; i++) {
      // The socket for attempt i was made no sooner than its delay after the retry was planned.
      const attemptAt = made.find((t) => t >= retries[i - 1].at + retries[i - 1].delay - 2);
      assert.ok(attemptAt !== undefined && attemptAt <= retries[i].at,
                `attempt ${i} was not made in its slot`);
    }

    const resubscribed = next(c, "subscribed", { accept: (s) => s.topic === "restart" });
    const reset = next(c, "reset");
    server = await startServer(["--port", String(port)]);
    await next(c, "connected", { timeout: 3000 });
    const [sub] = await resubscribed;
    // A restarted server numbers its topics afresh: the client is told to reload the topic.
    assert.equal(sub.recovered, false);
    assert.deepEqual((await reset)[0], { topic: "restart", reason: "epoch_changed", seq: 0,
                                          epoch: sub.epoch });
    assert.deepEqual(log, ["reconnecting", "connected"]);
    await connected(control);
    await control.request("publish", { topic: "restart", count: 2, start: 10 });
    await until(() => got.length === 3, "events after the restart");
    assert.deepEqual(got, [0, 10, 11]);
    assert.deepEqual(c.position("restart"), { seq: 2, epoch: sub.epoch });
    await server.stop();
  });

  test("while offline, emits and requests wait in a bounded queue: oldest dropped, the rest flushed in order", async () => {
    const { url: direct, port } = await sharedServer();
    const proxy = await startProxy(port);
    const c = client(proxy.url, { maxQueue: 5, backoff: { base: 50, max: 50, jitter: 0 } });
    await connected(c);
    const dropped = [];
    c.on("dropped", (d) => dropped.push(d));

    const lost = next(c, "reconnecting");
    proxy.cut();
    await lost;
    const early = c.request("echo", "early");
    for (let n = 0; n < 6; n++) c.emit("record", { key: "queue", n });
    const late = c.request("echo", "late");
    assert.equal(c.queued, 5);
    // The queue holds 5: the early request and records 0 and 1 made room, oldest first.
    await assert.rejects(early, { code: "queue_full" });
    assert.deepEqual(dropped.map((d) => [d.type, d.event, d.data, d.reason]), [
      ["request", "echo", "early", "queue_full"],
      ["event", "record", { key: "queue", n: 0 }, "queue_full"],
      ["event", "record", { key: "queue", n: 1 }, "queue_full"],
    ]);
    await sleep(150);  // several refused attempts: the queue stays as it was
    assert.equal(c.queued, 5);

    proxy.allow();
    assert.equal(await late, "late");
    assert.equal(c.queued, 0);
    const control = client(direct);
    assert.deepEqual(await control.request("recorded", "queue"), [2, 3, 4, 5]);
  });

  test("open() while waiting for a retry connects at once", async () => {
    const { port } = await sharedServer();
    const proxy = await startProxy(port);
    const c = client(proxy.url, { backoff: { base: 60000, max: 60000, jitter: 0 } });
    await connected(c);
    const retry = next(c, "retry");
    proxy.cut();
    assert.equal((await retry)[0].delay, 60000);
    proxy.allow();
    const started = Date.now();
    const back = next(c, "connected", { timeout: 2000 });
    c.open();
    await back;
    assert.ok(Date.now() - started < 2000);
    c.open();  // connected: nothing happens
    assert.equal(c.state, "connected");
  });

  test("a request whose connection drops before the answer rejects with `disconnected`", async () => {
    const { port } = await sharedServer();
    const proxy = await startProxy(port);
    const c = client(proxy.url, { backoff: { base: 50, max: 50, jitter: 0 } });
    await connected(c);
    const pending = c.request("slow", 1);
    await sleep(50);
    proxy.cut();
    await assert.rejects(pending, { code: "disconnected" });
    proxy.allow();
    await next(c, "connected");
    const closing = c.request("slow", 1);
    c.close();
    await assert.rejects(closing, { code: "closed" });
  });
});

describe("heartbeat", () => {
  test("an idle live connection is pinged and stays up", async () => {
    const { url } = await sharedServer();
    const { Recording, sent } = recordingWebSocket();
    // A pong may take a second on a busy machine: this test is about staying up, not about
    // how fast a dead server is found (the next test).
    const c = client(url, { WebSocket: Recording, heartbeatInterval: 50, heartbeatTimeout: 1000 });
    await connected(c);
    const sid = c.sid;
    const log = stateLog(c);
    const pings = () => sent.filter((m) => m.type === "ping").length;
    await until(() => pings() >= 5, "five pings");
    assert.deepEqual(log, []);
    assert.equal(c.sid, sid);
  });

  test("a server that stops answering is found dead by the heartbeat, and the client reconnects", async () => {
    const { port } = await sharedServer();
    const proxy = await startProxy(port);
    const c = client(proxy.url, { heartbeatInterval: 100, heartbeatTimeout: 200,
                                  backoff: { base: 50, max: 50, jitter: 0 } });
    await connected(c);
    const sid = c.sid;
    const lost = next(c, "reconnecting");
    const frozenAt = Date.now();
    proxy.freeze();  // the TCP connection stays open, but nothing comes back any more
    const [info] = await lost;
    const took = Date.now() - frozenAt;
    assert.equal(info.reason, "heartbeat timeout");
    // Detected within an interval (to notice the silence) plus the pong timeout, and no sooner
    // than the timeout.
    assert.ok(took >= 190 && took < 1500, `dead after ${took} ms`);
    await next(c, "connected");
    assert.notEqual(c.sid, sid);
  });

  test("a server that accepts TCP and never answers the handshake hits the connect timeout", async () => {
    const silent = net.createServer(() => {});
    const held = new Set();
    silent.on("connection", (s) => held.add(s));
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    try {
      const c = client(`ws://127.0.0.1:${silent.address().port}/ws`,
                       { connectTimeout: 200, backoff: { base: 50, max: 50, jitter: 0 } });
      const log = stateLog(c);
      const started = Date.now();
      const [info] = await next(c, "reconnecting");
      const took = Date.now() - started;
      assert.equal(info.reason, "connect timeout");
      assert.ok(took >= 190 && took < 1500, `gave up after ${took} ms`);
      await next(c, "retry", { accept: (r) => r.attempt === 2 });
      assert.deepEqual(log, ["connecting", "reconnecting"]);
      assert.ok(held.size >= 2, "the client did not try again");
      c.close();
    } finally {
      for (const s of held) s.destroy();
      silent.close();
    }
  });
});

// -- resuming from the last seq ---------------------------------------------------------------

describe("resume", () => {
  /** A client through a proxy, subscribed to `topic`, recording what it gets. */
  async function resumable(port, topic, options = {}) {
    const proxy = await startProxy(port);
    const { Recording, sent } = recordingWebSocket();
    const c = client(proxy.url, { WebSocket: Recording, backoff: { base: 50, max: 50, jitter: 0 },
                                  ...options });
    const got = [];
    const resets = [];
    const gaps = [];
    c.on("reset", (r) => resets.push(r));
    c.on("gap", (g) => gaps.push(g));
    const first = await c.subscribe(topic, (data, meta) => got.push([data.n, meta.seq]));
    return { proxy, c, got, resets, gaps, sent, first };
  }

  test("after a drop the client gets exactly the missed events, once each, then live ones", async () => {
    const { port, url } = await sharedServer();
    const control = client(url);
    const { proxy, c, got, resets, gaps, sent, first } = await resumable(port, "resume-ok");
    await control.request("publish", { topic: "resume-ok", count: 5 });
    await until(() => got.length === 5, "the first five");

    const lost = next(c, "reconnecting");
    proxy.cut();
    await lost;
    await control.request("publish", { topic: "resume-ok", count: 10, start: 5 });  // missed
    const resubscribed = next(c, "subscribed");
    proxy.allow();
    const [info] = await resubscribed;
    assert.deepEqual(info, { topic: "resume-ok", seq: 15, epoch: first.epoch, recovered: true });
    const resume = sent.filter((m) => m.type === "subscribe").at(-1);
    assert.deepEqual({ ...resume, id: undefined },
                     { type: "subscribe", topic: "resume-ok", since: 5, epoch: first.epoch, id: undefined });
    await control.request("publish", { topic: "resume-ok", count: 5, start: 15 });  // live
    await until(() => got.length >= 20, "twenty events");
    await sleep(100);  // room for a duplicate to show up
    assert.deepEqual(got, [...Array(20).keys()].map((n) => [n, n + 1]));
    assert.deepEqual(resets, []);
    assert.deepEqual(gaps, []);
    assert.deepEqual(c.position("resume-ok"), { seq: 20, epoch: first.epoch });
  });

  test("when history no longer covers the drop, the client emits `reset` and goes on live", async () => {
    const server = await startServer(["--history", "5"]);
    const control = client(server.url);
    const { proxy, c, got, resets, gaps, first } = await resumable(server.port, "resume-gap");
    await control.request("publish", { topic: "resume-gap", count: 3 });
    await until(() => got.length === 3, "the first three");

    const lost = next(c, "reconnecting");
    proxy.cut();
    await lost;
    await control.request("publish", { topic: "resume-gap", count: 20, start: 3 });  // 15 too many
    const reset = next(c, "reset");
    proxy.allow();
    assert.deepEqual((await reset)[0],
                     { topic: "resume-gap", reason: "history_gap", seq: 23, epoch: first.epoch });
    await control.request("publish", { topic: "resume-gap", count: 2, start: 23 });
    await until(() => got.length >= 5, "the live events");
    await sleep(100);
    assert.deepEqual(got, [[0, 1], [1, 2], [2, 3], [23, 24], [24, 25]]);
    assert.equal(resets.length, 1);
    assert.deepEqual(gaps, []);  // the reset accounts for the jump
    await server.stop();
  });

  test("frames the server drops under drop_oldest show up as `gap` events", async () => {
    const server = await startServer(["--outbox-frames", "8"]);
    const control = client(server.url);
    const c = client(server.url);
    const seqs = [];
    const gaps = [];
    c.on("gap", (g) => gaps.push(g));
    await c.subscribe("gappy", (data, meta) => seqs.push(meta.seq));
    // The client stops reading, so the server's outbox fills and drop_oldest makes room.
    c._socket._socket.pause();
    await control.request("publish", { topic: "gappy", count: 300, pad: 60000,
                                       policy: "drop_oldest" }, { timeout: 20000 });
    c._socket._socket.resume();
    await until(() => seqs.at(-1) === 300, "the last event", 10000);
    assert.ok(seqs.length < 300, "nothing was dropped: the test did not fill the outbox");
    assert.ok(gaps.length >= 1);
    // Every jump in what was delivered is reported, with what was expected and what came.
    const jumps = [];
    let last = 0;
    for (const seq of seqs) {
      assert.ok(seq > last, "seq went backwards");
      if (seq > last + 1) jumps.push({ topic: "gappy", expected: last + 1, received: seq });
      last = seq;
    }
    assert.deepEqual(gaps, jumps);
    await server.stop();
  });

  test("topics subscribed while offline go out in one message and resolve from `positions`", async () => {
    const { url } = await sharedServer();
    const control = client(url);
    await control.request("publish", { topic: "batch-b", count: 4 });
    const { Recording, sent } = recordingWebSocket();
    const c = client(url, { WebSocket: Recording, autoConnect: false });
    const subs = ["batch-a", "batch-b", "batch-c"].map((t) => c.subscribe(t));
    c.open();
    const [a, b, cc] = await Promise.all(subs);
    assert.deepEqual(sent.filter((m) => m.type === "subscribe").map((m) => m.topics),
                     [["batch-a", "batch-b", "batch-c"]]);
    assert.equal(a.seq, 0);
    assert.equal(b.seq, 4);
    assert.equal(cc.seq, 0);
    for (const p of [a, b, cc]) assert.equal(typeof p.epoch, "string");
  });
});

// A scripted server (ws in this process) for what a correct skyrelay server never sends:
// duplicates and a jump on a live stream, and the exact resume message that follows.
describe("resume against a scripted server", () => {
  test("duplicates are dropped, a jump is a gap, and the resume asks from the last seq seen", async () => {
    const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await once(wss, "listening");
    const received = [];
    const connections = [];
    wss.on("connection", (ws) => {
      const mine = [];
      received.push(mine);
      connections.push(ws);
      ws.on("message", (raw) => mine.push(JSON.parse(raw)));
      ws.send(JSON.stringify({ type: "welcome", sid: `scripted${connections.length}`, heartbeat_ms: 30000 }));
    });
    try {
      const c = client(`ws://127.0.0.1:${wss.address().port}/ws`,
                       { backoff: { base: 20, max: 20, jitter: 0 } });
      const got = [];
      const gaps = [];
      c.on("gap", (g) => gaps.push(g));
      const subscribed = c.subscribe("s", (data, meta) => got.push(meta.seq));
      await until(() => received[0]?.length === 1, "the subscribe");
      const [subscribe] = received[0];
      assert.deepEqual(subscribe, { type: "subscribe", topic: "s", id: subscribe.id });
      const ws = connections[0];
      const event = (seq) => JSON.stringify({ type: "event", event: "e", topic: "s", seq,
                                              ts: "2026-01-01T00:00:00.000Z", data: { seq } });
      // An event that overtakes the reply is older than the reply's seq: delivered as live.
      ws.send(event(3));
      ws.send(JSON.stringify({ type: "subscribed", topic: "s", seq: 3, epoch: "E1", id: subscribe.id }));
      for (const seq of [4, 5, 5, 4, 3, 8, 9, 9]) ws.send(event(seq));
      assert.equal((await subscribed).seq, 3);
      await until(() => got.at(-1) === 9, "the stream");
      await sleep(50);
      assert.deepEqual(got, [3, 4, 5, 8, 9]);
      assert.deepEqual(gaps, [{ topic: "s", expected: 6, received: 8 }]);

      ws.terminate();
      await until(() => received[1]?.length === 1, "the resume");
      const resume = received[1][0];
      assert.deepEqual(resume, { type: "subscribe", topic: "s", since: 9, epoch: "E1", id: resume.id });
      // Events held back until the reply: with recovered they come again in the replay, once.
      const again = connections[1];
      again.send(event(10));
      again.send(JSON.stringify({ type: "subscribed", topic: "s", seq: 11, epoch: "E1",
                                  recovered: true, id: resume.id }));
      for (const seq of [10, 11, 12]) again.send(event(seq));
      await until(() => got.at(-1) === 12, "the replay");
      await sleep(50);
      assert.deepEqual(got, [3, 4, 5, 8, 9, 10, 11, 12]);
      assert.equal(gaps.length, 1);
    } finally {
      for (const ws of connections) ws.terminate();
      wss.close();
    }
  });
});
