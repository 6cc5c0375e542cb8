// JWT verification. Keys are generated here with OpenSSL and tokens signed here, so every
// accepted token is checked against an independent signer.
#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "skyrelay/auth/jwt.hpp"

namespace auth = skyrelay::auth;
using auth::jwt_error;
using json = nlohmann::json;

namespace {

constexpr std::int64_t now = 1'700'000'000;
const std::string secret64(64, 's');  // long enough for HS512
const std::string other_secret64(64, 'o');

// ---- keys and signers -----------------------------------------------------------------

struct keypair {
  auth::evp_pkey_ptr pkey;  // private
  std::string public_pem;
};

std::string public_pem_of(EVP_PKEY* pkey) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey) != 1) return {};
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

keypair make_rsa(unsigned bits = 2048) {
  keypair k{auth::evp_pkey_ptr(EVP_RSA_gen(bits)), {}};
  if (k.pkey) k.public_pem = public_pem_of(k.pkey.get());
  return k;
}

keypair make_ec(const char* curve = "P-256") {
  keypair k{auth::evp_pkey_ptr(EVP_EC_gen(curve)), {}};
  if (k.pkey) k.public_pem = public_pem_of(k.pkey.get());
  return k;
}

// Generated once: RSA generation is slow, more so under the sanitizers.
const keypair& rsa_key() {
  static const keypair k = make_rsa();
  return k;
}
const keypair& ec_key() {
  static const keypair k = make_ec();
  return k;
}
const keypair& other_ec_key() {
  static const keypair k = make_ec();
  return k;
}

using signer = std::function<std::string(std::string_view)>;

signer hmac_signer(const EVP_MD* md, std::string secret) {
  return [md, secret](std::string_view input) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(md, secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    return std::string(reinterpret_cast<char*>(mac), len);
  };
}

// The signature EVP_DigestSign makes with SHA-256: PKCS#1 v1.5 for RSA, DER for ECDSA.
std::string digest_sign(EVP_PKEY* pkey, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1)
    return {};
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     input.size()) != 1)
    return {};
  sig.resize(len);
  return sig;
}

signer rs256_signer(EVP_PKEY* pkey) {
  return [pkey](std::string_view input) { return digest_sign(pkey, input); };
}

// JWS ES256: the DER signature turned into 32-byte big-endian r and s.
std::string der_to_raw(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  if (sig == nullptr) return {};
  std::string raw(64, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32);
  ECDSA_SIG_free(sig);
  return raw;
}

signer es256_signer(EVP_PKEY* pkey) {
  return [pkey](std::string_view input) { return der_to_raw(digest_sign(pkey, input)); };
}

std::string make_token(const json& header, const json& payload, const signer& sign) {
  const std::string input =
      auth::base64url_encode(header.dump()) + "." + auth::base64url_encode(payload.dump());
  return input + "." + auth::base64url_encode(sign(input));
}

// A token from raw header and payload text (not necessarily JSON).
std::string make_raw_token(std::string_view header, std::string_view payload,
                           const signer& sign) {
  const std::string input =
      auth::base64url_encode(header) + "." + auth::base64url_encode(payload);
  return input + "." + auth::base64url_encode(sign(input));
}

json claims(json extra = json::object()) {
  json c = {{"sub", "alice"}, {"exp", now + 300}, {"iat", now}, {"roles", {"reader", "writer"}}};
  for (auto& [k, v] : extra.items()) {
    if (v.is_null()) c.erase(k);
    else c[k] = v;
  }
  return c;
}

auth::jwt_key must(std::variant<auth::jwt_key, std::string> made) {
  if (auto* err = std::get_if<std::string>(&made)) {
    ADD_FAILURE() << "key refused: " << *err;
    return {};
  }
  return std::move(std::get<auth::jwt_key>(made));
}

std::string key_error(std::variant<auth::jwt_key, std::string> made) {
  if (auto* err = std::get_if<std::string>(&made)) return *err;
  return "accepted";
}

auth::jwt_verifier hmac_verifier(auth::jwt_policy policy = {}) {
  auth::jwt_verifier v(std::move(policy));
  v.add_key(must(auth::jwt_key::hmac("h1", secret64, {"HS256", "HS384", "HS512"})));
  return v;
}

auth::jwt_verifier ec_verifier(auth::jwt_policy policy = {}) {
  auth::jwt_verifier v(std::move(policy));
  v.add_key(must(auth::jwt_key::public_pem("ec1", ec_key().public_pem, {"ES256"})));
  return v;
}

jwt_error error_of(const auth::jwt_verifier& v, std::string_view token,
                   std::int64_t at = now) {
  auto r = v.verify(token, at);
  if (auto* f = std::get_if<auth::jwt_failure>(&r)) {
    EXPECT_FALSE(f->message.empty());
    return f->code;
  }
  return jwt_error::none;
}

auth::jwt_claims accepted(const auth::jwt_verifier& v, std::string_view token,
                          std::int64_t at = now) {
  auto r = v.verify(token, at);
  if (auto* f = std::get_if<auth::jwt_failure>(&r)) {
    ADD_FAILURE() << token << " -> " << auth::describe(f->code) << ": " << f->message;
    return {};
  }
  return std::get<auth::jwt_claims>(std::move(r));
}

std::string hs256(const json& payload, const json& header = {{"alg", "HS256"}}) {
  return make_token(header, payload, hmac_signer(EVP_sha256(), secret64));
}

std::string es256(const json& payload, const json& header = {{"alg", "ES256"}}) {
  return make_token(header, payload, es256_signer(ec_key().pkey.get()));
}

