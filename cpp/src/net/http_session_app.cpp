// http_session's bridge to the application (a WSGI app, through app_hooks::on_http): a request
// no built-in route serves is parked (app_parking, the context's parking()), handed to the
// dispatcher, and answered when the application replies (server::http_reply), from any thread.
#include "http_session_impl.hpp"
#include "skyrelay/proto/http_fields.hpp"

namespace skyrelay {

using http_detail::error_body;

namespace {

// A final status Beast can write (three digits) and header fields that cannot split the
// response.
bool valid_app_response(unsigned status,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  if (status < 200 || status > 999) return false;  // a 1xx is never a final answer
  for (const auto& [k, v] : headers)
    if (!proto::valid_field_name(k) || !proto::valid_field_value(v)) return false;
  return true;
}

}  // namespace

// Hands the request to the application (a WSGI app) and answers when it replies.
void http_session::to_application(const request& req) {
  const bool keep = req.keep_alive();
  const unsigned version = req.version();
  const bool head = req.method() == http::verb::head;
  expires_never();  // the application decides how long it takes
  set_state(state::parked);
  auto id = ctx_.parking().park([self = shared_from_this(), keep, version, head](
                                    unsigned status, header_pairs headers, std::string body) {
    asio::post(self->stream_.get_executor(), [self, keep, version, head, status,
                                              headers = std::move(headers),
                                              body = std::move(body)]() mutable {
      self->app_answer(keep, version, head, status, std::move(headers), std::move(body));
    });
  });
  http_request_info info{id,
                         std::string(req.method_string()),
                         std::string(req.target()),
                         client_remote_,
                         header_list(req),
                         req.body(),
                         std::string(client_scheme(req))};
  const app_hooks* hooks = &ctx_.hooks();
  if (!ctx_.get_dispatcher().post([hooks, info = std::move(info)] { hooks->on_http(info); }))
    ctx_.parking().reply(id, 503, {{"Content-Type", "application/json"}},
                         error_body("overloaded", "the server is busy"));
}

// Writes the application's answer, on the connection's executor.
void http_session::app_answer(bool keep, unsigned version, bool head, unsigned status,
                              header_pairs headers, std::string body) {
  assert(state_ == state::parked);
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
  write(std::move(res), keep);
}

}  // namespace skyrelay
