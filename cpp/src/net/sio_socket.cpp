// sio_socket: a Socket.IO socket (see sio_socket.hpp).
#include "skyrelay/net/sio_socket.hpp"

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/net/eio_session.hpp"
#include "skyrelay/net/sio_server.hpp"
#include "skyrelay/proto/socketio.hpp"

namespace skyrelay {

namespace {
frame_ptr text_packet(std::string text) { return make_message(std::move(text), 1, 0, false); }

// Appends `f` and the frames that must follow it (a binary event's attachments).
void append_group(std::vector<frame_ptr>& out, const frame_ptr& f) {
  out.push_back(f);
  out.insert(out.end(), f->followers.begin(), f->followers.end());
}
}  // namespace

sio_socket::sio_socket(std::string sid, std::string nsp, std::weak_ptr<eio_session> session,
                       encoder_id encoder, std::size_t recovery_frames)
    : subscriber(std::move(sid), encoder, std::move(nsp)),
      session_(std::move(session)),
      recovery_frames_(recovery_frames),
      pid_(recovery_frames ? new_sid() : std::string()) {}

void sio_socket::remember_locked(const frame_ptr* first, std::size_t n) {
  if (!recovery_frames_ || n == 0 || !first[0]->offset) return;  // only events carry offsets
  direct_.emplace_back(first, first + n);
  if (direct_.size() > recovery_frames_) {
    evicted_offset_ = direct_.front().front()->offset;
    direct_.pop_front();
  }
}

bool sio_socket::take_token(std::string_view event, std::int64_t& wait_ns) {
  std::lock_guard lock(mu_);
  const std::int64_t now = steady_ns();
  if (!limit_) {
    auto s = session_.lock();
    if (!s) return true;
    const auto& cfg = s->config();
    limit_.emplace(cfg.inbound_limit, &cfg.event_limits, now);
  }
  return limit_->take(event, now, wait_ns);
}

void sio_socket::detach() {
  std::lock_guard lock(mu_);
  detached_ = true;
  session_.reset();
}

bool sio_socket::reattach(std::weak_ptr<eio_session> session, std::uint64_t offset,
                          std::vector<frame_ptr>& missed) {
  std::lock_guard lock(mu_);
  if (!detached_ || closed_ || evicted_offset_ > offset) return false;
  detached_ = false;
  session_ = std::move(session);
  // Merge the two id-ordered lists; a direct group stays together.
  std::vector<frame_ptr> frames;
  frames.reserve(missed.size() + 1);
  frames.push_back(make_message("4" + sio::connect_ok(nsp(), sid(), pid_), 1, 0, false));
  auto next = missed.begin();
  for (const auto& group : direct_) {
    const std::uint64_t id = group.front()->offset;
    if (id <= offset) continue;
    for (; next != missed.end() && (*next)->offset < id; ++next) append_group(frames, *next);
    frames.insert(frames.end(), group.begin(), group.end());
  }
  for (; next != missed.end(); ++next) append_group(frames, *next);
  if (auto s = session_.lock()) s->send_all(frames);
  return true;
}

bool sio_socket::begin_resume(std::weak_ptr<eio_session> session, resume_request r) {
  std::lock_guard lock(mu_);
  if (!detached_ || closed_) return false;
  session_ = std::move(session);  // for sio_refuse's answer; nothing is sent while detached
  resume_ = std::move(r);
  granted_roles_.reset();  // the connect hook grants them anew, or the new token's apply
  return true;
}

std::optional<sio_socket::resume_request> sio_socket::take_resume() {
  std::lock_guard lock(mu_);
  auto r = std::move(resume_);
  resume_.reset();
  return r;
}

void sio_socket::deliver(const frame_ptr& f, overflow_policy policy) { pass_on(f, policy, false); }

void sio_socket::deliver_direct(const frame_ptr& f, overflow_policy policy) {
  pass_on(f, policy, true);
}

void sio_socket::pass_on(const frame_ptr& f, overflow_policy policy, bool direct) {
  std::shared_ptr<eio_session> s;
  // The frame and its attachments; a frame without any (the fan-out's case) needs no copy.
  std::vector<frame_ptr> group;
  if (!f->followers.empty()) append_group(group, f);
  const frame_ptr* first = group.empty() ? &f : group.data();
  const std::size_t n = group.empty() ? 1 : group.size();
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (!connected_) {
      pending_.push_back(f);
      return;
    }
    // Events to this socket alone are kept for its return; the hub's history has the rest.
    if (direct) remember_locked(first, n);
    if (detached_) return;
    s = session_.lock();
  }
  if (!s) return;
  if (n == 1) return s->send(f, policy);
  s->send_all(group);
}

void sio_socket::deliver_all(std::vector<frame_ptr> frames) {
  std::lock_guard lock(mu_);  // keeps the group together against concurrent deliveries
  if (closed_) return;
  if (!connected_) {
    pending_.insert(pending_.end(), frames.begin(), frames.end());
    return;
  }
  remember_locked(frames.data(), frames.size());
  if (detached_) return;
  if (auto s = session_.lock()) s->send_all(frames);
}

bool sio_socket::accept() {
  std::lock_guard lock(mu_);
  if (connected_ || closed_) return false;
  connected_ = true;
  std::vector<frame_ptr> frames;
  frames.reserve(pending_.size() + 1);
  frames.push_back(text_packet("4" + sio::connect_ok(nsp(), sid(), pid_)));
  for (const auto& f : pending_) append_group(frames, f);
  pending_.clear();
  if (auto s = session_.lock()) s->send_all(frames);
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
    pending_.clear();
    expiry = std::move(expiry_);
  }
  if (expiry) asio::post(expiry->get_executor(), [expiry] { expiry->cancel(); });
}

void sio_socket::set_identity(auth::identity_ptr id) {
  std::lock_guard lock(mu_);
  identity_ = std::move(id);
}

auth::identity_ptr sio_socket::identity() const {
  std::lock_guard lock(mu_);
  return identity_;
}

void sio_socket::grant_roles(std::vector<std::string> roles) {
  auto granted = std::make_shared<const std::vector<std::string>>(std::move(roles));
  std::lock_guard lock(mu_);
  granted_roles_ = std::move(granted);
}

std::shared_ptr<const std::vector<std::string>> sio_socket::roles() const {
  static const std::vector<std::string> none;
  std::lock_guard lock(mu_);
  if (granted_roles_) return granted_roles_;
  if (!identity_) return {std::shared_ptr<void>(), &none};
  return {identity_, &identity_->roles};
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
      if (self->closed_ || !self->identity_) return;
      old = std::move(self->expiry_);
      timer = std::make_shared<asio::steady_timer>(ex, auth::time_left(*self->identity_));
      self->expiry_ = timer;
    }
    if (old) asio::post(old->get_executor(), [old] { old->cancel(); });
    timer->async_wait([timer, weak, sio](boost::system::error_code ec) {
      if (ec) return;
      auto s = weak.lock();
      if (!s) return;
      {
        std::lock_guard lock(s->mu_);
        if (s->expiry_ != timer) return;  // replaced by a later token
      }
      sio->expire_socket(s);
    });
  });
}

}  // namespace skyrelay
