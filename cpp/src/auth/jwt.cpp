#include "skyrelay/auth/jwt.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <optional>

namespace skyrelay::auth {

using json = nlohmann::json;

const char* describe(jwt_error e) {
  switch (e) {
    case jwt_error::none: return "none";
    case jwt_error::too_large: return "too_large";
    case jwt_error::malformed: return "malformed";
    case jwt_error::bad_base64: return "bad_base64";
    case jwt_error::bad_json: return "bad_json";
    case jwt_error::alg_none: return "alg_none";
    case jwt_error::alg_not_allowed: return "alg_not_allowed";
    case jwt_error::unknown_key: return "unknown_key";
    case jwt_error::bad_signature: return "bad_signature";
    case jwt_error::expired: return "expired";
    case jwt_error::not_yet_valid: return "not_yet_valid";
    case jwt_error::issued_in_future: return "issued_in_future";
    case jwt_error::wrong_audience: return "wrong_audience";
    case jwt_error::wrong_issuer: return "wrong_issuer";
    case jwt_error::wrong_kind: return "wrong_kind";
    case jwt_error::bad_claim: return "bad_claim";
  }
  return "unknown";
}

void evp_pkey_free::operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }

// ---- keys -------------------------------------------------------------------------------

namespace {

// The digest size HS256/384/512 use, or 0 for any other name.
std::size_t hmac_size(std::string_view alg) {
  if (alg == "HS256") return 32;
  if (alg == "HS384") return 48;
  if (alg == "HS512") return 64;
  return 0;
}

const EVP_MD* hmac_digest(std::string_view alg) {
  if (alg == "HS256") return EVP_sha256();
  if (alg == "HS384") return EVP_sha384();
  if (alg == "HS512") return EVP_sha512();
  return nullptr;
}

int no_passphrase(char*, int, int, void*) { return 0; }

}  // namespace

std::variant<jwt_key, std::string> jwt_key::hmac(std::string id, std::string secret,
                                                 std::vector<std::string> algorithms) {
  if (algorithms.empty()) return std::string("an HMAC key needs at least one algorithm");
  std::size_t needed = 0;
  for (const auto& alg : algorithms) {
    const std::size_t n = hmac_size(alg);
    if (n == 0) return "an HMAC key takes HS256, HS384 or HS512, not \"" + alg + "\"";
    needed = std::max(needed, n);
  }
  if (secret.size() < needed)
    return "an HMAC secret for " + std::to_string(needed * 8) + "-bit hashes needs at least " +
           std::to_string(needed) + " bytes";
  jwt_key key;
  key.id = std::move(id);
  key.algorithms = std::move(algorithms);
  key.secret = std::move(secret);
  return key;
}

std::variant<jwt_key, std::string> jwt_key::public_pem(std::string id, std::string_view pem,
                                                       std::vector<std::string> algorithms) {
  if (algorithms.empty()) return std::string("a public key needs at least one algorithm");
  if (pem.size() > static_cast<std::size_t>(INT_MAX)) return std::string("PEM too large");
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  if (!bio) return std::string("out of memory");
  evp_pkey_ptr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  ERR_clear_error();
  if (!pkey) return std::string("not a PEM public key (-----BEGIN PUBLIC KEY-----)");

  const int type = EVP_PKEY_get_base_id(pkey.get());
  const char* wanted = nullptr;
  if (type == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(pkey.get()) < 2048)
      return std::string("an RSA key needs at least 2048 bits");
    wanted = "RS256";
  } else if (type == EVP_PKEY_EC) {
    char group[64] = {};
    std::size_t len = 0;
    const bool named = EVP_PKEY_get_group_name(pkey.get(), group, sizeof group, &len) == 1;
    ERR_clear_error();
    if (!named || std::string_view(group, len) != "prime256v1")
      return std::string("an EC key must be on P-256 (prime256v1)");
    wanted = "ES256";
  } else {
    return std::string("unsupported public key type (RSA or EC P-256 only)");
  }
  for (const auto& alg : algorithms)
    if (alg != wanted)
      return "this key takes only " + std::string(wanted) + ", not \"" + alg + "\"";

  jwt_key key;
  key.id = std::move(id);
  key.algorithms = std::move(algorithms);
  key.public_key = std::move(pkey);
  return key;
}

// ---- signatures -------------------------------------------------------------------------

namespace {

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

bool check_hmac(const EVP_MD* md, const std::string& secret, std::string_view input,
                std::string_view sig) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (secret.size() > static_cast<std::size_t>(INT_MAX) ||
      HMAC(md, secret.data(), static_cast<int>(secret.size()), bytes_of(input), input.size(), mac,
           &len) == nullptr) {
    ERR_clear_error();
    return false;
  }
  // The length is public (it follows from alg); the bytes are compared in constant time.
  return sig.size() == len && CRYPTO_memcmp(mac, sig.data(), len) == 0;
}

