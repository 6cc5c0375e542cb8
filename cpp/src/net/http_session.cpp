// The connection part of http_session: the TLS handshake, reading requests (with the header,
// body and time limits), routing them to the files of their routes (http_session_impl.hpp
// lists them), writing responses with keep-alive, and the deadline of each step.
#include "skyrelay/net/http_session.hpp"

#include <openssl/evp.h>

#include <cstring>

#include <boost/beast/websocket/rfc6455.hpp>

#include "http_session_impl.hpp"
#include "skyrelay/net/static_files.hpp"
#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay {

namespace {

// How long a TLS connection that ends waits for the peer's close_notify.
constexpr std::chrono::milliseconds tls_close_wait{1000};

}  // namespace

namespace http_detail {

std::string websocket_accept_key(std::string_view key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input(key);
  input += guid;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha1(), nullptr);
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

bool valid_client_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  for (char c : key.substr(0, 22))
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  return true;
}

std::string error_body(std::string_view code, std::string_view message) {
  std::string body = "{\"error\":";
  proto::append_json_string(body, code);
  body += ",\"message\":";
  proto::append_json_string(body, message);
  body += "}";
  return body;
}

std::optional<std::string_view> raw_query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == key)
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

bool under(std::string_view path, std::string_view base) {
  return !base.empty() &&
         (path == base || (path.starts_with(base) && path.substr(base.size()).starts_with('/')));
}

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  auto raw = raw_query_param(query, key);
  if (!raw) return std::nullopt;
  return url_decode(*raw).value_or("");
}

}  // namespace http_detail

using http_detail::error_body;
using http_detail::under;

http_session::http_session(tcp::socket socket, session_context& ctx, std::shared_ptr<void> slot)
    : stream_(ctx.tls_context() ? net::stream(std::move(socket), *ctx.tls_context())
                                : net::stream(std::move(socket))),
      deadline_(stream_.get_executor()),
      ctx_(ctx),
      slot_(std::move(slot)) {
  assert(slot_ && "a connection is admitted before its session starts");
  boost::system::error_code ec;
  const auto ep = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    peer_ip_ = ep.address().to_string();
    peer_remote_ = peer_ip_ + ":" + std::to_string(ep.port());
  }
  client_ip_ = peer_ip_;
  client_remote_ = peer_remote_;
  // A trusted proxy's connection was admitted unattributed (admit_peer); each request then
  // names its client.
  if (const auto& proxies = ctx.config().trusted_proxies; proxies && !ec) {
    if (auto ip = ip_address::parse(peer_ip_); ip && proxies->contains(*ip))
      proxy_peer_ = client_address{*ip, ep.port()};
  }
}

void http_session::take_received(std::string_view bytes) {
  assert(state_ == state::handshaking && !stream_.is_tls());
  if (bytes.empty()) return;  // prepare(0) may give no storage at all (memcpy from null: UB)
  auto room = buffer_.prepare(bytes.size());
  std::memcpy(room.data(), bytes.data(), bytes.size());
  buffer_.commit(bytes.size());
}

void http_session::run() {
  assert(on_own_executor());
  if (!stream_.is_tls()) return do_read();
  // TLS first, bounded like the request that follows: a client that connects and never
  // completes the handshake (or speaks plain HTTP) is dropped and counted.
  expires_after(ctx_.config().handshake_timeout);
  stream_.async_handshake([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) {
      auto& m = self->ctx_.get_metrics();
      m.add(m.local().tls_handshakes_failed);
      self->expires_never();
      self->set_state(state::closed);
      self->stream_.close();
      return;
    }
    self->do_read();
  });
}

void http_session::do_read() {
  set_state(state::reading);
  const auto& cfg = ctx_.config();
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(cfg.max_header_size));
  parser_->body_limit(cfg.max_body_size);
  expires_after(cfg.handshake_timeout);
  // The head first: a client that sent "Expect: 100-continue" waits for an interim answer
  // before it sends the body (older curl and PHP's libcurl for bodies over 1 KiB, current
  // curl over 1 MiB), and without one it stalls a second per request.
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            if (ec || self->parser_->is_done()) return self->on_read(ec);
                            self->read_body();
                          });
}

