// Types of skyrelay.js, the client of skyrelay's JSON protocol (docs/client.md).

/** Connection states: `fallback-sse` and `polling` carry the events when WebSocket cannot
 * connect (docs/client.md, "Fallback"). */
export type State =
  | "disconnected" | "connecting" | "connected" | "reconnecting" | "fallback-sse" | "polling";

export declare const STATES: readonly ["disconnected", "connecting", "connected", "reconnecting",
                                       "fallback-sse", "polling"];

/** Names that `on()` takes as the client's own events (server events with these names reach
 * `onAny()` listeners only). */
export declare const CLIENT_EVENTS: readonly (keyof ClientEventMap)[];

/** Why a resumed subscription could not replay what was missed. `history_gap`,
 * `epoch_changed`, `ahead` and (on a fallback stream) `bad_id` come from the server;
 * `not_recovered` is the client's name for a reply that did not say (an older server);
 * `transport_changed`: the client switched between WebSocket and its fallback, or reopened
 * its fallback stream with other topics, and positions do not carry over. */
export type ResetReason =
  | "history_gap" | "epoch_changed" | "ahead" | "bad_id" | "not_recovered" | "transport_changed";

/** Codes of SkyRelayError: the server's, an application's own, or the client's. */
export type ErrorCode =
  | "handler_error" | "unknown_event" | "overloaded" | "bad_message" | "bad_json" | "unknown_type"
  | "timeout" | "disconnected" | "closed" | "queue_full" | "unsubscribed"
  | "token_failed" | "connect_failed" | "token_expired"
  | (string & {});

export declare class SkyRelayError extends Error {
  constructor(code: ErrorCode, message?: string, details?: unknown);
  readonly name: "SkyRelayError";
  readonly code: ErrorCode;
  readonly details?: unknown;
}

/** The part of the WebSocket API the client uses: browsers' own, or Node's `ws` package. */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** Node's ws: drops the connection at once (used when a peer stopped answering). */
  terminate?(): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Reconnect delays in ms: attempt n (from 0) waits min(max, base * factor ** n), less up to
 * `jitter` (a fraction) of it at random. */
export interface BackoffOptions {
  /** Default 1000. */
  base?: number;
  /** Default 30000. */
  max?: number;
  /** Default 2. */
  factor?: number;
  /** 0 to 1; default 0.5 (a delay lands between half and all of its nominal value). */
  jitter?: number;
}

export interface SkyRelayOptions {
  /** The WebSocket class; default globalThis.WebSocket (Node 20 has none: pass ws's). */
  WebSocket?: WebSocketConstructor;
  /** Sent as the `token` query parameter; a function is asked again before each attempt. */
  token?: string | null | (() => string | null | undefined | Promise<string | null | undefined>);
  backoff?: BackoffOptions;
  /** Default timeout of request(), in ms, counted from the call; default 10000. */
  requestTimeout?: number;
  /** How long an attempt may take until the server's welcome, in ms; default 10000. */
  connectTimeout?: number;
  /** A ping goes out after this many ms without a frame from the server; default 25000; 0 turns
   * the heartbeat off. */
  heartbeatInterval?: number;
  /** No frame within this many ms of a ping: the connection is dead; default 10000. */
  heartbeatTimeout?: number;
  /** Messages kept while not connected; beyond it the oldest are dropped; default 1000. */
  maxQueue?: number;
  /** Connect right after construction (in a microtask); default true. */
  autoConnect?: boolean;
  /** Failed attempts in a row (any transport) after which the client gives up: state
   * `disconnected`, then a `failed` event; default null (never). 0: no retry at all. */
  reconnectAttempts?: number | null;
  /** Fall back to SSE, then polling, when WebSocket cannot connect; default true in a page
   * (where `document` exists), false elsewhere. Needs fetch(). */
  fallback?: boolean;
  /** Attempts in a row without a welcome before the next transport (WebSocket -> SSE ->
   * polling); default 3. */
  fallbackAfter?: number;
  /** The SSE endpoint; default `/sse` on the WebSocket URL's host. */
  sseUrl?: string;
  /** ms between polls; default 30000. */
  pollInterval?: number;
  /** A poll reads until the stream has been quiet this many ms; default 1000. */
  pollWindow?: number;
  /** ms between WebSocket attempts while on a fallback; default 30000; 0: never (stay). */
  probeInterval?: number;
  /** Listen to the window's `online` (retry at once) and `offline` (pause) events; default true. */
  network?: boolean;
  /** The fetch() the fallback uses; default globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
}

/** What comes with each server event besides its data. */
export interface EventMeta {
  event: string;
  /** The room, when the publication went to exactly one. */
  topic?: string;
  /** The room's sequence number, with `topic`. */
  seq?: number;
  /** Publication time, ISO-8601 UTC. */
  ts?: string;
}

/** A subscription as the server confirmed it. */
export interface Subscription {
  topic: string;
  /** The topic's last seq when the server answered (null from a server that does not say). */
  seq: number | null;
  epoch: string | null;
  /** True when a resume replays what was missed; those events follow. */
  recovered: boolean;
  /** Set when a resume could not replay: the app should reload the topic's state. */
  reset?: ResetReason;
}

export interface ConnectedInfo {
  sid: string | null;
  heartbeatMs?: number;
}

export interface CloseInfo {
  /** The WebSocket close code; 1006 when the client gave up (timeouts) or never got a socket. */
  code: number;
  /** The close reason, or the client's: "heartbeat timeout", "connect timeout"... */
  reason: string;
}

export interface FailedInfo {
  /** Failed attempts in a row when the client gave up. */
  attempts: number;
  /** The last failure's close code (1006 for a failed stream) and reason. */
  code: number;
  reason: string;
}

export interface FallbackInfo {
  /** The stream's id from its welcome. */
  sid: string | null;
}

export interface RetryInfo {
  /** 1 for the first retry since the last connection. */
  attempt: number;
  /** ms until the attempt. */
  delay: number;
}

export interface ResetInfo {
  topic: string;
  reason: ResetReason;
  /** The topic's seq now: live events go on from here. */
  seq: number | null;
  epoch: string | null;
}

export interface GapInfo {
  topic: string;
  /** The seq that should have come next. */
  expected: number;
  /** The seq that came. */
  received: number;
}

export interface DroppedInfo {
  type: "event" | "request";
  event: string;
  data: unknown;
  reason: "queue_full";
}

/** The client's own events and their listener arguments. */
export interface ClientEventMap {
  state: [state: State, previous: State, info: Partial<CloseInfo & ConnectedInfo>];
  connecting: [info: Record<string, never>];
  connected: [info: ConnectedInfo];
  reconnecting: [info: CloseInfo];
  disconnected: [info: CloseInfo];
  "fallback-sse": [info: FallbackInfo];
  polling: [info: FallbackInfo];
  retry: [info: RetryInfo];
  failed: [info: FailedInfo];
  subscribed: [info: Subscription];
  reset: [info: ResetInfo];
  gap: [info: GapInfo];
  dropped: [info: DroppedInfo];
  error: [error: SkyRelayError];
}

export type EventHandler<T = any> = (data: T, meta: EventMeta) => void;

/** A listener for `name`: the client event's arguments, or a server event's (data, meta). */
export type Listener<N extends string, T = any> =
  N extends keyof ClientEventMap ? (...args: ClientEventMap[N]) => void : EventHandler<T>;

export declare class SkyRelay {
  /**
   * @param url ws://, wss://, http(s):// (turned into ws(s)://) or, in a page, a path such as
   *   "/ws" (the default).
   */
  constructor(url?: string, options?: SkyRelayOptions);

