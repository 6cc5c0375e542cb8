// libFuzzer target: JWT verification. The first byte chooses the mode and the policy.
//   mode 0 (bit 0 clear): the rest is a token, verified as it is against HS256/384/512,
//     RS256 and ES256 keys (only the fuzzer's luck could sign it; this drives the splitting,
//     base64url, header and key-selection paths and the RSA and ECDSA checks).
//   mode 1 (bit 0 set): the rest is header JSON, a newline, payload JSON; the harness signs
//     them with the HMAC secret (bits 3-4: HS256, HS384, HS512), so the payload's claims are
//     checked too.
// Bits 1-2 pick a policy. Also checked: base64url decoding is canonical (whatever decodes
// re-encodes to the same text), and an accepted token is never expired.
#include <openssl/evp.h>
#include <openssl/bio.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "skyrelay/auth/jwt.hpp"

namespace auth = skyrelay::auth;

namespace {

constexpr std::int64_t now = 1'700'000'000;
const std::string secret(64, 'f');

// A public key PEM for a fresh key pair of the given kind (generated once per run).
std::string public_pem(EVP_PKEY* pkey) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  if (bio != nullptr && PEM_write_bio_PUBKEY(bio, pkey) == 1) {
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio, &data);
    out.assign(data, static_cast<std::size_t>(len));
  }
  BIO_free(bio);
  EVP_PKEY_free(pkey);
  return out;
}

void add(auth::jwt_verifier& v, std::variant<auth::jwt_key, std::string> key) {
  if (auto* k = std::get_if<auth::jwt_key>(&key)) v.add_key(std::move(*k));
  else __builtin_trap();
}

auth::jwt_verifier make_verifier(int policy_choice) {
  auth::jwt_policy policy;
  switch (policy_choice) {
    case 0: break;
    case 1: policy.audiences = {"skyrelay"}; break;
    case 2: policy.issuers = {"https://auth.example"}; policy.required_kind = "connect"; break;
    case 3:
      policy.audiences = {"skyrelay", "other"};
      policy.issuers = {"a", "b"};
      policy.leeway_s = 0;
      break;
  }
  static const std::string rsa_pem = public_pem(EVP_RSA_gen(2048));
  static const std::string ec_pem = public_pem(EVP_EC_gen("P-256"));
  auth::jwt_verifier v(std::move(policy));
  add(v, auth::jwt_key::hmac("h", secret, {"HS256", "HS384", "HS512"}));
  add(v, auth::jwt_key::hmac("h2", std::string(32, 'g'), {"HS256"}));
  add(v, auth::jwt_key::public_pem("rsa", rsa_pem, {"RS256"}));
  add(v, auth::jwt_key::public_pem("ec", ec_pem, {"ES256"}));
  return v;
}

const auth::jwt_verifier& verifier(int policy_choice) {
  static const auth::jwt_verifier all[4] = {make_verifier(0), make_verifier(1), make_verifier(2),
                                            make_verifier(3)};
  return all[policy_choice & 3];
}

void check_base64(std::string_view text) {
  std::string decoded;
  if (auth::base64url_decode(text, decoded) && auth::base64url_encode(decoded) != text)
    __builtin_trap();
}

}  // namespace

// The keys are made here, before any input runs: RSA key generation takes seconds on a loaded
// machine, and inside the first input it once passed libFuzzer's per-input timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  verifier(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auth::jwt_verifier& v = verifier((control >> 1) & 3);

  std::string token;
  if ((control & 1) == 0) {
    token.assign(rest);
    check_base64(rest.substr(0, rest.find('.')));
  } else {
    const auto nl = rest.find('\n');
    const std::string_view header = rest.substr(0, nl);
    const std::string_view payload =
        nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    token = auth::base64url_encode(header) + "." + auth::base64url_encode(payload);
    const EVP_MD* md = ((control >> 3) & 3) == 1 ? EVP_sha384()
                       : ((control >> 3) & 3) == 2 ? EVP_sha512()
                                                   : EVP_sha256();
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(md, secret.data(), static_cast<int>(secret.size()),
             reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac, &len) ==
        nullptr)
      return 0;
    token += "." + auth::base64url_encode(std::string_view(reinterpret_cast<char*>(mac), len));
  }

  auto result = v.verify(token, now);
  if (auto* claims = std::get_if<auth::jwt_claims>(&result)) {
    if (claims->exp <= now - std::max<long>(0, v.policy().leeway_s)) __builtin_trap();
    if (!claims->payload.is_object()) __builtin_trap();
  } else if (std::get<auth::jwt_failure>(result).code == auth::jwt_error::none) {
    __builtin_trap();
  }
  return 0;
}
