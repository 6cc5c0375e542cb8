#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "skyrelay/proto/engineio.hpp"

namespace eio = skyrelay::eio;

TEST(EngineIo, Base64RoundTripAndErrors) {
  EXPECT_EQ(eio::base64_encode(std::string("\x01\x02\x03\x04", 4)), "AQIDBA==");
  EXPECT_EQ(eio::base64_encode("ab"), "YWI=");
  EXPECT_EQ(eio::base64_encode("abc"), "YWJj");
  EXPECT_EQ(eio::base64_encode(""), "");
  for (std::string s : {std::string(""), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("\x00\xff\x10\x80", 4)})
    EXPECT_EQ(eio::base64_decode(eio::base64_encode(s)), s);
  EXPECT_FALSE(eio::base64_decode("AQI").has_value());     // length
  EXPECT_FALSE(eio::base64_decode("AQ*D").has_value());    // alphabet
  EXPECT_FALSE(eio::base64_decode("A===").has_value());    // too much padding
  EXPECT_FALSE(eio::base64_decode("AQ==AQID").has_value()); // data after padding
}

TEST(EngineIo, DecodeTextPacket) {
  auto p = eio::decode_text("4hello");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->type, eio::packet_type::message);
  EXPECT_EQ(p->data, "hello");
  EXPECT_EQ(eio::decode_text("2probe")->data, "probe");
  EXPECT_FALSE(eio::decode_text("").has_value());
  EXPECT_FALSE(eio::decode_text("abc").has_value());
  EXPECT_FALSE(eio::decode_text("7").has_value());
}

TEST(EngineIo, DecodePayloadWithTextAndBinary) {
  auto ps = eio::decode_payload("4hello\x1e" "bAQIDBA==\x1e" "3");
  ASSERT_TRUE(ps);
  ASSERT_EQ(ps->size(), 3u);
  EXPECT_EQ((*ps)[0].data, "hello");
  EXPECT_TRUE((*ps)[1].binary);
  EXPECT_EQ((*ps)[1].data, std::string("\x01\x02\x03\x04", 4));
  EXPECT_EQ((*ps)[2].type, eio::packet_type::pong);
  EXPECT_FALSE(eio::decode_payload("").has_value());
  EXPECT_FALSE(eio::decode_payload("4a\x1e").has_value());  // empty record
  EXPECT_FALSE(eio::decode_payload("abc").has_value());
  EXPECT_FALSE(eio::decode_payload("b!!!!").has_value());
}

TEST(EngineIo, RecordsAndOpenPacket) {
  std::string out;
  eio::append_record(out, {eio::packet_type::message, false, "hi"});
  out += '\x1e';
  eio::append_record(out, {eio::packet_type::message, true, std::string("\x01\x02", 2)});
  EXPECT_EQ(out, "4hi\x1e" "bAQI=");
  auto open = nlohmann::json::parse(eio::open_packet("abc", true, 300, 200, 1000000));
  EXPECT_EQ(open, nlohmann::json::parse(
                      R"({"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000})"));
  EXPECT_EQ(nlohmann::json::parse(eio::open_packet("x", false, 1, 2, 3))["upgrades"].size(), 0u);
  EXPECT_EQ(nlohmann::json::parse(eio::error_body(eio::error_code::unsupported_protocol_version)),
            nlohmann::json::parse(R"({"code":5,"message":"Unsupported protocol version"})"));
}
