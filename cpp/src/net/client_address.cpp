// The client's address behind trusted proxies (net/client_address.hpp). The address syntax is
// libc's inet_pton (strict dotted quads, RFC 4291 text); the list and Forwarded syntax (RFC
// 7230 lists, RFC 7239 elements) is read here, from the right, because only the values the
// trusted proxies appended are known to be well formed.
#include "skyrelay/net/client_address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace skyrelay {

namespace {

constexpr std::array<std::uint8_t, 12> mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

// RFC 7230 tchar.
bool is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// RFC 7239's obfuscated identifier after its "_": ALPHA / DIGIT / "." / "_" / "-".
bool valid_obfuscated(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

// A node port: 1 to 5 digits up to 65535, or an obfuscated port (read as 0).
std::optional<std::uint16_t> parse_port(std::string_view s) {
  if (s.starts_with('_')) return valid_obfuscated(s.substr(1)) ? std::optional<std::uint16_t>(0)
                                                                : std::nullopt;
  if (s.empty() || s.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

// What one forwarded value names.
struct node {
  enum class kind : std::uint8_t { address, hidden, bad } what{kind::bad};
  client_address at;
};

// A node: "unknown", "_obfuscated", IPv4[:port], [IPv6][:port], or (X-Forwarded-For's form)
// a bare IPv6 address.
node parse_node(std::string_view s) {
  node n;
  if (iequals(s, "unknown") || (s.starts_with('_') && valid_obfuscated(s.substr(1)))) {
    n.what = node::kind::hidden;
    return n;
  }
  std::string_view host = s, port;
  if (s.starts_with('[')) {
    const auto close = s.find(']');
    if (close == std::string_view::npos) return n;
    host = s.substr(1, close - 1);
    auto rest = s.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return n;
    if (!rest.empty()) port = rest.substr(1);
    if (rest.size() == 1) return n;  // "[::1]:" names no port
    if (host.find(':') == std::string_view::npos) return n;  // brackets hold IPv6 only
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    host = s.substr(0, s.find(':'));
    port = s.substr(s.find(':') + 1);
    if (port.empty()) return n;
  }
  auto ip = ip_address::parse(host);
  if (!ip) return n;
  n.at.ip = *ip;
  if (!port.empty()) {
    auto p = parse_port(port);
    if (!p) return n;
    n.at.port = *p;
  }
  n.what = node::kind::address;
  return n;
}

// A quoted-string's content (RFC 7230 3.2.6), its quoted pairs undone; nullopt when `s` is
// not exactly one quoted string.
std::optional<std::string> unquote(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return std::nullopt;
  std::string out;
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    if (s[i] == '"') return std::nullopt;
    if (s[i] == '\\') {
      if (++i + 1 >= s.size()) return std::nullopt;
    }
    out += s[i];
  }
  return out;
}

// The next piece of `rest` after the last `sep` (outside a quoted string when `quotes`), taken
// off the end of `rest`. A '"' inside a quoted string is its end unless an odd run of
// backslashes precedes it (a quoted pair): read from the right, that decides as exactly as
// from the left. X-Forwarded-For has no quoted strings.
std::string_view take_last(std::string_view& rest, char sep, bool quotes = true) {
  bool quoted = false;
  for (std::size_t i = rest.size(); i-- > 0;) {
    const char c = rest[i];
    if (c == '"' && quotes) {
      std::size_t slashes = 0;
      while (slashes < i && rest[i - 1 - slashes] == '\\') ++slashes;
      if (!quoted || slashes % 2 == 0) quoted = !quoted;
    } else if (c == sep && !quoted) {
      auto piece = rest.substr(i + 1);
      rest = rest.substr(0, i);
      return piece;
    }
  }
  auto piece = rest;
  rest = {};
  return piece;
}

// Calls take(name, value) for each name=value pair of one Forwarded element ("for=...;
// proto=https;by=..."), from the right, the value unquoted. False when the element does not
// read, or when take returns false.
template <class Take>
bool forwarded_pairs(std::string_view element, Take take) {
  std::string_view rest = element;
  while (!rest.empty()) {
    auto pair = trim(take_last(rest, ';'));
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) return false;
    const auto name = pair.substr(0, eq);
    auto value = pair.substr(eq + 1);
    if (!std::all_of(name.begin(), name.end(), is_tchar)) return false;
    std::string text;
    if (value.starts_with('"')) {
      auto inner = unquote(value);
      if (!inner) return false;
      text = std::move(*inner);
    } else {
      // A token; RFC 7239 quotes "[" and ":", but a proxy that does not is still read.
      if (value.empty() || !std::all_of(value.begin(), value.end(), [](char c) {
            return is_tchar(c) || c == '[' || c == ']' || c == ':';
          }))
        return false;
      text = std::string(value);
    }
    if (!take(name, text)) return false;
  }
  return true;
}

// The node of one Forwarded element: its for= value, a hidden node when it has none, bad when
// the element does not read or names for= twice.
node forwarded_node(std::string_view element) {
  std::optional<node> found;
  const bool read = forwarded_pairs(element, [&](std::string_view name, const std::string& text) {
    if (!iequals(name, "for")) return true;
    if (found) return false;  // two for= in one element: which hop is it?
    found = parse_node(text);
    return true;
  });
  if (!read) return node{};
  if (!found) {
    node hidden;
    hidden.what = node::kind::hidden;
    return hidden;
  }
  return *found;
}

// "http" or "https" for those words in any case, else empty.
std::string_view known_scheme(std::string_view s) {
  if (iequals(s, "https")) return "https";
  if (iequals(s, "http")) return "http";
  return {};
}

}  // namespace

std::optional<ip_address> ip_address::parse(std::string_view text) {
  // inet_pton wants a terminated string (so no NUL inside, where it would stop reading); the
  // longest IPv6 text is 45 characters.
  if (text.empty() || text.size() > 45 || text.find('\0') != std::string_view::npos)
    return std::nullopt;
  char buf[46];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  ip_address a;
  if (text.find(':') == std::string_view::npos) {
    if (::inet_pton(AF_INET, buf, a.bytes.data()) != 1) return std::nullopt;
    return a;
  }
  if (::inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
  if (std::equal(mapped_prefix.begin(), mapped_prefix.end(), a.bytes.begin())) {
    std::array<std::uint8_t, 16> v4{};
    std::copy(a.bytes.begin() + 12, a.bytes.end(), v4.begin());
    a.bytes = v4;
    return a;
  }
  a.v6 = true;
  return a;
}

std::string ip_address::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (!::inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf)) return {};
  return buf;
}

