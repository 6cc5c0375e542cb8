// The satellite tracker demo in real Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): positions move between updates, the windows table fills, the connection
// badge turns to reconnecting when the server restarts and back to connected afterwards, and the
// Socket.IO page shows the same data through the official client. Screenshots go to
// test-artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { artifacts, closeChromium, launchChromium, startPythonServer, stopPythonServer } from "./browser.mjs";

let server, port, browser;

async function startServer(wanted = 0) {
  const started = await startPythonServer("tests/js/tracker_server.py", ["--port", String(wanted)]);
  server = started.child;
  return started.port;
}

const stopServer = () => stopPythonServer(server);

before(async () => {
  port = await startServer(0);
  browser = await launchChromium();
  fs.mkdirSync(artifacts, { recursive: true });
});

after(async () => {
  await closeChromium(browser);
  await stopServer();
});

// Satellites are keyed by catalogue number: the ISS is 25544.
const issPosition = () => {
  const s = window.__tracker.satellites.get(25544);
  return s ? [s.lat, s.lon] : null;
};

test("the dashboard moves satellites, fills the windows table and reconnects after a restart",
  { timeout: 90000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    try {
      await page.goto(`http://127.0.0.1:${port}/`, { timeout: 15000 });
      await page.waitForFunction(() => window.__tracker && window.__tracker.state === "connected",
                                 null, { timeout: 15000 });
      assert.equal(await page.locator("#badge").textContent(), "connected");
      await page.waitForFunction(() => window.__tracker.satellites.size >= 20, null, { timeout: 15000 });
      const first = await page.evaluate(issPosition);
      await page.waitForFunction((p) => {
        const s = window.__tracker.satellites.get(25544);
        return s && (s.lat !== p[0] || s.lon !== p[1]);
      }, first, { timeout: 10000 });
      const second = await page.evaluate(issPosition);
      assert.notDeepEqual(second, first);
      await page.waitForFunction(() => document.querySelectorAll("#windows tbody tr").length > 0,
                                 null, { timeout: 15000 });
      const rows = await page.locator("#windows tbody tr").count();
      assert.ok(rows > 0);
      const firstRow = await page.locator("#windows tbody tr").first().locator("td").allTextContents();
      assert.equal(firstRow.length, 7);
      await page.waitForFunction(() => window.__tracker.status && window.__tracker.status.satellites === 26,
                                 null, { timeout: 10000 });
      // Ground tracks for every satellite, 45 minutes back to 90 ahead at one-minute steps.
      await page.waitForFunction(() => window.__tracker.tracks.length === 26, null, { timeout: 10000 });
      const points = await page.evaluate(() => window.__tracker.tracks[0].points.length);
      assert.ok(points > 100, `${points} points`);
      await page.screenshot({ path: path.join(artifacts, "tracker.png") });

      // The server goes away: the badge turns to reconnecting; a new server on the same port:
      // back to connected, and positions flow again.
      await stopServer();
      await page.waitForFunction(() => window.__tracker.state === "reconnecting", null, { timeout: 10000 });
      assert.equal(await page.locator("#badge").getAttribute("class"), "reconnecting");
      await page.screenshot({ path: path.join(artifacts, "tracker-reconnecting.png") });
      await startServer(port);
      await page.waitForFunction(() => window.__tracker.state === "connected", null, { timeout: 30000 });
      const updates = await page.evaluate(() => window.__tracker.updates);
      await page.waitForFunction((n) => window.__tracker.updates > n, updates, { timeout: 10000 });
      assert.equal(await page.locator("#badge").textContent(), "connected");
    } finally {
      await context.close();
    }
  });

test("the Socket.IO page shows the same data through socket.io-client", { timeout: 60000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  try {
    await page.goto(`http://127.0.0.1:${port}/sio.html`, { timeout: 15000 });
    await page.waitForFunction(() => window.__tracker && window.__tracker.state === "connected",
                               null, { timeout: 15000 });
    assert.equal(await page.evaluate(() => window.__tracker.transport), "socket.io-client");
    await page.waitForFunction(() => window.__tracker.updates >= 2 && window.__tracker.windows.length > 0,
                               null, { timeout: 15000 });
    await page.waitForFunction(() => document.querySelectorAll("#windows tbody tr").length > 0,
                               null, { timeout: 10000 });
    // server_metrics through subscribe_metrics, the seed's third subscription, over Socket.IO.
    await page.waitForFunction(() => window.__tracker.metrics && window.__tracker.metrics.uptime_s >= 0,
                               null, { timeout: 10000 });
    assert.deepEqual(await page.evaluate(() => window.__tracker.status.available_subscriptions),
                     ["satellite_positions", "communication_windows", "server_metrics"]);
    await page.screenshot({ path: path.join(artifacts, "tracker-socketio.png") });
  } finally {
    await context.close();
  }
});
