// RFC 6455 framing: the server-side encoders and the client-frame parser.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skyrelay/proto/utf8.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace ws = skyrelay::ws;

namespace {

// How a test frame writes its payload length (RFC 6455 5.2).
enum class len_form { minimal, bits16, bits64 };

struct frame_spec {
  std::uint8_t op = 0x1;
  bool fin = true;
  std::uint8_t rsv = 0;  // already shifted: 0x40, 0x20, 0x10
  bool masked = true;
  len_form form = len_form::minimal;
  std::uint64_t declared = UINT64_MAX;  // length to announce; UINT64_MAX: the payload's size
  std::uint32_t key = 0xa1b2c3d4;
};

// Builds a client frame byte by byte, independently of the code under test.
std::string client_frame(const frame_spec& s, std::string_view payload) {
  std::string out;
  out.push_back(static_cast<char>((s.fin ? 0x80 : 0x00) | s.rsv | s.op));
  const std::uint64_t n = s.declared == UINT64_MAX ? payload.size() : s.declared;
  const unsigned char m = s.masked ? 0x80 : 0x00;
  len_form form = s.form;
  if (form == len_form::minimal) form = n < 126 ? form : n <= 0xFFFF ? len_form::bits16 : len_form::bits64;
  if (form == len_form::minimal) {
    out.push_back(static_cast<char>(m | n));
  } else if (form == len_form::bits16) {
    out.push_back(static_cast<char>(m | 126));
    out.push_back(static_cast<char>((n >> 8) & 0xFF));
    out.push_back(static_cast<char>(n & 0xFF));
  } else {
    out.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  }
  unsigned char key[4] = {static_cast<unsigned char>(s.key >> 24), static_cast<unsigned char>(s.key >> 16),
                          static_cast<unsigned char>(s.key >> 8), static_cast<unsigned char>(s.key)};
  if (s.masked) out.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    const auto b = static_cast<unsigned char>(payload[i]);
    out.push_back(static_cast<char>(s.masked ? b ^ key[i % 4] : b));
  }
  return out;
}

std::string text(std::string_view p, bool fin = true) { return client_frame({0x1, fin}, p); }
std::string binary(std::string_view p, bool fin = true) { return client_frame({0x2, fin}, p); }
std::string cont(std::string_view p, bool fin = true) { return client_frame({0x0, fin}, p); }
std::string ping(std::string_view p) { return client_frame({0x9}, p); }
std::string pong(std::string_view p) { return client_frame({0xA}, p); }
std::string close_frame(std::string_view p) { return client_frame({0x8}, p); }
std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  p.append(reason);
  return p;
}

struct result {
  std::vector<std::pair<ws::opcode, std::string>> got;
  std::uint16_t code = 0;
  std::size_t feeds_after_error = 0;  // chunks that were never fed because of the error
};

// Feeds `bytes` in pieces of `chunk` bytes (0: all at once), stopping at the first error. Each
// piece is a fresh copy, so the parser cannot rely on earlier buffers staying alive.
result run(ws::parser& p, const std::string& bytes, std::size_t chunk = 0) {
  result r;
  auto on_frame = [&](const ws::inbound& in) {
    r.got.emplace_back(in.op, std::string(in.payload));
    return true;
  };
  if (chunk == 0) chunk = bytes.empty() ? 1 : bytes.size();
  for (std::size_t pos = 0; pos < bytes.size(); pos += chunk) {
    if (r.code) {
      ++r.feeds_after_error;
      continue;
    }
    std::string piece = bytes.substr(pos, chunk);
    r.code = p.feed(piece.data(), piece.size(), on_frame);
  }
  return r;
}

result run_fresh(const std::string& bytes, std::size_t max = 1 << 16, std::size_t chunk = 0) {
  ws::parser p(max);
  return run(p, bytes, chunk);
}

// Reads back a server frame (unmasked, as encode() writes it).
struct server_frame {
  bool fin;
  unsigned rsv;
  unsigned op;
  bool masked;
  std::uint64_t len;
  std::size_t header_len;
  std::string payload;
};

server_frame read_server_frame(const std::string& f) {
  server_frame out{};
  const auto* b = reinterpret_cast<const unsigned char*>(f.data());
  out.fin = b[0] & 0x80;
  out.rsv = b[0] & 0x70;
  out.op = b[0] & 0x0F;
  out.masked = b[1] & 0x80;
  out.len = b[1] & 0x7F;
  out.header_len = 2;
  if (out.len == 126) {
    out.len = (std::uint64_t{b[2]} << 8) | b[3];
    out.header_len = 4;
  } else if (out.len == 127) {
    out.len = 0;
    for (int i = 0; i < 8; ++i) out.len = (out.len << 8) | b[2 + i];
    out.header_len = 10;
  }
  out.payload = f.substr(out.header_len);
  return out;
}

}  // namespace

