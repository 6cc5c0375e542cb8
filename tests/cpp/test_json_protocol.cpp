// The skyrelay JSON protocol codec (docs/protocol.md).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/proto/json_protocol.hpp"

namespace proto = skyrelay::proto;
using skyrelay::error_code;
using json = nlohmann::json;

namespace {

testing::AssertionResult decodes(std::string_view text, proto::client_message& out) {
  auto r = proto::decode(text);
  if (auto* m = std::get_if<proto::client_message>(&r)) {
    out = *m;
    return testing::AssertionSuccess();
  }
  const auto& e = std::get<proto::decode_error>(r);
  return testing::AssertionFailure() << text << " -> error " << skyrelay::to_string(e.code) << ": "
                                     << e.message;
}

testing::AssertionResult fails(std::string_view text, proto::decode_error& out) {
  auto r = proto::decode(text);
  if (auto* e = std::get_if<proto::decode_error>(&r)) {
    out = *e;
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << text << " decoded without error";
}

error_code code_of(std::string_view text) {
  proto::decode_error e{};
  EXPECT_TRUE(fails(text, e));
  return e.code;
}

json obj(std::string_view type) { return json{{"type", type}}; }

}  // namespace

// ---- decode: each message kind --------------------------------------------------------------

TEST(JsonDecode, SubscribeOneTopic) {
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"type":"subscribe","topic":"WELL-001"})", m));
  EXPECT_EQ(m.type, proto::client_type::subscribe);
  EXPECT_EQ(m.topics, std::vector<std::string>{"WELL-001"});
  EXPECT_FALSE(m.topics_as_list);
  EXPECT_FALSE(m.since);
  EXPECT_TRUE(m.id.empty());
}

TEST(JsonDecode, SubscribeTopicListAndSince) {
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"topics":["a","b","a"],"type":"subscribe"})", m));
  EXPECT_EQ(m.topics, (std::vector<std::string>{"a", "b", "a"}));
  EXPECT_TRUE(m.topics_as_list);
  EXPECT_FALSE(m.since);

  ASSERT_TRUE(decodes(R"({"since":0,"epoch":"e.1","topic":"a","type":"subscribe"})", m));
  ASSERT_TRUE(m.since);
  EXPECT_EQ(*m.since, 0u);
  EXPECT_EQ(m.epoch, "e.1");

  ASSERT_TRUE(
      decodes(R"({"type":"subscribe","topic":"x","since":18446744073709551615,"epoch":"E"})", m));
  EXPECT_EQ(m.since, UINT64_MAX);

  // A one-element list is still answered as a list.
  ASSERT_TRUE(decodes(R"({"type":"subscribe","topics":["only"]})", m));
  EXPECT_TRUE(m.topics_as_list);
}

TEST(JsonDecode, Unsubscribe) {
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"type":"unsubscribe","topic":"t","id":3})", m));
  EXPECT_EQ(m.type, proto::client_type::unsubscribe);
  EXPECT_EQ(m.topics, std::vector<std::string>{"t"});
  EXPECT_EQ(m.id, "3");
  ASSERT_TRUE(decodes(R"({"type":"unsubscribe","topics":["t","u"]})", m));
  EXPECT_EQ(m.topics.size(), 2u);
  EXPECT_TRUE(m.topics_as_list);
}

TEST(JsonDecode, Ping) {
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"type":"ping"})", m));
  EXPECT_EQ(m.type, proto::client_type::ping);
  EXPECT_TRUE(m.id.empty());
  // Unknown extra fields are ignored.
  ASSERT_TRUE(decodes(R"({"type":"ping","id":"p-1","extra":[1,2,3]})", m));
  EXPECT_EQ(m.id, R"("p-1")");
}

