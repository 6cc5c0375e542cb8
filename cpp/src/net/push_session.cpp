#include "skyrelay/net/push_session.hpp"


#include <boost/beast/http/status.hpp>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/idle_alloc.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/ws_frame.hpp"

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

push_session::push_session(net::stream socket, session_context& ctx, std::string sid,
                           std::string prefix, encoder_id encoder)
    : subscriber(std::move(sid), encoder),
      socket_(std::move(socket)),
      ctx_(ctx),
      outbox_(outbox::limits{ctx.config().outbox_max_bytes, ctx.config().outbox_max_frames}),
      timer_(static_cast<asio::io_context&>(socket_.get_executor().context()).get_executor()),
      writer_(socket_, *this, ctx.get_metrics(), ctx.config().write_timeout),
      prefix_(std::move(prefix)),
      flushes_(asio::use_service<net::flush_queue>(
          static_cast<asio::io_context&>(socket_.get_executor().context()))) {
  set_write_target(outbox_.hot());
}

push_session::~push_session() = default;

void push_session::start(const std::string& path, const std::string& query,
                         std::vector<std::pair<std::string, std::string>> headers,
                         std::string_view scheme) {
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
  if (remote_) {
    info.remote = *remote_;
  } else {
    boost::system::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) info.remote = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  info.scheme = scheme;
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

void push_session::grant_roles(std::vector<std::string> roles) {
  granted_roles_.store(std::make_shared<const std::vector<std::string>>(std::move(roles)));
}

std::shared_ptr<const std::vector<std::string>> push_session::roles() const {
  if (auto granted = granted_roles_.load()) return granted;
  static const std::vector<std::string> none;
  if (!identity_) return {std::shared_ptr<void>(), &none};
  return {identity_, &identity_->roles};
}

std::optional<auth::access_denial> push_session::role_refusal() const {
  const auto& policy = ctx_.config().access;
  if (!policy || transport_only()) return std::nullopt;
  auto refusal = policy->check_connect("/", handshake_topics(), *roles());
  if (refusal) {
    auto& m = ctx_.get_metrics();
    m.add(refusal->scope == auth::access_scope::namespace_ ? m.local().forbidden_namespace
                                                           : m.local().forbidden_room);
  }
  return refusal;
}

void push_session::refuse_forbidden(std::string message) {
  refuse_with(403, std::move(message), "forbidden");
}

void push_session::accept() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->on_accept(); });
}

void push_session::refuse(unsigned status, std::string message) {
  refuse_with(status, std::move(message), "connection_refused");
}

void push_session::refuse_with(unsigned status, std::string message, std::string_view error) {
  asio::post(socket_.get_executor(),
             [self = shared_from_this(), status, message = std::move(message), error] {
               if (self->state_ != state::pending) return;
               self->state_ = state::closing;
               self->refused_ = true;
               self->prefix_ = http_refusal(status, message, error);
               auto& m = self->ctx_.get_metrics();
               m.add(m.local().handshakes_rejected);
               self->flush();
             });
}

void push_session::close(std::uint16_t code, std::string reason, disconnect_reason why) {
  asio::post(socket_.get_executor(),
             [self = shared_from_this(), code, reason = std::move(reason), why] {
               if (self->state_ == state::pending) {
                 self->finish(why);
                 return;
               }
               self->begin_close(code, reason, why, why != disconnect_reason::server_shutdown);
             });
}

bool push_session::replay_fits(const std::vector<frame_ptr>& frames) const {
  const auto& cfg = ctx_.config();
  std::size_t bytes = 0;
  for (const auto& f : frames) bytes += f->bytes.size();
  // The outbox, less a margin for what is already queued and what comes live meanwhile.
  return frames.size() + 16 <= cfg.outbox_max_frames && bytes + 64 * 1024 <= cfg.outbox_max_bytes;
}

void push_session::send_text(std::string_view payload) {
  deliver(make_frame(ws::encode(ws::opcode::text, payload)), overflow_policy::disconnect);
}

void push_session::deliver(const frame_ptr& f, overflow_policy policy) {
  on_pushed(outbox_.push(f, policy));
}

void push_session::deliver_group(const std::vector<frame_ptr>& group, overflow_policy policy) {
  on_pushed(outbox_.push_group(group, policy));
}

void push_session::on_pushed(const outbox::push_result& r) {
  if (r.refused) {  // behind an overflow whose close is under way: lost with the connection
    ctx_.get_metrics().drop(drop_reason::slow_consumer, r.refused);
    return;
  }
  if (r.dropped || r.overflow) ctx_.get_metrics().limit_hit(limit_kind::outbox);
  if (r.dropped) {
    ctx_.get_metrics().drop(drop_reason::drop_oldest, r.dropped);
  }
  if (r.overflow) {
    ctx_.get_metrics().drop(drop_reason::slow_consumer);
    log_slow_consumer("outbox_full");
    close(close_code::slow_consumer, "slow consumer: outbox full", disconnect_reason::slow_consumer);
    return;
  }
  if (r.start_writer) schedule_flush();
}

