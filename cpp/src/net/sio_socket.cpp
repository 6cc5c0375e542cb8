// sio_socket: a Socket.IO socket (see sio_socket.hpp).
#include "skyrelay/net/sio_socket.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/net/eio_session.hpp"
#include "skyrelay/net/sio_server.hpp"
#include "skyrelay/proto/socketio.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay {

namespace {
frame_ptr text_packet(std::string text) { return make_message(std::move(text), 1, 0, false); }

// Appends `f` and the frames that must follow it (a binary event's attachments).
void append_group(std::vector<frame_ptr>& out, const frame_ptr& f) {
  out.push_back(f);
  out.insert(out.end(), f->followers.begin(), f->followers.end());
}

// The event `shared` ("42[...]", shared by every socket it goes to) as this socket writes it:
// its own WebSocket header, the shared text up to the closing bracket, then the offset as the
// last argument (a string, as Socket.IO clients expect) and the bracket.
frame_ptr with_offset(const frame_ptr& shared, const std::string& offset) {
  frame f;
  const std::string_view text = shared->payload();
  f.middle = text.substr(0, text.size() - 1);  // an event always ends with ']'
  f.tail = ",\"";
  f.tail += offset;
  f.tail += "\"]";
  ws::append_header(f.bytes, ws::opcode::text, f.middle.size() + f.tail.size());
  f.payload_at = static_cast<std::uint8_t>(f.bytes.size());
  f.publish_ns = shared->publish_ns;
  f.is_data = shared->is_data;
  f.ws_opcode = 1;
  f.base = shared;
  return std::make_shared<const frame>(std::move(f));
}

// Whether a kept event came only through rooms the socket has left (`left`).
bool only_through(const frame& f, const std::string& sid, const std::vector<std::string>& left) {
  if (f.to.empty()) return false;  // to everyone in the namespace, or direct
  for (const auto& c : f.to_conns)
    if (c == sid) return false;
  for (const auto& name : f.to)
    if (name == sid || std::find(left.begin(), left.end(), name) == left.end()) return false;
  return true;
}
}  // namespace

sio_socket::sio_socket(std::string sid, std::string nsp,
                       const std::shared_ptr<eio_session>& session, encoder_id encoder,
                       keep_limits keep)
    : subscriber(std::move(sid), encoder, std::move(nsp)),
      session_(session),
      owner_(keep.frames ? nullptr : session) {
  if (keep.frames) {
    rec_ = std::make_unique<recovery>(keep);
    rec_->pid = new_sid();
  }
}

const std::string& sio_socket::pid() const noexcept {
  static const std::string none;
  return rec_ ? rec_->pid : none;
}

sio_socket::recovery& sio_socket::rec_locked() {
  if (!rec_) rec_ = std::make_unique<recovery>(keep_limits{});
  return *rec_;
}

void sio_socket::append_sent(std::vector<frame_ptr>& out, const std::vector<frame_ptr>& group,
                             const std::string& text) {
  out.push_back(text.empty() ? group.front() : with_offset(group.front(), text));
  out.insert(out.end(), group.begin() + 1, group.end());
}

void sio_socket::keep_locked(std::uint64_t offset, std::string text,
                             std::vector<frame_ptr> group) {
  auto& r = *rec_;
  std::size_t bytes = 0;
  for (const auto& f : group) bytes += f->wire_size();
  r.kept.push_back(kept_event{offset, std::move(text), std::move(group), bytes});
  r.kept_bytes += bytes;
  while (r.kept.size() > r.keep.frames || (r.kept_bytes > r.keep.bytes && r.kept.size() > 1)) {
    r.forgotten = r.kept.front().offset;
    r.kept_bytes -= r.kept.front().bytes;
    r.kept.pop_front();
  }
}

void sio_socket::send_locked(eio_session* s, const frame_ptr* first, std::size_t n,
                             overflow_policy policy) {
  if (lost_) return;  // its client must not resume past the hole: see reset()
  if (recovering() && first[0]->numbered) {
    std::vector<frame_ptr> group(first, first + n);
    std::uint64_t offset = 0;
    std::string text = number_locked(*first[0], offset);
    if (s) {
      std::vector<frame_ptr> out;
      out.reserve(n);
      append_sent(out, group, text);
      if (n == 1) {
        s->send(out.front(), policy);
      } else {
        s->send_all(out);
      }
    }
    keep_locked(offset, std::move(text), std::move(group));
    return;
  }
  if (!s) return;  // detached: only events are kept
  if (n == 1) return s->send(first[0], policy);
  s->send_all(std::vector<frame_ptr>(first, first + n));
}

