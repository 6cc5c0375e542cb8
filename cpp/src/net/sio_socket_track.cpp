// sio_socket: cross-node recovery's side of a socket (see sio_socket.hpp, track): where it
// stands in each channel of its record, and its offsets "<n>.<version>.<direct>.<pos>...".
#include <algorithm>

#include "skyrelay/net/sio_socket.hpp"

namespace skyrelay {

namespace {
// Whether the publication of `f` named `sid` itself (an emit by sid): the publish script
// counts those in the sid's direct counter.
bool names(const frame& f, const std::string& sid) {
  return std::find(f.to_conns.begin(), f.to_conns.end(), sid) != f.to_conns.end() ||
         std::find(f.to.begin(), f.to.end(), sid) != f.to.end();
}

bool same_channel(const redis::sio_channel_point& p, const channel_pos& c) {
  return p.broadcasts == c.broadcast && (c.broadcast || p.room == c.room);
}
}  // namespace

void sio_socket::track(std::string pid, std::vector<redis::sio_channel_point> channels,
                       std::uint64_t version, std::uint64_t sent, std::uint64_t direct) {
  std::lock_guard lock(mu_);
  auto& r = rec_locked();
  r.pid = std::move(pid);
  r.points = std::move(channels);
  r.version = version;
  r.sent = sent;
  r.forgotten = sent;  // a local resume from before `sent` is not possible here
  r.direct = direct;
  r.tracked = true;
}

bool sio_socket::tracked() const {
  std::lock_guard lock(mu_);
  return rec_ && rec_->tracked;
}

bool sio_socket::track_room(const std::string& room, std::string epoch, std::uint64_t pos) {
  std::lock_guard lock(mu_);
  if (!rec_ || !rec_->tracked) return false;
  for (const auto& p : rec_->points)
    if (!p.broadcasts && p.room == room) return false;  // already followed
  rec_->points.push_back({room, false, std::move(epoch), pos});
  ++rec_->version;
  return true;
}

void sio_socket::untrack_room(const std::string& room) {
  std::lock_guard lock(mu_);
  if (!rec_ || !rec_->tracked) return;
  auto& points = rec_->points;
  const auto n = points.size();
  std::erase_if(points, [&](const auto& p) { return !p.broadcasts && p.room == room; });
  if (points.size() != n) ++rec_->version;
}

void sio_socket::settle(const redis::sio_channel_point& before,
                        const redis::sio_channel_point& after) {
  std::lock_guard lock(mu_);
  if (!rec_ || !rec_->tracked) return;
  if (after.pos != before.pos) {
    rec_->inexact = true;
    return;
  }
  for (auto& p : rec_->points)
    if (p == before) p.epoch = after.epoch;
}

void sio_socket::mark_inexact() {
  std::lock_guard lock(mu_);
  rec_locked().inexact = true;
}

std::optional<redis::sio_recovery_record> sio_socket::record() const {
  std::lock_guard lock(mu_);
  if (!rec_ || !rec_->tracked || rec_->inexact || lost_ || closed_) return std::nullopt;
  const auto* id = access_ ? access_->identity.get() : nullptr;
  return redis::sio_recovery_record{nsp(), sid(), id ? id->subject : std::string(),
                                    rec_->version, rec_->points};
}

void sio_socket::begin_replay() {
  std::lock_guard lock(mu_);
  rec_locked().replaying = true;
}

void sio_socket::end_replay(const std::vector<frame_ptr>& frames) {
  std::lock_guard lock(mu_);
  if (rec_) rec_->replaying = false;
  // Not accepted yet: the replay goes in front of anything queued (which came through no
  // followed channel, see replayed_locked).
  pending_.insert(pending_.begin(), frames.begin(), frames.end());
}

std::uint64_t sio_socket::direct_count() const {
  std::lock_guard lock(mu_);
  return rec_ ? rec_->direct : 0;
}

bool sio_socket::replayed_locked(const frame& f) const {
  if (!f.positions || !rec_) return false;
  for (const auto& c : *f.positions)
    for (const auto& p : rec_->points)
      if (same_channel(p, c)) return true;
  return false;
}

std::string sio_socket::number_locked(const frame& f, std::uint64_t& offset) {
  auto& r = *rec_;  // numbering is for a socket with recovery
  offset = ++r.sent;
  if (!r.tracked) return std::to_string(offset);
  if (f.positions)
    for (const auto& c : *f.positions)
      for (auto& p : r.points)
        if (same_channel(p, c)) p.pos = std::max(p.pos, c.pos);
  if (names(f, sid())) ++r.direct;
  redis::sio_offset o{offset, r.version, r.direct, {}};
  o.pos.reserve(r.points.size());
  for (const auto& p : r.points) o.pos.push_back(p.pos);
  return redis::format_offset(o);
}

}  // namespace skyrelay
