// The server: I/O threads, the listener, the session registry, and the seams to the application.
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
#include "skyrelay/hub/broker.hpp"
#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/idempotency_store.hpp"
#include "skyrelay/net/metrics.hpp"

namespace boost::asio::ssl {
class context;
}

namespace skyrelay {

// Why a new connection was not admitted (server::admit).
enum class connection_refusal : std::uint8_t { none, total, per_ip, rate };

class listener;
class ws_session;
class eio_session;
class sio_socket;

// What the application learns about a WebSocket handshake.
struct connect_info {
  std::string sid;
  std::string path;
  std::string query;
  std::string remote;  // "ip:port"
  std::vector<std::pair<std::string, std::string>> headers;
  auth::identity_ptr identity;  // the verified token's identity; null without a token
};

// What the application learns about a Socket.IO CONNECT.
struct sio_connect_info {
  std::string sid;   // the new socket's id
  std::string nsp;
  std::string auth;  // JSON text of the CONNECT payload ("{}" when none)
  std::string eio_sid;
  std::string remote;
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  auth::identity_ptr identity;  // the verified token's identity; null without a token
  // A connection state recovery: `sid` is the socket that asked to resume (still in its
  // rooms). Accepting it resumes it (or, when history no longer has what it missed, ends it
  // and opens a new socket, which goes through the hook again); refusing it ends it.
  bool recovered{false};
};

// A plain HTTP request handed to the application.
struct http_request_info {
  std::uint64_t id;
  std::string method;
  std::string target;  // path and query
  std::string remote;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Application callbacks. Each runs on the dispatcher thread, never on an I/O thread, one at a
// time and in the order the events happened for a given connection.
struct app_hooks {
  // When set, every handshake waits for server::accept(sid) or server::refuse(sid, ...), which
  // the callback (or code it schedules) must call. When unset, handshakes are accepted at once.
  std::function<void(const connect_info&)> on_connect;
  // An "event" (request_id empty) or "request" (request_id is the JSON text of its id). For
  // requests the application must answer with server::respond.
  std::function<void(const std::string& sid, const std::string& event, const std::string& data,
                     const std::string& request_id)>
      on_message;
  // A connection that was accepted has ended; `identity` is its token's (null without one).
  std::function<void(const std::string& sid, disconnect_reason reason,
                     const auth::identity_ptr& identity)>
      on_disconnect;

  // Socket.IO. When on_sio_connect is set, a CONNECT waits for sio_accept or sio_refuse.
  std::function<void(const sio_connect_info&)> on_sio_connect;
  // An EVENT: `args` is the JSON array of arguments after the name; `ack_id` is -1 when the
  // client wants no acknowledgement; `attachments` are the binary parts, in placeholder order.
  std::function<void(const std::string& sid, const std::string& event, const std::string& args,
                     std::int64_t ack_id, const std::vector<std::string>& attachments)>
      on_sio_event;
  // An ACK answering a server emit that asked for one.
  std::function<void(const std::string& sid, std::uint64_t id, const std::string& args,
                     const std::vector<std::string>& attachments)>
      on_sio_ack;

  // Plain HTTP requests that no built-in route serves (a WSGI app behind the same port). The
  // application answers with server::http_reply(id, ...).
  std::function<void(const http_request_info&)> on_http;
};

// The hub's ids of this server's encoders, one per transport, registered when the server is
// made: each connection names its transport's (subscriber::encoder).
struct transport_encoders {
  encoder_id json_ws{0};   // a complete WebSocket frame of the JSON protocol's event message
  encoder_id socketio{0};  // a bare Engine.IO message carrying a Socket.IO EVENT (frame::ws_opcode)
  encoder_id sse{0};       // a Server-Sent Events block: id, event and data lines
};

class server {
 public:
  server(server_config cfg, app_hooks hooks);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds, listens and starts the I/O threads and the dispatcher. Throws std::system_error when
  // the address cannot be bound.
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

  // Idempotency keys of the publish API (kept 5 minutes, at most 100,000). Thread-safe.
  idempotency_store& idempotency() noexcept { return idem_; }

  // Answers to the application's decisions and requests; thread-safe. False if the sid is gone.
  // With `roles` (server_config::roles_from_connect), the connection's roles become those, in
  // place of its token's, before its role requirements are checked.
  bool accept(const std::string& sid,
              std::optional<std::vector<std::string>> roles = std::nullopt);
  bool refuse(const std::string& sid, unsigned status, std::string message);
  bool respond(const std::string& sid, const std::string& request_id, bool ok,
               const std::string& data_or_code, const std::string& message);
  bool disconnect(const std::string& sid, std::uint16_t code, std::string reason);
  // Sends an error frame ({"type":"error",...}, ref null) to one connection.
  bool send_error(const std::string& sid, const std::string& code, const std::string& message);

