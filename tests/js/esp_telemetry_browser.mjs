// The seed's complete SSE example (seed S4, "Complete SSE Example") in real Chromium, against
// examples/esp_telemetry, driven by tests/python/test_example_esp_telemetry.py:
//   node esp_telemetry_browser.mjs BASE_URL TOKEN WELL
// Opens a page of the app's origin, makes the seed's EventSource on
// /api/v1/sse/stream/WELL?token=TOKEN with its listeners (connected, heartbeat,
// telemetry_update, alert, error), and prints one JSON line per event the page gets:
// {"on": type, "args": [{"id": its lastEventId, "data": its parsed data}]}, and
// {"on": "open", "args": []} each time the connection opens.
// Stops when stdin closes, or after 60 s.
import readline from "node:readline";
import { closeChromium, launchChromium } from "./browser.mjs";

const [base, token, well] = process.argv.slice(2);
const browser = await launchChromium();
const context = await browser.newContext();
const page = await context.newPage();
await page.goto(`${base}/api/v1/metrics`);  // any page of the app's origin
await page.exposeFunction("report", (line) => process.stdout.write(line + "\n"));
await page.evaluate(([wellId, tok]) => {
  const source = new EventSource(`/api/v1/sse/stream/${wellId}?token=${tok}`);
  source.onopen = () => window.report(JSON.stringify({ on: "open", args: [] }));
  for (const type of ["connected", "heartbeat", "telemetry_update", "alert", "error"]) {
    source.addEventListener(type, (event) => window.report(JSON.stringify({
      on: type,
      args: [{ id: event.lastEventId, data: event.data ? JSON.parse(event.data) : null }],
    })));
  }
  window.source = source;
}, [well, token]);

let finished = false;
const finish = async () => {
  if (finished) return;
  finished = true;
  clearTimeout(deadline);
  await closeChromium(browser);
  process.stdout.write("", () => process.exit(0));
};
const deadline = setTimeout(finish, 60000);
readline.createInterface({ input: process.stdin }).on("close", finish);
