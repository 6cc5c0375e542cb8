// skyrelay.js: the client of skyrelay's JSON protocol over WebSocket (docs/protocol.md).
// An ES module with no dependencies and no build step. Browsers use their own WebSocket; Node
// passes one in (`new SkyRelay(url, {WebSocket})`, e.g. from the `ws` package). When WebSocket
// cannot connect, it falls back to the server's SSE stream read with fetch(), then to polling
// that stream, and probes WebSocket to come back to it. Usage, options, states, events, resume
// semantics and the fallback rules: docs/client.md.

/** The connection states, in the order a first connection goes through them. */
export const STATES = Object.freeze(["disconnected", "connecting", "connected", "reconnecting",
                                     "fallback-sse", "polling"]);

/** Names `on()` reserves for the client's own events; server events with these names reach
 * `onAny()` listeners only. */
export const CLIENT_EVENTS = Object.freeze([
  "state", ...STATES, "retry", "failed", "subscribed", "reset", "gap", "dropped", "error",
]);

const DEFAULTS = Object.freeze({
  backoff: Object.freeze({ base: 1000, max: 30000, factor: 2, jitter: 0.5 }),
  requestTimeout: 10000,
  connectTimeout: 10000,
  // Below the server's 30 s silence timer, so an idle server never has to ping us.
  heartbeatInterval: 25000,
  heartbeatTimeout: 10000,
  maxQueue: 1000,
  autoConnect: true,
  reconnectAttempts: null,  // failed attempts in a row before giving up; null: never give up
  // SSE, then polling, when WebSocket cannot connect; default: in a page (see docs/client.md)
  fallback: typeof globalThis.document !== "undefined",
  fallbackAfter: 3,         // attempts in a row without a welcome before the next transport
  pollInterval: 30000,      // ms between polls (S1's dashboard polls every 30 s)
  pollWindow: 1000,         // a poll reads until the stream is quiet this long (ms)
  probeInterval: 30000,     // ms between WebSocket attempts while on a fallback
  network: true,            // listen to the window's online/offline events
});

// The close code of an application's server.disconnect(): a deliberate "go away", so no retry.
const CLOSE_BY_APPLICATION = 4002;
// The protocol allows at most 64 topics in one subscribe message.
const TOPICS_PER_MESSAGE = 64;
const reserved = new Set(CLIENT_EVENTS);
const now = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/** An error with a stable `code`: the server's (`handler_error`, `unknown_event`, an
 * application's own...) or the client's (`timeout`, `disconnected`, `closed`, `queue_full`,
 * `unsubscribed`). */
export class SkyRelayError extends Error {
  constructor(code, message, details) {
    super(message || code);
    this.name = "SkyRelayError";
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

// A promise whose rejection counts as handled even if the caller ignores it (fire-and-forget
// subscribe() must not crash Node with an unhandled rejection); awaiting it still throws.
function quiet(promise) {
  promise.catch(() => {});
  return promise;
}

// The SSE endpoint on the WebSocket's host: options.sseUrl, resolved against the page (or the
// WebSocket URL turned into http(s)), else /sse there.
function sseUrl(ws, option) {
  const http = new URL(ws);
  http.protocol = http.protocol === "wss:" ? "https:" : "http:";
  const parsed = new URL(option ?? "/sse", globalThis.location ? globalThis.location.href : http);
  if (option == null) {
    parsed.protocol = http.protocol;
    parsed.host = http.host;
  }
  parsed.search = "";
  return parsed.href;
}

// "<prefix>~<n>.<pos>~..." -> ["<n>.<pos>", ...] (the broadcasts first, then each topic), or
// null for anything else.
function cursorPoints(id) {
  if (typeof id !== "string") return null;
  const parts = id.split("~");
  return parts.length > 1 ? parts : null;
}

// The topics of `topics` (a stream's, in its URL order) whose channel moved between two ids.
function movedTopics(before, after, topics) {
  const a = cursorPoints(before), b = cursorPoints(after);
  if (!a || !b || a.length !== b.length || a[0] !== b[0]) return [];
  return topics.filter((_, i) => a[i + 2] !== b[i + 2]);
}

function wsUrl(url) {
  const base = globalThis.location ? globalThis.location.href : undefined;
  const parsed = new URL(url ?? "/ws", base);  // throws on a relative URL without a page
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:")
    throw new TypeError(`skyrelay: not a WebSocket URL: ${url}`);
  return parsed;
}

export class SkyRelay {
  /**
   * @param {string} [url] ws://, wss://, http(s):// or a path on the page's host ("/ws").
   * @param {object} [options] see docs/client.md
   */
  constructor(url, options = {}) {
    this.url = wsUrl(url).href;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function")
      throw new TypeError("skyrelay: no WebSocket here; pass options.WebSocket");
    const o = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...options.backoff } };
    this.options = o;
    this.sseUrl = sseUrl(this.url, o.sseUrl);
    this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.state = "disconnected";
    this.sid = null;
    this._listeners = new Map();  // name -> Set of functions
    this._anyListeners = new Set();
    this._topics = new Map();     // topic -> subscription record (see _topic)
    this._requests = new Map();   // id -> {resolve, reject, timer, sent}
    this._queue = [];             // {text, type, event, data, id} waiting for a connection
    this._socket = null;
    this._wanted = false;         // open() was called and close() not since
    this._attempt = 0;            // failed attempts since the last welcome
    this._generation = 0;         // bumped by each connection attempt and by close()
    this._retryTimer = null;
    this._connectTimer = null;
    this._heartbeatTimer = null;
    this._lastInbound = 0;
    this._pingSentAt = null;
    this._nextId = 0;
    // The transport: "ws", or a fallback ("sse", "polling") with WebSocket probed on the side.
    this._mode = "ws";
    this._wsFailures = 0;         // WebSocket attempts in a row that got no welcome
    this._sseFailures = 0;        // SSE attempts in a row that got no welcome
    this._probing = false;        // the current socket is a probe made while on a fallback
    this._welcomed = false;       // the current socket got its welcome
    this._stream = null;          // the fallback request in flight: {abort(), ...}
    this._streamGeneration = 0;   // bumped by each fallback request and by _stopFallback()
    this._streamTimer = null;     // the next SSE attempt or poll
    this._probeTimer = null;
    this._cursor = null;          // the SSE stream's last id, valid for _cursorTopics
    this._cursorTopics = null;
    this._offline = false;
    this._network = null;         // the window listeners while wanted
    // Deferred so listeners attached right after the constructor see "connecting"; open() or
    // close() called before then take its place.
    this._autoConnect = Boolean(o.autoConnect);
    if (this._autoConnect) queueMicrotask(() => { if (this._autoConnect) this.open(); });
  }

