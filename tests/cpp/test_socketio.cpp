#include <gtest/gtest.h>

#include "skyrelay/core/frame.hpp"
#include "skyrelay/proto/socketio.hpp"

namespace sio = skyrelay::sio;

namespace {
sio::packet ok(std::string_view s) {
  auto r = sio::decode(s);
  EXPECT_TRUE(std::holds_alternative<sio::packet>(r)) << s;
  return std::holds_alternative<sio::packet>(r) ? std::get<sio::packet>(r) : sio::packet{};
}
bool bad(std::string_view s) { return std::holds_alternative<std::string>(sio::decode(s)); }
}  // namespace

TEST(SocketIo, DecodeConnect) {
  auto a = ok("0");
  EXPECT_EQ(a.type, sio::packet_type::connect);
  EXPECT_EQ(a.nsp, "/");
  EXPECT_TRUE(a.data.empty());
  auto b = ok("0{\"token\":\"123\"}");
  EXPECT_EQ(b.data, "{\"token\":\"123\"}");
  auto c = ok("0/custom,{\"token\":\"abc\"}");
  EXPECT_EQ(c.nsp, "/custom");
  EXPECT_EQ(c.data, "{\"token\":\"abc\"}");
  EXPECT_EQ(ok("0/custom").nsp, "/custom");   // no trailing comma
  EXPECT_EQ(ok("0/custom,").nsp, "/custom");  // with one
  EXPECT_TRUE(bad("0[1]"));
  EXPECT_TRUE(bad("0\"x\""));
}