void sio_socket::reset(const sequence_reset& r) {
  if (r.reason.empty() && recovering()) {
    // A sequence that had recorded nothing moved to the broker's: a followed channel's point
    // moves with it (the socket missed nothing of either).
    std::lock_guard lock(mu_);
    for (auto& p : rec_->points)
      if (p.broadcasts == r.broadcasts && (r.broadcasts || p.room == r.ch.room))
        p = {p.room, p.broadcasts, r.epoch, r.seq};
    return;
  }
  if (r.reason.empty() || !recovering()) return;
  std::shared_ptr<eio_session> s;
  {
    std::lock_guard lock(mu_);
    if (lost_ || closed_) return;
    lost_ = true;
    s = session_.lock();
  }
  // Not under the hub's order lock: ending a session calls back into the hub.
  if (s)
    asio::post(s->executor(), [s] { s->close(disconnect_reason::transport_error); });
}

bool sio_socket::take_token(std::string_view event, std::int64_t& wait_ns) {
  std::lock_guard lock(mu_);
  const std::int64_t now = steady_ns();
  if (!limit_) {
    auto s = session_.lock();
    if (!s) return true;
    const auto& cfg = s->config();
    limit_ = std::make_unique<inbound_limit>(cfg.inbound_limit, &cfg.event_limits, now);
  }
  const bool ok = limit_->take(event, now, wait_ns);
  rate_streak_.store(ok ? 0 : rate_streak_.load(std::memory_order_relaxed) + 1,
                     std::memory_order_relaxed);
  return ok;
}

void sio_socket::detach() {
  std::lock_guard lock(mu_);
  detached_ = true;
  session_.reset();
}

bool sio_socket::reattach(std::weak_ptr<eio_session> session, std::uint64_t offset,
                          const std::vector<std::string>& left) {
  std::lock_guard lock(mu_);
  if (!detached_ || closed_ || lost_ || !rec_ || offset < rec_->forgotten ||
      offset > rec_->sent)
    return false;
  auto s = session.lock();
  if (!s) return false;
  detached_ = false;
  session_ = std::move(session);
  std::vector<frame_ptr> frames;
  frames.push_back(text_packet("4" + sio::connect_ok(nsp(), sid(), rec_->pid)));
  for (const auto& e : rec_->kept) {
    if (e.offset <= offset) continue;
    if (!left.empty() && only_through(*e.group.front(), sid(), left)) continue;
    append_sent(frames, e.group, e.text);
  }
  s->send_all(frames);
  return true;
}

bool sio_socket::begin_resume(std::weak_ptr<eio_session> session, resume_request r) {
  std::lock_guard lock(mu_);
  if (!detached_ || closed_) return false;
  session_ = std::move(session);  // for sio_refuse's answer; nothing is sent while detached
  rec_locked().resume = std::move(r);
  // The connect hook grants them anew, or the new token's apply.
  if (access_) access_->granted_roles.reset();
  return true;
}

std::optional<sio_socket::resume_request> sio_socket::take_resume() {
  std::lock_guard lock(mu_);
  if (!rec_) return std::nullopt;
  auto r = std::move(rec_->resume);
  rec_->resume.reset();
  return r;
}

void sio_socket::deliver(const frame_ptr& f, overflow_policy policy) { pass_on(f, policy); }

void sio_socket::deliver_direct(const frame_ptr& f, overflow_policy policy) {
  pass_on(f, policy);
}

void sio_socket::set_wire(ws_session* ws) noexcept {
  if (!owner_) return;
  wire_.store(ws, std::memory_order_release);
  set_write_target(ws ? ws->write_target() : nullptr);  // the transport's outbox
}

void sio_socket::pass_on(const frame_ptr& f, overflow_policy policy) {
  // The fan-out's path: an accepted socket without recovery, a frame without attachments;
  // over WebSocket straight into the transport's outbox, as the session would send it.
  if (straight_.load(std::memory_order_acquire) && f->followers.empty()) {
    if (auto* ws = wire_.load(std::memory_order_acquire)) return ws->deliver(f, policy);
    return owner_->send(f, policy);
  }
  // The frame and its attachments; a frame without any needs no copy.
  std::vector<frame_ptr> group;
  if (!f->followers.empty()) append_group(group, f);
  const frame_ptr* first = group.empty() ? &f : group.data();
  const std::size_t n = group.empty() ? 1 : group.size();
  std::lock_guard lock(mu_);  // keeps the group together, and the offsets in sending order
  if (closed_ || (rec_ && rec_->replaying && replayed_locked(*f))) return;
  if (!connected_) {
    pending_.push_back(f);
    return;
  }
  if (owner_) return send_locked(owner_.get(), first, n, policy);
  auto s = detached_ ? nullptr : session_.lock();
  send_locked(s.get(), first, n, policy);
}

