#include "skyrelay/net/ws_session.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <boost/beast/http/status.hpp>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/session_context.hpp"

namespace skyrelay {

namespace {
// Reads land in one buffer per I/O thread: an idle connection holds no read buffer at all.
thread_local std::array<char, 64 * 1024> tls_read_buffer;
constexpr int max_reads_per_turn = 8;  // then yield to other connections on this thread
constexpr auto close_wait = std::chrono::seconds(2);  // for the peer's close frame
constexpr std::chrono::milliseconds tls_close_wait{1000};  // for the peer's close_notify

std::string http_refusal(unsigned status, const std::string& message,
                         std::string_view error = "connection_refused") {
  std::string body = "{\"error\":";
  proto::append_json_string(body, error);
  body += ",\"message\":";
  proto::append_json_string(body, message);
  body += '}';
  const auto known = boost::beast::http::int_to_status(status);
  std::string reason = known == boost::beast::http::status::unknown
                           ? std::string("Refused")
                           : std::string(boost::beast::http::obsolete_reason(known));
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff"
         "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}
}  // namespace

ws_session::ws_session(net::stream socket, session_context& ctx, std::string sid,
                       std::string handshake_response, std::string leftover, std::string topic,
                       wire_format format)
    : subscriber(std::move(sid), format),
      socket_(std::move(socket)),
      ctx_(ctx),
      outbox_(outbox::limits{ctx.config().outbox_max_bytes, ctx.config().outbox_max_frames}),
      parser_(ctx.config().max_message_size),
      timer_(socket_.get_executor()),
      expiry_timer_(socket_.get_executor()),
      writer_(socket_, *this, ctx.get_metrics(), ctx.config().write_timeout),
      prefix_(std::move(handshake_response)),
      topic_(std::move(topic)),
      limit_(ctx.config().inbound_limit, &ctx.config().event_limits, steady_ns()) {
  if (!leftover.empty()) early_bytes_ = std::move(leftover);
}

ws_session::~ws_session() = default;

std::shared_ptr<ws_session> ws_session::make_sse(net::stream socket, session_context& ctx, std::string sid,
                                                 std::string response_head,
                                                 std::vector<std::string> topics,
                                                 std::string last_event_id) {
  auto s = std::make_shared<ws_session>(std::move(socket), ctx, std::move(sid), std::string(),
                                        std::string(), std::string(), wire_format::sse);
  s->sse_ = true;
  s->sse_head_ = std::move(response_head);
  s->sse_topics_ = std::move(topics);
  s->sse_last_id_ = std::move(last_event_id);
  return s;
}

void ws_session::open_sse() {
  auto& hub = ctx_.get_hub();
  const auto& cfg = ctx_.config();
  prefix_ += "retry: " + std::to_string(cfg.sse_retry.count()) + "\n\n";
  std::string welcome = "{\"sid\":";
  proto::append_json_string(welcome, sid());
  welcome += ",\"topics\":[";
  for (std::size_t i = 0; i < sse_topics_.size(); ++i) {
    if (i) welcome += ',';
    proto::append_json_string(welcome, sse_topics_[i]);
  }
  welcome += "],\"keepalive_ms\":" + std::to_string(cfg.sse_keepalive.count()) + "}";
  // Under the publish lock: the welcome (or reset) and the replay come before any live event.
  hub.subscribe_after(sid(), sse_topics_, sse_last_id_,
                      [&](std::vector<frame_ptr>& replay, std::string_view reset,
                          std::uint64_t last) {
    // A fresh stream (or one whose history is gone) starts from here, so the welcome or the
    // reset carries the current position as its id: the browser resumes from it. A stream
    // that resumes keeps its own id until the replayed events move it on.
    const bool resumed = !sse_last_id_.empty() && reset.empty();
    if (!resumed) prefix_ += "id: " + hub.event_id(last) + "\n";
    prefix_ += "event: welcome\ndata: " + welcome + "\n\n";
    if (!reset.empty()) {
      prefix_ += "event: reset\ndata: {\"reason\":";
      proto::append_json_string(prefix_, reset);
      prefix_ += "}\n\n";
    }
    for (const auto& f : replay) deliver(f, overflow_policy::disconnect);
  });
}

void ws_session::start(const std::string& path, const std::string& query,
                       std::vector<std::pair<std::string, std::string>> headers) {
  auto self = shared_from_this();
  ctx_.sessions().add(self);
  ctx_.get_hub().add(self);
  const auto& hooks = ctx_.hooks();
  if (!hooks.on_connect) {
    asio::post(socket_.get_executor(), [self] { self->on_accept(); });
    return;
  }
  connect_info info;
  info.sid = sid();
  info.path = path;
  info.query = query;
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) info.remote = ep.address().to_string() + ":" + std::to_string(ep.port());
  info.headers = std::move(headers);
  info.identity = identity_;
  // Hold the handshake until the application decides; bound the wait like any handshake.
  timer_.expires_after(ctx_.config().handshake_timeout);
  timer_.async_wait([self](boost::system::error_code ec) {
    if (ec || self->state_ != state::pending) return;
    self->ctx_.get_metrics().limit_hit(limit_kind::handshake_timeout);
    self->finish(disconnect_reason::transport_error);
  });
  const session_context* ctx = &ctx_;
  if (!ctx_.get_dispatcher().post([ctx, info = std::move(info)] { ctx->hooks().on_connect(info); }))
    refuse(503, "server busy");
}

void ws_session::start_with(std::weak_ptr<ws_handler> handler, std::string first) {
  handler_ = std::move(handler);
  has_handler_ = true;
  auto self = shared_from_this();
  ctx_.sessions().add(self);
  asio::post(socket_.get_executor(), [self, first = std::move(first)]() mutable {
    if (!first.empty()) self->prefix_ += ws::encode(ws::opcode::text, first);
    self->on_accept();
  });
}

void ws_session::grant_roles(std::vector<std::string> roles) {
  granted_roles_.store(std::make_shared<const std::vector<std::string>>(std::move(roles)));
}

std::shared_ptr<const std::vector<std::string>> ws_session::roles() const {
  if (auto granted = granted_roles_.load()) return granted;
  static const std::vector<std::string> none;
  if (!identity_) return {std::shared_ptr<void>(), &none};
  return {identity_, &identity_->roles};
}

std::optional<auth::access_denial> ws_session::role_refusal() const {
  const auto& policy = ctx_.config().access;
  if (!policy || has_handler_) return std::nullopt;
  auto refusal = policy->check_connect(
      "/", sse_ ? sse_topics_ : topic_.empty() ? std::vector<std::string>{} : std::vector{topic_},
      *roles());
  if (refusal) {
    auto& m = ctx_.get_metrics();
    m.add(refusal->scope == auth::access_scope::namespace_ ? m.local().forbidden_namespace
                                                           : m.local().forbidden_room);
  }
  return refusal;
}

void ws_session::refuse_forbidden(std::string message) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), message = std::move(message)] {
    if (self->state_ != state::pending) return;
    self->state_ = state::closing;
    self->refused_ = true;
    self->prefix_ = http_refusal(403, message, "forbidden");
    self->ctx_.get_metrics().add(self->ctx_.get_metrics().local().handshakes_rejected);
    self->flush();
  });
}