std::string client_address::remote() const { return ip.to_string() + ":" + std::to_string(port); }

std::variant<proxy_set, std::string> proxy_set::parse(const std::vector<std::string>& specs,
                                                      proxy_header header) {
  proxy_set set;
  set.header_ = header;
  for (const auto& spec : specs) {
    const std::string_view s = spec;
    auto fail = [&](std::string_view why) {
      return "trusted_proxies: \"" + spec + "\" " + std::string(why);
    };
    if (s == "*") {
      set.networks_.push_back({ip_address{}, 0});
      set.networks_.push_back({ip_address{{}, true}, 0});
      continue;
    }
    const auto slash = s.find('/');
    const auto host = s.substr(0, slash);
    auto ip = ip_address::parse(host);
    if (!ip) return fail("is not an IPv4 or IPv6 address or network (10.0.0.0/8, fd00::/8)");
    if (!ip->v6 && host.find(':') != std::string_view::npos)
      return fail("is an IPv4-mapped IPv6 address: write it as IPv4 (" + ip->to_string() + ")");
    const unsigned bits = ip->v6 ? 128 : 32;
    unsigned prefix = bits;
    if (slash != std::string_view::npos) {
      const auto p = s.substr(slash + 1);
      if (p.empty() || p.size() > 3 || !std::all_of(p.begin(), p.end(), [](char c) {
            return c >= '0' && c <= '9';
          }))
        return fail("has no prefix length after the /");
      prefix = static_cast<unsigned>(std::stoul(std::string(p)));
      if (prefix > bits)
        return fail("has a prefix longer than " + std::to_string(bits) + " bits");
    }
    network n{*ip, prefix};
    network masked = n;
    for (unsigned i = prefix; i < bits; ++i)
      masked.base.bytes[i / 8] &= static_cast<std::uint8_t>(~(0x80u >> (i % 8)));
    if (!(masked.base == n.base))
      return fail("has host bits set: the network is " + masked.base.to_string() + "/" +
                  std::to_string(prefix));
    set.networks_.push_back(n);
  }
  return set;
}

