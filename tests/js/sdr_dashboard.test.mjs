// S1's dashboard page (examples/sdr_dashboard) in real Chromium (Debian's, through
// playwright-core): the connection badge, live events from the app's REST API over
// /ws/updates in the seed's {event, data, timestamp} frames, reconnection with backoff after a
// drop, and, with WebSocket blocked by a proxy, the red badge, HTTP polling and the manual
// Reconnect button.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { closeChromium, launchChromium, startPythonServer, stopPythonServer } from "./browser.mjs";
import { startProxy, websocketUpgrades } from "./proxy.mjs";

let server, port, browser;

before(async () => {
  ({ child: server, port } = await startPythonServer("tests/js/sdr_server.py"));
  browser = await launchChromium();
});

after(async () => {
  await closeChromium(browser);
  await stopPythonServer(server);
});

/** A call to the app's REST API, straight to the server. */
async function api(method, path, body) {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(5000),
  });
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${await r.clone().text()}`);
  return r.json();
}

/** The dashboard from `origin` with query `query`. */
async function openPage(origin, query = "") {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.goto(`${origin}/?${query}`);
  await page.waitForFunction(() => window.dashboardStore !== undefined);
  return { page, context };
}

// The page's HTML starts with the badge at "disconnected", before the client's first attempt,
// so a state counts only once the client has reported it (the store's last transition).
const waitBadge = (page, state) => page.waitForFunction(
  (s) => window.dashboardStore.states.at(-1) === s &&
    document.getElementById("state-badge").dataset.state === s, state);
const store = (page) => page.evaluate(() => window.dashboardStore);

test("live: a green badge, and each REST change reaches the page over /ws/updates", async () => {
  const { page, context } = await openPage(`http://127.0.0.1:${port}`);
  try {
    await waitBadge(page, "connected");
    assert.equal(await page.textContent("#state-badge"), "Connected");
    assert.equal(await page.textContent("#mode"), "live");
    assert.equal(await page.isHidden("#reconnect"), true);

    await api("POST", "/api/v1/signals", { frequency_mhz: 145.5, snr_db: 15.3, websdr_id: 1 });
    await page.waitForFunction(() => window.dashboardStore.signals.length === 1);
    assert.match(await page.textContent("#signals li"), /^145\.5 MHz, SNR 15\.3 dB at WebSDR #1/);

    await api("PUT", "/api/v1/websdrs/3", { status: "offline", response_time_ms: null });
    await page.waitForFunction(() => window.dashboardStore.websdrs["3"]?.status === "offline");
    const rows = await page.$$eval("#websdrs tr", (trs) => trs.map((tr) => tr.innerText));
    assert.ok(rows.some((r) => r.startsWith("#3") && r.endsWith("offline")), rows.join(" | "));

    await api("POST", "/api/v1/localizations",
              { latitude: 45.0642, longitude: 7.6697, uncertainty_m: 25.3, confidence: 0.85 });
    await page.waitForFunction(() => window.dashboardStore.localizations.length === 1);

    const before = (await store(page)).events;
    await api("GET", "/api/v1/system/status");  // broadcasts services:health
    await page.waitForFunction((n) => window.dashboardStore.events > n, before);
    const s = await store(page);
    assert.equal(s.services["rf-acquisition"].status, "healthy");
    assert.equal(s.polls, 1, "only the first load polls while the WebSocket is up");
  } finally {
    await context.close();
  }
});

test("a dropped connection reconnects with backoff and follows its events again", async () => {
  const proxy = await startProxy(port, websocketUpgrades);
  const { page, context } = await openPage(proxy.origin, "base_ms=100");
  try {
    await waitBadge(page, "connected");
    assert.deepEqual((await store(page)).states, ["connecting", "connected"]);
    proxy.cut();
    await page.waitForFunction(() => window.dashboardStore.states.length === 4);
    assert.deepEqual((await store(page)).states.slice(2), ["reconnecting", "connected"]);
    // The new connection subscribed again: an event for subscribers only arrives.
    await api("POST", "/api/v1/signals", { frequency_mhz: 433.92, snr_db: 8, websdr_id: 2 });
    await page.waitForFunction(() => window.dashboardStore.signals.length === 1);
    assert.equal((await store(page)).signals[0].frequency_mhz, 433.92);
    assert.ok(proxy.seen.ws >= 2, `${proxy.seen.ws} handshakes`);
  } finally {
    await context.close();
    proxy.close();
  }
});

test("WebSocket blocked: red badge, polling, and Reconnect goes live again", async () => {
  const proxy = await startProxy(port, websocketUpgrades);
  proxy.block.ws = true;
  const { page, context } = await openPage(proxy.origin, "poll_ms=300&attempts=2&base_ms=50");
  try {
    await waitBadge(page, "disconnected");
    assert.equal(await page.isVisible("#reconnect"), true);
    assert.equal(await page.textContent("#mode"), "polling every 0.3 s");
    assert.deepEqual((await store(page)).states, ["connecting", "reconnecting", "disconnected"]);
    assert.equal(proxy.seen.ws, 3, "the first try and two retries");

    // A change reaches the page by polling.
    await api("PUT", "/api/v1/websdrs/2", { status: "offline", response_time_ms: null });
    await page.waitForFunction(() => window.dashboardStore.websdrs["2"]?.status === "offline");
    assert.ok((await store(page)).polls >= 2);

    proxy.block.ws = false;
    await page.click("#reconnect");
    await waitBadge(page, "connected");
    assert.equal(await page.isHidden("#reconnect"), true);
    assert.equal(await page.textContent("#mode"), "live");
    await api("PUT", "/api/v1/websdrs/2", { status: "online", response_time_ms: 99 });
    await page.waitForFunction(() => window.dashboardStore.websdrs["2"]?.status === "online");
    // Live again: no more polls (two poll intervals without one).
    const polls = (await store(page)).polls;
    await page.waitForTimeout(700);
    assert.equal((await store(page)).polls, polls);
  } finally {
    await context.close();
    proxy.close();
  }
});
