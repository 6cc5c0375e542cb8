// libFuzzer target: the header a trusted proxy sends (X-Forwarded-For or Forwarded, by the first
// byte), split into field lines at '\n', and the same bytes as trusted_proxies specs. Every
// input must get a status, never a crash or a sanitizer report; a client read from the header
// must print as an address that parses back to itself, and any other status must leave the
// peer as the client.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "skyrelay/net/client_address.hpp"

using namespace skyrelay;

namespace {

std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    auto end = s.find('\n', start);
    out.push_back(s.substr(start, end == std::string_view::npos ? s.size() - start : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

const proxy_set& proxies(proxy_header header) {
  static const auto make = [](proxy_header h) {
    return std::get<proxy_set>(proxy_set::parse({"127.0.0.1", "10.0.0.0/8", "fd00::/8"}, h));
  };
  static const proxy_set xff = make(proxy_header::x_forwarded_for);
  static const proxy_set rfc = make(proxy_header::forwarded);
  return header == proxy_header::forwarded ? rfc : xff;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto header = data[0] & 1 ? proxy_header::forwarded : proxy_header::x_forwarded_for;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto lines = split_lines(text);

  const client_address peer{*ip_address::parse("127.0.0.1"), 1};
  client_address client;
  const auto status = resolve_client(peer, lines, proxies(header), client);
  if (status == forwarded_status::forwarded) {
    const auto again = ip_address::parse(client.ip.to_string());
    if (!again || !(*again == client.ip) || client.remote().empty()) std::abort();
  } else if (!(client.ip == peer.ip) || client.port != peer.port) {
    std::abort();
  }

  // The scheme a proxy states is one of two words or nothing.
  const auto scheme = forwarded_scheme(header, lines);
  if (!scheme.empty() && scheme != "http" && scheme != "https") std::abort();

  std::vector<std::string> specs(lines.begin(), lines.end());
  auto parsed = proxy_set::parse(specs, header);
  if (auto* set = std::get_if<proxy_set>(&parsed)) {
    if (set->size() < specs.size()) std::abort();  // each spec is at least one network
  } else if (std::get<std::string>(parsed).empty()) {
    std::abort();
  }
  return 0;
}