TEST(JsonDecode, EventKeepsDataAsJsonText) {
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"type":"event","event":"move","data":{"x":1.5,"tags":["a","\u00e9"]}})", m));
  EXPECT_EQ(m.type, proto::client_type::event);
  EXPECT_EQ(m.event, "move");
  EXPECT_EQ(json::parse(m.data), json::parse(R"({"x":1.5,"tags":["a","é"]})"));
  // Non-ASCII text passes through as UTF-8.
  EXPECT_NE(m.data.find("\xc3\xa9"), std::string::npos);

  for (std::string data : {"null", "true", "0", "-7", "\"str\"", "[]", "{}"}) {
    ASSERT_TRUE(decodes(R"({"type":"event","event":"e","data":)" + data + "}", m));
    EXPECT_EQ(json::parse(m.data), json::parse(data)) << data;
  }
  ASSERT_TRUE(decodes(R"({"type":"event","event":"e"})", m));
  EXPECT_EQ(m.data, "null");
  EXPECT_TRUE(m.id.empty());
}

TEST(JsonDecode, RequestWithStringAndIntegerIds) {
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"type":"request","id":"42","event":"control_command","data":{"on":true}})", m));
  EXPECT_EQ(m.type, proto::client_type::request);
  EXPECT_EQ(m.event, "control_command");
  EXPECT_EQ(m.id, R"("42")");
  EXPECT_EQ(json::parse(m.data), json::parse(R"({"on":true})"));

  ASSERT_TRUE(decodes(R"({"type":"request","id":42,"event":"c"})", m));
  EXPECT_EQ(m.id, "42");
  ASSERT_TRUE(decodes(R"({"type":"request","id":-9,"event":"c"})", m));
  EXPECT_EQ(m.id, "-9");
  ASSERT_TRUE(decodes(R"({"type":"request","id":"","event":"c"})", m));
  EXPECT_EQ(m.id, R"("")");
  // The id is kept as JSON text: quotes and escapes survive, ready to echo.
  ASSERT_TRUE(decodes(R"({"type":"request","id":"a\"b\\c\n","event":"c"})", m));
  EXPECT_EQ(json::parse(m.id), "a\"b\\c\n");
}

// ---- decode: errors -------------------------------------------------------------------------

TEST(JsonDecode, NotJson) {
  for (std::string_view t : {"", " ", "{", "{nope}", "{\"type\":\"ping\"", "{\"type\":\"ping\"}x",
                             "{'type':'ping'}", "{\"type\":\"ping\",}"})
    EXPECT_EQ(code_of(t), error_code::bad_json) << t;
  // Invalid UTF-8 inside a string is not JSON either.
  EXPECT_EQ(code_of("{\"type\":\"subscribe\",\"topic\":\"\xff\"}"), error_code::bad_json);
}

TEST(JsonDecode, NotAnObject) {
  for (std::string_view t : {"[]", "[{\"type\":\"ping\"}]", "\"ping\"", "42", "null", "true"})
    EXPECT_EQ(code_of(t), error_code::bad_message) << t;
}

TEST(JsonDecode, MissingOrUnknownType) {
  proto::decode_error e{};
  ASSERT_TRUE(fails(R"({"topic":"x"})", e));
  EXPECT_EQ(e.code, error_code::unknown_type);
  EXPECT_TRUE(e.ref.empty());
  for (std::string_view t : {R"({"type":5})", R"({"type":null})", R"({"type":["ping"]})",
                             R"({"type":"PING"})", R"({"type":""})", R"({"type":"teleport"})"})
    EXPECT_EQ(code_of(t), error_code::unknown_type) << t;
  // The message names the type it did not know.
  ASSERT_TRUE(fails(R"({"type":"teleport"})", e));
  EXPECT_NE(e.message.find("teleport"), std::string::npos);
}

TEST(JsonDecode, ErrorsCarryTheIdAsRef) {
  proto::decode_error e{};
  ASSERT_TRUE(fails(R"({"type":"teleport","id":"9"})", e));
  EXPECT_EQ(e.ref, R"("9")");
  ASSERT_TRUE(fails(R"({"id":17})", e));
  EXPECT_EQ(e.code, error_code::unknown_type);
  EXPECT_EQ(e.ref, "17");
  ASSERT_TRUE(fails(R"({"type":"subscribe","topic":"","id":"s1"})", e));
  EXPECT_EQ(e.code, error_code::bad_message);
  EXPECT_EQ(e.ref, R"("s1")");
  ASSERT_TRUE(fails(R"({"type":"event","event":3,"id":5})", e));
  EXPECT_EQ(e.ref, "5");
  // No id: no ref.
  ASSERT_TRUE(fails(R"({"type":"event","event":3})", e));
  EXPECT_TRUE(e.ref.empty());
}