void ws_session::accept() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->on_accept(); });
}

void ws_session::refuse(unsigned status, std::string message) {
  asio::post(socket_.get_executor(),
             [self = shared_from_this(), status, message = std::move(message)] {
               if (self->state_ != state::pending) return;
               self->state_ = state::closing;
               self->refused_ = true;
               self->prefix_ = http_refusal(status, message);
               self->ctx_.get_metrics().add(self->ctx_.get_metrics().local().handshakes_rejected);
               self->flush();
             });
}

void ws_session::close(std::uint16_t code, std::string reason, disconnect_reason why) {
  asio::post(socket_.get_executor(),
             [self = shared_from_this(), code, reason = std::move(reason), why] {
               if (self->state_ == state::pending) {
                 self->finish(why);
                 return;
               }
               self->begin_close(code, reason, why, why != disconnect_reason::server_shutdown);
             });
}

bool ws_session::replay_fits(const std::vector<frame_ptr>& frames) const {
  const auto& cfg = ctx_.config();
  std::size_t bytes = 0;
  for (const auto& f : frames) bytes += f->bytes.size();
  // The outbox, less a margin for what is already queued and what comes live meanwhile.
  return frames.size() + 16 <= cfg.outbox_max_frames && bytes + 64 * 1024 <= cfg.outbox_max_bytes;
}

