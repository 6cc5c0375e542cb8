#include "skyrelay/broker/redis_url.hpp"

#include <charconv>
#include <climits>

namespace skyrelay::redis {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = char(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes; false on a truncated or non-hex escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += char(hi * 16 + lo);
    i += 2;
  }
  return true;
}

template <class Int>
bool parse_decimal(std::string_view s, Int& value) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  return ec == std::errc() && p == s.data() + s.size();
}

std::optional<redis_url> fail(std::string& error, std::string message) {
  error = "bad Redis URL: " + std::move(message);
  return std::nullopt;
}

// Splits `host[:port]` or `[v6][:port]` into `url`.
bool parse_host_port(std::string_view hp, redis_url& url, std::string& why) {
  std::string_view host = hp, port;
  if (!hp.empty() && hp.front() == '[') {
    auto close = hp.find(']');
    if (close == std::string_view::npos) return why = "an IPv6 address needs a closing ']'", false;
    host = hp.substr(1, close - 1);
    auto rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return why = "unexpected text after the IPv6 address", false;
      port = rest.substr(1);
      if (port.empty()) return why = "an empty port", false;
    }
  } else {
    auto colon = hp.rfind(':');
    if (colon != std::string_view::npos) {
      host = hp.substr(0, colon);
      port = hp.substr(colon + 1);
      if (port.empty()) return why = "an empty port", false;
      if (host.find(':') != std::string_view::npos)
        return why = "an IPv6 address must be in brackets: redis://[::1]:6379", false;
    }
  }
  if (host.empty()) return why = "no host: redis://HOST[:PORT][/DB]", false;
  for (char c : host)
    if (c == '@' || c == '/' || c == '[' || c == ']' || c == '%')
      return why = "a character not allowed in a host", false;
  url.host = std::string(host);
  if (!port.empty()) {
    unsigned value = 0;
    if (!parse_decimal(port, value) || value == 0 || value > 65535)
      return why = "the port must be a number from 1 to 65535", false;
    url.port = static_cast<std::uint16_t>(value);
  }
  return true;
}

bool parse_userinfo(std::string_view info, redis_url& url, std::string& why) {
  auto colon = info.find(':');
  if (colon == std::string_view::npos)
    return why = "a user needs a password (redis://USER:PASSWORD@HOST, or redis://:PASSWORD@HOST)",
           false;
  if (!percent_decode(info.substr(0, colon), url.user) ||
      !percent_decode(info.substr(colon + 1), url.password))
    return why = "bad percent-encoding in the user or password", false;
  if (url.password.empty()) return why = "an empty password", false;
  return true;
}

}  // namespace

std::optional<redis_url> parse_redis_url(std::string_view text, std::string& error) {
  error.clear();
  for (unsigned char c : text)
    if (c <= 0x20 || c == 0x7f) return fail(error, "spaces and control characters are not allowed");
  auto sep = text.find("://");
  if (sep == std::string_view::npos) return fail(error, "expected redis://HOST[:PORT][/DB]");
  auto scheme = text.substr(0, sep);
  if (iequals(scheme, "rediss")) return fail(error, "rediss:// (TLS) is not supported yet");
  if (iequals(scheme, "redis+sentinel")) return fail(error, "redis+sentinel:// is not supported yet");
  if (!iequals(scheme, "redis"))
    return fail(error, "the scheme must be redis://, not " + std::string(scheme) + "://");
  auto rest = text.substr(sep + 3);
  if (rest.find_first_of("?#") != std::string_view::npos)
    return fail(error, "query strings and fragments are not supported");

  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  redis_url url;
  std::string why;
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    if (!parse_userinfo(authority.substr(0, at), url, why)) return fail(error, why);
    authority = authority.substr(at + 1);
  }
  if (!parse_host_port(authority, url, why)) return fail(error, why);
  if (slash != std::string_view::npos) {
    auto path = rest.substr(slash + 1);
    if (!path.empty()) {
      int db = 0;
      if (!parse_decimal(path, db) || db < 0)
        return fail(error, "the path must be a database number from 0 to 2147483647: /DB");
      url.db = db;
    }
  }
  return url;
}

}  // namespace skyrelay::redis
