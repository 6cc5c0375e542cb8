// sio_server: the resuming side of cross-node recovery (docs/architecture.md, "Socket.IO
// recovery across nodes"): a CONNECT presents a pid that no socket of this node has; the
// socket's record is claimed from Redis and, when every check passes, the socket comes back
// on this node with what it missed, replayed from the rooms' histories. Anything else is a
// new socket (`recovered` false), counted by reason.
#include <chrono>
#include <future>
#include <limits>

#include "skyrelay/broker/redis_sio_recovery.hpp"
#include "skyrelay/net/eio_session.hpp"
#include "skyrelay/net/sio_server.hpp"
#include "skyrelay/net/sio_socket.hpp"

namespace skyrelay {

namespace {
constexpr std::chrono::milliseconds redis_wait{1'000};
constexpr std::chrono::seconds warm_wait{5};

using refusal = sio_server::refusal;

refusal claim_refusal(redis::sio_claim_result r) {
  switch (r) {
    case redis::sio_claim_result::wrong_namespace: return refusal::namespace_;
    case redis::sio_claim_result::unavailable: return refusal::unavailable;
    default: return refusal::unknown;  // unknown, corrupt
  }
}

// The replay's outcome, written under the channels' order locks.
struct replay_outcome {
  std::string reset;
  std::size_t frames{0};
};
}  // namespace

void sio_server::resume_elsewhere(const std::shared_ptr<eio_session>& session, std::string nsp,
                                  std::string pid, std::string offset, std::string auth,
                                  auth::identity_ptr identity) {
  auto job = [this, session, nsp = std::move(nsp), pid = std::move(pid),
              offset = std::move(offset), auth = std::move(auth),
              identity = std::move(identity)]() mutable {
    if (auto why = resume_claimed(session, nsp, pid, offset, auth, identity)) {
      refused(*why);
      session->open_socket(nsp, std::move(auth), std::move(identity));
    }
  };
  // It waits for Redis: never inside the batch scope that holds the GIL.
  if (!dispatcher_.post(job, dispatcher::job_kind::blocking)) {
    refused(refusal::unavailable);
    session->open_socket(nsp, auth, identity);
  }
}

std::optional<sio_server::refusal> sio_server::resume_claimed(
    const std::shared_ptr<eio_session>& session, const std::string& nsp, const std::string& pid,
    const std::string& offset_text, const std::string& auth,
    const auth::identity_ptr& identity) {
  const auto parts = redis::parse_pid(pid);
  // A sid of this node is not another node's socket (and its registry entry is not touched).
  if (!parts || hub_.find(std::string(parts->sid))) return refusal::unknown;
  const std::string sid(parts->sid);
  auto claim = store_->claim(pid, nsp, redis_wait, node_id_);
  if (claim.result != redis::sio_claim_result::resumable) return claim_refusal(claim.result);
  const auto& rec = claim.record;
  if (cfg_.jwt && rec.subject != (identity ? identity->subject : std::string()))
    return refusal::subject;
  const auto off = redis::parse_offset(offset_text, store_->limits().max_channels);
  if (!off || off->version != rec.version || off->pos.size() != rec.channels.size() ||
      rec.channels.empty() || !rec.channels.front().broadcasts)
    return refusal::version;
  if (!claim.direct || *claim.direct != off->direct) return refusal::direct;
  // hub::subscribe_after replays rooms of "/" (the namespace the cursor path knows).
  if (nsp != "/") return refusal::namespace_;
  std::vector<redis::sio_channel_point> points = rec.channels;
  std::vector<std::string> topics;
  std::vector<channel> rooms;
  for (std::size_t i = 0; i < points.size(); ++i) {
    points[i].pos = off->pos[i];
    if (i == 0) continue;
    if (points[i].broadcasts) return refusal::version;
    topics.push_back(points[i].room);
    rooms.push_back({nsp, points[i].room});
  }
  // The rooms' streams loaded into this node's hub, so that their histories reach back.
  if (!rooms.empty()) {
    auto warmed = std::make_shared<std::promise<bool>>();
    auto done = warmed->get_future();
    warm_(rooms, [warmed](bool ok) { warmed->set_value(ok); });
    if (done.wait_for(warm_wait) != std::future_status::ready || !done.get())
      return refusal::unavailable;
  }
  return replay_on(session, nsp, pid, sid, std::move(points), topics, rec.version, *off, auth,
                   identity);
}

std::optional<sio_server::refusal> sio_server::replay_on(
    const std::shared_ptr<eio_session>& session, const std::string& nsp, const std::string& pid,
    const std::string& sid, std::vector<redis::sio_channel_point> points,
    const std::vector<std::string>& topics, std::uint64_t version, const redis::sio_offset& off,
    const std::string& auth, const auth::identity_ptr& identity) {
  // A point at 0 of a sequence this node does not have saw nothing of its channel: it
  // starts where the channel stands here when Redis numbered nothing in it yet.
  for (auto& p : points) {
    if (p.pos != 0) continue;
    history_request q;
    q.ch = {nsp, p.room};
    q.broadcasts = p.broadcasts;
    q.after_id = std::numeric_limits<std::uint64_t>::max();
    auto here = hub_.read_history(q).position;
    if (here.epoch == p.epoch) continue;
    if (here.seq != 0 || !store_->never_numbered(nsp, p.room, p.broadcasts, redis_wait))
      return refusal::epoch;
    p.epoch = here.epoch;
  }
  auto sock = session->place_new_socket(nsp, sid);
  if (!sock) return refusal::unavailable;  // the session closed, or the namespace is taken
  std::vector<stream_point> from;
  for (const auto& p : points) from.push_back({p.epoch, p.pos});
  sock->track(pid, std::move(points), version + 1, off.n, off.direct);
  sock->set_identity(identity);
  sock->begin_replay();
  register_socket(sock);
  auto undo = [&](refusal why) {
    session->forget_socket(nsp);
    sock->mark_closed();
    hub_.remove(sid);
    std::lock_guard lock(mu_);
    sockets_.erase(sid);
    return why;
  };
  if (!hub_.add(sock)) return undo(refusal::unknown);
  const std::size_t max_replay = cfg_.outbox_max_frames + cfg_.history_max_events;
  replay_outcome out;
  hub_.subscribe_after(sid, topics, from,
                       [&](std::vector<frame_ptr>& frames, std::string_view reset,
                           const std::vector<stream_point>&) {
    out.reset = std::string(reset);
    out.frames = frames.size();
    if (reset.empty() && frames.size() <= max_replay) sock->end_replay(frames);
  });
  if (!out.reset.empty())
    return undo(out.reset == "history_gap" ? refusal::trimmed : refusal::epoch);
  if (out.frames > max_replay) return undo(refusal::trimmed);
  // Emits by sid: the counter read now still says none was missed (every later one is
  // routed here since the claim, and is in the socket's queue).
  auto direct = store_->direct_now(sid, redis_wait);
  if (!direct || *direct != off.direct) return undo(refusal::direct);
  ++resumes_;
  save_record(sock);
  sock->arm_expiry(session->executor(), *this);
  session->run_connect_hook(sock, auth, identity, true);
  return std::nullopt;
}

}  // namespace skyrelay
