// Server-Sent Events in real Chromium: the browser's own EventSource reads /sse/<topic> from a
// skyrelay server (tests/js/sse_server.py) while the test publishes with POST /api/publish.
// Names, ids and data arrive in order; a stream cut under the browser comes back by itself with
// Last-Event-ID and ends with every event once; a token in the query guards a private stream.
// Chromium is Debian's (/usr/bin/chromium), driven by playwright-core; no browser is downloaded.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { artifacts, closeChromium, launchChromium, startPythonServer, stopPythonServer } from "./browser.mjs";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const publishToken = randomBytes(12).toString("hex");
const streamToken = randomBytes(12).toString("hex");
let server, base, browser;

before(async () => {
  const started = await startPythonServer("tests/js/sse_server.py",
    ["--publish-token", publishToken, "--stream-token", streamToken, "--retry", "0.5"]);
  server = started.child;
  base = `http://127.0.0.1:${started.port}`;
  browser = await launchChromium();
  fs.mkdirSync(artifacts, { recursive: true });
});

after(async () => {
  await closeChromium(browser);
  await stopPythonServer(server);
});

/** POST /api/publish; resolves with what the server gave each event (id, delivered, ...). */
async function publish(...events) {
  const r = await fetch(`${base}/api/publish`, {
    method: "POST",
    headers: { Authorization: `Bearer ${publishToken}`, "Content-Type": "application/json" },
    body: JSON.stringify(events.length === 1 ? events[0] : { events }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(r.status, 200, await r.clone().text());
  const { published } = await r.json();
  return Array.isArray(published) ? published : [published];
}

/** A page of the test app at `origin`, with its own browser context (no shared cache). */
async function openPage(origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  await page.goto(`${origin}/`);
  assert.equal(await page.title(), "skyrelay SSE browser test");
  return { page, close: () => context.close() };
}

const snapshot = (page, name) => page.evaluate((n) => window.snapshot(n), name);
const openStream = (page, name, url, names) =>
  page.evaluate(([n, u, t]) => window.openStream(n, u, t), [name, url, names]);

/** Waits in the page until stream `name` has `count` events of type `type`. */
async function waitForEvents(page, name, type, count, timeout = 10000) {
  await page.waitForFunction(
    ([n, t, c]) => (window.streams[n]?.events.filter((e) => e.type === t).length ?? 0) >= c,
    [name, type, count], { timeout });
}

/** `<epoch>-<n>` -> [epoch, n]. */
/** An SSE event id, the stream's cursor "<prefix>~<n>.<pos>~...": one point per channel (the
 * "/" broadcasts, then each topic in URL order), each with its epoch ("<prefix>.<n>", as a
 * publish receipt gives it) and the last position the stream has (docs/protocol.md). */
function parseCursor(id) {
  const [prefix, ...parts] = id.split("~");
  return {
    prefix,
    points: parts.map((part) => {
      const [n, pos] = part.split(".");
      return { epoch: `${prefix}.${n}`, pos: Number(pos) };
    }),
  };
}

/** The cursor's point for a topic published to alone agrees with the publish receipt. */
function assertAtReceipt(id, index, receipt) {
  const point = parseCursor(id).points[index];
  assert.deepEqual(point, { epoch: receipt.epoch, pos: receipt.seq }, `${id} vs ${JSON.stringify(receipt)}`);
}

/** A TCP proxy in front of a port that notes the head of every request passing through it,
 * and whose cut() resets every open connection and refuses new ones for a while: the network
 * failing under the browser. */
async function startProxy(targetPort) {
  const pairs = new Set();
  const requests = [];  // { at, head } in arrival order
  let refuseUntil = 0;
  let refused = 0;
  const proxy = net.createServer((down) => {
    if (Date.now() < refuseUntil) {
      refused += 1;
      return down.resetAndDestroy();
    }
    const up = net.connect(targetPort, "127.0.0.1");
    const pair = { down, up };
    pairs.add(pair);
    const end = () => {
      down.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    for (const s of [down, up]) s.on("error", end).on("close", end);
    let pending = "";
    down.on("data", (chunk) => {
      pending += chunk.toString("latin1");
      for (let i; (i = pending.indexOf("\r\n\r\n")) >= 0; pending = pending.slice(i + 4))
        requests.push({ at: Date.now(), head: pending.slice(0, i) });
    });
    down.pipe(up);
    up.pipe(down);
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  return {
    origin: `http://127.0.0.1:${proxy.address().port}`,
    requests,
    get refused() { return refused; },
    cut(refuseMs) {
      refuseUntil = Date.now() + refuseMs;
      for (const { down, up } of pairs) {
        down.resetAndDestroy();
        up.resetAndDestroy();
      }
      pairs.clear();
    },
    close() {
      for (const { down, up } of pairs) {
        down.destroy();
        up.destroy();
      }
      return new Promise((resolve) => proxy.close(resolve));
    },
  };
}

/** The heads of the GET requests for `target` that reached the proxy. */
function streamRequests(proxy, target) {
  return proxy.requests.filter((r) => r.head.startsWith(`GET ${target} `)).map((r) => {
    const fields = {};
    for (const line of r.head.split("\r\n").slice(1)) {
      const i = line.indexOf(":");
      fields[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    return { at: r.at, fields };
  });
}

test("EventSource gets names, ids and data in publication order", { timeout: 30000 },
     async () => {
  const { page, close } = await openPage(base);
  try {
    const names = ["welcome", "headline", "score", "message", "notice", "forecast"];
    await openStream(page, "news", "/sse/news?topics=sports", names);
    await waitForEvents(page, "news", "welcome", 1);
    const [welcome] = (await snapshot(page, "news")).events;
    assert.deepEqual(JSON.parse(welcome.data).topics, ["news", "sports"]);
    assert.ok(welcome.id, "a fresh stream's welcome carries the current position");

    const sent = [
      { event: "headline", data: { title: "Ünïcødé ✓ \"quoted\"\nnext line" }, to: "news" },
      { event: "score", data: { home: 2, away: 1 }, to: "sports" },
      { event: "forecast", data: "rain", to: "weather" },  // not one of the stream's topics
      { event: "message", data: "unnamed events arrive as 'message'", to: "news" },
      { event: "notice", data: [1, 2, 3] },                 // a broadcast reaches every stream
    ];
    const published = await publish(...sent);
    // A second request: events of separate requests keep their order too.
    published.push(...await publish({ event: "headline", data: { title: "last" }, to: "news" }));
    sent.push({ event: "headline", data: { title: "last" }, to: "news" });

    const expected = sent.map((e, i) => ({ ...e, receipt: published[i] }))
      .filter((e) => e.to !== "weather");
    await waitForEvents(page, "news", "headline", 2);
    const { events, readyState } = await snapshot(page, "news");
    assert.equal(readyState, 1);  // OPEN
    assert.deepEqual(events.slice(1).map((e) => ({ type: e.type, data: JSON.parse(e.data) })),
                     expected.map((e) => ({ type: e.event, data: e.data })));
    // Ids are the stream's cursor: the broadcasts, news and sports, in that order. Each event
    // moves exactly its own channel's position on by one, and a topic's point is where its
    // publish receipt says the topic is.
    const cursors = [welcome, ...events.slice(1)].map((e) => parseCursor(e.id));
    assert.ok(cursors.every((c) => c.prefix === cursors[0].prefix && c.points.length === 3),
              JSON.stringify(cursors));
    const channelOf = { news: 1, sports: 2, undefined: 0 };
    for (let i = 1; i < cursors.length; i++) {
      const moved = expected[i - 1].to === undefined ? 0 : channelOf[expected[i - 1].to];
      cursors[i].points.forEach((pt, c) => {
        assert.equal(pt.epoch, cursors[i - 1].points[c].epoch);
        assert.equal(pt.pos, cursors[i - 1].points[c].pos + (c === moved ? 1 : 0), events[i].id);
      });
      if (moved) assertAtReceipt(events[i].id, moved, expected[i - 1].receipt);
    }
    await page.screenshot({ path: path.join(artifacts, "sse-browser-events.png") });
  } finally {
    await close();
  }
});

test("a cut stream reconnects by itself with Last-Event-ID and misses nothing",
     { timeout: 45000 }, async () => {
  const proxy = await startProxy(Number(new URL(base).port));
  const { page, close } = await openPage(proxy.origin);
  try {
    await openStream(page, "feed", "/sse/feed", ["welcome", "tick", "reset"]);
    await waitForEvents(page, "feed", "welcome", 1);
    const published = [];  // { id, delivered, at }
    const publishTick = async (n) => {
      const [p] = await publish({ event: "tick", data: { n }, to: "feed" });
      published.push({ ...p, at: Date.now() });
    };
    for (let n = 0; n < 20; n++) await publishTick(n);
    await waitForEvents(page, "feed", "tick", 20);
    const beforeCut = (await snapshot(page, "feed")).events.filter((e) => e.type === "tick");
    assertAtReceipt(beforeCut.at(-1).id, 1, published[19]);

    // The network fails under the browser for 1.2 s while ticks go on being published every
    // 20 ms; they stop once the stream is back and 20 more went out live (bounded: 400 ticks,
    // 15 s).
    const cutAt = Date.now();
    proxy.cut(1200);
    const deadline = Date.now() + 15000;
    let backAt = 0;
    for (let n = 20; n < 400 && Date.now() < deadline; n++) {
      await publishTick(n);
      if (!backAt) {
        const again = streamRequests(proxy, "/sse/feed").filter((r) => r.at > cutAt);
        if (again.length) backAt = again[0].at;
      } else if (published.filter((p) => p.at > backAt).length >= 20) {
        break;
      }
      await sleep(20);
    }
    assert.ok(backAt, "the browser did not come back within 15 s");
    await waitForEvents(page, "feed", "tick", published.length, 10000);
    await sleep(300);  // a repeat would arrive after the last tick: give it time to show
    const snap = await snapshot(page, "feed");
    const ticks = snap.events.filter((e) => e.type === "tick");

    // Every tick exactly once, in order, each with the id its publication was given.
    assert.deepEqual(ticks.map((e) => JSON.parse(e.data).n), published.map((_, n) => n));
    ticks.forEach((e, n) => assertAtReceipt(e.id, 1, published[n]));
    assert.equal(snap.events.filter((e) => e.type === "reset").length, 0);
    assert.equal(snap.readyState, 1);
    // The browser noticed (an error), came back by itself (a second open), and its first
    // request after the cut carried the id of the last event it had.
    assert.ok(snap.errors >= 1 && snap.opens >= 2, JSON.stringify({ errors: snap.errors, opens: snap.opens }));
    const resumed = streamRequests(proxy, "/sse/feed").filter((r) => r.at > cutAt);
    assert.equal(resumed[0].fields["last-event-id"], beforeCut.at(-1).id);
    assert.equal(streamRequests(proxy, "/sse/feed").filter((r) => r.at < cutAt).length, 1);
    assert.equal(streamRequests(proxy, "/sse/feed")[0].fields["last-event-id"], undefined);
    // Ticks were published while the browser had no stream (queued for nobody), and ticks
    // went out live after it was back: the replay covered the gap and joined the live feed.
    assert.ok(published.some((p) => p.at > cutAt && p.at < backAt && p.delivered === 0),
              "no tick was published during the outage");
    assert.ok(published.filter((p) => p.at > backAt).length >= 20);
    // With the proxy refusing for 1.2 s and a 0.5 s retry, at least one reconnection attempt
    // was turned away before one went through.
    assert.ok(proxy.refused >= 1, "no reconnection attempt during the outage");
    await page.screenshot({ path: path.join(artifacts, "sse-browser-reconnect.png") });
  } finally {
    await close();
    await proxy.close();
  }
});

test("a private stream needs its token in the query", { timeout: 30000 }, async () => {
  // The server refuses with 401 and says why (the browser only sees an error event).
  const r = await fetch(`${base}/sse/private-room?token=wrong`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 401);
  assert.equal((await r.json()).message, "a valid token is required");

  const { page, close } = await openPage(base);
  try {
    const names = ["welcome", "secret"];
    await openStream(page, "denied", "/sse/private-room?token=wrong", names);
    await openStream(page, "none", "/sse/private-room", names);
    await openStream(page, "allowed", `/sse/private-room?token=${streamToken}`, names);
    await waitForEvents(page, "allowed", "welcome", 1);
    const [p] = await publish({ event: "secret", data: { code: 42 }, to: "private-room" });
    await waitForEvents(page, "allowed", "secret", 1);
    const allowed = await snapshot(page, "allowed");
    assert.deepEqual({ type: allowed.events[1].type, data: JSON.parse(allowed.events[1].data) },
                     { type: "secret", data: { code: 42 } });
    assertAtReceipt(allowed.events[1].id, 1, p);
    // A refused stream fails for good: closed after one error, no reconnection, no events.
    await page.waitForFunction(() => ["denied", "none"].every((n) => window.streams[n].source.readyState === 2));
    await sleep(1200);  // over two retry delays: a retry would show as another error
    for (const name of ["denied", "none"]) {
      const s = await snapshot(page, name);
      assert.deepEqual([s.readyState, s.errors, s.opens, s.events.length], [2, 1, 0, 0], name);
    }
    assert.equal(p.delivered, 1);  // only the allowed stream was subscribed
    await page.screenshot({ path: path.join(artifacts, "sse-browser-token.png") });
  } finally {
    await close();
  }
});
