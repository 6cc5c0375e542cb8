// A client of examples/config_admin as the seed's front end writes it: socket.io-client with
// its defaults (polling first, then the upgrade to WebSocket), `io(url + "/client", {auth:
// {token}})`. `node config_admin_client.mjs URL TOKEN` prints one JSON line per step:
// {"step":"connected", ...client_connected}, {"step":"feature", ...feature_status of
// "export_csv"}, then {"step":"sync", ...config_sync} once the server forces a sync, and exits.
// Any connect_error is printed as {"step":"error", ...} and ends it; 30 s at most.
import { io } from "socket.io-client";

const [url, token] = process.argv.slice(2);
const socket = io(`${url}/client`, { auth: { token }, reconnection: false });
const print = (step, data) => process.stdout.write(JSON.stringify({ step, ...data }) + "\n");
const end = (code) => { socket.close(); process.stdout.write("", () => process.exit(code)); };
setTimeout(() => { print("timeout", {}); end(1); }, 30000);

socket.on("connect_error", (err) => { print("error", { message: err.message, data: err.data }); end(0); });
socket.on("client_connected", async (data) => {
  print("connected", { ...data, transport: socket.io.engine.transport.name });
  const status = await socket.timeout(10000).emitWithAck("feature_check", { feature: "export_csv" });
  print("feature", status);
});
socket.on("config_sync", (data) => { print("sync", data); end(0); });
