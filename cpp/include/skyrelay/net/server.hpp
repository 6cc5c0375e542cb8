// The server: I/O threads, the listener, the registry of JSON-protocol and SSE sessions, and the
// seams to the application. It owns what sessions share (session_context.hpp): admission
// (limits/admission.hpp) and the Socket.IO server (sio_server.hpp) among them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/config.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/core/log_queue.hpp"
#include "skyrelay/hub/broker.hpp"
#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/limits/admission.hpp"
#include "skyrelay/limits/rate_limiter.hpp"
#include "skyrelay/net/endpoint_table.hpp"
#include "skyrelay/net/health.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/app_hooks.hpp"
#include "skyrelay/net/app_parking.hpp"
#include "skyrelay/net/idempotency_store.hpp"
#include "skyrelay/net/metrics.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/net/sio_server.hpp"

namespace boost::asio::ssl {
class context;
}

namespace skyrelay::redis {
class redis_state;
class redis_idempotency;
class redis_rate_limiter;
class sio_recovery_store;
}  // namespace skyrelay::redis

namespace skyrelay {

namespace redis {
class redis_sio_bridge;
}

class listener;
class worker_handoff;
class push_session;


class server {
 public:
  server(server_config cfg, app_hooks hooks);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds, listens and starts the I/O threads and the dispatcher. Throws
  // boost::system::system_error when the host does not resolve or the address cannot be bound
  // (the bindings raise it as OSError).
  void start();
  // Graceful stop: no new connections, close frames with 1001 to every connection, wait up to
  // drain_timeout for them to finish, then cut what is left and join every thread. Must not be
  // called from an I/O or dispatcher thread. Idempotent.
  void stop();
  bool running() const noexcept { return running_; }

  std::uint16_t port() const noexcept { return port_; }
  const server_config& config() const noexcept { return cfg_; }
  hub& get_hub() noexcept { return hub_; }
  broker& get_broker() noexcept { return *broker_; }
  const transport_encoders& encoders() const noexcept { return encoders_; }
  metrics& get_metrics() noexcept { return metrics_; }
  dispatcher& get_dispatcher() noexcept { return dispatcher_; }
  const app_hooks& hooks() const noexcept { return hooks_; }

  // Publishes through the broker (server_config::broker; the memory broker hands it straight
  // to the hub). Every publication takes this path. Thread-safe; never blocks on I/O.
  std::size_t publish(const publication& p, publish_meta* meta = nullptr);
  // The same through broker::publish_async: `done` runs inline or on the broker's thread.
  void publish_async(const publication& p, std::function<void(publish_outcome)> done);

  // Idempotency keys of the publish API (kept 5 minutes, at most 100,000). Thread-safe.
  idempotency_store& idempotency() noexcept { return idem_; }

  // Answers to the application's decisions and requests; thread-safe. False if the sid is gone.
  // With `roles` (server_config::roles_from_connect), the connection's roles become those, in
  // place of its token's, before its role requirements are checked.
  bool accept(const std::string& sid,
              std::optional<std::vector<std::string>> roles = std::nullopt);
  bool refuse(const std::string& sid, unsigned status, std::string message);
  // Answers a JSON-protocol request (a response frame). False, and nothing is written, when the
  // sid is gone or is an SSE stream's: a stream sends no requests and has no frame for an
  // answer (docs/api.md "Handlers").
  bool respond(const std::string& sid, const std::string& request_id, bool ok,
               const std::string& data_or_code, const std::string& message);
  bool disconnect(const std::string& sid, std::uint16_t code, std::string reason);
  // Sends an error frame ({"type":"error",...}, ref null) to one JSON-protocol connection;
  // false, like respond, for a gone sid or an SSE stream's.
  bool send_error(const std::string& sid, const std::string& code, const std::string& message);

  // The identity of a connection's token (JSON protocol, SSE or Socket.IO); null when the
  // connection is gone or was opened without a token. Thread-safe.
  auth::identity_ptr identity_of(const std::string& sid) const;
  // The roles a connection's role requirements are checked against (empty when it is gone).
  std::vector<std::string> roles_of(const std::string& sid) const;
  // A join the application makes for a connection (JSON protocol, SSE or Socket.IO), held to
  // the role requirements of the room (server_config::access): when the connection's roles
  // (roles_of) do not meet them, nothing is joined, skyrelay_forbidden_total{scope="room"} is
  // counted and `refusal` holds the policy's message; otherwise `joined` is hub::join's answer
  // (false when the sid is gone). Before the join, the broker warms the room (a cluster
  // broker follows it first, so nothing published meanwhile falls between the join and the
  // node's subscription): the caller waits for it, a Redis round trip when the node does not
  // follow the room yet, at most 5 s. Thread-safe; not from an I/O thread.
  struct join_result {
    bool joined{false};
    std::optional<std::string> refusal;
  };
  join_result join_checked(const std::string& sid, const channel& room);
  // A leave the application makes for a connection (a Socket.IO socket with cross-node
  // recovery rewrites its record). False when it was not in the room.
  bool leave(const std::string& sid, const channel& room);
  // HTTP requests waiting for the application (on_http; app_parking.hpp): thread-safe.
  using http_reply_fn = app_parking::reply_fn;
  std::uint64_t park_http(http_reply_fn reply) { return parking_.park(std::move(reply)); }
  bool http_reply(std::uint64_t id, unsigned status,
                  std::vector<std::pair<std::string, std::string>> headers, std::string body) {
    return parking_.reply(id, status, std::move(headers), std::move(body));
  }