// ---- encoding ------------------------------------------------------------------------------

TEST(WsEncode, LengthFormsAtEveryBoundary) {
  struct want {
    std::size_t len;
    std::size_t header;
  };
  for (auto [len, header] : {want{0, 2}, want{1, 2}, want{125, 2}, want{126, 4}, want{127, 4},
                             want{65535, 4}, want{65536, 10}, want{100000, 10}}) {
    const std::string payload(len, 'p');
    const auto f = ws::encode(ws::opcode::binary, payload);
    ASSERT_EQ(f.size(), header + len) << len;
    const auto r = read_server_frame(f);
    EXPECT_TRUE(r.fin) << len;
    EXPECT_EQ(r.rsv, 0u) << len;
    EXPECT_FALSE(r.masked) << "server frames are never masked";
    EXPECT_EQ(r.op, 0x2u);
    EXPECT_EQ(r.header_len, header) << len;
    EXPECT_EQ(r.len, len);
    EXPECT_EQ(r.payload, payload);
  }
}

TEST(WsEncode, AppendHeaderAppendsAndCarriesOpcode) {
  std::string out = "prefix";
  ws::append_header(out, ws::opcode::text, 300);
  ASSERT_EQ(out.size(), 6u + 4u);
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_EQ(static_cast<unsigned char>(out[6]), 0x81);
  EXPECT_EQ(static_cast<unsigned char>(out[7]), 126);
  EXPECT_EQ(static_cast<unsigned char>(out[8]), 0x01);
  EXPECT_EQ(static_cast<unsigned char>(out[9]), 0x2C);

  for (auto op : {ws::opcode::text, ws::opcode::binary, ws::opcode::close, ws::opcode::ping,
                  ws::opcode::pong}) {
    std::string h;
    ws::append_header(h, op, 3);
    EXPECT_EQ(static_cast<unsigned char>(h[0]), 0x80 | static_cast<unsigned>(op));
  }
  // 64-bit lengths are big-endian over all eight bytes.
  std::string big;
  ws::append_header(big, ws::opcode::binary, 0x0102030405ULL);
  ASSERT_EQ(big.size(), 10u);
  const unsigned char expect[8] = {0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(static_cast<unsigned char>(big[2 + i]), expect[i]) << i;
}

TEST(WsEncode, CloseFrameCodeAndReason) {
  const auto f = read_server_frame(ws::encode_close(4001, "slow consumer: outbox full"));
  EXPECT_EQ(f.op, 0x8u);
  EXPECT_TRUE(f.fin);
  ASSERT_GE(f.payload.size(), 2u);
  EXPECT_EQ((static_cast<unsigned char>(f.payload[0]) << 8) | static_cast<unsigned char>(f.payload[1]), 4001);
  EXPECT_EQ(f.payload.substr(2), "slow consumer: outbox full");

  const auto bare = read_server_frame(ws::encode_close(1000, ""));
  EXPECT_EQ(bare.payload, std::string("\x03\xe8", 2));
}

TEST(WsEncode, CloseReasonCutToControlLimitOnCharacterBoundary) {
  // ASCII: cut to exactly 123 bytes, so the payload is the maximum 125.
  const auto a = read_server_frame(ws::encode_close(1001, std::string(500, 'r')));
  EXPECT_EQ(a.len, 125u);
  EXPECT_EQ(a.payload.substr(2), std::string(123, 'r'));

  // Two-byte characters: 123 is odd, so the cut backs up to 122 bytes (61 whole characters).
  std::string e_acute;
  for (int i = 0; i < 100; ++i) e_acute += "\xc3\xa9";
  const auto b = read_server_frame(ws::encode_close(1001, e_acute));
  EXPECT_EQ(b.payload.size(), 2u + 122u);
  EXPECT_TRUE(skyrelay::proto::is_valid_utf8(b.payload.substr(2)));
  EXPECT_EQ(b.payload.substr(2), e_acute.substr(0, 122));

  // Four-byte characters: 123 = 30 * 4 + 3, so 120 bytes survive.
  std::string sat;
  for (int i = 0; i < 40; ++i) sat += "\xf0\x9f\x9b\xb0";
  const auto c = read_server_frame(ws::encode_close(1001, sat));
  EXPECT_EQ(c.payload.substr(2), sat.substr(0, 120));

  // What the server writes, its own parser-side validation accepts.
  EXPECT_EQ(ws::validate_close_payload(b.payload), 0);
  EXPECT_EQ(ws::validate_close_payload(c.payload), 0);
}

// ---- parsing: well-formed input --------------------------------------------------------------

TEST(WsParser, UnmasksTextAndBinaryOfEveryLengthForm) {
  std::string medium(300, '\0');
  for (std::size_t i = 0; i < medium.size(); ++i) medium[i] = static_cast<char>('a' + i % 26);
  std::string large(70000, '\0');
  for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 7);
  const std::string bytes = text("") + text("hello") + text(medium) + binary(large) +
                            binary(std::string("\x00\xff\x80", 3));
  ws::parser p(100000);
  const auto r = run(p, bytes);
  ASSERT_EQ(r.code, 0);
  ASSERT_EQ(r.got.size(), 5u);
  EXPECT_EQ(r.got[0], std::make_pair(ws::opcode::text, std::string()));
  EXPECT_EQ(r.got[1], std::make_pair(ws::opcode::text, std::string("hello")));
  EXPECT_EQ(r.got[2].second, medium);
  EXPECT_EQ(r.got[3].first, ws::opcode::binary);
  EXPECT_EQ(r.got[3].second, large);
  EXPECT_EQ(r.got[4].second, std::string("\x00\xff\x80", 3));
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(WsParser, AnyMaskingKeyWorks) {
  for (std::uint32_t key : {0x00000000u, 0xffffffffu, 0x01020304u, 0x80000001u}) {
    frame_spec s;
    s.key = key;
    const std::string payload = "masking key test: 0123456789abcdef";
    const auto r = run_fresh(client_frame(s, payload));
    ASSERT_EQ(r.code, 0) << key;
    ASSERT_EQ(r.got.size(), 1u);
    EXPECT_EQ(r.got[0].second, payload) << key;
  }
}

TEST(WsParser, ManyFramesInOneBuffer) {
  std::string bytes;
  for (int i = 0; i < 200; ++i) {
    bytes += i % 3 == 0 ? ping("p" + std::to_string(i)) : text("m" + std::to_string(i));
  }
  const auto r = run_fresh(bytes);
  ASSERT_EQ(r.code, 0);
  ASSERT_EQ(r.got.size(), 200u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(r.got[i].first, i % 3 == 0 ? ws::opcode::ping : ws::opcode::text);
    EXPECT_EQ(r.got[i].second.substr(1), std::to_string(i));
  }
}

TEST(WsParser, FrameSplitAtEveryByteBoundary) {
  const std::string medium(130, 'm');  // 16-bit length form
  const std::string bytes = text("first") + text("ab", false) + pong("") + cont(medium, false) +
                            ping("in the middle") + cont("end") + binary(std::string(3, '\0')) +
                            close_frame(close_payload(1000, "bye"));
  const std::vector<std::pair<ws::opcode, std::string>> want = {
      {ws::opcode::text, "first"},
      {ws::opcode::pong, ""},
      {ws::opcode::ping, "in the middle"},
      {ws::opcode::text, "ab" + medium + "end"},
      {ws::opcode::binary, std::string(3, '\0')},
      {ws::opcode::close, close_payload(1000, "bye")},
  };
  // Two pieces, cut at every position.
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    ws::parser p(1024);
    result r;
    auto on_frame = [&](const ws::inbound& in) {
      r.got.emplace_back(in.op, std::string(in.payload));
      return true;
    };
    std::string a = bytes.substr(0, cut), b = bytes.substr(cut);
    ASSERT_EQ(p.feed(a.data(), a.size(), on_frame), 0) << "cut " << cut;
    ASSERT_EQ(p.feed(b.data(), b.size(), on_frame), 0) << "cut " << cut;
    ASSERT_EQ(r.got, want) << "cut " << cut;
    EXPECT_EQ(p.buffered(), 0u);
  }
  // Fixed chunk sizes, down to one byte at a time.
  for (std::size_t chunk : {1u, 2u, 3u, 5u, 7u, 13u, 64u}) {
    const auto r = run_fresh(bytes, 1024, chunk);
    ASSERT_EQ(r.code, 0) << "chunk " << chunk;
    EXPECT_EQ(r.got, want) << "chunk " << chunk;
  }
}