// Splits a token into its three segments.
std::vector<std::string> segments(const std::string& token) {
  std::vector<std::string> out(1);
  for (char c : token) {
    if (c == '.') out.emplace_back();
    else out.back().push_back(c);
  }
  return out;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "." : "") + parts[i];
  return out;
}

}  // namespace

#define EXPECT_JWT_ERROR(verifier, token, code) \
  EXPECT_EQ(auth::describe(error_of(verifier, token)), std::string(auth::describe(code)))

TEST(Jwt, KeysAreGenerated) {
  ASSERT_TRUE(rsa_key().pkey);
  ASSERT_TRUE(ec_key().pkey);
  EXPECT_NE(rsa_key().public_pem.find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_NE(ec_key().public_pem.find("BEGIN PUBLIC KEY"), std::string::npos);
}

TEST(Jwt, Base64urlIsStrict) {
  EXPECT_EQ(auth::base64url_encode(""), "");
  EXPECT_EQ(auth::base64url_encode("f"), "Zg");
  EXPECT_EQ(auth::base64url_encode("fo"), "Zm8");
  EXPECT_EQ(auth::base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(auth::base64url_encode("foob"), "Zm9vYg");
  EXPECT_EQ(auth::base64url_encode("\xfb\xff"), "-_8");
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  std::string out;
  for (std::size_t n = 0; n <= all.size(); n += 7) {
    ASSERT_TRUE(auth::base64url_decode(auth::base64url_encode(all.substr(0, n)), out)) << n;
    EXPECT_EQ(out, all.substr(0, n));
  }
  ASSERT_TRUE(auth::base64url_decode("-_8", out));
  EXPECT_EQ(out, "\xfb\xff");
  for (const char* bad : {"Zg==", "Zg=", "Zm9v+A", "Zm9v/A", "+_8", "Z", "Zm9vY", "Zh", "Zm9",
                          "Zm9v Yg", "Zm9v\nYg", "Zm9v.", "\xc3\xa9"})
    EXPECT_FALSE(auth::base64url_decode(bad, out)) << bad;
}

TEST(Jwt, Rfc7515AppendixA1) {
  // The HS256 example of RFC 7515 A.1 (its header has CR LF inside), signed elsewhere.
  std::string k;
  ASSERT_TRUE(auth::base64url_decode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow", k));
  auth::jwt_verifier v;
  v.add_key(must(auth::jwt_key::hmac("", k, {"HS256"})));
  const std::string token =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
      ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb2"
      "90Ijp0cnVlfQ"
      ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  auto c = accepted(v, token, 1300819380 - 60);
  EXPECT_EQ(c.exp, 1300819380);
  EXPECT_EQ(c.payload["iss"], "joe");
  EXPECT_EQ(c.payload["http://example.com/is_root"], true);
  EXPECT_EQ(error_of(v, token, 1300819380 + 60), jwt_error::expired);
}

TEST(Jwt, AcceptsHmacFamily) {
  auto v = hmac_verifier();
  const std::pair<const char*, const EVP_MD*> algs[] = {
      {"HS256", EVP_sha256()}, {"HS384", EVP_sha384()}, {"HS512", EVP_sha512()}};
  for (const auto& [alg, md] : algs) {
    auto c = accepted(v, make_token({{"alg", alg}, {"typ", "JWT"}}, claims({{"custom", alg}}),
                                    hmac_signer(md, secret64)));
    EXPECT_EQ(c.subject, "alice") << alg;
    EXPECT_EQ(c.roles, (std::vector<std::string>{"reader", "writer"})) << alg;
    EXPECT_EQ(c.exp, now + 300) << alg;
    EXPECT_EQ(c.payload["custom"], alg);
    // The same token under another hash's alg does not verify.
    const std::string other = std::string(alg) == "HS256" ? "HS384" : "HS256";
    EXPECT_JWT_ERROR(v, make_token({{"alg", other}}, claims(), hmac_signer(md, secret64)),
                     jwt_error::bad_signature);
  }
}

TEST(Jwt, AcceptsRs256) {
  auth::jwt_verifier v;
  v.add_key(must(auth::jwt_key::public_pem("rsa1", rsa_key().public_pem, {"RS256"})));
  auto c = accepted(v, make_token({{"alg", "RS256"}, {"kid", "rsa1"}}, claims(),
                                  rs256_signer(rsa_key().pkey.get())));
  EXPECT_EQ(c.subject, "alice");
  EXPECT_EQ(c.roles.size(), 2u);
  // Without kid the only RS256 key is used.
  accepted(v, make_token({{"alg", "RS256"}}, claims(), rs256_signer(rsa_key().pkey.get())));
  // A signature over other bytes, and a truncated one.
  auto parts = segments(make_token({{"alg", "RS256"}}, claims({{"sub", "bob"}}),
                                   rs256_signer(rsa_key().pkey.get())));
  auto good =
      segments(make_token({{"alg", "RS256"}}, claims(), rs256_signer(rsa_key().pkey.get())));
  EXPECT_JWT_ERROR(v, join({good[0], good[1], parts[2]}), jwt_error::bad_signature);
  std::string sig;
  ASSERT_TRUE(auth::base64url_decode(good[2], sig));
  EXPECT_JWT_ERROR(v, join({good[0], good[1], auth::base64url_encode(sig.substr(1))}),
                   jwt_error::bad_signature);
}

TEST(Jwt, AcceptsEs256) {
  auto v = ec_verifier();
  auto c = accepted(v, es256(claims(), {{"alg", "ES256"}, {"kid", "ec1"}}));
  EXPECT_EQ(c.subject, "alice");
  EXPECT_EQ(c.roles, (std::vector<std::string>{"reader", "writer"}));
  accepted(v, es256(claims({{"roles", nullptr}})));
  // ECDSA signatures are randomised: several in a row all verify.
  for (int i = 0; i < 5; ++i) accepted(v, es256(claims({{"n", i}})));
}

TEST(Jwt, Es256SignatureMustBe64RawBytes) {
  auto v = ec_verifier();
  auto parts = segments(es256(claims()));
  std::string sig;
  ASSERT_TRUE(auth::base64url_decode(parts[2], sig));
  ASSERT_EQ(sig.size(), 64u);
  accepted(v, join(parts));
  const std::string variants[] = {sig.substr(0, 63), sig + '\0', '\0' + sig, sig.substr(1),
                                  std::string(64, '\0'), std::string(64, '\xff')};
  for (const auto& s : variants)
    EXPECT_JWT_ERROR(v, join({parts[0], parts[1], auth::base64url_encode(s)}),
                     jwt_error::bad_signature)
        << s.size();
  // The DER form OpenSSL produces is not a JWS signature.
  const std::string input = parts[0] + "." + parts[1];
  const std::string der = digest_sign(ec_key().pkey.get(), input);
  EXPECT_JWT_ERROR(v, join({parts[0], parts[1], auth::base64url_encode(der)}),
                   jwt_error::bad_signature);
}

TEST(Jwt, AlgNoneIsAlwaysRefused) {
  auto v = hmac_verifier();
  for (const char* alg : {"none", "None", "NONE", "nOnE"}) {
    const std::string input = auth::base64url_encode(json{{"alg", alg}}.dump()) + "." +
                              auth::base64url_encode(claims().dump());
    EXPECT_JWT_ERROR(v, input + ".", jwt_error::alg_none) << alg;
    // Even with a signature that an HS256 key would accept.
    const std::string mac = hmac_signer(EVP_sha256(), secret64)(input);
    EXPECT_JWT_ERROR(v, input + "." + auth::base64url_encode(mac), jwt_error::alg_none)
        << alg;
  }
  // A key cannot list it either.
  EXPECT_NE(key_error(auth::jwt_key::hmac("x", secret64, {"none"})), "accepted");
}

TEST(Jwt, AlgMustBeAString) {
  auto v = hmac_verifier();
  auto sign = hmac_signer(EVP_sha256(), secret64);
  EXPECT_JWT_ERROR(v, make_token({{"typ", "JWT"}}, claims(), sign), jwt_error::malformed);
  EXPECT_JWT_ERROR(v, make_token({{"alg", 256}}, claims(), sign), jwt_error::malformed);
  EXPECT_JWT_ERROR(v, make_token({{"alg", nullptr}}, claims(), sign), jwt_error::malformed);
  EXPECT_JWT_ERROR(v, make_token({{"alg", "PS256"}}, claims(), sign), jwt_error::alg_not_allowed);
  EXPECT_JWT_ERROR(v, make_token({{"alg", "hs256"}}, claims(), sign), jwt_error::alg_not_allowed);
  EXPECT_JWT_ERROR(v, make_token({{"alg", "HS256"}, {"crit", {"exp"}}, {"exp", 1}}, claims(), sign),
                   jwt_error::malformed);
}

TEST(Jwt, RsaPublicKeyIsNoHmacSecret) {
  // The classic confusion: an HS256 token whose secret is the server's RSA public key PEM.
  auth::jwt_verifier v;
  v.add_key(must(auth::jwt_key::public_pem("rsa1", rsa_key().public_pem, {"RS256"})));
  for (const json& header : {json{{"alg", "HS256"}}, json{{"alg", "HS256"}, {"kid", "rsa1"}}}) {
    const std::string token =
        make_token(header, claims(), hmac_signer(EVP_sha256(), rsa_key().public_pem));
    const jwt_error e = error_of(v, token);
    EXPECT_TRUE(e == jwt_error::alg_not_allowed || e == jwt_error::bad_signature)
        << auth::describe(e);
    EXPECT_EQ(e, jwt_error::alg_not_allowed);
  }
  // And a public key cannot be configured for HMAC algorithms at all.
  EXPECT_NE(key_error(auth::jwt_key::public_pem("rsa1", rsa_key().public_pem, {"HS256"})),
            "accepted");
  EXPECT_NE(key_error(auth::jwt_key::public_pem("rsa1", rsa_key().public_pem, {"RS256", "ES256"})),
            "accepted");
  EXPECT_NE(key_error(auth::jwt_key::public_pem("ec1", ec_key().public_pem, {"RS256"})),
            "accepted");
  // ES256 with a kid naming the RSA key.
  EXPECT_JWT_ERROR(v, es256(claims(), {{"alg", "ES256"}, {"kid", "rsa1"}}),
                   jwt_error::alg_not_allowed);
}

TEST(Jwt, BadAndEmptySignatures) {
  auto v = hmac_verifier();
  auto parts = segments(hs256(claims()));
  accepted(v, join(parts));
  EXPECT_JWT_ERROR(v, join({parts[0], parts[1], ""}), jwt_error::bad_signature);
  std::string sig;
  ASSERT_TRUE(auth::base64url_decode(parts[2], sig));
  for (std::size_t i : {std::size_t{0}, std::size_t{15}, std::size_t{31}}) {
    std::string flipped = sig;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    EXPECT_JWT_ERROR(v, join({parts[0], parts[1], auth::base64url_encode(flipped)}),
                     jwt_error::bad_signature);
  }
  EXPECT_JWT_ERROR(v, join({parts[0], parts[1], auth::base64url_encode(sig.substr(0, 31))}),
                   jwt_error::bad_signature);
  EXPECT_JWT_ERROR(v, join({parts[0], parts[1], auth::base64url_encode(sig + "x")}),
                   jwt_error::bad_signature);
  EXPECT_JWT_ERROR(
      v, make_token({{"alg", "HS256"}}, claims(), hmac_signer(EVP_sha256(), other_secret64)),
      jwt_error::bad_signature);
  // The signature covers the payload: a changed payload under the old signature fails.
  auto changed = segments(hs256(claims({{"sub", "mallory"}})));
  EXPECT_JWT_ERROR(v, join({parts[0], changed[1], parts[2]}), jwt_error::bad_signature);
  auto es = ec_verifier();
  auto ep = segments(es256(claims()));
  EXPECT_JWT_ERROR(es, join({ep[0], ep[1], ""}), jwt_error::bad_signature);
}

TEST(Jwt, ExactlyThreeSegments) {
  auto v = hmac_verifier();
  auto parts = segments(hs256(claims()));
  for (const std::string& token :
       {std::string(), std::string("."), std::string(".."), std::string("..."),
        join({parts[0], parts[1]}), join({parts[0]}),
        join({parts[0], parts[1], parts[2], parts[2]}),
        join({parts[0], parts[1], parts[2], ""}), join({"", parts[1], parts[2]}),
        join({parts[0], "", parts[2]})})
    EXPECT_JWT_ERROR(v, token, jwt_error::malformed) << token;
}

TEST(Jwt, Base64MustBeStrictInEverySegment) {
  auto v = hmac_verifier();
  // A payload whose encoding uses '-' and '_' (and a padded length): '+', '/', '=' fail.
  const json payload = claims({{"blob", "\xef\xbf\xbf?>>"}});
  const std::string token = hs256(payload);
  accepted(v, token);
  auto parts = segments(token);
  ASSERT_TRUE(parts[1].find_first_of("-_") != std::string::npos) << parts[1];
  auto std_alphabet = parts[1];
  for (char& c : std_alphabet) c = c == '-' ? '+' : c == '_' ? '/' : c;
  EXPECT_JWT_ERROR(v, join({parts[0], std_alphabet, parts[2]}), jwt_error::bad_base64);
  for (int i = 0; i < 3; ++i) {
    auto padded = parts;
    padded[i] += "=";
    EXPECT_JWT_ERROR(v, join(padded), jwt_error::bad_base64) << i;
    padded[i] += "=";
    EXPECT_JWT_ERROR(v, join(padded), jwt_error::bad_base64) << i;
    auto spaced = parts;
    spaced[i].insert(2, " ");
    EXPECT_JWT_ERROR(v, join(spaced), jwt_error::bad_base64) << i;
  }
  // The HMAC signature is 43 characters: base64 of 32 bytes, padding would make it 44.
  EXPECT_EQ(parts[2].size(), 43u);
  auto sig_plus = parts;
  sig_plus[2][0] = '+';
  EXPECT_JWT_ERROR(v, join(sig_plus), jwt_error::bad_base64);
}

TEST(Jwt, HeaderAndPayloadMustBeJsonObjects) {
  auto v = hmac_verifier();
  auto sign = hmac_signer(EVP_sha256(), secret64);
  const std::string good_payload = claims().dump();
  for (const char* header : {"[]", "\"HS256\"", "{\"alg\":\"HS256\"", "not json", "",
                             "{\"alg\":\"HS256\"} x", "{\"alg\":\"HS\xff\"}"})
    EXPECT_JWT_ERROR(v, make_raw_token(header, good_payload, sign),
                     header[0] == '\0' ? jwt_error::malformed : jwt_error::bad_json)
        << header;
  const std::string header = R"({"alg":"HS256"})";
  for (const char* payload : {"[1]", "42", "null", "{\"exp\":", "{\"sub\":\"\xc3\x28\"}"})
    EXPECT_JWT_ERROR(v, make_raw_token(header, payload, sign), jwt_error::bad_json) << payload;
  // Deep nesting is refused before parsing; shallow nesting is fine.
  const std::string deep = R"({"exp":99999999999,"x":)" + std::string(40, '[') +
                           std::string(40, ']') + "}";
  EXPECT_JWT_ERROR(v, make_raw_token(header, deep, sign), jwt_error::bad_json);
  const std::string shallow = R"({"exp":99999999999,"x":)" + std::string(20, '[') +
                              std::string(20, ']') + "}";
  accepted(v, make_raw_token(header, shallow, sign));
  // Brackets inside strings do not count.
  const std::string in_string = R"({"exp":99999999999,"x":")" + std::string(100, '[') + "\"}";
  accepted(v, make_raw_token(header, in_string, sign));
}

TEST(Jwt, TimeClaims) {
  auto v = hmac_verifier();  // leeway 30
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", now - 3600}})), jwt_error::expired);
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", nullptr}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", "1700000300"}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", true}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", 1e300}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", 18446744073709551615ull}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"nbf", now + 3600}})), jwt_error::not_yet_valid);
  EXPECT_JWT_ERROR(v, hs256(claims({{"nbf", "soon"}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"iat", now + 3600}})), jwt_error::issued_in_future);
  EXPECT_JWT_ERROR(v, hs256(claims({{"iat", json::array()}})), jwt_error::bad_claim);
  EXPECT_EQ(accepted(v, hs256(claims({{"exp", now + 10.75}}))).exp, now + 10);
  accepted(v, hs256(claims({{"nbf", now - 10}, {"iat", now - 10}})));
  // Extreme values do not overflow.
  EXPECT_EQ(accepted(v, hs256(claims({{"exp", INT64_MAX}}))).exp, INT64_MAX);
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", INT64_MIN}})), jwt_error::expired);
  EXPECT_EQ(error_of(v, hs256(claims({{"exp", INT64_MAX}, {"nbf", INT64_MAX}})), INT64_MAX),
            jwt_error::none);
  EXPECT_EQ(error_of(v, hs256(claims({{"exp", INT64_MAX}, {"nbf", INT64_MAX}})), INT64_MAX - 31),
            jwt_error::not_yet_valid);
  EXPECT_EQ(error_of(v, hs256(claims({{"exp", INT64_MAX}, {"iat", 0}})), INT64_MIN),
            jwt_error::issued_in_future);
}

