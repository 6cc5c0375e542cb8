// RFC 6455 framing: server-side encoding and the client-frame parser.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "skyrelay/proto/ws_frame.hpp"

namespace ws = skyrelay::ws;

namespace {

// A masked client frame, built independently of the code under test.
std::string client_frame(std::uint8_t op, std::string_view payload, bool fin = true,
                         std::uint8_t rsv = 0, bool masked = true) {
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | rsv | op));
  const std::size_t n = payload.size();
  const char mask_bit = masked ? static_cast<char>(0x80) : 0;
  if (n < 126) {
    out.push_back(static_cast<char>(mask_bit | n));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xFF));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((std::uint64_t(n) >> s) & 0xFF));
  }
  const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked) out.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(masked ? static_cast<char>(payload[i] ^ key[i % 4]) : payload[i]);
  return out;
}

struct collected {
  std::vector<std::pair<ws::opcode, std::string>> frames;
  std::uint16_t code = 0;
};

collected feed_all(ws::parser& p, std::string bytes, std::size_t chunk = 0) {
  collected c;
  auto on = [&](const ws::inbound& in) {
    c.frames.emplace_back(in.op, std::string(in.payload));
    return true;
  };
  if (chunk == 0) chunk = bytes.size() ? bytes.size() : 1;
  for (std::size_t i = 0; i < bytes.size() && !c.code; i += chunk) {
    std::string part = bytes.substr(i, chunk);
    c.code = p.feed(part.data(), part.size(), on);
  }
  return c;
}

}  // namespace

TEST(WsEncode, HeaderLengthForms) {
  EXPECT_EQ(ws::encode(ws::opcode::text, "hi"), std::string("\x81\x02hi", 4));
  std::string mid(300, 'a');
  auto f = ws::encode(ws::opcode::binary, mid);
  ASSERT_EQ(f.size(), 4 + 300u);
  EXPECT_EQ(static_cast<unsigned char>(f[0]), 0x82);
  EXPECT_EQ(static_cast<unsigned char>(f[1]), 126);
  EXPECT_EQ((static_cast<unsigned char>(f[2]) << 8) | static_cast<unsigned char>(f[3]), 300);
  std::string big(70000, 'b');
  auto g = ws::encode(ws::opcode::text, big);
  ASSERT_EQ(g.size(), 10 + 70000u);
  EXPECT_EQ(static_cast<unsigned char>(g[1]), 127);
  std::uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(g[2 + i]);
  EXPECT_EQ(len, 70000u);
}

TEST(WsEncode, CloseCarriesCodeAndTruncatedReason) {
  auto f = ws::encode_close(1009, "message too big");
  ASSERT_GE(f.size(), 4u);
  EXPECT_EQ(static_cast<unsigned char>(f[0]), 0x88);
  EXPECT_EQ((static_cast<unsigned char>(f[2]) << 8) | static_cast<unsigned char>(f[3]), 1009);
  EXPECT_EQ(f.substr(4), "message too big");
  // A long multi-byte reason is cut to the 125-byte control limit on a character boundary.
  std::string reason;
  for (int i = 0; i < 100; ++i) reason += "\xc3\xa9";  // 200 bytes of 'é'
  auto g = ws::encode_close(4001, reason);
  EXPECT_LE(g.size() - 2, 125u);
  EXPECT_EQ((g.size() - 4) % 2, 0u);
}

