// JSON Web Token verification (RFC 7515 JWS compact serialisation, RFC 7518 algorithms,
// RFC 7519 claims, RFC 8725 best practices). Verification only: no signing, no networking,
// no key fetching. HS256/384/512, RS256 and ES256.
//
// What is refused, whatever the keys: tokens over max_jwt_size bytes, anything but three
// dot-separated segments, base64url with padding or characters outside the URL alphabet,
// headers and payloads that are not JSON objects, `alg: none` in any case, a missing `alg`,
// a `crit` header (no extension is understood). The `jku`, `x5u`, `jwk` and `x5c` headers
// are never read: keys come only from add_key or
// the key set (jwt_key_set.hpp), whose list can be replaced while tokens are verified. A key lists the algorithms it may verify, and
// a header's `alg` outside that list is refused before any cryptography, so an RSA public key
// cannot be used as an HMAC secret.
//
// Time rules with leeway L (seconds) at time `now`: `exp` is required and the token is
// expired when exp <= now - L; `nbf` fails when nbf > now + L; `iat` fails when
// iat > now + L. Fractional NumericDates are rounded towards refusal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/types.h>

#include "skyrelay/auth/jwt_key_set.hpp"

namespace skyrelay::auth {

inline constexpr std::size_t max_jwt_size = 8 * 1024;

enum class jwt_error {
  none,
  too_large,         // over max_jwt_size bytes
  malformed,         // not three segments, missing or non-string alg or kid, crit present
  bad_base64,        // a segment is not strict unpadded base64url
  bad_json,          // header or payload is not a JSON object (or nests too deeply)
  alg_none,          // alg "none", in any case
  alg_not_allowed,   // no candidate key lists the header's alg
  unknown_key,       // kid names no configured key
  bad_signature,     // no candidate key verifies the signature
  expired,           // exp <= now - leeway
  not_yet_valid,     // nbf > now + leeway
  issued_in_future,  // iat > now + leeway
  wrong_audience,    // aud present and none of it is ours, or absent when we require one
  wrong_issuer,      // iss not among the configured issuers
  wrong_kind,        // the kind claim differs from the required kind
  bad_claim,         // a registered or known claim of the wrong type, or exp missing
};

const char* describe(jwt_error e);

struct evp_pkey_free {
  void operator()(EVP_PKEY* key) const;
};
using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, evp_pkey_free>;

// One verification key. Build it with hmac() or public_pem(), which check that the algorithms
// fit the key; a key is move-only.
struct jwt_key {
  std::string id;                       // matched against the header's kid
  std::vector<std::string> algorithms;  // the algs this key may verify
  std::string secret;                   // HS256/384/512
  evp_pkey_ptr public_key;              // RS256 (RSA, >= 2048 bits) or ES256 (P-256)

  // `algorithms` must be non-empty and among HS256, HS384, HS512; the secret must be at
  // least as long as the largest hash output (RFC 7518 3.2). Answers the key or why not.
  static std::variant<jwt_key, std::string> hmac(std::string id, std::string secret,
                                                 std::vector<std::string> algorithms);
  // A PEM "PUBLIC KEY" (SubjectPublicKeyInfo). RSA keys take only RS256, P-256 keys only ES256.
  static std::variant<jwt_key, std::string> public_pem(std::string id, std::string_view pem,
                                                       std::vector<std::string> algorithms);
};

struct jwt_policy {
  std::vector<std::string> issuers;    // empty: any iss (if a string)
  std::vector<std::string> audiences;  // empty: tokens carrying aud are refused (RFC 7519 4.1.3)
  std::string kind_claim = "typ";      // payload claim naming the token's kind
  std::string required_kind;           // empty: not checked
  long leeway_s = 30;                  // clock skew allowed on exp, nbf, iat (negative: 0)
};

struct jwt_claims {
  std::string subject;             // sub, or empty
  std::vector<std::string> roles;  // roles, or empty
  long long exp = 0;
  nlohmann::json payload;          // the whole payload object
};

struct jwt_failure {
  jwt_error code = jwt_error::none;
  std::string message;
};

using jwt_result = std::variant<jwt_claims, jwt_failure>;

class jwt_verifier {
 public:
  // Keys in a set of the verifier's own, or in `keys` (shared with whoever replaces them).
  explicit jwt_verifier(jwt_policy policy = {}, std::shared_ptr<jwt_key_set> keys = nullptr);

  // Adds a key to the set (copies the list and swaps it in): for configuration, not per token.
  void add_key(jwt_key key);
  const jwt_policy& policy() const { return policy_; }
  jwt_key_set& key_set() const { return *keys_; }

  // Never throws for any token (it may throw std::bad_alloc).
  jwt_result verify(std::string_view token, std::int64_t now_unix) const;

 private:
  jwt_policy policy_;
  std::shared_ptr<jwt_key_set> keys_;  // never null
};

// Strict base64url (RFC 4648 section 5) without padding; decoding refuses '=', '+', '/',
// whitespace, a length of 1 mod 4 and non-zero trailing bits. Answers false on refusal.
std::string base64url_encode(std::string_view bytes);
bool base64url_decode(std::string_view text, std::string& out);

}  // namespace skyrelay::auth