void sio_socket::deliver_all(std::vector<frame_ptr> frames) {
  if (frames.empty()) return;
  std::lock_guard lock(mu_);  // keeps the group together against concurrent deliveries
  if (closed_) return;
  if (!connected_) {
    // Queued as one frame with its attachments as followers, as the hub's frames are.
    if (frames.size() == 1) {
      pending_.push_back(std::move(frames.front()));
    } else {
      frame head = *frames.front();
      head.followers.assign(frames.begin() + 1, frames.end());
      pending_.push_back(std::make_shared<const frame>(std::move(head)));
    }
    return;
  }
  if (owner_) return send_locked(owner_.get(), frames.data(), frames.size(),
                                 overflow_policy::disconnect);
  auto s = detached_ ? nullptr : session_.lock();
  send_locked(s.get(), frames.data(), frames.size(), overflow_policy::disconnect);
}

bool sio_socket::accept() {
  std::lock_guard lock(mu_);
  if (connected_ || closed_) return false;
  connected_ = true;
  std::vector<frame_ptr> frames;
  frames.reserve(pending_.size() + 1);
  frames.push_back(text_packet("4" + sio::connect_ok(nsp(), sid(), pid())));
  std::vector<frame_ptr> group;
  for (const auto& f : pending_) {
    group.clear();
    append_group(group, f);
    if (recovering() && f->numbered) {
      std::uint64_t offset = 0;
      std::string text = number_locked(*f, offset);
      append_sent(frames, group, text);
      keep_locked(offset, std::move(text), group);
    } else {
      frames.insert(frames.end(), group.begin(), group.end());
    }
  }
  pending_.clear();
  if (auto s = session_.lock()) s->send_all(frames);
  // From now on deliveries pass mu_ by (they were queued behind it until here).
  if (owner_) straight_.store(true, std::memory_order_release);
  return true;
}

bool sio_socket::accepted() const {
  std::lock_guard lock(mu_);
  return connected_ && !closed_;
}

bool sio_socket::connected() const {
  std::lock_guard lock(mu_);
  return connected_ && !closed_ && !detached_;
}

void sio_socket::mark_closed() {
  std::shared_ptr<asio::steady_timer> expiry;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    straight_.store(false, std::memory_order_release);
    pending_.clear();
    if (access_) expiry = std::move(access_->expiry);
  }
  if (expiry) asio::post(expiry->get_executor(), [expiry] { expiry->cancel(); });
}

void sio_socket::set_identity(auth::identity_ptr id) {
  std::lock_guard lock(mu_);
  if (id || access_) access_locked().identity = std::move(id);
}

auth::identity_ptr sio_socket::identity() const {
  std::lock_guard lock(mu_);
  return access_ ? access_->identity : nullptr;
}

void sio_socket::grant_roles(std::vector<std::string> roles) {
  auto granted = std::make_shared<const std::vector<std::string>>(std::move(roles));
  std::lock_guard lock(mu_);
  access_locked().granted_roles = std::move(granted);
}

std::shared_ptr<const std::vector<std::string>> sio_socket::roles() const {
  static const std::vector<std::string> none;
  std::lock_guard lock(mu_);
  if (!access_) return {std::shared_ptr<void>(), &none};
  if (access_->granted_roles) return access_->granted_roles;
  const auto& id = access_->identity;
  if (!id) return {std::shared_ptr<void>(), &none};
  return {id, &id->roles};
}

void sio_socket::arm_expiry(asio::any_io_executor ex, sio_server& sio) {
  if (!identity()) return;
  // Made and started on its executor, where its cancellation runs too.
  asio::post(ex, [weak = weak_from_this(), ex, sio = &sio] {
    auto self = weak.lock();
    if (!self) return;
    std::shared_ptr<asio::steady_timer> timer, old;
    {
      std::lock_guard lock(self->mu_);
      if (self->closed_ || !self->access_ || !self->access_->identity) return;
      auto& a = *self->access_;
      old = std::move(a.expiry);
      timer = std::make_shared<asio::steady_timer>(ex, auth::time_left(*a.identity));
      a.expiry = timer;
    }
    if (old) asio::post(old->get_executor(), [old] { old->cancel(); });
    timer->async_wait([timer, weak, sio](boost::system::error_code ec) {
      if (ec) return;
      auto s = weak.lock();
      if (!s) return;
      {
        std::lock_guard lock(s->mu_);
        if (!s->access_ || s->access_->expiry != timer) return;  // replaced by a later token
      }
      sio->expire_socket(s);
    });
  });
}

}  // namespace skyrelay
