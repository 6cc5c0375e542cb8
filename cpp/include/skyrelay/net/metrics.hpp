// Server counters and the publish-to-write latency histogram, exposed as Prometheus text.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "skyrelay/core/errors.hpp"

namespace skyrelay {

enum class drop_reason : std::uint8_t {
  drop_oldest,        // a volatile frame evicted (or refused) by the drop_oldest policy
  slow_consumer,      // frames lost with a connection closed for overflow
  dispatch_overflow,  // an inbound event refused because the dispatcher queue was full
  rate_limited,       // an inbound message refused by the connection's rate limit
  count_
};

// The `transport` label of the traffic families (received/sent messages and bytes, connections):
// json the JSON-protocol WebSocket, socketio Engine.IO's WebSocket transport, polling its HTTP
// long-polling (a connection is a session while it polls), sse a Server-Sent Events stream,
// publish POST /api/publish (a message is a request).
enum class transport_kind : std::uint8_t { json, socketio, polling, sse, publish, count_ };

const char* to_string(transport_kind t) noexcept;

// Limits hit that have no counter elsewhere (skyrelay_limit_hits_total{limit} also shows the
// connection refusals, rate_limited drops and too_many_rooms errors counted by other families).
enum class limit_kind : std::uint8_t {
  message_size,       // an inbound WebSocket message over max_message_size (close 1009)
  header_size,        // an HTTP request header over max_header_size (431)
  body_size,          // an HTTP request body over max_body_size (413)
  handshake_timeout,  // a request (or a pending connect decision) not complete in time
  idle_timeout,       // a keep-alive HTTP connection or a WebSocket silent for idle_timeout
  outbox,             // a connection's outbox full: a frame evicted, or the connection closed
  write_timeout,      // a WebSocket or SSE write pending for write_timeout: cut, slow consumer
  sessions_total,     // an Engine.IO handshake over max_connections (503)
  sessions_per_ip,    // an Engine.IO handshake over max_connections_per_ip (503)
  new_sessions_per_ip,  // an Engine.IO handshake over new_sessions_per_ip (429)
  attachments,        // a Socket.IO packet announcing more than max_attachments (closed)
  attachment_bytes,   // a packet's attachments over max_attachment_bytes (closed)
  recovery,           // a Socket.IO resume from an offset its socket no longer keeps: new socket
  count_
};

// Counters live in per-thread shards (one per I/O thread plus one shared by all other threads)
// so that the hot path increments an uncontended cache line. Reads sum the shards; they are
// consistent per counter, not across counters.
class metrics {
 public:
  // Upper bounds of the latency buckets, in nanoseconds (+Inf is implicit).
  static constexpr std::array<std::int64_t, 14> latency_bounds_ns{
      50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000,
      25'000'000, 50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000};

  // One transport's traffic (see transport_kind).
  struct traffic {
    std::atomic<std::uint64_t> connections_opened{0}, connections_closed{0};
    std::atomic<std::uint64_t> messages_in{0}, bytes_in{0};
    std::atomic<std::uint64_t> messages_out{0}, frames_out{0}, bytes_out{0}, writes{0};
  };

