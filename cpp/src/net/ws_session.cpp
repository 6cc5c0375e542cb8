#include "skyrelay/net/ws_session.hpp"

#include <algorithm>
#include <cassert>

#include "skyrelay/net/heartbeat_grid.hpp"
#include "skyrelay/net/idle_alloc.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/permessage_deflate.hpp"

namespace skyrelay {

namespace {
// Every connection's ping is the same immutable frame, made once: a heartbeat tick that pings
// thousands of connections allocates nothing for them (allocated and freed together, their
// frames left the heap that much bigger for good).
const frame_ptr& ping_frame() {
  static const frame_ptr f = make_frame(ws::encode(ws::opcode::ping, {}), 0, false);
  return f;
}
}  // namespace

ws_session::ws_session(net::stream socket, session_context& ctx, std::string sid,
                       std::string handshake_response, std::string leftover, encoder_id encoder,
                       std::unique_ptr<ws_handler> handler)
    : ws_session(std::move(socket), ctx, std::move(sid), std::move(handshake_response),
                 std::move(leftover), encoder) {
  assert(handler);
  owned_handler_ = std::move(handler);
}

ws_session::ws_session(net::stream socket, session_context& ctx, std::string sid,
                       std::string handshake_response, std::string leftover, encoder_id encoder)
    : push_session(std::move(socket), ctx, std::move(sid), std::move(handshake_response),
                   encoder),
      parser_(ctx.config().max_message_size) {
  if (!leftover.empty()) early_bytes_ = std::make_unique<std::string>(std::move(leftover));
}

ws_session::~ws_session() = default;

void ws_session::start_with(std::weak_ptr<ws_handler> handler, std::string first) {
  assert(!owned_handler_);  // a session with a handler of its own is a hub client: start()
  handler_ = std::move(handler);
  transport_only_ = true;
  auto self = this->self_as<ws_session>();
  ctx_.sessions().add(self);
  asio::post(socket_.get_executor(), [self, first = std::move(first)]() mutable {
    if (!first.empty()) self->prefix_ += ws::encode(ws::opcode::text, first);
    self->on_accept();
  });
}

template <class Fn>
void ws_session::with_handler(Fn&& fn) {
  if (owned_handler_) {
    fn(*owned_handler_);
  } else if (auto h = handler_.lock()) {
    fn(*h);
  }
}

void ws_session::enable_deflate() {
  deflate_ = true;
  parser_.allow_compressed();
}

void ws_session::frame(net::write_batch& b) {
  b.before(prefix_);
  if (!deflate_) return;
  auto& m = ctx_.get_metrics();
  auto& shard = m.local();
  const std::size_t threshold = ctx_.config().compression_threshold;
  for (auto& f : b.frames()) {
    bool made = false;
    frame_ptr twin = ws::deflated(f, threshold, made);
    if (made) m.add(shard.deflate_compressions);
    if (twin == f) continue;
    m.add(shard.deflate_messages_out);
    m.add(shard.deflate_bytes_before, f->wire_size());
    m.add(shard.deflate_bytes_after, twin->bytes.size());
    f = std::move(twin);
  }
}

void ws_session::send_first(std::string_view text) {
  assert(state_ == state::open && !writer_.busy());
  prefix_ += ws::encode(ws::opcode::text, text);
}

void ws_session::reset(const sequence_reset& r) {
  if (r.reason.empty()) return;
  send_text(proto::reset(r.broadcasts ? std::string_view() : r.ch.room, r.reason, r.seq,
                         r.epoch));
}

void ws_session::open() {
  with_handler([this](ws_handler& h) { h.on_ws_open(*this); });
  last_heard_ = std::chrono::steady_clock::now();
}

std::vector<std::string> ws_session::handshake_topics() const {
  return owned_handler_ ? owned_handler_->handshake_topics() : std::vector<std::string>{};
}

void ws_session::heard() {
  last_heard_ = std::chrono::steady_clock::now();
  pinged_ = false;
}

bool ws_session::consume(char* data, std::size_t n) {
  if (read_broken_) return true;
  std::uint16_t code = parser_.feed(data, n, [this](const ws::inbound& in) { return on_frame(in); });
  if (state_ == state::closed) return false;
  if (code) {
    read_broken_ = true;
    const bool too_big = code == close_code::message_too_big;
    if (too_big) ctx_.get_metrics().limit_hit(limit_kind::message_size);
    begin_close(code, too_big ? "message too big" : code == 1007 ? "invalid UTF-8" : "protocol error",
                too_big ? disconnect_reason::message_too_big : disconnect_reason::protocol_error,
                true);
    // Nothing more will be read as data; wait for the close handshake or the timer.
  }
  return state_ != state::closed;
}

bool ws_session::on_frame(const ws::inbound& in) {
  switch (in.op) {
    case ws::opcode::text:
    case ws::opcode::binary:
      return on_message(in);
    case ws::opcode::ping:
      if (state_ == state::open) push_control(ws::encode(ws::opcode::pong, in.payload));
      return true;
    case ws::opcode::pong:
      return true;
    case ws::opcode::close:
      return on_close_frame(in);
    case ws::opcode::continuation:
      break;
  }
  return true;
}

bool ws_session::on_message(const ws::inbound& in) {
  if (state_ != state::open) return true;
  if (in.compressed) return on_compressed(in);
  auto& m = ctx_.get_metrics();
  m.add(m.local().of(metric_transport()).messages_in);
  if (in.op == ws::opcode::text)
    with_handler([&](ws_handler& h) { h.on_ws_text(*this, in.payload); });
  else
    with_handler([&](ws_handler& h) { h.on_ws_binary(*this, in.payload); });
  return state_ != state::closed;
}

bool ws_session::on_compressed(const ws::inbound& in) {
  // Every connection asked for client_no_context_takeover: each message inflates afresh, so
  // one inflater per I/O thread serves all of them, and an idle connection holds no zlib
  // state. Its output buffer is the thread's too, and never grows past max_message_size + 1.
  thread_local ws::inflater inflater;
  thread_local std::string text;
  auto& m = ctx_.get_metrics();
  const auto r = inflater.inflate(in.payload, ctx_.config().max_message_size, text);
  const bool utf8_ok = r != ws::inflater::result::ok || in.op != ws::opcode::text ||
                       proto::is_valid_utf8(text);
  if (r != ws::inflater::result::ok || !utf8_ok) {
    read_broken_ = true;
    if (r == ws::inflater::result::too_big) {
      m.add(m.local().inflate_too_big);
      m.limit_hit(limit_kind::message_size);
      begin_close(close_code::message_too_big, "message too big",
                  disconnect_reason::message_too_big, true);
    } else {
      if (r == ws::inflater::result::bad_data) m.add(m.local().inflate_bad_data);
      begin_close(close_code::invalid_payload, utf8_ok ? "invalid compressed data" : "invalid UTF-8",
                  disconnect_reason::protocol_error, true);
    }
    if (text.capacity() > 64 * 1024) std::string().swap(text);
    return false;
  }
  m.add(m.local().inflate_messages);
  const bool open = on_message(ws::inbound{in.op, text, false});
  // A large message's buffer is not kept for the thread's life.
  if (text.capacity() > 64 * 1024) std::string().swap(text);
  return open;
}

bool ws_session::on_close_frame(const ws::inbound& in) {
  close_received_ = true;
  if (state_ == state::closing) {
    if (close_sent_ && !writer_.busy()) finish(close_reason_);
    return false;
  }
  std::uint16_t code = close_code::normal;
  if (in.payload.size() >= 2)
    code = static_cast<std::uint16_t>((static_cast<unsigned char>(in.payload[0]) << 8) |
                                      static_cast<unsigned char>(in.payload[1]));
  begin_close(code, "", disconnect_reason::client_close, true);
  return false;
}

void ws_session::arm_timer() {
  const auto& cfg = ctx_.config();
  auto deadline = last_heard_ + cfg.heartbeat_interval + (pinged_ ? cfg.heartbeat_timeout
                                                                  : std::chrono::milliseconds(0));
  if (cfg.idle_timeout.count() > 0) deadline = std::min(deadline, last_heard_ + cfg.idle_timeout);
  auto due = net::heartbeat_due(deadline, cfg.heartbeat_interval);  // batched
  // Engine.IO's pings ride on this timer (one timer and one pending wait per connection,
  // not two).
  if (transport_only_)
    with_handler([&](ws_handler& h) { due = std::min(due, h.ws_heartbeat_due(*this)); });
  timer_.expires_at(due);
  // Pending for as long as the connection is idle: at its own size (idle_alloc.hpp).
  timer_.async_wait(net::idle_alloc([self = self_as<ws_session>()](boost::system::error_code ec) {
    if (!ec) self->on_timer(ec);
  }));
}

void ws_session::heartbeat_changed() {
  asio::post(socket_.get_executor(), [self = self_as<ws_session>()] {
    if (self->state_ == state::open) self->arm_timer();
  });
}

void ws_session::on_timer(boost::system::error_code) {
  if (state_ == state::closed) return;
  if (state_ == state::closing) {
    finish(close_reason_);
    return;
  }
  if (transport_only_) {
    with_handler([this](ws_handler& h) { h.on_ws_heartbeat(*this); });
    if (state_ != state::open) return;
  }
  const auto& cfg = ctx_.config();
  const auto silent = std::chrono::steady_clock::now() - last_heard_;
  if (cfg.idle_timeout.count() > 0 && silent >= cfg.idle_timeout) {
    ctx_.get_metrics().limit_hit(limit_kind::idle_timeout);
    begin_close(close_code::idle_timeout, "idle timeout", disconnect_reason::idle_timeout, true);
    return;
  }
  if (silent >= cfg.heartbeat_interval + cfg.heartbeat_timeout) {
    begin_close(close_code::heartbeat_timeout, "heartbeat timeout",
                disconnect_reason::heartbeat_timeout, true);
    return;
  }
  if (silent >= cfg.heartbeat_interval && !pinged_) {
    pinged_ = true;
    deliver(ping_frame(), overflow_policy::disconnect);
  }
  arm_timer();
}

std::string ws_session::close_bytes(std::uint16_t code, std::string_view reason) {
  return ws::encode_close(code, reason);
}

void ws_session::transport_closed(disconnect_reason why) {
  with_handler([&](ws_handler& h) { h.on_ws_closed(*this, why); });
}

}  // namespace skyrelay
