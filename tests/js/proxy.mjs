// A TCP proxy for the browser tests that can refuse kinds of requests at the network level, as
// a proxy or firewall that blocks them does: it reads the head of each request on a
// connection, asks `classify(head, target)` for its kind (a string, or null for anything
// else), counts it in `seen`, and closes the connection while `block[kind]` is set.
import { once } from "node:events";
import net from "node:net";

export async function startProxy(port, classify) {
  const block = {};
  const seen = {};
  const sockets = new Set();
  const proxy = net.createServer((down) => {
    const up = net.connect(port, "127.0.0.1");
    sockets.add(down).add(up);
    const end = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    for (const s of [down, up]) s.on("error", end).on("close", end);
    down.on("data", (chunk) => {
      const head = chunk.toString("latin1", 0, Math.min(chunk.length, 4096));
      const line = /^[A-Z]+ (\S+) HTTP\/1\.1\r\n/.exec(head);
      if (line) {
        const kind = classify(head, line[1]);
        if (kind) seen[kind] = (seen[kind] ?? 0) + 1;
        if (kind && block[kind]) return end();
      }
      up.write(chunk);
    });
    up.pipe(down);
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  return {
    block,
    seen,
    origin: `http://127.0.0.1:${proxy.address().port}`,
    /** Cuts every connection open through the proxy (the server stays up). */
    cut() {
      for (const s of sockets) s.destroy();
    },
    close() {
      this.cut();
      proxy.close();
    },
  };
}

/** The kind of request a WebSocket handshake is: "ws", else null. */
export const websocketUpgrades = (head) => (/\r\nupgrade:\s*websocket/i.test(head) ? "ws" : null);