TEST(Jwt, LeewayBoundaries) {
  // Expired when exp <= now - leeway; too early when nbf or iat > now + leeway.
  auto v = hmac_verifier();
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", now - 30}})), jwt_error::expired);
  EXPECT_EQ(accepted(v, hs256(claims({{"exp", now - 29}}))).exp, now - 29);
  EXPECT_JWT_ERROR(v, hs256(claims({{"exp", now - 29.5}})), jwt_error::expired);
  accepted(v, hs256(claims({{"nbf", now + 30}})));
  EXPECT_JWT_ERROR(v, hs256(claims({{"nbf", now + 31}})), jwt_error::not_yet_valid);
  EXPECT_JWT_ERROR(v, hs256(claims({{"nbf", now + 30.25}})), jwt_error::not_yet_valid);
  accepted(v, hs256(claims({{"iat", now + 30}})));
  EXPECT_JWT_ERROR(v, hs256(claims({{"iat", now + 31}})), jwt_error::issued_in_future);

  auto strict = hmac_verifier({.leeway_s = 0});
  EXPECT_JWT_ERROR(strict, hs256(claims({{"exp", now}})), jwt_error::expired);
  accepted(strict, hs256(claims({{"exp", now + 1}, {"nbf", now}, {"iat", now}})));
  EXPECT_JWT_ERROR(strict, hs256(claims({{"nbf", now + 1}})), jwt_error::not_yet_valid);
  auto negative = hmac_verifier({.leeway_s = -100});  // taken as 0
  EXPECT_JWT_ERROR(negative, hs256(claims({{"exp", now}})), jwt_error::expired);
  accepted(negative, hs256(claims({{"exp", now + 1}})));
}

