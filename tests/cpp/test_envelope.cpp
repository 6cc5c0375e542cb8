// The application-declared envelope codec (proto/envelope.hpp): templates compiled once,
// publications encoded by concatenation, inbound frames read by the spec, bad input coded.
#include <gtest/gtest.h>

#include <array>
#include <atomic>

#include <nlohmann/json.hpp>

#include "hub_test_sink.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/proto/envelope.hpp"

namespace proto = skyrelay::proto;
using nlohmann::json;
using skyrelay::error_code;

namespace {

// S1's envelope: {event, data, timestamp}, ping -> pong in the same envelope.
constexpr std::string_view s1_spec = R"({
  "outbound": {"event": "$event", "data": "$data", "timestamp": "$ts"},
  "kind": "event", "data": "data",
  "subscribe": "subscribe", "unsubscribe": "unsubscribe", "topic": ["data.topic", "data.topics"],
  "ping": "ping",
  "pong": {"event": "pong", "data": {}, "timestamp": "$ts"},
  "subscribed": {"event": "subscribed", "data": {"topic": "$topic"}, "timestamp": "$ts"},
  "error": {"event": "error", "data": {"code": "$code", "message": "$message"}, "timestamp": "$ts"}
})";

// S2's envelope: {id, type, telescope_id, timestamp (ms), payload}.
constexpr std::string_view s2_spec = R"({
  "outbound": {"id": "$id", "type": "$event", "telescope_id": "$topic", "timestamp": "$ts_ms",
               "payload": "$data"},
  "kind": "type", "data": "payload", "id": "id", "requests": ["control_command"],
  "subscribe": "subscribe", "unsubscribe": "unsubscribe", "topic": "telescope_id",
  "ping": "heartbeat",
  "pong": {"id": "$id", "type": "heartbeat", "telescope_id": "$in.telescope_id",
           "timestamp": "$ts_ms", "payload": {}},
  "response": {"id": "$id", "type": "command_response", "telescope_id": "$in.telescope_id",
               "timestamp": "$ts_ms",
               "payload": {"command_id": "$ref", "success": true, "result": "$result"}},
  "error": {"id": "$id", "type": "error", "telescope_id": "$in.telescope_id",
            "timestamp": "$ts_ms",
            "payload": {"command_id": "$ref", "success": false, "code": "$code",
                        "message": "$message"}}
})";

std::shared_ptr<const proto::envelope> compile(std::string_view spec) {
  auto e = proto::envelope::compile(spec);
  if (auto* err = std::get_if<std::string>(&e)) ADD_FAILURE() << *err;
  return std::get<std::shared_ptr<const proto::envelope>>(e);
}

}  // namespace

TEST(Envelope, TemplateKeepsKeyOrderAndConstants) {
  auto t = proto::json_template::compile(
      R"({"z": 1, "a": "$event", "m": [true, null, "$$literal"], "k": "$data"})",
      proto::template_use::outbound);
  ASSERT_TRUE(std::holds_alternative<proto::json_template>(t));
  auto& tpl = std::get<proto::json_template>(t);
  EXPECT_EQ(tpl.slots().size(), 2u);
  auto out = tpl.render([](const proto::template_slot& s, std::string& o) {
    o += s.kind == proto::slot_kind::event ? "\"E\"" : "{\"x\":2}";
  });
  EXPECT_EQ(out, R"({"z":1,"a":"E","m":[true,null,"$literal"],"k":{"x":2}})");
}

TEST(Envelope, TemplateRefusesUnknownAndMisplacedPlaceholders) {
  using proto::template_use;
  EXPECT_TRUE(std::holds_alternative<std::string>(
      proto::json_template::compile(R"({"a":"$nope"})", template_use::outbound)));
  EXPECT_TRUE(std::holds_alternative<std::string>(
      proto::json_template::compile(R"({"a":"$ref"})", template_use::outbound)));
  EXPECT_TRUE(std::holds_alternative<std::string>(
      proto::json_template::compile(R"({"a":"$data"})", template_use::reply)));
  EXPECT_TRUE(std::holds_alternative<std::string>(
      proto::json_template::compile(R"({"a":)", template_use::reply)));
  EXPECT_TRUE(std::holds_alternative<std::string>(
      proto::json_template::compile(R"({"a":"$in."})", template_use::reply)));
  EXPECT_TRUE(std::holds_alternative<proto::json_template>(
      proto::json_template::compile(R"({"a":"$param.well_id"})", template_use::stream)));
}

