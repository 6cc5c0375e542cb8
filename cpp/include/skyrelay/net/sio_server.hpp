// The Socket.IO server: the registries of Engine.IO sessions and Socket.IO sockets, the sockets
// detached for connection state recovery, and the application's control of sockets (accept,
// refuse, emit, ack, send, disconnect), with recovery and the role recheck on resume.
//
// Thread-safe: the application calls it from any thread, sessions from their I/O threads. Its
// registries sit under one mutex; no I/O and no callback runs under it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "skyrelay/core/config.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/app_hooks.hpp"
#include "skyrelay/net/metrics.hpp"

namespace skyrelay {

namespace redis {
class sio_recovery_store;
struct sio_channel_point;
struct sio_offset;
}
class eio_session;
class sio_socket;

class sio_server {
 public:
  // The I/O context for a new timer (round-robin over the server's contexts).
  using context_picker = std::function<asio::io_context&()>;

  // Keeps references to every argument, which must outlive it.
  sio_server(const server_config& cfg, const app_hooks& hooks, hub& h, metrics& m,
             dispatcher& d, context_picker next_context);
  sio_server(const sio_server&) = delete;
  sio_server& operator=(const sio_server&) = delete;

  // The application's side; each is false when the socket is gone.
  // Accepts a CONNECT unless the namespace's role requirement refuses it (then connect_error
  // with data {"code":"forbidden"}); with `roles` (server_config::roles_from_connect), the
  // socket's roles become those, in place of its token's, before the check. A recovering
  // socket (sio_connect_info::recovered) also leaves the rooms its roles no longer allow, then
  // gets what it missed; false when that was too late (it ended, a new socket was opened).
  bool accept(const std::string& sid,
              std::optional<std::vector<std::string>> roles = std::nullopt);
  bool refuse(const std::string& sid, const std::string& message, const std::string& data_json);
  // Sends a Socket.IO packet (its text, without the Engine.IO type) and its binary attachments.
  bool send(const std::string& sid, std::string packet, std::vector<std::string> attachments);
  // An EVENT to one socket, in its namespace: `args` is the JSON text of the arguments after the
  // name (without brackets); `ack_id` >= 0 asks the client for an acknowledgement.
  bool emit(const std::string& sid, const std::string& event, const std::string& args,
            std::vector<std::string> attachments, std::int64_t ack_id);
  // The ACK for a client's EVENT: `args` is a JSON array.
  bool ack(const std::string& sid, std::uint64_t id, const std::string& args,
           std::vector<std::string> attachments);
  bool disconnect(const std::string& sid);

  // Engine.IO sessions, by sid (used by the HTTP and Engine.IO sessions).
  void register_eio(const std::shared_ptr<eio_session>& s);
  void unregister_eio(const std::string& sid);
  std::shared_ptr<eio_session> find_eio(const std::string& sid) const;

