// http_session's client behind a trusted reverse proxy (server_config::trusted_proxies): each
// request's client is read from the proxy's header (net/client_address.hpp) and admitted by
// its address, so per-IP limits, conn.remote and REMOTE_ADDR are the client's, not the proxy's.
#include "http_session_impl.hpp"
#include "skyrelay/net/listener.hpp"

namespace skyrelay {

namespace {
// Each line of a header field, in order.
std::vector<std::string_view> field_lines(const http::request<http::string_body>& req,
                                          std::string_view name) {
  std::vector<std::string_view> lines;
  for (auto [it, end] = req.equal_range(name); it != end; ++it) lines.push_back(it->value());
  return lines;
}
}  // namespace

bool http_session::attribute(const request& req) {
  if (!proxy_peer_) return true;  // a direct client: the peer, admitted at accept
  const auto& proxies = *ctx_.config().trusted_proxies;
  const auto lines =
      field_lines(req, proxies.header() == proxy_header::forwarded ? "Forwarded" : "X-Forwarded-For");
  client_address client;
  const auto status = resolve_client(*proxy_peer_, lines, proxies, client);
  if (status == forwarded_status::forwarded) {
    client_ip_ = client.ip.to_string();
    client_remote_ = client.remote();
  } else {
    if (status != forwarded_status::peer) {
      auto& m = ctx_.get_metrics();
      m.add(m.local().forwarded_invalid);
    }
    client_ip_ = peer_ip_;
    client_remote_ = peer_remote_;
  }
  // A kept-alive proxy connection carries one client after another: the connection's slot
  // counts the current one (a new client costs a token of its new-connection rate, as a new
  // connection of its own would).
  if (!slot_ip_.empty() && slot_ip_ == client_ip_) return true;
  slot_.reset();  // first, so that the connection is not counted twice against max_connections
  connection_refusal why = connection_refusal::none;
  slot_ = ctx_.get_admission().admit(client_ip_, why);
  if (!slot_) {
    slot_ip_.clear();
    refuse_client(why);
    return false;
  }
  slot_ip_ = client_ip_;
  return true;
}

// Read only where it is used (the WSGI app's request, a handshake the application is shown),
// not for every request from a proxy.
std::string_view http_session::client_scheme(const request& req) const {
  if (proxy_peer_) {
    const auto& proxies = *ctx_.config().trusted_proxies;
    const auto kind = proxies.header();
    const auto said = forwarded_scheme(
        kind, field_lines(req, kind == proxy_header::forwarded ? "Forwarded" : "X-Forwarded-Proto"));
    if (!said.empty()) return said;
  }
  return stream_.is_tls() ? "https" : "http";
}

// The answer refuse_connection gives at accept (503, the same JSON, Retry-After), for a client
// refused once its proxy's header named it; the connection then ends.
void http_session::refuse_client(connection_refusal why) {
  count_refusal(ctx_, why, [this] { return client_remote_; });
  http::response<http::string_body> res{http::status::service_unavailable, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::retry_after, "1");
  res.keep_alive(false);
  res.body() = refusal_body(why);
  res.prepare_payload();
  write(std::move(res), false);
}

}  // namespace skyrelay
