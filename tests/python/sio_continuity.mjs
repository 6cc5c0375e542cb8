// A Socket.IO subscriber for test_continuity.py: socket.io-client with connection state
// recovery, reading numbered events {n} until `last`, dropping its transport at random moments
// (the TCP connection destroyed under it, no goodbye). It checks continuity itself: between
// two explicit resets (a reconnect with socket.recovered === false) every n follows the one
// before, and no n ever comes twice. Prints one JSON line with what it saw.
// On standard error: READY once connected, then AT <n> every 500 events.
// Usage: node sio_continuity.mjs <url> <last> <seed>
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "package.json"));
const { io } = require("socket.io-client");
const [url, lastArg, seedArg] = process.argv.slice(2);
const last = Number(lastArg);
let seed = Number(seedArg) || 1;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

const socket = io(url, { transports: ["websocket"], reconnectionDelay: 100,
                         reconnectionDelayMax: 200, randomizationFactor: 0 });
const result = { events: 0, drops: 0, recovered: 0, resets: 0, errors: [] };
let prev = null;
let sinceDrop = 0;
let dropAfter = 500 + Math.floor(random() * 5000);
const seen = new Set();

let connected = false;
socket.on("connect", () => {
  if (!connected) {  // the first connection: the server has joined it to "stream"
    connected = true;
    console.error("READY");
    return;
  }
  if (socket.recovered) result.recovered++;
  else { result.resets++; prev = null; }  // an explicit reset: continuity restarts here
});
socket.on("e", ({ n }) => {
  if (seen.has(n)) result.errors.push(`duplicate ${n}`);
  seen.add(n);
  if (prev !== null && n !== prev + 1) result.errors.push(`gap ${prev} -> ${n}`);
  prev = n;
  result.events++;
  if (result.events % 500 === 0) console.error(`AT ${n}`);  // progress, for the producer's gate
  if (n === last) finish();
  // Frames read before a cut are still delivered after it: cut only a live connection, so that
  // every drop is one lost transport (and one reconnect).
  const tcp = socket.io.engine?.transport?.ws?._socket;
  if (++sinceDrop >= dropAfter && socket.connected && tcp && !tcp.destroyed) {
    sinceDrop = 0;
    dropAfter = 500 + Math.floor(random() * 5000);
    result.drops++;
    socket.io.engine.transport.ws._socket.destroy();
  }
});
const timer = setTimeout(() => { result.errors.push("timed out"); finish(); }, 120000);
function finish() {
  clearTimeout(timer);
  result.errors = result.errors.slice(0, 10);
  process.stdout.write(JSON.stringify(result) + "\n");
  socket.disconnect();
  process.exit(0);
}
