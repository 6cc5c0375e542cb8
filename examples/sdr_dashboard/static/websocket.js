// The dashboard's WebSocket manager: the client side of S1's contract (docs in ../README.md).
// Frames are {event, data, timestamp}; the manager keeps the connection alive with a ping
// every heartbeatMs, reconnects with exponential backoff (1 s, 2 s, 4 s ... at most 30 s) after
// a drop, and gives up after maxReconnectAttempts tries, leaving the page to poll over HTTP
// until the user asks for a new attempt (reconnect()).

export const ConnectionState = Object.freeze({
  DISCONNECTED: "disconnected",
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
});

const DEFAULTS = {
  heartbeatMs: 30000,
  initialDelayMs: 1000,
  maxDelayMs: 30000,
  multiplier: 2,
  maxReconnectAttempts: 5,
};

export class WebSocketManager {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.state = ConnectionState.DISCONNECTED;
    this.socket = null;
    this.attempts = 0;
    this.listeners = new Map();      // event name -> Set of callbacks
    this.stateListeners = new Set();
    this.timers = { heartbeat: null, retry: null };
    this.wanted = false;             // connect() called and disconnect() not since
  }

  /** Calls `cb(state)` on every state change; returns a function that removes it. */
  onStateChange(cb) {
    this.stateListeners.add(cb);
    return () => this.stateListeners.delete(cb);
  }

  /** Calls `cb(data, frame)` for every `event` frame; the server is told which events this
   * page follows (a subscribe frame on every connect), so events sent only to subscribers
   * reach it. Returns a function that removes the callback. */
  subscribe(event, cb) {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
      if (this.state === ConnectionState.CONNECTED) this.send("subscribe", { events: [event] });
    }
    set.add(cb);
    return () => {
      set.delete(cb);
      if (set.size === 0) {
        this.listeners.delete(event);
        if (this.state === ConnectionState.CONNECTED) this.send("unsubscribe", { events: [event] });
      }
    };
  }

  /** Opens the connection; resolves once it is open, rejects if the first attempt fails (the
   * manager keeps retrying in the background either way). */
  connect() {
    this.wanted = true;
    this.attempts = 0;
    clearTimeout(this.timers.retry);
    return this.open(ConnectionState.CONNECTING);
  }

  /** Closes the connection and stops every retry. */
  disconnect() {
    this.wanted = false;
    clearTimeout(this.timers.retry);
    this.stopHeartbeat();
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      s.close(1000, "client disconnect");
    }
    this.setState(ConnectionState.DISCONNECTED);
  }

  /** Sends one frame; false when not connected (nothing is queued). */
  send(event, data = {}) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ event, data, timestamp: new Date().toISOString() }));
    return true;
  }

  open(state) {
    this.setState(state);
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new WebSocket(this.url);
      } catch (err) {
        this.onClosed(null);
        reject(err);
        return;
      }
      this.socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = true;
        this.attempts = 0;
        this.setState(ConnectionState.CONNECTED);
        const events = [...this.listeners.keys()];
        if (events.length) this.send("subscribe", { events });
        this.startHeartbeat();
        resolve();
      };
      socket.onmessage = (msg) => this.onFrame(msg.data);
      socket.onclose = () => {
        if (this.socket !== socket) return;  // an old socket, replaced or closed by us
        this.socket = null;
        this.stopHeartbeat();
        this.onClosed(socket);
        if (!opened) reject(new Error("WebSocket connection failed"));
      };
    });
  }

  onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame.event !== "string") return;
    for (const cb of this.listeners.get(frame.event) ?? []) cb(frame.data, frame);
    for (const cb of this.listeners.get("*") ?? []) cb(frame.data, frame);
  }

  onClosed() {
    if (!this.wanted) return this.setState(ConnectionState.DISCONNECTED);
    if (this.attempts >= this.options.maxReconnectAttempts) {
      this.wanted = false;
      return this.setState(ConnectionState.DISCONNECTED);
    }
    const { initialDelayMs, multiplier, maxDelayMs } = this.options;
    const delay = Math.min(initialDelayMs * multiplier ** this.attempts, maxDelayMs);
    this.attempts += 1;
    this.setState(ConnectionState.RECONNECTING);
    this.timers.retry = setTimeout(() => {
      if (this.wanted) this.open(ConnectionState.RECONNECTING).catch(() => {});
    }, delay);
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.timers.heartbeat = setInterval(() => this.send("ping", {}), this.options.heartbeatMs);
  }

  stopHeartbeat() {
    clearInterval(this.timers.heartbeat);
    this.timers.heartbeat = null;
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    for (const cb of this.stateListeners) cb(state);
  }
}

export function createWebSocketManager(url, options) {
  return new WebSocketManager(url, options);
}