// SHA-256 digest signature check; RSA keys use PKCS#1 v1.5 padding.
bool check_sha256(EVP_PKEY* pkey, bool rsa, const unsigned char* sig, std::size_t sig_len,
                  std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx) return false;
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = EVP_DigestVerifyInit(ctx.get(), &pctx, EVP_sha256(), nullptr, pkey) == 1;
  if (ok && rsa) ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
  if (ok) ok = EVP_DigestVerify(ctx.get(), sig, sig_len, bytes_of(input), input.size()) == 1;
  ERR_clear_error();
  return ok;
}

bool check_rs256(EVP_PKEY* pkey, std::string_view input, std::string_view sig) {
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) return false;
  // A PKCS#1 signature is exactly as long as the modulus.
  if (sig.size() != static_cast<std::size_t>(EVP_PKEY_get_size(pkey))) return false;
  return check_sha256(pkey, true, bytes_of(sig), sig.size(), input);
}

// JWS carries an ES256 signature as the raw 32-byte big-endian r and s (RFC 7518 3.4);
// OpenSSL verifies the DER ECDSA-Sig-Value, so it is rebuilt from them.
bool check_es256(EVP_PKEY* pkey, std::string_view input, std::string_view sig) {
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC || sig.size() != 64) return false;
  ECDSA_SIG* es = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(bytes_of(sig), 32, nullptr);
  BIGNUM* s = BN_bin2bn(bytes_of(sig) + 32, 32, nullptr);
  if (es == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    ERR_clear_error();
    return false;
  }
  unsigned char* der = nullptr;
  const int der_len = i2d_ECDSA_SIG(es, &der);
  ECDSA_SIG_free(es);
  if (der_len <= 0) {
    ERR_clear_error();
    return false;
  }
  const bool ok = check_sha256(pkey, false, der, static_cast<std::size_t>(der_len), input);
  OPENSSL_free(der);
  return ok;
}

bool check_signature(const jwt_key& key, std::string_view alg, std::string_view input,
                     std::string_view sig) {
  if (const EVP_MD* md = hmac_digest(alg))
    return !key.secret.empty() && check_hmac(md, key.secret, input, sig);
  if (!key.public_key) return false;
  if (alg == "RS256") return check_rs256(key.public_key.get(), input, sig);
  if (alg == "ES256") return check_es256(key.public_key.get(), input, sig);
  return false;
}

bool allows(const jwt_key& key, std::string_view alg) {
  return std::find(key.algorithms.begin(), key.algorithms.end(), alg) != key.algorithms.end();
}

// ---- JSON and claims --------------------------------------------------------------------

constexpr int max_json_depth = 32;

// True when no object or array nests deeper than `limit` (strings are skipped), so that
// nothing recursive meets an unbounded depth.
bool nesting_within(std::string_view s, int limit) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > limit) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

bool parse_object(const std::string& text, json& out) {
  if (!nesting_within(text, max_json_depth)) return false;
  out = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return !out.is_discarded() && out.is_object();
}

// Up to 64 bytes of untrusted text for a message, non-printable bytes replaced.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > 64) out += "...";
  return out;
}

enum class date_state { absent, ok, bad };

// A NumericDate (RFC 7519 2): an integer or fractional count of seconds. `round_up` says
// which way a fraction goes: down for exp, up for nbf and iat, so both err towards refusal.
date_state read_date(const json& payload, const char* name, bool round_up, long long& out) {
  auto it = payload.find(name);
  if (it == payload.end()) return date_state::absent;
  if (it->is_number_unsigned()) {
    const auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(LLONG_MAX)) return date_state::bad;
    out = static_cast<long long>(u);
    return date_state::ok;
  }
  if (it->is_number_integer()) {
    out = it->get<std::int64_t>();
    return date_state::ok;
  }
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (!std::isfinite(d) || std::fabs(d) > 9.0e18) return date_state::bad;
    d = round_up ? std::ceil(d) : std::floor(d);
    out = static_cast<long long>(d);
    return date_state::ok;
  }
  return date_state::bad;
}

long long saturating_add(long long a, long long b) {
  long long r = 0;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? LLONG_MAX : LLONG_MIN;
  return r;
}

bool contains(const std::vector<std::string>& list, std::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

jwt_failure fail(jwt_error code, std::string message) { return {code, std::move(message)}; }

}  // namespace