TEST(WsParser, BufferedCountsIncompleteFrameAndMessage) {
  ws::parser p(1024);
  auto ignore = [](const ws::inbound&) { return true; };
  std::string start = text("12345", false);
  ASSERT_EQ(p.feed(start.data(), start.size(), ignore), 0);
  EXPECT_EQ(p.buffered(), 5u);  // the first fragment, held until the message ends
  std::string half = cont("678");
  half.resize(half.size() - 1);
  ASSERT_EQ(p.feed(half.data(), half.size(), ignore), 0);
  EXPECT_EQ(p.buffered(), 5u + half.size());
  std::string last = cont("678").substr(half.size());
  ASSERT_EQ(p.feed(last.data(), last.size(), ignore), 0);
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(WsParser, FragmentedMessagesWithInterleavedControlFrames) {
  const std::string bytes = text("He", false) + ping("1") + cont("", false) + pong("2") +
                            cont("llo", false) + close_frame(close_payload(1000)) + cont(", world") +
                            binary("\x01", false) + ping("3") + cont("\x02");
  const auto r = run_fresh(bytes);
  ASSERT_EQ(r.code, 0);
  const std::vector<std::pair<ws::opcode, std::string>> want = {
      {ws::opcode::ping, "1"},
      {ws::opcode::pong, "2"},
      {ws::opcode::close, close_payload(1000)},
      {ws::opcode::text, "Hello, world"},
      {ws::opcode::ping, "3"},
      {ws::opcode::binary, "\x01\x02"},
  };
  EXPECT_EQ(r.got, want);
}

TEST(WsParser, EmptyControlAndCloseFrames) {
  const auto r = run_fresh(ping("") + pong("") + close_frame(""));
  ASSERT_EQ(r.code, 0);
  ASSERT_EQ(r.got.size(), 3u);
  EXPECT_EQ(r.got[2], std::make_pair(ws::opcode::close, std::string()));
  // 125 bytes is the largest control payload allowed.
  const auto big = run_fresh(ping(std::string(125, 'x')));
  EXPECT_EQ(big.code, 0);
  ASSERT_EQ(big.got.size(), 1u);
  EXPECT_EQ(big.got[0].second.size(), 125u);
}

TEST(WsParser, CloseCodesThatMayAppearOnTheWire) {
  for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999,
                             4000, 4999}) {
    const auto r = run_fresh(close_frame(close_payload(code, "reason \xc3\xa9")));
    EXPECT_EQ(r.code, 0) << code;
    ASSERT_EQ(r.got.size(), 1u) << code;
    EXPECT_EQ(r.got[0].second, close_payload(code, "reason \xc3\xa9"));
  }
}