TEST(JsonDecode, IdMustBeStringOrInteger) {
  for (std::string_view t : {R"({"type":"ping","id":1.5})", R"({"type":"ping","id":null})",
                             R"({"type":"ping","id":true})", R"({"type":"ping","id":[1]})",
                             R"({"type":"ping","id":{"a":1}})"}) {
    proto::decode_error e{};
    ASSERT_TRUE(fails(t, e));
    EXPECT_EQ(e.code, error_code::bad_message) << t;
    EXPECT_TRUE(e.ref.empty()) << "an id that cannot be echoed is not echoed: " << t;
  }
}

TEST(JsonDecode, TopicFieldTypes) {
  for (std::string_view t : {
           R"({"type":"subscribe"})",
           R"({"type":"subscribe","topic":7})",
           R"({"type":"subscribe","topic":null})",
           R"({"type":"subscribe","topic":["a"]})",
           R"({"type":"subscribe","topic":""})",
           R"({"type":"subscribe","topics":"a"})",
           R"({"type":"subscribe","topics":[]})",
           R"({"type":"subscribe","topics":["a",1]})",
           R"({"type":"subscribe","topics":["a",""]})",
           R"({"type":"subscribe","topics":{"a":1}})",
           R"({"type":"unsubscribe"})",
           R"({"type":"unsubscribe","topic":""})",
           R"({"type":"unsubscribe","topics":[null]})",
       })
    EXPECT_EQ(code_of(t), error_code::bad_message) << t;
}

TEST(JsonDecode, TopicLengthLimitInBytes) {
  proto::client_message m;
  auto sub = [](const std::string& topic) { return json{{"type", "subscribe"}, {"topic", topic}}.dump(); };
  ASSERT_TRUE(decodes(sub(std::string(proto::max_topic_length, 't')), m));
  EXPECT_EQ(m.topics[0].size(), 256u);
  EXPECT_EQ(code_of(sub(std::string(proto::max_topic_length + 1, 't'))), error_code::bad_message);
  // Counted in bytes, not characters: 128 two-byte characters fit, 129 do not.
  std::string e128, e129;
  for (int i = 0; i < 128; ++i) e128 += "\xc3\xa9";
  e129 = e128 + "\xc3\xa9";
  EXPECT_TRUE(decodes(sub(e128), m));
  EXPECT_EQ(code_of(sub(e129)), error_code::bad_message);
  // The same limit applies inside a list.
  json list = obj("unsubscribe");
  list["topics"] = {"ok", std::string(257, 'x')};
  EXPECT_EQ(code_of(list.dump()), error_code::bad_message);
}

TEST(JsonDecode, TopicCountLimit) {
  json m = obj("subscribe");
  m["topics"] = json::array();
  for (std::size_t i = 0; i < proto::max_topics_per_message; ++i) m["topics"].push_back("t" + std::to_string(i));
  proto::client_message ok;
  ASSERT_TRUE(decodes(m.dump(), ok));
  EXPECT_EQ(ok.topics.size(), 64u);
  m["topics"].push_back("one-too-many");
  EXPECT_EQ(code_of(m.dump()), error_code::bad_message);
}