  // Socket.IO sockets, by sid (used by the Engine.IO sessions).
  void register_socket(const std::shared_ptr<sio_socket>& s);
  std::shared_ptr<sio_socket> find_socket(const std::string& sid) const;
  // A socket ended: out of the hub and the registry, and on_disconnect if it was connected.
  void end_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why);
  // Recovery: keeps a socket whose transport dropped for the recovery window; ends it (with
  // `why`) if its client has not come back by then.
  void detach_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why);
  // The detached socket with this pid in namespace `nsp`, removed from the waiting list.
  std::shared_ptr<sio_socket> take_detached(const std::string& pid, const std::string& nsp);
  // A socket's token expired: it is disconnected (or, still waiting for the connect hook,
  // refused) with disconnect_reason::token_expired.
  void expire_socket(const std::shared_ptr<sio_socket>& s);

  // Cross-node recovery (docs/architecture.md, "Socket.IO recovery across nodes"): on with a
  // Redis broker on one server or Sentinel (server_shared_state.cpp), off without (null).
  // `store` outlives this server; `node_id` is the broker's; `warm` is the broker's warm
  // (broker::warm). Call before any connection.
  using warm_fn =
      std::function<void(const std::vector<channel>& rooms, std::function<void(bool)> done)>;
  void set_recovery_store(redis::sio_recovery_store* store, std::string node_id, warm_fn warm);
  redis::sio_recovery_store* recovery_store() const noexcept { return store_; }
  // A new socket: `add` runs hub::add; with cross-node recovery on and the socket's recovery
  // on, the socket gets its pid and first record (its namespace's broadcasts, whose point is
  // read before and after the add).
  void track_new(const std::shared_ptr<sio_socket>& s, const std::function<bool()>& add);
  // A join of a tracked socket (server::join_checked): `join` runs hub::join; the room's
  // point is read before and after it. Its result.
  bool join_tracked(const std::shared_ptr<sio_socket>& s, const channel& room,
                    const std::function<bool()>& join);
  // A leave of a tracked socket, after hub::leave.
  void left_tracked(const std::shared_ptr<sio_socket>& s, const std::string& room);
  // Writes the socket's record (or drops it when it has none now). Does not wait.
  void save_record(const std::shared_ptr<sio_socket>& s);
  // The cross-node resume (sio_server_remote.cpp): a CONNECT on `session` presented a pid
  // and offset that no socket of this node has. Runs on the dispatcher (the claim waits for
  // Redis): the socket comes back with what it missed and `recovered` true, or a new socket
  // is opened (`recovered` false), the refusal counted by reason.
  void resume_elsewhere(const std::shared_ptr<eio_session>& session, std::string nsp,
                        std::string pid, std::string offset, std::string auth,
                        auth::identity_ptr identity);
  // /metrics lines of cross-node recovery (nothing when it is off).
  void append_recovery_metrics(std::string& out) const;
  enum class refusal : std::size_t {
    unknown, namespace_, subject, version, direct, epoch, trimmed, unavailable, count
  };

  // server::stop, before the drain: closes every Engine.IO session and ends the detached
  // sockets, with disconnect_reason::server_shutdown.
  void shut_down();
  // server::stop, once no I/O thread runs: drops the registries (sessions hold timers of the
  // I/O contexts, so they must go before the contexts do).
  void clear();

 private:
  // accept() for a socket that asked to resume from `offset` (see accept).
  bool resume_socket(const std::shared_ptr<sio_socket>& s, std::uint64_t offset, std::string auth);
  // Leaves the rooms whose role requirement (access_policy room rules) the socket's roles no
  // longer meet; their names.
  std::vector<std::string> recheck_rooms(const sio_socket& s);
  // resume_elsewhere's steps (sio_server_remote.cpp), on the dispatcher.
  std::optional<refusal> resume_claimed(const std::shared_ptr<eio_session>& session,
                                        const std::string& nsp, const std::string& pid,
                                        const std::string& offset, const std::string& auth,
                                        const auth::identity_ptr& identity);
  std::optional<refusal> replay_on(const std::shared_ptr<eio_session>& session,
                                   const std::string& nsp, const std::string& pid,
                                   const std::string& sid,
                                   std::vector<redis::sio_channel_point> points,
                                   const std::vector<std::string>& topics, std::uint64_t version,
                                   const redis::sio_offset& off, const std::string& auth,
                                   const auth::identity_ptr& identity);
  void refused(refusal why);
  // Rewrites every tracked socket's record each window / 3 (started with the first record).
  void start_refresh();
  void refresh();

  const server_config& cfg_;
  const app_hooks& hooks_;
  hub& hub_;
  metrics& metrics_;
  dispatcher& dispatcher_;
  context_picker next_context_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<eio_session>> eio_sessions_;
  std::unordered_map<std::string, std::weak_ptr<sio_socket>> sockets_;
  std::unordered_map<std::string, std::shared_ptr<sio_socket>> detached_;  // by pid

  redis::sio_recovery_store* store_{nullptr};
  std::string node_id_;
  warm_fn warm_;
  std::shared_ptr<asio::steady_timer> refresh_timer_;  // guarded by mu_
  bool stopping_{false};                                // guarded by mu_
  std::atomic<std::uint64_t> resumes_{0};
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(refusal::count)> refusals_{};
};

}  // namespace skyrelay