void ws_session::send_text(std::string_view payload) {
  deliver(make_frame(ws::encode(ws::opcode::text, payload)), overflow_policy::disconnect);
}

void ws_session::deliver(const frame_ptr& f, overflow_policy policy) {
  on_pushed(outbox_.push(f, policy));
}

void ws_session::deliver_group(const std::vector<frame_ptr>& group, overflow_policy policy) {
  on_pushed(outbox_.push_group(group, policy));
}

void ws_session::on_pushed(const outbox::push_result& r) {
  if (r.dropped || r.overflow) ctx_.get_metrics().limit_hit(limit_kind::outbox);
  if (r.dropped) {
    ctx_.get_metrics().drop(drop_reason::drop_oldest, r.dropped);
  }
  if (r.overflow) {
    ctx_.get_metrics().drop(drop_reason::slow_consumer);
    close(close_code::slow_consumer, "slow consumer: outbox full", disconnect_reason::slow_consumer);
    return;
  }
  if (r.start_writer) schedule_flush();
}

void ws_session::schedule_flush() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->flush(); });
}

void ws_session::on_accept() {
  if (state_ != state::pending) return;
  state_ = state::open;
  opened_ = true;
  auto& m = ctx_.get_metrics();
  m.add(m.local().connections_opened);
  if (!has_handler_ && !sse_)
    prefix_ += ws::encode(ws::opcode::text,
                          proto::welcome(sid(), ctx_.config().heartbeat_interval.count()));
  if (sse_) open_sse();
  if (!has_handler_ && !topic_.empty()) {
    proto::client_message m2;
    m2.topics.push_back(topic_);
    ctx_.get_hub().subscribe(sid(), m2.topics, std::nullopt, {}, [&](subscribe_outcome& o) {
      const auto& p = o.positions.front();
      prefix_ += ws::encode(ws::opcode::text, proto::subscribed(m2, {{p.seq, p.epoch}}));
    });
  }
  boost::system::error_code ec;
  if (auto* plain = socket_.plain()) plain->non_blocking(true, ec);
  last_heard_ = std::chrono::steady_clock::now();
  timer_.cancel();
  arm_timer();
  arm_expiry();
  if (!early_bytes_.empty()) {
    std::string bytes = std::move(early_bytes_);
    if (!consume(bytes.data(), bytes.size())) return;
  }
  do_read();
  flush();
}

void ws_session::do_read() {
  if (socket_.is_tls()) {
    if (!tls_buffer_) tls_buffer_ = std::make_unique<std::array<char, 8 * 1024>>();
    socket_.async_read_some(asio::buffer(*tls_buffer_),
                            [self = shared_from_this()](boost::system::error_code ec,
                                                        std::size_t n) {
                              self->on_tls_read(ec, n);
                            });
    return;
  }
  socket_.plain()->async_wait(tcp::socket::wait_read,
                     [self = shared_from_this()](boost::system::error_code ec) {
                       self->on_readable(ec);
                     });
}

void ws_session::on_readable(boost::system::error_code ec) {
  if (state_ == state::closed) return;
  if (ec) {
    finish(state_ == state::closing ? close_reason_ : disconnect_reason::transport_error);
    return;
  }
  for (int i = 0; i < max_reads_per_turn; ++i) {
    std::size_t n = socket_.plain()->read_some(asio::buffer(tls_read_buffer), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec) return on_read_error(ec);
    auto& m = ctx_.get_metrics();
    m.add(m.local().bytes_in, n);
    last_heard_ = std::chrono::steady_clock::now();
    pinged_ = false;
    if (!consume(tls_read_buffer.data(), n)) return;
    if (n < tls_read_buffer.size()) break;  // drained for now
  }
  do_read();
}

void ws_session::on_read_error(boost::system::error_code ec) {
  // An SSE client leaves by closing its connection: that is its goodbye (over TLS, with or
  // without a close_notify first).
  const bool goodbye =
      sse_ && (ec == asio::error::eof || ec == ssl::error::stream_truncated);
  finish(state_ == state::closing ? close_reason_
         : goodbye               ? disconnect_reason::client_close
                                 : disconnect_reason::transport_error);
}

