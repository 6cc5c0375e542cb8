// S2's debug page (examples/telescope_control) in real Chromium (Debian's, through
// playwright-core): the seed's WebSocket service with its status rebuilt from full update and
// deltas, commands as promises, the offline queue flushed on reconnect, feature flags kept
// across a reload and routing commands over HTTP and status over SSE.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { closeChromium, launchChromium, startPythonServer, stopPythonServer } from "./browser.mjs";

let server, port, browser;

before(async () => {
  ({ child: server, port } = await startPythonServer("tests/js/telescope_server.py"));
  browser = await launchChromium();
});

after(async () => {
  await closeChromium(browser);
  await stopPythonServer(server);
});

async function status(id) {
  const r = await fetch(`http://127.0.0.1:${port}/api/telescopes/${id}/status`,
                        { signal: AbortSignal.timeout(5000) });
  return r.json();
}

async function openPage(query = "") {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`http://127.0.0.1:${port}/?${query}`);
  await page.waitForFunction(() => window.ready === true);
  return { page, context };
}

const waitState = (page, s) => page.waitForFunction(
  (want) => document.getElementById("state").dataset.state === want, s);

test("connects, rebuilds the status from deltas, and runs commands as promises", async () => {
  const { page, context } = await openPage();
  try {
    await page.selectOption("#telescope", "seestar-001");
    await page.click("#connect");
    await waitState(page, "connected");
    await page.waitForFunction(() => window.service.status["seestar-001"] !== undefined);
    const unparked = await page.evaluate(() => window.sendCommand("unpark", {}));
    assert.deepEqual(unparked, { success: true, result: { status: "unparked" } });
    const moved = await page.evaluate(
      () => window.sendCommand("goto", { ra: 10.5, dec: 41.2 }));
    assert.equal(moved.success, true);
    await page.waitForFunction(() => window.service.status["seestar-001"].mount === "idle" &&
                                      window.service.status["seestar-001"].ra === 10.5);
    assert.deepEqual(await page.evaluate(() => window.service.status["seestar-001"]),
                     await status("seestar-001"));
    const refused = await page.evaluate(
      () => window.sendCommand("move", { direction: "sideways", duration: 5 }));
    assert.equal(refused.success, false);
    assert.equal(refused.code, "invalid_parameters");
    // The status table shows the rebuilt status.
    const cells = await page.$$eval("#status td", (tds) => tds.map((td) => td.textContent));
    assert.ok(cells.includes("ra") && cells.includes("10.5"), cells.join(" "));
  } finally {
    await context.close();
  }
});

test("commands sent while offline are queued and run on reconnect, in order", async () => {
  const { page, context } = await openPage();
  try {
    await page.selectOption("#telescope", "seestar-002");
    await page.click("#connect");
    await waitState(page, "connected");
    await page.click("#disconnect");
    await waitState(page, "disconnected");
    await page.evaluate(() => {
      window.pending = [window.sendCommand("set_gain", { gain: 150 }),
                        window.sendCommand("set_gain", { gain: 151 })];
    });
    await page.waitForFunction(() => window.service.queue.length === 2);
    assert.equal(await page.textContent("#queued"), "2 queued");
    await page.click("#connect");
    const results = await page.evaluate(() => Promise.all(window.pending));
    assert.deepEqual(results.map((r) => r.result.gain), [150, 151]);
    assert.equal((await status("seestar-002")).gain, 151);
    assert.equal(await page.evaluate(() => window.service.queue.length), 0);
  } finally {
    await context.close();
  }
});

test("feature flags persist, send commands over HTTP and status over SSE", async () => {
  const { page, context } = await openPage();
  try {
    await page.uncheck("#flag-useWebSocketForCommands");
    await page.uncheck("#flag-useWebSocketForStatusUpdates");
    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    assert.equal(await page.isChecked("#flag-useWebSocketForCommands"), false);
    assert.deepEqual(await page.evaluate(() => window.featureFlags.getFlags()), {
      useWebSocketForStatusUpdates: false, useWebSocketForCommands: false,
      enableWebSocketDebugLogs: false, enablePerformanceMetrics: false,
    });
    await page.selectOption("#telescope", "seestar-003");
    await page.click("#connect");
    await page.waitForFunction(() => document.getElementById("via").textContent === "status via SSE");
    await page.waitForFunction(() => window.panel.sseStatus.gain !== undefined);
    const r = await page.evaluate(() => window.sendCommand("set_gain", { gain: 77 }));
    assert.deepEqual(r, { success: true, result: { status: "gain_set", gain: 77 }, via: "http" });
    await page.waitForFunction(() => window.panel.sseStatus.gain === 77);
    await page.evaluate(() => window.FeatureFlagDebug.enableWebSocketFeatures());
    assert.equal(await page.isChecked("#flag-useWebSocketForCommands"), true);
    const ws = await page.evaluate(() => window.sendCommand("set_gain", { gain: 78 }));
    assert.deepEqual(ws, { success: true, result: { status: "gain_set", gain: 78 } });
  } finally {
    await context.close();
  }
});
