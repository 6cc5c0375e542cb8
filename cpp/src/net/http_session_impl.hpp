// The class behind start_http_session (private to cpp/src/net): one HTTP/1.1 connection, split
// by route over several files, all members of one class:
//
//   http_session.cpp          reading requests, routing them, writing responses, deadlines
//   http_session_upgrade.cpp  /ws, /sse and declared endpoints' handshakes
//   http_session_checks.cpp   the checks every handshake shares (token, client topics, roles,
//                             Origin and CORS)
//   http_session_eio.cpp      Engine.IO (/socket.io/): handshake, long-polling, WebSocket
//   http_session_publish.cpp  POST /api/publish
//   http_session_app.cpp      requests handed to the application (WSGI) and its answers
//   http_session_static.cpp   /health, /metrics, the browser client and the static directory
//   http_session_forward.cpp  a request for another worker's Engine.IO session, handed to it
//   http_session_client.cpp   the client behind a trusted proxy, admitted per request
//
// Threads: every member runs on the connection's executor (one io_context, one thread; the
// asserts say so in debug builds). The session lives by shared_from_this: each pending
// operation holds it. It ends when a response is written with keep-alive off, when the peer
// goes, or when the socket is handed to a ws_session or an eio_session (an upgrade), after
// which the stream is moved out and the session only finishes the handler it is in.
#pragma once

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cassert>
#include <exception>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/net/client_address.hpp"
#include "skyrelay/net/endpoint_table.hpp"
#include "skyrelay/net/metrics.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/net/stream.hpp"
#include "skyrelay/proto/engineio.hpp"

namespace skyrelay {

namespace beast = boost::beast;
namespace http = beast::http;

namespace http_detail {

// {"error":<code>,"message":<message>}
std::string error_body(std::string_view code, std::string_view message);

// The raw (still percent-encoded) value of `key` in a query string, or nullopt.
std::optional<std::string_view> raw_query_param(std::string_view query, std::string_view key);

// The value of `key` in a query string (percent-decoded), or nullopt.
std::optional<std::string> query_param(std::string_view query, std::string_view key);

// Whether `path` is `base` or below it (`base`/...); never for an empty base (a route that is
// off).
bool under(std::string_view path, std::string_view base);

// The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key (RFC 6455 4.2.2).
std::string websocket_accept_key(std::string_view key);

// Sec-WebSocket-Key must be the base64 form of 16 bytes (RFC 6455 4.2.1).
bool valid_client_key(std::string_view key);

// permessage-deflate for a WebSocket handshake whose endpoint has compression `on`: true when
// one of the client's offers (every Sec-WebSocket-Extensions field, in order) is accepted,
// with the Sec-WebSocket-Extensions line added to the 101 `response` (a complete head, its
// blank line last); the session then needs ws_session::enable_deflate. False (nothing added)
// when off, when nothing is offered, or when no offer can be honoured.
bool accept_deflate(const http::request<http::string_body>& req, bool on, std::string& response);

}  // namespace http_detail

struct pending_batch;  // http_session_publish.cpp: a publish request's events in flight

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  // `slot` is the connection's admission (admission::admit): never null.
  http_session(tcp::socket socket, session_context& ctx, std::shared_ptr<void> slot);

  // Bytes already read from the socket (by another worker, net/worker_handoff.hpp): the
  // first request is parsed from them. Before run(); plain TCP only.
  void take_received(std::string_view bytes);
  // Starts the TLS handshake, if any, then reads the first request. Call once, on the
  // socket's executor.
  void run();

 private:
  using request = http::request<http::string_body>;
  using header_pairs = std::vector<std::pair<std::string, std::string>>;
  using cors_list = std::vector<std::pair<http::field, std::string>>;

  // Where the connection is. Only the transitions below happen (the asserts check them):
  //   handshaking -> reading            (TLS done; plain TCP starts reading)
  //   reading     -> routing            (a request was read)
  //   routing     -> writing | parked | handed_off
  //   parked      -> writing            (the application or a poll answered)
  //   writing     -> idle               (keep-alive) and idle -> reading
  //   any         -> closed
  enum class state { handshaking, reading, routing, writing, idle, parked, handed_off, closed };