void ws_session::on_tls_read(boost::system::error_code ec, std::size_t n) {
  if (state_ == state::closed) return;
  if (ec) return on_read_error(ec);
  auto& m = ctx_.get_metrics();
  m.add(m.local().bytes_in, n);
  last_heard_ = std::chrono::steady_clock::now();
  pinged_ = false;
  if (!consume(tls_buffer_->data(), n)) return;
  do_read();
}

bool ws_session::consume(char* data, std::size_t n) {
  if (read_broken_ || sse_) return true;  // an SSE client has nothing to say after its request
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
      if (state_ != state::open) return true;
      if (has_handler_) {
        auto& m = ctx_.get_metrics();
        m.add(m.local().messages_in);
        if (auto h = handler_.lock()) h->on_ws_text(*this, in.payload);
      } else {
        on_text(in.payload);
      }
      return state_ != state::closed;
    case ws::opcode::binary:
      if (state_ == state::open && has_handler_) {
        auto& m = ctx_.get_metrics();
        m.add(m.local().messages_in);
        if (auto h = handler_.lock()) h->on_ws_binary(*this, in.payload);
        return state_ != state::closed;
      }
      if (state_ == state::open) {
        auto& m = ctx_.get_metrics();
        m.add(m.local().messages_in);
        reply_error(error_code::binary_not_supported,
                    "the JSON protocol carries text frames only", "");
      }
      return true;
    case ws::opcode::ping:
      if (state_ == state::open) push_control(ws::encode(ws::opcode::pong, in.payload));
      return true;
    case ws::opcode::pong:
      return true;
    case ws::opcode::close: {
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
    case ws::opcode::continuation:
      break;
  }
  return true;
}

void ws_session::on_text(std::string_view text) {
  auto& m = ctx_.get_metrics();
  m.add(m.local().messages_in);
  auto decoded = proto::decode(text);
  if (auto* err = std::get_if<proto::decode_error>(&decoded)) {
    reply_error(err->code, err->message, err->ref);
    return;
  }
  auto& msg = std::get<proto::client_message>(decoded);
  if (msg.type != proto::client_type::ping) {
    std::int64_t wait_ns = 0;
    if (!limit_.take(msg.event, steady_ns(), wait_ns)) {
      ctx_.get_metrics().drop(drop_reason::rate_limited);
      const std::string text = "over the connection's message rate; retry in " +
                               std::to_string(wait_ns / 1'000'000 + 1) + " ms";
      if (msg.type == proto::client_type::request) {
        ctx_.get_metrics().error(error_code::rate_limited);
        send_text(proto::response_error(msg.id, to_string(error_code::rate_limited), text));
      } else {
        reply_error(error_code::rate_limited, text, msg.id);
      }
      return;
    }
  }
  // A subscribe names topics: each must be open to clients (client_topics) before its role
  // requirements are looked at; a refusal joins none of them.
  if (msg.type == proto::client_type::subscribe) {
    if (auto refusal = auth::check_client_topics(ctx_.config().client_topics.get(),
                                                 msg.topics, identity_.get())) {
      m.add(m.local().forbidden_client_topic);
      reply_error(error_code::forbidden, refusal->message, msg.id);
      return;
    }
  }
  // Role requirements of the topics or the event, before anything else happens.
  if (const auto& policy = ctx_.config().access;
      policy && msg.type != proto::client_type::ping && msg.type != proto::client_type::unsubscribe) {
    const auto held = this->roles();
    const auto& roles = *held;
    std::optional<auth::access_denial> refusal;
    if (msg.type == proto::client_type::subscribe) {
      for (const auto& t : msg.topics)
        if ((refusal = policy->check_room("/", t, roles))) break;
    } else {
      refusal = policy->check_event("/", msg.event, roles);
    }
    if (refusal) {
      m.add(refusal->scope == auth::access_scope::room ? m.local().forbidden_room
                                                       : m.local().forbidden_event);
      if (msg.type == proto::client_type::request) {
        m.error(error_code::forbidden);
        send_text(proto::response_error(msg.id, to_string(error_code::forbidden), refusal->message));
      } else {
        reply_error(error_code::forbidden, refusal->message, msg.id);
      }
      return;
    }
  }
  auto& hub = ctx_.get_hub();
  switch (msg.type) {
    case proto::client_type::subscribe:
      // The reply and any replay are queued under the hub's publish lock, so they come before
      // every live event of these topics and nothing falls between the two.
      hub.subscribe(sid(), msg.topics, msg.since, msg.epoch, [&](subscribe_outcome& o) {
        if (o.refused) {
          reply_error(error_code::too_many_rooms,
                      "this subscribe would take the connection past " +
                          std::to_string(ctx_.config().max_rooms_per_connection) + " topics",
                      msg.id);
          return;
        }
        std::vector<proto::topic_state> states;
        states.reserve(o.positions.size());
        for (const auto& p : o.positions) states.push_back({p.seq, p.epoch});
        proto::resume_state resume{o.recovered, o.reset};
        if (o.recovered && !replay_fits(o.replay)) {
          resume = {false, "history_gap"};  // more than the outbox could hold at once
          o.replay.clear();
        }
        send_text(proto::subscribed(msg, states, o.resumed ? &resume : nullptr));
        for (const auto& f : o.replay) deliver(f, overflow_policy::disconnect);
      });
      return;
    case proto::client_type::unsubscribe:
      for (const auto& t : msg.topics) hub.leave(sid(), channel{"/", t});  // rooms of "/"
      send_text(proto::unsubscribed(msg));
      return;
    case proto::client_type::ping:
      send_text(proto::pong(utc_now_iso8601(), msg.id));
      return;
    case proto::client_type::event:
    case proto::client_type::request:
      break;
  }
  const auto& hooks = ctx_.hooks();
  if (!hooks.on_message) {
    if (msg.type == proto::client_type::request)
      send_text(proto::response_error(msg.id, to_string(error_code::unknown_event),
                                      "no handler for event \"" + msg.event + "\""));
    return;
  }
  const session_context* ctx = &ctx_;
  std::string id = msg.type == proto::client_type::request ? msg.id : std::string();
  bool queued = ctx_.get_dispatcher().post(
      [ctx, sid = sid(), event = std::move(msg.event), data = std::move(msg.data), id] {
        ctx->hooks().on_message(sid, event, data, id);
      });
  if (!queued) {
    m.drop(drop_reason::dispatch_overflow);
    if (id.empty()) {
      reply_error(error_code::overloaded, "the server is overloaded; the event was not handled", "");
    } else {
      ctx_.get_metrics().error(error_code::overloaded);
      send_text(proto::response_error(id, to_string(error_code::overloaded),
                                      "the server is overloaded; the request was not handled"));
    }
  }
}

