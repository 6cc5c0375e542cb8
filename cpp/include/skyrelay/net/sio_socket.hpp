// A Socket.IO v5 socket: one namespace of one Engine.IO session (see eio_session.hpp).
//
// It is what the hub delivers to; it queues frames until the socket is accepted and, with
// connection state recovery, numbers the events it sends (their offsets), keeps the latest
// ones and can outlive its session (detach).
//
// Its state is guarded by its own mutex; no I/O and no callback runs under it. A socket
// without recovery, once accepted, passes deliveries on without it: an atomic flag and the
// session it holds for its whole life; over WebSocket, straight into the transport's outbox
// (see set_wire), without touching the session.
#pragma once

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/container/deque.hpp>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/broker/redis_sio_recovery.hpp"
#include "skyrelay/core/frame.hpp"
#include "skyrelay/limits/inbound_limit.hpp"
#include "skyrelay/hub/subscriber.hpp"
#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class sio_server;
class eio_session;
class ws_session;

// A Socket.IO socket: one namespace of one Engine.IO session; what the hub delivers to.
class sio_socket : public subscriber, public std::enable_shared_from_this<sio_socket> {
 public:
  // What a socket with recovery keeps of the events it was sent (the latest ones, from every
  // source): at most `frames` events and `bytes` bytes of their frames. frames 0: recovery off.
  struct keep_limits {
    std::size_t frames{0};
    std::size_t bytes{0};
  };
  // With `keep.frames` > 0, connection state recovery is on for this socket: it gets a pid,
  // numbers each event it sends (frame::numbered) with its offset, 1, 2, 3..., written as the
  // event's last argument, keeps the latest events within `keep`, and can outlive its session
  // (detach). `encoder` is the hub's id of the Socket.IO encoder (session_context::encoders).
  // `session` is alive.
  sio_socket(std::string sid, std::string nsp, const std::shared_ptr<eio_session>& session,
             encoder_id encoder, keep_limits keep);

  // Queues frames until the socket is accepted, then passes them to the session.
  void deliver(const frame_ptr& f, overflow_policy policy) override;
  void deliver_direct(const frame_ptr& f, overflow_policy policy) override;
  // A channel's sequence changed under the socket and something was lost (a cluster
  // broker's reset). Socket.IO has no packet for it: a socket with connection state
  // recovery sends nothing more, ends its transport (the client reconnects) and refuses to
  // be resumed, so the client's reconnection comes back with `recovered` false, its
  // explicit reset. A socket without recovery promises at most once: nothing is done.
  void reset(const sequence_reset& r) override;
  // Several frames for this socket alone that must stay together (a binary packet and its
  // attachments).
  void deliver_all(std::vector<frame_ptr> frames);
  // Sends the CONNECT reply, then what was queued meanwhile. False if already decided.
  bool accept();
  bool connected() const;  // accepted, and not detached
  bool accepted() const;   // accepted (detached or not), and not closed
  void mark_closed();
  std::shared_ptr<eio_session> session() const { return session_.lock(); }
  // The session's WebSocket transport (null: none, polling, or the session closed), which
  // deliveries reach without the session. Called by the session under its mutex while the
  // socket is in it, so a socket's wire is always its session's, or null. Kept only by a
  // socket without recovery: its session, held for its whole life, keeps the transport alive
  // (eio_session's wire_keep_), so the pointer never dangles; a socket with recovery ignores it.
  void set_wire(ws_session* ws) noexcept;

  // The socket's inbound limit (server_config::inbound_limit, event_limits): false when the
  // event is over it, with the wait until a token is back. Thread-safe.
  bool take_token(std::string_view event, std::int64_t& wait_ns);
  // Events refused in a row by take_token (0 after one let in): 1 marks a run's first.
  std::uint64_t rate_streak() const noexcept {
    return rate_streak_.load(std::memory_order_relaxed);
  }

  // Recovery. The pid the client presents to resume ("" when recovery is off).
  const std::string& pid() const noexcept;