TEST(JsonDecode, BadSince) {
  for (std::string_view since : {"-1", "1.0", "\"5\"", "null", "[1]", "true", "1e3",
                                 "18446744073709551616"}) {
    std::string t =
        R"({"type":"subscribe","topic":"x","epoch":"E","since":)" + std::string(since) + "}";
    EXPECT_EQ(code_of(t), error_code::bad_message) << since;
  }
  // A resume names one topic and the epoch its seq belongs to.
  for (std::string_view t : {R"({"type":"subscribe","topics":["x"],"since":1,"epoch":"E"})",
                             R"({"type":"subscribe","topic":"x","since":1})",
                             R"({"type":"subscribe","topic":"x","since":1,"epoch":""})",
                             R"({"type":"subscribe","topic":"x","since":1,"epoch":7})",
                             R"({"type":"subscribe","topic":"x","since":1,"epoch":null})"})
    EXPECT_EQ(code_of(t), error_code::bad_message) << t;
  // Without since, an epoch means nothing and is ignored.
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"type":"subscribe","topic":"x","epoch":5})", m));
  EXPECT_FALSE(m.since);
}

TEST(JsonDecode, EventAndRequestNeedAnEventName) {
  for (std::string_view t : {R"({"type":"event"})", R"({"type":"event","event":""})",
                             R"({"type":"event","event":null})", R"({"type":"event","event":1})",
                             R"({"type":"request","id":1})", R"({"type":"request","id":1,"event":""})",
                             R"({"type":"request","id":1,"event":["x"]})"})
    EXPECT_EQ(code_of(t), error_code::bad_message) << t;
}

TEST(JsonDecode, RequestWithoutId) {
  proto::decode_error e{};
  ASSERT_TRUE(fails(R"({"type":"request","event":"cmd","data":1})", e));
  EXPECT_EQ(e.code, error_code::bad_message);
  EXPECT_TRUE(e.ref.empty());
  EXPECT_NE(e.message.find("id"), std::string::npos);
}

TEST(JsonDecode, DeepNestingIsRefusedNotACrash) {
  // A message that is nothing but brackets: small enough for the default 64 KiB limit, far
  // deeper than any real payload. It must come back as an error value.
  for (std::size_t depth : {std::size_t{200}, std::size_t{30000}, std::size_t{100000}}) {
    std::string t = R"({"type":"event","event":"e","data":)" + std::string(depth, '[') +
                    std::string(depth, ']') + "}";
    EXPECT_EQ(code_of(t), error_code::bad_message) << depth;
    std::string o = R"({"type":"event","event":"e","data":)";
    for (std::size_t i = 0; i < depth; ++i) o += "{\"a\":";
    o += "1" + std::string(depth, '}') + "}";
    EXPECT_EQ(code_of(o), error_code::bad_message) << depth;
  }
  // Brackets inside strings are text, not nesting.
  proto::client_message m;
  std::string s = R"({"type":"event","event":"e","data":")" + std::string(5000, '[') + "\\\"" +
                  std::string(5000, '{') + R"("})";
  ASSERT_TRUE(decodes(s, m));
  EXPECT_EQ(json::parse(m.data).get<std::string>().size(), 10001u);
  // Ordinary nesting passes.
  std::string ok = R"({"type":"event","event":"e","data":)" + std::string(proto::max_json_depth - 1, '[') +
                   std::string(proto::max_json_depth - 1, ']') + "}";
  EXPECT_TRUE(decodes(ok, m));
}

// ---- encoders -------------------------------------------------------------------------------

TEST(JsonEncode, Welcome) {
  const auto w = json::parse(proto::welcome("sid-\"1\"", 30000));
  EXPECT_EQ(w, json({{"type", "welcome"}, {"sid", "sid-\"1\""}, {"heartbeat_ms", 30000}}));
}