// ---- the verifier -----------------------------------------------------------------------

jwt_verifier::jwt_verifier(jwt_policy policy, std::shared_ptr<jwt_key_set> keys)
    : policy_(std::move(policy)),
      keys_(keys ? std::move(keys) : std::make_shared<jwt_key_set>()) {}

void jwt_verifier::add_key(jwt_key key) {
  jwt_key_list next = keys_->keys();
  next.push_back(std::make_shared<const jwt_key>(std::move(key)));
  keys_->replace(std::move(next));
}

namespace {

// The three segments of a compact token, decoded; `signing_input` is header.payload as sent.
struct token_parts {
  std::string_view signing_input;
  std::string header, payload, signature;
};

// Splits and decodes a token (compact serialisation: header.payload.signature, nothing else).
std::optional<jwt_failure> split_token(std::string_view token, token_parts& out) {
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return fail(jwt_error::malformed, "a token has exactly three dot-separated segments");
  const std::string_view header_b64 = token.substr(0, dot1);
  const std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view sig_b64 = token.substr(dot2 + 1);
  if (header_b64.empty() || payload_b64.empty())
    return fail(jwt_error::malformed, "empty header or payload segment");

  if (!base64url_decode(header_b64, out.header))
    return fail(jwt_error::bad_base64, "header is not unpadded base64url");
  if (!base64url_decode(payload_b64, out.payload))
    return fail(jwt_error::bad_base64, "payload is not unpadded base64url");
  if (!base64url_decode(sig_b64, out.signature))
    return fail(jwt_error::bad_base64, "signature is not unpadded base64url");
  out.signing_input = token.substr(0, dot2);
  return std::nullopt;
}

// The header: alg decides everything, kid narrows the keys; jku, x5u, jwk and x5c are
// never read (RFC 8725 3.10: keys come only from configuration). Sets `alg` and the keys
// that may verify the signature (at least one, unless a failure is returned).
std::optional<jwt_failure> select_keys(const json& header, const jwt_key_list& keys,
                                       std::string& alg,
                                       std::vector<const jwt_key*>& candidates) {
  const auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string())
    return fail(jwt_error::malformed, "header has no \"alg\" string");
  alg = alg_it->get_ref<const std::string&>();
  std::string alg_lower = alg;
  std::transform(alg_lower.begin(), alg_lower.end(), alg_lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (alg_lower == "none") return fail(jwt_error::alg_none, "unsigned tokens are refused");
  if (header.contains("crit"))
    return fail(jwt_error::malformed, "\"crit\" header: no extension is understood");
  const std::string* kid = nullptr;
  if (const auto kid_it = header.find("kid"); kid_it != header.end()) {
    if (!kid_it->is_string()) return fail(jwt_error::malformed, "header \"kid\" is not a string");
    kid = &kid_it->get_ref<const std::string&>();
  }

  bool kid_known = false;
  for (const auto& key : keys) {
    if (kid != nullptr && key->id != *kid) continue;
    kid_known = true;
    if (allows(*key, alg)) candidates.push_back(key.get());
  }
  if (!kid_known)
    return kid != nullptr
               ? fail(jwt_error::unknown_key, "no key has kid \"" + printable(*kid) + "\"")
               : fail(jwt_error::unknown_key, "no keys are configured");
  if (candidates.empty())
    return fail(jwt_error::alg_not_allowed, "alg \"" + printable(alg) + "\" is not allowed");
  return std::nullopt;
}

// exp (required), nbf and iat against `now`, with `leeway` seconds either way.
std::optional<jwt_failure> check_dates(const json& p, long long now, long long leeway,
                                       jwt_claims& claims) {
  long long t = 0;
  switch (read_date(p, "exp", false, t)) {
    case date_state::absent: return fail(jwt_error::bad_claim, "\"exp\" is required");
    case date_state::bad: return fail(jwt_error::bad_claim, "\"exp\" is not a NumericDate");
    case date_state::ok: break;
  }
  if (t <= saturating_add(now, -leeway)) return fail(jwt_error::expired, "token has expired");
  claims.exp = t;
  switch (read_date(p, "nbf", true, t)) {
    case date_state::absent: break;
    case date_state::bad: return fail(jwt_error::bad_claim, "\"nbf\" is not a NumericDate");
    case date_state::ok:
      if (t > saturating_add(now, leeway))
        return fail(jwt_error::not_yet_valid, "token is not valid yet");
  }
  switch (read_date(p, "iat", true, t)) {
    case date_state::absent: break;
    case date_state::bad: return fail(jwt_error::bad_claim, "\"iat\" is not a NumericDate");
    case date_state::ok:
      if (t > saturating_add(now, leeway))
        return fail(jwt_error::issued_in_future, "token was issued in the future");
  }
  return std::nullopt;
}

// iss and aud against the trusted lists, and the kind claim when one is required.
std::optional<jwt_failure> check_audience(const json& p, const jwt_policy& policy) {
  if (const auto it = p.find("iss"); it != p.end()) {
    if (!it->is_string()) return fail(jwt_error::bad_claim, "\"iss\" is not a string");
    const std::string& iss = it->get_ref<const std::string&>();
    if (!policy.issuers.empty() && !contains(policy.issuers, iss))
      return fail(jwt_error::wrong_issuer, "issuer \"" + printable(iss) + "\" is not trusted");
  } else if (!policy.issuers.empty()) {
    return fail(jwt_error::wrong_issuer, "token has no \"iss\"");
  }

  if (const auto it = p.find("aud"); it != p.end()) {
    bool ours = false;
    if (it->is_string()) {
      ours = contains(policy.audiences, it->get_ref<const std::string&>());
    } else if (it->is_array()) {
      for (const auto& a : *it) {
        if (!a.is_string()) return fail(jwt_error::bad_claim, "\"aud\" holds a non-string");
        ours = ours || contains(policy.audiences, a.get_ref<const std::string&>());
      }
    } else {
      return fail(jwt_error::bad_claim, "\"aud\" is neither a string nor an array");
    }
    if (!ours) return fail(jwt_error::wrong_audience, "token is not meant for this audience");
  } else if (!policy.audiences.empty()) {
    return fail(jwt_error::wrong_audience, "token has no \"aud\"");
  }

  if (!policy.required_kind.empty()) {
    const auto it = p.find(policy.kind_claim);
    if (it == p.end() || !it->is_string() ||
        it->get_ref<const std::string&>() != policy.required_kind)
      return fail(jwt_error::wrong_kind, "\"" + policy.kind_claim + "\" must be \"" +
                                             policy.required_kind + "\"");
  }
  return std::nullopt;
}

// sub and roles, into `claims`.
std::optional<jwt_failure> read_subject(const json& p, jwt_claims& claims) {
  if (const auto it = p.find("sub"); it != p.end()) {
    if (!it->is_string()) return fail(jwt_error::bad_claim, "\"sub\" is not a string");
    claims.subject = it->get<std::string>();
  }
  if (const auto it = p.find("roles"); it != p.end()) {
    if (!it->is_array()) return fail(jwt_error::bad_claim, "\"roles\" is not an array");
    for (const auto& r : *it) {
      if (!r.is_string()) return fail(jwt_error::bad_claim, "\"roles\" holds a non-string");
      claims.roles.push_back(r.get<std::string>());
    }
  }
  return std::nullopt;
}

}  // namespace

