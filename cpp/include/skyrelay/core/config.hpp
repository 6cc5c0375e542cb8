// Server configuration with the documented defaults (docs/architecture.md, design section 5).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "skyrelay/core/rate_spec.hpp"

namespace skyrelay {

namespace auth {
struct auth_config;    // skyrelay/auth/connection_auth.hpp
class access_policy;   // skyrelay/auth/access_policy.hpp
class client_topic_policy;  // skyrelay/auth/access_policy.hpp
}
class proxy_set;  // skyrelay/net/client_address.hpp

// An endpoint the application declares (docs/api.md "Endpoints and envelopes"): a WebSocket or
// an SSE stream at a path template whose `{name}` segments are path parameters. Matched before
// the built-in routes; checked and compiled when the server is made (net/endpoint_table.hpp).
struct endpoint_config {
  std::string path;   // "/api/ws/{telescope_id}": literal segments and whole-segment {params}
  bool sse{false};    // else a WebSocket
  // Topics the connection joins as it opens, each a template over the parameters
  // ("{telescope_id}", "well:{well_id}"); checked like /ws/<topic> (client_topics, roles).
  std::vector<std::string> topics;
  // A WebSocket's envelope (proto/envelope.hpp, its JSON spec); empty: the skyrelay protocol.
  std::string envelope;
  // SSE: the first event (name and a data template over $param.<name>, $topic, $ts, $sid),
  // in place of the `welcome` event; empty name: the welcome event.
  std::string welcome_event;
  std::string welcome_data;
  // SSE: an event (name and data template, $ts) this often in place of the keep-alive
  // comment; 0: the comment every sse_keepalive.
  std::string heartbeat_event;
  std::string heartbeat_data;
  std::chrono::milliseconds heartbeat_interval{0};
  // A WebSocket: accept permessage-deflate when the client offers it (as compress_json_ws
  // does for /ws; docs/protocol.md "Compression").
  bool compress{false};
};

struct server_config {
  std::string host{"127.0.0.1"};
  std::uint16_t port{8000};      // 0 picks a free port; server::port() reports it
  unsigned io_threads{0};        // 0: one per core
  std::string static_dir;        // empty: no static files
  std::string client_dir;        // holds skyrelay.js (served at /skyrelay.js); empty: none
  // TLS on the one port (https and wss): PEM files, the certificate file may hold the chain
  // after the server's own certificate. Both empty: plain TCP. Loaded once, at construction.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Where publications travel (hub/broker.hpp): empty or "memory" is the in-memory broker of
  // one process. Any other value is refused at construction ("unknown broker URL scheme").
  std::string broker;
  // On a Redis broker: the channels of python-socketio's / Flask-SocketIO's Redis managers
  // whose messages this node accepts (broker/redis_sio_bridge.hpp). Empty: none.
  std::vector<std::string> redis_manager_channels{"socketio", "flask-socketio"};
  // With a Redis broker: each node's report of its connections and rooms lives this long
  // (a killed node's members leave room sizes within it; reports every ttl/5), and at most
  // this many of its rooms (its largest) are reported (docs/architecture.md "Cluster state").
  std::chrono::milliseconds cluster_state_ttl{5'000};
  std::size_t cluster_rooms_max{10'000};
  // The publish API's budget per publisher (token bucket over events; rate 0: no limit),
  // shared by every node through Redis with a Redis broker. Over it: 429 rate_limited.
  rate_spec publish_rate{0.0, 0.0};
  // SO_REUSEPORT on the listening socket: several processes (`skyrelay run --workers N`) bind
  // the same port and the kernel spreads new TCP connections over them. Off by default: a
  // second process on the port should fail to bind, not silently share it.
  bool reuse_port{false};
  // One worker of `skyrelay run --workers N` (net/worker_handoff.hpp; docs/deployment.md):
  // its index (< 0: not a worker), the handoff socket of every worker by index (AF_UNIX
  // datagram sockets set up by the parent: a connection sent on fd i reaches worker i) and its
  // own inbox (the other end of its socket). Engine.IO sids then carry the index, and a
  // request for another worker's session is handed to it with its socket (SCM_RIGHTS).
  // The descriptors belong to the process; the server neither closes nor duplicates them away.
  int worker_index{-1};
  std::vector<int> worker_handoff_fds;
  int worker_inbox_fd{-1};

  std::size_t max_message_size{64 * 1024};  // inbound WebSocket message; larger closes with 1009
  std::size_t max_header_size{16 * 1024};   // HTTP request header bytes
  std::size_t max_body_size{1000 * 1000};   // HTTP request body bytes
  std::chrono::milliseconds handshake_timeout{10'000};
  // Inbound silence: a keep-alive HTTP connection with no new request for this long is closed;
  // a WebSocket (JSON protocol or Engine.IO transport) from which nothing at all arrives, not
  // even a pong, is closed with 4004. SSE streams are exempt (their clients never send).
  // It caps what the heartbeat allows (heartbeat_interval + heartbeat_timeout). 0: none.
  std::chrono::milliseconds idle_timeout{120'000};
  std::chrono::milliseconds heartbeat_interval{30'000};  // server ping when the peer is quiet
  std::chrono::milliseconds heartbeat_timeout{20'000};   // extra silence before the peer is dead
  std::chrono::milliseconds drain_timeout{2'000};        // graceful stop: wait for close handshakes

  // TCP connections at once (any endpoint), in total and from one IP address; over either,
  // a new connection gets a 503 answer and is closed. An Engine.IO polling session counts as
  // one more from its handshake to its end (over either, the handshake gets 503). 0: no limit.
  std::size_t max_connections{100'000};
  std::size_t max_connections_per_ip{1'000};
  // New connections per second from one IP address (a token bucket); over it, 503. rate 0: off.
  rate_spec new_connections_per_ip{50.0, 100.0};
  // New Engine.IO sessions per second from one IP address (a token bucket), counted at the
  // polling handshake; over it, 429. Each session holds memory for up to sio_connect_timeout
  // before any CONNECT, so this is tighter than new_connections_per_ip: a page load opens one
  // session and socket.io-client reconnects after >= 1 s, so 20 at once and 10/s are more
  // than honest clients behind one address need. rate 0: off. (A session opened over
  // WebSocket is its TCP connection, already counted by new_connections_per_ip.)
  rate_spec new_sessions_per_ip{10.0, 20.0};
  // Per-IP limits skip loopback addresses unless this is set: behind a reverse proxy on the same
  // host every client arrives from 127.0.0.1 (limit per client at the proxy then).
  bool limit_loopback{false};
  // Inbound messages per connection (subscribe, unsubscribe, events and requests; not pings):
  // a token bucket. Over it a message is refused with rate_limited. rate 0: no limit.
  rate_spec inbound_limit{10.0, 20.0};
  std::unordered_map<std::string, rate_spec> event_limits;  // an event's own bucket
  // Rooms one connection may be in; a JSON-protocol subscribe beyond it gets too_many_rooms.
  std::size_t max_rooms_per_connection{1'000};

  // A WebSocket or SSE write the peer leaves pending this long (it stopped reading and the
  // socket buffers are full) ends the connection as a slow consumer, whatever the outbox
  // policy: drop_oldest keeps the outbox bounded, but a peer that reads nothing is gone. 0: none.
  std::chrono::milliseconds write_timeout{30'000};
  std::size_t outbox_max_bytes{1024 * 1024};
  std::size_t outbox_max_frames{1024};
  std::size_t dispatch_queue_max{65'536};  // inbound events waiting for the Python dispatcher

  // Socket.IO v5 over Engine.IO v4 (defaults as in the reference implementation).
  std::string socketio_path{"/socket.io/"};
  std::chrono::milliseconds eio_ping_interval{25'000};
  std::chrono::milliseconds eio_ping_timeout{20'000};
  std::chrono::milliseconds sio_connect_timeout{45'000};  // Engine.IO open to Socket.IO CONNECT
  std::vector<std::string> sio_namespaces{"/"};           // "*" accepts any namespace
  // Origins other than the server's own that may open a JSON-protocol WebSocket, an SSE stream
  // or an Engine.IO session (polling or WebSocket), exact matches ("*": any). Empty: same
  // origin only. Requests without an Origin header (non-browser clients) are always allowed.
  // SSE and Engine.IO polling answers carry the CORS headers; other endpoints carry none.
  std::vector<std::string> cors_allowed_origins;
  // For listed origins: echo the exact origin and allow credentials. Never with "*".
  bool cors_credentials{true};
  std::string eio_cookie;       // name of the sticky-session cookie ("io"); empty: none
  // False: a polling session is offered no upgrade ("upgrades":[] in its open packet) and a
  // WebSocket probe for one is refused (400 "Bad request"), as python-engineio's
  // allow_upgrades=False; a session opened over WebSocket is unaffected.
  bool eio_allow_upgrades{true};
  // Test-only: a raw Engine.IO endpoint that echoes every message (the official Engine.IO
  // conformance suite needs one). Empty: none.
  std::string engineio_echo_path;
  // Binary attachments of one Socket.IO packet (the `x` of "45x-"), buffered until the last
  // arrives: at most this many (the protocol sets no bound; ours decodes up to 64), and at most
  // this many bytes in all. Over either the session is closed (WebSocket: 1009). 16 covers any
  // argument list an app sends; 1 MiB is what one polling POST can carry (max_body_size).
  std::size_t max_attachments{16};
  std::size_t max_attachment_bytes{1024 * 1024};
  // Socket.IO connection state recovery: how long a socket whose transport dropped is kept
  // (in its rooms) for the client to come back with its pid and offset; what it missed is
  // replayed from history, so the window may not exceed history_max_age. 0: off.
  std::chrono::milliseconds sio_recovery_window{0};

  // The HTTP publish API (POST /api/publish) takes "Authorization: Bearer <publish_token>".
  // Empty: the API is off (403).
  std::string publish_token;

  // JWT authentication (docs/api.md "Authentication"): when set, every handshake (JSON-protocol
  // WebSocket, SSE, Socket.IO CONNECT) verifies its token before any application hook runs,
  // and the publish API also takes publish tokens. Null: no token checks.
  std::shared_ptr<const auth::auth_config> jwt;
  // Role requirements per namespace, room pattern and event (docs/api.md "Authorization"),
  // checked before any application hook runs; refusals are "forbidden". Null: none.
  std::shared_ptr<const auth::access_policy> access;
  // When set, the application's connect hook may give a connection its roles (server::accept
  // with roles, in place of the token's), and the namespace and handshake-room requirements
  // are checked after the hook instead of before it.
  bool roles_from_connect{false};
  // Which topics of "/" clients may subscribe to by name (a JSON-protocol subscribe,
  // /ws/<topic>, SSE topics); a refusal is "forbidden". Null: none (the server addresses
  // connections itself: broadcasts, direct emits, rooms it joins them to).
  std::shared_ptr<const auth::client_topic_policy> client_topics;

  // The endpoints of each transport; one turned off answers as an unknown path (404) and
  // never creates a connection: /ws and /ws/<topic>, /sse and /sse/<topic>, socketio_path.
  bool json_protocol{true};
  bool sse{true};
  bool socketio{true};

  // The built-in routes' paths; empty turns one off (an unknown path). /ws and /sse also
  // serve <path>/<topic>; the browser client's type declarations sit beside client_js_path
  // (".d.ts" for ".js").
  std::string json_ws_path{"/ws"};
  std::string sse_path{"/sse"};
  std::string health_path{"/health"};
  std::string metrics_path{"/metrics"};
  std::string publish_path{"/api/publish"};
  std::string client_js_path{"/skyrelay.js"};
  // The application's endpoints, matched in order before every built-in route.
  std::vector<endpoint_config> endpoints;
  // permessage-deflate (RFC 7692; proto/permessage_deflate.hpp) on a transport's WebSocket,
  // accepted when the client offers it: the JSON protocol's /ws, Socket.IO's WebSocket
  // transport. Off by default: compression costs CPU that small or already-compressed
  // payloads do not pay back. A handshake decides with one flag (ws_session::enable_deflate),
  // so any endpoint can carry its own.
  bool compress_json_ws{false};
  bool compress_socketio{false};
  // Messages under this many bytes go uncompressed even on a compressed connection (RFC 7692
  // allows it per message): below ~128 bytes DEFLATE saves little and costs a call into zlib.
  std::size_t compression_threshold{128};

  // Server-Sent Events: a keep-alive comment this often, and the reconnection delay the
  // browser is told to use (the `retry:` field).
  std::chrono::milliseconds sse_keepalive{15'000};
  std::chrono::milliseconds sse_retry{3'000};

  // History per room (and per namespace for broadcasts), for replay on reconnect.
  std::size_t history_max_events{1000};            // 0: no history
  std::chrono::milliseconds history_max_age{120'000};

  // Reverse proxies whose header (X-Forwarded-For, or Forwarded: the set says which) names the
  // client (net/client_address.hpp; docs/deployment.md). From them, the client's address is
  // what per-IP limits count, conn.remote shows and the WSGI app sees; a proxy's connection
  // counts against max_connections only. Null: none, every peer is its own client.
  std::shared_ptr<const proxy_set> trusted_proxies;

  // The version skyrelay_build_info shows on /metrics: the Python package's (skyrelay.__version__,
  // set by Server); empty shows "unknown".
  std::string version;

  // Probes (net/health.hpp, docs/deployment.md "Probes"): the liveness and readiness routes
  // (empty turns one off), how long an I/O thread may miss its heartbeat before liveness fails,
  // and how long jobs may wait on the dispatcher with none taken before readiness fails (a
  // sync handler blocked that long is wedged: 10 s is far above any sane handler's run time).
  std::string liveness_path{"/health/live"};
  std::string readiness_path{"/health/ready"};
  std::chrono::milliseconds io_stall_timeout{10'000};
  std::chrono::milliseconds dispatcher_stall_timeout{10'000};
  // Log records of the C++ core waiting for Python's logging (core/log_queue.hpp): a burst of
  // 10,000 connection events is a few MB at most; past it records are dropped and counted.
  std::size_t log_queue_max{10'000};
  // The io_uring write path (net/uring_writer.hpp): "auto" uses it where the build has liburing
  // and the kernel allows io_uring (else epoll, silently); "off" never tries it. The Python
  // Server passes it always and defaults to "auto" (docs/api.md: 12-35 % less CPU per delivery
  // at light load, docs/benchmarks.md); this struct keeps "off" so that the core's own tests
  // exercise the epoll path unless they ask for the ring.
  std::string io_uring{"off"};
  // "per_thread": each I/O thread has a file descriptor table of its own and accepts its own
  // connections (net/descriptor_tables.hpp), so that one process holds (open-file limit - a
  // floor) connections per I/O thread instead of the limit in all. "shared": one table, the
  // usual. Not with worker hand-off (its descriptors are the process's).
  std::string descriptor_tables{"shared"};
};

}  // namespace skyrelay