void http_session::read_body() {
  auto read = [self = shared_from_this()] {
    http::async_read(self->stream_, self->buffer_, *self->parser_,
                     [self](beast::error_code ec, std::size_t) { self->on_read(ec); });
  };
  const auto& head = parser_->get();
  if (head.version() < 11 || !beast::iequals(head[http::field::expect], "100-continue")) {
    // Most bodies came with their head: parsed from the buffer here, since a read that finds
    // them there would still complete through the scheduler (one more turn per request).
    parser_->eager(true);
    while (buffer_.size() > 0 && !parser_->is_done()) {
      beast::error_code ec;
      const std::size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == http::error::need_more) break;
      if (ec) return on_read(ec);
      if (used == 0) break;
    }
    if (parser_->is_done()) return on_read({});
    return read();
  }
  // The head passed the header and body limits (a declared body over the limit is already a
  // 413): the client may send the body.
  static constexpr std::string_view go_on = "HTTP/1.1 100 Continue\r\n\r\n";
  asio::async_write(stream_, asio::buffer(go_on.data(), go_on.size()),
                    [self = shared_from_this(), read](beast::error_code ec, std::size_t) {
                      if (ec) return self->on_read(ec);
                      read();
                    });
}

// Between keep-alive requests: wait up to idle_timeout for the next request's first bytes,
// then do_read gives the rest of it handshake_timeout, so a trickled header stays bounded.
void http_session::await_request() {
  assert(state_ == state::idle);
  if (buffer_.size() > 0) return do_read();  // a pipelined request is already here
  const auto idle = ctx_.config().idle_timeout;
  if (idle.count() > 0)
    expires_after(idle, limit_kind::idle_timeout);
  else
    expires_never();
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](
                                                     beast::error_code ec, std::size_t n) {
    if (ec) return self->close();
    self->buffer_.commit(n);
    self->do_read();
  });
}

void http_session::on_read(beast::error_code ec) {
  assert(on_own_executor());
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == boost::asio::error::connection_reset || ec == boost::asio::error::eof ||
      ec == boost::asio::error::operation_aborted || ec == ssl::error::stream_truncated ||
      !stream_.socket().is_open()) {
    return close();
  }
  if (ec == http::error::header_limit) {
    ctx_.get_metrics().limit_hit(limit_kind::header_size);
    return send_error(http::status::request_header_fields_too_large, "header_too_large",
                      "the request header is larger than the limit", false);
  }
  if (ec == http::error::body_limit) {
    ctx_.get_metrics().limit_hit(limit_kind::body_size);
    return send_error(http::status::payload_too_large, "body_too_large",
                      "the request body is larger than the limit", false);
  }
  if (ec) return send_error(http::status::bad_request, "bad_request", ec.message(), false);
  set_state(state::routing);
  route(parser_->release());
}

void http_session::route(request req) {
  head_ = req.method() == http::verb::head;
  if (!attribute(req)) return;
  auto& m = ctx_.get_metrics();
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query =
      target.find('?') == std::string_view::npos ? "" : target.substr(target.find('?') + 1);

  // The application's endpoints come first: /ws/updates declared is that endpoint, not the
  // topic "updates". A transport that is turned off is an unknown path: its requests go on
  // to the routes below (a 404, or the WSGI app), and no connection is made.
  const auto& cfg = ctx_.config();
  if (const auto* table = ctx_.endpoints())
    if (auto ep = table->match(path)) return endpoint_route(std::move(req), path, query, *ep);
  if (cfg.json_protocol && under(path, cfg.json_ws_path))
    return upgrade(std::move(req), path, query);
  if (cfg.socketio && (path == cfg.socketio_path ||
                       path == std::string_view(cfg.socketio_path)
                                   .substr(0, cfg.socketio_path.size() - 1)))
    return engineio(std::move(req), query);
  if (!ctx_.config().engineio_echo_path.empty() &&
      (path == ctx_.config().engineio_echo_path ||
       path == std::string_view(ctx_.config().engineio_echo_path)
                   .substr(0, ctx_.config().engineio_echo_path.size() - 1)))
    return engineio(std::move(req), query, true);
  m.add(m.local().http_requests);
  if (!cfg.publish_path.empty() && path == cfg.publish_path) return publish_api(req);
  if (beast::websocket::is_upgrade(req))
    return send_error(http::status::not_found, "not_found", "no WebSocket endpoint here",
                      req.keep_alive());
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    if (ctx_.hooks().on_http) return to_application(req);
    return send_error(http::status::method_not_allowed, "method_not_allowed",
                      "only GET and HEAD are served here", req.keep_alive());
  }
  if (cfg.sse && under(path, cfg.sse_path)) return sse(std::move(req), path, query);
  // The probes come before /health: their default paths sit under it.
  for (auto [probe_path, probe] : {std::pair{&cfg.readiness_path, &status_text::readiness},
                                   std::pair{&cfg.liveness_path, &status_text::liveness}}) {
    if (probe_path->empty() || path != *probe_path || !(ctx_.status().*probe)) continue;
    auto r = (ctx_.status().*probe)();
    return send_text(req, "application/json", std::move(r.json),
                     r.ok ? http::status::ok : http::status::service_unavailable);
  }
  if (!cfg.health_path.empty() && path == cfg.health_path)
    return send_text(req, "application/json", ctx_.status().health_json());
  if (!cfg.metrics_path.empty() && path == cfg.metrics_path)
    return send_text(req, "text/plain; version=0.0.4; charset=utf-8", ctx_.status().metrics_text());
  return serve_static(req, path);
}