TEST(WsParser, CallbackReturningFalseStopsEarly) {
  const std::string bytes = text("one") + text("two") + ping("three");
  ws::parser p(1024);
  std::vector<std::string> seen;
  auto stop_after_first = [&](const ws::inbound& in) {
    seen.emplace_back(in.payload);
    return false;
  };
  std::string copy = bytes;
  EXPECT_EQ(p.feed(copy.data(), copy.size(), stop_after_first), 0);
  EXPECT_EQ(seen, std::vector<std::string>{"one"});

  // The same when the stopping frame completes from bytes held over from an earlier feed.
  ws::parser q(1024);
  seen.clear();
  std::string a = bytes.substr(0, 4), b = bytes.substr(4);
  EXPECT_EQ(q.feed(a.data(), a.size(), stop_after_first), 0);
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(q.feed(b.data(), b.size(), stop_after_first), 0);
  EXPECT_EQ(seen, std::vector<std::string>{"one"});

  // Stopping on a message assembled from fragments.
  ws::parser f(1024);
  seen.clear();
  std::string frag = text("a", false) + cont("b") + text("c");
  EXPECT_EQ(f.feed(frag.data(), frag.size(), stop_after_first), 0);
  EXPECT_EQ(seen, std::vector<std::string>{"ab"});
}

// ---- parsing: protocol errors ----------------------------------------------------------------