void push_session::schedule_flush() {
  flushes_.add(shared_from_this(), writer_);  // on the socket's context; see flush()
}

void push_session::on_accept() {
  if (state_ != state::pending) return;
  state_ = state::open;
  opened_ = true;
  auto& m = ctx_.get_metrics();
  m.add(m.local().of(metric_transport()).connections_opened);
  if (!transport_only())  // an Engine.IO transport: its session logs (eio_session.cpp)
    log_event(ctx_.log(), log_source::conn, log_level::info, "connection_open", [&] {
      // The client a trusted proxy named, else the peer.
      std::string remote = remote_ ? *remote_ : std::string();
      if (!remote_) {
        boost::system::error_code ec;
        auto ep = socket_.remote_endpoint(ec);
        if (!ec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
      }
      return std::vector<log_field>{
          {"sid", sid()},
          {"transport", std::string(takes_answers() ? "websocket" : "sse")},
          {"remote", std::move(remote)}};
    });
  open();
  boost::system::error_code ec;
  if (auto* plain = socket_.plain()) plain->non_blocking(true, ec);
  timer_.cancel();
  arm_timer();
  arm_expiry();
  if (early_bytes_) {
    std::string bytes = std::move(*early_bytes_);
    early_bytes_.reset();
    if (!consume(bytes.data(), bytes.size())) return;
  }
  if (socket_.is_tls()) {
    // The handshake's reads may have left decrypted bytes in OpenSSL that no readiness of the
    // socket will announce: the first read asks OpenSSL before it waits.
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->on_readable({}); });
  } else {
    do_read();
  }
  flush();
}

// Plain TCP and TLS alike: wait until the socket is readable, then read what there is into the
// I/O thread's buffer. An idle connection lends no buffer to a pending read (over TLS, ~8 KB).
void push_session::do_read() {
  auto* tls = socket_.tls();
  socket_.socket().async_wait(
      tls ? tls->read_wait() : tcp::socket::wait_read,
      net::idle_alloc([self = shared_from_this()](boost::system::error_code ec) {
        self->on_readable(ec);
      }));
}

std::size_t push_session::read_now(boost::system::error_code& ec) {
  if (auto* tls = socket_.tls()) return tls->read_some(asio::buffer(tls_read_buffer), ec);
  return socket_.plain()->read_some(asio::buffer(tls_read_buffer), ec);
}

void push_session::on_readable(boost::system::error_code ec) {
  if (state_ == state::closed) return;
  if (ec) {
    finish(state_ == state::closing ? close_reason_ : disconnect_reason::transport_error);
    return;
  }
  const bool tls = socket_.is_tls();
  for (int i = 0; i < max_reads_per_turn; ++i) {
    std::size_t n = read_now(ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return do_read();
    if (ec) return on_read_error(ec);
    auto& m = ctx_.get_metrics();
    m.add(m.local().of(metric_transport()).bytes_in, n);
    heard();
    if (!consume(tls_read_buffer.data(), n)) return;
    // A short plain read drained the socket. Over TLS OpenSSL hands out one record at a time
    // and may hold more already: only would_block says it needs the socket.
    if (!tls && n < tls_read_buffer.size()) return do_read();
  }
  // Yield to the other connections on this thread. OpenSSL may hold bytes the socket's
  // readiness would never announce: a TLS session reads again in a posted turn.
  if (!tls) return do_read();
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->on_readable({}); });
}

void push_session::on_read_error(boost::system::error_code ec) {
  // An SSE client leaves by closing its connection: that is its goodbye (over TLS, with or
  // without a close_notify first).
  const bool goodbye =
      eof_is_goodbye() && (ec == asio::error::eof || ec == ssl::error::stream_truncated);
  finish(state_ == state::closing ? close_reason_
         : goodbye               ? disconnect_reason::client_close
                                 : disconnect_reason::transport_error);
}

bool push_session::consume(char*, std::size_t) { return true; }

void push_session::push_control(std::string bytes) {
  deliver(make_frame(std::move(bytes), 0, false), overflow_policy::disconnect);
}

void push_session::flush() { writer_.run(); }

void push_session::fill(net::write_batch& b) {
  if (state_ == state::pending || state_ == state::closed) return;
  if (refused_) {
    b.before(prefix_);
    return;
  }
  if (state_ == state::closing) {
    b.frames().swap(closing_->final_frames);
    frame(b);
  } else {
    // frame() may leave nothing of what it was given (an SSE stream drops an event it sent
    // already and the marker of a reset that writes nothing). The outbox counts as being
    // written while it has handed frames out, so such a batch takes again until it has bytes
    // or the outbox is empty: returning empty-handed would leave the stream silent for good.
    while (outbox_.take(b.frames())) {
      frame(b);
      if (!b.empty()) break;
    }
    if (b.empty()) frame(b);  // what a session writes with no frame (an SSE head, a prefix)
  }
  if (state_ == state::closing && !close_sent_) {
    close_sent_ = true;
    b.after_view(closing_->frame);  // set once by begin_close, untouched since
  }
}

