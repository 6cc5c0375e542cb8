// The publish API's body codec.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "skyrelay/proto/publish_api.hpp"

namespace proto = skyrelay::proto;
using json = nlohmann::json;

namespace {

proto::publish_request ok(std::string_view body, std::string_view header_key = {}) {
  auto r = proto::decode_publish(body, header_key);
  if (auto* e = std::get_if<proto::publish_error>(&r)) {
    ADD_FAILURE() << body << " -> " << e->code << ": " << e->message;
    return {};
  }
  return std::get<proto::publish_request>(r);
}

std::string error_of(std::string_view body, std::string_view header_key = {}) {
  auto r = proto::decode_publish(body, header_key);
  if (auto* e = std::get_if<proto::publish_error>(&r)) return e->code + ": " + e->message;
  return "accepted";
}

}  // namespace

TEST(PublishApi, OneEventWithEveryField) {
  auto r = ok(R"({"event":"t","data":{"a":[1,2.5,"x"]},"to":["r1","r2"],"skip":"s1",
                  "namespace":"/chat","policy":"drop_oldest","idempotency_key":"k"})");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_FALSE(r.batch);
  const auto& p = r.events[0];
  EXPECT_EQ(p.event, "t");
  EXPECT_EQ(json::parse(p.data), json::parse(R"({"a":[1,2.5,"x"]})"));
  EXPECT_EQ(p.to, (std::vector<std::string>{"r1", "r2"}));
  EXPECT_EQ(p.skip, (std::vector<std::string>{"s1"}));
  EXPECT_EQ(p.nsp, "/chat");
  EXPECT_EQ(p.policy, skyrelay::overflow_policy::drop_oldest);
  EXPECT_EQ(r.idempotency_key, "k");
}

TEST(PublishApi, DefaultsAndBatches) {
  auto one = ok(R"({"event":"t"})");
  EXPECT_EQ(one.events[0].data, "null");
  EXPECT_TRUE(one.events[0].to.empty());
  EXPECT_EQ(one.events[0].nsp, "/");
  EXPECT_FALSE(one.events[0].policy);
  auto batch = ok(R"({"events":[{"event":"a","to":"x"},{"event":"b","data":false}]})", "hk");
  EXPECT_TRUE(batch.batch);
  ASSERT_EQ(batch.events.size(), 2u);
  EXPECT_EQ(batch.events[1].data, "false");
  EXPECT_EQ(batch.idempotency_key, "hk");
  EXPECT_EQ(ok(R"({"event":"t","idempotency_key":"same"})", "same").idempotency_key, "same");
}

TEST(PublishApi, RefusesWhatItCannotPublish) {
  const std::pair<const char*, const char*> cases[] = {
      {"{", "bad_json"},
      {"[]", "object"},
      {R"({"event":1})", "event"},
      {R"({"event":"t","to":5})", "to"},
      {R"({"event":"t","to":[""]})", "to"},
      {R"({"event":"t","skip":[1]})", "skip"},
      {R"({"event":"t","namespace":"x"})", "namespace"},
      {R"({"event":"t","policy":1})", "policy"},
      {R"({"event":"t","what":1})", "what"},
      {R"({"events":{}})", "1 to 1000"},
      {R"({"events":[{"event":"a"},{"event":"b","idempotency_key":"k"}]})", "events[1]"},
      {R"({"events":[{"event":"a"}],"event":"b"})", "\"event\""},
      {R"({"event":"t","idempotency_key":""})", "idempotency_key"},
  };
  for (const auto& [body, fragment] : cases)
    EXPECT_NE(error_of(body).find(fragment), std::string::npos) << body << " -> "
                                                               << error_of(body);
  EXPECT_NE(error_of(R"({"event":"t","idempotency_key":"a"})", "b").find("differs"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"event":"t"})", std::string(201, 'k')).find("200"), std::string::npos);
  std::string deep = R"({"event":"t","data":)" + std::string(200, '[') + std::string(200, ']') + "}";
  EXPECT_NE(error_of(deep).find("128"), std::string::npos);
}

TEST(PublishApi, AnswersOneOrAList) {
  std::vector<proto::publish_receipt_view> receipts{{"E:7", "room", 3, "E.4", 2},
                                                    {"E:8", {}, 0, {}, 5}};
  EXPECT_EQ(json::parse(proto::encode_published({receipts[0]}, false, false)),
            json::parse(R"({"published":{"id":"E:7","topic":"room","seq":3,"epoch":"E.4",
                                         "delivered":2},"duplicate":false})"));
  EXPECT_EQ(json::parse(proto::encode_published(receipts, true, true)),
            json::parse(R"({"published":[{"id":"E:7","topic":"room","seq":3,"epoch":"E.4",
                                          "delivered":2},
                                         {"id":"E:8","delivered":5}],"duplicate":true})"));
}

TEST(PublishApi, FingerprintIgnoresSpellingButNotMeaning) {
  auto fp = [](std::string_view body, std::string_view header_key = {}) {
    return proto::publish_fingerprint(ok(body, header_key));
  };
  const auto base = fp(R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r1","r2"]})");
  // The same request spelled otherwise: whitespace, key order, the key's place.
  EXPECT_EQ(fp(R"({ "to" : ["r1","r2"], "data": {"b":[2, 3], "a":1}, "event":"e" })"), base);
  EXPECT_EQ(fp(R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r1","r2"],"idempotency_key":"k"})"),
            fp(R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r1","r2"]})", "k"));
  EXPECT_EQ(fp(R"({"event":"e"})"), fp(R"({"event":"e","data":null})"));
  // Anything that changes what is published changes it.
  for (std::string_view other :
       {R"({"event":"f","data":{"a":1,"b":[2,3]},"to":["r1","r2"]})",
        R"({"event":"e","data":{"a":2,"b":[2,3]},"to":["r1","r2"]})",
        R"({"event":"e","data":{"a":1,"b":[3,2]},"to":["r1","r2"]})",
        R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r2","r1"]})",
        R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r1r2"]})",
        R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r1","r2"],"skip":"s"})",
        R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r1","r2"],"namespace":"/x"})",
        R"({"event":"e","data":{"a":1,"b":[2,3]},"to":["r1","r2"],"policy":"drop_oldest"})",
        R"({"events":[{"event":"e","data":{"a":1,"b":[2,3]},"to":["r1","r2"]}]})"})
    EXPECT_NE(fp(other), base) << other;
  EXPECT_NE(fp(R"({"events":[{"event":"a"},{"event":"b"}]})"),
            fp(R"({"events":[{"event":"b"},{"event":"a"}]})"));
}