jwt_result jwt_verifier::verify(std::string_view token, std::int64_t now_unix) const {
  if (token.size() > max_jwt_size)
    return fail(jwt_error::too_large, "token is over " + std::to_string(max_jwt_size) + " bytes");
  token_parts parts;
  if (auto f = split_token(token, parts)) return std::move(*f);

  json header;
  if (!parse_object(parts.header, header))
    return fail(jwt_error::bad_json, "header is not a JSON object");
  std::string alg;
  // One hold on the list for the whole check (the candidates point into it): a key set
  // replaced meanwhile is seen by the next token.
  const jwt_key_set::reader hold(*keys_);
  std::vector<const jwt_key*> candidates;
  if (auto f = select_keys(header, hold.keys(), alg, candidates)) {
    if (f->code == jwt_error::unknown_key) keys_->note_unknown_key();
    return std::move(*f);
  }

  if (parts.signature.empty()) return fail(jwt_error::bad_signature, "empty signature");
  const bool verified = std::any_of(candidates.begin(), candidates.end(), [&](const jwt_key* k) {
    return check_signature(*k, alg, parts.signing_input, parts.signature);
  });
  if (!verified) return fail(jwt_error::bad_signature, "signature does not verify");

  // The payload is parsed only once its signature holds.
  jwt_claims claims;
  if (!parse_object(parts.payload, claims.payload))
    return fail(jwt_error::bad_json, "payload is not a JSON object");
  const json& p = claims.payload;
  const long long leeway = std::max<long long>(0, policy_.leeway_s);
  if (auto f = check_dates(p, now_unix, leeway, claims)) return std::move(*f);
  if (auto f = check_audience(p, policy_)) return std::move(*f);
  if (auto f = read_subject(p, claims)) return std::move(*f);
  return claims;
}

}  // namespace skyrelay::auth