void ws_session::reply_error(error_code code, std::string_view message, std::string_view ref) {
  ctx_.get_metrics().error(code);
  send_text(proto::error(to_string(code), message, ref));
}

void ws_session::push_control(std::string bytes) {
  deliver(make_frame(std::move(bytes), 0, false), overflow_policy::disconnect);
}

void ws_session::flush() { writer_.run(); }

void ws_session::fill(net::write_batch& b) {
  if (state_ == state::pending || state_ == state::closed) return;
  if (!refused_) {
    if (state_ == state::closing) {
      b.frames().swap(final_frames_);
    } else {
      outbox_.take(b.frames());
    }
  }
  if (sse_ && !refused_) {
    // One HTTP chunk per write; the response header goes first, once, outside any chunk.
    b.before(sse_head_);
    const std::size_t size = prefix_.size() + b.frame_bytes();
    if (size) {
      char hex[24];
      chunk_head_.assign(hex, static_cast<std::size_t>(std::snprintf(hex, sizeof hex, "%zx\r\n", size)));
      b.before(chunk_head_);
      b.before(prefix_);
      b.after_view("\r\n");
    }
  } else {
    b.before(prefix_);
  }
  if (state_ == state::closing && !refused_ && !close_sent_) {
    close_sent_ = true;
    b.after_view(close_frame_);  // set once by begin_close, untouched since
  }
}

void ws_session::written(boost::system::error_code ec) {
  if (ec) {
    finish(state_ == state::closing ? close_reason_ : disconnect_reason::transport_error);
    return;
  }
  // After a framing error nothing the peer sends can be trusted, its close frame included:
  // end the connection as soon as our close frame is out (RFC 6455 7.1.7).
  if (refused_ || (close_sent_ && (close_received_ || read_broken_ || sse_))) finish(close_reason_);
}

