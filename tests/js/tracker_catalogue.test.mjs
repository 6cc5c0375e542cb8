// The tracker page at catalogue scale, in real Chromium: gpredict's 979 satellites, positions
// every second. Names repeat in that catalogue (19 "SL-16 R/B"); the page keys satellites by
// catalogue number, so no trail joins two objects. Every trail segment the page strokes on the
// canvas is checked against physics: no satellite's ground track moves faster than
//   v_max = sqrt(2 mu / r_min) * R / r_min + omega * R
// (escape speed at the lowest orbit anything completes, r_min = R + 80 km, scaled down to the
// ground, plus the Earth's rotation at the equator), and the page joins two positions only when
// they are at most MAX_GAP_TICKS ticks apart. So a segment is at most v_max * 1.5 * tick long
// (1% more for the ellipsoid), and none runs across the map (|Δlon| > 180: it must be split at
// the antimeridian instead). The canvas calls are recorded by an init script, so what is
// checked is what is drawn.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { artifacts, closeChromium, launchChromium, root, startPythonServer, stopPythonServer } from "./browser.mjs";
import { MAX_GAP_TICKS } from "../../python/skyrelay/web/tracker/trail.js";

const GPREDICT = path.join(root, "build/gpredict/usr/share/gpredict/data/satdata/satellites.dat");
const TICK_S = 1;
const MU = 398600.4418;          // km^3/s^2
const R = 6378.137;              // km, equatorial radius
const OMEGA = 7.2921159e-5;      // rad/s, the Earth's rotation
const R_MIN = R + 80;
const V_MAX = Math.sqrt((2 * MU) / R_MIN) * (R / R_MIN) + OMEGA * R;   // about 11.4 km/s
const BOUND_KM = 1.01 * V_MAX * MAX_GAP_TICKS * TICK_S;

let server, port, browser;

before(async () => {
  assert.ok(fs.existsSync(GPREDICT), `${GPREDICT} is missing: run make gpredict-data`);
  const started = await startPythonServer("tests/js/tracker_server.py",
    ["--port", "0", "--tle", GPREDICT, "--positions-every", String(TICK_S)]);
  server = started.child;
  port = started.port;
  browser = await launchChromium();
  fs.mkdirSync(artifacts, { recursive: true });
});

after(async () => {
  await closeChromium(browser);
  await stopPythonServer(server);
});

// Runs in the page before its scripts: records every path stroked in the trail colour and
// checks each of its segments.
function recordTrails({ boundKm, radius }) {
  const rec = { strokes: 0, segments: 0, crossings: 0, worstKm: 0, bad: [] };
  window.__trails = rec;
  const P = CanvasRenderingContext2D.prototype;
  const { beginPath, moveTo, lineTo, stroke } = P;
  let pathPoints = [];
  P.beginPath = function () { pathPoints = []; return beginPath.call(this); };
  P.moveTo = function (x, y) { pathPoints.push([x, y, true]); return moveTo.call(this, x, y); };
  P.lineTo = function (x, y) { pathPoints.push([x, y, false]); return lineTo.call(this, x, y); };
  const rad = Math.PI / 180;
  const km = (a, b) => {
    const h = Math.sin(((b[1] - a[1]) * rad) / 2) ** 2 +
      Math.cos(a[1] * rad) * Math.cos(b[1] * rad) * Math.sin(((b[0] - a[0]) * rad) / 2) ** 2;
    return 2 * radius * Math.asin(Math.min(1, Math.sqrt(h)));
  };
  P.stroke = function () {
    const view = window.__tracker;
    if (view && this.strokeStyle === view.trailStyle) {
      rec.strokes += 1;
      const { width, height } = this.canvas;
      const geo = ([x, y]) => [(x / width) * 360 - 180, 90 - (y / height) * 180];
      for (let i = 1; i < pathPoints.length; i++) {
        if (pathPoints[i][2]) continue;                        // a move: nothing drawn
        const a = geo(pathPoints[i - 1]), b = geo(pathPoints[i]);
        rec.segments += 1;
        if (Math.abs(b[0]) === 180) rec.crossings += 1;
        const d = km(a, b);
        rec.worstKm = Math.max(rec.worstKm, d);
        if ((d > boundKm || Math.abs(b[0] - a[0]) > 180) && rec.bad.length < 20) rec.bad.push({ a, b, km: d });
      }
    }
    return stroke.call(this);
  };
}

test("979 satellites: one per catalogue number, and no trail segment longer than physics allows",
  { timeout: 120000 }, async () => {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await context.addInitScript(recordTrails, { boundKm: BOUND_KM, radius: R });
    const page = await context.newPage();
    try {
      await page.goto(`http://127.0.0.1:${port}/`, { timeout: 15000 });
      await page.waitForFunction(() => window.__tracker && window.__tracker.state === "connected",
                                 null, { timeout: 20000 });
      // Ten ticks: every trail then has several segments.
      await page.waitForFunction(() => window.__tracker.updates >= 10, null, { timeout: 60000 });
      const seen = await page.evaluate(() => ({
        size: window.__tracker.satellites.size,
        count: Number(document.getElementById("st-sats").textContent),
        tickMs: window.__tracker.tickMs,
        sl16: [...window.__tracker.satellites.values()].filter((s) => s.name === "SL-16 R/B").length,
        trails: window.__trails,
      }));
      const t = seen.trails;
      assert.ok(seen.count >= 970, `${seen.count} satellites`);
      assert.ok(t.strokes > 0 && t.segments > 5 * seen.count, JSON.stringify(t));
      assert.deepEqual(t.bad, [], `segments longer than ${BOUND_KM.toFixed(1)} km or across the map`);
      assert.ok(t.worstKm > 0 && t.worstKm <= BOUND_KM, `${t.worstKm} km`);
      assert.equal(seen.size, seen.count, "one satellite on the page per catalogue number");
      assert.ok(seen.sl16 >= 15, `${seen.sl16} SL-16 R/B`);
      assert.equal(seen.tickMs, TICK_S * 1000);
      await page.screenshot({ path: path.join(artifacts, "tracker-979.png") });
    } finally {
      await context.close();
    }
  });