bool proxy_set::contains(const ip_address& a) const noexcept {
  for (const auto& n : networks_) {
    if (n.base.v6 != a.v6) continue;
    const unsigned whole = n.prefix / 8, rest = n.prefix % 8;
    if (!std::equal(n.base.bytes.begin(), n.base.bytes.begin() + whole, a.bytes.begin()))
      continue;
    if (rest) {
      const auto mask = static_cast<std::uint8_t>(0xff00u >> rest);
      if ((n.base.bytes[whole] & mask) != (a.bytes[whole] & mask)) continue;
    }
    return true;
  }
  return false;
}

bool proxy_set::contains(std::string_view address) const {
  auto a = ip_address::parse(address);
  return a && contains(*a);
}

forwarded_status resolve_client(const client_address& peer,
                                const std::vector<std::string_view>& lines,
                                const proxy_set& proxies, client_address& client) {
  client = peer;
  if (!proxies.contains(peer.ip)) return forwarded_status::peer;
  const bool rfc7239 = proxies.header() == proxy_header::forwarded;
  std::size_t hops = 0;
  client_address nearest = peer;  // the last hop known: where a hidden node ends the walk
  for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
    std::string_view rest = *line;
    while (!rest.empty()) {
      auto value = trim(take_last(rest, ',', rfc7239));
      if (value.empty()) continue;  // RFC 7230 7: empty list elements are ignored
      if (++hops > max_forwarded_hops) {
        client = peer;
        return forwarded_status::too_many_hops;
      }
      const node n = rfc7239 ? forwarded_node(value) : parse_node(value);
      if (n.what == node::kind::bad) {
        client = peer;
        return forwarded_status::malformed;
      }
      if (n.what == node::kind::hidden) {
        client = nearest;
        return forwarded_status::forwarded;
      }
      client = n.at;
      if (!proxies.contains(n.at.ip)) return forwarded_status::forwarded;
      nearest = n.at;
    }
  }
  // Every address was a trusted hop (or there was none): the leftmost is the client.
  return hops ? forwarded_status::forwarded : forwarded_status::peer;
}

std::string_view forwarded_scheme(proxy_header header,
                                  const std::vector<std::string_view>& lines) {
  const bool rfc7239 = header == proxy_header::forwarded;
  for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
    std::string_view rest = *line;
    while (!rest.empty()) {
      auto value = trim(take_last(rest, ',', rfc7239));
      if (value.empty()) continue;
      // The last value is the nearest proxy's: what it says, or nothing.
      if (!rfc7239) return known_scheme(value);
      std::string_view scheme;
      const bool read = forwarded_pairs(value, [&](std::string_view name, const std::string& text) {
        if (!iequals(name, "proto")) return true;
        if (!scheme.empty()) return false;  // two proto= in one element
        scheme = known_scheme(text);
        return !scheme.empty();
      });
      return read ? scheme : std::string_view();
    }
  }
  return {};
}

}  // namespace skyrelay