TEST(Jwt, Audience) {
  auto v = hmac_verifier({.audiences = {"skyrelay", "skyrelay-admin"}});
  accepted(v, hs256(claims({{"aud", "skyrelay"}})));
  accepted(v, hs256(claims({{"aud", {"other", "skyrelay-admin"}}})));
  EXPECT_JWT_ERROR(v, hs256(claims({{"aud", "other"}})), jwt_error::wrong_audience);
  EXPECT_JWT_ERROR(v, hs256(claims({{"aud", {"other", "Skyrelay"}}})), jwt_error::wrong_audience);
  EXPECT_JWT_ERROR(v, hs256(claims({{"aud", json::array()}})), jwt_error::wrong_audience);
  EXPECT_JWT_ERROR(v, hs256(claims()), jwt_error::wrong_audience);
  EXPECT_JWT_ERROR(v, hs256(claims({{"aud", 7}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"aud", {"skyrelay", 7}}})), jwt_error::bad_claim);
  // With no audience configured, a token meant for some audience is not for us.
  auto open = hmac_verifier();
  accepted(open, hs256(claims()));
  EXPECT_JWT_ERROR(open, hs256(claims({{"aud", "skyrelay"}})), jwt_error::wrong_audience);
}

TEST(Jwt, Issuer) {
  auto v = hmac_verifier({.issuers = {"https://auth.example"}});
  accepted(v, hs256(claims({{"iss", "https://auth.example"}})));
  EXPECT_JWT_ERROR(v, hs256(claims({{"iss", "https://evil.example"}})), jwt_error::wrong_issuer);
  EXPECT_JWT_ERROR(v, hs256(claims({{"iss", "https://auth.example/"}})), jwt_error::wrong_issuer);
  EXPECT_JWT_ERROR(v, hs256(claims()), jwt_error::wrong_issuer);
  EXPECT_JWT_ERROR(v, hs256(claims({{"iss", {"https://auth.example"}}})), jwt_error::bad_claim);
  auto open = hmac_verifier();
  accepted(open, hs256(claims({{"iss", "anyone"}})));
  EXPECT_JWT_ERROR(open, hs256(claims({{"iss", 1}})), jwt_error::bad_claim);
}

