#include "skyrelay/net/metrics.hpp"

#include <cstdio>

namespace skyrelay {

namespace {
thread_local int tls_shard = -1;

const char* drop_name(std::size_t i) {
  switch (static_cast<drop_reason>(i)) {
    case drop_reason::drop_oldest: return "drop_oldest";
    case drop_reason::slow_consumer: return "slow_consumer";
    case drop_reason::dispatch_overflow: return "dispatch_overflow";
    case drop_reason::rate_limited: return "rate_limited";
    default: return "unknown";
  }
}

const char* limit_name(std::size_t i) {
  switch (static_cast<limit_kind>(i)) {
    case limit_kind::message_size: return "message_size";
    case limit_kind::header_size: return "header_size";
    case limit_kind::body_size: return "body_size";
    case limit_kind::handshake_timeout: return "handshake_timeout";
    case limit_kind::idle_timeout: return "idle_timeout";
    case limit_kind::outbox: return "outbox";
    case limit_kind::write_timeout: return "write_timeout";
    case limit_kind::sessions_total: return "sessions_total";
    case limit_kind::sessions_per_ip: return "sessions_per_ip";
    case limit_kind::new_sessions_per_ip: return "new_sessions_per_ip";
    case limit_kind::attachments: return "attachments";
    case limit_kind::attachment_bytes: return "attachment_bytes";
    case limit_kind::recovery: return "recovery";
    default: return "unknown";
  }
}

void line(std::string& out, const char* name, const char* help, const char* type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void value(std::string& out, const std::string& name, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.15g\n", v);
  out += name;
  out += buf;
}
}  // namespace

metrics::metrics(unsigned io_threads) {
  for (unsigned i = 0; i < io_threads + 1; ++i) shards_.push_back(std::make_unique<shard>());
}

void metrics::bind_thread(unsigned index) noexcept { tls_shard = static_cast<int>(index); }

metrics::shard& metrics::local() noexcept {
  const int i = tls_shard;
  if (i >= 0 && static_cast<std::size_t>(i) + 1 < shards_.size()) return *shards_[i];
  return *shards_.back();
}

void metrics::drop(drop_reason r, std::uint64_t n) noexcept {
  add(local().drops[static_cast<std::size_t>(r)], n);
}
void metrics::limit_hit(limit_kind l) noexcept {
  add(local().limits[static_cast<std::size_t>(l)]);
}
void metrics::error(error_code c) noexcept { add(local().errors[static_cast<std::size_t>(c)]); }
void metrics::disconnect(disconnect_reason r) noexcept {
  add(local().disconnects[static_cast<std::size_t>(r)]);
}

void metrics::observe_latency(shard& s, std::int64_t ns) noexcept {
  if (ns < 0) ns = 0;
  std::size_t b = 0;
  while (b < latency_bounds_ns.size() && ns > latency_bounds_ns[b]) ++b;
  add(s.latency_buckets[b]);
  add(s.latency_sum_ns, static_cast<std::uint64_t>(ns));
}

std::uint64_t metrics::total(std::atomic<std::uint64_t> shard::*field) const noexcept {
  std::uint64_t n = 0;
  for (const auto& s : shards_) n += ((*s).*field).load(std::memory_order_relaxed);
  return n;
}

std::uint64_t metrics::total(transport_kind t,
                             std::atomic<std::uint64_t> traffic::*field) const noexcept {
  std::uint64_t n = 0;
  for (const auto& s : shards_) n += (s->of(t).*field).load(std::memory_order_relaxed);
  return n;
}

const char* to_string(transport_kind t) noexcept {
  switch (t) {
    case transport_kind::json: return "json";
    case transport_kind::socketio: return "socketio";
    case transport_kind::polling: return "polling";
    case transport_kind::sse: return "sse";
    case transport_kind::publish: return "publish";
    default: return "unknown";
  }
}

std::string metrics::prometheus(std::size_t rooms, std::size_t dispatch_queue, double uptime_s,
                                std::size_t history_entries, std::size_t closed_sids) const {
  std::string out;
  out.reserve(8192);
  auto gauge = [&](const char* name, const char* help, double v) {
    line(out, name, help, "gauge");
    value(out, name, v);
  };
  gauge("skyrelay_uptime_seconds", "Seconds since the server started.", uptime_s);
  gauge("skyrelay_rooms", "Rooms with at least one member.", static_cast<double>(rooms));
  gauge("skyrelay_dispatch_queue_length", "Inbound events waiting for the application.",
        static_cast<double>(dispatch_queue));
  gauge("skyrelay_history_entries", "Publications held for replay, summed over rooms.",
        static_cast<double>(history_entries));
  gauge("skyrelay_closed_sids", "Sids of recently closed connections, kept unaddressable.",
        static_cast<double>(closed_sids));
  write_traffic(out);
  write_counters(out);
  write_refusals(out);
  write_compression(out);
  write_by_reason(out);
  write_limit_hits(out);
  write_latency(out);
  return out;
}

// The families labelled by transport (transport_kind). A transport appears in a family only
// where it can count: nothing is received on an SSE stream after its request, nothing but the
// HTTP answer is sent to a publisher.
void metrics::write_traffic(std::string& out) const {
  using tk = transport_kind;
  constexpr tk all[] = {tk::json, tk::socketio, tk::polling, tk::sse, tk::publish};
  constexpr tk streams[] = {tk::json, tk::socketio, tk::polling, tk::sse};
  constexpr tk websockets_and_sse[] = {tk::json, tk::socketio, tk::sse};
  constexpr tk receiving[] = {tk::json, tk::socketio, tk::polling, tk::publish};
  auto family = [&](const char* name, const char* help, const char* type, const auto& which,
                    auto sample) {
    line(out, name, help, type);
    for (tk t : which)
      value(out, std::string(name) + "{transport=\"" + to_string(t) + "\"}", sample(t));
  };
  auto counter = [&](const char* name, const char* help, const auto& which,
                     std::atomic<std::uint64_t> traffic::*f) {
    family(name, help, "counter", which,
           [&](tk t) { return static_cast<double>(total(t, f)); });
  };
  family("skyrelay_open_connections",
         "Open connections by transport (a polling connection is an Engine.IO session while it "
         "polls; once upgraded it is a socketio connection).",
         "gauge", streams, [&](tk t) {
           // Read closed first: a connection that opens and closes between the two reads
           // then shows as open for one scrape rather than as a negative count.
           const std::uint64_t closed = total(t, &traffic::connections_closed);
           const std::uint64_t opened = total(t, &traffic::connections_opened);
           return static_cast<double>(opened > closed ? opened - closed : 0);
         });
  counter("skyrelay_connections_opened_total", "Connections accepted, by transport.", streams,
          &traffic::connections_opened);
  counter("skyrelay_connections_closed_total", "Connections closed, by transport.", streams,
          &traffic::connections_closed);
  counter("skyrelay_received_messages_total",
          "Messages received from clients: WebSocket data messages, Engine.IO packets posted "
          "by polling, publish API requests.", receiving, &traffic::messages_in);
  counter("skyrelay_received_bytes_total",
          "Bytes received: on WebSocket and SSE connections after the handshake, in polling "
          "and publish request bodies.", all, &traffic::bytes_in);
  counter("skyrelay_sent_messages_total",
          "Data messages written to clients (Engine.IO packets in polling answers).", streams,
          &traffic::messages_out);
  counter("skyrelay_sent_frames_total",
          "Frames written to clients, control frames included.", websockets_and_sse,
          &traffic::frames_out);
  counter("skyrelay_sent_bytes_total",
          "Bytes written: on WebSocket and SSE connections, in polling answer bodies.", streams,
          &traffic::bytes_out);
  counter("skyrelay_write_calls_total",
          "Gathered socket writes; sent_frames / write_calls is the batching factor.",
          websockets_and_sse, &traffic::writes);
}

void metrics::write_counters(std::string& out) const {
  auto counter = [&](const char* name, const char* help, std::atomic<std::uint64_t> shard::*f) {
    line(out, name, help, "counter");
    value(out, name, static_cast<double>(total(f)));
  };
  counter("skyrelay_handshakes_rejected_total", "Connection and session handshakes refused.",
          &shard::handshakes_rejected);
  counter("skyrelay_auth_refused_total",
          "Handshakes and publish requests refused for their token (missing or not valid).",
          &shard::auth_refused);
  counter("skyrelay_http_requests_total", "Plain HTTP requests served.", &shard::http_requests);
  counter("skyrelay_tls_handshakes_failed_total",
          "TLS handshakes that failed or did not finish within the handshake timeout.",
          &shard::tls_handshakes_failed);
  counter("skyrelay_publish_refused_total",
          "POST /api/publish requests answered with an error status.", &shard::publish_api_refused);
  counter("skyrelay_publications_total", "Publications routed by the hub.", &shard::publications);
  counter("skyrelay_deliveries_total", "Frames queued to connections by publications.",
          &shard::deliveries);
  counter("skyrelay_broker_publications_total", "Publications handed to the broker.",
          &shard::broker_publications);
  counter("skyrelay_broker_subscribes_total",
          "Channels that gained their first local member (the broker was told to subscribe).",
          &shard::broker_subscribes);
  counter("skyrelay_broker_unsubscribes_total",
          "Channels that lost their last local member (the broker was told to unsubscribe).",
          &shard::broker_unsubscribes);
  counter("skyrelay_forwarded_header_invalid_total",
          "Requests from a trusted proxy whose X-Forwarded-For or Forwarded header could not be "
          "read; the proxy's own address was used.",
          &shard::forwarded_invalid);
}

// The labelled families of refusals: by the role's scope, and by the connection limit.
void metrics::write_refusals(std::string& out) const {
  line(out, "skyrelay_forbidden_total",
       "Connections, subscriptions, joins and events refused for a missing role, by what "
       "required the role; client_topic: subscriptions to a topic the server does not open "
       "to clients.", "counter");
  value(out, "skyrelay_forbidden_total{scope=\"namespace\"}",
        static_cast<double>(total(&shard::forbidden_namespace)));
  value(out, "skyrelay_forbidden_total{scope=\"room\"}",
        static_cast<double>(total(&shard::forbidden_room)));
  value(out, "skyrelay_forbidden_total{scope=\"event\"}",
        static_cast<double>(total(&shard::forbidden_event)));
  value(out, "skyrelay_forbidden_total{scope=\"client_topic\"}",
        static_cast<double>(total(&shard::forbidden_client_topic)));
  line(out, "skyrelay_connections_refused_total",
       "TCP connections refused at accept because a connection limit was reached.", "counter");
  value(out, "skyrelay_connections_refused_total{limit=\"total\"}",
        static_cast<double>(total(&shard::refused_total_limit)));
  value(out, "skyrelay_connections_refused_total{limit=\"per_ip\"}",
        static_cast<double>(total(&shard::refused_ip_limit)));
  value(out, "skyrelay_connections_refused_total{limit=\"new_per_ip\"}",
        static_cast<double>(total(&shard::refused_rate_limit)));
  line(out, "skyrelay_worker_handoffs_total",
       "Connections handed between the worker processes of one port (skyrelay run --workers).",
       "counter");
  value(out, "skyrelay_worker_handoffs_total{result=\"sent\"}",
        static_cast<double>(total(&shard::handoffs_sent)));
  value(out, "skyrelay_worker_handoffs_total{result=\"received\"}",
        static_cast<double>(total(&shard::handoffs_received)));
  value(out, "skyrelay_worker_handoffs_total{result=\"failed\"}",
        static_cast<double>(total(&shard::handoffs_failed)));
}

// permessage-deflate (docs/protocol.md "Compression").
void metrics::write_compression(std::string& out) const {
  auto counter = [&](const char* name, const char* help, std::atomic<std::uint64_t> shard::*f) {
    line(out, name, help, "counter");
    value(out, name, static_cast<double>(total(f)));
  };
  counter("skyrelay_deflate_sent_messages_total",
          "Messages written compressed (permessage-deflate), one per connection.",
          &shard::deflate_messages_out);
  counter("skyrelay_deflate_uncompressed_bytes_total",
          "Frame bytes of the messages written compressed, as they were before compression.",
          &shard::deflate_bytes_before);
  counter("skyrelay_deflate_compressed_bytes_total",
          "Frame bytes of the messages written compressed, as written (header included).",
          &shard::deflate_bytes_after);
  counter("skyrelay_deflate_compressions_total",
          "Messages compressed: once per frame, whatever number of connections writes it.",
          &shard::deflate_compressions);
  counter("skyrelay_inflated_messages_total", "Compressed messages received and inflated.",
          &shard::inflate_messages);
  line(out, "skyrelay_inflate_refused_total",
       "Compressed messages refused: too_big inflated past max_message_size (closed 1009), "
       "bad_data was not valid DEFLATE (closed 1007).", "counter");
  value(out, "skyrelay_inflate_refused_total{reason=\"too_big\"}",
        static_cast<double>(total(&shard::inflate_too_big)));
  value(out, "skyrelay_inflate_refused_total{reason=\"bad_data\"}",
        static_cast<double>(total(&shard::inflate_bad_data)));
}

void metrics::write_by_reason(std::string& out) const {
  line(out, "skyrelay_drops_total", "Frames or messages dropped, by reason.", "counter");
  for (std::size_t i = 0; i < static_cast<std::size_t>(drop_reason::count_); ++i)
    value(out, std::string("skyrelay_drops_total{reason=\"") + drop_name(i) + "\"}",
          static_cast<double>(total_at(&shard::drops, i)));
  line(out, "skyrelay_errors_total", "Error frames and failed responses sent to clients, by code.", "counter");
  for (std::size_t i = 0; i < static_cast<std::size_t>(error_code::count_); ++i)
    value(out,
          "skyrelay_errors_total{code=\"" + std::string(to_string(static_cast<error_code>(i))) +
              "\"}",
          static_cast<double>(total_at(&shard::errors, i)));
  line(out, "skyrelay_disconnects_total",
       "Ended connections by reason: JSON-protocol WebSockets, SSE streams and Socket.IO sockets "
       "(one per namespace; not their Engine.IO transports).", "counter");
  for (std::size_t i = 0; i < static_cast<std::size_t>(disconnect_reason::count_); ++i)
    value(out,
          "skyrelay_disconnects_total{reason=\"" +
              std::string(to_string(static_cast<disconnect_reason>(i))) + "\"}",
          static_cast<double>(total_at(&shard::disconnects, i)));
}

void metrics::write_limit_hits(std::string& out) const {
  // One family with every configured limit, so that a dashboard needs one query. The last five
  // are the same counts as the refusal, drop and error series named in their comments.
  line(out, "skyrelay_limit_hits_total",
       "Times a configured limit was hit, by limit (docs/architecture.md, Limits and defaults).",
       "counter");
  auto hits = [&](const char* name, double v) {
    value(out, std::string("skyrelay_limit_hits_total{limit=\"") + name + "\"}", v);
  };
  for (std::size_t i = 0; i < static_cast<std::size_t>(limit_kind::count_); ++i)
    hits(limit_name(i), static_cast<double>(total_at(&shard::limits, i)));
  hits("connections_total", static_cast<double>(total(&shard::refused_total_limit)));
  hits("connections_per_ip", static_cast<double>(total(&shard::refused_ip_limit)));
  hits("new_connections_per_ip", static_cast<double>(total(&shard::refused_rate_limit)));
  hits("rooms_per_connection",  // skyrelay_errors_total{code="too_many_rooms"}
       static_cast<double>(total_at(&shard::errors, static_cast<std::size_t>(error_code::too_many_rooms))));
  hits("inbound_rate",  // skyrelay_drops_total{reason="rate_limited"}
       static_cast<double>(total_at(&shard::drops, static_cast<std::size_t>(drop_reason::rate_limited))));
}

void metrics::write_latency(std::string& out) const {
  const char* h = "skyrelay_publish_to_write_seconds";
  line(out, h, "Time from publication to the socket write that carried it.", "histogram");
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b <= latency_bounds_ns.size(); ++b) {
    cumulative += total_at(&shard::latency_buckets, b);
    char le[32];
    if (b < latency_bounds_ns.size())
      std::snprintf(le, sizeof le, "%g", static_cast<double>(latency_bounds_ns[b]) / 1e9);
    else
      std::snprintf(le, sizeof le, "+Inf");
    value(out, std::string(h) + "_bucket{le=\"" + le + "\"}", static_cast<double>(cumulative));
  }
  value(out, std::string(h) + "_sum", static_cast<double>(total(&shard::latency_sum_ns)) / 1e9);
  value(out, std::string(h) + "_count", static_cast<double>(cumulative));
}

}  // namespace skyrelay
