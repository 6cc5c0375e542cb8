// http_session's handshakes of the sessions that take a connection over: the JSON protocol's
// WebSocket (/ws, /ws/<topic>) and Server-Sent Events (/sse/<topic>, ?topics=), with the checks
// every handshake shares: the token, the client topics, the roles, the Origin, and the CORS
// headers of an allowed cross-origin request.
#include <algorithm>
#include <thread>

#include <boost/beast/websocket/rfc6455.hpp>

#include "http_session_impl.hpp"
#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/net/json_ws_handler.hpp"
#include "skyrelay/net/sse_session.hpp"
#include "skyrelay/net/static_files.hpp"
#include "skyrelay/net/ws_session.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/sse_cursor.hpp"

namespace skyrelay {

using http_detail::error_body;
using http_detail::query_param;

namespace {

// The body of a 401 for a token: {"error":"unauthorized","code":...,"message":...}.
std::string auth_error_body(const auth::auth_refusal& f) {
  std::string body = "{\"error\":\"unauthorized\",\"code\":";
  proto::append_json_string(body, f.code);
  body += ",\"message\":";
  proto::append_json_string(body, f.message);
  body += "}";
  return body;
}

// The Origin a request came from, unless it is the server's own (scheme-less compare).
bool same_origin(std::string_view origin, std::string_view host) {
  auto pos = origin.find("://");
  return pos != std::string_view::npos && origin.substr(pos + 3) == host;
}

// The topics an SSE request names: the path's (/sse/<topic>), then the `topics=` list's, each
// percent-decoded and kept once. Null, or the 400's message when one is empty or too long.
const char* sse_topics(std::string_view path, std::string_view query,
                       std::vector<std::string>& topics) {
  auto add_topic = [&](std::optional<std::string> t) {
    if (!t || t->empty() || t->size() > proto::max_topic_length) return false;
    if (std::find(topics.begin(), topics.end(), *t) == topics.end())
      topics.push_back(std::move(*t));
    return true;
  };
  if (path.size() > 5 && !add_topic(url_decode(path.substr(5))))
    return "invalid topic in the path";
  if (auto list = http_detail::raw_query_param(query, "topics")) {
    for (std::string_view rest = *list; !rest.empty();) {
      auto comma = rest.find(',');
      if (!add_topic(url_decode(rest.substr(0, comma))))
        return "topics must be a comma-separated list of 1 to 256-byte names";
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return nullptr;
}

}  // namespace

void http_session::upgrade(request req, std::string_view path, std::string_view query) {
  auto& m = ctx_.get_metrics();
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
  if (!http_detail::valid_client_key(key))
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
      "Sec-WebSocket-Accept: " + http_detail::websocket_accept_key(key) + "\r\n\r\n";
  const bool deflate =
      http_detail::accept_deflate(req, ctx_.config().compress_json_ws, response);
  header_pairs headers = header_list(req);
  std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());

  // A /ws/<topic> session subscribes as it opens: like an SSE stream, it opens once the
  // broker has warmed its topic (a cluster broker follows it first, so nothing published
  // meanwhile falls between the join and the node's subscription). The memory broker answers
  // inline, and the session opens right here as before.
  struct pending {
    net::stream socket;
    std::string response, leftover, topic, path, query;
    std::shared_ptr<void> slot;
    auth::identity_ptr identity;
    header_pairs headers;
    bool deflate;
  };
  auto p = std::make_shared<pending>(pending{hand_off(), std::move(response), std::move(leftover),
                                             topic, std::string(path), std::string(query),
                                             std::move(slot_), std::move(identity),
                                             std::move(headers), deflate});
  auto open = [&ctx = ctx_, p] {
    auto session = std::make_shared<ws_session>(
        std::move(p->socket), ctx, new_sid(), std::move(p->response), std::move(p->leftover),
        ctx.encoders().json_ws, std::make_unique<json_ws_handler>(ctx, std::move(p->topic)));
    session->hold(std::move(p->slot));
    session->set_identity(std::move(p->identity));
    if (p->deflate) session->enable_deflate();
    session->start(p->path, p->query, std::move(p->headers));
  };
  const auto& warm = ctx_.get_publisher().warm;
  if (!warm || topic.empty()) return open();
  const auto caller = std::this_thread::get_id();
  auto ex = p->socket.get_executor();
  // Warmed or not (a timeout, Redis down), the session opens; a room the broker could not
  // load yet is loaded when it follows it, and its members then get an explicit reset.
  warm({channel{"/", topic}}, [open, caller, ex](bool) {
    if (std::this_thread::get_id() == caller) open();
    else asio::post(ex, open);
  });
}

// Server-Sent Events: GET /sse/<topic> and/or ?topics=a,b (each percent-decoded); resumes
// after the Last-Event-ID header or the last_event_id query parameter.
void http_session::sse(request req, std::string_view path, std::string_view query) {
  auto& m = ctx_.get_metrics();
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
  if (const char* bad = sse_topics(path, query, topics))
    return reject(http::status::bad_request, "bad_topic", bad);
  if (topics.size() > proto::max_topics_per_message)
    return reject(http::status::bad_request, "too_many_topics", "at most 64 topics per stream");
  std::string last_id(req["Last-Event-ID"]);
  if (last_id.empty()) last_id = query_param(query, "last_event_id").value_or("");
  if (last_id.size() > proto::max_sse_cursor_length)
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
  open_sse(req, path, query, std::move(head), std::move(topics), std::move(last_id),
           std::move(identity));
}

// Hands the connection to a new SSE stream, once the broker has warmed its topics.
void http_session::open_sse(const request& req, std::string_view path, std::string_view query,
                            std::string head, std::vector<std::string> topics,
                            std::string last_id, auth::identity_ptr identity) {
  std::vector<channel> rooms;
  rooms.reserve(topics.size());
  for (const auto& t : topics) rooms.push_back({"/", t});
  // The stream opens once the broker has warmed its topics (a cluster broker loads where
  // they stand, so a Last-Event-ID from another node resumes exactly); the memory broker
  // answers inline, and the stream opens right here as before.
  struct pending {
    net::stream socket;
    std::string head, last_id, path, query;
    std::vector<std::string> topics;
    std::shared_ptr<void> slot;
    auth::identity_ptr identity;
    header_pairs headers;
  };
  auto p = std::make_shared<pending>(pending{hand_off(), std::move(head), std::move(last_id),
                                             std::string(path), std::string(query),
                                             std::move(topics), std::move(slot_),
                                             std::move(identity), header_list(req)});
  auto open = [&ctx = ctx_, p] {
    auto session = std::make_shared<sse_session>(std::move(p->socket), ctx, new_sid(),
                                                 std::move(p->head), std::move(p->topics),
                                                 std::move(p->last_id));
    session->hold(std::move(p->slot));
    session->set_identity(std::move(p->identity));
    session->start(p->path, p->query, std::move(p->headers));
  };
  const auto& warm = ctx_.get_publisher().warm;
  if (!warm) return open();
  const auto caller = std::this_thread::get_id();
  auto ex = p->socket.get_executor();
  // Warmed or not (a timeout, Redis down), the stream opens: the hub then answers the cursor
  // with its replay or an explicit reset.
  warm(rooms, [open, caller, ex](bool) {
    if (std::this_thread::get_id() == caller) open();
    else asio::post(ex, open);
  });
}

// The token of a WebSocket or SSE handshake, when the server checks tokens: the
// "Authorization: Bearer" header, else the `token` query parameter. True when the handshake
// may go on, with `id` set (null: no token, and none is required); else the 401 is written.
bool http_session::check_token(const request& req, std::string_view query,
                               auth::identity_ptr& id) {
  const auto& jwt = ctx_.config().jwt;
  if (!jwt) return true;
  std::string token;
  if (auto bearer = auth::bearer_token(req[http::field::authorization]))
    token = std::string(*bearer);
  else if (auto param = query_param(query, "token"))
    token = std::move(*param);
  if (token.empty() && !jwt->required) return true;
  auto r = auth::authenticate(*jwt, token, auth::token_use::connect, auth::unix_now());
  if (auto* f = std::get_if<auth::auth_refusal>(&r)) {
    auto& m = ctx_.get_metrics();
    m.add(m.local().handshakes_rejected);
    unauthorized(req, *f, false);
    return false;
  }
  id = std::get<auth::identity_ptr>(std::move(r));
  return true;
}

// The topics a JSON-protocol or SSE handshake subscribes to by name must be open to clients
// (client_topics). True when they are; else a 403 {"error":"forbidden",...} is written.
bool http_session::check_client_topics(const request& req, const auth::identity_ptr& id,
                                       const std::vector<std::string>& topics) {
  auto refusal =
      auth::check_client_topics(ctx_.config().client_topics.get(), topics, id.get());
  if (!refusal) return true;
  auto& m = ctx_.get_metrics();
  m.add(m.local().forbidden_client_topic);
  m.add(m.local().handshakes_rejected);
  forbidden(req, refusal->message);
  return false;
}

// 403 {"error":"forbidden","message":...}; the connection closes after it.
void http_session::forbidden(const request& req, const std::string& message) {
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
bool http_session::check_access(const request& req, const auth::identity_ptr& id,
                                const std::vector<std::string>& rooms) {
  const auto& policy = ctx_.config().access;
  if (!policy) return true;
  auto refusal = policy->check_connect("/", rooms, auth::connection_roles(id.get()));
  if (!refusal || (ctx_.config().roles_from_connect && ctx_.hooks().on_connect))
    return true;
  auto& m = ctx_.get_metrics();
  m.add(refusal->scope == auth::access_scope::namespace_ ? m.local().forbidden_namespace
                                                         : m.local().forbidden_room);
  m.add(m.local().handshakes_rejected);
  forbidden(req, refusal->message);
  return false;
}

// 401 with WWW-Authenticate (RFC 6750 3) and {"error":"unauthorized","code":...}.
void http_session::unauthorized(const request& req, const auth::auth_refusal& f, bool keep) {
  auto& m = ctx_.get_metrics();
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

bool http_session::origin_allowed(const request& req) const {
  std::string_view origin = req[http::field::origin];
  if (origin.empty() || same_origin(origin, req[http::field::host])) return true;
  for (const auto& o : ctx_.config().cors_allowed_origins)
    if (o == "*" || o == origin) return true;  // exact match only: no suffix tricks
  return false;
}

// CORS response headers for an allowed cross-origin request (none for same-origin ones).
// "*" answers "*" and never allows credentials, whatever cors_credentials says: echoing any
// origin with credentials would let every site read the user's cookie-authenticated stream.
http_session::cors_list http_session::cors_headers(const request& req) const {
  cors_list out;
  std::string_view origin = req[http::field::origin];
  const auto& cfg = ctx_.config();
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

}  // namespace skyrelay
