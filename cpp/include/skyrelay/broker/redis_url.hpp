// Where a Redis server is and how to log in to it: `redis://[[user]:password@]host[:port][/db]`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace skyrelay::redis {

struct redis_url {
  std::string host;          // a name, an IPv4 address, or an IPv6 address without brackets
  std::uint16_t port = 6379;
  std::string user;          // empty: AUTH with the password alone (the `default` user)
  std::string password;      // empty: no AUTH
  int db = 0;                // SELECTed after AUTH when not 0
};

// Parses `text`. Accepted: scheme `redis` (case-insensitive); user and password percent-encoded
// (`%40` for `@`); host a name, an IPv4 address or a bracketed IPv6 address; port 1-65535
// (default 6379); db a decimal number 0-2147483647 given as the whole path (default 0).
// Refused, with a message in `error` naming what is wrong: any other scheme (`rediss://` and
// `redis+sentinel://` are named as not supported yet), an empty host, a bad port or db, a user
// without a password, bad percent-encoding, a query string or a fragment, and control
// characters or spaces anywhere. Returns std::nullopt exactly when `error` was set.
std::optional<redis_url> parse_redis_url(std::string_view text, std::string& error);

}  // namespace skyrelay::redis
