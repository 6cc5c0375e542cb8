#include "skyrelay/net/http_session.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <optional>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/net/eio_session.hpp"
#include "skyrelay/net/server.hpp"
#include "skyrelay/net/static_files.hpp"
#include "skyrelay/net/stream.hpp"
#include "skyrelay/proto/http_fields.hpp"
#include "skyrelay/proto/publish_api.hpp"
#include "skyrelay/net/sse_session.hpp"
#include "skyrelay/net/ws_session.hpp"
#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// How long a TLS connection that ends waits for the peer's close_notify.
constexpr std::chrono::milliseconds tls_close_wait{1000};

constexpr std::string_view nosniff_field = "X-Content-Type-Options";

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

// Sec-WebSocket-Key must be the base64 form of 16 bytes (RFC 6455 4.2.1).
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

// The body of a 401 for a token: {"error":"unauthorized","code":...,"message":...}.
std::string auth_error_body(const auth::auth_refusal& f) {
  std::string body = "{\"error\":\"unauthorized\",\"code\":";
  proto::append_json_string(body, f.code);
  body += ",\"message\":";
  proto::append_json_string(body, f.message);
  body += "}";
  return body;
}

// The raw (still percent-encoded) value of `key` in a query string, or nullopt.
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

// The value of `key` in a query string (percent-decoded), or nullopt.
std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  auto raw = raw_query_param(query, key);
  if (!raw) return std::nullopt;
  return url_decode(*raw).value_or("");
}

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(tcp::socket socket, server& srv, std::shared_ptr<void> slot)
      : stream_(srv.tls_context() ? net::stream(std::move(socket), *srv.tls_context())
                                  : net::stream(std::move(socket))),
        deadline_(stream_.get_executor()),
        server_(srv),
        slot_(std::move(slot)) {}

  void run() {
    if (!stream_.is_tls()) return do_read();
    // TLS first, bounded like the request that follows: a client that connects and never
    // completes the handshake (or speaks plain HTTP) is dropped and counted.
    expires_after(server_.config().handshake_timeout);
    stream_.async_handshake([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) {
        auto& m = self->server_.get_metrics();
        m.add(m.local().tls_handshakes_failed);
        self->expires_never();
        self->stream_.close();
        return;
      }
      self->do_read();
    });
  }

 private:
  using request = http::request<http::string_body>;

  void do_read() {
    const auto& cfg = server_.config();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(cfg.max_header_size));
    parser_->body_limit(cfg.max_body_size);
    expires_after(cfg.handshake_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  // Between keep-alive requests: wait up to idle_timeout for the next request's first bytes,
  // then do_read gives the rest of it handshake_timeout, so a trickled header stays bounded.
  void await_request() {
    if (buffer_.size() > 0) return do_read();  // a pipelined request is already here
    const auto idle = server_.config().idle_timeout;
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

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == boost::asio::error::connection_reset || ec == boost::asio::error::eof ||
        ec == boost::asio::error::operation_aborted || ec == ssl::error::stream_truncated ||
        !stream_.socket().is_open()) {
      return close();
    }
    if (ec == http::error::header_limit) {
      server_.get_metrics().limit_hit(limit_kind::header_size);
      return send_error(http::status::request_header_fields_too_large, "header_too_large",
                        "the request header is larger than the limit", false);
    }
    if (ec == http::error::body_limit) {
      server_.get_metrics().limit_hit(limit_kind::body_size);
      return send_error(http::status::payload_too_large, "body_too_large",
                        "the request body is larger than the limit", false);
    }
    if (ec) return send_error(http::status::bad_request, "bad_request", ec.message(), false);

    request req = parser_->release();
    auto& m = server_.get_metrics();
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    std::string_view query =
        target.find('?') == std::string_view::npos ? "" : target.substr(target.find('?') + 1);

    // A transport that is turned off is an unknown path: its requests go on to the routes
    // below (a 404, or the WSGI app), and no connection is made.
    const auto& cfg = server_.config();
    if (cfg.json_protocol && (path == "/ws" || path.starts_with("/ws/")))
      return upgrade(std::move(req), path, query);
    if (cfg.socketio && (path == cfg.socketio_path ||
                         path == std::string_view(cfg.socketio_path)
                                     .substr(0, cfg.socketio_path.size() - 1)))
      return engineio(std::move(req), query);
    if (!server_.config().engineio_echo_path.empty() &&
        (path == server_.config().engineio_echo_path ||
         path == std::string_view(server_.config().engineio_echo_path)
                     .substr(0, server_.config().engineio_echo_path.size() - 1)))
      return engineio(std::move(req), query, true);
    m.add(m.local().http_requests);
    if (path == "/api/publish") return publish_api(req);
    if (beast::websocket::is_upgrade(req))
      return send_error(http::status::not_found, "not_found", "no WebSocket endpoint here",
                        req.keep_alive());
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      if (server_.hooks().on_http) return to_application(req);
      return send_error(http::status::method_not_allowed, "method_not_allowed",
                        "only GET and HEAD are served here", req.keep_alive());
    }
    if (cfg.sse && (path == "/sse" || path.starts_with("/sse/")))
      return sse(std::move(req), path, query);
    if (path == "/health") return send_text(req, "application/json", server_.health_json());
    if (path == "/metrics")
      return send_text(req, "text/plain; version=0.0.4; charset=utf-8", server_.metrics_text());
    return serve_static(req, path);
  }

  void upgrade(request req, std::string_view path, std::string_view query) {
    auto& m = server_.get_metrics();
    auto reject = [&](http::status status, std::string_view code, std::string_view msg) {
      m.add(m.local().handshakes_rejected);
      send_error(status, code, msg, false);
    };
    if (!beast::websocket::is_upgrade(req))
      return reject(http::status::upgrade_required, "upgrade_required",
                    "this endpoint speaks WebSocket only");
    if (req[http::field::sec_websocket_version] != "13") {
      m.add(m.local().handshakes_rejected);
      http::response<http::string_body> res{http::status::upgrade_required, req.version()};
      res.set(http::field::sec_websocket_version, "13");
      res.set(http::field::content_type, "application/json");
      res.body() = error_body("unsupported_version", "Sec-WebSocket-Version must be 13");
      return write(std::move(res), false);
    }
    std::string_view key = req[http::field::sec_websocket_key];
    if (!valid_client_key(key))
      return reject(http::status::bad_request, "bad_handshake", "invalid Sec-WebSocket-Key");
    // A browser page of another origin may not open a connection that carries the user's
    // cookies (cross-site WebSocket hijacking): exact matches of cors_allowed_origins only.
    if (!origin_allowed(req))
      return reject(http::status::forbidden, "origin_not_allowed",
                    "this origin may not open a WebSocket here");
    std::string topic;
    if (path.size() > 4) {
      auto decoded = url_decode(path.substr(4));
      if (!decoded || decoded->empty() || decoded->size() > proto::max_topic_length)
        return reject(http::status::bad_request, "bad_topic", "invalid topic in the path");
      topic = std::move(*decoded);
    }
    auth::identity_ptr identity;
    if (!check_token(req, query, identity)) return;
    std::vector<std::string> topics;
    if (!topic.empty()) topics.push_back(topic);
    if (!check_client_topics(req, identity, topics)) return;
    if (!check_access(req, identity, topics)) return;

    std::string response =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " + websocket_accept_key(key) + "\r\n\r\n";
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& field : req)
      headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());

    expires_never();
    boost::system::error_code ec;
    net::stream socket = std::move(stream_);
    socket.socket().set_option(tcp::no_delay(true), ec);
    auto session = std::make_shared<ws_session>(std::move(socket), server_.context(), new_sid(),
                                                std::move(response), std::move(leftover),
                                                std::move(topic));
    session->hold(std::move(slot_));
    session->set_identity(std::move(identity));
    session->start(std::string(path), std::string(query), std::move(headers));
  }

  // The token of a WebSocket or SSE handshake, when the server checks tokens: the
  // "Authorization: Bearer" header, else the `token` query parameter. True when the handshake
  // may go on, with `id` set (null: no token, and none is required); else the 401 is written.
  bool check_token(const request& req, std::string_view query, auth::identity_ptr& id) {
    const auto& jwt = server_.config().jwt;
    if (!jwt) return true;
    std::string token;
    if (auto bearer = auth::bearer_token(req[http::field::authorization]))
      token = std::string(*bearer);
    else if (auto param = query_param(query, "token"))
      token = std::move(*param);
    if (token.empty() && !jwt->required) return true;
    auto r = auth::authenticate(*jwt, token, auth::token_use::connect, auth::unix_now());
    if (auto* f = std::get_if<auth::auth_refusal>(&r)) {
      auto& m = server_.get_metrics();
      m.add(m.local().handshakes_rejected);
      unauthorized(req, *f, false);
      return false;
    }
    id = std::get<auth::identity_ptr>(std::move(r));
    return true;
  }

  // The topics a JSON-protocol or SSE handshake subscribes to by name must be open to clients
  // (client_topics). True when they are; else a 403 {"error":"forbidden",...} is written.
  bool check_client_topics(const request& req, const auth::identity_ptr& id,
                           const std::vector<std::string>& topics) {
    auto refusal =
        auth::check_client_topics(server_.config().client_topics.get(), topics, id.get());
    if (!refusal) return true;
    auto& m = server_.get_metrics();
    m.add(m.local().forbidden_client_topic);
    m.add(m.local().handshakes_rejected);
    forbidden(req, refusal->message);
    return false;
  }

  // 403 {"error":"forbidden","message":...}; the connection closes after it.
  void forbidden(const request& req, const std::string& message) {
    http::response<http::string_body> res{http::status::forbidden, req.version()};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.body() = error_body("forbidden", message);
    res.keep_alive(false);
    res.prepare_payload();
    write(std::move(res), false);
  }

  // The role requirements of a JSON-protocol or SSE handshake: the "/" namespace's, and each
  // room's in `rooms`. True when they are met; else a 403 {"error":"forbidden",...} is written.
  // With a connect hook, which may grant roles, a refusal waits for its decision instead (the
  // session checks again on acceptance).
  bool check_access(const request& req, const auth::identity_ptr& id,
                    const std::vector<std::string>& rooms) {
    const auto& policy = server_.config().access;
    if (!policy) return true;
    auto refusal = policy->check_connect("/", rooms, auth::connection_roles(id.get()));
    if (!refusal || (server_.config().roles_from_connect && server_.hooks().on_connect))
      return true;
    auto& m = server_.get_metrics();
    m.add(refusal->scope == auth::access_scope::namespace_ ? m.local().forbidden_namespace
                                                           : m.local().forbidden_room);
    m.add(m.local().handshakes_rejected);
    forbidden(req, refusal->message);
    return false;
  }

  // 401 with WWW-Authenticate (RFC 6750 3) and {"error":"unauthorized","code":...}.
  void unauthorized(const request& req, const auth::auth_refusal& f, bool keep) {
    auto& m = server_.get_metrics();
    m.add(m.local().auth_refused);
    http::response<http::string_body> res{http::status::unauthorized, req.version()};
    res.set(http::field::www_authenticate, f.code == auth::token_required
                                               ? R"(Bearer realm="skyrelay")"
                                               : R"(Bearer realm="skyrelay", error="invalid_token")");
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.body() = auth_error_body(f);
    res.keep_alive(keep);
    res.prepare_payload();
    write(std::move(res), keep);
  }

  // POST /api/publish: one event or a batch, token-protected, with optional idempotency.
  void publish_api(const request& req) {
    const bool keep = req.keep_alive();
    const auto& cfg = server_.config();
    server_.get_metrics().add(server_.get_metrics().local().publish_api_requests);
    auto fail = [&](http::status status, std::string_view code, std::string_view message) {
      server_.get_metrics().add(server_.get_metrics().local().publish_api_refused);
      send_error(status, code, message, keep);
    };
    if (req.method() != http::verb::post)
      return fail(http::status::method_not_allowed, "method_not_allowed",
                  "publish with POST and a JSON body");
    if (cfg.publish_token.empty() && !cfg.jwt)
      return fail(http::status::forbidden, "publish_disabled",
                  "the publish API is off: start the server with a publish_token or jwt");
    // The static publish_token is compared first: when it matches, no JWT is verified.
    // Otherwise, with JWT on, the bearer must be a publish token.
    std::string_view auth = req[http::field::authorization];
    constexpr std::string_view bearer = "Bearer ";
    bool token_ok = !cfg.publish_token.empty() &&
                    auth.size() == bearer.size() + cfg.publish_token.size() &&
                    auth.starts_with(bearer) &&
                    CRYPTO_memcmp(auth.data() + bearer.size(), cfg.publish_token.data(),
                                  cfg.publish_token.size()) == 0;
    // Who publishes, for the scope of idempotency keys: the static token, else the JWT's sub,
    // else (a token without sub) that very token.
    std::string publisher = "publish_token";
    if (!token_ok && cfg.jwt) {
      const auto token = auth::bearer_token(auth);
      auto r = auth::authenticate(*cfg.jwt, token.value_or(std::string_view()),
                                  auth::token_use::publish, auth::unix_now());
      if (auto* f = std::get_if<auth::auth_refusal>(&r)) {
        server_.get_metrics().add(server_.get_metrics().local().publish_api_refused);
        return unauthorized(req, *f, keep);
      }
      const auto& sub = std::get<auth::identity_ptr>(r)->subject;
      if (!sub.empty()) {
        publisher = "sub:" + sub;
      } else {
        const auto d = idempotency_store::digest_of(*token);
        publisher = "token:" + std::string(d.begin(), d.end());
      }
      token_ok = true;
    }
    if (!token_ok) {
      http::response<http::string_body> res{http::status::unauthorized, req.version()};
      res.set(http::field::www_authenticate, "Bearer");
      res.set(http::field::content_type, "application/json");
      res.body() = error_body("unauthorized", auth.empty()
                                                  ? "an Authorization: Bearer <token> header is required"
                                                  : "the token is not valid");
      res.keep_alive(keep);
      res.prepare_payload();
      server_.get_metrics().add(server_.get_metrics().local().publish_api_refused);
      return write(std::move(res), keep);
    }
    std::string_view type = req[http::field::content_type];
    if (!type.starts_with("application/json"))
      return fail(http::status::unsupported_media_type, "unsupported_media_type",
                  "the body must be application/json");
    auto decoded = proto::decode_publish(req.body(), req["Idempotency-Key"]);
    if (auto* err = std::get_if<proto::publish_error>(&decoded))
      return fail(http::status::bad_request, err->code, err->message);
    auto& pr = std::get<proto::publish_request>(decoded);
    // Held until the answer is stored: a publish that ends any other way frees its key.
    idempotency_store::reservation reserved;
    if (!pr.idempotency_key.empty()) {
      auto r = server_.idempotency().begin(
          publisher, pr.idempotency_key,
          idempotency_store::digest_of(proto::publish_fingerprint(pr)));
      using status = idempotency_store::status;
      if (r.what == status::conflict)
        return fail(http::status::conflict, "idempotency_key_reused",
                    "this idempotency key was used with a different body; a new request "
                    "needs a new key");
      if (r.what == status::in_progress)
        return fail(http::status::conflict, "in_progress",
                    "a request with this idempotency key is being handled; retry later");
      if (r.what == status::replay) {
        // A repeat: publish nothing, answer as the first time, marked as a duplicate.
        constexpr std::string_view first = ",\"duplicate\":false}";
        std::string body = std::move(r.answer);
        body.resize(body.size() - first.size());
        body += ",\"duplicate\":true}";
        return send_json(req, http::status::ok, std::move(body));
      }
      reserved = std::move(r.hold);
    }
    std::vector<proto::publish_receipt_view> receipts;
    receipts.reserve(pr.events.size());
    auto& hub = server_.get_hub();
    for (const auto& p : pr.events) {
      publish_meta meta;
      const std::size_t n = server_.publish(p, &meta);
      receipts.push_back({hub.event_id(meta.id), meta.topic, meta.seq, n});
    }
    std::string body = proto::encode_published(receipts, pr.batch, false);
    reserved.finish(body);
    send_json(req, http::status::ok, std::move(body));
  }

  void send_json(const request& req, http::status status, std::string body) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    write(std::move(res), req.keep_alive());
  }

  // Server-Sent Events: GET /sse/<topic> and/or ?topics=a,b (each percent-decoded); resumes
  // after the Last-Event-ID header or the last_event_id query parameter.
  void sse(request req, std::string_view path, std::string_view query) {
    auto& m = server_.get_metrics();
    auto reject = [&](http::status status, std::string_view code, std::string_view msg) {
      m.add(m.local().handshakes_rejected);
      send_error(status, code, msg, false);
    };
    if (req.method() != http::verb::get)
      return reject(http::status::method_not_allowed, "method_not_allowed",
                    "an event stream is opened with GET");
    if (!origin_allowed(req))
      return reject(http::status::forbidden, "origin_not_allowed",
                    "this origin may not open an event stream here");
    std::vector<std::string> topics;
    auto add_topic = [&](std::optional<std::string> t) {
      if (!t || t->empty() || t->size() > proto::max_topic_length) return false;
      if (std::find(topics.begin(), topics.end(), *t) == topics.end())
        topics.push_back(std::move(*t));
      return true;
    };
    if (path.size() > 5 && !add_topic(url_decode(path.substr(5))))
      return reject(http::status::bad_request, "bad_topic", "invalid topic in the path");
    if (auto list = raw_query_param(query, "topics")) {
      for (std::string_view rest = *list; !rest.empty();) {
        auto comma = rest.find(',');
        if (!add_topic(url_decode(rest.substr(0, comma))))
          return reject(http::status::bad_request, "bad_topic",
                        "topics must be a comma-separated list of 1 to 256-byte names");
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
    }
    if (topics.size() > proto::max_topics_per_message)
      return reject(http::status::bad_request, "too_many_topics", "at most 64 topics per stream");
    std::string last_id(req["Last-Event-ID"]);
    if (last_id.empty()) last_id = query_param(query, "last_event_id").value_or("");
    if (last_id.size() > 64)
      return reject(http::status::bad_request, "bad_last_event_id", "Last-Event-ID is too long");
    auth::identity_ptr identity;
    if (!check_token(req, query, identity)) return;
    if (!check_client_topics(req, identity, topics)) return;
    if (!check_access(req, identity, topics)) return;

    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        "Cache-Control: no-cache, no-transform\r\nX-Accel-Buffering: no\r\n"
        "X-Content-Type-Options: nosniff\r\nTransfer-Encoding: chunked\r\n";
    for (const auto& [k, v] : cors_headers(req)) {
      head += std::string(http::to_string(k));
      head += ": " + v + "\r\n";
    }
    head += "\r\n";
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& field : req)
      headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    expires_never();
    boost::system::error_code ec;
    net::stream socket = std::move(stream_);
    socket.socket().set_option(tcp::no_delay(true), ec);
    auto session = std::make_shared<sse_session>(std::move(socket), server_.context(), new_sid(),
                                                 std::move(head), std::move(topics),
                                                 std::move(last_id));
    session->hold(std::move(slot_));
    session->set_identity(std::move(identity));
    session->start(std::string(path), std::string(query), std::move(headers));
  }

  // Engine.IO v4 (Socket.IO's transport): handshake, polling GET/POST, WebSocket and upgrade.
  void engineio(request req, std::string_view query, bool echo = false) {
    auto& m = server_.get_metrics();
    const bool keep = req.keep_alive();
    const auto cors = cors_headers(req);
    auto eio_error = [&](eio::error_code code, http::status status = http::status::bad_request) {
      m.add(m.local().handshakes_rejected);
      http::response<http::string_body> res{status, req.version()};
      res.set(http::field::content_type, "application/json");
      for (const auto& [k, v] : cors) res.set(k, v);
      res.keep_alive(keep);
      res.body() = eio::error_body(code);
      res.prepare_payload();
      write(std::move(res), keep);
    };
    if (!origin_allowed(req)) return eio_error(eio::error_code::forbidden, http::status::forbidden);
    if (req.method() == http::verb::options) {
      // CORS preflight (browsers send one when the client sets extra headers).
      http::response<http::empty_body> res{http::status::no_content, req.version()};
      for (const auto& [k, v] : cors) res.set(k, v);
      res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
      if (auto h = req[http::field::access_control_request_headers]; !h.empty())
        res.set(http::field::access_control_allow_headers, h);
      res.keep_alive(keep);
      return write(std::move(res), keep);
    }
    auto eio_version = query_param(query, "EIO");
    if (!eio_version || *eio_version != "4")
      return eio_error(eio::error_code::unsupported_protocol_version);
    auto transport = query_param(query, "transport");
    if (!transport || (*transport != "polling" && *transport != "websocket"))
      return eio_error(eio::error_code::unknown_transport);
    auto sid = query_param(query, "sid");
    const bool is_ws = beast::websocket::is_upgrade(req);

    if (is_ws) {
      if (*transport != "websocket") return eio_error(eio::error_code::bad_request);
      std::string_view key = req[http::field::sec_websocket_key];
      if (req[http::field::sec_websocket_version] != "13" || !valid_client_key(key))
        return eio_error(eio::error_code::bad_request);
      std::shared_ptr<eio_session> session;
      if (sid) {
        session = server_.find_eio(*sid);
        if (!session) return eio_error(eio::error_code::unknown_sid);
      }
      std::string response =
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Accept: " + websocket_accept_key(key) + "\r\n\r\n";
      std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());
      expires_never();
      boost::system::error_code ec;
      net::stream socket = std::move(stream_);
      socket.socket().set_option(tcp::no_delay(true), ec);
      auto& ctx = static_cast<asio::io_context&>(socket.get_executor().context());
      const std::string remote = remote_of(socket.socket());
      auto ws = std::make_shared<ws_session>(std::move(socket), server_.context(), new_sid(),
                                             std::move(response), std::move(leftover), "");
      ws->hold(std::move(slot_));
      if (session) {
        ws->start_with(session, "");
        session->attach_probe(ws);
        return;
      }
      // A session opened over WebSocket is counted by its connection's slot (held by `ws`).
      session = std::make_shared<eio_session>(server_.context(), ctx, new_sid(),
                                              eio_session::transport::websocket, remote,
                                              session_headers(req), std::string(query), echo);
      server_.register_eio(session);
      session->attach_websocket(ws);
      ws->start_with(session, session->open_packet());
      session->start();
      return;
    }

    if (*transport != "polling") return eio_error(eio::error_code::bad_request);
    auto reply = [self = shared_from_this(), version = req.version(), keep, cors](
                     unsigned status, std::string body) {
      // Answers may come from another thread (a parked poll released by a publisher).
      asio::post(self->stream_.get_executor(), [self, version, keep, status, cors,
                                                body = std::move(body)]() mutable {
        http::response<http::string_body> res{static_cast<http::status>(status), version};
        res.set(http::field::content_type,
                status == 200 ? "text/plain; charset=UTF-8" : "application/json");
        for (const auto& [k, v] : cors) res.set(k, v);
        if (body.size() > 1 && body[0] == '0' && body[1] == '{' &&
            !self->server_.config().eio_cookie.empty()) {
          // The handshake: the sticky-session cookie carries the Engine.IO sid.
          auto sid = open_packet_sid(body);
          res.set(http::field::set_cookie, self->server_.config().eio_cookie + "=" + sid +
                                               "; Path=/; HttpOnly; SameSite=Lax");
        }
        res.keep_alive(keep);
        res.body() = std::move(body);
        res.prepare_payload();
        self->write(std::move(res), keep);
      });
    };
    if (!sid) {
      if (req.method() != http::verb::get) return eio_error(eio::error_code::bad_handshake_method);
      // The session outlives this request (and this connection): it takes its own admission
      // slot, which it gives back when it ends.
      connection_refusal why = connection_refusal::none;
      auto slot = server_.admit(remote_ip(stream_.socket()), why, true);
      if (!slot) return refuse_session(req, why, cors);
      auto& ctx = static_cast<asio::io_context&>(stream_.socket().get_executor().context());
      auto session = std::make_shared<eio_session>(server_.context(), ctx, new_sid(),
                                                   eio_session::transport::polling,
                                                   remote_of(stream_.socket()),
                                                   session_headers(req), std::string(query), echo);
      session->hold(std::move(slot));
      server_.register_eio(session);
      session->start();
      return reply(200, session->open_packet());
    }
    auto session = server_.find_eio(*sid);
    if (!session) return eio_error(eio::error_code::unknown_sid);
    if (req.method() == http::verb::get) {
      expires_never();  // a poll may wait up to a ping interval
      return session->poll(std::move(reply));
    }
    if (req.method() == http::verb::post) return session->post(req.body(), std::move(reply));
    return eio_error(eio::error_code::bad_request);
  }

  // The Origin a request came from, unless it is the server's own (scheme-less compare).
  static bool same_origin(std::string_view origin, std::string_view host) {
    auto pos = origin.find("://");
    return pos != std::string_view::npos && origin.substr(pos + 3) == host;
  }

  bool origin_allowed(const request& req) const {
    std::string_view origin = req[http::field::origin];
    if (origin.empty() || same_origin(origin, req[http::field::host])) return true;
    for (const auto& o : server_.config().cors_allowed_origins)
      if (o == "*" || o == origin) return true;  // exact match only: no suffix tricks
    return false;
  }

  // CORS response headers for an allowed cross-origin request (none for same-origin ones).
  // "*" answers "*" and never allows credentials, whatever cors_credentials says: echoing any
  // origin with credentials would let every site read the user's cookie-authenticated stream.
  std::vector<std::pair<http::field, std::string>> cors_headers(const request& req) const {
    std::vector<std::pair<http::field, std::string>> out;
    std::string_view origin = req[http::field::origin];
    const auto& cfg = server_.config();
    if (origin.empty() || cfg.cors_allowed_origins.empty() || !origin_allowed(req)) return out;
    const bool any = std::find(cfg.cors_allowed_origins.begin(), cfg.cors_allowed_origins.end(),
                               "*") != cfg.cors_allowed_origins.end();
    if (any) {
      out.emplace_back(http::field::access_control_allow_origin, "*");
      return out;
    }
    out.emplace_back(http::field::access_control_allow_origin, std::string(origin));
    out.emplace_back(http::field::vary, "Origin");
    if (cfg.cors_credentials)
      out.emplace_back(http::field::access_control_allow_credentials, "true");
    return out;
  }

  // The sid of an open packet body "0{"sid":"...",...}".
  static std::string open_packet_sid(const std::string& body) {
    auto start = body.find("\"sid\":\"");
    if (start == std::string::npos) return {};
    start += 7;
    return body.substr(start, body.find('"', start) - start);
  }

  // Hands the request to the application (a WSGI app) and answers when it replies.
  void to_application(const request& req) {
    const bool keep = req.keep_alive();
    const unsigned version = req.version();
    const bool head = req.method() == http::verb::head;
    expires_never();  // the application decides how long it takes
    auto id = server_.park_http([self = shared_from_this(), keep, version, head](
                                    unsigned status,
                                    std::vector<std::pair<std::string, std::string>> headers,
                                    std::string body) {
      asio::post(self->stream_.get_executor(), [self, keep, version, head, status,
                                                headers = std::move(headers),
                                                body = std::move(body)]() mutable {
        if (!valid_app_response(status, headers)) {
          // A CR or LF would end the header block early and split the response: refuse it
          // whole. (The Python bridge checks first and logs; this is the last line.)
          status = 500;
          headers = {{"Content-Type", "application/json"}};
          body = error_body("bad_response", "the application's response has an invalid header");
        }
        http::response<http::string_body> res{static_cast<http::status>(status), version};
        for (const auto& [k, v] : headers) {
          // Framing is ours to set: the body is complete here.
          if (beast::iequals(k, "content-length") || beast::iequals(k, "transfer-encoding"))
            continue;
          res.insert(k, v);
        }
        res.keep_alive(keep);
        const auto size = body.size();
        if (!head) res.body() = std::move(body);
        res.content_length(size);
        self->write(std::move(res), keep);
      });
    });
    http_request_info info{id, std::string(req.method_string()), std::string(req.target()),
                           remote_of(stream_.socket()), header_list(req), req.body()};
    server* srv = &server_;
    if (!server_.get_dispatcher().post([srv, info = std::move(info)] { srv->hooks().on_http(info); }))
      server_.http_reply(id, 503, {{"Content-Type", "application/json"}},
                         error_body("overloaded", "the server is busy"));
  }

  // A final status Beast can write (three digits) and header fields that cannot split the
  // response.
  static bool valid_app_response(unsigned status,
                                 const std::vector<std::pair<std::string, std::string>>& headers) {
    if (status < 200 || status > 999) return false;  // a 1xx is never a final answer
    for (const auto& [k, v] : headers)
      if (!proto::valid_field_name(k) || !proto::valid_field_value(v)) return false;
    return true;
  }

  static std::string remote_of(const tcp::socket& socket) {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    return ec ? std::string() : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  // An Engine.IO handshake over an admission limit (server::admit): 503 for the connection
  // limits, 429 for the new-session rate, with a JSON message; the connection stays open.
  void refuse_session(const request& req, connection_refusal why,
                      const std::vector<std::pair<http::field, std::string>>& cors) {
    auto& m = server_.get_metrics();
    m.add(m.local().handshakes_rejected);
    const bool rate = why == connection_refusal::rate;
    m.limit_hit(rate ? limit_kind::new_sessions_per_ip
                : why == connection_refusal::per_ip ? limit_kind::sessions_per_ip
                                                    : limit_kind::sessions_total);
    http::response<http::string_body> res{
        rate ? http::status::too_many_requests : http::status::service_unavailable, req.version()};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::retry_after, "1");
    for (const auto& [k, v] : cors) res.set(k, v);
    res.keep_alive(req.keep_alive());
    res.body() = rate ? error_body("rate_limited",
                                   "too many new sessions from this address; slow down")
                 : why == connection_refusal::per_ip
                     ? error_body("too_many_connections", "too many connections from this address")
                     : error_body("too_many_connections", "the server is at its connection limit");
    res.prepare_payload();
    write(std::move(res), req.keep_alive());
  }

  static std::string remote_ip(const tcp::socket& socket) {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    return ec ? std::string() : ep.address().to_string();
  }

  // What an Engine.IO session keeps of its handshake's headers: all of them when the app's
  // Socket.IO connect hook will be shown them, else only Authorization (a CONNECT's token may
  // come from it). At most max_header_size bytes either way.
  std::vector<std::pair<std::string, std::string>> session_headers(const request& req) const {
    if (server_.hooks().on_sio_connect) return header_list(req);
    std::vector<std::pair<std::string, std::string>> out;
    if (auto it = req.find(http::field::authorization); it != req.end())
      out.emplace_back(std::string(it->name_string()), std::string(it->value()));
    return out;
  }

  static std::vector<std::pair<std::string, std::string>> header_list(const request& req) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& field : req)
      out.emplace_back(std::string(field.name_string()), std::string(field.value()));
    return out;
  }

  void serve_static(const request& req, std::string_view path) {
    const auto& cfg = server_.config();
    std::optional<std::string> file;
    // The browser client, built in: /skyrelay.js and its type declarations.
    if (!cfg.client_dir.empty() && (path == "/skyrelay.js" || path == "/skyrelay.d.ts"))
      file = resolve_static(cfg.client_dir, path);
    if (!file && !cfg.static_dir.empty()) file = resolve_static(cfg.static_dir, path);
    if (!file) {
      if (server_.hooks().on_http) return to_application(req);
      return send_error(http::status::not_found, "not_found", "no such resource",
                        req.keep_alive());
    }
    http::file_body::value_type body;
    beast::error_code ec;
    body.open(file->c_str(), beast::file_mode::scan, ec);
    if (ec)
      return send_error(http::status::not_found, "not_found", "no such resource",
                        req.keep_alive());
    const auto size = body.size();
    if (req.method() == http::verb::head) {
      http::response<http::empty_body> res{http::status::ok, req.version()};
      res.set(http::field::content_type, mime_type(*file));
      res.content_length(size);
      res.keep_alive(req.keep_alive());
      return write(std::move(res), req.keep_alive());
    }
    http::response<http::file_body> res{std::piecewise_construct, std::make_tuple(std::move(body)),
                                        std::make_tuple(http::status::ok, req.version())};
    res.set(http::field::content_type, mime_type(*file));
    res.set(http::field::cache_control, "no-cache");
    res.content_length(size);
    res.keep_alive(req.keep_alive());
    write(std::move(res), req.keep_alive());
  }

  void send_text(const request& req, std::string_view type, std::string body) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, type);
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(req.keep_alive());
    if (req.method() == http::verb::head) {
      res.content_length(body.size());
      return write(std::move(res), req.keep_alive());
    }
    res.body() = std::move(body);
    res.prepare_payload();
    write(std::move(res), req.keep_alive());
  }

  void send_error(http::status status, std::string_view code, std::string_view message,
                  bool keep_alive) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(keep_alive);
    res.body() = error_body(code, message);
    res.prepare_payload();
    write(std::move(res), keep_alive);
  }

  // Every response of this connection goes out here: built-in ones and the WSGI app's.
  template <class Body>
  void write(http::response<Body> res, bool keep_alive) {
    auto sp = std::make_shared<http::response<Body>>(std::move(res));
    if (!keep_alive) sp->keep_alive(false);
    // Browsers must take Content-Type as given: an upload or a JSON error never runs as script.
    if (sp->find(nosniff_field) == sp->end()) sp->set(nosniff_field, "nosniff");
    expires_after(server_.config().handshake_timeout);
    http::async_write(stream_, *sp,
                      [self = shared_from_this(), sp, keep_alive](beast::error_code ec,
                                                                  std::size_t) {
                        if (ec || !keep_alive) return self->close();
                        self->await_request();
                      });
  }

  void close() {
    expires_never();
    if (stream_.is_tls()) return stream_.close_gracefully(shared_from_this(), tls_close_wait);
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
  }

  // The time the next read or write may take; when it passes, the limit is counted and the
  // socket is closed, which ends the pending operation with an error.
  void expires_after(std::chrono::milliseconds limit,
                     limit_kind kind = limit_kind::handshake_timeout) {
    const auto generation = ++deadline_generation_;
    deadline_.expires_after(limit);
    deadline_.async_wait([self = shared_from_this(), generation, kind](boost::system::error_code ec) {
      if (ec || generation != self->deadline_generation_) return;
      self->server_.get_metrics().limit_hit(kind);
      self->stream_.close();
    });
  }
  void expires_never() {
    ++deadline_generation_;
    deadline_.cancel();
  }

  net::stream stream_;
  asio::steady_timer deadline_;
  std::uint64_t deadline_generation_{0};
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  server& server_;
  std::shared_ptr<void> slot_;  // the connection's admission, passed on when it upgrades
};

}  // namespace

void start_http_session(tcp::socket socket, server& srv, std::shared_ptr<void> slot) {
  std::make_shared<http_session>(std::move(socket), srv, std::move(slot))->run();
}

}  // namespace skyrelay
