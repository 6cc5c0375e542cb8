// The hub's history read (the memory broker's answer to broker::history).
#include "skyrelay/hub/hub.hpp"

#include "skyrelay/core/clock.hpp"

namespace skyrelay {

history_result hub::read_history(const history_request& q) {
  std::lock_guard order(publish_mu_);
  history_result out;
  topic_log* log = nullptr;
  if (q.broadcasts) {
    if (auto it = broadcasts_.find(q.ch.nsp); it != broadcasts_.end()) log = &it->second;
  } else if (auto it = topics_.find(q.ch); it != topics_.end()) {
    log = &it->second;
  }
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
    // A room forgotten by sweep() lost what it held; a resume from before that is a gap.
    auto f = forgotten_.find(q.ch);
    if (f != forgotten_.end() ? f->second > q.after_id : q.after_id < forgotten_floor_)
      out.reset = "history_gap";
  }
  out.complete = out.reset.empty();
  if (!out.complete || !log) return out;
  for (const auto& e : log->entries)
    if (q.since_seq ? e->seq > *q.since_seq : e->id > q.after_id) out.entries.push_back(e);
  return out;
}

}  // namespace skyrelay
