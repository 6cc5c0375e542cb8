#include "skyrelay/auth/connection_auth.hpp"

#include <algorithm>
#include <chrono>
#include <climits>

namespace skyrelay::auth {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

}  // namespace

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::milliseconds time_left(const identity& id) {
  using namespace std::chrono;
  const long long now_ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  const long long cap_s = now_ms / 1000 + 10LL * 365 * 24 * 3600;
  const long long end_ms = std::min(id.ends_at, cap_s) * 1000;
  return milliseconds(std::max(0LL, end_ms - now_ms));
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer";
  if (authorization.size() <= scheme.size() ||
      !iequals(authorization.substr(0, scheme.size()), scheme) ||
      authorization[scheme.size()] != ' ')
    return std::nullopt;
  std::string_view token = authorization.substr(scheme.size() + 1);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

auth_result authenticate(const auth_config& cfg, std::string_view token, token_use use,
                         std::int64_t now_unix) {
  if (token.empty())
    return auth_refusal{std::string(token_required), "a token is required"};
  auto verified = cfg.verifier.verify(token, now_unix);
  if (auto* failure = std::get_if<jwt_failure>(&verified))
    return auth_refusal{describe(failure->code), std::move(failure->message)};
  auto& claims = std::get<jwt_claims>(verified);

  // The kind: a claim that is absent, or the kind this use needs.
  const std::string& wanted = use == token_use::connect ? cfg.connect_kind : cfg.publish_kind;
  const auto it = claims.payload.find(cfg.kind_claim);
  const bool absent = it == claims.payload.end();
  const bool ok = absent ? (use == token_use::connect && !cfg.require_kind)
                         : it->is_string() && it->get_ref<const std::string&>() == wanted;
  if (!ok)
    return auth_refusal{describe(jwt_error::wrong_kind),
                        "\"" + cfg.kind_claim + "\" must be \"" + wanted + "\" to " +
                            (use == token_use::connect ? "connect" : "publish")};

  auto id = std::make_shared<identity>();
  id->subject = std::move(claims.subject);
  id->roles = std::move(claims.roles);
  id->claims_json = claims.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  id->exp = claims.exp;
  const long long leeway = std::max<long long>(0, cfg.verifier.policy().leeway_s);
  id->ends_at = claims.exp > LLONG_MAX - leeway ? LLONG_MAX : claims.exp + leeway;
  return identity_ptr(std::move(id));
}

}  // namespace skyrelay::auth
