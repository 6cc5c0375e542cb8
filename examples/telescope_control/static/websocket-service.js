// The telescope app's WebSocket client (S2): the seed's frames {id, type, telescope_id,
// timestamp, payload}, reconnection with exponential backoff, commands as promises with a
// timeout, and a bounded queue of what was sent while offline, flushed in order on reconnect.

const DEFAULTS = {
  baseUrl: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`,
  reconnectAttempts: 10,
  reconnectDelayMs: 1000,
  maxReconnectDelayMs: 30000,
  heartbeatIntervalMs: 30000,
  commandTimeoutMs: 15000,
  maxQueued: 100,
};

let counter = 0;
const newId = () => `${Date.now()}-${++counter}`;

export class WebSocketService {
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.socket = null;
    this.state = "disconnected";  // connecting | connected | reconnecting | disconnected
    this.telescopeId = null;
    this.subscriptions = new Set();
    this.queue = [];                // frames sent while offline, oldest first
    this.pending = new Map();       // command id -> {resolve, reject, timer}
    this.listeners = new Map();
    this.status = {};               // telescope id -> its status, rebuilt from the updates
    this.attempts = 0;
    this.timers = {};
    this.wanted = false;
  }

  on(event, cb) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(cb);
    return () => this.listeners.get(event)?.delete(cb);
  }

  emit(event, ...args) {
    for (const cb of this.listeners.get(event) ?? []) cb(...args);
  }

  /** Connects to /api/ws/<telescopeId> (or /api/ws without one). */
  connect(telescopeId = null) {
    this.telescopeId = telescopeId;
    this.wanted = true;
    this.attempts = 0;
    clearTimeout(this.timers.retry);
    return this.open("connecting");
  }

  disconnect() {
    this.wanted = false;
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.heartbeat);
    const s = this.socket;
    this.socket = null;
    if (s) s.close(1000, "client disconnect");
    this.setState("disconnected");
  }

  getConnectionStatus() {
    return { connected: this.state === "connected", state: this.state, queued: this.queue.length,
             attempts: this.attempts };
  }

  /** Follows a telescope's status (on /api/ws; the telescope's own URL follows it already). */
  subscribe(telescopeId) {
    this.subscriptions.add(telescopeId);
    this.send("subscribe", {}, telescopeId);
  }

  unsubscribe(telescopeId) {
    this.subscriptions.delete(telescopeId);
    this.send("unsubscribe", {}, telescopeId);
  }

  /** Sends a control command; resolves with its result, rejects with an Error whose `code` is
   * the server's (or "timeout" when no answer came within commandTimeoutMs, queued time
   * included). */
  sendCommand(action, parameters = {}, telescopeId = this.telescopeId) {
    const id = newId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        const err = new Error(`command ${action} timeout after ${this.options.commandTimeoutMs} ms`);
        err.code = "timeout";
        reject(err);
      }, this.options.commandTimeoutMs);
      this.pending.set(id, { resolve, reject, timer, action });
      this.send("control_command", { action, parameters, response_expected: true },
                telescopeId, id);
    });
  }

  requestFullUpdate(telescopeId = this.telescopeId) {
    this.send("request_full_update", {}, telescopeId);
  }

  /** Sends one frame now, or queues it while offline (the oldest is dropped past maxQueued,
   * and its command rejected). */
  send(type, payload, telescopeId = this.telescopeId, id = newId()) {
    const frame = { id, type, telescope_id: telescopeId, timestamp: Date.now(), payload };
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(frame));
      this.emit("sent", frame);
      return true;
    }
    if (type === "heartbeat") return false;
    this.queue.push(frame);
    if (this.queue.length > this.options.maxQueued) {
      const dropped = this.queue.shift();
      this.settle(dropped.id, null, { code: "queue_full", message: "dropped from a full offline queue" });
    }
    this.emit("queued", frame);
    return false;
  }

  open(state) {
    this.setState(state);
    const path = this.telescopeId ? `/api/ws/${encodeURIComponent(this.telescopeId)}` : "/api/ws";
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.options.baseUrl + path);
      this.socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = true;
        this.attempts = 0;
        this.setState("connected");
        for (const t of this.subscriptions) socket.send(JSON.stringify(
          { id: newId(), type: "subscribe", telescope_id: t, timestamp: Date.now(), payload: {} }));
        const queued = this.queue.splice(0);
        for (const frame of queued) {
          socket.send(JSON.stringify(frame));
          this.emit("sent", frame);
        }
        clearInterval(this.timers.heartbeat);
        this.timers.heartbeat = setInterval(() => this.send("heartbeat", {}),
                                            this.options.heartbeatIntervalMs);
        resolve();
      };
      socket.onmessage = (m) => this.onFrame(m.data);
      socket.onclose = () => {
        if (this.socket !== socket) return;
        this.socket = null;
        clearInterval(this.timers.heartbeat);
        if (!opened) reject(new Error("WebSocket connection failed"));
        this.retry();
      };
    });
  }

  retry() {
    if (!this.wanted || this.attempts >= this.options.reconnectAttempts) {
      this.wanted = false;
      return this.setState("disconnected");
    }
    const { reconnectDelayMs, maxReconnectDelayMs } = this.options;
    const delay = Math.min(reconnectDelayMs * 2 ** this.attempts, maxReconnectDelayMs);
    this.attempts += 1;
    this.setState("reconnecting");
    this.timers.retry = setTimeout(() => {
      if (this.wanted) this.open("reconnecting").catch(() => {});
    }, delay);
  }

  onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    this.emit("message", frame);
    const p = frame.payload ?? {};
    switch (frame.type) {
      case "status_update": return this.onStatus(frame.telescope_id, p);
      case "command_response": return this.settle(p.command_id, p.result, null);
      case "error":
        if (p.command_id && this.pending.has(p.command_id)) return this.settle(p.command_id, null, p);
        return this.emit("error", p);
      case "telescope_discovered": return this.emit("telescopeDiscovered", p);
      case "telescope_lost":
        delete this.status[p.telescope_id];
        return this.emit("telescopeLost", p.telescope_id, p.reason);
      default: return undefined;
    }
  }

  onStatus(telescopeId, p) {
    if (p.removed) {
      delete this.status[telescopeId];
    } else if (p.full_update) {
      // A full update replaces the copy: index 0 starts it (see docs/api.md "Delta updates").
      if (!p.index) this.status[telescopeId] = {};
      this.status[telescopeId] = { ...this.status[telescopeId], ...p.status };
    } else {
      this.status[telescopeId] = { ...this.status[telescopeId], ...p.status };
    }
    this.emit("statusUpdate", telescopeId, this.status[telescopeId], p.changes ?? [], !!p.full_update);
  }

  settle(id, result, error) {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    clearTimeout(entry.timer);
    if (!error) return entry.resolve(result);
    const err = new Error(error.message ?? error.code);
    err.code = error.code;
    entry.reject(err);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit("connectionStateChanged", state);
  }
}
