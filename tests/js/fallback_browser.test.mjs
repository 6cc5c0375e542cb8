// skyrelay.js's fallbacks in real Chromium (Debian's, through playwright-core): the page's
// origin is a TCP proxy in front of a skyrelay server (tests/js/fallback_server.py) that can
// refuse WebSocket handshakes and SSE streams at the network level, as a proxy or firewall
// that blocks them does (it closes the connection when it sees such a request). With
// WebSocket blocked the client moves to SSE, with SSE blocked too it polls, unblocked it comes
// back to WebSocket, each event once and in order; reconnectAttempts stops it; the window's
// online event and reconnect() retry at once; once() listeners come off with off().
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import net from "node:net";
import WebSocket from "ws";
import { closeChromium, launchChromium, startPythonServer, stopPythonServer } from "./browser.mjs";
import { SkyRelay } from "../../python/skyrelay/web/skyrelay.js";

const publishToken = randomBytes(12).toString("hex");
let server, port, browser;

before(async () => {
  const started = await startPythonServer("tests/js/fallback_server.py",
                                          ["--publish-token", publishToken]);
  server = started.child;
  port = started.port;
  browser = await launchChromium();
});

after(async () => {
  await closeChromium(browser);
  await stopPythonServer(server);
});

/** A TCP proxy to the server that reads the head of each request on a connection and closes
 * the connection on a WebSocket upgrade while `block.ws`, or on a /sse stream (a request
 * without transport=polling) while `block.sse`. `seen` counts the requests of each kind,
 * `polling` the poll requests whose connection is still open. */
