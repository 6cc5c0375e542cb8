// http_session's checks that every handshake shares (JSON-protocol WebSocket, SSE, declared
// endpoints): the token, the client topics, the roles, the Origin, and the CORS headers of an
// allowed cross-origin request.
#include <algorithm>

#include "http_session_impl.hpp"
#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/proto/json_protocol.hpp"

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

}  // namespace

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

void http_session::log_refusal(const request& req, unsigned status, std::string_view code,
                               std::string_view message) {
  const bool auth = status == 401 || status == 403;
  // The path without its query string: a token may ride in ?token= and must not reach a log.
  const std::string_view target = req.target();
  log_event(ctx_.log(), auth ? log_source::auth : log_source::conn, log_level::info,
            auth ? "auth_refused" : "handshake_refused", [&] {
              return std::vector<log_field>{{"remote", client_remote_},
                                            {"path", std::string(target.substr(0, target.find('?')))},
                                            {"status", std::int64_t{status}},
                                            {"code", std::string(code)},
                                            {"message", std::string(message)}};
            });
}

// 403 {"error":"forbidden","message":...}; the connection closes after it.
void http_session::forbidden(const request& req, const std::string& message) {
  log_refusal(req, 403, "forbidden", message);
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
  log_refusal(req, 401, f.code, f.message);
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