  // Socket.IO: thread-safe; false when the socket is gone.
  // Accepts a CONNECT unless the namespace's role requirement refuses it (then connect_error
  // with data {"code":"forbidden"}); `roles` as for accept(). A recovering socket
  // (sio_connect_info::recovered) also leaves the rooms its roles no longer allow, then gets
  // what it missed; false when that was too late (it ended, a new socket was opened).
  bool sio_accept(const std::string& sid,
                  std::optional<std::vector<std::string>> roles = std::nullopt);
  bool sio_refuse(const std::string& sid, const std::string& message, const std::string& data_json);
  // Sends a Socket.IO packet (its text, without the Engine.IO type) and its binary attachments.
  bool sio_send(const std::string& sid, std::string packet, std::vector<std::string> attachments);
  bool sio_disconnect(const std::string& sid);
  // The identity of a connection's token (JSON protocol, SSE or Socket.IO); null when the
  // connection is gone or was opened without a token. Thread-safe.
  auth::identity_ptr identity_of(const std::string& sid) const;
  // The roles a connection's role requirements are checked against (empty when it is gone).
  std::vector<std::string> roles_of(const std::string& sid) const;
  // A Socket.IO socket's token expired: it is disconnected (or, still waiting for the connect
  // hook, refused) with disconnect_reason::token_expired.
  void expire_socket(const std::shared_ptr<sio_socket>& s);
  // An EVENT to one socket, in its namespace: `args` is the JSON text of the arguments after the
  // name (without brackets); `ack_id` >= 0 asks the client for an acknowledgement.
  bool sio_emit(const std::string& sid, const std::string& event, const std::string& args,
                std::vector<std::string> attachments, std::int64_t ack_id);
  // The ACK for a client's EVENT: `args` is a JSON array.
  bool sio_ack(const std::string& sid, std::uint64_t id, const std::string& args,
               std::vector<std::string> attachments);

  // HTTP requests waiting for the application (on_http): thread-safe.
  using http_reply_fn = std::function<void(unsigned status,
                                           std::vector<std::pair<std::string, std::string>> headers,
                                           std::string body)>;
  std::uint64_t park_http(http_reply_fn reply);
  bool http_reply(std::uint64_t id, unsigned status,
                  std::vector<std::pair<std::string, std::string>> headers, std::string body);

  std::string health_json() const;
  std::string metrics_text() const;
  double uptime_seconds() const;

  // Session registry (used by sessions themselves).
  void register_session(const std::shared_ptr<ws_session>& s);
  void unregister_session(const std::string& sid);
  std::shared_ptr<ws_session> find_session(const std::string& sid) const;
  std::size_t session_count() const;

  // Engine.IO sessions and Socket.IO sockets (used by the sessions themselves).
  void register_eio(const std::shared_ptr<eio_session>& s);
  void unregister_eio(const std::string& sid);
  std::shared_ptr<eio_session> find_eio(const std::string& sid) const;
  void register_socket(const std::shared_ptr<sio_socket>& s);
  std::shared_ptr<sio_socket> find_socket(const std::string& sid) const;
  // A socket ended: out of the hub and the registry, and on_disconnect if it was connected.
  void end_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why);
  // Recovery: keeps a socket whose transport dropped for the recovery window; ends it (with
  // `why`) if its client has not come back by then.
  void detach_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why);
  // The detached socket with this pid in namespace `nsp`, removed from the waiting list.
  std::shared_ptr<sio_socket> take_detached(const std::string& pid, const std::string& nsp);

  // Admission of a new TCP connection from `ip`: a slot that releases itself when the last
  // holder drops it (the HTTP session, then the WebSocket or stream it became), or nullptr
  // when a limit is reached (`why` tells which). With `session`, the slot is for an Engine.IO
  // polling session instead: it counts against the same max_connections and
  // max_connections_per_ip, and its rate is new_sessions_per_ip. Thread-safe.
  using connection_slot = std::shared_ptr<void>;
  connection_slot admit(const std::string& ip, connection_refusal& why, bool session = false);
  std::size_t tcp_connections() const noexcept { return tcp_total_.load(); }

  // The executor for the next accepted connection (round-robin over the I/O contexts).
  asio::io_context& next_context() noexcept;
  // The TLS context shared by every connection, or null for plain TCP (no tls_cert_file).
  boost::asio::ssl::context* tls_context() noexcept { return tls_.get(); }

 private:
  void sweep_later();  // runs hub::sweep every second on the first I/O context
  // sio_accept for a socket that asked to resume from `offset` (see sio_accept).
  bool resume_socket(const std::shared_ptr<sio_socket>& s, std::uint64_t offset, std::string auth);
  // Leaves the rooms whose role requirement (access_policy room rules) the socket's roles no
  // longer meet.
  void recheck_rooms(const sio_socket& s);

  server_config cfg_;
  app_hooks hooks_;
  hub hub_;
  transport_encoders encoders_;  // set in the constructor, before any connection
  metrics metrics_;
  std::unique_ptr<broker> broker_;  // delivers to hub_; told of hub_'s channel transitions
  dispatcher dispatcher_;
  std::unique_ptr<boost::asio::ssl::context> tls_;  // outlives every connection (declared first)

  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::shared_ptr<listener> listener_;
  std::atomic<std::size_t> next_context_{0};
  std::atomic<bool> running_{false};
  std::uint16_t port_{0};
  std::unique_ptr<asio::steady_timer> sweep_timer_;  // history expiry, every second
  std::chrono::steady_clock::time_point started_at_;

  mutable std::mutex sessions_mu_;
  std::unordered_map<std::string, std::weak_ptr<ws_session>> sessions_;
  std::unordered_map<std::string, std::shared_ptr<eio_session>> eio_sessions_;
  std::unordered_map<std::string, std::weak_ptr<sio_socket>> sockets_;
  std::unordered_map<std::uint64_t, http_reply_fn> http_waiting_;
  std::unordered_map<std::string, std::shared_ptr<sio_socket>> detached_;  // by pid
  std::uint64_t next_http_id_{1};

  std::atomic<std::size_t> tcp_total_{0};
  std::mutex ip_mu_;
  std::unordered_map<std::string, std::size_t> per_ip_;
  std::unordered_map<std::string, token_bucket> new_per_ip_;  // forgotten once full again
  std::unordered_map<std::string, token_bucket> new_sessions_per_ip_;  // the same, for sessions

  idempotency_store idem_{std::chrono::minutes(5), 100'000};
};

}  // namespace skyrelay