TEST(SocketIo, DecodeEventsAndAcks) {
  auto e = ok("2[\"message\",1,\"2\",{\"3\":[true]}]");
  EXPECT_EQ(e.type, sio::packet_type::event);
  EXPECT_FALSE(e.id);
  auto w = ok("2456[\"message-with-ack\",1]");
  EXPECT_EQ(w.id, 456u);
  auto n = ok("2/chat,12[\"x\"]");
  EXPECT_EQ(n.nsp, "/chat");
  EXPECT_EQ(n.id, 12u);
  auto a = ok("3456[1,\"2\"]");
  EXPECT_EQ(a.type, sio::packet_type::ack);
  EXPECT_EQ(a.id, 456u);
  auto be = ok("52-[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
  EXPECT_EQ(be.type, sio::packet_type::binary_event);
  EXPECT_EQ(be.attachments, 2u);
  auto ba = ok("62-789[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
  EXPECT_EQ(ba.type, sio::packet_type::binary_ack);
  EXPECT_EQ(ba.id, 789u);
  EXPECT_EQ(ok("1").type, sio::packet_type::disconnect);
  EXPECT_EQ(ok("1/custom,").nsp, "/custom");
}

TEST(SocketIo, RejectsInvalidPackets) {
  EXPECT_TRUE(bad(""));
  EXPECT_TRUE(bad("abc"));            // unknown type
  EXPECT_TRUE(bad("7[]"));
  EXPECT_TRUE(bad("2{}"));            // payload not an array
  EXPECT_TRUE(bad("2abc[\"x\"]"));    // invalid ack id
  EXPECT_TRUE(bad("2[]"));            // no event name
  EXPECT_TRUE(bad("2[1]"));           // name not a string
  EXPECT_TRUE(bad("2[\"x\""));        // broken JSON
  EXPECT_TRUE(bad("3[1]"));           // ack without id
  EXPECT_TRUE(bad("1{}"));            // disconnect with payload
  EXPECT_TRUE(bad("4{\"message\":\"x\"}"));  // server-only type
  EXPECT_TRUE(bad("5[\"x\"]"));       // binary without count
  EXPECT_TRUE(bad("50-[\"x\"]"));     // zero attachments
  EXPECT_TRUE(bad("5999-[\"x\"]"));   // too many attachments
  EXPECT_TRUE(bad("299999999999999999999[\"x\"]"));  // id overflow
}

// White space around the payload's values is JSON; the shape checks see past it.
TEST(SocketIo, DecodeChecksTheShapeBehindWhiteSpace) {
  EXPECT_EQ(ok("2 [ \"e\" , 1 ]").type, sio::packet_type::event);
  EXPECT_EQ(ok("0 {\"token\":\"x\"}").type, sio::packet_type::connect);
  EXPECT_EQ(ok("31\n[1]").type, sio::packet_type::ack);
  EXPECT_TRUE(bad("2 [ 1 ]"));
  EXPECT_TRUE(bad("2 [ ]"));
  EXPECT_TRUE(bad("0 [1]"));
  EXPECT_TRUE(bad("31 {}"));
  EXPECT_TRUE(bad("2[\"e\",1]x"));          // trailing garbage
  EXPECT_TRUE(bad("2[\"\\ud800\"]"));      // a lone surrogate in the name
  EXPECT_TRUE(bad("2[\"e\",\"\xff\"]"));   // not UTF-8
}

// An accepted EVENT payload splits into its name and the JSON array of the other arguments,
// as sent, without a JSON document in between.
TEST(SocketIo, SplitEvent) {
  std::string name, args;
  ASSERT_TRUE(sio::split_event("[\"echo\",{\"seq\":1,\"pad\":\"xx\"}]", name, args));
  EXPECT_EQ(name, "echo");
  EXPECT_EQ(args, "[{\"seq\":1,\"pad\":\"xx\"}]");
  ASSERT_TRUE(sio::split_event("[\"ping\"]", name, args));
  EXPECT_EQ(name, "ping");
  EXPECT_EQ(args, "[]");
  ASSERT_TRUE(sio::split_event(" [ \"a b\" ,1, \"2\" ] ", name, args));
  EXPECT_EQ(name, "a b");
  EXPECT_EQ(args, "[1, \"2\" ] ");
  ASSERT_TRUE(sio::split_event("[ \"p\" ]", name, args));
  EXPECT_EQ(args, "[]");
  // Escapes in the name are decoded; a quote or backslash inside does not end it early.
  ASSERT_TRUE(sio::split_event(R"(["n\"q\\",[1]])", name, args));
  EXPECT_EQ(name, "n\"q\\");
  EXPECT_EQ(args, "[[1]]");
  ASSERT_TRUE(sio::split_event(R"(["\u00e9t\u00e9",true])", name, args));
  EXPECT_EQ(name, "\xc3\xa9t\xc3\xa9");
  EXPECT_EQ(args, "[true]");
  // Numbers reach the handler as written (a document would have made this one a double).
  ASSERT_TRUE(sio::split_event("[\"big\",123456789012345678901234567890]", name, args));
  EXPECT_EQ(args, "[123456789012345678901234567890]");
  // The packet decoded and split again: what dispatch does with a client's EVENT.
  auto p = ok("2/chat,7[\"m\",{\"a\":[1,2]},null]");
  ASSERT_TRUE(sio::split_event(p.data, name, args));
  EXPECT_EQ(name, "m");
  EXPECT_EQ(args, "[{\"a\":[1,2]},null]");
  // Not that shape.
  EXPECT_FALSE(sio::split_event("[1]", name, args));
  EXPECT_FALSE(sio::split_event("[]", name, args));
  EXPECT_FALSE(sio::split_event("{}", name, args));
  EXPECT_FALSE(sio::split_event("", name, args));
  EXPECT_FALSE(sio::split_event("[\"unterminated", name, args));
}

TEST(SocketIo, EncodeServerPackets) {
  EXPECT_EQ(sio::connect_ok("/", "abc"), "0{\"sid\":\"abc\"}");
  EXPECT_EQ(sio::connect_ok("/custom", "abc"), "0/custom,{\"sid\":\"abc\"}");
  EXPECT_EQ(sio::connect_ok("/", "a", "p"), "0{\"sid\":\"a\",\"pid\":\"p\"}");
  EXPECT_EQ(sio::connect_error("/random", "Invalid namespace"),
            "4/random,{\"message\":\"Invalid namespace\"}");
  EXPECT_EQ(sio::connect_error("/", "no", "{\"code\":1}"), "4{\"message\":\"no\",\"data\":{\"code\":1}}");
  EXPECT_EQ(sio::event("/", "auth", "{}"), "2[\"auth\",{}]");
  EXPECT_EQ(sio::event("/custom", "auth", "{\"token\":\"abc\"}"),
            "2/custom,[\"auth\",{\"token\":\"abc\"}]");
  EXPECT_EQ(sio::event("/", "ping", ""), "2[\"ping\"]");
  EXPECT_EQ(sio::event("/", "m", "{\"_placeholder\":true,\"num\":0}", 1, 7),
            "51-7[\"m\",{\"_placeholder\":true,\"num\":0}]");
  sio::packet ack{sio::packet_type::ack, "/", 0, 456, "[1,\"2\"]"};
  EXPECT_EQ(sio::encode(ack), "3456[1,\"2\"]");
  sio::packet back{sio::packet_type::binary_ack, "/x", 2, 789, "[]"};
  EXPECT_EQ(sio::encode(back), "62-/x,789[]");
  // The ack's Engine.IO message is "4" and the encoded ACK packet.
  EXPECT_EQ(sio::ack_message("/", 456, "[1,\"2\"]"), "4" + sio::encode(ack));
  EXPECT_EQ(sio::ack_message("/x", 789, "[]", 2), "4" + sio::encode(back));
  EXPECT_EQ(sio::ack_message("/", 0, "[]"), "430[]");
  // Encoding then decoding gives the same packet.
  auto round = std::get<sio::packet>(sio::decode(sio::event("/chat", "n\"q", "1,2", 0, 3)));
  EXPECT_EQ(round.nsp, "/chat");
  EXPECT_EQ(round.id, 3u);
  EXPECT_EQ(round.data, "[\"n\\\"q\",1,2]");
}

TEST(SocketIo, DeeplyNestedPayloadIsRefused) {
  // Event arguments are re-serialized by the server; a payload of brackets must be an error
  // value, not a stack overflow.
  const std::string deep = "2[\"e\"," + std::string(100000, '[') + std::string(100000, ']') + "]";
  EXPECT_TRUE(bad(deep));
  const std::string deep_ack = "31" + std::string(100000, '[') + std::string(100000, ']');
  EXPECT_TRUE(bad(deep_ack));
  const std::string fine = "2[\"e\"," + std::string(100, '[') + std::string(100, ']') + "]";
  EXPECT_FALSE(bad(fine));
}

// The one-copy event frame is the WebSocket frame of "4" + event(...), for payloads whose
// header takes each of its three sizes (7-bit, 16-bit and 64-bit lengths).
TEST(SocketIo, EventFrameBytesMatchTheMessageFrame) {
  for (std::size_t n : {0, 10, 200, 70'000}) {
    const std::string args = n ? "\"" + std::string(n, 'x') + "\"" : "";
    for (std::size_t attachments : {0, 2}) {
      std::uint8_t at = 0;
      const std::string bytes =
          sio::event_frame_bytes("/ns", "tick\"", args, attachments, std::nullopt, at);
      const auto want = skyrelay::message_frame(
          "4" + sio::event("/ns", "tick\"", args, attachments), 1);
      EXPECT_EQ(bytes, want.bytes) << n;
      EXPECT_EQ(at, want.payload_at) << n;
    }
  }
  std::uint8_t at = 0;
  EXPECT_EQ(sio::event_frame_bytes("/", "e", "1", 0, 7, at).substr(at), "427[\"e\",1]");
}
