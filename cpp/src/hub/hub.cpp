#include "skyrelay/hub/hub.hpp"

#include <algorithm>
#include <stdexcept>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/core/random.hpp"

// The registry: connections, rooms and their members. Channels' logs and order are in
// hub_channels.cpp, routing and fan-out in hub_publish.cpp, replays in hub_history.cpp.

namespace skyrelay {

hub::hub() : epoch_prefix_(new_sid().substr(0, 8)) {
  for (auto& s : conn_shards_) s.all = std::make_shared<const member_list>();
}

encoder_id hub::add_encoder(encoder_fn fn) {
  std::lock_guard lock(encoders_mu_);
  const std::size_t n = encoder_count_.load(std::memory_order_relaxed);
  if (n == max_encoders) throw std::length_error("hub: too many encoders");
  encoders_[n] = std::move(fn);
  encoder_count_.store(n + 1, std::memory_order_release);
  return static_cast<encoder_id>(n);
}

const encoder_fn* hub::encoder_of(encoder_id id) const noexcept {
  if (id >= encoder_count_.load(std::memory_order_acquire) || !encoders_[id]) return nullptr;
  return &encoders_[id];
}

void hub::set_history(std::size_t max_events, std::chrono::milliseconds max_age) {
  history_max_.store(max_events, std::memory_order_relaxed);
  history_age_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(max_age).count(),
                        std::memory_order_relaxed);
}

std::size_t hub::shard_of(std::string_view sid) noexcept {
  return std::hash<std::string_view>{}(sid) % shard_count;
}

std::size_t hub::shard_of(const channel& room) noexcept {
  return channel_hash{}(room) % shard_count;
}

// Amortized O(1) per join (member_list shares its slots with the snapshot it extends), so a
// room of n members costs O(n) to fill, not O(n^2). Callers hold the owner's lock.
std::shared_ptr<const hub::member_list> hub::with(const std::shared_ptr<const member_list>& list,
                                                  std::shared_ptr<subscriber> s) {
  return std::make_shared<const member_list>(list ? list->with(std::move(s))
                                                  : member_list{}.with(std::move(s)));
}

std::shared_ptr<const hub::member_list> hub::without(
    const std::shared_ptr<const member_list>& list, const subscriber* s) {
  return std::make_shared<const member_list>(list->without(s));
}

bool hub::add(std::shared_ptr<subscriber> s) {
  const std::string sid = s->sid();
  {
    auto& shard = conn_shards_[shard_of(sid)];
    std::lock_guard lock(shard.mu);
    auto [it, inserted] = shard.conns.try_emplace(sid);
    if (!inserted) return false;
    it->second.sub = s;
    shard.all = with(shard.all, std::move(s));
  }
  if (connection_listener_) connection_listener_(sid, true);  // no lock held (see hub.hpp)
  return true;
}

void hub::remove(const std::string& sid) {
  std::shared_ptr<subscriber> sub;
  std::unordered_set<channel, channel_hash> rooms;
  {
    auto& shard = conn_shards_[shard_of(sid)];
    std::lock_guard lock(shard.mu);
    auto it = shard.conns.find(sid);
    if (it == shard.conns.end()) return;
    // Recorded as closed before it leaves the registry: publish always finds it in one of them.
    shard.closed.add(sid, steady_ns());
    sub = std::move(it->second.sub);
    rooms = std::move(it->second.rooms);
    shard.conns.erase(it);
    shard.all = without(shard.all, sub.get());
  }
  for (const auto& room : rooms) room_remove(room, sub.get());
  if (connection_listener_) connection_listener_(sid, false);
}

bool hub::join(const std::string& sid, const channel& room) {
  std::vector<log_ptr> logs;
  auto locks = lock_channels({room}, nullptr, logs);
  bool added = false;
  if (!join_locked(sid, room, &added)) return false;
  // A new member gets the room's states before anything published after its join.
  if (added && !logs.front()->states.empty())
    if (auto sub = find(sid)) send_full_locked(room, *logs.front(), *sub, nullptr);
  return true;
}