TEST(Jwt, Kind) {
  auto v = hmac_verifier({.required_kind = "connect"});
  accepted(v, hs256(claims({{"typ", "connect"}})));
  EXPECT_JWT_ERROR(v, hs256(claims({{"typ", "publish"}})), jwt_error::wrong_kind);
  EXPECT_JWT_ERROR(v, hs256(claims()), jwt_error::wrong_kind);
  EXPECT_JWT_ERROR(v, hs256(claims({{"typ", {"connect"}}})), jwt_error::wrong_kind);
  // The header's typ is not the kind.
  EXPECT_JWT_ERROR(v, hs256(claims(), {{"alg", "HS256"}, {"typ", "connect"}}),
                   jwt_error::wrong_kind);
  auto custom = hmac_verifier({.kind_claim = "token_use", .required_kind = "publish"});
  accepted(custom, hs256(claims({{"token_use", "publish"}, {"typ", "connect"}})));
  EXPECT_JWT_ERROR(custom, hs256(claims({{"typ", "publish"}})), jwt_error::wrong_kind);
}

TEST(Jwt, SubjectAndRolesTypes) {
  auto v = hmac_verifier();
  auto c = accepted(v, hs256(claims({{"sub", nullptr}, {"roles", nullptr}})));
  EXPECT_EQ(c.subject, "");
  EXPECT_TRUE(c.roles.empty());
  EXPECT_TRUE(accepted(v, hs256(claims({{"roles", json::array()}}))).roles.empty());
  EXPECT_JWT_ERROR(v, hs256(claims({{"sub", 5}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"roles", "admin"}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"roles", {"admin", 1}}})), jwt_error::bad_claim);
  EXPECT_JWT_ERROR(v, hs256(claims({{"roles", {{"admin", true}}}})), jwt_error::bad_claim);
}

