#include "skyrelay/hub/hub.hpp"

#include <algorithm>
#include <stdexcept>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/core/random.hpp"

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
  std::lock_guard lock(publish_mu_);
  history_max_ = max_events;
  history_age_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(max_age).count();
}

std::size_t hub::shard_of(std::string_view sid) noexcept {
  return std::hash<std::string_view>{}(sid) % shard_count;
}

std::size_t hub::shard_of(const channel& room) noexcept {
  return channel_hash{}(room) % shard_count;
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
  it->second.added_id = last_id_.load();
  shard.all = with(shard.all, std::move(s));
  return true;
}

void hub::remove(const std::string& sid) {
  std::shared_ptr<subscriber> sub;
  std::unordered_map<channel, std::uint64_t, channel_hash> rooms;
  {
    auto& shard = conn_shards_[shard_of(sid)];
    std::lock_guard lock(shard.mu);
    auto it = shard.conns.find(sid);
    if (it == shard.conns.end()) return;
    // Recorded as closed before it leaves the registry: publish always finds it in one of them.
    closed_.add(sid, steady_ns());
    sub = std::move(it->second.sub);
    rooms = std::move(it->second.rooms);
    shard.conns.erase(it);
    shard.all = without(shard.all, sub.get());
  }
  for (const auto& [room, since] : rooms) room_remove(room, sub.get());
}

bool hub::join(const std::string& sid, const channel& room) {
  std::lock_guard order(publish_mu_);
  return join_locked(sid, room);
}

