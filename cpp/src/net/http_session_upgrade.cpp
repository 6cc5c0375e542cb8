// http_session's handshakes of the sessions that take a connection over: the JSON protocol's
// WebSocket (/ws, /ws/<topic>), Server-Sent Events (/sse/<topic>, ?topics=) and the endpoints
// the application declares (their topics from the path's parameters, their envelope). The
// checks every handshake shares are in http_session_checks.cpp.
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

// The topics an SSE request names: the path's (/sse/<topic>), then the `topics=` list's, each
// percent-decoded and kept once. Null, or the 400's message when one is empty or too long.
const char* sse_topics(std::string_view path, std::size_t base, std::string_view query,
                       std::vector<std::string>& topics) {
  auto add_topic = [&](std::optional<std::string> t) {
    if (!t || t->empty() || t->size() > proto::max_topic_length) return false;
    if (std::find(topics.begin(), topics.end(), *t) == topics.end())
      topics.push_back(std::move(*t));
    return true;
  };
  if (path.size() > base + 1 && !add_topic(url_decode(path.substr(base + 1))))
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

// Topics made from path parameters must still fit a topic's bounds.
bool topics_fit(const std::vector<std::string>& topics) {
  for (const auto& t : topics)
    if (t.empty() || t.size() > proto::max_topic_length) return false;
  return true;
}

}  // namespace

// A declared endpoint: its parameters were read (a bad one is a 400), then the handshake of
// its transport runs with the endpoint's topics.
void http_session::endpoint_route(request req, std::string_view path, std::string_view query,
                                  endpoint_match& ep) {
  // A plain HTTP request to a WebSocket endpoint's path is the application's when it serves
  // HTTP (a FastAPI route such as /api/ws/health under /api/ws/{telescope_id}); else 426.
  if (!ep.ep->cfg.sse && !beast::websocket::is_upgrade(req) && ctx_.hooks().on_http) {
    auto& m = ctx_.get_metrics();
    m.add(m.local().http_requests);
    return to_application(req);
  }
  if (ep.error || !topics_fit(ep.topics)) {
    auto& m = ctx_.get_metrics();
    m.add(m.local().handshakes_rejected);
    return send_error(http::status::bad_request, "bad_param",
                      ep.error ? ep.error : "a topic made from the path is too long", false);
  }
  if (ep.ep->cfg.sse) return sse(std::move(req), path, query, &ep);
  upgrade(std::move(req), path, query, &ep);
}

void http_session::upgrade(request req, std::string_view path, std::string_view query,
                           endpoint_match* ep) {
  auto& m = ctx_.get_metrics();
  auto reject = [&](http::status status, std::string_view code, std::string_view msg) {
    m.add(m.local().handshakes_rejected);
    log_refusal(req, static_cast<unsigned>(status), code, msg);
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
  std::vector<std::string> topics;
  const std::size_t base = ctx_.config().json_ws_path.size();
  if (ep) {
    topics = ep->topics;
  } else if (path.size() > base + 1) {
    auto decoded = url_decode(path.substr(base + 1));
    if (!decoded || decoded->empty() || decoded->size() > proto::max_topic_length)
      return reject(http::status::bad_request, "bad_topic", "invalid topic in the path");
    topics.push_back(std::move(*decoded));
  }
  auth::identity_ptr identity;
  if (!check_token(req, query, identity)) return;
  if (!check_client_topics(req, identity, topics)) return;
  if (!check_access(req, identity, topics)) return;

  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " + http_detail::websocket_accept_key(key) + "\r\n\r\n";
  // A declared endpoint compresses by its own flag, /ws by the transport's.
  const bool deflate = http_detail::accept_deflate(
      req, ep ? ep->ep->cfg.compress : ctx_.config().compress_json_ws, response);
  header_pairs headers = header_list(req);
  std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());

  // A /ws/<topic> session subscribes as it opens: like an SSE stream, it opens once the
  // broker has warmed its topic (a cluster broker follows it first, so nothing published
  // meanwhile falls between the join and the node's subscription). The memory broker answers
  // inline, and the session opens right here as before.
  struct pending {
    net::stream socket;
    std::string response, leftover;
    std::vector<std::string> topics;
    std::string path, query;
    std::shared_ptr<void> slot;
    auth::identity_ptr identity;
    header_pairs headers;
    const endpoint* ep;
    path_params params;
    bool deflate;
    std::string remote;
    std::string_view scheme;  // a literal (client_scheme)
  };
  std::vector<channel> rooms;
  for (const auto& t : topics) rooms.push_back({"/", t});
  const auto scheme = client_scheme(req);  // before the stream is handed off
  auto p = std::make_shared<pending>(pending{
      hand_off(), std::move(response), std::move(leftover), std::move(topics), std::string(path),
      std::string(query), std::move(slot_), std::move(identity), std::move(headers),
      ep ? ep->ep : nullptr, ep ? std::move(ep->params) : path_params{}, deflate,
      session_remote(), scheme});
  auto open = [&ctx = ctx_, p] {
    // An envelope's connections share its encoder: each publication is encoded once for all.
    const encoder_id encoder = p->ep && p->ep->env ? p->ep->encoder : ctx.encoders().json_ws;
    auto session = std::make_shared<ws_session>(
        std::move(p->socket), ctx, new_sid(), std::move(p->response), std::move(p->leftover),
        encoder,
        std::make_unique<json_ws_handler>(ctx, std::move(p->topics), p->ep,
                                          std::move(p->params)));
    session->hold(std::move(p->slot));
    session->set_identity(std::move(p->identity));
    session->set_remote(std::move(p->remote));
    if (p->deflate) session->enable_deflate();
    session->start(p->path, p->query, std::move(p->headers), p->scheme);
  };
  const auto& warm = ctx_.get_publisher().warm;
  if (!warm || rooms.empty()) return open();
  const auto caller = std::this_thread::get_id();
  auto ex = p->socket.get_executor();
  // Warmed or not (a timeout, Redis down), the session opens; a room the broker could not
  // load yet is loaded when it follows it, and its members then get an explicit reset.
  warm(rooms, [open, caller, ex](bool) {
    if (std::this_thread::get_id() == caller) open();
    else asio::post(ex, open);
  });
}