  // http_session.cpp: the connection.
  void do_read();
  // After the head, when a body follows: "100 Continue" first if the client waits for it.
  void read_body();
  void await_request();
  void on_read(beast::error_code ec);
  void route(request req);
  void send_json(const request& req, http::status status, std::string body);
  void send_error(http::status status, std::string_view code, std::string_view message,
                  bool keep_alive);
  void close();
  void expires_after(std::chrono::milliseconds limit,
                     limit_kind kind = limit_kind::handshake_timeout);
  void expires_never();
  // Moves the stream out for a session that takes the connection over (an upgrade).
  net::stream hand_off();
  void set_state(state next);
  bool on_own_executor();
  static header_pairs header_list(const request& req);

  // http_session_client.cpp: who the request is from. Behind a trusted proxy, the client its
  // header names (net/client_address.hpp) is admitted by address when it differs from the
  // previous request's, its slot replacing the connection's; false when it is refused (the
  // 503 is written and the connection ends).
  bool attribute(const request& req);
  void refuse_client(connection_refusal why);
  // The scheme the request's client used ("http", "https"; a literal): what a trusted proxy
  // says (X-Forwarded-Proto, or Forwarded's proto=), else this connection's own.
  std::string_view client_scheme(const request& req) const;

  // http_session_upgrade.cpp: /ws, /sse and the application's endpoints (`ep`: the match,
  // whose topics the connection joins), and the checks of every handshake.
  void endpoint_route(request req, std::string_view path, std::string_view query,
                      endpoint_match& ep);
  void upgrade(request req, std::string_view path, std::string_view query,
               endpoint_match* ep = nullptr);
  void sse(request req, std::string_view path, std::string_view query,
           endpoint_match* ep = nullptr);
  void open_sse(const request& req, std::string_view path, std::string_view query,
                std::string head, std::vector<std::string> topics, std::string last_id,
                auth::identity_ptr identity, endpoint_match* ep);
  bool check_token(const request& req, std::string_view query, auth::identity_ptr& id);
  bool check_client_topics(const request& req, const auth::identity_ptr& id,
                           const std::vector<std::string>& topics);
  bool check_access(const request& req, const auth::identity_ptr& id,
                    const std::vector<std::string>& rooms);
  void forbidden(const request& req, const std::string& message);
  void unauthorized(const request& req, const auth::auth_refusal& f, bool keep);
  bool origin_allowed(const request& req) const;
  cors_list cors_headers(const request& req) const;

  // http_session_eio.cpp: Engine.IO v4.
  void engineio(request req, std::string_view query, bool echo = false);
  void engineio_websocket(const request& req, std::string_view query, bool echo,
                          const std::optional<std::string>& sid, const cors_list& cors);
  void engineio_polling(const request& req, std::string_view query, bool echo,
                        const std::optional<std::string>& sid, const cors_list& cors);
  void eio_error(const request& req, const cors_list& cors, eio::error_code code,
                 http::status status = http::status::bad_request);
  void eio_preflight(const request& req, const cors_list& cors);
  void polling_answer(unsigned version, bool keep, const cors_list& cors, unsigned status,
                      std::string body);
  void count_polling_answer(unsigned status, const std::string& body);  // on /metrics
  void refuse_session(const request& req, connection_refusal why, const cors_list& cors);
  // A new Engine.IO sid (with this worker's index when there are several: worker_handoff).
  std::string new_eio_sid() const;
  // http_session_forward.cpp: a request for another worker's session goes to that worker.
  void forward(const request& req, int owner, const cors_list& cors);
  void try_forward(std::shared_ptr<std::string> bytes, int owner, int attempts_left,
                   std::shared_ptr<request> req, cors_list cors);
  header_pairs session_headers(const request& req) const;

