#include "skyrelay/broker/redis_url.hpp"

#include <charconv>
#include <climits>
#include <map>

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

// `name=value&...` into `out`; values percent-decoded.
bool parse_query(std::string_view q, std::map<std::string, std::string>& out, std::string& why) {
  while (!q.empty()) {
    auto amp = q.find('&');
    auto pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    auto eq = pair.find('=');
    if (eq == 0 || eq == std::string_view::npos)
      return why = "the query must be name=value pairs joined by &", false;
    std::string name(pair.substr(0, eq)), value;
    if (!percent_decode(pair.substr(eq + 1), value))
      return why = "bad percent-encoding in the query", false;
    if (!out.emplace(name, std::move(value)).second)
      return why = "the query names " + name + " twice", false;
  }
  return true;
}

// Moves the TLS names of `query` into `tls`.
bool take_tls(std::map<std::string, std::string>& query, redis_tls& tls, std::string& why) {
  auto take = [&](const char* name, std::string& to) {
    auto it = query.find(name);
    if (it == query.end()) return true;
    if (!tls.enabled) return why = std::string(name) + "= needs TLS: rediss://", false;
    if (it->second.empty()) return why = std::string("an empty ") + name + "=", false;
    to = std::move(it->second);
    query.erase(it);
    return true;
  };
  std::string verify;
  if (!take("ca", tls.ca_file) || !take("cert", tls.cert_file) || !take("key", tls.key_file) ||
      !take("sni", tls.server_name) || !take("verify", verify))
    return false;
  if (tls.cert_file.empty() != tls.key_file.empty())
    return why = "cert= and key= go together (the client certificate and its key)", false;
  if (!verify.empty() && verify != "full" && verify != "none")
    return why = "verify= is full (the default) or none", false;
  tls.verify = verify != "none";
  return true;
}

bool parse_sentinels(std::string_view list, redis_url& url, std::string& why) {
  while (true) {
    auto comma = list.find(',');
    redis_url one;
    one.port = 26379;
    if (!parse_host_port(list.substr(0, comma), one, why)) return false;
    url.sentinels.push_back({one.host, one.port});
    if (comma == std::string_view::npos) return true;
    list = list.substr(comma + 1);
  }
}

}  // namespace

std::optional<redis_url> parse_redis_url(std::string_view text, std::string& error,
                                         std::map<std::string, std::string>* extra) {
  error.clear();
  for (unsigned char c : text)
    if (c <= 0x20 || c == 0x7f) return fail(error, "spaces and control characters are not allowed");
  auto sep = text.find("://");
  if (sep == std::string_view::npos) return fail(error, "expected redis://HOST[:PORT][/DB]");
  auto scheme = text.substr(0, sep);
  redis_url url;
  bool sentinel = iequals(scheme, "redis+sentinel");
  url.tls.enabled = iequals(scheme, "rediss");
  if (iequals(scheme, "rediss+sentinel"))
    return fail(error, "rediss+sentinel:// (TLS with Sentinel) is not supported");
  if (!sentinel && !url.tls.enabled && !iequals(scheme, "redis"))
    return fail(error, "the scheme must be redis://, rediss:// or redis+sentinel://, not " +
                           std::string(scheme) + "://");
  auto rest = text.substr(sep + 3);
  if (rest.find('#') != std::string_view::npos) return fail(error, "a fragment (#) is not allowed");
  std::map<std::string, std::string> query;
  std::string why;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    if (!parse_query(rest.substr(q + 1), query, why)) return fail(error, why);
    rest = rest.substr(0, q);
  }
  if (!take_tls(query, url.tls, why)) return fail(error, why);
  if (!query.empty() && !extra)
    return fail(error, "unknown query name " + query.begin()->first);

  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    if (!parse_userinfo(authority.substr(0, at), url, why)) return fail(error, why);
    authority = authority.substr(at + 1);
  }
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (sentinel) {
    if (!parse_sentinels(authority, url, why)) return fail(error, why);
    auto next = path.find('/');
    url.master_name = std::string(path.substr(0, next));
    if (url.master_name.empty())
      return fail(error, "no master name: redis+sentinel://HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]");
    path = next == std::string_view::npos ? "" : path.substr(next + 1);
  } else if (!parse_host_port(authority, url, why)) {
    return fail(error, why);
  }
  if (!path.empty()) {
    int db = 0;
    if (!parse_decimal(path, db) || db < 0)
      return fail(error, "the database must be a number from 0 to 2147483647: /DB");
    url.db = db;
  }
  if (extra) *extra = std::move(query);
  return url;
}

}  // namespace skyrelay::redis
