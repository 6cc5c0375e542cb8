#include "skyrelay/net/sio_server.hpp"

#include "skyrelay/broker/redis_sio_recovery.hpp"

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/eio_session.hpp"
#include "skyrelay/net/sio_socket.hpp"
#include "skyrelay/proto/socketio.hpp"

namespace skyrelay {

sio_server::sio_server(const server_config& cfg, const app_hooks& hooks, hub& h, metrics& m,
                       dispatcher& d, context_picker next_context)
    : cfg_(cfg),
      hooks_(hooks),
      hub_(h),
      metrics_(m),
      dispatcher_(d),
      next_context_(std::move(next_context)) {}

bool sio_server::accept(const std::string& sid, std::optional<std::vector<std::string>> roles) {
  auto s = find_socket(sid);
  if (!s) return false;
  if (roles && cfg_.roles_from_connect) s->grant_roles(std::move(*roles));
  if (cfg_.access) {
    if (auto refusal = cfg_.access->check_namespace(s->nsp(), *s->roles())) {
      auto& m = metrics_;
      m.add(m.local().forbidden_namespace);
      m.add(m.local().handshakes_rejected);
      refuse(sid, refusal->message, R"({"code":"forbidden"})");
      return false;
    }
  }
  if (auto r = s->take_resume()) return resume_socket(s, r->offset, std::move(r->auth));
  return s->accept();
}

bool sio_server::resume_socket(const std::shared_ptr<sio_socket>& s, std::uint64_t offset,
                               std::string auth) {
  auto session = s->session();
  if (!session) {
    end_socket(s, disconnect_reason::transport_error);
    return false;
  }
  // Before the replay, so that nothing that came only through a room it left is replayed.
  const auto left = recheck_rooms(*s);
  for (const auto& room : left) left_tracked(s, room);
  if (s->reattach(session, offset, left)) {
    s->arm_expiry(session->executor(), *this);
    return true;
  }
  // Too late: the socket no longer keeps all it missed (or the offset is not one it sent).
  // It ends, and the client gets a new socket for the same CONNECT (the hook runs again, for
  // that one).
  metrics_.limit_hit(limit_kind::recovery);
  session->forget_socket(s->nsp());
  end_socket(s, disconnect_reason::transport_error);
  session->open_socket(s->nsp(), std::move(auth), s->identity());
  return false;
}

std::vector<std::string> sio_server::recheck_rooms(const sio_socket& s) {
  std::vector<std::string> left;
  if (!cfg_.access || !cfg_.access->has_room_rules()) return left;
  const auto roles = s.roles();
  for (const auto& room : hub_.rooms_of(s.sid())) {
    if (!cfg_.access->check_room(room.nsp, room.room, *roles)) continue;
    hub_.leave(s.sid(), room);
    left.push_back(room.room);
    metrics_.add(metrics_.local().forbidden_room);
  }
  return left;
}

bool sio_server::refuse(const std::string& sid, const std::string& message,
                        const std::string& data_json) {
  auto s = find_socket(sid);
  if (!s) return false;
  auto session = s->session();
  end_socket(s, disconnect_reason::server_disconnect);  // never accepted: no on_disconnect
  if (session) {
    session->forget_socket(s->nsp());
    session->send(make_message("4" + sio::connect_error(s->nsp(), message, data_json), 1, 0,
                               false));
  }
  return true;
}

namespace {

// The Engine.IO message `message` ("4" and a Socket.IO packet) and its binary attachments, to
// one socket.
void deliver_message(sio_socket& s, std::string_view message,
                     std::vector<std::string> attachments) {
  std::vector<frame_ptr> frames;
  frames.reserve(attachments.size() + 1);
  frames.push_back(make_message(message, 1, steady_ns(), true));
  for (auto& a : attachments) frames.push_back(make_message(std::move(a), 2, 0, true));
  s.deliver_all(std::move(frames));
}

}  // namespace

bool sio_server::send(const std::string& sid, std::string packet,
                      std::vector<std::string> attachments) {
  auto s = find_socket(sid);
  if (!s) return false;
  deliver_message(*s, "4" + packet, std::move(attachments));
  return true;
}

bool sio_server::emit(const std::string& sid, const std::string& event, const std::string& args,
                      std::vector<std::string> attachments, std::int64_t ack_id) {
  auto s = find_socket(sid);
  if (!s) return false;
  std::optional<std::uint64_t> id;
  if (ack_id >= 0) id = static_cast<std::uint64_t>(ack_id);
  // An event like the hub's: with recovery, the socket numbers it (frame::numbered).
  frame f;
  f.bytes = sio::event_frame_bytes(s->nsp(), event, args, attachments.size(), id, f.payload_at);
  f.publish_ns = steady_ns();
  f.ws_opcode = 1;
  f.numbered = true;
  if (store_) f.to_conns = {sid};
  std::vector<frame_ptr> frames;
  frames.reserve(attachments.size() + 1);
  frames.push_back(std::make_shared<const frame>(std::move(f)));
  for (auto& a : attachments) frames.push_back(make_message(std::move(a), 2, 0, true));
  // Counted as the publish script counts emits by sid (cross-node recovery's proof that
  // none was missed); the socket counts it too (to_conns names it).
  if (store_ && s->tracked()) store_->count_direct(sid);
  s->deliver_all(std::move(frames));
  return true;
}

bool sio_server::ack(const std::string& sid, std::uint64_t id, const std::string& args,
                     std::vector<std::string> attachments) {
  // One look-up, and the message built in one string (an answer per event on the handler path).
  auto s = find_socket(sid);
  if (!s) return false;
  // (The message first: the attachments are moved into the call after.)
  std::string message = sio::ack_message(s->nsp(), id, args, attachments.size());
  deliver_message(*s, message, std::move(attachments));
  return true;
}

bool sio_server::disconnect(const std::string& sid) {
  auto s = find_socket(sid);
  if (!s) return false;
  if (auto session = s->session()) session->disconnect_socket(s->nsp());
  return true;
}

void sio_server::expire_socket(const std::shared_ptr<sio_socket>& s) {
  auto session = s->session();
  if (!session) {
    // Detached, waiting for its client to come back: it will not.
    bool waiting = false;
    {
      std::lock_guard lock(mu_);
      auto it = detached_.find(s->pid());
      if (it != detached_.end() && it->second == s) {
        detached_.erase(it);
        waiting = true;
      }
    }
    if (waiting) end_socket(s, disconnect_reason::token_expired);
    return;
  }
  if (!s->accepted()) {
    // Still waiting for the connect hook: refused, as a CONNECT with this token would be now.
    refuse(s->sid(), "token expired", R"({"code":"expired"})");
    return;
  }
  // The client learns why (a "token_expired" event), then gets DISCONNECT.
  std::vector<frame_ptr> frames;
  frames.push_back(make_message(
      "4" + sio::event(s->nsp(), "token_expired",
                       R"({"code":"token_expired","message":"token expired"})"),
      1, steady_ns(), false));
  s->deliver_all(std::move(frames));
  session->disconnect_socket(s->nsp(), disconnect_reason::token_expired, s.get());
}

void sio_server::end_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why) {
  const bool was_connected = s->accepted();
  s->mark_closed();
  if (store_ && s->tracked()) store_->drop(s->pid());  // ended for good: no resume elsewhere
  hub_.remove(s->sid());
  {
    std::lock_guard lock(mu_);
    sockets_.erase(s->sid());
  }
  if (!was_connected) return;
  metrics_.disconnect(why);
  if (hooks_.on_disconnect) {
    dispatcher_.post_always([this, sid = s->sid(), why, id = s->identity()] {
      hooks_.on_disconnect(sid, why, id);
    });
  }
}

