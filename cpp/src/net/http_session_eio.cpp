// http_session's Engine.IO v4 route (Socket.IO's transport, and the echo endpoint of the
// protocol tests): the handshake, long-polling GET and POST (answered later, from any thread,
// through polling_answer), the WebSocket transport and the upgrade of a polling session to it.
#include <algorithm>

#include <boost/beast/websocket/rfc6455.hpp>

#include "http_session_impl.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/net/eio_session.hpp"
#include "skyrelay/net/sio_server.hpp"
#include "skyrelay/net/worker_handoff.hpp"
#include "skyrelay/net/ws_session.hpp"

namespace skyrelay {

using http_detail::error_body;
using http_detail::query_param;

namespace {

// The sid of an open packet body "0{"sid":"...",...}".
std::string open_packet_sid(const std::string& body) {
  auto start = body.find("\"sid\":\"");
  if (start == std::string::npos) return {};
  start += 7;
  return body.substr(start, body.find('"', start) - start);
}

}  // namespace

// Engine.IO v4 (Socket.IO's transport): handshake, polling GET/POST, WebSocket and upgrade.
void http_session::engineio(request req, std::string_view query, bool echo) {
  const auto cors = cors_headers(req);
  if (!origin_allowed(req))
    return eio_error(req, cors, eio::error_code::forbidden, http::status::forbidden);
  if (req.method() == http::verb::options) return eio_preflight(req, cors);
  auto eio_version = query_param(query, "EIO");
  if (!eio_version || *eio_version != "4")
    return eio_error(req, cors, eio::error_code::unsupported_protocol_version);
  auto transport = query_param(query, "transport");
  if (!transport || (*transport != "polling" && *transport != "websocket"))
    return eio_error(req, cors, eio::error_code::unknown_transport);
  auto sid = query_param(query, "sid");
  if (auto* workers = ctx_.workers(); sid && workers) {
    // Another worker's session (several processes on one port): that worker answers.
    const int owner = workers->owner_of(*sid);
    if (owner >= 0 && owner != workers->index()) return forward(req, owner, cors);
  }
  if (beast::websocket::is_upgrade(req)) {
    if (*transport != "websocket") return eio_error(req, cors, eio::error_code::bad_request);
    return engineio_websocket(req, query, echo, sid, cors);
  }
  if (*transport != "polling") return eio_error(req, cors, eio::error_code::bad_request);
  engineio_polling(req, query, echo, sid, cors);
}

// An Engine.IO error answer ({"code":...,"message":...}); the connection stays open.
void http_session::eio_error(const request& req, const cors_list& cors, eio::error_code code,
                             http::status status) {
  auto& m = ctx_.get_metrics();
  const bool keep = req.keep_alive();
  m.add(m.local().handshakes_rejected);
  http::response<http::string_body> res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  for (const auto& [k, v] : cors) res.set(k, v);
  res.keep_alive(keep);
  res.body() = eio::error_body(code);
  res.prepare_payload();
  write(std::move(res), keep);
}

// CORS preflight (browsers send one when the client sets extra headers).
void http_session::eio_preflight(const request& req, const cors_list& cors) {
  const bool keep = req.keep_alive();
  http::response<http::empty_body> res{http::status::no_content, req.version()};
  for (const auto& [k, v] : cors) res.set(k, v);
  res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
  if (auto h = req[http::field::access_control_request_headers]; !h.empty())
    res.set(http::field::access_control_allow_headers, h);
  res.keep_alive(keep);
  write(std::move(res), keep);
}

// The WebSocket transport: a new session opened over WebSocket, or the probe of a polling
// session (`sid`) that upgrades.
void http_session::engineio_websocket(const request& req, std::string_view query, bool echo,
                                      const std::optional<std::string>& sid,
                                      const cors_list& cors) {
  std::string_view key = req[http::field::sec_websocket_key];
  if (req[http::field::sec_websocket_version] != "13" || !http_detail::valid_client_key(key))
    return eio_error(req, cors, eio::error_code::bad_request);
  std::shared_ptr<eio_session> session;
  if (sid) {
    // A probe that upgrades a polling session: refused when upgrades are off, as the open
    // packet offered none (a client that asks anyway is not following the handshake).
    if (!ctx_.config().eio_allow_upgrades)
      return eio_error(req, cors, eio::error_code::bad_request);
    session = ctx_.sio().find_eio(*sid);
    if (!session) return eio_error(req, cors, eio::error_code::unknown_sid);
  }
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " + http_detail::websocket_accept_key(key) + "\r\n\r\n";
  const bool deflate =
      http_detail::accept_deflate(req, ctx_.config().compress_socketio, response);
  std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  const std::string_view scheme = client_scheme(req);  // before the stream is handed off
  net::stream socket = hand_off();
  auto& ioc = static_cast<asio::io_context&>(socket.get_executor().context());
  const std::string remote = client_remote_;
  auto ws = std::make_shared<ws_session>(std::move(socket), ctx_, new_transport_id(),
                                         std::move(response), std::move(leftover),
                                         ctx_.encoders().json_ws);
  ws->hold(std::move(slot_));
  if (deflate) ws->enable_deflate();
  if (session) {
    ws->start_with(session, "");
    session->attach_probe(ws);
    return;
  }
  // A session opened over WebSocket is counted by its connection's slot (held by `ws`).
  session = std::make_shared<eio_session>(ctx_, ioc, new_eio_sid(),
                                          eio_session::transport::websocket, remote, scheme,
                                          session_headers(req), std::string(query), echo);
  ctx_.sio().register_eio(session);
  session->attach_websocket(ws);
  ws->start_with(session, session->open_packet());
  session->start();
}

// Long-polling: the handshake (no sid) opens a session; a GET waits for its packets, a POST
// brings the client's. The answer comes through polling_answer.
void http_session::engineio_polling(const request& req, std::string_view query, bool echo,
                                    const std::optional<std::string>& sid,
                                    const cors_list& cors) {
  auto reply = [self = shared_from_this(), version = req.version(), keep = req.keep_alive(),
                cors](unsigned status, std::string body) {
    // Answers may come from another thread (a parked poll released by a publisher).
    asio::post(self->stream_.get_executor(), [self, version, keep, status, cors,
                                              body = std::move(body)]() mutable {
      self->polling_answer(version, keep, cors, status, std::move(body));
    });
  };
  if (!sid) {
    if (req.method() != http::verb::get)
      return eio_error(req, cors, eio::error_code::bad_handshake_method);
    // The session outlives this request (and this connection): it takes its own admission
    // slot, which it gives back when it ends.
    connection_refusal why = connection_refusal::none;
    auto slot = ctx_.get_admission().admit(client_ip_, why, true);
    if (!slot) return refuse_session(req, why, cors);
    auto& ioc = static_cast<asio::io_context&>(stream_.socket().get_executor().context());
    auto session = std::make_shared<eio_session>(ctx_, ioc, new_eio_sid(),
                                                 eio_session::transport::polling,
                                                 client_remote_, client_scheme(req),
                                                 session_headers(req), std::string(query), echo);
    session->hold(std::move(slot));
    ctx_.sio().register_eio(session);
    session->start();
    set_state(state::parked);
    return reply(200, session->open_packet());
  }
  auto session = ctx_.sio().find_eio(*sid);
  if (!session) return eio_error(req, cors, eio::error_code::unknown_sid);
  if (req.method() == http::verb::get) {
    expires_never();  // a poll may wait up to a ping interval
    set_state(state::parked);
    return session->poll(std::move(reply));
  }
  if (req.method() == http::verb::post) {
    set_state(state::parked);
    return session->post(req.body(), std::move(reply));
  }
  return eio_error(req, cors, eio::error_code::bad_request);
}

// Writes the answer of a polling request, on the connection's executor.
void http_session::polling_answer(unsigned version, bool keep, const cors_list& cors,
                                  unsigned status, std::string body) {
  assert(state_ == state::parked);
  count_polling_answer(status, body);
  http::response<http::string_body> res{static_cast<http::status>(status), version};
  res.set(http::field::content_type,
          status == 200 ? "text/plain; charset=UTF-8" : "application/json");
  for (const auto& [k, v] : cors) res.set(k, v);
  if (body.size() > 1 && body[0] == '0' && body[1] == '{' &&
      !ctx_.config().eio_cookie.empty()) {
    // The handshake: the sticky-session cookie carries the Engine.IO sid.
    auto sid = open_packet_sid(body);
    res.set(http::field::set_cookie,
            ctx_.config().eio_cookie + "=" + sid + "; Path=/; HttpOnly; SameSite=Lax");
  }
  res.keep_alive(keep);
  res.body() = std::move(body);
  res.prepare_payload();
  write(std::move(res), keep);
}

// A polling answer on /metrics: its body's bytes, and the Engine.IO packets a 200 carries
// (separated by \x1e, which JSON text and base64 never contain raw); a POST's "ok" is none.
void http_session::count_polling_answer(unsigned status, const std::string& body) {
  auto& m = ctx_.get_metrics();
  auto& traffic = m.local().of(transport_kind::polling);
  m.add(traffic.bytes_out, body.size());
  if (status != 200 || body.empty() || body == "ok") return;
  m.add(traffic.messages_out, 1 + static_cast<std::uint64_t>(std::count(body.begin(), body.end(), '\x1e')));
}

// An Engine.IO handshake over an admission limit (admission::admit): 503 for the connection
// limits, 429 for the new-session rate, with a JSON message; the connection stays open.
void http_session::refuse_session(const request& req, connection_refusal why,
                                  const cors_list& cors) {
  auto& m = ctx_.get_metrics();
  m.add(m.local().handshakes_rejected);
  const bool rate = why == connection_refusal::rate;
  log_event(ctx_.log(), log_source::limits, log_level::warning, "connection_refused", [&] {
    return std::vector<log_field>{
        {"remote", client_remote_},
        {"transport", std::string("socketio")},
        {"limit", std::string(rate ? "new_sessions_per_ip"
                              : why == connection_refusal::per_ip ? "sessions_per_ip"
                                                                  : "sessions_total")}};
  });
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

std::string http_session::new_eio_sid() const {
  return ctx_.workers() ? ctx_.workers()->new_sid() : new_sid();
}

// What an Engine.IO session keeps of its handshake's headers: all of them when the app's
// Socket.IO connect hook will be shown them, else only Authorization (a CONNECT's token may
// come from it). At most max_header_size bytes either way.
http_session::header_pairs http_session::session_headers(const request& req) const {
  if (ctx_.hooks().on_sio_connect) return header_list(req);
  header_pairs out;
  if (auto it = req.find(http::field::authorization); it != req.end())
    out.emplace_back(std::string(it->name_string()), std::string(it->value()));
  return out;
}

}  // namespace skyrelay
