// One Engine.IO v4 session and the Socket.IO v5 sockets (one per namespace, sio_socket.hpp)
// multiplexed on it.
//
// A session lives across HTTP requests and transports: long-polling (GET waits for packets,
// POST delivers them) and WebSocket, with the upgrade from one to the other. Its state is
// guarded by one mutex, because its requests may arrive on different connections and so on
// different I/O threads; no I/O and no callback runs under that mutex. Sending over the
// WebSocket transport does not take it: the transport is published once in an atomic.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/config.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/limits/inbound_limit.hpp"
#include "skyrelay/core/frame.hpp"
#include "skyrelay/hub/subscriber.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/sio_socket.hpp"
#include "skyrelay/net/ws_session.hpp"
#include "skyrelay/proto/engineio.hpp"
#include "skyrelay/proto/socketio.hpp"

namespace skyrelay {

class session_context;

// An Engine.IO session's sockets by namespace. A client opens one or a few, so a vector
// searched in order, which holds them in one allocation, rather than a std::map's node each
// (80 bytes; docs/benchmarks.md). Kept in the order they were placed.
class socket_list {
 public:
  using value_type = std::pair<std::string, std::shared_ptr<sio_socket>>;
  using iterator = std::vector<value_type>::iterator;

  iterator begin() noexcept { return v_.begin(); }
  iterator end() noexcept { return v_.end(); }
  bool empty() const noexcept { return v_.empty(); }
  iterator find(const std::string& nsp) {
    return std::find_if(v_.begin(), v_.end(), [&](const value_type& e) { return e.first == nsp; });
  }
  std::size_t count(const std::string& nsp) const {
    return std::any_of(v_.begin(), v_.end(), [&](const value_type& e) { return e.first == nsp; });
  }
  // `nsp` must not be in the list.
  void emplace(const std::string& nsp, std::shared_ptr<sio_socket> sock) {
    v_.emplace_back(nsp, std::move(sock));
  }
  void erase(iterator it) { v_.erase(it); }
  void swap(socket_list& o) noexcept { v_.swap(o.v_); }

 private:
  std::vector<value_type> v_;
};

class eio_session : public ws_handler, public std::enable_shared_from_this<eio_session> {
 public:
  enum class transport : std::uint8_t { polling, websocket };
  // Answers a polling request: HTTP status and body.
  using reply_fn = std::function<void(unsigned status, std::string body)>;

  // `context` (the server's, see session_context.hpp) outlives the session; its timers run on
  // `ioc`. `remote`, `scheme` ("http" or "https"), `headers` and `query` are the handshake's,
  // as the Socket.IO connect hook shows them.
  eio_session(session_context& context, asio::io_context& ioc, std::string sid, transport t,
              std::string remote, std::string_view scheme,
              std::vector<std::pair<std::string, std::string>> headers, std::string query,
              bool echo = false);
  ~eio_session() override;

  const std::string& sid() const noexcept { return sid_; }
  const server_config& config() const noexcept;
  // The executor of the session's timers (where its sockets' expiry timers run).
  asio::any_io_executor executor() { return ex_; }
  // A polling session's admission slot (admission::admit); given back when the session ends or
  // upgrades to WebSocket (whose connection holds its own slot). While held, the session counts
  // as an open polling connection on /metrics.
  void hold(std::shared_ptr<void> slot);
  // The open packet ("0{...}"); the caller sends it as the first packet of the transport.
  std::string open_packet() const;
  void start();

  // Long-polling.
  void poll(reply_fn reply);
  void post(std::string_view body, reply_fn reply);

  // WebSocket: `ws` was started with this session as its handler.
  void attach_websocket(std::shared_ptr<ws_session> ws);  // a session opened over WebSocket
  void attach_probe(std::shared_ptr<ws_session> ws);      // an upgrade attempt from polling

