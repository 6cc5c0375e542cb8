// The handshake check on top of the JWT verifier: token kinds (connect vs publish), the
// identity a connection gets, when it ends, and Bearer header parsing. Tokens are signed here
// with OpenSSL's HMAC, independently of the verifier.
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <climits>

#include <nlohmann/json.hpp>

#include "skyrelay/auth/connection_auth.hpp"

namespace auth = skyrelay::auth;
using json = nlohmann::json;

namespace {

constexpr std::int64_t now = 1'700'000'000;
const std::string secret(32, 'k');

std::string sign_hs256(const json& payload, const std::string& key = secret) {
  const std::string input = auth::base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." +
                            auth::base64url_encode(payload.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + auth::base64url_encode(std::string(reinterpret_cast<char*>(mac), len));
}

auth::auth_config config(bool require_kind = true, long leeway = 30) {
  auth::jwt_policy policy;
  policy.audiences = {"skyrelay"};
  policy.leeway_s = leeway;
  auth::auth_config cfg{auth::jwt_verifier(policy)};
  cfg.verifier.add_key(std::get<auth::jwt_key>(auth::jwt_key::hmac("k1", secret, {"HS256"})));
  cfg.require_kind = require_kind;
  return cfg;
}

json claims(const char* kind) {
  json p = {{"sub", "ada"}, {"aud", "skyrelay"}, {"exp", now + 60}, {"roles", {"ops", "dev"}}};
  if (kind) p["typ"] = kind;
  return p;
}

std::string refusal_code(const auth::auth_result& r) {
  const auto* f = std::get_if<auth::auth_refusal>(&r);
  return f ? f->code : std::string("accepted");
}

}  // namespace

TEST(ConnectionAuth, ConnectTokenGivesTheIdentityAndWhenItEnds) {
  const auto cfg = config();
  auto r = auth::authenticate(cfg, sign_hs256(claims("connect")), auth::token_use::connect, now);
  ASSERT_TRUE(std::holds_alternative<auth::identity_ptr>(r)) << refusal_code(r);
  const auto& id = *std::get<auth::identity_ptr>(r);
  EXPECT_EQ(id.subject, "ada");
  EXPECT_EQ(id.roles, (std::vector<std::string>{"ops", "dev"}));
  EXPECT_EQ(id.exp, now + 60);
  EXPECT_EQ(id.ends_at, now + 60 + 30);  // the leeway applies to a live connection too
  EXPECT_EQ(json::parse(id.claims_json), claims("connect"));
}

TEST(ConnectionAuth, KindsDoNotCross) {
  const auto cfg = config();
  const auto publish = sign_hs256(claims("publish"));
  const auto connect = sign_hs256(claims("connect"));
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, publish, auth::token_use::connect, now)),
            "wrong_kind");
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, connect, auth::token_use::publish, now)),
            "wrong_kind");
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, publish, auth::token_use::publish, now)),
            "accepted");
  // Another kind, or a kind that is not a string, is refused for both uses.
  auto odd = claims(nullptr);
  odd["typ"] = 7;
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, sign_hs256(odd), auth::token_use::connect, now)),
            "wrong_kind");
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, sign_hs256(claims("refresh")),
                                            auth::token_use::connect, now)),
            "wrong_kind");
}

TEST(ConnectionAuth, MissingKindIsAConnectTokenOnlyWhenAllowed) {
  const auto token = sign_hs256(claims(nullptr));
  EXPECT_EQ(refusal_code(auth::authenticate(config(true), token, auth::token_use::connect, now)),
            "wrong_kind");
  EXPECT_EQ(refusal_code(auth::authenticate(config(false), token, auth::token_use::connect, now)),
            "accepted");
  // Never a publish token.
  EXPECT_EQ(refusal_code(auth::authenticate(config(false), token, auth::token_use::publish, now)),
            "wrong_kind");
}

TEST(ConnectionAuth, VerifierFailuresKeepTheirCodes) {
  const auto cfg = config(true, 0);
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, "", auth::token_use::connect, now)),
            "token_required");
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, "a.b", auth::token_use::connect, now)),
            "malformed");
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, sign_hs256(claims("connect"), std::string(32, 'x')),
                                            auth::token_use::connect, now)),
            "bad_signature");
  auto late = claims("connect");
  late["exp"] = now;
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, sign_hs256(late), auth::token_use::connect, now)),
            "expired");
  auto other = claims("connect");
  other["aud"] = "elsewhere";
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, sign_hs256(other), auth::token_use::connect, now)),
            "wrong_audience");
  const std::string none = auth::base64url_encode(R"({"alg":"none"})") + "." +
                           auth::base64url_encode(claims("connect").dump()) + ".";
  EXPECT_EQ(refusal_code(auth::authenticate(cfg, none, auth::token_use::connect, now)), "alg_none");
}

TEST(ConnectionAuth, ExpiryWithoutLeewayEndsAtExp) {
  const auto cfg = config(true, 0);
  auto r = auth::authenticate(cfg, sign_hs256(claims("connect")), auth::token_use::connect, now);
  ASSERT_TRUE(std::holds_alternative<auth::identity_ptr>(r));
  EXPECT_EQ(std::get<auth::identity_ptr>(r)->ends_at, now + 60);
}

TEST(ConnectionAuth, TimeLeftIsBoundedAndNeverNegative) {
  auth::identity id;
  const std::int64_t t = auth::unix_now();
  id.ends_at = t - 100;
  EXPECT_EQ(auth::time_left(id).count(), 0);
  id.ends_at = t + 60;
  EXPECT_GT(auth::time_left(id).count(), 58'000);
  EXPECT_LE(auth::time_left(id).count(), 60'000);
  id.ends_at = LLONG_MAX;  // a token that never expires in practice: capped, no overflow
  EXPECT_GT(auth::time_left(id), std::chrono::hours(24 * 365 * 9));
  EXPECT_LE(auth::time_left(id), std::chrono::hours(24 * 366 * 10));
}

TEST(ConnectionAuth, BearerHeader) {
  EXPECT_EQ(auth::bearer_token("Bearer abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(auth::bearer_token("bearer  abc "), "abc");
  EXPECT_EQ(auth::bearer_token("BEARER x"), "x");
  EXPECT_FALSE(auth::bearer_token("Bearer"));
  EXPECT_FALSE(auth::bearer_token("Bearer "));
  EXPECT_FALSE(auth::bearer_token("Bearerabc"));
  EXPECT_FALSE(auth::bearer_token("Basic dXNlcjpwYXNz"));
  EXPECT_FALSE(auth::bearer_token(""));
}
