// A Socket.IO v5 socket: one namespace of one Engine.IO session (see eio_session.hpp).
//
// It is what the hub delivers to; it queues frames until the socket is accepted, keeps the
// events sent to it alone for connection state recovery, and can outlive its session (detach).
// Its state is guarded by its own mutex; no I/O and no callback runs under it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/frame.hpp"
#include "skyrelay/limits/inbound_limit.hpp"
#include "skyrelay/hub/subscriber.hpp"
#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class sio_server;
class eio_session;

// A Socket.IO socket: one namespace of one Engine.IO session; what the hub delivers to.
class sio_socket : public subscriber, public std::enable_shared_from_this<sio_socket> {
 public:
  // `recovery_frames` > 0 turns on connection state recovery for this socket: it gets a pid,
  // can outlive its session (detach), and keeps up to that many of the latest events sent to it
  // alone; events to its rooms and namespace are replayed from the hub's history. `encoder` is
  // the hub's id of the Socket.IO encoder (session_context::encoders).
  sio_socket(std::string sid, std::string nsp, std::weak_ptr<eio_session> session,
             encoder_id encoder, std::size_t recovery_frames = 0);

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
  // nothing) and loses the roles a connect hook granted it, until sio_server::accept resumes
  // it (take_resume) or sio_server::refuse ends it. False when it was closed meanwhile.
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
  // Roles the connect hook gave the socket, in place of its token's (sio_server::accept).
  void grant_roles(std::vector<std::string> roles);
  // The roles its role requirements are checked against: granted ones, else the token's.
  std::shared_ptr<const std::vector<std::string>> roles() const;
  // (Re)starts the timer that ends the socket when its token expires
  // (sio_server::expire_socket), on `ex`, the executor of the session it is on; replaces any
  // earlier one. `sio` outlives the socket.
  void arm_expiry(asio::any_io_executor ex, sio_server& sio);

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

}  // namespace skyrelay
