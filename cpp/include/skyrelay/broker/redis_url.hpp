// Where a Redis server is and how to log in to it:
//   redis://[[user]:password@]host[:port][/db][?query]
//   rediss://[[user]:password@]host[:port][/db][?query]                          (TLS)
//   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?query]
// The grammar and the query's names are documented in docs/api.md ("Broker URLs").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace skyrelay::redis {

// TLS to the server (`rediss://`). Verification is on unless `verify=none` says otherwise.
struct redis_tls {
  bool enabled = false;
  std::string ca_file;    // `ca=`: PEM file of the CAs to trust; empty: the system's CA store
  std::string cert_file;  // `cert=`: client certificate chain (PEM) for mutual TLS
  std::string key_file;   // `key=`: its private key (PEM); given with cert= or not at all
  bool verify = true;     // `verify=none`: no check of the server's certificate (tests only)
  std::string server_name;  // `sni=`: the name sent (SNI) and checked; empty: the URL's host
};

struct redis_endpoint {
  std::string host;
  std::uint16_t port = 6379;
};

struct redis_url {
  std::string host;          // a name, an IPv4 address, or an IPv6 address without brackets
  std::uint16_t port = 6379;
  std::string user;          // empty: AUTH with the password alone (the `default` user)
  std::string password;      // empty: no AUTH
  int db = 0;                // SELECTed after AUTH when not 0
  redis_tls tls;
  // redis+sentinel: the sentinels to ask (default port 26379), in the URL's order, and the
  // master's name; host and port above are then where the current master was found (empty
  // until a sentinel named it). The user and password are the master's (sentinels are asked
  // without AUTH).
  std::vector<redis_endpoint> sentinels;
  std::string master_name;

  bool uses_sentinel() const { return !sentinels.empty(); }
};

// Parses `text`. Accepted: scheme `redis`, `rediss` or `redis+sentinel` (case-insensitive);
// user and password percent-encoded (`%40` for `@`); host a name, an IPv4 address or a
// bracketed IPv6 address; port 1-65535 (default 6379, a sentinel's 26379); db a decimal number
// 0-2147483647 (default 0); a query of `name=value` pairs joined by `&`, values
// percent-encoded: `ca`, `cert`, `key`, `verify` (`full` or `none`) and `sni` with rediss://
// only; any other name goes to `extra` when given (the broker's `prefix`), else is refused.
// Refused, with a message in `error` naming what is wrong: any other scheme (`rediss+sentinel`
// named as not supported), an empty host, a bad port or db, a sentinel URL without a master
// name, a user without a password, bad percent-encoding, cert= without key= or the reverse, a
// repeated or empty query name, a fragment, and control characters or spaces anywhere.
// Returns std::nullopt exactly when `error` was set.
std::optional<redis_url> parse_redis_url(std::string_view text, std::string& error,
                                         std::map<std::string, std::string>* extra = nullptr);

}  // namespace skyrelay::redis
