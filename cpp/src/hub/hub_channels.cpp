// The hub's channel logs: each channel's order lock, counters, epoch and history, how they are
// found, locked together, recorded into, expired and forgotten.
#include <algorithm>
#include <functional>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/hub/hub.hpp"

namespace skyrelay {

hub::log_locks::log_locks(log_locks&& o) noexcept : held_(std::move(o.held_)) {
  o.held_.clear();  // a moved-from small_vector may keep its elements: they are ours now
}

hub::log_locks& hub::log_locks::operator=(log_locks&& o) noexcept {
  if (this != &o) {
    unlock();
    held_ = std::move(o.held_);
    o.held_.clear();
  }
  return *this;
}

hub::log_locks::~log_locks() { unlock(); }

bool hub::log_locks::lock(std::span<const log_ptr> logs) {
  unlock();
  for (const auto& log : logs) held_.push_back(log.get());
  // One canonical order (addresses) for every thread, so two lockers of overlapping sets
  // never wait on each other in a cycle.
  std::sort(held_.begin(), held_.end(), std::less<>{});
  held_.erase(std::unique(held_.begin(), held_.end()), held_.end());
  for (std::size_t i = 0; i < held_.size(); ++i) {
    held_[i]->mu.lock();
    if (held_[i]->retired) {
      held_.resize(i + 1);  // unlock what is locked, this one included
      unlock();
      return false;
    }
  }
  return true;
}

void hub::log_locks::unlock() noexcept {
  for (auto it = held_.rbegin(); it != held_.rend(); ++it) (*it)->mu.unlock();
  held_.clear();
}

std::string hub::new_epoch() {
  return epoch_prefix_ + "." + std::to_string(epochs_made_.fetch_add(1) + 1);
}

hub::log_ptr hub::log_of(const channel& room, bool make) {
  auto& rs = room_shards_[shard_of(room)];
  std::lock_guard lock(rs.mu);
  if (auto it = rs.logs.find(room); it != rs.logs.end()) return it->second;
  if (!make) {
    auto it = rs.rooms.find(room);
    if (it == rs.rooms.end() || !it->second.members || it->second.members->empty())
      return nullptr;
  }
  auto log = std::make_shared<channel_log>();
  log->epoch = new_epoch();
  {
    // A channel used again after it was forgotten: what it held then is lost for good, but a
    // cursor at the very end of its last sequence goes on into this one.
    std::lock_guard dead(forgotten_mu_);
    if (auto t = forgotten_.find(room); t != forgotten_.end()) {
      log->prev_epoch = std::move(t->second.epoch);
      log->prev_pos = t->second.pos;
      log->evicted_id = t->second.last_id;
      forgotten_.erase(t);  // its name stays in forgotten_order_ until the bound drops it
    }
  }
  rs.logs.emplace(room, log);
  return log;
}

hub::log_ptr hub::broadcast_log(const std::string& nsp) {
  std::lock_guard lock(broadcasts_mu_);
  auto& log = broadcasts_[nsp];
  if (!log) {
    log = std::make_shared<channel_log>();
    log->epoch = new_epoch();
  }
  return log;
}

hub::log_locks hub::lock_channels(const std::vector<channel>& rooms,
                                  const std::string* broadcasts_nsp, std::vector<log_ptr>& logs) {
  log_locks locks;
  // A retry follows a sweep() that retired a log between its lookup and its lock; the next
  // lookup makes a fresh one, so this ends unless sweeps keep hitting the same rooms.
  do {
    logs.clear();
    logs.reserve(rooms.size() + 1);
    for (const auto& room : rooms) logs.push_back(log_of(room, true));
    if (broadcasts_nsp) logs.push_back(broadcast_log(*broadcasts_nsp));
  } while (!locks.lock(logs));
  return locks;
}

void hub::expire_locked(channel_log& log, std::int64_t now_ns) {
  const std::int64_t age = history_age_ns_.load(std::memory_order_relaxed);
  while (!log.items.empty() && now_ns - log.items.front().entry->publish_ns > age) {
    const auto& item = log.items.front();
    log.evicted_id = item.entry->id;
    if (item.entry->seq) log.evicted_seq = item.entry->seq;
    log.evicted_pos = item.pos;
    log.items.pop_front();
  }
}

void hub::record_locked(channel_log& log, std::uint64_t pos,
                        const std::shared_ptr<const history_entry>& e) {
  log.items.push_back({pos, e});
  const std::size_t max = history_max_.load(std::memory_order_relaxed);
  while (log.items.size() > max) {
    const auto& old = log.items.front();
    log.evicted_id = old.entry->id;
    if (old.entry->seq) log.evicted_seq = old.entry->seq;
    log.evicted_pos = old.pos;
    log.items.pop_front();
  }
  expire_locked(log, e->publish_ns);
}

bool hub::retire_locked(const channel& room, channel_log& log, room_shard& rs) {
  std::lock_guard lock(rs.mu);
  if (auto it = rs.rooms.find(room);
      it != rs.rooms.end() && it->second.members && !it->second.members->empty())
    return false;
  auto it = rs.logs.find(room);
  if (it == rs.logs.end() || it->second.get() != &log) return false;
  log.retired = true;
  rs.logs.erase(it);
  std::lock_guard dead(forgotten_mu_);
  auto [t, fresh] = forgotten_.insert_or_assign(room, tombstone{log.epoch, log.pos, log.evicted_id});
  if (fresh) forgotten_order_.push_back(room);
  while (forgotten_order_.size() > max_forgotten) {
    auto old = forgotten_.find(forgotten_order_.front());
    if (old != forgotten_.end()) {
      forgotten_floor_ = std::max(forgotten_floor_, old->second.last_id);
      forgotten_.erase(old);
    }
    forgotten_order_.pop_front();
  }
  return true;
}

void hub::sweep() {
  const std::int64_t now = steady_ns();
  std::vector<std::pair<channel, log_ptr>> logs;
  for (auto& rs : room_shards_) {
    {
      std::lock_guard lock(rs.mu);
      logs.assign(rs.logs.begin(), rs.logs.end());
    }
    for (auto& [room, log] : logs) {
      std::lock_guard order(log->mu);
      if (log->retired) continue;
      expire_locked(*log, now);
      // An idle channel is forgotten (a later use starts a new epoch), so rooms made per
      // request do not pile up.
      if (log->items.empty() && log->states.empty()) retire_locked(room, *log, rs);
    }
  }
  std::vector<log_ptr> broadcasts;
  {
    std::lock_guard lock(broadcasts_mu_);
    for (const auto& [nsp, log] : broadcasts_) broadcasts.push_back(log);
  }
  for (const auto& log : broadcasts) {
    std::lock_guard order(log->mu);
    expire_locked(*log, now);
  }
  for (auto& cs : conn_shards_) cs.closed.expire(now);
}

std::size_t hub::closed_sid_count() const {
  std::size_t n = 0;
  for (const auto& cs : conn_shards_) n += cs.closed.size();
  return n;
}

std::size_t hub::history_entries() const {
  std::size_t n = 0;
  std::vector<log_ptr> logs;
  for (const auto& rs : room_shards_) {
    std::lock_guard lock(rs.mu);
    for (const auto& [room, log] : rs.logs) logs.push_back(log);
  }
  {
    std::lock_guard lock(broadcasts_mu_);
    for (const auto& [nsp, log] : broadcasts_) logs.push_back(log);
  }
  for (const auto& log : logs) {
    std::lock_guard order(log->mu);
    if (!log->retired) n += log->items.size();
  }
  return n;
}

topic_position hub::position(const channel& room) const {
  log_ptr log;
  {
    const auto& rs = room_shards_[shard_of(room)];
    std::lock_guard lock(rs.mu);
    if (auto it = rs.logs.find(room); it != rs.logs.end()) log = it->second;
  }
  if (!log) return {};
  std::lock_guard order(log->mu);
  return log->retired ? topic_position{} : topic_position{log->seq, log->epoch};
}

}  // namespace skyrelay