TEST(Envelope, SpecErrorsAreReported) {
  for (std::string_view bad :
       {R"([])", R"({"kind":"type"})", R"({"outbound":{"a":"$ref"},"kind":"type"})",
        R"({"outbound":{},"kind":""})", R"({"outbound":{},"kind":"type","subscribe":"s"})",
        R"({"outbound":{},"kind":"type","pong":{"a":"$data"}})", R"(not json)"}) {
    EXPECT_TRUE(std::holds_alternative<std::string>(proto::envelope::compile(bad))) << bad;
  }
}

TEST(Envelope, EncodesPublicationsS1AndS2) {
  auto s1 = compile(s1_spec);
  EXPECT_EQ(s1->encode("services:health", R"({"api":{"status":"healthy"}})", "", 0, 7,
                       "2025-10-25T08:45:00.000Z"),
            R"({"event":"services:health","data":{"api":{"status":"healthy"}},)"
            R"("timestamp":"2025-10-25T08:45:00.000Z"})");
  auto s2 = compile(s2_spec);
  auto out = json::parse(s2->encode("status_update", R"({"status":{"temp":23.5}})",
                                    "seestar-001", 3, 42, "2022-01-01T00:00:00.000Z"));
  EXPECT_EQ(out["id"], "42");
  EXPECT_EQ(out["type"], "status_update");
  EXPECT_EQ(out["telescope_id"], "seestar-001");
  EXPECT_EQ(out["timestamp"], 1640995200000LL);
  EXPECT_EQ(out["payload"]["status"]["temp"], 23.5);
  // No topic and no data: null.
  out = json::parse(s2->encode("telescope_lost", "", "", 0, 1, "2022-01-01T00:00:00.000Z"));
  EXPECT_TRUE(out["telescope_id"].is_null());
  EXPECT_TRUE(out["payload"].is_null());
}

TEST(Envelope, DecodesKindsAndReplies) {
  auto s1 = compile(s1_spec);
  auto d = s1->decode(R"({"event":"ping","data":{},"timestamp":"2025-10-25T08:45:00.000Z"})");
  ASSERT_TRUE(std::holds_alternative<proto::envelope_message>(d));
  EXPECT_EQ(std::get<proto::envelope_message>(d).msg.type, proto::client_type::ping);
  d = s1->decode(R"({"event":"subscribe","data":{"topics":["a","b","a"]}})");
  auto& sub = std::get<proto::envelope_message>(d).msg;
  EXPECT_EQ(sub.type, proto::client_type::subscribe);
  EXPECT_EQ(sub.topics, (std::vector<std::string>{"a", "b"}));
  d = s1->decode(R"({"event":"tune","data":{"f":145.5}})");
  auto& ev = std::get<proto::envelope_message>(d).msg;
  EXPECT_EQ(ev.type, proto::client_type::event);
  EXPECT_EQ(ev.event, "tune");
  EXPECT_EQ(json::parse(ev.data)["f"], 145.5);
  proto::reply_values v;
  v.ts = "2025-10-25T08:45:01.000Z";
  EXPECT_EQ(*s1->pong(v), R"({"event":"pong","data":{},"timestamp":"2025-10-25T08:45:01.000Z"})");
  EXPECT_FALSE(s1->response(v));  // no template: nothing is sent
}

TEST(Envelope, RequestTokenCarriesIdAndInboundFields) {
  auto s2 = compile(s2_spec);
  auto d = s2->decode(R"({"id":"1234567891","type":"control_command","telescope_id":"seestar-001",
      "timestamp":1640995200000,"payload":{"action":"move","parameters":{"direction":"up"}}})");
  ASSERT_TRUE(std::holds_alternative<proto::envelope_message>(d));
  auto& m = std::get<proto::envelope_message>(d);
  EXPECT_EQ(m.msg.type, proto::client_type::request);
  EXPECT_EQ(m.msg.id, "\"1234567891\"");
  EXPECT_EQ(json::parse(m.msg.data)["action"], "move");
  std::string ref;
  std::vector<std::string> captured;
  ASSERT_TRUE(proto::envelope::from_token(proto::envelope::request_token(m), ref, captured));
  EXPECT_EQ(ref, "\"1234567891\"");
  proto::reply_values v;
  v.ref = ref;
  v.result = R"({"status":"movement_completed"})";
  v.captured = &captured;
  v.fresh_id = "9";
  v.ts_ms = 5;
  auto r = json::parse(*s2->response(v));
  EXPECT_EQ(r["type"], "command_response");
  EXPECT_EQ(r["telescope_id"], "seestar-001");
  EXPECT_EQ(r["payload"]["command_id"], "1234567891");
  EXPECT_EQ(r["payload"]["success"], true);
  EXPECT_EQ(r["payload"]["result"]["status"], "movement_completed");
  // A kind that is not a request stays an event even with an id.
  d = s2->decode(R"({"id":"5","type":"status_update","payload":{}})");
  EXPECT_EQ(std::get<proto::envelope_message>(d).msg.type, proto::client_type::event);
  EXPECT_FALSE(proto::envelope::from_token("not json", ref, captured));
}