void ws_session::write_timed_out() {
  // A closing session has its own deadline (close_wait) and keeps its close reason.
  if (state_ != state::open) return;
  // The peer has not taken a byte of this write for write_timeout: a slow consumer. A close
  // frame could not get past the bytes it left unread, so the connection is cut at once.
  auto& m = ctx_.get_metrics();
  m.limit_hit(limit_kind::write_timeout);
  m.drop(drop_reason::slow_consumer, outbox_.queued_frames() + writer_.inflight_frames());
  finish(disconnect_reason::slow_consumer);
}

std::shared_ptr<void> ws_session::keep_alive() { return shared_from_this(); }

void ws_session::arm_timer() {
  const auto& cfg = ctx_.config();
  if (sse_) {  // a keep-alive comment every sse_keepalive; a dead peer shows as a write error
    timer_.expires_after(cfg.sse_keepalive);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->state_ != state::open) {
        if (!ec && self->state_ == state::closing) self->finish(self->close_reason_);
        return;
      }
      self->push_control(": keep-alive\n\n");
      self->arm_timer();
    });
    return;
  }
  auto deadline = last_heard_ + cfg.heartbeat_interval + (pinged_ ? cfg.heartbeat_timeout
                                                                  : std::chrono::milliseconds(0));
  if (cfg.idle_timeout.count() > 0) deadline = std::min(deadline, last_heard_ + cfg.idle_timeout);
  timer_.expires_at(deadline);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->on_timer(ec);
  });
}

void ws_session::on_timer(boost::system::error_code) {
  if (state_ == state::closed) return;
  if (state_ == state::closing) {
    finish(close_reason_);
    return;
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
    push_control(ws::encode(ws::opcode::ping, {}));
  }
  arm_timer();
}

void ws_session::arm_expiry() {
  if (!identity_ || has_handler_) return;
  expiry_timer_.expires_after(auth::time_left(*identity_));
  expiry_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->on_expired();
  });
}

void ws_session::on_expired() {
  if (state_ != state::open) return;
  if (sse_) {
    // The stream says why before it ends, so a client can tell this end from a failure.
    push_control("event: token_expired\ndata: {\"code\":\"token_expired\",\"message\":"
                 "\"token expired\"}\n\n");
  }
  begin_close(close_code::token_expired, "token expired", disconnect_reason::token_expired,
              false);
}

void ws_session::begin_close(std::uint16_t code, std::string_view reason, disconnect_reason why,
                             bool drop_queued) {
  if (state_ == state::closing || state_ == state::closed) return;
  state_ = state::closing;
  close_reason_ = why;
  final_frames_.clear();
  if (!drop_queued) outbox_.take(final_frames_);
  if (why == disconnect_reason::slow_consumer)
    ctx_.get_metrics().drop(drop_reason::slow_consumer, outbox_.queued_frames());
  outbox_.close();
  close_frame_ = sse_ ? std::string("0\r\n\r\n") : ws::encode_close(code, reason);
  timer_.expires_after(close_wait);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->on_timer(ec);
  });
  flush();
}

void ws_session::finish(disconnect_reason why) {
  if (finished_) return;
  finished_ = true;
  state_ = state::closed;
  timer_.cancel();
  expiry_timer_.cancel();
  writer_.stop();
  if (socket_.is_tls())
    socket_.close_gracefully(weak_from_this().lock(), tls_close_wait);
  else
    socket_.close();
  outbox_.close();
  ctx_.sessions().remove(sid());
  if (!has_handler_) ctx_.get_hub().remove(sid());
  if (!opened_) return;
  auto& m = ctx_.get_metrics();
  m.add(m.local().connections_closed);
  if (has_handler_) {
    // An Engine.IO transport: its Socket.IO sockets count their own disconnects.
    if (auto h = handler_.lock()) h->on_ws_closed(*this, why);
    return;
  }
  m.disconnect(why);
  if (ctx_.hooks().on_disconnect) {
    const session_context* ctx = &ctx_;
    ctx_.get_dispatcher().post_always(
        [ctx, sid = sid(), why, id = identity_] { ctx->hooks().on_disconnect(sid, why, id); });
  }
}

}  // namespace skyrelay
