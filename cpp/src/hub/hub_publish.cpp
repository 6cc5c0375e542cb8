// The hub's routing: a publication's targets resolved, its channels locked and numbered, its
// history recorded, and its frames handed to the union of recipients.
#include <algorithm>

#include "skyrelay/core/clock.hpp"
#include "hub_route.hpp"

namespace skyrelay {

void hub::resolve(const publication& p, route& r) {
  r.everyone = p.to.empty() && p.to_conns.empty();
  if (r.everyone) return;
  // Direct targets come from the connection registry only, and only inside the namespace.
  auto direct = [&](const std::string& sid) {
    auto s = find(sid);
    if (!s) return false;
    if (s->nsp() == p.nsp) r.singles.push_back(std::move(s));
    return true;
  };
  for (const auto& sid : p.to_conns) direct(sid);
  for (const auto& name : p.to) {
    // A live connection's sid is that connection, whatever room shares the name; a closed
    // one's is nobody's (not a room someone could have subscribed to meanwhile).
    if (direct(name) || conn_shards_[shard_of(name)].closed.contains(name)) continue;
    channel room{p.nsp, name};
    if (std::find(r.rooms.begin(), r.rooms.end(), room) == r.rooms.end())
      r.rooms.push_back(std::move(room));
  }
  r.single = p.to.size() == 1 && p.to_conns.empty() && r.rooms.size() == 1;
}

std::size_t hub::publish(const publication& p, publish_meta* meta_out) {
  route r;
  resolve(p, r);
  log_locks locks;
  // A room nobody is in still gets the event in its history (for those who come back with
  // `since` or a cursor), unless history is off: then a room with no log has no members.
  const bool keep = history_max_.load(std::memory_order_relaxed) > 0;
  do {
    r.logs.clear();
    if (r.everyone) {
      r.logs.push_back(broadcast_log(p.nsp));
      continue;
    }
    std::vector<channel> live;
    for (auto& room : r.rooms)
      if (auto log = log_of(room, keep)) {
        r.logs.push_back(std::move(log));
        live.push_back(room);
      }
    r.rooms.swap(live);
  } while (!locks.lock(r.logs));
  return publish_locked(p, r, meta_out);  // before `locks` go: the channels' order is the
                                          // delivery order
}

std::size_t hub::publish_locked(const publication& p, route& r, publish_meta* meta_out) {
  const bool keep = history_max_.load(std::memory_order_relaxed) > 0;
  publish_meta meta;
  meta.publish_ns = steady_ns();
  meta.id = last_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  meta.ts = utc_now_iso8601();
  snapshot(r);
  if (!r.logs.empty()) {
    auto positions = std::make_shared<std::vector<channel_pos>>();
    positions->reserve(r.logs.size());
    for (std::size_t i = 0; i < r.logs.size(); ++i) {
      auto& log = *r.logs[i];
      if (r.everyone) positions->push_back({std::string(), true, ++log.pos});
      else positions->push_back({r.rooms[i].room, false, ++log.pos});
      if (meta_out) meta.epochs.push_back(log.epoch);
    }
    if (r.single) {
      meta.topic = p.to.front();  // the room as the application named it
      meta.seq = ++r.logs.front()->seq;
    }
    meta.positions = std::move(positions);
    if (!keep) {
      for (std::size_t i = 0; i < r.logs.size(); ++i) {
        auto& log = *r.logs[i];
        log.evicted_id = meta.id;
        log.evicted_pos = log.pos;
        if (meta.seq) log.evicted_seq = meta.seq;
      }
    } else {
      auto entry = std::make_shared<const history_entry>(history_entry{
          p, std::string(meta.topic), meta.seq, meta.id, meta.ts, meta.publish_ns,
          meta.positions});
      for (std::size_t i = 0; i < r.logs.size(); ++i)
        record_locked(*r.logs[i], (*meta.positions)[i].pos, entry);
    }
  }
  if (!r.single) r.room_policy.reset();  // a room's policy applies to its own publications
  if (meta_out) *meta_out = meta;
  return fan_out(p, meta, r);
}

void hub::snapshot(route& r) const {
  // One shared_ptr copy per target under its shard's lock.
  if (r.everyone) {
    r.lists.reserve(shard_count);
    for (auto& cs : conn_shards_) {
      std::lock_guard lock(cs.mu);
      r.lists.push_back(cs.all);
    }
  }
  for (const auto& room : r.rooms) {
    auto& rs = room_shards_[shard_of(room)];
    std::lock_guard lock(rs.mu);
    if (auto it = rs.rooms.find(room); it != rs.rooms.end()) {
      if (it->second.members && !it->second.members->empty())
        r.lists.push_back(it->second.members);
      r.room_policy = it->second.policy;
    }
  }
}

namespace {
// Calls `send` for every subscriber of `list` in order, fetching ahead what the next ones'
// deliveries touch: their object, then the queue they write into (see
// subscriber::prefetch_write_target). Cache misses, not instructions, are most of a
// delivery's cost on the publishing thread when a publication goes to many connections.
template <class List, class Send>  // a member_list snapshot or a vector of subscribers
void send_each(const List& list, Send&& send) {
  constexpr std::size_t ahead = 4;  // objects; their queues are fetched half as far ahead
  const std::size_t n = list.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (i + ahead < n) __builtin_prefetch(list[i + ahead].get());
    if (i + ahead / 2 < n) list[i + ahead / 2]->prefetch_write_target();
    send(list[i]);
  }
}
}  // namespace