TEST(Jwt, KidChoosesTheKey) {
  auth::jwt_verifier v;
  v.add_key(must(auth::jwt_key::hmac("a", secret64, {"HS256"})));
  v.add_key(must(auth::jwt_key::hmac("b", other_secret64, {"HS256"})));
  v.add_key(must(auth::jwt_key::public_pem("ec1", ec_key().public_pem, {"ES256"})));
  auto with_a = hmac_signer(EVP_sha256(), secret64);
  auto with_b = hmac_signer(EVP_sha256(), other_secret64);
  accepted(v, make_token({{"alg", "HS256"}, {"kid", "a"}}, claims(), with_a));
  accepted(v, make_token({{"alg", "HS256"}, {"kid", "b"}}, claims(), with_b));
  EXPECT_JWT_ERROR(v, make_token({{"alg", "HS256"}, {"kid", "a"}}, claims(), with_b),
                   jwt_error::bad_signature);
  EXPECT_JWT_ERROR(v, make_token({{"alg", "HS256"}, {"kid", "c"}}, claims(), with_a),
                   jwt_error::unknown_key);
  EXPECT_JWT_ERROR(v, make_token({{"alg", "HS256"}, {"kid", ""}}, claims(), with_a),
                   jwt_error::unknown_key);
  EXPECT_JWT_ERROR(v, make_token({{"alg", "HS256"}, {"kid", 1}}, claims(), with_a),
                   jwt_error::malformed);
  // Without kid every key allowing the alg is tried.
  accepted(v, make_token({{"alg", "HS256"}}, claims(), with_a));
  accepted(v, make_token({{"alg", "HS256"}}, claims(), with_b));
  accepted(v, es256(claims()));
  EXPECT_JWT_ERROR(v,
                   make_token({{"alg", "HS256"}}, claims(),
                              hmac_signer(EVP_sha256(), std::string(64, 'x'))),
                   jwt_error::bad_signature);
  EXPECT_JWT_ERROR(v, make_token({{"alg", "HS512"}}, claims(), hmac_signer(EVP_sha512(), secret64)),
                   jwt_error::alg_not_allowed);
  // No keys at all.
  auth::jwt_verifier empty;
  EXPECT_JWT_ERROR(empty, hs256(claims()), jwt_error::unknown_key);
}

