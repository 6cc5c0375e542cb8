// One Engine.IO v4 session and the Socket.IO v5 sockets (one per namespace) multiplexed on it.
//
// A session lives across HTTP requests and transports: long-polling (GET waits for packets,
// POST delivers them) and WebSocket, with the upgrade from one to the other. Its state is
// guarded by one mutex, because its requests may arrive on different connections and so on
// different I/O threads; no I/O and no callback runs under that mutex.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/config.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/core/inbound_limit.hpp"
#include "skyrelay/core/frame.hpp"
#include "skyrelay/hub/subscriber.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/ws_session.hpp"
#include "skyrelay/proto/engineio.hpp"
#include "skyrelay/proto/socketio.hpp"

namespace skyrelay {

class server;
class eio_session;

// A Socket.IO socket: one namespace of one Engine.IO session; what the hub delivers to.
class sio_socket : public subscriber, public std::enable_shared_from_this<sio_socket> {
 public:
  // `recovery_frames` > 0 turns on connection state recovery for this socket: it gets a pid,
  // can outlive its session (detach), and keeps up to that many of the latest events sent to it
  // alone; events to its rooms and namespace are replayed from the hub's history.
  sio_socket(std::string sid, std::string nsp, std::weak_ptr<eio_session> session,
             std::size_t recovery_frames = 0);

  // Queues frames until the socket is accepted, then passes them to the session.
  void deliver(const frame_ptr& f, overflow_policy policy) override;
  void deliver_direct(const frame_ptr& f, overflow_policy policy) override;
  // Several frames for this socket alone that must stay together (a binary packet and its
  // attachments).
  void deliver_all(std::vector<frame_ptr> frames);
  // Sends the CONNECT reply, then what was queued meanwhile. False if already decided.
  bool accept();
  bool connected() const;  // accepted, and not detached
  bool accepted() const;   // accepted (detached or not), and not closed
  void mark_closed();
  std::shared_ptr<eio_session> session() const { return session_.lock(); }

  // The socket's inbound limit (server_config::inbound_limit, event_limits): false when the
  // event is over it, with the wait until a token is back. Thread-safe.
  bool take_token(std::string_view event, std::int64_t& wait_ns);

  // Recovery. The pid the client presents to resume ("" when recovery is off).
  const std::string& pid() const noexcept { return pid_; }
  // The transport dropped: stay in the rooms, send nothing; history keeps what comes.
  void detach();
  // The client came back on `session` having seen events up to `offset`; `missed` are the
  // publications after it from the hub's history (see hub::resume). Sends CONNECT, then those
  // and the events sent to this socket alone since `offset`, in id order. False (and nothing
  // sent) when the latter are no longer all here.
  bool reattach(std::weak_ptr<eio_session> session, std::uint64_t offset,
                std::vector<frame_ptr>& missed);
  // A recovery CONNECT for this detached socket arrived on `session`: it stays detached (sends
  // nothing) and loses the roles a connect hook granted it, until server::sio_accept resumes it
  // (take_resume) or server::sio_refuse ends it. False when it was closed meanwhile.
  struct resume_request {
    std::uint64_t offset{0};
    std::string auth;  // the CONNECT payload, for a fresh CONNECT when resuming is too late
  };
  bool begin_resume(std::weak_ptr<eio_session> session, resume_request r);
  // The pending recovery (and forgets it), if begin_resume started one.
  std::optional<resume_request> take_resume();

  // The verified token of its CONNECT (null without one; a resumed socket takes the token of
  // the CONNECT that resumed it). Thread-safe.
  void set_identity(auth::identity_ptr id);
  auth::identity_ptr identity() const;
  // Roles the connect hook gave the socket, in place of its token's (server::sio_accept).
  void grant_roles(std::vector<std::string> roles);
  // The roles its role requirements are checked against: granted ones, else the token's.
  std::shared_ptr<const std::vector<std::string>> roles() const;
  // (Re)starts the timer that ends the socket when its token expires (server::expire_socket),
  // on `ex`, the executor of the session it is on; replaces any earlier one.
  void arm_expiry(asio::any_io_executor ex, server& srv);

 private:
  // deliver and deliver_direct: queue before acceptance, keep direct events for recovery,
  // send nothing while detached.
  void pass_on(const frame_ptr& f, overflow_policy policy, bool direct);
  // Keeps a group of frames to this socket alone (an event and its binary attachments).
  void remember_locked(const frame_ptr* first, std::size_t n);

