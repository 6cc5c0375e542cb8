// The hub's keyed states: changes published as deltas under the room's order lock, and full
// updates queued to members under that same lock (see hub.hpp, "Keyed states").
#include <stdexcept>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/hub/keyed_state.hpp"
#include "hub_route.hpp"

namespace skyrelay {

namespace {
[[noreturn]] void no_state(const channel& room, const std::string& event) {
  throw std::invalid_argument("room \"" + room.room + "\" of namespace \"" + room.nsp +
                              "\" has no state for event \"" + event + "\"");
}

bool same_options(const state_options& a, const state_options& b) {
  return a.key_name == b.key_name && a.fields_name == b.fields_name &&
         a.max_keys == b.max_keys && a.max_key_bytes == b.max_key_bytes;
}
}  // namespace

keyed_state* hub::state_locked(channel_log& log, const std::string& event) {
  for (const auto& s : log.states)
    if (s->options().event == event) return s.get();
  return nullptr;
}

bool hub::define_state(const channel& room, const state_options& opts) {
  if (auto why = check_state_options(opts); !why.empty()) throw std::invalid_argument(why);
  std::vector<log_ptr> logs;
  auto locks = lock_channels({room}, nullptr, logs);
  if (auto* s = state_locked(*logs.front(), opts.event)) return same_options(s->options(), opts);
  logs.front()->states.push_back(std::make_shared<keyed_state>(opts));
  return true;
}

std::size_t hub::publish_delta_locked(const channel& room, const log_ptr& log,
                                      const std::string& event, std::string delta) {
  publication p;
  p.event = event;
  p.data = std::move(delta);
  p.to = {room.room};
  p.nsp = room.nsp;
  route r;
  r.single = true;
  r.rooms = {room};
  r.logs = {log};
  state_deltas_.fetch_add(1, std::memory_order_relaxed);
  return publish_locked(p, r, nullptr);
}

hub::state_change hub::update_state(const channel& room, const std::string& event,
                                    const std::string& key, std::string_view fields_json) {
  std::vector<log_ptr> logs;
  auto locks = lock_channels({room}, nullptr, logs);
  keyed_state* s = state_locked(*logs.front(), event);
  if (!s) no_state(room, event);
  std::string delta;
  bool added = false;
  state_change out{s->update(key, fields_json, delta, added)};
  switch (out.result) {
    case state_result::changed:
      if (added) state_keys_.fetch_add(1, std::memory_order_relaxed);
      out.delivered = publish_delta_locked(room, logs.front(), event, std::move(delta));
      break;
    case state_result::unchanged:
      state_unchanged_.fetch_add(1, std::memory_order_relaxed);
      break;
    case state_result::too_many_keys:
      state_refused_keys_.fetch_add(1, std::memory_order_relaxed);
      break;
    case state_result::too_large:
      state_refused_bytes_.fetch_add(1, std::memory_order_relaxed);
      break;
    case state_result::bad_fields:
      break;
  }
  return out;
}

hub::state_change hub::remove_state_key(const channel& room, const std::string& event,
                                        const std::string& key) {
  std::vector<log_ptr> logs;
  auto locks = lock_channels({room}, nullptr, logs);
  keyed_state* s = state_locked(*logs.front(), event);
  if (!s) no_state(room, event);
  std::string delta;
  state_change out{s->remove(key, delta)};
  if (out.result == state_result::changed) {
    state_keys_.fetch_sub(1, std::memory_order_relaxed);
    out.delivered = publish_delta_locked(room, logs.front(), event, std::move(delta));
  }
  return out;
}

std::optional<std::string> hub::state_fields(const channel& room, const std::string& event,
                                             const std::string* key) {
  std::vector<log_ptr> logs;
  auto locks = lock_channels({room}, nullptr, logs);
  const keyed_state* s = state_locked(*logs.front(), event);
  if (!s) return std::nullopt;
  return key ? s->get(*key) : s->snapshot();
}

std::optional<std::size_t> hub::send_full_state(const channel& room, const std::string& event,
                                                const std::string& sid) {
  std::vector<log_ptr> logs;
  auto locks = lock_channels({room}, nullptr, logs);
  auto sub = find(sid);
  if (!sub) return std::nullopt;
  {
    auto& cs = conn_shards_[shard_of(sid)];
    std::lock_guard lock(cs.mu);
    auto it = cs.conns.find(sid);
    if (it == cs.conns.end() || !it->second.rooms.count(room)) return std::nullopt;
  }
  return send_full_locked(room, *logs.front(), *sub, event.empty() ? nullptr : &event);
}

std::size_t hub::send_full_locked(const channel& room, channel_log& log, subscriber& sub,
                                  const std::string* event) {
  const encoder_fn* encode = encoder_of(sub.encoder());
  if (!encode) return 0;
  // As the room's own publications look, at the room's current seq: a JSON-protocol client
  // that resumes later with `since` gets what came after this. No positions: it is not in
  // history, so it moves no SSE cursor and no Socket.IO offset past a publication.
  publish_meta meta;
  meta.topic = room.room;
  meta.seq = log.seq;
  meta.ts = utc_now_iso8601();
  std::size_t n = 0;
  for (const auto& s : log.states) {
    if (event && s->options().event != *event) continue;
    for (auto& payload : s->full()) {
      publication p;
      p.event = s->options().event;
      p.data = std::move(payload);
      p.to = {room.room};
      p.nsp = room.nsp;
      if (auto f = (*encode)(p, meta)) {
        sub.deliver(f, overflow_policy::disconnect);
        ++n;
      }
    }
  }
  state_full_payloads_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

hub::state_counters hub::state_stats() const noexcept {
  auto get = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return {get(state_keys_),     get(state_deltas_),       get(state_unchanged_),
          get(state_full_payloads_), get(state_refused_keys_), get(state_refused_bytes_)};
}

}  // namespace skyrelay