  struct alignas(64) shard {
    std::array<traffic, static_cast<std::size_t>(transport_kind::count_)> by_transport{};
    traffic& of(transport_kind t) noexcept { return by_transport[static_cast<std::size_t>(t)]; }
    std::atomic<std::uint64_t> handshakes_rejected{0}, http_requests{0};
    std::atomic<std::uint64_t> publications{0}, deliveries{0};
    // Publications handed to the broker; channels it was told of (first member in / last out).
    std::atomic<std::uint64_t> broker_publications{0}, broker_subscribes{0}, broker_unsubscribes{0};
    std::atomic<std::uint64_t> publish_api_refused{0};  // requests: traffic of publish
    std::atomic<std::uint64_t> auth_refused{0};  // handshakes and publishes refused for a token
    // Refused for a missing role (auth::access_policy), by what required it, or for a topic
    // that the server does not open to clients (auth::client_topic_policy).
    std::atomic<std::uint64_t> forbidden_namespace{0}, forbidden_room{0}, forbidden_event{0};
    std::atomic<std::uint64_t> forbidden_client_topic{0};
    std::atomic<std::uint64_t> refused_total_limit{0}, refused_ip_limit{0}, refused_rate_limit{0};
    std::atomic<std::uint64_t> tls_handshakes_failed{0};  // bad, plain-text or too slow
    // Connections handed between the worker processes of one port (net/worker_handoff.hpp):
    // sent to the worker owning a session, received from another, or not sent (answered
    // unknown_sid: the owner is gone or its inbox stays full, or the connection is TLS).
    std::atomic<std::uint64_t> handoffs_sent{0}, handoffs_received{0}, handoffs_failed{0};
    // Requests from a trusted proxy whose forwarded header could not be read (malformed, or
    // more than max_forwarded_hops values): the proxy's own address was used.
    std::atomic<std::uint64_t> forwarded_invalid{0};
    // permessage-deflate: messages written compressed (one per connection) and their frame
    // bytes (header included) before and after; messages compressed (once per frame, whatever number of
    // connections writes it); inbound messages inflated, and refused: past max_message_size
    // once inflated (closed 1009), or not valid DEFLATE data (closed 1007).
    std::atomic<std::uint64_t> deflate_messages_out{0}, deflate_bytes_before{0},
        deflate_bytes_after{0}, deflate_compressions{0};
    std::atomic<std::uint64_t> inflate_messages{0}, inflate_too_big{0}, inflate_bad_data{0};
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(drop_reason::count_)> drops{};
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(limit_kind::count_)> limits{};
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(error_code::count_)> errors{};
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(disconnect_reason::count_)>
        disconnects{};
    std::array<std::atomic<std::uint64_t>, latency_bounds_ns.size() + 1> latency_buckets{};
    std::atomic<std::uint64_t> latency_sum_ns{0};
  };

  explicit metrics(unsigned io_threads);

  // The calling thread's shard. I/O thread i must call bind_thread(i) once at start.
  shard& local() noexcept;
  static void bind_thread(unsigned index) noexcept;

  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  void drop(drop_reason r, std::uint64_t n = 1) noexcept;
  void error(error_code c) noexcept;
  void disconnect(disconnect_reason r) noexcept;
  void limit_hit(limit_kind l) noexcept;
  void observe_latency(shard& s, std::int64_t ns) noexcept;

  std::uint64_t total(std::atomic<std::uint64_t> shard::*field) const noexcept;
  // The sum over shards of one transport's counter.
  std::uint64_t total(transport_kind t, std::atomic<std::uint64_t> traffic::*field) const noexcept;

  // Prometheus text exposition (version 0.0.4): the families of these counters, with the
  // server's gauges. Names follow the Prometheus conventions (docs/deployment.md, Metrics).
  std::string prometheus(std::size_t rooms, std::size_t dispatch_queue, double uptime_s,
                         std::size_t history_entries = 0, std::size_t closed_sids = 0) const;

 private:
  // The parts of prometheus(), in the order they appear.
  void write_counters(std::string& out) const;
  void write_traffic(std::string& out) const;
  void write_refusals(std::string& out) const;
  void write_compression(std::string& out) const;
  void write_by_reason(std::string& out) const;
  void write_limit_hits(std::string& out) const;
  void write_latency(std::string& out) const;
  // The sum over shards of element `i` of a per-shard array of counters.
  template <class Array>
  std::uint64_t total_at(Array shard::*member, std::size_t i) const noexcept {
    std::uint64_t n = 0;
    for (const auto& s : shards_) n += ((*s).*member)[i].load(std::memory_order_relaxed);
    return n;
  }

  std::vector<std::unique_ptr<shard>> shards_;  // io threads, then the shared one
};

}  // namespace skyrelay