TEST(WsParser, MaskedTextAndBinary) {
  ws::parser p(1024);
  auto c = feed_all(p, client_frame(0x1, "hello") + client_frame(0x2, std::string("\x00\xff", 2)));
  ASSERT_EQ(c.code, 0);
  ASSERT_EQ(c.frames.size(), 2u);
  EXPECT_EQ(c.frames[0].first, ws::opcode::text);
  EXPECT_EQ(c.frames[0].second, "hello");
  EXPECT_EQ(c.frames[1].first, ws::opcode::binary);
  EXPECT_EQ(c.frames[1].second, std::string("\x00\xff", 2));
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(WsParser, SplitAtEveryByteBoundary) {
  std::string payload(200, 'x');
  payload[5] = 'y';
  std::string bytes = client_frame(0x1, "a") + client_frame(0x1, payload) + client_frame(0x9, "p");
  for (std::size_t chunk = 1; chunk <= 9; ++chunk) {
    ws::parser p(1024);
    auto c = feed_all(p, bytes, chunk);
    ASSERT_EQ(c.code, 0) << "chunk " << chunk;
    ASSERT_EQ(c.frames.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(c.frames[1].second, payload);
    EXPECT_EQ(c.frames[2].first, ws::opcode::ping);
  }
}

TEST(WsParser, FragmentsJoinWithInterleavedControl) {
  ws::parser p(1024);
  std::string bytes = client_frame(0x1, "hel", false) + client_frame(0x9, "ping") +
                      client_frame(0x0, "lo ", false) + client_frame(0x0, "world", true);
  auto c = feed_all(p, bytes);
  ASSERT_EQ(c.code, 0);
  ASSERT_EQ(c.frames.size(), 2u);
  EXPECT_EQ(c.frames[0].first, ws::opcode::ping);
  EXPECT_EQ(c.frames[1].first, ws::opcode::text);
  EXPECT_EQ(c.frames[1].second, "hello world");
}

TEST(WsParser, Utf8SplitAcrossFragmentsIsValid) {
  ws::parser p(1024);
  // U+20AC (E2 82 AC) split between two fragments.
  auto c = feed_all(p, client_frame(0x1, "\xe2\x82", false) + client_frame(0x0, "\xac", true));
  ASSERT_EQ(c.code, 0);
  ASSERT_EQ(c.frames.size(), 1u);
  EXPECT_EQ(c.frames[0].second, "\xe2\x82\xac");
}

TEST(WsParser, ProtocolViolationsGive1002) {
  struct tcase {
    const char* name;
    std::string bytes;
  };
  std::vector<tcase> cases = {
      {"unmasked", client_frame(0x1, "x", true, 0, false)},
      {"rsv1", client_frame(0x1, "x", true, 0x40)},
      {"rsv3", client_frame(0x1, "x", true, 0x10)},
      {"unknown opcode 3", client_frame(0x3, "x")},
      {"unknown opcode 0xB", client_frame(0xB, "x")},
      {"fragmented ping", client_frame(0x9, "x", false)},
      {"control over 125", client_frame(0x9, std::string(126, 'p'))},
      {"continuation first", client_frame(0x0, "x")},
      {"new message inside fragmented", client_frame(0x1, "a", false) + client_frame(0x1, "b")},
      {"close with 1-byte payload", client_frame(0x8, "x")},
      {"close with code 1005", client_frame(0x8, std::string("\x03\xed", 2))},
      {"close with code 999", client_frame(0x8, std::string("\x03\xe7", 2))},
  };
  // Non-minimal 16-bit length: 5 bytes announced with the 126 form.
  std::string nonmin = "\x81\xfe";
  nonmin += std::string("\x00\x05", 2);
  nonmin += std::string("\x01\x02\x03\x04", 4);
  nonmin += "abcde";
  cases.push_back({"non-minimal length", nonmin});
  for (auto& tc : cases) {
    ws::parser p(1024);
    auto c = feed_all(p, tc.bytes);
    EXPECT_EQ(c.code, 1002) << tc.name;
  }
}

TEST(WsParser, InvalidUtf8Gives1007) {
  {
    ws::parser p(1024);
    EXPECT_EQ(feed_all(p, client_frame(0x1, "\xc0\xaf")).code, 1007);
  }
  {
    ws::parser p(1024);
    EXPECT_EQ(feed_all(p, client_frame(0x1, "ok", false) + client_frame(0x0, "\xff")).code, 1007);
  }
  {
    ws::parser p(1024);
    std::string close_payload("\x03\xe8\xff", 3);  // 1000 + bad reason
    EXPECT_EQ(feed_all(p, client_frame(0x8, close_payload)).code, 1007);
  }
  {
    // Binary messages are not UTF-8 checked.
    ws::parser p(1024);
    EXPECT_EQ(feed_all(p, client_frame(0x2, "\xff\xfe")).code, 0);
  }
}

TEST(WsParser, MessageTooBigAsSoonAsHeaderArrives) {
  ws::parser p(100);
  std::string frame = client_frame(0x1, std::string(101, 'a'));
  // Only the header and mask: the limit is enforced before the payload is buffered.
  auto c = feed_all(p, frame.substr(0, 8));
  EXPECT_EQ(c.code, 1009);
  ws::parser q(100);
  auto d = feed_all(q, client_frame(0x1, std::string(60, 'a'), false) +
                           client_frame(0x0, std::string(41, 'a')));
  EXPECT_EQ(d.code, 1009);
  ws::parser r(100);
  EXPECT_EQ(feed_all(r, client_frame(0x1, std::string(100, 'a'))).code, 0);
}

TEST(WsParser, CallbackCanStopEarly) {
  ws::parser p(1024);
  std::string bytes = client_frame(0x1, "one") + client_frame(0x1, "two");
  int seen = 0;
  auto code = p.feed(bytes.data(), bytes.size(), [&](const ws::inbound&) {
    ++seen;
    return false;
  });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(seen, 1);
}