  // -- connection ----------------------------------------------------------------------------

  /** Connects; while waiting for a retry, retries now. No-op when connected or connecting. */
  open() {
    this._autoConnect = false;
    this._wanted = true;
    this._watchNetwork(true);
    if (this.state !== "disconnected" && this._retryTimer === null) return this;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._connect();
    return this;
  }

  /** Closes the connection and stops reconnecting. Requests in flight or queued reject with
   * `closed`; subscriptions and their positions stay, so a later open() resumes them. */
  close(code = 1000, reason = "") {
    this._autoConnect = false;
    this._wanted = false;
    this._watchNetwork(false);
    this._leaveFallback();
    this._wsFailures = this._sseFailures = 0;
    this._generation++;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const closed = () => new SkyRelayError("closed", "the client was closed");
    for (const id of [...this._requests.keys()]) this._settle(id, null, closed());
    this._queue = [];
    for (const sub of this._topics.values()) this._settleWaiters(sub, null, closed());
    const socket = this._socket;
    this._teardown();
    if (socket) {
      try {
        socket.close(code, reason);
      } catch {
        socket.close();  // browsers accept only 1000 and 3000-4999 from a client
      }
    }
    this._setState("disconnected", { code, reason });
    return this;
  }

  /** Starts over with WebSocket now: from any state but `connected`, after giving up too (a
   * "reconnect" button). The failure counts start again. */
  reconnect() {
    this._autoConnect = false;
    this._wanted = true;
    this._watchNetwork(true);
    if (this.state === "connected") return this;
    this._leaveFallback();
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const socket = this._socket;
    if (socket) {
      this._teardown();
      socket.close();
    }
    this._attempt = this._wsFailures = this._sseFailures = 0;
    if (this.state !== "disconnected" && this.state !== "connecting")
      this._setState("reconnecting", { code: 1006, reason: "reconnect" });
    this._connect();
    return this;
  }