void sio_server::detach_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why) {
  s->detach();
  {
    std::lock_guard lock(mu_);
    detached_[s->pid()] = s;
  }
  auto timer = std::make_shared<asio::steady_timer>(next_context_(), cfg_.sio_recovery_window);
  timer->async_wait([this, timer, s, why](boost::system::error_code ec) {
    if (ec) return;
    bool expired = false;
    {
      std::lock_guard lock(mu_);
      auto it = detached_.find(s->pid());
      if (it != detached_.end() && it->second == s) {
        detached_.erase(it);
        expired = true;
      }
    }
    if (expired) end_socket(s, why);
  });
}

std::shared_ptr<sio_socket> sio_server::take_detached(const std::string& pid,
                                                      const std::string& nsp) {
  std::lock_guard lock(mu_);
  auto it = detached_.find(pid);
  if (it == detached_.end() || it->second->nsp() != nsp) return nullptr;
  auto s = it->second;
  detached_.erase(it);
  return s;
}

void sio_server::register_eio(const std::shared_ptr<eio_session>& s) {
  std::lock_guard lock(mu_);
  eio_sessions_[s->sid()] = s;
}

void sio_server::unregister_eio(const std::string& sid) {
  std::lock_guard lock(mu_);
  eio_sessions_.erase(sid);
}

std::shared_ptr<eio_session> sio_server::find_eio(const std::string& sid) const {
  std::lock_guard lock(mu_);
  auto it = eio_sessions_.find(sid);
  return it == eio_sessions_.end() ? nullptr : it->second;
}

void sio_server::register_socket(const std::shared_ptr<sio_socket>& s) {
  std::lock_guard lock(mu_);
  sockets_[s->sid()] = s;
}

std::shared_ptr<sio_socket> sio_server::find_socket(const std::string& sid) const {
  std::lock_guard lock(mu_);
  auto it = sockets_.find(sid);
  return it == sockets_.end() ? nullptr : it->second.lock();
}

void sio_server::shut_down() {
  std::vector<std::shared_ptr<eio_session>> eio_open;
  {
    std::lock_guard lock(mu_);
    for (auto& [sid, s] : eio_sessions_) eio_open.push_back(s);
  }
  for (auto& s : eio_open) s->close(disconnect_reason::server_shutdown);
  eio_open.clear();
  std::unordered_map<std::string, std::shared_ptr<sio_socket>> waiting;
  std::shared_ptr<asio::steady_timer> refresh;
  {
    std::lock_guard lock(mu_);
    waiting.swap(detached_);
    stopping_ = true;
    refresh = std::move(refresh_timer_);
  }
  if (refresh) asio::post(refresh->get_executor(), [refresh] { refresh->cancel(); });
  for (auto& [pid, s] : waiting) end_socket(s, disconnect_reason::server_shutdown);
}

void sio_server::clear() {
  std::lock_guard lock(mu_);
  eio_sessions_.clear();
  sockets_.clear();
}

}  // namespace skyrelay