  mutable std::mutex mu_;
  std::weak_ptr<eio_session> session_;
  std::vector<frame_ptr> pending_;
  bool connected_{false};
  bool closed_{false};
  bool detached_{false};
  const std::size_t recovery_frames_;
  std::string pid_;
  std::deque<std::vector<frame_ptr>> direct_;  // latest events to this socket alone
  std::uint64_t evicted_offset_{0};  // highest offset that fell out of direct_
  std::optional<inbound_limit> limit_;  // made on first use, from the server's config
  auth::identity_ptr identity_;
  std::shared_ptr<const std::vector<std::string>> granted_roles_;
  std::shared_ptr<asio::steady_timer> expiry_;  // cancelled on its own executor
  std::optional<resume_request> resume_;        // a recovery waiting for its connect decision
};

class eio_session : public ws_handler, public std::enable_shared_from_this<eio_session> {
 public:
  enum class transport : std::uint8_t { polling, websocket };
  // Answers a polling request: HTTP status and body.
  using reply_fn = std::function<void(unsigned status, std::string body)>;

  eio_session(server& srv, asio::io_context& ctx, std::string sid, transport t,
              std::string remote, std::vector<std::pair<std::string, std::string>> headers,
              std::string query, bool echo = false);
  ~eio_session() override;

  const std::string& sid() const noexcept { return sid_; }
  const server_config& config() const noexcept;
  // The executor of the session's timers (where its sockets' expiry timers run).
  asio::any_io_executor executor() { return connect_timer_.get_executor(); }
  // A polling session's admission slot (server::admit); given back when the session ends or
  // upgrades to WebSocket (whose connection holds its own slot).
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

  // Sends frames (bare messages, see frame::ws_opcode) in order; thread-safe.
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

  // ws_handler
  void on_ws_text(ws_session& from, std::string_view text) override;
  void on_ws_binary(ws_session& from, std::string_view bytes) override;
  void on_ws_closed(ws_session& from, disconnect_reason why) override;

 private:
  void on_packet(const eio::packet& p, ws_session* via);
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
  // taken to be resumed (after the connect hook and role checks, see server::sio_accept).
  bool try_resume(const sio::packet& p, const auth::identity_ptr& identity);
  bool namespace_allowed(const std::string& nsp) const;
  void send_packet_text(std::string text);
  void arm_ping(std::chrono::milliseconds after);
  void on_ping_timer();
  // Called with mu_ held: takes what a parked GET should answer with, if anything.
  std::optional<std::string> take_polling_body_locked();
  void release_parked(std::string body);

  server& server_;
  const std::string sid_;
  const std::string remote_;
  const std::vector<std::pair<std::string, std::string>> headers_;
  const std::string query_;
  const bool echo_;  // a raw Engine.IO echo session (conformance testing), no Socket.IO
  asio::steady_timer ping_timer_;
  asio::steady_timer connect_timer_;
  asio::steady_timer upgrade_timer_;  // holds a poll that arrives mid-upgrade

  mutable std::mutex mu_;
  transport transport_;
  std::shared_ptr<ws_session> ws_;     // the active WebSocket transport
  std::shared_ptr<ws_session> probe_;  // an upgrade in progress
  bool upgrading_{false};
  std::deque<frame_ptr> queue_;  // polling: packets waiting for a GET
  std::size_t queue_bytes_{0};
  reply_fn parked_;              // polling: a GET waiting for packets
  bool held_{false};             // ... held for an upgrade in progress (see poll())
  bool overflowed_{false};       // the polling queue overflowed; the session is being closed
  bool closed_{false};
  bool awaiting_pong_{false};
  bool lingering_{false};
  std::chrono::steady_clock::time_point pong_deadline_{};  // polling: closed by a POSTed close packet, waiting for a GET
  std::map<std::string, std::shared_ptr<sio_socket>> sockets_;  // by namespace
  std::optional<sio::packet> partial_;  // a binary packet waiting for its attachments
  std::vector<std::string> attachments_;
  std::size_t attachment_bytes_{0};     // in attachments_ (max_attachment_bytes)
  std::optional<token_bucket> connect_limit_;  // CONNECT packets (server_config::inbound_limit)
  std::shared_ptr<void> slot_;          // the admission slot of a polling session
};

}  // namespace skyrelay