  // `probe`: a WebSocket attempt made while a fallback carries the events; it changes no state
  // and, failing, only plans the next probe.
  async _connect(probe = false) {
    const generation = ++this._generation;
    this._probing = probe;
    this._welcomed = false;
    // A first attempt is "connecting"; retries after a loss or a failure stay "reconnecting".
    if (!probe && this.state === "disconnected") this._setState("connecting");
    const url = new URL(this.url);
    const token = this.options.token;
    if (token != null) {
      let value;
      try {
        value = typeof token === "function" ? await token() : token;
      } catch (err) {
        if (generation !== this._generation) return;
        this._emitLocal("error", new SkyRelayError("token_failed", String(err?.message ?? err)));
        this._lost(null, 1006, "token failed");
        return;
      }
      if (generation !== this._generation) return;  // close() or open() meanwhile
      if (value != null) url.searchParams.set("token", String(value));
    }
    let socket;
    try {
      socket = new this._WebSocket(url.href);
    } catch (err) {
      this._emitLocal("error", new SkyRelayError("connect_failed", String(err?.message ?? err)));
      this._lost(null, 1006, "connect failed");
      return;
    }
    this._socket = socket;
    // Handlers stay attached for good and check that their socket is still the current one:
    // detaching them would leave Node's ws without an 'error' listener while it closes.
    socket.onmessage = (ev) => { if (socket === this._socket) this._onFrame(ev.data); };
    socket.onclose = (ev) => { if (socket === this._socket) this._lost(socket, ev.code, ev.reason); };
    socket.onerror = () => {};  // a close event follows, with what there is to know
    this._connectTimer = setTimeout(() => this._abandon(socket, "connect timeout"),
                                    this.options.connectTimeout);
  }

  // Gives up on a socket that still looks open (no welcome, no heartbeat) without waiting for
  // a closing handshake the peer may never answer.
  _abandon(socket, reason) {
    if (socket !== this._socket) return;
    this._lost(socket, 1006, reason);
    if (typeof socket.terminate === "function") socket.terminate();  // Node's ws: at once
    else socket.close(4000, reason);
  }

  // Stops using the current socket: timers off, requests sent on it fail (their answers
  // can no longer arrive), subscriptions go back to unconfirmed.
  _teardown() {
    clearTimeout(this._connectTimer);
    clearTimeout(this._heartbeatTimer);
    this._connectTimer = this._heartbeatTimer = null;
    this._socket = null;
    this.sid = null;
    for (const [id, entry] of [...this._requests])
      if (entry.sent) this._settle(id, null, new SkyRelayError(
        "disconnected", "the connection was lost before the response arrived"));
    for (const sub of this._topics.values()) {
      sub.inFlight = false;
      sub.held = [];
    }
  }

