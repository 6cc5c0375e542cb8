// permessage-deflate in a WebSocket handshake (http_detail::accept_deflate): the offers of
// every Sec-WebSocket-Extensions field, the server's answer in the 101 response.
#include "http_session_impl.hpp"
#include "skyrelay/proto/permessage_deflate.hpp"

namespace skyrelay::http_detail {

bool accept_deflate(const http::request<http::string_body>& req, bool on, std::string& response) {
  if (!on) return false;
  // Several fields of one name are one comma-separated list (RFC 7230 3.2.2), in order.
  std::string offers;
  for (auto [it, end] = req.equal_range(http::field::sec_websocket_extensions); it != end; ++it) {
    if (!offers.empty()) offers += ", ";
    offers += it->value();
  }
  if (offers.empty()) return false;
  auto agreement = ws::negotiate_deflate(offers);
  if (!agreement) return false;
  // The head ends with its blank line: the field goes in front of it.
  response.insert(response.size() - 2, "Sec-WebSocket-Extensions: " + agreement->response + "\r\n");
  return true;
}

}  // namespace skyrelay::http_detail