  /** The normalized ws:// or wss:// URL. */
  readonly url: string;
  /** The normalized http:// or https:// URL of the SSE endpoint the fallback reads. */
  readonly sseUrl: string;
  readonly options: Readonly<Required<Omit<SkyRelayOptions, "token" | "WebSocket" | "sseUrl" | "fetch">>> &
    Pick<SkyRelayOptions, "token" | "WebSocket" | "sseUrl" | "fetch">;
  readonly state: State;
  /** The connection's id from the server's welcome; null while not connected. */
  readonly sid: string | null;
  /** Messages waiting for a connection. */
  readonly queued: number;
  /** The subscribed topics. */
  readonly topics: string[];

  /** Connects; while waiting to retry, retries now. No-op when connected or connecting. */
  open(): this;
  /** Starts over with WebSocket now, from any state but `connected` (after `failed` too); the
   * failure counts start again. */
  reconnect(): this;
  /** Closes and stops reconnecting. Pending and queued requests reject with `closed`; the
   * queue is emptied; subscriptions and positions stay for a later open(). */
  close(code?: number, reason?: string): this;

  /** Subscribes (or adds a handler to a subscription); resolves once the server confirms. */
  subscribe<T = any>(topic: string, handler?: EventHandler<T>): Promise<Subscription>;
  /** Ends the subscription: all its handlers, its position. */
  unsubscribe(topic: string): void;
  /** The last event seen of a subscribed topic. */
  position(topic: string): { seq: number; epoch: string | null } | undefined;

  /** Sends an event to the application's handler (queued while not connected). */
  emit(event: string, data?: unknown): void;
  /** Sends a request; resolves with the handler's answer. Rejects with a SkyRelayError. */
  request<T = any>(event: string, data?: unknown, options?: { timeout?: number }): Promise<T>;

  /** Listens to a client event (a name in ClientEventMap) or to a server event by name (`T`:
   * its data); returns a function that removes the listener. */
  on<T = any, N extends string = string>(name: N, fn: Listener<N, T>): () => void;
  /** Like on(), for one call; `off(name, fn)` with the same `fn` removes it too. */
  once<T = any, N extends string = string>(name: N, fn: Listener<N, T>): () => void;
  off(name: string, fn: (...args: any[]) => void): void;
  /** Listens to every server event, reserved names included. */
  onAny(fn: (event: string, data: any, meta: EventMeta) => void): () => void;
}

/** `new SkyRelay(url, options)`: connects at once unless `autoConnect` is false. */
export declare function connect(url?: string, options?: SkyRelayOptions): SkyRelay;

export default SkyRelay;