  // Sends frames (bare messages, see frame::ws_opcode) in order; thread-safe. Over WebSocket,
  // without taking the session's mutex.
  void send(const frame_ptr& f, overflow_policy policy = overflow_policy::disconnect);
  void send_all(const std::vector<frame_ptr>& frames);

  // Ends the session: every socket gets on_disconnect with `why`.
  void close(disconnect_reason why);
  // Ends one namespace socket (server-side disconnect): sends DISCONNECT, keeps the session.
  // With `only`, nothing happens unless that is the namespace's socket.
  void disconnect_socket(const std::string& nsp,
                         disconnect_reason why = disconnect_reason::server_disconnect,
                         const sio_socket* only = nullptr);
  // Drops a socket from the session without telling the client (a refused CONNECT).
  std::shared_ptr<sio_socket> forget_socket(const std::string& nsp);
  // A new socket in `nsp` for a CONNECT that passed every check: registered, then accepted at
  // once or handed to the connect hook. `auth` is the JSON text of the CONNECT payload.
  void open_socket(const std::string& nsp, std::string auth, auth::identity_ptr identity);
  // Cross-node recovery (sio_server::resume_elsewhere): a socket `sid` with this session's
  // recovery limits, placed in namespace `nsp`; null when the session closed or the
  // namespace is taken.
  std::shared_ptr<sio_socket> place_new_socket(const std::string& nsp, std::string sid);
  // Runs the connect hook for `sock` (or accepts it when there is none); `recovered` as
  // sio_connect_info says.
  void run_connect_hook(const std::shared_ptr<sio_socket>& sock, std::string auth,
                        auth::identity_ptr identity, bool recovered);

  // ws_handler
  void on_ws_text(ws_session& from, std::string_view text) override;
  void on_ws_binary(ws_session& from, std::string_view bytes) override;
  void on_ws_closed(ws_session& from, disconnect_reason why) override;
  // Over WebSocket the transport's heartbeat timer times the pings (no timer of the
  // session's own): the next ping or pong deadline when `from` is the transport.
  std::chrono::steady_clock::time_point ws_heartbeat_due(const ws_session& from) override;
  void on_ws_heartbeat(ws_session& from) override;

 private:
  void polling_ended();  // the slot of hold() given back: counted on /metrics
  void on_packet(const eio::packet& p, ws_session* via);
  void on_ping(const eio::packet& p);     // a ping, or the upgrade's "2probe"
  void on_upgrade();                      // the upgrade's "5": the probe becomes the transport
  void on_close_packet();                 // the client's goodbye
  // Makes `ws` the transport that send() and the sockets reach without mu_; with mu_ held.
  void set_wire_locked(const std::shared_ptr<ws_session>& ws);
  // Adds a socket to sockets_ / takes one out, keeping its wire (sio_socket::set_wire) the
  // session's while it is in, null once out. With mu_ held.
  void place_socket_locked(const std::string& nsp, const std::shared_ptr<sio_socket>& sock);
  std::shared_ptr<sio_socket> erase_socket_locked(socket_list::iterator it);
  // Whether `ws` is this session's transport or its upgrade probe (not a refused duplicate).
  bool ours(const ws_session& ws) const;
  void on_sio_text(std::string_view text);
  void on_sio_binary(std::string_view bytes);
  void dispatch(const sio::packet& p, std::vector<std::string> attachments);
  void on_connect_packet(const sio::packet& p);
  // The checks a CONNECT meets before any token is verified: the session's CONNECT rate, the
  // namespace, and not a namespace the session is already in. False: refused (answered).
  bool admit_connect(const std::string& nsp);
  // The CONNECT's token (payload, else the Authorization header); false: refused (answered).
  bool verify_connect(const sio::packet& p, auth::identity_ptr& identity);
  // A CONNECT with {"pid", "offset"} for a detached socket of the same user: true when it is
  // taken to be resumed (after the connect hook and role checks, see sio_server::accept).
  bool try_resume(const sio::packet& p, const auth::identity_ptr& identity);
  bool namespace_allowed(const std::string& nsp) const;
  void send_packet_text(std::string text);
  // Pings: one every eio_ping_interval (next_ping_), and the session ends when a ping's pong
  // has not come within eio_ping_timeout (pong_deadline_). heartbeat() does what is due now;
  // heartbeat_due_locked() says when that is next, on the grid (heartbeat_grid.hpp). Polling
  // times them with ping_timer_ (arm_ping), WebSocket with the transport's timer.
  void heartbeat();
  std::chrono::steady_clock::time_point heartbeat_due_locked() const;
  void arm_ping();
  // Called with mu_ held: takes what a parked GET should answer with, if anything.
  std::optional<std::string> take_polling_body_locked();
  void release_parked(std::string body);

