#include "skyrelay/hub/hub.hpp"

#include <algorithm>

#include "skyrelay/core/clock.hpp"

namespace skyrelay {

hub::hub() {
  for (auto& s : conn_shards_) s.all = std::make_shared<const member_list>();
}

void hub::set_encoder(wire_format fmt, encoder_fn fn) {
  encoders_[static_cast<std::size_t>(fmt)] = std::move(fn);
}

std::size_t hub::shard_of(std::string_view key) noexcept {
  return std::hash<std::string_view>{}(key) % shard_count;
}

std::shared_ptr<const hub::member_list> hub::with(const std::shared_ptr<const member_list>& list,
                                                  std::shared_ptr<subscriber> s) {
  auto next = std::make_shared<member_list>();
  next->reserve((list ? list->size() : 0) + 1);
  if (list) next->assign(list->begin(), list->end());
  next->push_back(std::move(s));
  return next;
}

std::shared_ptr<const hub::member_list> hub::without(
    const std::shared_ptr<const member_list>& list, const subscriber* s) {
  auto next = std::make_shared<member_list>();
  next->reserve(list->size());
  for (const auto& m : *list)
    if (m.get() != s) next->push_back(m);
  return next;
}

bool hub::add(std::shared_ptr<subscriber> s) {
  auto& shard = conn_shards_[shard_of(s->sid())];
  std::lock_guard lock(shard.mu);
  auto [it, inserted] = shard.conns.try_emplace(s->sid());
  if (!inserted) return false;
  it->second.sub = s;
  shard.all = with(shard.all, std::move(s));
  return true;
}

void hub::remove(const std::string& sid) {
  std::shared_ptr<subscriber> sub;
  std::unordered_set<std::string> rooms;
  {
    auto& shard = conn_shards_[shard_of(sid)];
    std::lock_guard lock(shard.mu);
    auto it = shard.conns.find(sid);
    if (it == shard.conns.end()) return;
    sub = std::move(it->second.sub);
    rooms = std::move(it->second.rooms);
    shard.conns.erase(it);
    shard.all = without(shard.all, sub.get());
  }
  for (const auto& room : rooms) room_remove(room, sub.get());
}

bool hub::join(const std::string& sid, const std::string& room) {
  auto& cs = conn_shards_[shard_of(sid)];
  std::lock_guard lock(cs.mu);
  auto it = cs.conns.find(sid);
  if (it == cs.conns.end()) return false;
  if (!it->second.rooms.insert(room).second) return true;  // already a member
  auto& rs = room_shards_[shard_of(room)];
  std::lock_guard room_lock(rs.mu);
  auto& entry = rs.rooms[room];
  entry.members = with(entry.members, it->second.sub);
  return true;
}

bool hub::leave(const std::string& sid, const std::string& room) {
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

bool hub::room_remove(const std::string& room, const subscriber* s) {
  auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  auto it = rs.rooms.find(room);
  if (it == rs.rooms.end() || !it->second.members) return false;
  it->second.members = without(it->second.members, s);
  // An empty room without a configured policy is forgotten, so per-request rooms do not pile up.
  if (it->second.members->empty() && !it->second.policy) rs.rooms.erase(it);
  return true;
}

std::vector<std::string> hub::rooms_of(const std::string& sid) const {
  const auto& cs = conn_shards_[shard_of(sid)];
  std::lock_guard lock(cs.mu);
  auto it = cs.conns.find(sid);
  if (it == cs.conns.end()) return {};
  std::vector<std::string> out(it->second.rooms.begin(), it->second.rooms.end());
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

std::size_t hub::room_size(const std::string& room) const {
  const auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  auto it = rs.rooms.find(room);
  return it == rs.rooms.end() || !it->second.members ? 0 : it->second.members->size();
}

std::vector<std::string> hub::room_members(const std::string& room) const {
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

void hub::set_room_policy(const std::string& room, std::optional<overflow_policy> policy) {
  auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  auto& entry = rs.rooms[room];
  entry.policy = policy;
  if (!policy && (!entry.members || entry.members->empty())) rs.rooms.erase(room);
}

std::size_t hub::publish(const publication& p) {
  publish_meta meta;
  meta.publish_ns = steady_ns();
  meta.id = next_id();
  meta.ts = utc_now_iso8601();

  // Snapshot recipients: one shared_ptr copy per target under its shard's lock.
  std::vector<std::shared_ptr<const member_list>> lists;
  std::vector<std::shared_ptr<subscriber>> singles;
  std::optional<overflow_policy> room_policy;
  std::shared_ptr<room_order> order;
  if (p.to.empty()) {
    lists.reserve(shard_count);
    for (auto& cs : conn_shards_) {
      std::lock_guard lock(cs.mu);
      lists.push_back(cs.all);
    }
  } else {
    for (const auto& name : p.to) {
      {
        // Rooms of a Socket.IO namespace other than "/" live under "<nsp>#<room>".
        const std::string key = p.nsp == "/" ? name : p.nsp + "#" + name;
        auto& rs = room_shards_[shard_of(key)];
        std::lock_guard lock(rs.mu);
        auto it = rs.rooms.find(key);
        if (it != rs.rooms.end() && it->second.members && !it->second.members->empty()) {
          lists.push_back(it->second.members);
          if (p.to.size() == 1) {
            meta.topic = name;  // the room as the application named it
            meta.seq = ++it->second.seq;
            if (!it->second.order) it->second.order = std::make_shared<room_order>();
            order = it->second.order;
            room_policy = it->second.policy;
          }
          continue;
        }
      }
      if (auto s = find(name)) singles.push_back(std::move(s));
    }
  }
  const overflow_policy policy = p.policy.value_or(room_policy.value_or(overflow_policy::disconnect));

  std::array<frame_ptr, static_cast<std::size_t>(wire_format::count_)> frames;
  auto frame_for = [&](const subscriber& s) -> const frame_ptr& {
    auto idx = static_cast<std::size_t>(s.format());
    if (!frames[idx] && encoders_[idx]) frames[idx] = encoders_[idx](p, meta);
    return frames[idx];
  };
  const bool everyone = p.to.empty();
  auto skipped = [&](const subscriber& s) {
    if (everyone && s.nsp() != p.nsp) return true;
    return !p.skip.empty() && std::find(p.skip.begin(), p.skip.end(), s.sid()) != p.skip.end();
  };

  // A concurrent publication to the same room may have taken the previous seq but not handed
  // it out yet: wait for it, so that every subscriber gets the room's frames in seq order.
  struct in_turn {
    std::shared_ptr<room_order> order;
    std::uint64_t seq;
    in_turn(std::shared_ptr<room_order> o, std::uint64_t s) : order(std::move(o)), seq(s) {
      if (!order) return;
      std::unique_lock lock(order->mu);
      order->cv.wait(lock, [this] { return order->delivered + 1 == seq; });
    }
    ~in_turn() {
      if (!order) return;
      {
        std::lock_guard lock(order->mu);
        order->delivered = seq;
      }
      order->cv.notify_all();
    }
  } turn(std::move(order), meta.seq);

  std::size_t delivered = 0;
  auto send = [&](const std::shared_ptr<subscriber>& s) {
    if (skipped(*s)) return;
    if (const auto& f = frame_for(*s)) {
      s->deliver(f, policy);
      ++delivered;
    }
  };

  const bool may_overlap = lists.size() + singles.size() > 1 && !p.to.empty();
  if (!may_overlap) {
    for (const auto& list : lists)
      for (const auto& s : *list) send(s);
    for (const auto& s : singles) send(s);
    return delivered;
  }
  // Several targets can share members: deliver to each subscriber once.
  std::vector<std::shared_ptr<subscriber>> all;
  for (const auto& list : lists) all.insert(all.end(), list->begin(), list->end());
  all.insert(all.end(), singles.begin(), singles.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  for (const auto& s : all) send(s);
  return delivered;
}

}  // namespace skyrelay