  _lost(socket, code, reason) {
    if (socket !== this._socket) return;
    const { _probing: probe, _welcomed: welcomed } = this;
    this._teardown();
    const info = { code, reason };
    if (code === CLOSE_BY_APPLICATION) this._wanted = false;
    if (!this._wanted) {
      this._leaveFallback();
      this._setState("disconnected", info);
      return;
    }
    if (probe) return this._armProbe();  // the fallback goes on
    if (!welcomed) this._wsFailures++;
    if (this._offline) return this._setState("reconnecting", info);  // "online" resumes
    if (this._exhausted()) return this._giveUp(info);
    if (this._fallbackDue(this._wsFailures)) {
      this._attempt++;
      return this._startFallback("sse", info);
    }
    const delay = this._backoffDelay(this._attempt++);
    this._setState("reconnecting", info);
    this._emitLocal("retry", { attempt: this._attempt, delay });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._connect();
    }, delay);
  }

  _backoffDelay(attempt) {
    const { base, max, factor, jitter } = this.options.backoff;
    const nominal = Math.min(max, base * factor ** attempt);
    // Downward jitter only, so the cap holds: a delay lands in [nominal * (1 - jitter), nominal].
    return Math.round(nominal * (1 - jitter * Math.random()));
  }

  _setState(state, info = {}) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emitLocal("state", state, previous, info);
    this._emitLocal(state, info);
  }

  // -- fallback: SSE, then polling ------------------------------------------------------------
  //
  // Rule: `fallbackAfter` attempts in a row that get no welcome (refused, cut before it, or
  // timed out) move to the next transport: WebSocket -> SSE -> polling. A connection that once
  // got its welcome and is lost starts the count again, so a blip never leaves WebSocket. While
  // on a fallback, WebSocket is tried every `probeInterval`; its welcome ends the fallback.

  _exhausted() {
    const max = this.options.reconnectAttempts;
    return max != null && this._attempt >= max;
  }

  // Stops for good (until open() or reconnect()): "disconnected", then "failed".
  _giveUp(info) {
    this._wanted = false;
    this._watchNetwork(false);
    this._leaveFallback();
    const attempts = this._attempt;
    this._attempt = this._wsFailures = this._sseFailures = 0;  // open() starts a new count
    this._setState("disconnected", { code: info.code, reason: "reconnect attempts exhausted" });
    this._emitLocal("failed", { attempts, code: info.code, reason: info.reason });
  }

  _fallbackDue(failures) {
    return Boolean(this.options.fallback) && typeof this._fetch === "function" &&
      failures >= Math.max(1, this.options.fallbackAfter);
  }

  // Leaves WebSocket (mode "sse") or SSE (mode "polling"). Positions do not carry over between
  // the protocol's seq and the stream's cursor: each confirmed topic gets a reset
  // (`transport_changed`) with the stream's welcome.
  _startFallback(mode, info) {
    if (this._mode === "ws") {
      this._cursor = null;
      for (const sub of this._topics.values()) Object.assign(sub, { seq: null, epoch: null, streamed: false });
    }
    this._mode = mode;
    this._sseFailures = 0;
    this._setState("reconnecting", info);
    this._openStream();
    this._armProbe();
  }

  // Back on WebSocket (or stopped): the stream stops before the subscriptions go out, so
  // nothing comes twice; each confirmed topic gets its `transport_changed` reset now.
  _leaveFallback() {
    this._stopFallback();
    if (this._mode === "ws") return;
    this._mode = "ws";
    this._sseFailures = 0;
    this._cursor = null;
    for (const [topic, sub] of this._topics) {
      const confirmed = sub.info !== null;
      Object.assign(sub, { seq: null, epoch: null, streamed: false });
      if (confirmed) this._emitLocal("reset", { topic, reason: "transport_changed", seq: null, epoch: null });
    }
  }

  _stopFallback() {
    this._streamGeneration++;
    if (this._stream) this._stream.abort();
    this._stream = null;
    clearTimeout(this._streamTimer);
    clearTimeout(this._probeTimer);
    this._streamTimer = this._probeTimer = null;
  }

  _armProbe() {
    clearTimeout(this._probeTimer);
    this._probeTimer = null;
    if (!(this.options.probeInterval > 0)) return;
    this._probeTimer = setTimeout(() => {
      this._probeTimer = null;
      if (this._wanted && this._mode !== "ws" && !this._socket && !this._offline) this._connect(true);
    }, this.options.probeInterval);
  }

  // The topics changed while on a fallback: a new stream at once (the old cursor does not fit it).
  _reopenStream() {
    this._streamGeneration++;
    if (this._stream) this._stream.abort();
    this._stream = null;
    clearTimeout(this._streamTimer);
    this._streamTimer = null;
    for (const sub of this._topics.values()) sub.streamed = false;
    this._openStream();
  }

  async _streamUrl(topics) {
    const url = new URL(this.sseUrl);
    const query = [];
    if (topics.length) query.push(`topics=${topics.map(encodeURIComponent).join(",")}`);
    const same = this._cursorTopics && this._cursorTopics.join("\n") === topics.join("\n");
    if (this._cursor && same) query.push(`last_event_id=${encodeURIComponent(this._cursor)}`);
    else this._cursor = null;
    const token = this.options.token;
    const value = typeof token === "function" ? await token() : token;
    if (value != null) query.push(`token=${encodeURIComponent(String(value))}`);
    if (this._mode === "polling") query.push("transport=polling");  // for the app and the logs
    url.search = query.join("&");
    return url.href;
  }

  // One request on /sse read with fetch() (EventSource passes on only the event names it was
  // told about). SSE keeps it open; a poll reads the welcome and what history replays after
  // the cursor, until `pollWindow` passes without bytes, then ends it.
  async _openStream() {
    const generation = ++this._streamGeneration;
    const poll = this._mode === "polling";
    const controller = new AbortController();
    const stream = { topics: [...this._topics.keys()], poll, welcomed: false, resumed: false,
                     silence: 0, abort: () => controller.abort() };
    this._stream = stream;
    let timer = null;
    const arm = (ms) => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), ms);
    };
    let failure = null;
    try {
      const url = await this._streamUrl(stream.topics);
      if (generation !== this._streamGeneration) return;
      stream.resumed = this._cursor !== null;
      arm(this.options.connectTimeout);
      const res = await this._fetch(url, { signal: controller.signal, cache: "no-store",
                                           headers: { Accept: "text/event-stream" } });
      if (!res.ok || !res.body) throw new SkyRelayError("connect_failed", `HTTP ${res.status}`);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done || generation !== this._streamGeneration) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0 && generation === this._streamGeneration) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          this._onBlock(block, stream);
        }
        if (stream.welcomed) arm(poll ? this.options.pollWindow : stream.silence);
      }
    } catch (err) {
      failure = err;
    } finally {
      clearTimeout(timer);
      if (generation === this._streamGeneration) controller.abort();
    }
    if (generation !== this._streamGeneration) return;  // stopped, or replaced
    this._stream = null;
    this._streamEnded(stream, failure);
  }

  _streamEnded(stream, failure) {
    if (!this._wanted) return;
    const reason = failure && failure.name !== "AbortError" ? String(failure.message ?? failure)
      : stream.welcomed ? "stream ended" : "connect timeout";
    const info = { code: 1006, reason };
    if (stream.poll && stream.welcomed) return this._nextStream(this.options.pollInterval);
    if (!stream.welcomed && !stream.poll) this._sseFailures++;
    if (this._offline) return this._setState("reconnecting", info);
    if (!stream.welcomed && this._exhausted()) return this._giveUp(info);
    if (!stream.poll && this._fallbackDue(this._sseFailures)) {
      this._attempt++;
      return this._startFallback("polling", info);
    }
    const delay = stream.poll ? this.options.pollInterval : this._backoffDelay(this._attempt);
    this._attempt++;
    this._setState("reconnecting", info);
    this._emitLocal("retry", { attempt: this._attempt, delay });
    this._nextStream(delay);
  }

  _nextStream(delay) {
    clearTimeout(this._streamTimer);
    this._streamTimer = setTimeout(() => {
      this._streamTimer = null;
      if (this._wanted && this._mode !== "ws" && !this._offline) this._openStream();
    }, delay);
  }

  // One SSE block: `id:`, `event:` and `data:` lines (comments, such as keep-alives, are life).
  _onBlock(block, stream) {
    let id, event = "message", data = null;
    for (const raw of block.split("\n")) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") id = value;
      else if (field === "event") event = value;
      else if (field === "data") data = data === null ? value : `${data}\n${value}`;
    }
    if (data === null) return;  // the retry block
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return this._emitLocal("error", new SkyRelayError("bad_json", "the server sent invalid JSON"));
    }
    const before = this._cursor;
    if (id !== undefined) {
      this._cursor = id;
      this._cursorTopics = stream.topics;
    }
    if (event === "welcome") return this._onStreamWelcome(stream, parsed ?? {});
    if (!stream.welcomed) return;
    if (event === "reset") {
      const topics = parsed?.topic != null ? [parsed.topic] : stream.topics;
      for (const topic of topics)
        this._emitLocal("reset", { topic, reason: parsed?.reason ?? "history_gap", seq: null, epoch: null });
      return;
    }
    if (event === "token_expired") {
      return this._emitLocal("error", new SkyRelayError("token_expired", parsed?.message));
    }
    // The one topic whose channel the event moved names it; none for a broadcast, an event
    // to several of the stream's topics, or one addressed to this stream (no id).
    const moved = id === undefined ? [] : movedTopics(before, id, stream.topics);
    const topic = moved.length === 1 ? moved[0] : undefined;
    this._deliver({ event, data: parsed, topic }, topic === undefined ? undefined : this._topics.get(topic));
  }

  _onStreamWelcome(stream, welcome) {
    stream.welcomed = true;
    const keepalive = Number(welcome.keepalive_ms) > 0 ? Number(welcome.keepalive_ms) : 15000;
    stream.silence = 2 * keepalive + this.options.heartbeatTimeout;  // no keep-alive: dead
    this._attempt = 0;
    this._sseFailures = 0;
    for (const topic of stream.topics) {
      const sub = this._topics.get(topic);
      if (!sub || sub.streamed) continue;
      sub.streamed = true;
      const info = { topic, seq: null, epoch: null, recovered: stream.resumed };
      // A topic confirmed before, on another transport or another stream, may have missed events.
      if (!stream.resumed && sub.info !== null) info.reset = "transport_changed";
      sub.info = info;
      this._settleWaiters(sub, info, null);
      this._emitLocal("subscribed", info);
      if (info.reset) this._emitLocal("reset", { topic, reason: info.reset, seq: null, epoch: null });
    }
    const state = stream.poll ? "polling" : "fallback-sse";
    const recovered = this.state !== state;  // after a failure: perhaps the server was down
    this._setState(state, { sid: welcome.sid ?? null });
    // The server answers again: if WebSocket failed only because it was down (a restart), it
    // works now too, so try it at once rather than after probeInterval.
    if (recovered && this._wanted && !this._socket && !this._offline &&
        this.options.probeInterval > 0) this._connect(true);
  }

  // -- network -------------------------------------------------------------------------------

  // The window's online/offline events, while the client wants a connection.
  _watchNetwork(on) {
    const target = globalThis;
    if (!this.options.network || typeof target.addEventListener !== "function") return;
    if (on && !this._network) {
      this._network = { online: () => this._online(), offline: () => this._goOffline() };
      for (const [name, fn] of Object.entries(this._network)) target.addEventListener(name, fn);
    } else if (!on && this._network) {
      for (const [name, fn] of Object.entries(this._network)) target.removeEventListener(name, fn);
      this._network = null;
    }
  }

  // Offline: no attempt, poll or probe until "online"; a connection that is open stays open
  // (the heartbeat or the stream's silence finds out if it is dead).
  _goOffline() {
    this._offline = true;
    clearTimeout(this._retryTimer);
    clearTimeout(this._streamTimer);
    clearTimeout(this._probeTimer);
    this._retryTimer = this._streamTimer = this._probeTimer = null;
  }

  // Online: what was waiting goes now.
  _online() {
    this._offline = false;
    if (!this._wanted || this.state === "connected") return;
    if (this._mode === "ws") {
      if (!this._socket) {
        clearTimeout(this._retryTimer);
        this._retryTimer = null;
        this._connect();
      }
      return;
    }
    if (!this._socket) this._connect(true);
    if (!this._stream) {
      clearTimeout(this._streamTimer);
      this._streamTimer = null;
      this._openStream();
    }
  }

  // -- inbound -------------------------------------------------------------------------------

  _onFrame(text) {
    this._lastInbound = now();
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this._emitLocal("error", new SkyRelayError("bad_json", "the server sent invalid JSON"));
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    switch (msg.type) {
      case "welcome": return this._onWelcome(msg);
      case "event": return this._onEvent(msg);
      case "subscribed": return this._onSubscribed(msg);
      case "response": return this._onResponse(msg);
      case "error": return this._onError(msg);
      default: return;  // pong, unsubscribed, and types added later: life, nothing more
    }
  }

  _onWelcome(msg) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._welcomed = true;
    this._probing = false;  // a probe that got here is the connection now
    this._wsFailures = 0;
    if (this._mode !== "ws") this._leaveFallback();
    this.sid = msg.sid ?? null;
    this._attempt = 0;
    this._startHeartbeat();
    // Subscriptions first, then the queue in order; only then "connected", so that nothing a
    // listener sends from its handler can overtake what was queued before.
    this._resubscribe();
    const queue = this._queue;
    this._queue = [];
    for (const item of queue) this._send(item);
    this._setState("connected", { sid: this.sid, heartbeatMs: msg.heartbeat_ms });
  }

  _onEvent(msg) {
    const { event, topic, seq } = msg;
    const sub = topic === undefined ? undefined : this._topics.get(topic);
    if (sub && typeof seq === "number") {
      if (sub.inFlight) {  // our (re)subscribe is unanswered: the reply decides what counts
        sub.held.push(msg);
        return;
      }
      if (sub.seq !== null) {
        if (seq <= sub.seq) return;  // seen already
        if (seq > sub.seq + 1)
          this._emitLocal("gap", { topic, expected: sub.seq + 1, received: seq });
      }
      sub.seq = seq;
    }
    this._deliver(msg, sub);
  }

  _deliver(msg, sub) {
    const meta = { event: msg.event, topic: msg.topic, seq: msg.seq, ts: msg.ts };
    const data = msg.data === undefined ? null : msg.data;
    if (sub) for (const fn of [...sub.handlers]) this._call(fn, data, meta);
    if (!reserved.has(msg.event)) this._emitLocal(msg.event, data, meta);
    for (const fn of [...this._anyListeners]) this._call(fn, msg.event, data, meta);
  }

  _onSubscribed(msg) {
    const positions = msg.topic !== undefined
      ? { [msg.topic]: { seq: msg.seq, epoch: msg.epoch } }
      : msg.positions ?? Object.fromEntries((msg.topics ?? []).map((t) => [t, {}]));
    for (const [topic, pos] of Object.entries(positions)) {
      const sub = this._topics.get(topic);
      if (!sub || !sub.inFlight) continue;  // unsubscribed meanwhile, or not ours
      const seq = typeof pos.seq === "number" ? pos.seq : null;
      const resumed = sub.since !== null && msg.topic !== undefined;
      const info = { topic, seq, epoch: pos.epoch ?? null, recovered: false };
      const held = sub.held;
      sub.inFlight = false;
      sub.held = [];
      sub.epoch = info.epoch;
      if (resumed && msg.recovered === true) {
        // The missed events follow this reply, each once; any that came before it are
        // among them, so they wait for their turn in the replay.
        info.recovered = true;
        sub.seq = sub.since;
      } else {
        if (resumed) info.reset = typeof msg.reset === "string" ? msg.reset : "not_recovered";
        // Events that reached us before the reply are older than its seq: deliver them as
        // live ones (a fresh subscribe), then count from the reply's seq.
        if (!resumed) for (const ev of held) this._deliver(ev, sub);
        sub.seq = seq;
      }
      sub.since = null;
      sub.info = info;
      this._settleWaiters(sub, info, null);
      this._emitLocal("subscribed", info);
      if (info.reset) this._emitLocal("reset", { topic, reason: info.reset, seq, epoch: info.epoch });
    }
  }

  _onResponse(msg) {
    const id = String(msg.id);
    if (msg.ok) this._settle(id, msg.data === undefined ? null : msg.data, null);
    else {
      const e = msg.error ?? {};
      this._settle(id, null, new SkyRelayError(e.code ?? "error", e.message));
    }
  }

  _onError(msg) {
    const err = new SkyRelayError(msg.code ?? "error", msg.message);
    const ref = msg.ref == null ? null : String(msg.ref);
    if (ref !== null && this._requests.has(ref)) return this._settle(ref, null, err);
    const refused = ref === null ? [] : [...this._topics].filter(([, sub]) => sub.id === ref);
    if (refused.length > 1 && err.code === "forbidden") {
      // A batched subscribe (made on connect) fails whole when one topic needs a role the
      // token lacks: ask again one topic at a time, so only the forbidden ones fail.
      for (const [topic, sub] of refused) this._sendSubscribe([topic], sub.since ?? null);
      return;
    }
    for (const [topic, sub] of refused) {
      this._topics.delete(topic);  // the server refused it: no point retrying on reconnect
      this._settleWaiters(sub, null, err);
    }
    this._emitLocal("error", err);
  }

  // -- heartbeat -----------------------------------------------------------------------------

  _startHeartbeat() {
    this._lastInbound = now();
    this._pingSentAt = null;
    if (this.options.heartbeatInterval > 0) this._armHeartbeat(this.options.heartbeatInterval);
  }

  _armHeartbeat(ms) {
    clearTimeout(this._heartbeatTimer);
    this._heartbeatTimer = setTimeout(() => this._heartbeat(), Math.max(1, ms));
  }

  // One timer: a frame from the server moves _lastInbound and costs nothing else. A ping goes
  // out after heartbeatInterval without a frame; no frame within heartbeatTimeout of it (the
  // pong or anything else) means the connection is dead.
  _heartbeat() {
    const { heartbeatInterval: interval, heartbeatTimeout: timeout } = this.options;
    const t = now();
    if (this._pingSentAt !== null) {
      if (this._lastInbound < this._pingSentAt) {
        if (t - this._pingSentAt >= timeout) return this._abandon(this._socket, "heartbeat timeout");
        return this._armHeartbeat(this._pingSentAt + timeout - t);
      }
      this._pingSentAt = null;
    }
    const idle = t - this._lastInbound;
    if (idle < interval) return this._armHeartbeat(interval - idle);
    this._pingSentAt = t;
    this._send({ text: '{"type":"ping"}' });
    // Wake again by the deadline, or sooner to keep the pace of one ping per idle interval.
    this._armHeartbeat(Math.min(interval, timeout));
  }

  // -- subscriptions -------------------------------------------------------------------------

  _topic(topic) {
    let sub = this._topics.get(topic);
    if (!sub) {
      // seq/epoch: the position of the last event seen (what a resume starts from); since: the
      // seq a resume in flight asked from; held: events that arrived before the reply.
      // streamed: confirmed by the fallback stream now carrying it.
      sub = { handlers: new Set(), seq: null, epoch: null, since: null, inFlight: false,
              held: [], id: null, info: null, waiters: [], streamed: false };
      this._topics.set(topic, sub);
    }
    return sub;
  }

  /** Subscribes to `topic`; `handler(data, meta)` gets its events. Resolves with
   * {topic, seq, epoch, recovered, reset?} once the server confirms. */
  subscribe(topic, handler) {
    if (typeof topic !== "string" || topic === "")
      throw new TypeError("skyrelay: a topic is a non-empty string");
    const known = this._topics.has(topic);
    const sub = this._topic(topic);
    if (handler) sub.handlers.add(handler);
    if (known && sub.info && !sub.inFlight) return Promise.resolve(sub.info);
    const promise = quiet(new Promise((resolve, reject) => sub.waiters.push({ resolve, reject })));
    if (!known && this.state === "connected") this._sendSubscribe([topic]);
    else if (!known && this._mode !== "ws" && this._wanted) this._reopenStream();
    return promise;
  }

  /** Stops the subscription (every handler of the topic) and forgets its position. */
  unsubscribe(topic) {
    const sub = this._topics.get(topic);
    if (!sub) return;
    this._topics.delete(topic);
    this._settleWaiters(sub, null, new SkyRelayError("unsubscribed", `unsubscribed from ${topic}`));
    if (this.state === "connected") this._send({ text: JSON.stringify({ type: "unsubscribe", topic }) });
    else if (this._mode !== "ws" && this._wanted) this._reopenStream();
  }

  /** The position of the last event seen on a subscribed topic: {seq, epoch}, or undefined. */
  position(topic) {
    const sub = this._topics.get(topic);
    return sub && sub.seq !== null ? { seq: sub.seq, epoch: sub.epoch } : undefined;
  }

  /** The subscribed topics. */
  get topics() {
    return [...this._topics.keys()];
  }

  _resubscribe() {
    const fresh = [];
    for (const [topic, sub] of this._topics) {
      if (sub.seq !== null && sub.epoch) this._sendSubscribe([topic], sub.seq);
      else fresh.push(topic);
    }
    for (let i = 0; i < fresh.length; i += TOPICS_PER_MESSAGE)
      this._sendSubscribe(fresh.slice(i, i + TOPICS_PER_MESSAGE));
  }

  _sendSubscribe(topics, since = null) {
    const id = `s${++this._nextId}`;
    const msg = topics.length === 1 ? { type: "subscribe", topic: topics[0], id }
      : { type: "subscribe", topics, id };
    for (const topic of topics) {
      const sub = this._topics.get(topic);
      Object.assign(sub, { inFlight: true, held: [], id, since });
      if (since !== null) Object.assign(msg, { since, epoch: sub.epoch });
    }
    this._send({ text: JSON.stringify(msg) });
  }

  _settleWaiters(sub, info, err) {
    const waiters = sub.waiters;
    sub.waiters = [];
    for (const w of waiters) (err ? w.reject(err) : w.resolve(info));
  }

  // -- outbound ------------------------------------------------------------------------------

  /** Sends an event to the application's handler; queued while not connected. */
  emit(event, data) {
    const text = JSON.stringify({ type: "event", event, data });
    this._sendOrQueue({ text, type: "event", event, data });
  }

  /** Sends a request; resolves with the handler's answer, rejects with a SkyRelayError whose
   * `code` is the server's, or `timeout`, `disconnected`, `closed`, `queue_full`. */
  request(event, data, { timeout = this.options.requestTimeout } = {}) {
    const id = `r${++this._nextId}`;
    const text = JSON.stringify({ type: "request", id, event, data });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._queue = this._queue.filter((item) => item.id !== id);
        this._settle(id, null, new SkyRelayError(
          "timeout", `no response to "${event}" within ${timeout} ms`));
      }, timeout);
      this._requests.set(id, { resolve, reject, timer, sent: false });
      this._sendOrQueue({ text, type: "request", event, data, id });
    });
  }

  /** How many messages wait for a connection. */
  get queued() {
    return this._queue.length;
  }

  _sendOrQueue(item) {
    if (this.state === "connected") return this._send(item);
    this._queue.push(item);
    // Bounded: the oldest go first, each reported, and a dropped request fails.
    const max = Math.max(0, this.options.maxQueue);
    while (this._queue.length > max) {
      const dropped = this._queue.shift();
      if (dropped.id) this._settle(dropped.id, null, new SkyRelayError(
        "queue_full", `the offline queue is full (maxQueue ${max})`));
      this._emitLocal("dropped", { type: dropped.type, event: dropped.event, data: dropped.data,
                                   reason: "queue_full" });
    }
  }

  _send(item) {
    if (item.id) {
      const entry = this._requests.get(item.id);
      if (!entry) return;  // timed out while queued
      entry.sent = true;
    }
    this._socket.send(item.text);
  }

  _settle(id, value, err) {
    const entry = this._requests.get(id);
    if (!entry) return;
    this._requests.delete(id);
    clearTimeout(entry.timer);
    if (err) entry.reject(err);
    else entry.resolve(value);
  }

  // -- listeners -----------------------------------------------------------------------------

  /** Listens to a client event (see CLIENT_EVENTS) or to a server event by name; returns a
   * function that removes the listener. */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  /** Like on(), for one call; off(name, fn) with the same fn removes it too. */
  once(name, fn) {
    const wrapper = (...args) => {
      this.off(name, wrapper);
      fn(...args);
    };
    wrapper.listener = fn;  // what off() recognizes it by
    return this.on(name, wrapper);
  }

  /** Removes a listener added with on() or once() (one of them, if added several times). */
  off(name, fn) {
    const set = this._listeners.get(name);
    if (!set || set.delete(fn)) return;
    for (const f of set) if (f.listener === fn) return void set.delete(f);
  }

  /** Listens to every server event: fn(event, data, meta). */
  onAny(fn) {
    this._anyListeners.add(fn);
    return () => this._anyListeners.delete(fn);
  }

  _emitLocal(name, ...args) {
    const set = this._listeners.get(name);
    if (set) for (const fn of [...set]) this._call(fn, ...args);
  }

  // A listener that throws must not leave the client half-way through a state change: its
  // error is rethrown on its own, where it surfaces as any uncaught error does.
  _call(fn, ...args) {
    try {
      fn(...args);
    } catch (err) {
      queueMicrotask(() => { throw err; });
    }
  }
}

/** Creates a client (connecting at once unless options.autoConnect is false). */
export function connect(url, options) {
  return new SkyRelay(url, options);
}

export default SkyRelay;