  session_context& context_;
  const std::string sid_;
  // The client's address, the query (kept only for a Socket.IO connect hook) and the
  // handshake's headers for the connect hook, packed into one string: remote, NUL, query,
  // NUL, then each header name and value followed by a NUL. One allocation rather than three
  // strings and a vector of string pairs. remote(), query() and headers() unpack it.
  const std::string handshake_;
  std::string_view remote() const;
  std::string_view query() const;
  std::vector<std::pair<std::string, std::string>> headers() const;
  const bool echo_;  // a raw Engine.IO echo session (conformance testing), no Socket.IO
  const bool https_;  // the handshake's scheme was https (in echo_'s padding)
  // The executor of the session's timers, which the three below are made on when needed (an
  // idle WebSocket session keeps none: about 400 bytes with their pending waits;
  // docs/benchmarks.md).
  asio::io_context::executor_type ex_;
  // Polling's pings (the WebSocket transport's timer times them once upgraded), and the
  // lingering of a polling close. On ex_ only.
  std::unique_ptr<net::context_timer> ping_timer_;
  // Until the first CONNECT (sio_connect_timeout); reset once one arrives. On ex_ only.
  std::unique_ptr<net::context_timer> connect_timer_;
  std::unique_ptr<net::context_timer> upgrade_timer_;  // holds a poll that arrives mid-upgrade

  mutable std::mutex mu_;
  transport transport_;
  std::shared_ptr<ws_session> ws_;     // the active WebSocket transport
  std::shared_ptr<ws_session> probe_;  // an upgrade in progress
  // The WebSocket transport for send(), read without mu_: set once (with wire_keep_, which
  // keeps it alive for the session's whole life, so a sender never holds a dangling pointer),
  // null again once the session closes.
  std::atomic<ws_session*> wire_{nullptr};
  std::shared_ptr<ws_session> wire_keep_;
  bool upgrading_{false};
  // What only a session opened by polling keeps (null for one opened over WebSocket): the
  // packets waiting for a GET, taken all at once, and a GET waiting for packets.
  struct polling_state {
    std::vector<frame_ptr> queue;
    std::size_t queue_bytes{0};
    reply_fn parked;
  };
  std::unique_ptr<polling_state> polling_;  // with mu_ held
  bool held_{false};             // ... held for an upgrade in progress (see poll())
  bool overflowed_{false};       // the polling queue overflowed; the session is being closed
  bool closed_{false};
  bool awaiting_pong_{false};
  bool lingering_{false};  // polling: closed by a POSTed close packet, waiting for a GET
  std::chrono::steady_clock::time_point pong_deadline_{};  // while awaiting_pong_
  std::chrono::steady_clock::time_point next_ping_{};
  socket_list sockets_;  // by namespace
  // A binary packet waiting for its attachments, with those come so far (their bytes count
  // against max_attachment_bytes); made by the packet, gone once complete.
  struct partial_packet {
    sio::packet packet;
    std::vector<std::string> attachments;
    std::size_t bytes{0};
  };
  std::unique_ptr<partial_packet> partial_;
  std::optional<token_bucket> connect_limit_;  // CONNECT packets (server_config::inbound_limit)
  std::shared_ptr<void> slot_;          // the admission slot of a polling session
};

}  // namespace skyrelay