  // Cross-node recovery (a Redis broker's; docs/architecture.md, "Socket.IO recovery across
  // nodes"). Before the socket is accepted: it takes `pid` (redis::make_pid's) and follows its
  // place in each channel of `channels` (its namespace's broadcasts first, then its rooms):
  // each event's offset becomes redis::format_offset's "<n>.<version>.<direct>.<pos>...",
  // numbered from `sent` + 1, counting `direct` on from the given value.
  void track(std::string pid, std::vector<redis::sio_channel_point> channels,
             std::uint64_t version, std::uint64_t sent, std::uint64_t direct);
  bool tracked() const;
  // A room joined: its point (the room's position read before the join) is followed from
  // now; call it before hub::join. untrack_room: left, or the join failed. Each is a new
  // version of the record. mark_inexact: the join point could not be read exactly (a
  // publication landed during the join): the socket has no record from now on.
  // track_room is false (and changes nothing) when the room is followed already.
  bool track_room(const std::string& room, std::string epoch, std::uint64_t pos);
  void untrack_room(const std::string& room);
  // After the join (or, for the broadcasts, the add): `before` is the point given to
  // track_room (or track), `after` the channel's point read now. A publication in between
  // (another position) makes the socket inexact: it has no record from now on. Else the
  // point takes the epoch read now, unless the channel moved it meanwhile.
  void settle(const redis::sio_channel_point& before, const redis::sio_channel_point& after);
  void mark_inexact();
  // The record to save now (nullopt: not tracked, inexact, or lost after a reset).
  std::optional<redis::sio_recovery_record> record() const;
  // Resuming on this node: until end_replay, deliveries of a followed channel are dropped
  // (the replay holds them); end_replay queues `frames` first (runs under the channels'
  // order locks, as hub::subscribe_after's callback).
  void begin_replay();
  void end_replay(const std::vector<frame_ptr>& frames);
  // Direct events this socket was given (emits by sid), for the counter check.
  std::uint64_t direct_count() const;
  // The transport dropped: stay in the rooms, send nothing; history keeps what comes.
  void detach();
  // The client came back on `session` having seen the events up to `offset` (its last
  // event's offset). Sends CONNECT, then the kept events after `offset`, in order and with
  // their offsets, except those that came only through a room in `left` (rooms its roles no
  // longer allow). False (and nothing sent) when some of them are no longer kept, or `offset`
  // is one this socket never sent.
  bool reattach(std::weak_ptr<eio_session> session, std::uint64_t offset,
                const std::vector<std::string>& left);
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
  // An event this socket sent (or, detached, was given): its frames as delivered (the shared
  // ones, attachments after the event) and its offset.
  struct kept_event {
    std::uint64_t offset;
    std::string text;  // the offset as written (tracked sockets: format_offset's)
    std::vector<frame_ptr> group;
    std::size_t bytes;
  };

  // deliver and deliver_direct: queue before acceptance, then pass on.
  void pass_on(const frame_ptr& f, overflow_policy policy);
  // Sends a group (an event and its binary attachments) to `s` (null: detached), numbering
  // and keeping an event when recovery is on. With mu_ held.
  void send_locked(eio_session* s, const frame_ptr* first, std::size_t n,
                   overflow_policy policy);
  // Adds the group to `out` as this socket writes it, the event with `offset` if numbered.
  static void append_sent(std::vector<frame_ptr>& out, const std::vector<frame_ptr>& group,
                          const std::string& text);
  void keep_locked(std::uint64_t offset, std::string text, std::vector<frame_ptr> group);
  // Numbers an event: the next offset, and its text (tracked: the channels' points advanced
  // by the frame's positions first). With mu_ held.
  std::string number_locked(const frame& f, std::uint64_t& offset);
  // Tracked, replaying: whether `f` is of a followed channel (then the replay has it).
  bool replayed_locked(const frame& f) const;

  // First, next to the subscriber's fields that the hub's fan-out reads anyway (one cache
  // line per delivery): whether deliveries pass mu_ by (without recovery: accepted and not
  // closed), and the WebSocket transport they then go into (set_wire).
  std::atomic<bool> straight_{false};
  std::atomic<ws_session*> wire_{nullptr};
  mutable std::mutex mu_;
  std::weak_ptr<eio_session> session_;
  // Without recovery: the session, for the socket's whole life (it cannot detach).
  const std::shared_ptr<eio_session> owner_;
  std::vector<frame_ptr> pending_;
  bool connected_{false};
  bool closed_{false};
  bool detached_{false};
  bool lost_{false};  // reset(): sends nothing more, cannot be resumed
  std::unique_ptr<inbound_limit> limit_;  // made on first use, from the server's config
  std::atomic<std::uint64_t> rate_streak_{0};  // written under mu_ (take_token)
  // The socket's token, the roles a connect hook granted, and the timer of the token's
  // expiry: made by the first of them (a socket with none, without a token, keeps 8 bytes).
  struct access {
    auth::identity_ptr identity;
    std::shared_ptr<const std::vector<std::string>> granted_roles;
    std::shared_ptr<asio::steady_timer> expiry;  // cancelled on its own executor
  };
  std::unique_ptr<access> access_;  // with mu_ held
  access& access_locked() {
    if (!access_) access_ = std::make_unique<access>();
    return *access_;
  }
  // Connection state recovery's state, made only for a socket with recovery on (or tracked):
  // ~230 bytes that a socket without it does not keep (docs/benchmarks.md).
  struct recovery {
    explicit recovery(keep_limits k) : keep(k) {}
    const keep_limits keep;
    std::string pid;
    std::uint64_t sent{0};       // the last offset given
    std::uint64_t forgotten{0};  // the highest offset dropped from kept
    boost::container::deque<kept_event> kept;
    std::size_t kept_bytes{0};
    std::optional<resume_request> resume;  // a recovery waiting for its connect decision
    // Cross-node recovery (track): the record's channels and where the socket stands in them.
    bool tracked{false};
    bool inexact{false};
    bool replaying{false};
    std::uint64_t version{0};
    std::uint64_t direct{0};
    std::vector<redis::sio_channel_point> points;
  };
  // Whether events are numbered and kept (recovery on). With mu_ held, or from a constant
  // socket (keep never changes once made).
  bool recovering() const noexcept { return rec_ && rec_->keep.frames; }
  recovery& rec_locked();  // rec_, made when missing; with mu_ held

  std::unique_ptr<recovery> rec_;
};

}  // namespace skyrelay
