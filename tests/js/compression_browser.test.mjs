// permessage-deflate in real Chromium (which always offers it): the page's own WebSocket opens
// /ws on a server with compression on (tests/js/json_server.py --compression), sees the
// extension accepted, reads compressed publications and sends a message Chromium compresses
// itself. The server's /metrics confirms both directions went compressed.
// Chromium is Debian's (/usr/bin/chromium), driven by playwright-core; no browser is downloaded.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { closeChromium, launchChromium, startPythonServer, stopPythonServer } from "./browser.mjs";

let server, base, browser;

before(async () => {
  const started = await startPythonServer("tests/js/json_server.py", ["--compression"]);
  server = started.child;
  base = `http://127.0.0.1:${started.port}`;
  browser = await launchChromium();
});

after(async () => {
  await closeChromium(browser);
  await stopPythonServer(server);
});

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return Number(line.split(" ")[1]);
}

test("Chromium negotiates permessage-deflate and both directions go compressed", async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${base}/health`);
    const result = await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      const frames = [];
      let notify = () => {};
      ws.onmessage = (e) => { frames.push(JSON.parse(e.data)); notify(); };
      const next = (pred) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("timeout")), 5000);
        const check = () => {
          const i = frames.findIndex(pred);
          if (i >= 0) { clearTimeout(timer); resolve(frames.splice(i, 1)[0]); }
        };
        notify = check;
        check();
      });
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
      await next((f) => f.type === "welcome");
      ws.send(JSON.stringify({ type: "subscribe", topic: "z" }));
      await next((f) => f.type === "subscribed");
      // Three publications of ~700 bytes each (over the 128-byte threshold): compressed.
      ws.send(JSON.stringify({ type: "request", id: "p", event: "publish",
                               data: { topic: "z", count: 3, pad: 600 } }));
      const events = [];
      for (let i = 0; i < 3; ++i) events.push((await next((f) => f.type === "event")).data);
      // A 4 KB request: Chromium compresses it, the server inflates it.
      ws.send(JSON.stringify({ type: "request", id: "e", event: "echo",
                               data: { text: "q".repeat(4000) } }));
      const echo = await next((f) => f.type === "response" && f.id === "e");
      const extensions = ws.extensions;
      ws.close();
      return { extensions, events, echo: echo.data };
    }, `${base.replace("http", "ws")}/ws`);
    assert.match(result.extensions, /^permessage-deflate/);
    assert.match(result.extensions, /server_no_context_takeover/);
    assert.deepEqual(result.events.map((d) => d.n), [0, 1, 2]);
    for (const d of result.events) assert.equal(d.pad, "x".repeat(600));
    assert.deepEqual(result.echo, { text: "q".repeat(4000) });
    assert.ok(await metric("skyrelay_deflate_sent_messages_total") >= 3);
    assert.ok(await metric("skyrelay_inflated_messages_total") >= 1);
  } finally {
    await page.close();
  }
});