  // http_session_publish.cpp: POST /api/publish.
  void publish_api(const request& req);
  std::optional<std::string> publisher_of(const request& req, bool keep);
  void publish_events(const request& req, const std::string& publisher);
  template <class Step>
  void resume(Step step);
  void publish_take_budget(std::shared_ptr<pending_batch> b);
  void publish_reserve_key(std::shared_ptr<pending_batch> b);
  void publish_keyed(std::shared_ptr<pending_batch> b, std::exception_ptr error,
                     idempotency_store::result& r);
  void publish_batch(std::shared_ptr<pending_batch> b);
  void publish_answer(pending_batch& b);
  void publish_ok(unsigned version, bool keep, std::string body);
  void publish_refused(const pending_batch& b, http::status status, std::string_view code,
                       std::string_view message);
  void publish_rate_limited(const pending_batch& b, double retry_after);

  // http_session_app.cpp: the application (WSGI).
  void to_application(const request& req);
  void app_answer(bool keep, unsigned version, bool head, unsigned status, header_pairs headers,
                  std::string body);

  // http_session_static.cpp: /health, /metrics and files.
  void serve_static(const request& req, std::string_view path);
  // A handshake or request refused (skyrelay.core.auth for tokens, roles and origins, else
  // skyrelay.core.connection), built only when that logger logs info; http_session_checks.cpp.
  void log_refusal(const request& req, unsigned status, std::string_view code,
                   std::string_view message);
  // `status` other than 200: a probe that fails (503, /health/ready and /health/live).
  void send_text(const request& req, std::string_view type, std::string body,
                 http::status status = http::status::ok);

  // Every response of this connection goes out here: built-in ones and the WSGI app's.
  template <class Body>
  void write(http::response<Body> res, bool keep_alive);
  // What a WebSocket or SSE session keeps as its client (push_session::set_remote): only an
  // address a trusted proxy named; the TCP peer it finds on its socket when asked, so an idle
  // connection keeps no copy of it.
  std::string session_remote() const {
    return client_remote_ == peer_remote_ ? std::string() : client_remote_;
  }

  net::stream stream_;
  asio::steady_timer deadline_;
  std::uint64_t deadline_generation_{0};
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  session_context& ctx_;
  std::shared_ptr<void> slot_;  // the connection's admission, passed on when it upgrades
  // The client of the current request: the TCP peer, or behind a trusted proxy the address
  // its header names. client_ip_ is what admission counts, client_remote_ ("ip:port") what
  // the application sees (conn.remote, REMOTE_ADDR).
  std::string client_ip_;
  std::string client_remote_;
  // The peer, when it is a trusted proxy (else null), and whose address slot_ counts
  // (empty: the connection's unattributed slot, admission::admit_unattributed).
  std::optional<client_address> proxy_peer_;
  std::string peer_ip_, peer_remote_;
  std::string slot_ip_;
  state state_{state::handshaking};
  // The request being answered is a HEAD: write() sends the head a GET would get, no body.
  bool head_{false};
};

template <class Body>
void http_session::write(http::response<Body> res, bool keep_alive) {
  static constexpr std::string_view nosniff_field = "X-Content-Type-Options";
  assert(on_own_executor());
  set_state(state::writing);
  auto sp = std::make_shared<http::response<Body>>(std::move(res));
  if (!keep_alive) sp->keep_alive(false);
  // Browsers must take Content-Type as given: an upload or a JSON error never runs as script.
  if (sp->find(nosniff_field) == sp->end()) sp->set(nosniff_field, "nosniff");
  // An answer to HEAD carries no body, whichever route wrote it (RFC 9110, 9.3.2): its
  // Content-Length stays what a GET would get, and a body here (an error's JSON) would be
  // read by the client as the start of its next answer.
  if constexpr (std::is_same_v<Body, http::string_body>)
    if (head_) sp->body().clear();
  expires_after(ctx_.config().handshake_timeout);
  http::async_write(stream_, *sp,
                    [self = shared_from_this(), sp, keep_alive](beast::error_code ec,
                                                                std::size_t) {
                      if (ec || !keep_alive) return self->close();
                      self->head_ = false;  // the next request says for itself
                      self->set_state(state::idle);
                      self->await_request();
                    });
}

}  // namespace skyrelay
