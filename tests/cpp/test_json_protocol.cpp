#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "skyrelay/proto/json_protocol.hpp"

namespace proto = skyrelay::proto;
using skyrelay::error_code;
using json = nlohmann::json;

namespace {

proto::client_message ok(std::string_view text) {
  auto r = proto::decode(text);
  EXPECT_TRUE(std::holds_alternative<proto::client_message>(r)) << text;
  return std::holds_alternative<proto::client_message>(r) ? std::get<proto::client_message>(r)
                                                          : proto::client_message{};
}

proto::decode_error bad(std::string_view text) {
  auto r = proto::decode(text);
  EXPECT_TRUE(std::holds_alternative<proto::decode_error>(r)) << text;
  return std::holds_alternative<proto::decode_error>(r) ? std::get<proto::decode_error>(r)
                                                        : proto::decode_error{};
}

}  // namespace

TEST(JsonProtocolDecode, Subscribe) {
  auto m = ok(R"({"type":"subscribe","topic":"WELL-001"})");
  EXPECT_EQ(m.type, proto::client_type::subscribe);
  ASSERT_EQ(m.topics.size(), 1u);
  EXPECT_EQ(m.topics[0], "WELL-001");
  EXPECT_FALSE(m.topics_as_list);
  EXPECT_FALSE(m.since.has_value());

  auto l = ok(R"({"type":"subscribe","topics":["a","b"],"since":17,"id":7})");
  EXPECT_EQ(l.topics, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(l.topics_as_list);
  EXPECT_EQ(l.since, 17u);
  EXPECT_EQ(l.id, "7");
}

TEST(JsonProtocolDecode, UnsubscribePingEventRequest) {
  EXPECT_EQ(ok(R"({"type":"unsubscribe","topic":"x"})").type, proto::client_type::unsubscribe);
  auto p = ok(R"({"type":"ping","id":"p1"})");
  EXPECT_EQ(p.type, proto::client_type::ping);
  EXPECT_EQ(p.id, "\"p1\"");
  auto e = ok(R"({"type":"event","event":"go","data":{"a":[1,2]}})");
  EXPECT_EQ(e.type, proto::client_type::event);
  EXPECT_EQ(e.event, "go");
  EXPECT_EQ(json::parse(e.data), json::parse(R"({"a":[1,2]})"));
  auto nodata = ok(R"({"type":"event","event":"go"})");
  EXPECT_EQ(nodata.data, "null");
  auto r = ok(R"({"type":"request","id":"42","event":"cmd","data":1})");
  EXPECT_EQ(r.type, proto::client_type::request);
  EXPECT_EQ(r.id, "\"42\"");
  EXPECT_EQ(r.data, "1");
}

TEST(JsonProtocolDecode, Errors) {
  EXPECT_EQ(bad("{nope").code, error_code::bad_json);
  EXPECT_EQ(bad("").code, error_code::bad_json);
  EXPECT_EQ(bad("[1,2]").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"topic":"x"})").code, error_code::unknown_type);
  EXPECT_EQ(bad(R"({"type":5})").code, error_code::unknown_type);
  auto u = bad(R"({"type":"teleport","id":"9"})");
  EXPECT_EQ(u.code, error_code::unknown_type);
  EXPECT_EQ(u.ref, "\"9\"");
  EXPECT_EQ(bad(R"({"type":"subscribe"})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"subscribe","topic":""})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"subscribe","topic":7})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"subscribe","topics":[]})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"subscribe","topic":"x","since":-1})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"subscribe","topic":"x","since":"1"})").code, error_code::bad_message);
  std::string long_topic(proto::max_topic_length + 1, 't');
  EXPECT_EQ(bad(R"({"type":"subscribe","topic":")" + long_topic + "\"}").code,
            error_code::bad_message);
  json many = {{"type", "subscribe"}, {"topics", json::array()}};
  for (std::size_t i = 0; i <= proto::max_topics_per_message; ++i) many["topics"].push_back("t" + std::to_string(i));
  EXPECT_EQ(bad(many.dump()).code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"event"})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"event","event":""})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"request","event":"x"})").code, error_code::bad_message);
  EXPECT_EQ(bad(R"({"type":"ping","id":{"a":1}})").code, error_code::bad_message);
}

TEST(JsonProtocolEncode, ServerMessages) {
  auto w = json::parse(proto::welcome("abc", 30000));
  EXPECT_EQ(w, json::parse(R"({"type":"welcome","sid":"abc","heartbeat_ms":30000})"));

  proto::client_message m;
  m.topics = {"a"};
  EXPECT_EQ(json::parse(proto::subscribed(m)), json::parse(R"({"type":"subscribed","topic":"a"})"));
  m.topics = {"a", "b"};
  m.topics_as_list = true;
  m.id = "\"x\"";
  EXPECT_EQ(json::parse(proto::unsubscribed(m)),
            json::parse(R"({"type":"unsubscribed","topics":["a","b"],"id":"x"})"));

  EXPECT_EQ(json::parse(proto::pong("T", "3")), json::parse(R"({"type":"pong","ts":"T","id":3})"));
  EXPECT_EQ(json::parse(proto::event("tick", "room", 5, "T", R"({"v":1})")),
            json::parse(R"({"type":"event","event":"tick","topic":"room","seq":5,"ts":"T","data":{"v":1}})"));
  auto broadcast = json::parse(proto::event("tick", "", 0, "T", "[1]"));
  EXPECT_FALSE(broadcast.contains("topic"));
  EXPECT_FALSE(broadcast.contains("seq"));
  EXPECT_EQ(json::parse(proto::response_ok("\"42\"", "null")),
            json::parse(R"({"type":"response","id":"42","ok":true,"data":null})"));
  EXPECT_EQ(json::parse(proto::response_error("7", "handler_error", "boom")),
            json::parse(R"({"type":"response","id":7,"ok":false,"error":{"code":"handler_error","message":"boom"}})"));
  EXPECT_EQ(json::parse(proto::error("bad_json", "nope", "")),
            json::parse(R"({"type":"error","code":"bad_json","message":"nope","ref":null})"));
  EXPECT_EQ(json::parse(proto::error("bad_json", "nope", "\"r\""))["ref"], "r");
}

TEST(JsonProtocolEncode, StringEscaping) {
  std::string out;
  proto::append_json_string(out, std::string("q\"b\\n\n\x01\t\xc3\xa9", 10));
  EXPECT_EQ(out, "\"q\\\"b\\\\n\\n\\u0001\\t\xc3\xa9\"");
  EXPECT_EQ(json::parse(out).get<std::string>(), std::string("q\"b\\n\n\x01\t\xc3\xa9", 10));
  // Names with quotes survive a round trip through the event encoder.
  auto e = json::parse(proto::event("we\"ird", "to\\pic", 1, "T", "0"));
  EXPECT_EQ(e["event"], "we\"ird");
  EXPECT_EQ(e["topic"], "to\\pic");
}