TEST(JsonEncode, SubscribedAndUnsubscribedMirrorTheRequest) {
  proto::client_message m;
  m.topics = {"WELL-001"};
  EXPECT_EQ(json::parse(proto::subscribed(m, {{17, "ep.3"}})),
            json({{"type", "subscribed"}, {"topic", "WELL-001"}, {"seq", 17}, {"epoch", "ep.3"}}));
  EXPECT_EQ(json::parse(proto::unsubscribed(m)), json({{"type", "unsubscribed"}, {"topic", "WELL-001"}}));

  m.topics = {"a", "b\"", "\xc3\xa9"};
  m.topics_as_list = true;
  m.id = "12";
  const auto s = json::parse(proto::subscribed(m, {{1, "e.1"}, {0, "e\"2"}, {5, "e.3"}}));
  EXPECT_EQ(s["type"], "subscribed");
  EXPECT_EQ(s["topics"], json({"a", "b\"", "\xc3\xa9"}));
  EXPECT_FALSE(s.contains("topic"));
  EXPECT_FALSE(s.contains("seq"));
  EXPECT_EQ(s["positions"], json::parse(R"({"a":{"seq":1,"epoch":"e.1"},"b\"":{"seq":0,"epoch":"e\"2"},
                                            "\u00e9":{"seq":5,"epoch":"e.3"}})"));
  EXPECT_EQ(s["id"], 12);
  EXPECT_FALSE(s.contains("recovered"));

  m.id = R"("u-7")";
  const auto u = json::parse(proto::unsubscribed(m));
  EXPECT_EQ(u["type"], "unsubscribed");
  EXPECT_EQ(u["id"], "u-7");

  // A decoded message goes straight back out.
  proto::client_message d;
  ASSERT_TRUE(decodes(R"({"type":"subscribe","topics":["x","y"],"id":"q"})", d));
  EXPECT_EQ(json::parse(proto::subscribed(d, {{2, "a"}, {3, "b"}})),
            json::parse(R"({"type":"subscribed","topics":["x","y"],"id":"q",
                            "positions":{"x":{"seq":2,"epoch":"a"},"y":{"seq":3,"epoch":"b"}}})"));
}

TEST(JsonEncode, SubscribedAnswersAResume) {
  proto::client_message m;
  ASSERT_TRUE(decodes(R"({"type":"subscribe","topic":"t","since":3,"epoch":"E","id":1})", m));
  proto::resume_state ok{true, {}};
  EXPECT_EQ(json::parse(proto::subscribed(m, {{9, "E"}}, &ok)),
            json::parse(R"({"type":"subscribed","topic":"t","seq":9,"epoch":"E","id":1,
                            "recovered":true})"));
  proto::resume_state gap{false, "history_gap"};
  EXPECT_EQ(json::parse(proto::subscribed(m, {{9, "E"}}, &gap)),
            json::parse(R"({"type":"subscribed","topic":"t","seq":9,"epoch":"E","id":1,
                            "recovered":false,"reset":"history_gap"})"));
}

TEST(JsonEncode, PongWithAndWithoutId) {
  const auto bare = json::parse(proto::pong("2026-01-01T00:00:00.000Z", ""));
  EXPECT_EQ(bare, json({{"type", "pong"}, {"ts", "2026-01-01T00:00:00.000Z"}}));
  EXPECT_EQ(json::parse(proto::pong("T", R"("p1")"))["id"], "p1");
  EXPECT_EQ(json::parse(proto::pong("T", "99"))["id"], 99);
}

TEST(JsonEncode, EventWithAndWithoutTopic) {
  const auto e = json::parse(proto::event("telemetry_update", "WELL-001", 17, "T", R"({"p":3.5})"));
  EXPECT_EQ(e, json::parse(R"({"type":"event","event":"telemetry_update","topic":"WELL-001",
                               "seq":17,"ts":"T","data":{"p":3.5}})"));
  const auto big = json::parse(proto::event("e", "r", UINT64_MAX, "T", "0"));
  EXPECT_EQ(big["seq"].get<std::uint64_t>(), UINT64_MAX);

  const auto b = json::parse(proto::event("news", "", 0, "T", R"(["x"])"));
  EXPECT_EQ(b, json::parse(R"({"type":"event","event":"news","ts":"T","data":["x"]})"));
  EXPECT_FALSE(b.contains("topic"));
  EXPECT_FALSE(b.contains("seq"));
}

TEST(JsonEncode, Responses) {
  EXPECT_EQ(json::parse(proto::response_ok(R"("42")", R"({"done":true})")),
            json::parse(R"({"type":"response","id":"42","ok":true,"data":{"done":true}})"));
  EXPECT_EQ(json::parse(proto::response_ok("7", "null")),
            json::parse(R"({"type":"response","id":7,"ok":true,"data":null})"));
  const auto err = json::parse(proto::response_error(R"("42")", "handler_error", "it \"broke\"\n"));
  EXPECT_EQ(err["type"], "response");
  EXPECT_EQ(err["id"], "42");
  EXPECT_EQ(err["ok"], false);
  EXPECT_FALSE(err.contains("data"));
  EXPECT_EQ(err["error"], json({{"code", "handler_error"}, {"message", "it \"broke\"\n"}}));
}