TEST(Jwt, KeyUrlAndEmbeddedKeyHeadersAreIgnored) {
  auto v = ec_verifier();
  // The attacker's own P-256 key, offered as a jwk header.
  EVP_PKEY* attacker = other_ec_key().pkey.get();
  ASSERT_TRUE(attacker);
  BIGNUM* x = nullptr;
  BIGNUM* y = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(attacker, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
  ASSERT_EQ(EVP_PKEY_get_bn_param(attacker, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
  std::string xb(32, '\0'), yb(32, '\0');
  BN_bn2binpad(x, reinterpret_cast<unsigned char*>(xb.data()), 32);
  BN_bn2binpad(y, reinterpret_cast<unsigned char*>(yb.data()), 32);
  BN_free(x);
  BN_free(y);
  const json jwk = {{"kty", "EC"}, {"crv", "P-256"}, {"x", auth::base64url_encode(xb)},
                    {"y", auth::base64url_encode(yb)}};
  const json hostile = {{"alg", "ES256"},
                        {"jwk", jwk},
                        {"jku", "https://attacker.example/jwks.json"},
                        {"x5u", "https://attacker.example/cert.pem"},
                        {"x5c", {"MIIBattacker"}}};
  // Signed by the configured key: the extra headers change nothing.
  accepted(v, es256(claims(), hostile));
  // Signed by the attacker's key: refused, with or without a kid naming ours.
  EXPECT_JWT_ERROR(v, make_token(hostile, claims(), es256_signer(attacker)),
                   jwt_error::bad_signature);
  json with_kid = hostile;
  with_kid["kid"] = "ec1";
  EXPECT_JWT_ERROR(v, make_token(with_kid, claims(), es256_signer(attacker)),
                   jwt_error::bad_signature);
  const json hs_jwk = {{"alg", "HS256"},
                       {"jwk", {{"kty", "oct"}, {"k", auth::base64url_encode(other_secret64)}}}};
  EXPECT_JWT_ERROR(v, make_token(hs_jwk, claims(), hmac_signer(EVP_sha256(), other_secret64)),
                   jwt_error::alg_not_allowed);
  auto hv = hmac_verifier();
  EXPECT_JWT_ERROR(hv, make_token(hs_jwk, claims(), hmac_signer(EVP_sha256(), other_secret64)),
                   jwt_error::bad_signature);
}

TEST(Jwt, SizeLimit) {
  auto v = hmac_verifier();
  const std::string small = hs256(claims());
  // Pad a claim until the token is exactly 8192 bytes: accepted; one byte more: refused.
  std::string pad;
  std::string token;
  while (true) {
    token = hs256(claims({{"pad", pad}}));
    if (token.size() >= auth::max_jwt_size) break;
    pad.push_back('p');
  }
  while (token.size() > auth::max_jwt_size) {
    pad.pop_back();
    token = hs256(claims({{"pad", pad}}));
  }
  // Each byte of padding adds one or two characters, so the largest token under the limit
  // is at most two short of it.
  EXPECT_GE(token.size(), auth::max_jwt_size - 2);
  EXPECT_LE(token.size(), auth::max_jwt_size);
  accepted(v, token);
  EXPECT_JWT_ERROR(v, hs256(claims({{"pad", pad + "ppp"}})), jwt_error::too_large);
  EXPECT_JWT_ERROR(v, std::string(auth::max_jwt_size + 1, 'a'), jwt_error::too_large);
  EXPECT_JWT_ERROR(v, small + std::string(auth::max_jwt_size, 'a'), jwt_error::too_large);
}

TEST(Jwt, KeyFactoriesCheckTheirInput) {
  EXPECT_EQ(key_error(auth::jwt_key::hmac("k", std::string(32, 'k'), {"HS256"})), "accepted");
  EXPECT_NE(key_error(auth::jwt_key::hmac("k", std::string(31, 'k'), {"HS256"})), "accepted");
  EXPECT_NE(key_error(auth::jwt_key::hmac("k", std::string(32, 'k'), {"HS256", "HS384"})),
            "accepted");
  EXPECT_NE(key_error(auth::jwt_key::hmac("k", secret64, {})), "accepted");
  EXPECT_NE(key_error(auth::jwt_key::hmac("k", secret64, {"RS256"})), "accepted");
  EXPECT_NE(key_error(auth::jwt_key::public_pem("k", "", {"RS256"})), "accepted");
  EXPECT_NE(key_error(auth::jwt_key::public_pem("k", "-----BEGIN PUBLIC KEY-----\nAAAA\n"
                                                     "-----END PUBLIC KEY-----\n",
                                                {"RS256"})),
            "accepted");
  EXPECT_NE(key_error(auth::jwt_key::public_pem("k", rsa_key().public_pem, {})), "accepted");
  EXPECT_EQ(key_error(auth::jwt_key::public_pem("k", ec_key().public_pem, {"ES256"})), "accepted");
  // A private key PEM is not a public key.
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio.get(), ec_key().pkey.get(), nullptr, nullptr, 0,
                                     nullptr, nullptr),
            1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  EXPECT_NE(key_error(auth::jwt_key::public_pem("k", std::string_view(data, len), {"ES256"})),
            "accepted");
  // Small RSA keys and other curves are refused.
  auto rsa1024 = make_rsa(1024);
  ASSERT_TRUE(rsa1024.pkey);
  EXPECT_NE(key_error(auth::jwt_key::public_pem("k", rsa1024.public_pem, {"RS256"})), "accepted");
  auto p384 = make_ec("P-384");
  ASSERT_TRUE(p384.pkey);
  EXPECT_NE(key_error(auth::jwt_key::public_pem("k", p384.public_pem, {"ES256"})), "accepted");
}

TEST(Jwt, DescribeNamesEveryError) {
  std::set<std::string> names;
  for (int i = 0; i <= static_cast<int>(jwt_error::bad_claim); ++i)
    names.insert(auth::describe(static_cast<jwt_error>(i)));
  EXPECT_EQ(names.size(), static_cast<std::size_t>(jwt_error::bad_claim) + 1);
  EXPECT_EQ(std::string(auth::describe(jwt_error::wrong_kind)), "wrong_kind");
}

// ---- the replaceable key set (JWKS rotation) --------------------------------------------

namespace {

std::shared_ptr<const auth::jwt_key> shared_hmac(const std::string& kid, const std::string& s) {
  return std::make_shared<const auth::jwt_key>(must(auth::jwt_key::hmac(kid, s, {"HS256"})));
}

std::string hs256_kid(const std::string& kid, const std::string& s) {
  return make_token({{"alg", "HS256"}, {"kid", kid}}, claims(), hmac_signer(EVP_sha256(), s));
}

}  // namespace

TEST(JwtKeySet, ReplaceSwapsTheKeysOfEveryVerifierSharingTheSet) {
  auto set = std::make_shared<auth::jwt_key_set>();
  auth::jwt_verifier v({}, set);
  auth::jwt_verifier same(v);  // a copy (auth_config is copied around) shares the set too
  const std::string token_a = hs256_kid("a", secret64);
  const std::string token_b = hs256_kid("b", other_secret64);
  EXPECT_JWT_ERROR(v, token_a, jwt_error::unknown_key);  // empty until the first replace

  set->replace({shared_hmac("a", secret64)});
  accepted(v, token_a);
  EXPECT_JWT_ERROR(v, token_b, jwt_error::unknown_key);

  // Rotation: b added, then a removed; a token of the removed key stops verifying.
  set->replace({shared_hmac("a", secret64), shared_hmac("b", other_secret64)});
  accepted(v, token_a);
  accepted(same, token_b);
  set->replace({shared_hmac("b", other_secret64)});
  EXPECT_JWT_ERROR(same, token_a, jwt_error::unknown_key);
  accepted(v, token_b);
  EXPECT_EQ(set->size(), 1u);

  // add_key on a verifier goes through the same set (copy, then swap).
  v.add_key(must(auth::jwt_key::hmac("a", secret64, {"HS256"})));
  accepted(same, token_a);
  EXPECT_EQ(set->size(), 2u);
}

TEST(JwtKeySet, AReaderKeepsItsListThroughAReplace) {
  auto set = std::make_shared<auth::jwt_key_set>();
  set->replace({shared_hmac("a", secret64)});
  {
    const auth::jwt_key_set::reader hold(*set);
    set->replace({});  // writes the other slot: no wait for this reader
    EXPECT_EQ(set->size(), 0u);
    // The held list and its key are still whole for the reader.
    ASSERT_EQ(hold.keys().size(), 1u);
    EXPECT_EQ(hold.keys().front()->id, "a");
    EXPECT_EQ(hold.keys().front()->secret, secret64);
  }
  // A copy of the keys outlives any number of replaces.
  set->replace({shared_hmac("b", other_secret64)});
  const auth::jwt_key_list copy = set->keys();
  set->replace({});
  set->replace({});
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy.front()->id, "b");
}

// Verifications on several threads while another swaps the list: each token is either
// accepted or refused as unknown_key (its key is out at that instant), never anything else.
// Bounded in count; run under ASan/UBSan and TSan with the rest of the unit tests.
TEST(JwtKeySet, VerifyingWhileTheSetIsSwappedSeesWholeLists) {
  auto set = std::make_shared<auth::jwt_key_set>();
  set->replace({shared_hmac("a", secret64)});
  const auth::jwt_verifier v({}, set);
  const std::string tokens[] = {hs256_kid("a", secret64), hs256_kid("b", other_secret64)};
  std::atomic<int> odd{0}, accepted_count{0}, finished{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t)
    readers.emplace_back([&, t] {
      for (int i = 0; i < 1500; ++i) {
        auto r = v.verify(tokens[(i + t) % 2], now);
        if (std::holds_alternative<auth::jwt_claims>(r)) ++accepted_count;
        else if (std::get<auth::jwt_failure>(r).code != jwt_error::unknown_key) ++odd;
      }
      ++finished;
    });
  // Every list holds a or b, so some tokens verify whatever the interleaving.
  const auth::jwt_key_list lists[] = {
      {shared_hmac("a", secret64)},
      {shared_hmac("b", other_secret64)},
      {shared_hmac("a", secret64), shared_hmac("b", other_secret64)}};
  int swaps = 0;
  for (; swaps < 200000 && finished.load() < 2; ++swaps) set->replace(lists[swaps % 3]);
  for (auto& r : readers) r.join();
  EXPECT_GT(swaps, 0);
  EXPECT_EQ(odd.load(), 0);
  EXPECT_GT(accepted_count.load(), 0);
}

TEST(JwtKeySet, UnknownKidRaisesTheFlagOnceAndCountsEveryToken) {
  auto set = std::make_shared<auth::jwt_key_set>();
  set->replace({shared_hmac("a", secret64)});
  const auth::jwt_verifier v({}, set);
  EXPECT_FALSE(set->wait_unknown_key(std::chrono::milliseconds(0)));
  for (int i = 0; i < 5; ++i)
    EXPECT_JWT_ERROR(v, hs256_kid("made-up-" + std::to_string(i), secret64),
                     jwt_error::unknown_key);
  accepted(v, hs256_kid("a", secret64));  // a known kid raises nothing
  EXPECT_JWT_ERROR(v, hs256_kid("a", other_secret64), jwt_error::bad_signature);
  EXPECT_EQ(set->unknown_key_tokens(), 5u);
  EXPECT_TRUE(set->wait_unknown_key(std::chrono::milliseconds(0)));   // raised, now lowered
  EXPECT_FALSE(set->wait_unknown_key(std::chrono::milliseconds(0)));

  // A waiter is woken by a token from another thread, long before its timeout.
  std::thread io([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    v.verify(hs256_kid("zz", secret64), now);
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(set->wait_unknown_key(std::chrono::seconds(30)));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  io.join();

  // wake() ends a wait without a token: the answer is false.
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    set->wake();
  });
  EXPECT_FALSE(set->wait_unknown_key(std::chrono::seconds(30)));
  stopper.join();
}

TEST(JwtKeySet, MetricsOnlyForAJwksFedSet) {
  auth::jwt_key_set set;
  std::string out;
  set.write_metrics(out);
  EXPECT_TRUE(out.empty());
  set.set_jwks(true);
  set.replace({shared_hmac("a", secret64)});
  set.count_refresh(true, now);
  set.count_refresh(false, now + 5);
  set.count_unknown_kid_refetch();
  set.write_metrics(out);
  EXPECT_NE(out.find("\nskyrelay_jwks_keys 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\nskyrelay_jwks_refreshes_total 1\n"), std::string::npos);
  EXPECT_NE(out.find("\nskyrelay_jwks_refresh_failures_total 1\n"), std::string::npos);
  EXPECT_NE(out.find("\nskyrelay_jwks_unknown_kid_refetches_total 1\n"), std::string::npos);
  EXPECT_NE(out.find("\nskyrelay_jwks_last_success_timestamp_seconds 1700000000\n"),
            std::string::npos);
  EXPECT_NE(out.find("# TYPE skyrelay_jwks_refresh_failures_total counter\n"),
            std::string::npos);
}
