// The hub's replays: the history read (the memory broker's answer to broker::history), the
// JSON protocol's subscribe with `since`, and SSE cursors.
#include <algorithm>
#include <unordered_set>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/hub/hub.hpp"

namespace skyrelay {

namespace {
bool skips(const history_entry& e, const std::string& sid) {
  return std::find(e.pub.skip.begin(), e.pub.skip.end(), sid) != e.pub.skip.end();
}

using entry_ptr = std::shared_ptr<const history_entry>;

// In id order, each entry once (an entry recorded in several channels is one object).
void merge(std::vector<entry_ptr>& missed) {
  std::sort(missed.begin(), missed.end(), [](const auto& a, const auto& b) { return a->id < b->id; });
  missed.erase(std::unique(missed.begin(), missed.end()), missed.end());
}
}  // namespace

frame_ptr hub::replay_frame(const history_entry& e, encoder_id id) const {
  const encoder_fn* encode = encoder_of(id);
  if (!encode) return nullptr;
  publish_meta meta;  // publish_ns stays 0: a replay is not a latency sample
  meta.topic = e.topic;
  meta.seq = e.seq;
  meta.ts = e.ts;
  meta.id = e.id;
  meta.positions = e.positions;
  return (*encode)(e.pub, meta);
}

history_result hub::read_history(const history_request& q) {
  history_result out;
  log_ptr log = q.broadcasts ? broadcast_log(q.ch.nsp) : log_of(q.ch, false);
  log_locks locks;
  while (log && !locks.lock({&log, 1})) log = log_of(q.ch, false);  // retired meanwhile
  if (log) {
    expire_locked(*log, steady_ns());
    out.position = {log->seq, log->epoch};
  }
  if (q.since_seq) {
    const std::uint64_t evicted = log ? log->evicted_seq : 0;
    if (!q.epoch.empty() && q.epoch != out.position.epoch) out.reset = "epoch_changed";
    else if (*q.since_seq > out.position.seq) out.reset = "ahead";
    else if (evicted > *q.since_seq) out.reset = "history_gap";
  } else if (q.after_id > last_id_.load(std::memory_order_relaxed)) {
    out.reset = "ahead";
  } else if (log ? log->evicted_id > q.after_id : false) {
    out.reset = "history_gap";
  } else if (!log && !q.broadcasts) {
    // A room forgotten by sweep() lost what it held; a read from before that is a gap.
    std::lock_guard dead(forgotten_mu_);
    auto f = forgotten_.find(q.ch);
    if (f != forgotten_.end() ? f->second.last_id > q.after_id : q.after_id < forgotten_floor_)
      out.reset = "history_gap";
  }
  out.complete = out.reset.empty();
  if (!out.complete || !log) return out;
  for (const auto& item : log->items) {
    const auto& e = item.entry;
    if (q.since_seq ? e->seq > *q.since_seq : e->id > q.after_id) out.entries.push_back(e);
  }
  return out;
}

bool hub::subscribe(const std::string& sid, const std::vector<std::string>& topics,
                    std::optional<std::uint64_t> since, std::string_view epoch,
                    const std::function<void(subscribe_outcome&)>& send) {
  auto sub = find(sid);
  if (!sub) return false;
  std::vector<channel> rooms;
  rooms.reserve(topics.size());
  for (const auto& t : topics) rooms.push_back({"/", t});  // a client's topic is a room of "/"
  std::vector<log_ptr> logs;
  auto locks = lock_channels(rooms, nullptr, logs);
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
  for (std::size_t i = 0; i < rooms.size(); ++i) {
    if (!join_locked(sid, rooms[i])) return false;
    out.positions.push_back({logs[i]->seq, logs[i]->epoch});
  }
  if (since && topics.size() == 1) {
    auto& log = *logs.front();
    expire_locked(log, steady_ns());
    out.resumed = true;
    if (epoch != log.epoch) {
      out.reset = "epoch_changed";
    } else if (*since > log.seq) {
      out.reset = "ahead";
    } else if (log.evicted_seq > *since) {
      out.reset = "history_gap";
    } else {
      // Only the topic's own publications (with a seq) are replayed, as the JSON protocol
      // documents: those to several rooms or to everyone are live only.
      out.recovered = true;
      for (const auto& item : log.items) {
        const auto& e = *item.entry;
        if (e.seq <= *since || e.topic.empty() || skips(e, sid)) continue;
        if (auto f = replay_frame(e, sub->encoder())) out.replay.push_back(std::move(f));
      }
    }
  }
  send(out);
  // After the reply (and replay), before any live event: the topics' states, unless the
  // client resumed with every event it missed (its copy is whole then).
  if (!out.recovered)
    for (std::size_t i = 0; i < rooms.size(); ++i)
      if (!logs[i]->states.empty()) send_full_locked(rooms[i], *logs[i], *sub, nullptr);
  return true;
}

namespace {
// What a cursor point misses in one channel (appended to `missed`), or why it cannot be had.
// `start` becomes where the replay starts: the point, or a restarted channel's 0.
template <class Log>
std::string_view take_after(Log& log, const stream_point& point, stream_point& start,
                            const std::string& sid, std::vector<entry_ptr>& missed) {
  std::uint64_t after = point.pos;
  if (point.epoch != log.epoch) {
    if (log.prev_epoch.empty() || point.epoch != log.prev_epoch) return "epoch_changed";
    if (point.pos < log.prev_pos) return "history_gap";  // the old sequence's end is gone
    if (point.pos > log.prev_pos) return "ahead";
    after = 0;  // it saw all of the old sequence: the new one from its start
    start = {log.epoch, 0};
  }
  if (after > log.pos) return "ahead";
  if (log.evicted_pos > after) return "history_gap";
  for (const auto& item : log.items)
    if (item.pos > after && !skips(*item.entry, sid)) missed.push_back(item.entry);
  return {};
}
}  // namespace

bool hub::subscribe_after(const std::string& sid, const std::vector<std::string>& topics,
                          const std::optional<std::vector<stream_point>>& from,
                          const replay_fn& send) {
  auto sub = find(sid);
  if (!sub) return false;
  std::vector<channel> rooms;
  rooms.reserve(topics.size());
  for (const auto& t : topics) rooms.push_back({"/", t});  // a client's topic is a room of "/"
  const std::string nsp = "/";
  std::vector<log_ptr> logs;  // the rooms', then the broadcasts'
  auto locks = lock_channels(rooms, &nsp, logs);
  for (const auto& room : rooms)
    if (!join_locked(sid, room)) return false;
  // The cursor's order: the broadcasts first, then the topics.
  std::rotate(logs.begin(), logs.end() - 1, logs.end());
  const std::int64_t now_ns = steady_ns();
  std::vector<stream_point> now;
  now.reserve(logs.size());
  for (const auto& log : logs) {
    expire_locked(*log, now_ns);
    now.push_back({log->epoch, log->pos});
  }
  std::vector<frame_ptr> frames;
  // The topics' states follow the welcome (or reset) unless every missed event is replayed.
  auto send_states = [&] {
    for (std::size_t i = 0; i < rooms.size(); ++i)
      if (auto& log = *logs[i + 1]; !log.states.empty())
        send_full_locked(rooms[i], log, *sub, nullptr);
  };
  if (!from) {
    send(frames, {}, now);
    send_states();
    return true;
  }
  std::string_view reset;
  std::vector<stream_point> start = *from;
  std::vector<entry_ptr> missed;
  if (from->size() != logs.size()) reset = "bad_id";  // not a cursor of these topics
  for (std::size_t i = 0; i < logs.size() && reset.empty(); ++i)
    reset = take_after(*logs[i], (*from)[i], start[i], sid, missed);
  if (!reset.empty()) {
    send(frames, reset, now);
    send_states();
    return true;
  }
  merge(missed);
  frames.reserve(missed.size());
  for (const auto& e : missed)
    if (auto f = replay_frame(*e, sub->encoder())) frames.push_back(std::move(f));
  send(frames, {}, start);
  return true;
}

}  // namespace skyrelay