bool hub::join_locked(const std::string& sid, const channel& room) {
  auto& cs = conn_shards_[shard_of(sid)];
  std::lock_guard lock(cs.mu);
  auto it = cs.conns.find(sid);
  if (it == cs.conns.end()) return false;
  if (it->second.rooms.count(room)) return true;  // already a member
  const std::size_t limit = max_rooms_.load(std::memory_order_relaxed);
  if (limit && it->second.rooms.size() >= limit) return false;
  it->second.rooms.emplace(room, last_id_.load());
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
  std::vector<channel> out;
  out.reserve(it->second.rooms.size());
  for (const auto& [room, since] : it->second.rooms) out.push_back(room);
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

hub::topic_log& hub::topic_locked(const channel& key) {
  auto [it, inserted] = topics_.try_emplace(key);
  if (inserted) {
    it->second.epoch = epoch_prefix_ + "." + std::to_string(++epochs_made_);
    // A topic used again after it was forgotten: what it held then is lost for good.
    if (auto f = forgotten_.find(key); f != forgotten_.end()) {
      it->second.evicted_id = f->second;
      forgotten_.erase(f);  // its name stays in forgotten_order_ until the bound drops it
    }
  }
  return it->second;
}

frame_ptr hub::replay_frame(const history_entry& e, encoder_id id) const {
  const encoder_fn* encode = encoder_of(id);
  if (!encode) return nullptr;
  publish_meta meta;  // publish_ns stays 0: a replay is not a latency sample
  meta.topic = e.topic;
  meta.seq = e.seq;
  meta.ts = e.ts;
  meta.id = e.id;
  return (*encode)(e.pub, meta);
}

void hub::expire_locked(topic_log& log, std::int64_t now_ns) {
  while (!log.entries.empty() && now_ns - log.entries.front()->publish_ns > history_age_ns_) {
    const auto& e = *log.entries.front();
    log.evicted_id = e.id;
    if (e.seq) log.evicted_seq = e.seq;
    log.entries.pop_front();
  }
}

void hub::record_locked(topic_log& log, const std::shared_ptr<const history_entry>& e) {
  log.entries.push_back(e);
  while (log.entries.size() > history_max_) {
    const auto& old = *log.entries.front();
    log.evicted_id = old.id;
    if (old.seq) log.evicted_seq = old.seq;
    log.entries.pop_front();
  }
  expire_locked(log, e->publish_ns);
}

std::size_t hub::publish(const publication& p, publish_meta* meta_out) {
  std::lock_guard order(publish_mu_);
  publish_meta meta;
  meta.publish_ns = steady_ns();
  meta.id = last_id_.load(std::memory_order_relaxed) + 1;
  last_id_.store(meta.id, std::memory_order_relaxed);
  meta.ts = utc_now_iso8601();

  // Snapshot recipients: one shared_ptr copy per target under its shard's lock.
  std::vector<std::shared_ptr<const member_list>> lists;
  std::vector<std::shared_ptr<subscriber>> singles;
  std::vector<topic_log*> logs;  // where history records it
  std::optional<overflow_policy> room_policy;
  const bool everyone = p.to.empty() && p.to_conns.empty();
  if (everyone) {
    lists.reserve(shard_count);
    for (auto& cs : conn_shards_) {
      std::lock_guard lock(cs.mu);
      lists.push_back(cs.all);
    }
    logs.push_back(&broadcasts_[p.nsp]);
  } else {
    // Direct targets come from the connection registry only, and only inside the namespace.
    auto direct = [&](const std::string& sid) {
      auto s = find(sid);
      if (!s) return false;
      if (s->nsp() == p.nsp) singles.push_back(std::move(s));
      return true;
    };
    for (const auto& sid : p.to_conns) direct(sid);
    const bool single = p.to.size() == 1 && p.to_conns.empty();
    for (const auto& name : p.to) {
      // A live connection's sid is that connection, whatever room shares the name; a closed
      // one's is nobody's (not a room someone could have subscribed to meanwhile).
      if (direct(name) || closed_.contains(name)) continue;
      const channel room{p.nsp, name};
      std::shared_ptr<const member_list> members;
      std::optional<overflow_policy> policy;
      {
        auto& rs = room_shards_[shard_of(room)];
        std::lock_guard lock(rs.mu);
        if (auto it = rs.rooms.find(room); it != rs.rooms.end()) {
          members = it->second.members;
          policy = it->second.policy;
        }
      }
      const bool has_members = members && !members->empty();
      auto known = topics_.find(room);
      // A room that nobody is in right now still gets the event in its history, for those
      // who come back with `since` or Last-Event-ID.
      if (!has_members && known == topics_.end() && history_max_ == 0) continue;
      topic_log& log = known != topics_.end() ? known->second : topic_locked(room);
      if (has_members) lists.push_back(std::move(members));
      if (single) {
        meta.topic = name;  // the room as the application named it
        meta.seq = ++log.seq;
        room_policy = policy;
      }
      logs.push_back(&log);
    }
  }
  if (!logs.empty()) {
    if (history_max_ == 0) {
      for (auto* log : logs) {
        log->evicted_id = meta.id;
        if (meta.seq) log->evicted_seq = meta.seq;
      }
    } else {
      auto entry = std::make_shared<const history_entry>(history_entry{
          p, std::string(meta.topic), meta.seq, meta.id, meta.ts, meta.publish_ns});
      for (auto* log : logs) record_locked(*log, entry);
    }
  }
  if (meta_out) *meta_out = meta;
  const overflow_policy policy = p.policy.value_or(room_policy.value_or(overflow_policy::disconnect));

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
    if (everyone && s.nsp() != p.nsp) return true;
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

  const bool may_overlap = lists.size() + singles.size() > 1 && !everyone;
  if (!may_overlap) {
    for (const auto& list : lists)
      for (const auto& s : *list) send(s, false);
    for (const auto& s : singles) send(s, true);
    return delivered;
  }
  // Several targets can share members: deliver to each subscriber once.
  std::vector<std::shared_ptr<subscriber>> all;
  for (const auto& list : lists) all.insert(all.end(), list->begin(), list->end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  for (const auto& s : all) send(s, false);
  std::sort(singles.begin(), singles.end());
  singles.erase(std::unique(singles.begin(), singles.end()), singles.end());
  for (const auto& s : singles)
    if (!std::binary_search(all.begin(), all.end(), s)) send(s, true);
  return delivered;
}

namespace {
bool skips(const history_entry& e, const std::string& sid) {
  return std::find(e.pub.skip.begin(), e.pub.skip.end(), sid) != e.pub.skip.end();
}
}  // namespace

bool hub::subscribe(const std::string& sid, const std::vector<std::string>& topics,
                    std::optional<std::uint64_t> since, std::string_view epoch,
                    const std::function<void(subscribe_outcome&)>& send) {
  std::lock_guard order(publish_mu_);
  auto sub = find(sid);
  if (!sub) return false;
  subscribe_outcome out;
  if (const std::size_t limit = max_rooms_.load(std::memory_order_relaxed)) {
    // All or nothing: count the topics that would be new for this connection.
    std::size_t have = 0, fresh = 0;
    {
      auto& cs = conn_shards_[shard_of(sid)];
      std::lock_guard lock(cs.mu);
      if (auto it = cs.conns.find(sid); it != cs.conns.end()) {
        have = it->second.rooms.size();
        std::unordered_set<std::string_view> distinct;
        for (const auto& t : topics)
          if (!it->second.rooms.count(channel{"/", t}) && distinct.insert(t).second) ++fresh;
      }
    }
    if (have + fresh > limit) {
      out.refused = true;
      send(out);
      return true;
    }
  }
  out.positions.reserve(topics.size());
  for (const auto& t : topics) {
    const channel room{"/", t};  // a client's topic is a room of "/", never anything else
    if (!join_locked(sid, room)) return false;
    const auto& log = topic_locked(room);
    out.positions.push_back({log.seq, log.epoch});
  }
  if (since && topics.size() == 1) {
    auto& log = topics_.at(channel{"/", topics.front()});
    expire_locked(log, steady_ns());
    out.resumed = true;
    if (epoch != log.epoch) {
      out.reset = "epoch_changed";
    } else if (*since > log.seq) {
      out.reset = "ahead";
    } else if (log.evicted_seq > *since) {
      out.reset = "history_gap";
    } else {
      out.recovered = true;
      for (const auto& e : log.entries) {
        if (e->seq <= *since || skips(*e, sid)) continue;
        if (auto f = replay_frame(*e, sub->encoder())) out.replay.push_back(std::move(f));
      }
    }
  }
  send(out);
  return true;
}

bool hub::resume(const std::string& sid, std::uint64_t offset,
                 const std::function<bool(std::vector<frame_ptr>&)>& send) {
  std::lock_guard order(publish_mu_);
  std::shared_ptr<subscriber> sub;
  std::vector<std::pair<channel, std::uint64_t>> rooms;
  std::uint64_t added_id = 0;
  {
    auto& cs = conn_shards_[shard_of(sid)];
    std::lock_guard lock(cs.mu);
    auto it = cs.conns.find(sid);
    if (it == cs.conns.end()) return false;
    sub = it->second.sub;
    rooms.assign(it->second.rooms.begin(), it->second.rooms.end());
    added_id = it->second.added_id;
  }
  const std::int64_t now = steady_ns();
  std::vector<std::shared_ptr<const history_entry>> missed;
  auto take = [&](topic_log& log, std::uint64_t after) {
    expire_locked(log, now);
    if (log.evicted_id > after) return false;
    for (const auto& e : log.entries)
      if (e->id > after && !skips(*e, sid)) missed.push_back(e);
    return true;
  };
  // A room without a log has had no publication since the socket joined (a room keeps its log
  // while it has members).
  for (const auto& [room, joined] : rooms)
    if (auto it = topics_.find(room); it != topics_.end())
      if (!take(it->second, std::max(offset, joined))) return false;
  if (auto it = broadcasts_.find(sub->nsp()); it != broadcasts_.end())
    if (!take(it->second, std::max(offset, added_id))) return false;
  std::sort(missed.begin(), missed.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
  missed.erase(std::unique(missed.begin(), missed.end()), missed.end());
  std::vector<frame_ptr> frames;
  frames.reserve(missed.size());
  for (const auto& e : missed)
    if (auto f = replay_frame(*e, sub->encoder())) frames.push_back(std::move(f));
  return send(frames);
}

bool hub::subscribe_after(const std::string& sid, const std::vector<std::string>& topics,
                          std::string_view last_event_id, const replay_fn& send) {
  std::lock_guard order(publish_mu_);
  auto sub = find(sid);
  if (!sub) return false;
  std::vector<channel> rooms;
  rooms.reserve(topics.size());
  for (const auto& t : topics) rooms.push_back({"/", t});  // a client's topic is a room of "/"
  for (const auto& room : rooms)
    if (!join_locked(sid, room)) return false;
  std::vector<frame_ptr> frames;
  const std::uint64_t last = last_id_.load(std::memory_order_relaxed);
  if (last_event_id.empty()) {
    send(frames, {}, last);
    return true;
  }
  // "<epoch>-<id>": an id of another epoch (another server process) means nothing here.
  const auto dash = last_event_id.rfind('-');
  std::uint64_t after = 0;
  bool numeric = dash != std::string_view::npos && dash + 1 < last_event_id.size() &&
                 last_event_id.size() - dash - 1 < 20;
  if (numeric)
    for (char c : last_event_id.substr(dash + 1)) {
      if (c < '0' || c > '9') numeric = false;
      else after = after * 10 + static_cast<std::uint64_t>(c - '0');
    }
  std::string_view reset;
  if (!numeric) reset = "bad_id";
  else if (last_event_id.substr(0, dash) != epoch_prefix_) reset = "epoch_changed";
  else if (after > last) reset = "ahead";
  std::vector<std::shared_ptr<const history_entry>> missed;
  const std::int64_t now = steady_ns();
  auto take = [&](topic_log& log) {
    expire_locked(log, now);
    if (log.evicted_id > after) return false;
    for (const auto& e : log.entries)
      if (e->id > after && !skips(*e, sid)) missed.push_back(e);
    return true;
  };
  for (const auto& room : rooms) {
    if (!reset.empty()) break;
    if (auto it = topics_.find(room); it != topics_.end()) {
      if (!take(it->second)) reset = "history_gap";
    } else if (auto f = forgotten_.find(room); f != forgotten_.end() ? f->second > after
                                                                    : after < forgotten_floor_) {
      reset = "history_gap";  // its events expired while nobody was subscribed
    }
  }
  if (reset.empty())
    if (auto it = broadcasts_.find(sub->nsp()); it != broadcasts_.end() && !take(it->second))
      reset = "history_gap";
  if (reset.empty()) {
    std::sort(missed.begin(), missed.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
    missed.erase(std::unique(missed.begin(), missed.end()), missed.end());
    for (const auto& e : missed)
      if (auto f = replay_frame(*e, sub->encoder())) frames.push_back(std::move(f));
  }
  send(frames, reset, last);
  return true;
}

void hub::ordered(const std::function<void(std::uint64_t id)>& fn) {
  std::lock_guard order(publish_mu_);
  const std::uint64_t id = last_id_.load(std::memory_order_relaxed) + 1;
  last_id_.store(id, std::memory_order_relaxed);
  fn(id);
}

void hub::sweep() {
  std::lock_guard order(publish_mu_);
  const std::int64_t now = steady_ns();
  for (auto it = topics_.begin(); it != topics_.end();) {
    expire_locked(it->second, now);
    auto members = it->second.entries.empty() ? members_of(it->first) : nullptr;
    if (it->second.entries.empty() && (!members || members->empty())) {
      if (it->second.evicted_id) {
        auto [t, fresh] = forgotten_.insert_or_assign(it->first, it->second.evicted_id);
        if (fresh) forgotten_order_.push_back(it->first);
        while (forgotten_order_.size() > max_forgotten) {
          auto old = forgotten_.find(forgotten_order_.front());
          if (old != forgotten_.end()) {
            forgotten_floor_ = std::max(forgotten_floor_, old->second);
            forgotten_.erase(old);
          }
          forgotten_order_.pop_front();
        }
      }
      it = topics_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [nsp, log] : broadcasts_) expire_locked(log, now);
  closed_.expire(now);
}

std::size_t hub::history_entries() const {
  std::lock_guard order(publish_mu_);
  std::size_t n = 0;
  for (const auto& [key, log] : topics_) n += log.entries.size();
  for (const auto& [key, log] : broadcasts_) n += log.entries.size();
  return n;
}

topic_position hub::position(const channel& room) const {
  std::lock_guard order(publish_mu_);
  auto it = topics_.find(room);
  return it == topics_.end() ? topic_position{} : topic_position{it->second.seq, it->second.epoch};
}

}  // namespace skyrelay