void http_session::send_json(const request& req, http::status status, std::string body) {
  http::response<http::string_body> res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  write(std::move(res), req.keep_alive());
}

void http_session::send_error(http::status status, std::string_view code,
                              std::string_view message, bool keep_alive) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = error_body(code, message);
  res.prepare_payload();
  write(std::move(res), keep_alive);
}

void http_session::close() {
  assert(on_own_executor());
  set_state(state::closed);
  expires_never();
  if (stream_.is_tls()) return stream_.close_gracefully(shared_from_this(), tls_close_wait);
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.socket().close(ec);
}

// The time the next read or write may take; when it passes, the limit is counted and the
// socket is closed, which ends the pending operation with an error.
void http_session::expires_after(std::chrono::milliseconds limit, limit_kind kind) {
  const auto generation = ++deadline_generation_;
  deadline_.expires_after(limit);
  deadline_.async_wait([self = shared_from_this(), generation, kind](boost::system::error_code ec) {
    if (ec || generation != self->deadline_generation_) return;
    self->ctx_.get_metrics().limit_hit(kind);
    self->stream_.close();
  });
}

void http_session::expires_never() {
  ++deadline_generation_;
  deadline_.cancel();
}

net::stream http_session::hand_off() {
  assert(slot_ && "the admission goes with the connection");
  set_state(state::handed_off);
  expires_never();
  return std::move(stream_);  // TCP_NODELAY since start_http_session
}

void http_session::set_state(state next) {
  // The transitions of http_session_impl.hpp's state machine.
  [[maybe_unused]] auto allowed = [](state from, state to) {
    if (to == state::closed) return from != state::handed_off && from != state::closed;
    switch (from) {
      case state::handshaking: return to == state::reading;
      case state::reading: return to == state::routing || to == state::writing;
      case state::routing:
        return to == state::writing || to == state::parked || to == state::handed_off;
      // A request for another worker's session waits while that worker's inbox is full.
      case state::parked: return to == state::writing || to == state::handed_off;
      case state::writing: return to == state::idle;
      case state::idle: return to == state::reading;
      default: return false;
    }
  };
  assert(allowed(state_, next) && "an http_session state change its design does not have");
  state_ = next;
}

bool http_session::on_own_executor() {
  // One io_context per I/O thread: running in it is running on this connection's executor.
  auto& ctx = static_cast<asio::io_context&>(stream_.get_executor().context());
  return ctx.get_executor().running_in_this_thread();
}

http_session::header_pairs http_session::header_list(const request& req) {
  header_pairs out;
  for (const auto& field : req)
    out.emplace_back(std::string(field.name_string()), std::string(field.value()));
  return out;
}

void start_http_session(tcp::socket socket, session_context& ctx, std::shared_ptr<void> slot,
                        std::string received) {
  // Every write goes out when it is made. With Nagle's algorithm on, an answer written after
  // an unacknowledged segment waited for the client's delayed ACK: over TLS the first answer
  // on a connection followed the session tickets and came ~40 ms late (python-socketio's
  // asyncio client then lost its close packet: docs/deployment.md, TLS). WebSocket and SSE streams
  // keep the option after the hand-off.
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  auto session = std::make_shared<http_session>(std::move(socket), ctx, std::move(slot));
  session->take_received(received);
  session->run();
}

}  // namespace skyrelay
