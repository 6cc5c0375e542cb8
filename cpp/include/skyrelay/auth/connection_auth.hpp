// Token authentication of connections and publishers (docs/api.md "Authentication"): the
// server's JWT settings, and the one check every transport runs at its handshake.
//
// A token is verified by jwt_verifier (signature, exp/nbf/iat with leeway, iss, aud), then
// its kind is checked here: a token is meant either for connecting or for publishing, named
// by the `kind_claim` payload claim ("typ" by default). A connect token must say
// `connect_kind` (or carry no kind at all when `require_kind` is false); a publish token must
// say `publish_kind`, always. So a publish token never opens a connection, and a connect token
// never publishes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "skyrelay/auth/jwt.hpp"

namespace skyrelay::auth {

// Who a verified token says the peer is; shared by the connection and its hooks.
struct identity {
  std::string subject;              // sub ("" when absent)
  std::vector<std::string> roles;   // roles (empty when absent)
  std::string claims_json;          // the whole payload, as JSON text
  long long exp = 0;                // the token's exp (unix seconds)
  long long ends_at = 0;            // exp + leeway: when the connection is ended
};
using identity_ptr = std::shared_ptr<const identity>;

enum class token_use : std::uint8_t { connect, publish };

struct auth_config {
  jwt_verifier verifier;  // its policy's required_kind is not used: kinds are checked here
  std::string kind_claim = "typ";
  std::string connect_kind = "connect";
  std::string publish_kind = "publish";
  bool required = false;      // connections without a token are refused (token_required)
  bool require_kind = true;   // false: a token without the kind claim is a connect token
};

// Why a token was refused: `code` is one of describe(jwt_error), or token_required.
struct auth_refusal {
  std::string code;
  std::string message;
};

using auth_result = std::variant<identity_ptr, auth_refusal>;

inline constexpr std::string_view token_required = "token_required";

// Verifies `token` for `use` at `now_unix`. An empty token is refused with token_required
// (whether a connection may go without one is the caller's decision: auth_config::required).
auth_result authenticate(const auth_config& cfg, std::string_view token, token_use use,
                         std::int64_t now_unix);

// The token of an "Authorization: Bearer <token>" value (the scheme in any case, RFC 6750
// 2.1), or nullopt for another scheme or an empty token.
std::optional<std::string_view> bearer_token(std::string_view authorization);

// Seconds since the epoch, now.
std::int64_t unix_now();

// How long until the identity's connection ends (ends_at), from now on the wall clock; zero
// when that is past, at most ten years.
std::chrono::milliseconds time_left(const identity& id);

}  // namespace skyrelay::auth