TEST(JsonEncode, ErrorWithAndWithoutRef) {
  EXPECT_EQ(json::parse(proto::error("bad_json", "the message is not valid JSON", "")),
            json::parse(R"({"type":"error","code":"bad_json","message":"the message is not valid JSON","ref":null})"));
  EXPECT_EQ(json::parse(proto::error("unknown_type", "m", R"("r-1")"))["ref"], "r-1");
  EXPECT_EQ(json::parse(proto::error("unknown_type", "m", "5"))["ref"], 5);

  // From decode to the wire: the ref of a decode error is echoed as it was sent.
  proto::decode_error e{};
  ASSERT_TRUE(fails(R"({"type":"nope","id":"x\"y"})", e));
  const auto out = json::parse(proto::error(skyrelay::to_string(e.code), e.message, e.ref));
  EXPECT_EQ(out["code"], "unknown_type");
  EXPECT_EQ(out["ref"], "x\"y");
  EXPECT_EQ(out["message"], e.message);
}

TEST(JsonEncode, StringEscaping) {
  auto lit = [](std::string_view s) {
    std::string out;
    proto::append_json_string(out, s);
    return out;
  };
  EXPECT_EQ(lit(""), R"("")");
  EXPECT_EQ(lit("plain"), R"("plain")");
  EXPECT_EQ(lit("a\"b"), R"("a\"b")");
  EXPECT_EQ(lit("a\\b"), R"("a\\b")");
  EXPECT_EQ(lit("/"), R"("/")");
  EXPECT_EQ(lit("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(lit(std::string_view("\0", 1)), R"("\u0000")");
  EXPECT_EQ(lit("\x01\x1f"), R"("\u0001\u001f")");
  EXPECT_EQ(lit("\x0b"), R"("\u000b")");
  EXPECT_EQ(lit("\x7f"), "\"\x7f\"");
  // UTF-8 passes through byte for byte.
  EXPECT_EQ(lit("\xc3\xa9\xe2\x82\xac\xf0\x9f\x9b\xb0"), "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x9b\xb0\"");

  // Every byte below 0x20, and the rest of ASCII, round-trips through a real JSON parser.
  std::string all;
  for (int c = 0; c < 0x80; ++c) all.push_back(static_cast<char>(c));
  const std::string encoded = lit(all);
  EXPECT_EQ(json::parse(encoded).get<std::string>(), all);
  for (unsigned char c : encoded.substr(1, encoded.size() - 2)) EXPECT_GE(c, 0x20) << int(c);

  // It appends.
  std::string out = "x=";
  proto::append_json_string(out, "y");
  EXPECT_EQ(out, "x=\"y\"");
}

TEST(JsonEncode, NamesAndTopicsAreEscapedInEveryMessage) {
  const std::string nasty = "q\"b\\s\n\x01\xc3\xa9";
  const auto e = json::parse(proto::event(nasty, nasty, 1, nasty, "null"));
  EXPECT_EQ(e["event"], nasty);
  EXPECT_EQ(e["topic"], nasty);
  EXPECT_EQ(e["ts"], nasty);
  EXPECT_EQ(json::parse(proto::welcome(nasty, 1))["sid"], nasty);
  const auto err = json::parse(proto::error(nasty, nasty, ""));
  EXPECT_EQ(err["code"], nasty);
  EXPECT_EQ(err["message"], nasty);
  proto::client_message m;
  m.topics = {nasty};
  EXPECT_EQ(json::parse(proto::subscribed(m, {{0, nasty}}))["topic"], nasty);
  EXPECT_EQ(json::parse(proto::subscribed(m, {{0, nasty}}))["epoch"], nasty);
}
