// The tracker dashboard over skyrelay's JSON protocol (skyrelay.js).
import { SkyRelay } from "/skyrelay.js";
import { applyMetrics, applyPositions, applyStatus, applyTracks, applyWindows, mount, onReconnect, setState, view } from "./dashboard.js";

mount({ footer: `Positions, windows and status arrive over the skyrelay JSON protocol (<code>/skyrelay.js</code>); the same events over Socket.IO: <a href="sio.html">sio.html</a>.` });

const client = new SkyRelay("/ws");
view.transport = "skyrelay.js";
setState(client.state);
client.on("state", (state) => setState(state));

client.on("connected", async () => {
  // A new connection has no rooms: subscribe again; each answer carries the current snapshot.
  try {
    const positions = await client.request("subscribe_satellites", null, { timeout: 10000 });
    applyPositions(positions.snapshot);
    const windows = await client.request("subscribe_windows", null, { timeout: 10000 });
    applyWindows(windows.snapshot);
    applyMetrics((await client.request("subscribe_metrics", null, { timeout: 10000 })).snapshot);
    if (view.satellites.size <= 200) applyTracks(await client.request("get_ground_tracks", null, { timeout: 10000 }));
  } catch (err) {
    console.warn("subscribe failed", err);
  }
});

onReconnect(() => {
  if (client.state === "connected") client.close();
  client.open();
});

// The seed's events: broadcasts, the replies to a subscribe, status and metrics.
client.on("satellite_positions", (data) => applyPositions(data));
client.on("satellite_update", (data) => applyPositions(data));
client.on("communication_windows", (data) => applyWindows(data));
client.on("window_update", (data) => applyWindows(data));
client.on("server_status", (data) => applyStatus(data));
client.on("server_metrics", (data) => applyMetrics(data));

// Ground tracks: 45 minutes back, 90 ahead; refreshed every 10 minutes.
setInterval(async () => {
  if (client.state !== "connected" || view.satellites.size > 200) return;
  try { applyTracks(await client.request("get_ground_tracks", null, { timeout: 10000 })); } catch { /* next time */ }
}, 600000);