std::size_t hub::fan_out(const publication& p, const publish_meta& meta, route& r) {
  const overflow_policy policy =
      p.policy.value_or(r.room_policy.value_or(overflow_policy::disconnect));
  // One frame per encoder, made when its first recipient comes up.
  std::array<frame_ptr, max_encoders> frames;
  std::array<bool, max_encoders> encoded{};
  const std::size_t encoders = encoder_count_.load(std::memory_order_acquire);
  static const frame_ptr none;
  auto frame_for = [&](const subscriber& s) -> const frame_ptr& {
    const std::size_t id = s.encoder();
    if (id >= encoders) return none;
    if (!encoded[id]) {
      encoded[id] = true;
      if (encoders_[id]) frames[id] = encoders_[id](p, meta);
    }
    return frames[id];
  };
  auto skipped = [&](const subscriber& s) {
    if (r.everyone && s.nsp() != p.nsp) return true;
    return !p.skip.empty() && std::find(p.skip.begin(), p.skip.end(), s.sid()) != p.skip.end();
  };

  std::size_t delivered = 0;
  auto send = [&](const std::shared_ptr<subscriber>& s, bool direct) {
    if (skipped(*s)) return;
    if (const auto& f = frame_for(*s)) {
      if (direct) s->deliver_direct(f, policy);
      else s->deliver(f, policy);
      ++delivered;
    }
  };

  const bool may_overlap = r.lists.size() + r.singles.size() > 1 && !r.everyone;
  if (!may_overlap) {
    for (const auto& list : r.lists)
      send_each(*list, [&](const std::shared_ptr<subscriber>& s) { send(s, false); });
    for (const auto& s : r.singles) send(s, true);
    return delivered;
  }
  // Several targets can share members: deliver to each subscriber once.
  std::vector<std::shared_ptr<subscriber>> all;
  for (const auto& list : r.lists) all.insert(all.end(), list->begin(), list->end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  send_each(all, [&](const std::shared_ptr<subscriber>& s) { send(s, false); });
  std::sort(r.singles.begin(), r.singles.end());
  r.singles.erase(std::unique(r.singles.begin(), r.singles.end()), r.singles.end());
  for (const auto& s : r.singles)
    if (!std::binary_search(all.begin(), all.end(), s)) send(s, true);
  return delivered;
}

}  // namespace skyrelay