async function startProxy() {
  const block = { ws: false, sse: false };
  const seen = { ws: 0, sse: 0, poll: 0 };
  const counts = { polling: 0 };
  const sockets = new Set();
  const proxy = net.createServer((down) => {
    const up = net.connect(port, "127.0.0.1");
    sockets.add(down).add(up);
    const end = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    for (const s of [down, up]) s.on("error", end).on("close", end);
    down.on("data", (chunk) => {
      const head = chunk.toString("latin1", 0, Math.min(chunk.length, 4096));
      const line = /^[A-Z]+ (\S+) HTTP\/1\.1\r\n/.exec(head);
      if (line) {
        const kind = /\r\nupgrade:\s*websocket/i.test(head) ? "ws"
          : !line[1].startsWith("/sse") ? null
          : /[?&]transport=polling/.test(line[1]) ? "poll" : "sse";
        if (kind) seen[kind]++;
        if (kind && block[kind]) return end();
        if (kind === "poll") {
          counts.polling++;
          down.once("close", () => counts.polling--);
        }
      }
      up.write(chunk);
    });
    up.pipe(down);
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  return {
    block, seen, get polling() { return counts.polling; }, origin: `http://127.0.0.1:${proxy.address().port}`,
    close() {
      for (const s of sockets) s.destroy();
      proxy.close();
    },
  };
}

/** POST /api/publish of `{n}` for each n to `topic`, straight to the server. */
async function publish(topic, ns) {
  const r = await fetch(`http://127.0.0.1:${port}/api/publish`, {
    method: "POST",
    headers: { Authorization: `Bearer ${publishToken}`, "Content-Type": "application/json" },
    body: JSON.stringify({ events: ns.map((n) => ({ event: "tick", data: { n }, to: topic })) }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(r.status, 200, await r.clone().text());
}

/** The page through the proxy, with the client started (options, topics); closes with it. */
async function openPage(proxy, options, topics) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${proxy.origin}/`);
  await page.waitForFunction(() => window.ready === true);
  await page.evaluate(([o, t]) => window.start(o, t), [options, topics]);
  return { page, context };
}

/** Waits (at most 15 s) until `predicate()` holds. */
async function until(predicate, what) {
  const deadline = Date.now() + 15000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const seen = (page) => page.evaluate(() => window.seen);
const waitState = (page, state) =>
  page.waitForFunction((s) => window.client.state === s, state);
const waitEvents = (page, count) =>
  page.waitForFunction((c) => window.seen.events.length >= c, count);

// Backoff small, so that a blocked transport is given up on quickly.
const FAST = { backoff: { base: 50, max: 200, jitter: 0 }, fallbackAfter: 2, connectTimeout: 3000 };

test("WebSocket blocked: falls back to SSE and gets the topic's events in order", async () => {
  const proxy = await startProxy();
  proxy.block.ws = true;
  const { page, context } = await openPage(proxy, { ...FAST, probeInterval: 60000 }, ["feed"]);
  try {
    await waitState(page, "fallback-sse");
    await page.waitForFunction(() => window.seen.subscribed.some((s) => s.topic === "feed"));
    await publish("feed", [1, 2, 3, 4, 5]);
    await waitEvents(page, 5);
    const s = await seen(page);
    assert.deepEqual(s.events, [1, 2, 3, 4, 5].map((n) => ({ n, topic: "feed", via: "fallback-sse" })));
    assert.deepEqual(s.states, ["connecting", "reconnecting", "fallback-sse"]);
    assert.ok(proxy.seen.ws >= 2, `WebSocket tried ${proxy.seen.ws} times`);
    assert.equal(proxy.seen.poll, 0);
    assert.deepEqual(s.resets, []);  // never had a position to lose
  } finally {
    await context.close();
    proxy.close();
  }
});

test("WebSocket and SSE blocked: polls; unblocked, returns to WebSocket with each event once", async () => {
  const proxy = await startProxy();
  proxy.block.ws = proxy.block.sse = true;
  const { page, context } = await openPage(
    proxy, { ...FAST, pollInterval: 200, pollWindow: 300, probeInterval: 500 }, ["dial"]);
  try {
    await waitState(page, "polling");
    await publish("dial", [1, 2, 3]);
    await waitEvents(page, 3);
    // Published while no poll is open: a later poll replays them from the cursor the last left.
    await until(() => proxy.polling === 0, "a poll that ended");
    const before = proxy.seen.poll;
    await publish("dial", [4, 5]);
    await waitEvents(page, 5);
    assert.ok(proxy.seen.poll > before, `${proxy.seen.poll} polls`);
    assert.ok(proxy.seen.sse >= 2, `SSE tried ${proxy.seen.sse} times`);

    proxy.block.ws = false;  // the next probe gets through
    await waitState(page, "connected");
    await page.waitForFunction(() => window.seen.subscribed.filter((s) => s.topic === "dial").length >= 2);
    await publish("dial", [6, 7]);
    await waitEvents(page, 7);
    const s = await seen(page);
    assert.deepEqual(s.events.map((e) => e.n), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(s.events.map((e) => e.via), [...Array(5).fill("polling"), "connected", "connected"]);
    // The poll's cursor does not carry over to the protocol's seq: the topic is reset once.
    assert.deepEqual(s.resets, [{ topic: "dial", reason: "transport_changed", seq: null, epoch: null }]);
    const polls = proxy.seen.poll;
    await publish("dial", [8]);
    await waitEvents(page, 8);
    assert.equal(proxy.seen.poll, polls, "still polling after the switch");
    assert.deepEqual((await seen(page)).events.map((e) => e.n), [1, 2, 3, 4, 5, 6, 7, 8]);
  } finally {
    await context.close();
    proxy.close();
  }
});

test("from SSE back to WebSocket: the stream ends before the subscription, nothing twice", async () => {
  const proxy = await startProxy();
  proxy.block.ws = true;
  const { page, context } = await openPage(proxy, { ...FAST, probeInterval: 300 }, ["sky"]);
  try {
    await waitState(page, "fallback-sse");
    await page.waitForFunction(() => window.seen.subscribed.length >= 1);
    await publish("sky", [1, 2]);
    await waitEvents(page, 2);
    proxy.block.ws = false;
    await waitState(page, "connected");
    await page.waitForFunction(() => window.seen.subscribed.length >= 2);
    await publish("sky", [3, 4]);
    await waitEvents(page, 4);
    const s = await seen(page);
    assert.deepEqual(s.events.map((e) => [e.n, e.via]),
                     [[1, "fallback-sse"], [2, "fallback-sse"], [3, "connected"], [4, "connected"]]);
    assert.deepEqual(s.states.slice(-2), ["fallback-sse", "connected"]);
  } finally {
    await context.close();
    proxy.close();
  }
});

test("reconnectAttempts: stops after that many retries, says so; reconnect() starts again", async () => {
  const proxy = await startProxy();
  proxy.block.ws = true;
  const { page, context } = await openPage(
    proxy, { ...FAST, fallback: false, reconnectAttempts: 2 }, ["stop"]);
  try {
    await page.waitForFunction(() => window.seen.failed.length === 1);
    const s = await seen(page);
    assert.equal(s.failed[0].attempts, 2);
    assert.deepEqual(s.states, ["connecting", "reconnecting", "disconnected"]);
    assert.equal(proxy.seen.ws, 3);  // the first attempt and two retries
    assert.equal(proxy.seen.sse + proxy.seen.poll, 0);

    proxy.block.ws = false;
    await page.evaluate(() => window.client.reconnect());
    await waitState(page, "connected");
    await page.waitForFunction(() => window.seen.subscribed.length >= 1);
    await publish("stop", [1]);
    await waitEvents(page, 1);
  } finally {
    await context.close();
    proxy.close();
  }
});

test("the window's online event retries at once instead of waiting out the backoff", async () => {
  const proxy = await startProxy();
  proxy.block.ws = true;
  // The second retry would wait a minute: only the online event can bring it sooner.
  const { page, context } = await openPage(
    proxy, { backoff: { base: 60000, max: 60000, jitter: 0 }, fallback: false }, []);
  try {
    await waitState(page, "reconnecting");
    proxy.block.ws = false;
    await context.setOffline(true);
    await page.waitForFunction(() => navigator.onLine === false);
    await context.setOffline(false);
    await waitState(page, "connected");
    assert.equal(proxy.seen.ws, 2);
  } finally {
    await context.close();
    proxy.close();
  }
});

test("once(): off() with the same listener removes it (before the fix it still fired)", async () => {
  // A real attempt to a port nothing listens on: "connecting", then "reconnecting".
  const probe = net.createServer();
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const closedPort = probe.address().port;
  await new Promise((resolve) => probe.close(resolve));
  const c = new SkyRelay(`ws://127.0.0.1:${closedPort}/ws`,
                         { WebSocket, autoConnect: false, backoff: { base: 60000, max: 60000 } });
  try {
    const calls = [];
    const removed = (state) => calls.push(["removed", state]);
    const kept = (state) => calls.push(["kept", state]);
    c.once("state", removed);
    c.once("state", kept);
    c.off("state", removed);
    const reconnecting = new Promise((resolve) => c.once("reconnecting", resolve));
    c.open();
    await reconnecting;
    assert.deepEqual(calls, [["kept", "connecting"]]);  // once, and `removed` never
  } finally {
    c.close();
  }
});

test("subscribing while on SSE opens a new stream with the topic at once; the others are reset", async () => {
  const proxy = await startProxy();
  proxy.block.ws = true;
  const { page, context } = await openPage(proxy, { ...FAST, probeInterval: 60000 }, ["old"]);
  try {
    await waitState(page, "fallback-sse");
    await page.waitForFunction(() => window.seen.subscribed.length === 1);
    const streams = proxy.seen.sse;
    const info = await page.evaluate(() => window.client.subscribe(
      "new", (data, meta) => window.seen.events.push({ n: data.n, topic: meta.topic })));
    assert.deepEqual(info, { topic: "new", seq: null, epoch: null, recovered: false });
    assert.equal(proxy.seen.sse, streams + 1);
    await publish("new", [1]);
    await publish("old", [2]);
    await waitEvents(page, 2);
    const s = await seen(page);
    assert.deepEqual(s.events.map((e) => [e.n, e.topic]), [[1, "new"], [2, "old"]]);
    // "old" went on in a stream without the last one's cursor: events in between may be lost.
    assert.deepEqual(s.resets, [{ topic: "old", reason: "transport_changed", seq: null, epoch: null }]);
  } finally {
    await context.close();
    proxy.close();
  }
});

test("reconnectAttempts counts across transports: WebSocket, SSE and polls all refused", async () => {
  const proxy = await startProxy();
  proxy.block.ws = proxy.block.sse = proxy.block.poll = true;
  const { page, context } = await openPage(
    proxy, { ...FAST, reconnectAttempts: 6, pollInterval: 50, probeInterval: 60000 }, ["x"]);
  try {
    await page.waitForFunction(() => window.seen.failed.length === 1);
    const s = await seen(page);
    assert.equal(s.failed[0].attempts, 6);
    // Two WebSocket attempts, two SSE attempts, then polls: seven attempts in all (the proxy
    // may count more HTTP requests: Chromium sends a request again, once, when a kept-alive
    // connection closes before answering).
    assert.equal(proxy.seen.ws, 2);
    assert.ok(proxy.seen.sse >= 2 && proxy.seen.poll >= 3, JSON.stringify(proxy.seen));
    assert.deepEqual(s.states, ["connecting", "reconnecting", "disconnected"]);
    assert.equal(await page.evaluate(() => window.client.state), "disconnected");
  } finally {
    await context.close();
    proxy.close();
  }
});

test("a server that was down (everything refused) comes back: WebSocket at once, not after probeInterval", async () => {
  const proxy = await startProxy();
  proxy.block.ws = proxy.block.sse = proxy.block.poll = true;
  // Only the probe made when a poll gets through can bring WebSocket back within the test.
  const { page, context } = await openPage(
    proxy, { ...FAST, pollInterval: 100, probeInterval: 120000 }, ["back"]);
  try {
    await until(() => proxy.seen.poll >= 1, "a poll");
    const probes = proxy.seen.ws;
    Object.assign(proxy.block, { ws: false, sse: false, poll: false });
    await waitState(page, "connected");
    assert.equal(proxy.seen.ws, probes + 1);
    const s = await seen(page);
    assert.deepEqual(s.states.slice(-2), ["polling", "connected"]);
    await page.waitForFunction(() => window.seen.subscribed.length >= 2);
    await publish("back", [1]);
    await waitEvents(page, 1);
  } finally {
    await context.close();
    proxy.close();
  }
});
