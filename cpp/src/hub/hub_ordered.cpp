// A cluster broker's delivery into the hub: publications numbered elsewhere (by Redis), and a
// channel's stored tail loaded into its log. The broker decides order and positions; the hub
// keeps them, records history as a cache of the broker's stream, and fans out.
#include <algorithm>

#include "skyrelay/core/clock.hpp"
#include "hub_route.hpp"

namespace skyrelay {

hub::seq_change hub::follow_locked(channel_log& log, const std::string& epoch,
                                  std::uint64_t seq, bool broadcasts) {
  seq_change c = seq_change::none;
  if (log.epoch != epoch) {
    // Another sequence: what the log held belongs to the old one. A cursor at the old one's
    // very end goes on at the new one's start (as when a forgotten channel is used again).
    const bool recorded = log.pos > 0 || log.evicted_pos > 0;
    c = recorded ? seq_change::restarted : seq_change::renamed;
    log.prev_epoch = std::move(log.epoch);
    log.prev_pos = log.pos;
    log.epoch = epoch;
    log.items.clear();
    log.pos = log.seq = 0;
    log.evicted_pos = log.evicted_seq = 0;
    log.evicted_id = last_id_.load(std::memory_order_relaxed);
  }
  if (seq > log.pos + 1) {
    // The broker could not hand what lies between: an explicit hole, never a silent one. A
    // namespace's broadcasts from before this node first saw them were nobody's here.
    if (c == seq_change::none || (c == seq_change::renamed && !broadcasts)) c = seq_change::gap;
    log.items.clear();
    log.evicted_pos = log.evicted_seq = seq - 1;
    log.evicted_id = last_id_.load(std::memory_order_relaxed);
  }
  return c;
}

void hub::announce_locked(const channel& ch, bool broadcasts, seq_change c,
                          const std::string& epoch, std::uint64_t seq) {
  if (c == seq_change::none) return;
  std::vector<std::shared_ptr<subscriber>> members;
  if (!broadcasts) {
    if (auto list = members_of(ch)) members.assign(list->begin(), list->end());
  } else {
    for (auto& cs : conn_shards_) {
      std::shared_ptr<const member_list> all;
      {
        std::lock_guard lock(cs.mu);
        all = cs.all;
      }
      if (!all) continue;
      for (const auto& s : *all)
        if (s->nsp() == ch.nsp) members.push_back(s);
    }
  }
  if (members.empty()) return;
  const std::string_view reason = c == seq_change::restarted ? "epoch_changed"
                                  : c == seq_change::gap     ? "history_gap"
                                                             : "";
  const sequence_reset r{ch, broadcasts, reason, epoch, seq};
  for (const auto& s : members) s->reset(r);
}

std::size_t hub::publish_ordered(const publication& p, const ordered_route& in,
                                 publish_meta* meta_out) {
  route r;
  r.everyone = in.everyone;
  r.single = in.single && in.channels.size() == 1 && !in.everyone;
  for (const auto& sid : in.direct)
    if (auto s = find(sid); s && s->nsp() == p.nsp) r.singles.push_back(std::move(s));
  const bool keep = history_max_.load(std::memory_order_relaxed) > 0;
  std::vector<const ordered_channel*> chans;
  log_locks locks;
  do {
    r.logs.clear();
    r.rooms.clear();
    chans.clear();
    for (const auto& oc : in.channels) {
      log_ptr log = oc.broadcasts ? broadcast_log(oc.ch.nsp) : log_of(oc.ch, keep);
      if (!log) continue;  // no members and no history: nothing to record
      r.logs.push_back(std::move(log));
      if (!oc.broadcasts) r.rooms.push_back(oc.ch);
      chans.push_back(&oc);
    }
  } while (!locks.lock(r.logs));

  publish_meta meta;
  meta.publish_ns = steady_ns();
  meta.id = last_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  meta.ts = in.ts.empty() ? utc_now_iso8601() : in.ts;
  if (in.record_only) {
    r.singles.clear();
  } else {
    const auto recorded = r.rooms.size();
    for (const auto& room : in.also)
      if (std::find(r.rooms.begin(), r.rooms.end(), room) == r.rooms.end()) r.rooms.push_back(room);
    snapshot(r);
    r.rooms.resize(recorded);
  }
  if (!r.logs.empty()) {
    auto positions = std::make_shared<std::vector<channel_pos>>();
    positions->reserve(r.logs.size());
    for (std::size_t i = 0; i < r.logs.size(); ++i) {
      auto& log = *r.logs[i];
      const ordered_channel& oc = *chans[i];
      announce_locked(oc.ch, oc.broadcasts, follow_locked(log, oc.epoch, oc.seq, oc.broadcasts),
                      oc.epoch, oc.seq - 1);
      log.pos = log.seq = oc.seq;  // in a broker's numbering, a room's seq is its position
      positions->push_back({oc.broadcasts ? std::string() : oc.ch.room, oc.broadcasts, oc.seq});
      meta.epochs.push_back(log.epoch);
    }
    if (r.single) {
      meta.topic = chans.front()->ch.room;
      meta.seq = chans.front()->seq;
    }
    meta.positions = std::move(positions);
    if (!keep) {
      for (auto& log : r.logs) {
        log->evicted_id = meta.id;
        log->evicted_pos = log->evicted_seq = log->pos;
      }
    } else {
      auto entry = std::make_shared<const history_entry>(history_entry{
          p, std::string(meta.topic), meta.seq, meta.id, meta.ts, meta.publish_ns,
          meta.positions});
      for (std::size_t i = 0; i < r.logs.size(); ++i)
        record_locked(*r.logs[i], (*meta.positions)[i].pos, entry);
    }
  }
  if (!r.single) r.room_policy.reset();
  if (meta_out) *meta_out = meta;
  return fan_out(p, meta, r);  // under the order locks, as publish()
}

void hub::load_history(const channel& ch, bool broadcasts, const std::string& epoch,
                       std::uint64_t seq, std::vector<stored_entry> entries) {
  log_ptr log;
  log_locks locks;
  do {
    log = broadcasts ? broadcast_log(ch.nsp) : log_of(ch, true);
  } while (!locks.lock({&log, 1}));
  if (log->epoch == epoch && log->pos >= seq) return;  // it stands there already (or later)
  const bool keep = history_max_.load(std::memory_order_relaxed) > 0;
  const std::int64_t now = steady_ns();
  // Members get none of the entries below (they are history): a log that moves past where
  // its members stand, in the same epoch, leaves them a hole.
  seq_change c = log->epoch == epoch ? seq_change::gap : seq_change::none;
  auto note = [&c](seq_change n) { c = std::max(c, n); };
  for (auto& e : entries) {
    if (log->epoch == epoch && e.seq <= log->pos) continue;
    if (e.seq > seq) break;
    note(follow_locked(*log, epoch, e.seq, broadcasts));
    log->pos = log->seq = e.seq;
    if (!keep) continue;
    const bool single = e.single && !broadcasts;
    auto positions = std::make_shared<const std::vector<channel_pos>>(
        std::vector<channel_pos>{{broadcasts ? std::string() : ch.room, broadcasts, e.seq}});
    auto entry = std::make_shared<const history_entry>(history_entry{
        std::move(e.pub), single ? ch.room : std::string(), single ? e.seq : 0,
        last_id_.fetch_add(1, std::memory_order_relaxed) + 1, std::move(e.ts), now, positions});
    record_locked(*log, e.seq, entry);
  }
  // The stored tail ends at `seq`: anything missing is a hole.
  note(follow_locked(*log, epoch, seq + 1, broadcasts));
  log->pos = log->seq = seq;
  announce_locked(ch, broadcasts, c, epoch, seq);
}

}  // namespace skyrelay
