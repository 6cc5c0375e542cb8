// sio_server: the writing side of cross-node recovery (docs/architecture.md, "Socket.IO
// recovery across nodes"): each tracked socket's record, written when it is accepted, at
// each join or leave, and every window / 3 while it lives.
#include <limits>

#include "skyrelay/broker/redis_sio_recovery.hpp"
#include "skyrelay/net/sio_server.hpp"
#include "skyrelay/net/sio_socket.hpp"

namespace skyrelay {

namespace {
// Where a channel of `nsp` stands now (its epoch and last position).
redis::sio_channel_point point_of(hub& h, const std::string& nsp, const std::string& room,
                                  bool broadcasts) {
  history_request q;
  q.ch = {nsp, room};
  q.broadcasts = broadcasts;
  q.after_id = std::numeric_limits<std::uint64_t>::max();
  auto r = h.read_history(q);
  return {room, broadcasts, std::move(r.position.epoch), r.position.seq};
}
}  // namespace

void sio_server::set_recovery_store(redis::sio_recovery_store* store, std::string node_id,
                                    warm_fn warm) {
  store_ = store;
  node_id_ = std::move(node_id);
  warm_ = std::move(warm);
}

void sio_server::track_new(const std::shared_ptr<sio_socket>& s,
                           const std::function<bool()>& add) {
  if (!store_ || s->pid().empty()) {
    add();
    return;
  }
  auto before = point_of(hub_, s->nsp(), "", true);
  s->track(redis::make_pid(s->sid()), {before}, 1, 0, 0);
  if (!add()) return;
  s->settle(before, point_of(hub_, s->nsp(), "", true));
  save_record(s);
}

bool sio_server::join_tracked(const std::shared_ptr<sio_socket>& s, const channel& room,
                              const std::function<bool()>& join) {
  auto before = point_of(hub_, room.nsp, room.room, false);
  if (!s->track_room(room.room, before.epoch, before.pos)) return join();  // a member already
  if (!join()) {
    s->untrack_room(room.room);
    save_record(s);
    return false;
  }
  s->settle(before, point_of(hub_, room.nsp, room.room, false));
  save_record(s);
  return true;
}

void sio_server::left_tracked(const std::shared_ptr<sio_socket>& s, const std::string& room) {
  s->untrack_room(room);
  save_record(s);
}

void sio_server::save_record(const std::shared_ptr<sio_socket>& s) {
  if (!store_ || !s->tracked()) return;
  if (auto r = s->record())
    store_->save(s->pid(), *r);
  else
    store_->drop(s->pid());
  start_refresh();
}

void sio_server::start_refresh() {
  std::lock_guard lock(mu_);
  if (refresh_timer_ || stopping_) return;
  refresh_timer_ = std::make_shared<asio::steady_timer>(next_context_());
  auto period = std::max<std::chrono::milliseconds>(cfg_.sio_recovery_window / 3,
                                                    std::chrono::milliseconds(100));
  refresh_timer_->expires_after(period);
  refresh_timer_->async_wait([this, t = refresh_timer_](boost::system::error_code ec) {
    if (!ec) refresh();
  });
}

void sio_server::refresh() {
  std::vector<std::shared_ptr<sio_socket>> live;
  std::shared_ptr<asio::steady_timer> timer;
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !refresh_timer_) return;
    timer = refresh_timer_;
    for (const auto& [sid, w] : sockets_)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (const auto& s : live)
    if (s->tracked() && s->accepted()) save_record(s);
  auto period = std::max<std::chrono::milliseconds>(cfg_.sio_recovery_window / 3,
                                                    std::chrono::milliseconds(100));
  timer->expires_after(period);
  timer->async_wait([this, timer](boost::system::error_code ec) {
    if (!ec) refresh();
  });
}

void sio_server::refused(refusal why) { ++refusals_[static_cast<std::size_t>(why)]; }

void sio_server::append_recovery_metrics(std::string& out) const {
  if (!store_) return;
  const auto c = store_->counters();
  auto add = [&out](const char* name, const char* help, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" +
           name + " " + std::to_string(v) + "\n";
  };
  add("skyrelay_sio_recovery_records_saved_total",
      "Socket.IO recovery records written to Redis (cross-node recovery).", c.saved);
  add("skyrelay_sio_recovery_records_save_refused_total",
      "Socket.IO recovery records not written: over the limits (no cross-node resume).",
      c.save_refused);
  add("skyrelay_sio_cross_node_resumes_total",
      "Socket.IO sockets resumed on this node from another node's record.", resumes_.load());
  static const char* const names[] = {"unknown", "namespace", "subject", "version",
                                      "direct",  "epoch",     "trimmed", "unavailable"};
  out += "# HELP skyrelay_sio_cross_node_refusals_total Cross-node Socket.IO resumes refused "
         "(a new socket, recovered false), by reason.\n"
         "# TYPE skyrelay_sio_cross_node_refusals_total counter\n";
  for (std::size_t i = 0; i < refusals_.size(); ++i)
    out += std::string("skyrelay_sio_cross_node_refusals_total{reason=\"") + names[i] + "\"} " +
           std::to_string(refusals_[i].load()) + "\n";
}

}  // namespace skyrelay