void push_session::written(boost::system::error_code ec) {
  if (ec) {
    finish(state_ == state::closing ? close_reason_ : disconnect_reason::transport_error);
    return;
  }
  if (refused_ || (close_sent_ && ends_when_close_sent())) finish(close_reason_);
}

void push_session::write_timed_out() {
  // A closing session has its own deadline (close_wait) and keeps its close reason.
  if (state_ != state::open) return;
  // The peer has not taken a byte of this write for write_timeout: a slow consumer. A close
  // frame could not get past the bytes it left unread, so the connection is cut at once.
  auto& m = ctx_.get_metrics();
  m.limit_hit(limit_kind::write_timeout);
  log_slow_consumer("write_timeout");
  m.drop(drop_reason::slow_consumer, outbox_.queued_frames() + writer_.inflight_frames());
  finish(disconnect_reason::slow_consumer);
}

// A connection closed as a slow consumer (skyrelay.core.limits, warning): `why` is the bound.
void push_session::log_slow_consumer(std::string_view why) {
  log_event(ctx_.log(), log_source::limits, log_level::warning, "slow_consumer", [&] {
    return std::vector<log_field>{{"sid", sid()}, {"limit", std::string(why)},
                                  {"queued_frames", std::int64_t(outbox_.queued_frames())}};
  });
}

std::shared_ptr<void> push_session::keep_alive() { return shared_from_this(); }

bool push_session::idle_after_write() {
  // What fill() does in any other state (a refusal, a close, a session that ended) goes on
  // through the loop's own next turn.
  if (state_ != state::open || refused_ || has_own_bytes()) return false;
  return outbox_.idle_if_empty();
}

void push_session::arm_expiry() {
  if (!identity_ || transport_only()) return;
  // Made only for a connection with a token: most idle connections carry none.
  expiry_timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor());
  expiry_timer_->expires_after(auth::time_left(*identity_));
  expiry_timer_->async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->on_expired();
  });
}

void push_session::on_expired() {
  if (state_ != state::open) return;
  expiry_notice();
  begin_close(close_code::token_expired, "token expired", disconnect_reason::token_expired,
              false);
}

void push_session::begin_close(std::uint16_t code, std::string_view reason,
                               disconnect_reason why, bool drop_queued) {
  if (state_ == state::closing || state_ == state::closed) return;
  state_ = state::closing;
  close_reason_ = why;
  close_code_ = code;
  closing_ = std::make_unique<closing>();
  closing_->text = std::string(reason);
  if (!drop_queued) outbox_.take(closing_->final_frames);
  if (why == disconnect_reason::slow_consumer)
    ctx_.get_metrics().drop(drop_reason::slow_consumer, outbox_.queued_frames());
  outbox_.close();
  closing_->frame = close_bytes(code, reason);
  timer_.expires_after(close_wait);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec && self->state_ == state::closing) self->finish(self->close_reason_);
  });
  flush();
}

void push_session::finish(disconnect_reason why) {
  if (finished_) return;
  finished_ = true;
  state_ = state::closed;
  timer_.cancel();
  if (expiry_timer_) expiry_timer_->cancel();
  writer_.stop();
  if (socket_.is_tls())
    socket_.close_gracefully(weak_from_this().lock(), tls_close_wait);
  else
    socket_.close();
  outbox_.close();
  ctx_.sessions().remove(sid());
  if (!transport_only()) ctx_.get_hub().remove(sid());
  if (!opened_) return;
  auto& m = ctx_.get_metrics();
  m.add(m.local().of(metric_transport()).connections_closed);
  transport_closed(why);
  // An Engine.IO transport: its Socket.IO sockets count their own disconnects.
  if (transport_only()) return;
  m.disconnect(why);
  log_event(ctx_.log(), log_source::conn, log_level::info, "connection_close", [&] {
    std::vector<log_field> f{{"sid", sid()},
                             {"transport", std::string(takes_answers() ? "websocket" : "sse")},
                             {"reason", std::string(to_string(why))}};
    // A WebSocket's close code (1006: none was exchanged, the connection was cut).
    if (takes_answers()) f.push_back({"code", std::int64_t{close_code_ ? close_code_ : 1006}});
    if (closing_ && !closing_->text.empty()) f.push_back({"message", closing_->text});
    return f;
  });
  if (ctx_.hooks().on_disconnect) {
    const session_context* ctx = &ctx_;
    ctx_.get_dispatcher().post_always(
        [ctx, sid = sid(), why, id = identity_] { ctx->hooks().on_disconnect(sid, why, id); });
  }
}

std::optional<std::string> push_session::answer_text(std::string_view request_id, bool ok,
                                                     std::string_view data_or_code,
                                                     std::string_view message) const {
  return ok ? proto::response_ok(request_id, data_or_code)
            : proto::response_error(request_id, data_or_code, message);
}

std::optional<std::string> push_session::error_text(std::string_view code,
                                                    std::string_view message) const {
  return proto::error(code, message, "");
}

}  // namespace skyrelay