  // Members of `room` in the cluster: with a Redis broker, every alive node's (cluster
  // state, docs/architecture.md; one Redis round trip, throws broker_unavailable when Redis
  // does not answer); else this process's. Thread-safe; not from an I/O thread.
  std::size_t room_size(const channel& room);

  std::string health_json() const;
  std::string metrics_text() const;
  // The C++ core's log records, drained into Python's logging (core/log_queue.hpp).
  log_queue& get_log() noexcept { return log_; }
  // GET /health/ready and /health/live (net/health.hpp).
  health_monitor::report readiness() const { return health_->readiness(); }
  health_monitor::report liveness() const { return health_->liveness(); }
  double uptime_seconds() const;

  // Session registry (used by sessions themselves).
  void register_session(const std::shared_ptr<push_session>& s);
  void unregister_session(const std::string& sid);
  std::shared_ptr<push_session> find_session(const std::string& sid) const;
  std::size_t session_count() const;

  // What sessions share (session_context.hpp); valid for the server's lifetime.
  session_context& context() noexcept { return *ctx_; }
  // The Socket.IO server: the application's control of sockets (thread-safe).
  sio_server& sio() noexcept { return sio_; }

  // The TLS context shared by every connection, or null for plain TCP (no tls_cert_file).
  boost::asio::ssl::context* tls_context() noexcept { return tls_.get(); }

 private:
  void append_uring_metrics(std::string& out) const;  // skyrelay_io_uring_*
  void register_encoders();  // the transports' encoders, into the hub (encoders_)
  void register_envelope_encoders();  // one per distinct envelope of endpoints_
  void sweep_later();  // runs hub::sweep every second on the first I/O context
  // The I/O context for the next connection or timer (round-robin; session_context and
  // sio_server pick through it).
  asio::io_context& next_context() noexcept;

  server_config cfg_;
  app_hooks hooks_;
  log_queue log_;  // before every part that logs
  hub hub_;
  transport_encoders encoders_;  // set in the constructor, before any connection
  // The application's endpoints (null: none), with their envelopes' encoders.
  std::unique_ptr<endpoint_table> endpoints_;
  metrics metrics_;
  std::unique_ptr<broker> broker_;  // delivers to hub_; told of hub_'s channel transitions
  // Takes python-socketio's / Flask-SocketIO's manager messages (Redis broker only, else null).
  std::unique_ptr<redis::redis_sio_bridge> manager_bridge_;
  dispatcher dispatcher_;
  std::unique_ptr<health_monitor> health_;  // reads dispatcher_ and broker_
  std::unique_ptr<boost::asio::ssl::context> tls_;  // outlives every connection (declared first)
  admission admission_;  // outlives every slot, and so every connection

  // One per I/O thread: holds its posts' dispatcher wake-ups to the end of its turn (declared
  // before contexts_, so a wake-up still queued on a context never outlives its deferral).
  std::vector<std::unique_ptr<dispatcher::wake_deferral>> wake_deferrals_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::shared_ptr<listener> listener_;
  // With per-thread descriptor tables: each I/O thread's own acceptor (on a copy of
  // listener_'s socket in its table), by thread; else empty.
  std::vector<std::shared_ptr<listener>> thread_listeners_;
  std::unique_ptr<worker_handoff> workers_;  // one of several workers on the port, else null
  std::atomic<std::size_t> next_context_{0};
  std::atomic<bool> running_{false};
  std::uint16_t port_{0};
  std::unique_ptr<asio::steady_timer> sweep_timer_;  // history expiry, every second
  std::chrono::steady_clock::time_point started_at_;

  mutable std::mutex sessions_mu_;
  std::unordered_map<std::string, std::weak_ptr<push_session>> sessions_;
  app_parking parking_;
  // After the I/O contexts, like the registries it holds (stop() clears them).
  sio_server sio_;
  std::unique_ptr<session_context> ctx_;  // made once tls_ is


  idempotency_store idem_{std::chrono::minutes(5), 100'000};
  // With a Redis broker (cluster state, shared idempotency keys and publish budget); the
  // state's connection outlives the two that use it.
  std::unique_ptr<redis::redis_state> state_;
  std::unique_ptr<redis::redis_idempotency> shared_idem_;
  std::unique_ptr<redis::redis_rate_limiter> shared_publish_limit_;
  // Socket.IO recovery across nodes (sio_server::set_recovery_store); on state_'s client.
  std::unique_ptr<redis::sio_recovery_store> sio_recovery_;
  std::unique_ptr<rate_limiter> publish_limit_;  // server_config::publish_rate, one process
  std::atomic<std::uint64_t> publish_rate_limited_{0};
  void make_shared_state();  // server_shared_state.cpp
  void take_publish_budget(const std::string& publisher, std::size_t events,
                           publisher::budget_fn done);
  void append_cluster_health(std::string& out) const;
  void append_cluster_metrics(std::string& out) const;
};

}  // namespace skyrelay
