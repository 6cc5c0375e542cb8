#include "skyrelay/net/sse_session.hpp"

#include <algorithm>
#include <cstdio>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/heartbeat_grid.hpp"
#include "skyrelay/net/idle_alloc.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/sse_cursor.hpp"

namespace skyrelay {

sse_session::sse_session(net::stream socket, session_context& ctx, std::string sid,
                         std::string response_head, std::vector<std::string> topics,
                         std::string last_event_id, const endpoint* ep, path_params params)
    : push_session(std::move(socket), ctx, std::move(sid), std::string(), ctx.encoders().sse),
      topics_(std::move(topics)),
      ep_(ep),
      params_(std::move(params)),
      last_id_(std::move(last_event_id)),
      head_(std::move(response_head)) {}

sse_session::~sse_session() = default;

void sse_session::open() {
  auto& hub = ctx_.get_hub();
  const auto& cfg = ctx_.config();
  prefix_ += "retry: " + std::to_string(cfg.sse_retry.count()) + "\n\n";
  std::string welcome = "{\"sid\":";
  proto::append_json_string(welcome, sid());
  welcome += ",\"topics\":[";
  for (std::size_t i = 0; i < topics_.size(); ++i) {
    if (i) welcome += ',';
    proto::append_json_string(welcome, topics_[i]);
  }
  welcome += "],\"keepalive_ms\":" + std::to_string(cfg.sse_keepalive.count()) + "}";
  // A Last-Event-ID that is no cursor opens the stream afresh, after a reset saying why.
  std::optional<std::vector<stream_point>> from;
  std::string_view refused;
  if (!last_id_.empty()) {
    auto read = proto::parse_sse_cursor(last_id_);
    from = std::move(read.points);
    refused = read.error;
  }
  // Under the channels' order locks: the welcome (or reset) and the replay come before any
  // live event.
  hub.subscribe_after(sid(), topics_, from,
                      [&](std::vector<frame_ptr>& replay, std::string_view reset,
                          const std::vector<stream_point>& cursor) {
    if (reset.empty()) reset = refused;
    cursor_ = cursor;
    joined_.store(true, std::memory_order_release);
    // A fresh stream (or one whose history is gone) starts from here, so the welcome or the
    // reset carries the current position as its id: the browser resumes from it. A stream
    // that resumes keeps its own id until the replayed events move it on.
    const bool resumed = from && reset.empty();
    if (!resumed) prefix_ += "id: " + proto::format_sse_cursor(hub.epoch_prefix(), cursor_) + "\n";
    if (ep_ && ep_->welcome_data && !ep_->cfg.welcome_event.empty())
      prefix_ += endpoint_event(ep_->cfg.welcome_event, *ep_->welcome_data);
    else
      prefix_ += "event: welcome\ndata: " + welcome + "\n\n";
    if (!reset.empty()) {
      prefix_ += "event: reset\ndata: {\"reason\":";
      proto::append_json_string(prefix_, reset);
      prefix_ += "}\n\n";
    }
    for (const auto& f : replay) push_session::deliver(f, overflow_policy::disconnect);
  });
}

void sse_session::deliver(const frame_ptr& f, overflow_policy policy) {
  if (f->positions && !joined_.load(std::memory_order_acquire))
    for (const auto& p : *f->positions)
      if (index_of(p) != std::string::npos) return;
  push_session::deliver(f, policy);
}

void sse_session::reset(const sequence_reset& r) {
  if (!joined_.load(std::memory_order_acquire)) return;  // open() reads where it stands
  const std::size_t i = index_of(channel_pos{r.broadcasts ? std::string() : r.ch.room,
                                             r.broadcasts, 0});
  if (i == std::string::npos) return;
  std::string block;
  if (!r.reason.empty()) {
    block = "event: reset\ndata: {\"reason\":";
    proto::append_json_string(block, r.reason);
    if (!r.broadcasts) {
      block += ",\"topic\":";
      proto::append_json_string(block, r.ch.room);
    }
    block += "}\n\n";
  }
  auto f = make_frame(std::move(block), 0, false);
  {
    std::lock_guard lock(resets_mu_);
    resets_.push_back({f.get(), i, stream_point{r.epoch, r.seq}});
    has_resets_.store(true, std::memory_order_release);
  }
  push_session::deliver(f, overflow_policy::disconnect);
}

bool sse_session::apply_reset(const frame_ptr& f) {
  std::lock_guard lock(resets_mu_);
  auto it = std::find_if(resets_.begin(), resets_.end(),
                         [&](const pending_reset& r) { return r.marker == f.get(); });
  if (it == resets_.end()) return false;
  if (it->index < cursor_.size()) cursor_[it->index] = std::move(it->point);
  resets_.erase(it);
  has_resets_.store(!resets_.empty(), std::memory_order_release);
  return true;
}

std::size_t sse_session::index_of(const channel_pos& p) const noexcept {
  if (p.broadcast) return 0;  // a stream is in "/", and gets only its broadcasts
  for (std::size_t i = 0; i < topics_.size(); ++i)
    if (topics_[i] == p.room) return i + 1;
  return std::string::npos;
}

namespace {
// The shared SSE block `body` as one stream writes it: its own `id:` line (the stream's
// cursor), then the block (frame::base). One frame per event, so frames_out counts events.
frame_ptr with_id(const frame_ptr& body, std::string id_line) {
  frame f;
  f.bytes = std::move(id_line);
  f.publish_ns = body->publish_ns;
  f.is_data = body->is_data;
  f.middle = body->bytes;
  f.base = body;
  return std::make_shared<const frame>(std::move(f));
}
}  // namespace

void sse_session::stamp(std::vector<frame_ptr>& frames) {
  const bool resets = has_resets_.load(std::memory_order_acquire);
  if (!resets &&
      std::none_of(frames.begin(), frames.end(), [](const auto& f) { return f->positions; }))
    return;
  const auto& prefix = ctx_.get_hub().epoch_prefix();
  std::size_t kept = 0;  // frames[0, kept) go out
  for (auto& f : frames) {
    if (resets && !f->positions && apply_reset(f)) {
      // The cursor stands where the channel's new sequence does; a reset block says so (a
      // mere change of name writes nothing: the next event carries the new cursor).
      if (f->bytes.empty()) continue;
      f = with_id(f, "id: " + proto::format_sse_cursor(prefix, cursor_) + "\n");
      if (&frames[kept] != &f) frames[kept] = std::move(f);
      ++kept;
      continue;
    }
    bool mine = false, moved = false;
    if (f->positions)
      for (const auto& p : *f->positions) {
        const std::size_t i = index_of(p);
        if (i == std::string::npos || i >= cursor_.size()) continue;
        mine = true;
        if (p.pos > cursor_[i].pos) {
          cursor_[i].pos = p.pos;
          moved = true;
        }
      }
    if (mine && !moved) continue;  // sent already
    if (moved) f = with_id(f, "id: " + proto::format_sse_cursor(prefix, cursor_) + "\n");
    if (&frames[kept] != &f) frames[kept] = std::move(f);
    ++kept;
  }
  frames.resize(kept);
}

std::string sse_session::endpoint_event(const std::string& name,
                                       const proto::json_template& data) const {
  const std::string ts = utc_now_iso8601();
  proto::reply_values v;
  v.ts = ts;
  v.ts_ms = proto::iso8601_ms(ts);
  v.sid = sid();
  v.params = &params_;
  if (!topics_.empty()) v.topic = topics_.front();
  std::string block = "event: ";
  for (char c : name) block += (c == '\n' || c == '\r') ? ' ' : c;
  // The template's JSON has no raw line breaks (strings escape them): one data line.
  block += "\ndata: " + proto::render_stream(data, v) + "\n\n";
  return block;
}

void sse_session::arm_timer() {
  // A dead peer shows as a write error. An endpoint's heartbeat event takes the place of the
  // keep-alive comment, at its own interval.
  const bool beat = ep_ && ep_->heartbeat_data && ep_->cfg.heartbeat_interval.count() > 0;
  const auto period = beat ? ep_->cfg.heartbeat_interval : ctx_.config().sse_keepalive;
  timer_.expires_at(net::heartbeat_due(std::chrono::steady_clock::now() + period, period));
  // Pending for as long as the stream is idle: at its own size (idle_alloc.hpp).
  timer_.async_wait(net::idle_alloc([self = self_as<sse_session>()](boost::system::error_code ec) {
    if (ec || self->state_ != state::open) {
      if (!ec && self->state_ == state::closing) self->finish(self->close_reason_);
      return;
    }
    const auto* ep = self->ep_;
    if (ep && ep->heartbeat_data && ep->cfg.heartbeat_interval.count() > 0)
      self->push_control(self->endpoint_event(ep->cfg.heartbeat_event, *ep->heartbeat_data));
    else
      self->push_control(": keep-alive\n\n");
    self->arm_timer();
  }));
}

void sse_session::frame(net::write_batch& b) {
  stamp(b.frames());
  b.before(head_);
  const std::size_t size = prefix_.size() + b.frame_bytes();
  if (size) {
    char hex[24];
    chunk_head_.assign(hex, static_cast<std::size_t>(std::snprintf(hex, sizeof hex, "%zx\r\n", size)));
    b.before_view(chunk_head_);  // rewritten only by the next fill, after this write
    b.before(prefix_);
    b.after_view("\r\n");
  }
}

std::string sse_session::close_bytes(std::uint16_t, std::string_view) {
  return "0\r\n\r\n";  // the last chunk
}

void sse_session::expiry_notice() {
  // The stream says why before it ends, so a client can tell this end from a failure.
  push_control("event: token_expired\ndata: {\"code\":\"token_expired\",\"message\":"
               "\"token expired\"}\n\n");
}

}  // namespace skyrelay
