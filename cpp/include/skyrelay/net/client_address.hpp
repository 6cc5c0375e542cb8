// The client's address behind trusted reverse proxies (server_config::trusted_proxies;
// docs/deployment.md "Client addresses behind a proxy"): which peers are proxies, and the
// walk over the header they write, X-Forwarded-For or Forwarded (RFC 7239), from the right.
//
// Pure functions and a value type, no I/O and no Asio (skyrelay_base links it, and so do the
// unit tests and the fuzz target). Errors are values: a spec that does not parse is a message,
// a header that does not read is a status, and the caller falls back to the TCP peer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace skyrelay {

// An IPv4 or IPv6 address as its bytes (an IPv4 address in the first four).
struct ip_address {
  std::array<std::uint8_t, 16> bytes{};
  bool v6{false};

  // Dotted-quad IPv4 or IPv6 text (no zone id, no brackets). An IPv4-mapped IPv6 address
  // (::ffff:1.2.3.4) becomes the IPv4 address, so a dual-stack socket's peers match IPv4
  // networks. Nullopt when the text is neither.
  static std::optional<ip_address> parse(std::string_view text);
  std::string to_string() const;
  bool operator==(const ip_address&) const = default;
};

// Which header the trusted proxies write the client's address in. One, chosen: a proxy that
// writes only X-Forwarded-For passes a client's own Forwarded header on untouched, so reading
// both would let any client name its address.
enum class proxy_header : std::uint8_t { x_forwarded_for, forwarded };

// The peers whose forwarded header is believed: addresses and networks, IPv4 and IPv6.
class proxy_set {
 public:
  // Each spec is an address ("10.0.0.2", "::1"), a network in CIDR form ("10.0.0.0/8",
  // "fd00::/8"; no host bits set) or "*" (every peer: only when nothing but the proxy can
  // reach the port). The error names the first spec that does not parse, and why.
  static std::variant<proxy_set, std::string> parse(const std::vector<std::string>& specs,
                                                    proxy_header header);

  bool contains(const ip_address& a) const noexcept;
  // The same for an address in text form (an Asio endpoint's); false when it does not parse.
  bool contains(std::string_view address) const;
  proxy_header header() const noexcept { return header_; }
  std::size_t size() const noexcept { return networks_.size(); }

 private:
  struct network {
    ip_address base;
    unsigned prefix{0};
  };
  std::vector<network> networks_;
  proxy_header header_{proxy_header::x_forwarded_for};
};

// Where a request comes from: an address and its port (0 when the header names none).
struct client_address {
  ip_address ip;
  std::uint16_t port{0};

  // "ip:port", the form conn.remote and the WSGI environ's REMOTE_ADDR/REMOTE_PORT read
  // (an IPv6 address unbracketed, as for a direct peer).
  std::string remote() const;
};

// How resolve_client decided.
enum class forwarded_status : std::uint8_t {
  peer,           // the peer is not a trusted proxy, or it sent no header: the peer is the client
  forwarded,      // the client was read from the header
  malformed,      // a value the walk reached does not read: the peer is used (and counted)
  too_many_hops,  // more than max_forwarded_hops values walked: the peer is used (and counted)
};

// Values walked from the right at most: far more trusted hops than any deployment chains, and
// a bound on the work one request costs.
constexpr std::size_t max_forwarded_hops = 32;

// The client of a request from `peer` whose `proxies.header()` field lines are `lines` (each
// line as it arrived, in order; several lines are one comma-separated list). From any peer not
// in `proxies`, the lines are ignored. From a trusted peer, the values are walked from the
// right: a trusted address is one more hop and the walk goes on; the first untrusted address
// is the client (with its port, if the value has one); when every address is trusted, the
// leftmost is. A value naming no address ("unknown", an obfuscated "_name", a Forwarded
// element with no for=) ends the walk at the nearest hop known, since nothing to its left can
// be checked. Values left of where the walk stops are never read, so a client's own junk in
// front of what its proxy appended changes nothing.
forwarded_status resolve_client(const client_address& peer,
                                const std::vector<std::string_view>& lines,
                                const proxy_set& proxies, client_address& client);

// The scheme the nearest trusted proxy says its client used: the last value of
// X-Forwarded-Proto's `lines` (proxy_header::x_forwarded_for) or the proto= of the last
// Forwarded element (proxy_header::forwarded, `lines` the Forwarded lines). "http" or "https",
// whatever the case sent; empty when the proxy said nothing, something else, or an element
// that does not read. Only the nearest proxy is read: in a chain it passes its own client's
// statement on (nginx: `proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;`). For a
// request from a trusted proxy only: the caller checks.
std::string_view forwarded_scheme(proxy_header header, const std::vector<std::string_view>& lines);

}  // namespace skyrelay
