// What a connection needs of the server, and nothing more: the configuration, the application's
// hooks, metrics, the hub and its transports' encoder ids, the dispatcher, admission, the
// Socket.IO server, the TLS context and the I/O contexts; and for the HTTP session, the
// publisher, the parked application requests and the /health and /metrics text. The server
// owns every part and outlives every session; a session holds a session_context& instead of
// the whole server (Beast's chat-multi `shared_state`).
//
// Thread-safe as its parts are: it only hands out references.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "skyrelay/core/config.hpp"
#include "skyrelay/core/encoder.hpp"
#include "skyrelay/core/log_queue.hpp"
#include "skyrelay/hub/broker.hpp"
#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/limits/admission.hpp"
#include "skyrelay/limits/rate_limiter.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/app_hooks.hpp"
#include "skyrelay/net/app_parking.hpp"
#include "skyrelay/net/health.hpp"
#include "skyrelay/net/idempotency_store.hpp"
#include "skyrelay/net/metrics.hpp"

namespace boost::asio::ssl {
class context;
}

namespace skyrelay {

class sio_server;
class push_session;
class worker_handoff;
class endpoint_table;

// How a JSON-protocol or SSE session enters and leaves the server's table by sid (where
// server::accept, respond, disconnect... find it). Two functions, not the server: a session
// sees nothing else of that table. Both are thread-safe and run no callback under their lock.
struct session_registry {
  std::function<void(const std::shared_ptr<push_session>&)> add;
  std::function<void(const std::string&)> remove;
};

// How the publish API publishes: as every publication does (server::publish: through the
// broker, counted on /metrics), with the idempotency keys of its requests. Both thread-safe.
struct publisher {
  std::function<std::size_t(const publication&, publish_meta*)> publish;
  // broker::publish_async, counted: `done` runs inline or on the broker's thread (post back).
  std::function<void(const publication&, std::function<void(publish_outcome)>)> publish_async;
  idempotency_store* idempotency{nullptr};
  // broker::warm: makes the hub's logs of these rooms hold where the cluster stands before a
  // client subscribes or resumes on them; `done` runs inline (memory broker) or on the
  // broker's thread (post back to the session). Null: nothing to warm.
  std::function<void(const std::vector<channel>&, std::function<void(bool)>)> warm;
  // The publish API's budget (server_config::publish_rate): takes `events` from the
  // publisher's bucket (capped at its burst), without blocking. `done` runs once, inline (this
  // process's budget) or on the Redis client's thread (post back to the session), with the
  // decision or a broker_unavailable (the shared budget cannot answer). Null: no limit.
  using budget_fn = std::function<void(std::exception_ptr, rate_decision)>;
  std::function<void(const std::string& publisher, std::size_t events, budget_fn done)> limit;
};

// The text of GET /health (JSON) and GET /metrics (Prometheus), made when asked. Thread-safe.
struct status_text {
  std::function<std::string()> health_json;
  std::function<std::string()> metrics_text;
  // GET /health/ready and /health/live (net/health.hpp): 200 when ok, else 503.
  std::function<health_monitor::report()> readiness;
  std::function<health_monitor::report()> liveness;
};

// The hub's ids of the server's encoders, one per transport, registered when the server is
// made (hub::add_encoder): each connection names its transport's (subscriber::encoder).
struct transport_encoders {
  encoder_id json_ws{0};   // a complete WebSocket frame of the JSON protocol's event message
  encoder_id socketio{0};  // a bare Engine.IO message carrying a Socket.IO EVENT (frame::ws_opcode)
  encoder_id sse{0};       // a Server-Sent Events block: id, event and data lines
};

class session_context {
 public:
  // The I/O context for the next connection or timer (round-robin).
  using context_picker = std::function<asio::io_context&()>;

  // Keeps references to every part (and the pointer `tls`, null for plain TCP); each must
  // outlive the context.
  session_context(const server_config& cfg, const app_hooks& hooks, metrics& m, hub& h,
                  dispatcher& d, admission& a, sio_server& sio, boost::asio::ssl::context* tls,
                  context_picker next_context, const transport_encoders& encoders)
      : cfg_(cfg),
        hooks_(hooks),
        metrics_(m),
        hub_(h),
        dispatcher_(d),
        admission_(a),
        sio_(sio),
        tls_(tls),
        next_context_(std::move(next_context)),
        encoders_(encoders) {}
  session_context(const session_context&) = delete;
  session_context& operator=(const session_context&) = delete;

  const server_config& config() const noexcept { return cfg_; }
  const app_hooks& hooks() const noexcept { return hooks_; }
  metrics& get_metrics() const noexcept { return metrics_; }
  hub& get_hub() const noexcept { return hub_; }
  dispatcher& get_dispatcher() const noexcept { return dispatcher_; }
  admission& get_admission() const noexcept { return admission_; }
  sio_server& sio() const noexcept { return sio_; }
  // The TLS context shared by every connection, or null for plain TCP.
  boost::asio::ssl::context* tls_context() const noexcept { return tls_; }
  asio::io_context& next_context() const { return next_context_(); }
  const transport_encoders& encoders() const noexcept { return encoders_; }
  // The sid table of JSON-protocol and SSE sessions; set once by the server before it
  // accepts any connection.
  const session_registry& sessions() const noexcept { return sessions_; }
  void set_sessions(session_registry r) { sessions_ = std::move(r); }
  // The HTTP session's faces of the server (the publish API, requests parked for the
  // application, the status pages); set once by the server before it accepts any connection.
  const publisher& get_publisher() const noexcept { return publisher_; }
  app_parking& parking() const noexcept { return *parking_; }
  const status_text& status() const noexcept { return status_; }
  // This process's side of the handoff between worker processes on one port, or null when it
  // is not one of several workers (net/worker_handoff.hpp). Set by the server at start(),
  // before it accepts any connection; cleared at stop(), after the last I/O thread ended.
  worker_handoff* workers() const noexcept { return workers_; }
  void set_workers(worker_handoff* w) noexcept { workers_ = w; }
  // The application's declared endpoints (net/endpoint_table.hpp), or null when it declares
  // none. Set once by the server before it accepts any connection.
  const endpoint_table* endpoints() const noexcept { return endpoints_; }
  void set_endpoints(const endpoint_table* t) noexcept { endpoints_ = t; }
  // The C++ core's log records (core/log_queue.hpp): a call site asks enabled() before it
  // builds one. Set once by the server before it accepts any connection.
  log_queue& log() const noexcept { return *log_; }
  void set_log(log_queue& q) noexcept { log_ = &q; }
  void set_http_faces(publisher p, app_parking& parking, status_text s) {
    publisher_ = std::move(p);
    parking_ = &parking;
    status_ = std::move(s);
  }

 private:
  const server_config& cfg_;
  const app_hooks& hooks_;
  metrics& metrics_;
  hub& hub_;
  dispatcher& dispatcher_;
  admission& admission_;
  sio_server& sio_;
  boost::asio::ssl::context* tls_;
  context_picker next_context_;
  const transport_encoders& encoders_;
  session_registry sessions_;
  publisher publisher_;
  app_parking* parking_{nullptr};
  status_text status_;
  worker_handoff* workers_{nullptr};
  const endpoint_table* endpoints_{nullptr};
  log_queue* log_{&disabled_log_queue()};
};

}  // namespace skyrelay