bool hub::join_locked(const std::string& sid, const channel& room, bool* added) {
  auto& cs = conn_shards_[shard_of(sid)];
  std::lock_guard lock(cs.mu);
  auto it = cs.conns.find(sid);
  if (it == cs.conns.end()) return false;
  if (added) *added = false;
  if (it->second.rooms.count(room)) return true;  // already a member
  const std::size_t limit = max_rooms_.load(std::memory_order_relaxed);
  if (limit && it->second.rooms.size() >= limit) return false;
  it->second.rooms.insert(room);
  if (added) *added = true;
  auto& rs = room_shards_[shard_of(room)];
  std::lock_guard room_lock(rs.mu);
  auto& entry = rs.rooms[room];
  const bool first = !entry.members || entry.members->empty();
  entry.members = with(entry.members, it->second.sub);
  if (first && channel_listener_) channel_listener_(room, true);
  return true;
}

bool hub::leave(const std::string& sid, const channel& room) {
  std::shared_ptr<subscriber> sub;
  {
    auto& cs = conn_shards_[shard_of(sid)];
    std::lock_guard lock(cs.mu);
    auto it = cs.conns.find(sid);
    if (it == cs.conns.end() || it->second.rooms.erase(room) == 0) return false;
    sub = it->second.sub;
    // Remove under the connection lock so a concurrent join of the same pair cannot interleave.
    return room_remove(room, sub.get());
  }
}

bool hub::room_remove(const channel& room, const subscriber* s) {
  auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  auto it = rs.rooms.find(room);
  if (it == rs.rooms.end() || !it->second.members) return false;
  const std::size_t before = it->second.members->size();
  it->second.members = without(it->second.members, s);
  const bool last = before != 0 && it->second.members->empty();
  if (last && channel_listener_) channel_listener_(room, false);
  // An empty room without a configured policy is forgotten, so per-request rooms do not pile up.
  if (it->second.members->empty() && !it->second.policy) rs.rooms.erase(it);
  return true;
}

std::vector<channel> hub::rooms_of(const std::string& sid) const {
  const auto& cs = conn_shards_[shard_of(sid)];
  std::lock_guard lock(cs.mu);
  auto it = cs.conns.find(sid);
  if (it == cs.conns.end()) return {};
  std::vector<channel> out(it->second.rooms.begin(), it->second.rooms.end());
  std::sort(out.begin(), out.end());
  return out;
}

std::shared_ptr<subscriber> hub::find(const std::string& sid) const {
  const auto& cs = conn_shards_[shard_of(sid)];
  std::lock_guard lock(cs.mu);
  auto it = cs.conns.find(sid);
  return it == cs.conns.end() ? nullptr : it->second.sub;
}

std::size_t hub::connection_count() const {
  std::size_t n = 0;
  for (const auto& cs : conn_shards_) {
    std::lock_guard lock(cs.mu);
    n += cs.conns.size();
  }
  return n;
}

std::size_t hub::room_count() const {
  std::size_t n = 0;
  for (const auto& rs : room_shards_) {
    std::lock_guard lock(rs.mu);
    for (const auto& [name, entry] : rs.rooms)
      if (entry.members && !entry.members->empty()) ++n;
  }
  return n;
}

std::vector<std::pair<channel, std::size_t>> hub::room_sizes() const {
  std::vector<std::pair<channel, std::size_t>> out;
  for (const auto& rs : room_shards_) {
    std::lock_guard lock(rs.mu);
    for (const auto& [name, entry] : rs.rooms)
      if (entry.members && !entry.members->empty()) out.emplace_back(name, entry.members->size());
  }
  return out;
}

std::size_t hub::room_size(const channel& room) const {
  const auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  auto it = rs.rooms.find(room);
  return it == rs.rooms.end() || !it->second.members ? 0 : it->second.members->size();
}

std::vector<std::string> hub::room_members(const channel& room) const {
  std::shared_ptr<const member_list> members;
  {
    const auto& rs = room_shards_[shard_of(room)];
    std::lock_guard lock(rs.mu);
    auto it = rs.rooms.find(room);
    if (it == rs.rooms.end() || !it->second.members) return {};
    members = it->second.members;
  }
  std::vector<std::string> out;
  out.reserve(members->size());
  for (const auto& m : *members) out.push_back(m->sid());
  return out;
}

void hub::set_room_policy(const channel& room, std::optional<overflow_policy> policy) {
  auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  auto& entry = rs.rooms[room];
  entry.policy = policy;
  if (!policy && (!entry.members || entry.members->empty())) rs.rooms.erase(room);
}


std::shared_ptr<const hub::member_list> hub::members_of(const channel& room) const {
  const auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  auto it = rs.rooms.find(room);
  return it == rs.rooms.end() ? nullptr : it->second.members;
}

}  // namespace skyrelay