// Server-Sent Events: GET /sse/<topic> and/or ?topics=a,b (each percent-decoded); resumes
// after the Last-Event-ID header or the last_event_id query parameter.
// A declared SSE endpoint's topics are its templates' alone (no ?topics=).
void http_session::sse(request req, std::string_view path, std::string_view query,
                       endpoint_match* ep) {
  auto& m = ctx_.get_metrics();
  auto reject = [&](http::status status, std::string_view code, std::string_view msg) {
    m.add(m.local().handshakes_rejected);
    log_refusal(req, static_cast<unsigned>(status), code, msg);
    send_error(status, code, msg, false);
  };
  if (req.method() != http::verb::get)
    return reject(http::status::method_not_allowed, "method_not_allowed",
                  "an event stream is opened with GET");
  if (!origin_allowed(req))
    return reject(http::status::forbidden, "origin_not_allowed",
                  "this origin may not open an event stream here");
  std::vector<std::string> topics;
  if (ep) topics = ep->topics;
  else if (const char* bad = sse_topics(path, ctx_.config().sse_path.size(), query, topics))
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
           std::move(identity), ep);
}

// Hands the connection to a new SSE stream, once the broker has warmed its topics.
void http_session::open_sse(const request& req, std::string_view path, std::string_view query,
                            std::string head, std::vector<std::string> topics,
                            std::string last_id, auth::identity_ptr identity,
                            endpoint_match* ep) {
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
    const endpoint* ep;
    path_params params;
    std::string remote;
    std::string_view scheme;  // a literal (client_scheme)
  };
  const auto scheme = client_scheme(req);  // before the stream is handed off
  auto p = std::make_shared<pending>(pending{hand_off(), std::move(head), std::move(last_id),
                                             std::string(path), std::string(query),
                                             std::move(topics), std::move(slot_),
                                             std::move(identity), header_list(req),
                                             ep ? ep->ep : nullptr,
                                             ep ? std::move(ep->params) : path_params{},
                                             session_remote(), scheme});
  auto open = [&ctx = ctx_, p] {
    auto session = std::make_shared<sse_session>(std::move(p->socket), ctx, new_sid(),
                                                 std::move(p->head), std::move(p->topics),
                                                 std::move(p->last_id), p->ep,
                                                 std::move(p->params));
    session->hold(std::move(p->slot));
    session->set_identity(std::move(p->identity));
    session->set_remote(std::move(p->remote));
    session->start(p->path, p->query, std::move(p->headers), p->scheme);
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

}  // namespace skyrelay