TEST(WsParser, FramingViolationsClose1002) {
  struct bad_case {
    std::string name;
    std::string bytes;
  };
  std::vector<bad_case> cases;
  auto spec = [](std::uint8_t op) {
    frame_spec s;
    s.op = op;
    return s;
  };
  {
    auto s = spec(0x1);
    s.masked = false;
    cases.push_back({"unmasked text", client_frame(s, "x")});
    s.op = 0x9;
    cases.push_back({"unmasked ping", client_frame(s, "")});
  }
  for (std::uint8_t rsv : {0x40, 0x20, 0x10, 0x70}) {
    auto s = spec(0x1);
    s.rsv = rsv;
    cases.push_back({"rsv " + std::to_string(rsv), client_frame(s, "x")});
  }
  for (std::uint8_t op : {0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF})
    cases.push_back({"opcode " + std::to_string(op), client_frame(spec(op), "x")});
  for (std::uint8_t op : {0x8, 0x9, 0xA}) {
    auto s = spec(op);
    s.fin = false;
    cases.push_back({"fragmented control " + std::to_string(op), client_frame(s, "")});
    cases.push_back({"control of 126 bytes " + std::to_string(op),
                     client_frame(spec(op), close_payload(1000, std::string(124, 'x')))});
  }
  {
    auto s = spec(0x1);
    s.form = len_form::bits16;
    cases.push_back({"5 bytes in the 16-bit form", client_frame(s, "hello")});
    cases.push_back({"125 bytes in the 16-bit form", client_frame(s, std::string(125, 'x'))});
    s.form = len_form::bits64;
    cases.push_back({"5 bytes in the 64-bit form", client_frame(s, "hello")});
    cases.push_back({"65535 bytes in the 64-bit form", client_frame(s, std::string(65535, 'x'))});
    s.declared = 0x8000000000000000ULL;
    cases.push_back({"64-bit length with the top bit set", client_frame(s, "")});
  }
  cases.push_back({"continuation without a start", cont("x")});
  cases.push_back({"unfinished continuation without a start", cont("x", false)});
  cases.push_back({"continuation after a complete message", text("done") + cont("x")});
  cases.push_back({"text inside a fragmented text", text("a", false) + text("b")});
  cases.push_back({"binary inside a fragmented text", text("a", false) + binary("b")});
  cases.push_back({"text inside a fragmented binary", binary("a", false) + text("b", false)});
  cases.push_back({"close with a 1-byte payload", close_frame("\x03")});
  for (int code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535})
    cases.push_back({"close code " + std::to_string(code),
                     close_frame(close_payload(static_cast<std::uint16_t>(code)))});

  for (const auto& c : cases) {
    EXPECT_EQ(run_fresh(c.bytes).code, 1002) << c.name;
    EXPECT_EQ(run_fresh(c.bytes, 1 << 16, 1).code, 1002) << c.name << " (byte by byte)";
  }
}

TEST(WsParser, HeaderErrorsNeedNoPayload) {
  // The violation is in the first two bytes: nothing more is needed to reject it.
  frame_spec s;
  s.masked = false;
  std::string unmasked = client_frame(s, "payload that never arrives");
  EXPECT_EQ(run_fresh(unmasked.substr(0, 2)).code, 1002);
  std::string bad_op = client_frame({0x3}, "x");
  EXPECT_EQ(run_fresh(bad_op.substr(0, 2)).code, 1002);
}

TEST(WsParser, FramesBeforeAnErrorAreDelivered) {
  const auto r = run_fresh(text("ok") + ping("p") + cont("orphan") + text("never"));
  EXPECT_EQ(r.code, 1002);
  ASSERT_EQ(r.got.size(), 2u);
  EXPECT_EQ(r.got[0].second, "ok");
  EXPECT_EQ(r.got[1].first, ws::opcode::ping);
}

// ---- parsing: UTF-8 --------------------------------------------------------------------------

TEST(WsParser, InvalidUtf8InTextCloses1007) {
  for (std::string bad : {std::string("\xff"), std::string("\xc0\xaf"), std::string("ok\xed\xa0\x80"),
                          std::string("\xf4\x90\x80\x80"), std::string("trailing \xe2\x82")}) {
    EXPECT_EQ(run_fresh(text(bad)).code, 1007);
  }
  // Binary messages carry arbitrary bytes.
  EXPECT_EQ(run_fresh(binary("\xff\xfe\xc0")).code, 0);
  EXPECT_EQ(run_fresh(binary("\xe2", false) + cont("\xff")).code, 0);
}