TEST(Envelope, BadFramesGetStableCodes) {
  auto s2 = compile(s2_spec);
  auto code = [&](std::string_view text) {
    auto d = s2->decode(text);
    if (auto* e = std::get_if<proto::decode_error>(&d)) return e->code;
    return error_code::count_;
  };
  EXPECT_EQ(code("{not json"), error_code::bad_json);
  EXPECT_EQ(code("[1,2]"), error_code::bad_message);
  EXPECT_EQ(code(R"({"payload":{}})"), error_code::unknown_type);
  EXPECT_EQ(code(R"({"type":7})"), error_code::unknown_type);
  EXPECT_EQ(code(R"({"type":"x","id":{"a":1}})"), error_code::bad_message);
  EXPECT_EQ(code(R"({"type":"subscribe"})"), error_code::bad_message);
  EXPECT_EQ(code(R"({"type":"subscribe","telescope_id":""})"), error_code::bad_message);
  EXPECT_EQ(code(R"({"type":"subscribe","telescope_id":")" + std::string(300, 'x') + "\"}"),
            error_code::bad_message);
  std::string deep = R"({"type":"x","payload":)" + std::string(200, '[') +
                     std::string(200, ']') + "}";
  auto d = s2->decode(deep);
  ASSERT_TRUE(std::holds_alternative<proto::decode_error>(d));
  EXPECT_EQ(std::get<proto::decode_error>(d).code, error_code::bad_message);
  // The error frame carries the request's id as its ref.
  d = s2->decode(R"({"id":"77","payload":{}})");
  EXPECT_EQ(std::get<proto::decode_error>(d).ref, "\"77\"");
}

TEST(Envelope, StreamTemplateAndIsoMilliseconds) {
  auto t = proto::json_template::compile(
      R"({"message":"Connected","well_id":"$param.well_id","timestamp":"$ts"})",
      proto::template_use::stream);
  std::vector<std::pair<std::string, std::string>> params{{"well_id", "WELL-001"}};
  proto::reply_values v;
  v.params = &params;
  v.ts = "2025-11-20T10:30:00.000Z";
  EXPECT_EQ(proto::render_stream(std::get<proto::json_template>(t), v),
            R"({"message":"Connected","well_id":"WELL-001","timestamp":"2025-11-20T10:30:00.000Z"})");
  EXPECT_EQ(proto::iso8601_ms("1970-01-01T00:00:01.250Z"), 1250);
  EXPECT_EQ(proto::iso8601_ms("2022-01-01T00:00:00.000Z"), 1640995200000LL);
  EXPECT_EQ(proto::iso8601_ms("garbage"), 0);
}

// Fan-out stays in the hub: with one encoder per envelope, a publication to N clients of two
// envelopes is encoded once per envelope, and each envelope's clients share one frame.
TEST(Envelope, HubEncodesOncePerEnvelope) {
  skyrelay::hub h;
  auto s1 = compile(s1_spec);
  auto s2 = compile(s2_spec);
  std::array<std::atomic<int>, 2> calls{};
  std::array<skyrelay::encoder_id, 2> ids{};
  std::array<std::shared_ptr<const proto::envelope>, 2> envs{s1, s2};
  for (std::size_t i = 0; i < 2; ++i)
    ids[i] = h.add_encoder([&, i](const skyrelay::publication& p, const skyrelay::publish_meta& m) {
      calls[i].fetch_add(1);
      return std::make_shared<const skyrelay::frame>(skyrelay::frame{
          envs[i]->encode(p.event, p.data, m.topic, m.seq, m.id, m.ts), m.publish_ns, true, 0, {}});
    });
  std::vector<std::shared_ptr<skyrelay::testing::sink>> sinks;
  for (int i = 0; i < 10; ++i) {
    sinks.push_back(std::make_shared<skyrelay::testing::sink>("c" + std::to_string(i),
                                                              ids[i % 2]));
    ASSERT_TRUE(h.add(sinks.back()));
  }
  skyrelay::publication p;
  p.event = "status_update";
  p.data = R"({"status":{"temp":1}})";
  EXPECT_EQ(h.publish(p), 10u);
  EXPECT_EQ(calls[0].load(), 1);
  EXPECT_EQ(calls[1].load(), 1);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(sinks[i]->count(), 1u);
    EXPECT_EQ(sinks[i]->frames()[0].get(), sinks[i % 2]->frames()[0].get());  // shared
  }
  EXPECT_EQ(json::parse(sinks[0]->bytes()[0])["event"], "status_update");
  EXPECT_EQ(json::parse(sinks[1]->bytes()[0])["type"], "status_update");
}