TEST(WsParser, Utf8AcrossFragments) {
  // A four-byte character split over four fragments is fine.
  {
    const auto r = run_fresh(text("\xf0", false) + cont("\x9f", false) + cont("\x9b", false) + cont("\xb0"));
    ASSERT_EQ(r.code, 0);
    ASSERT_EQ(r.got.size(), 1u);
    EXPECT_EQ(r.got[0].second, "\xf0\x9f\x9b\xb0");
  }
  // An invalid byte in a later fragment.
  EXPECT_EQ(run_fresh(text("valid ", false) + cont("still", false) + cont("\x80")).code, 1007);
  // A split character whose continuation turns out wrong.
  EXPECT_EQ(run_fresh(text("\xe2\x82", false) + cont("(")).code, 1007);
  // A message that ends in the middle of a character.
  EXPECT_EQ(run_fresh(text("abc", false) + cont("\xe2\x82")).code, 1007);
  // Overlong form split across fragments.
  EXPECT_EQ(run_fresh(text("\xe0", false) + cont("\x80\xaf")).code, 1007);
}

TEST(WsParser, CloseReasonMustBeUtf8) {
  EXPECT_EQ(run_fresh(close_frame(close_payload(1000, "bad \xff reason"))).code, 1007);
  EXPECT_EQ(run_fresh(close_frame(close_payload(1000, "\xed\xbf\xbf"))).code, 1007);
  EXPECT_EQ(run_fresh(close_frame(close_payload(1000, "\xf0\x9f\x9b\xb0 fine"))).code, 0);
  // The code is checked as well as the reason; an invalid code wins over valid text.
  EXPECT_EQ(run_fresh(close_frame(close_payload(1005, "x"))).code, 1002);
}

// ---- parsing: size limit ---------------------------------------------------------------------

TEST(WsParser, MessageAtTheLimitPasses) {
  EXPECT_EQ(run_fresh(text(std::string(100, 'a')), 100).code, 0);
  EXPECT_EQ(run_fresh(text(std::string(40, 'a'), false) + cont(std::string(60, 'b')), 100).code, 0);
  // Control frames in the middle do not count towards the message.
  const auto r = run_fresh(text(std::string(90, 'a'), false) + ping(std::string(50, 'p')) +
                               cont(std::string(10, 'b')),
                           100);
  EXPECT_EQ(r.code, 0);
  ASSERT_EQ(r.got.size(), 2u);
  EXPECT_EQ(r.got[1].second.size(), 100u);
}

TEST(WsParser, OversizedMessageCloses1009FromTheHeaderAlone) {
  const std::string over = text(std::string(101, 'a'));
  // 2 header bytes, 4 mask bytes: no payload byte has arrived.
  EXPECT_EQ(run_fresh(over.substr(0, 6), 100).code, 1009);

  // A 16-bit and a 64-bit announcement far over the limit, with no payload at all.
  frame_spec s;
  s.declared = 60000;
  EXPECT_EQ(run_fresh(client_frame(s, ""), 1000).code, 1009);
  s.declared = 1ULL << 40;
  EXPECT_EQ(run_fresh(client_frame(s, ""), 1 << 20).code, 1009);
  s.op = 0x2;
  s.declared = (1ULL << 63) - 1;
  EXPECT_EQ(run_fresh(client_frame(s, ""), 1 << 20).code, 1009);

  // Byte by byte: the error comes as soon as the header is complete, not later.
  ws::parser p(100);
  auto never = [](const ws::inbound&) { return true; };
  std::uint16_t code = 0;
  std::size_t fed = 0;
  for (; fed < over.size() && code == 0; ++fed) {
    char c = over[fed];
    code = p.feed(&c, 1, never);
  }
  EXPECT_EQ(code, 1009);
  EXPECT_EQ(fed, 6u);
}

TEST(WsParser, FragmentsOverTheLimitTogetherClose1009) {
  // Each fragment alone is under the limit; the sum is not. The error comes with the header of
  // the fragment that crosses the limit.
  const std::string first = text(std::string(60, 'a'), false);
  const std::string second = cont(std::string(41, 'b'));
  ws::parser p(100);
  auto on_frame = [](const ws::inbound&) { return true; };
  std::string a = first + second.substr(0, 6);
  EXPECT_EQ(p.feed(a.data(), a.size(), on_frame), 1009);

  // Many small fragments.
  std::string many = text("", false);
  for (int i = 0; i < 20; ++i) many += cont(std::string(6, 'x'), false);
  EXPECT_EQ(run_fresh(many, 100).code, 1009);
  EXPECT_EQ(run_fresh(many.substr(0, 6 + 16 * 12), 100).code, 0);  // 16 fragments: 96 bytes
}
