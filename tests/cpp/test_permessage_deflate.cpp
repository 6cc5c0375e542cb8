// permessage-deflate (RFC 7692): the negotiation, the shared compressed twin of a frame, the
// bounded inflater, and RSV1 in the frame parser. zlib itself is the reference for the bytes.
#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "skyrelay/core/frame.hpp"
#include "skyrelay/proto/permessage_deflate.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace ws = skyrelay::ws;

namespace {

// A ~1 KB JSON status object, as a telemetry app publishes.
std::string telemetry_json() {
  std::string s = R"({"type":"event","event":"status","topic":"WELL-001","data":{)";
  for (int i = 0; i < 24; ++i) {
    if (i) s += ',';
    s += "\"sensor_" + std::to_string(i) + "\":{\"value\":" + std::to_string(1000 + i * 37) +
         ",\"unit\":\"kPa\",\"ok\":true}";
  }
  s += "}}";
  return s;
}

// Raw DEFLATE with zlib directly (the reference), tail stripped: what a client sends.
std::string reference_deflate(std::string_view in, int level = 6) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, in.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  EXPECT_EQ(out.substr(out.size() - 4), std::string("\x00\x00\xff\xff", 4));
  out.resize(out.size() - 4);
  return out;
}

// `zeros` zero bytes deflated in 1 MiB steps (a decompression bomb), tail stripped.
std::string bomb(std::size_t zeros) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  const std::string chunk(1 << 20, '\0');
  std::string out;
  char buf[1 << 16];
  for (std::size_t left = zeros; left > 0;) {
    const std::size_t n = std::min(left, chunk.size());
    left -= n;
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(chunk.data()));
    z.avail_in = static_cast<uInt>(n);
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      deflate(&z, left ? Z_NO_FLUSH : Z_SYNC_FLUSH);
      out.append(buf, sizeof buf - z.avail_out);
    } while (z.avail_out == 0);
  }
  deflateEnd(&z);
  out.resize(out.size() - 4);
  return out;
}

std::string masked(std::uint8_t first_byte, std::string_view payload) {
  std::string out;
  out.push_back(static_cast<char>(first_byte));
  out.push_back(static_cast<char>(0x80 | payload.size()));  // < 126 bytes in these tests
  const char key[4] = {1, 2, 3, 4};
  out.append(key, 4);
  for (std::size_t i = 0; i < payload.size(); ++i) out.push_back(payload[i] ^ key[i % 4]);
  return out;
}

}  // namespace

TEST(ExtensionParse, SeveralOffersParametersAndQuotedValues) {
  auto list = ws::parse_extensions(
      "permessage-deflate; client_max_window_bits; server_max_window_bits=\"12\" ,"
      "x-webkit-deflate-frame,  Permessage-Deflate ;Client_No_Context_Takeover");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].name, "permessage-deflate");
  ASSERT_EQ((*list)[0].params.size(), 2u);
  EXPECT_EQ((*list)[0].params[0].name, "client_max_window_bits");
  EXPECT_FALSE((*list)[0].params[0].value);
  EXPECT_EQ((*list)[0].params[1].value, "12");
  EXPECT_EQ((*list)[1].name, "x-webkit-deflate-frame");
  EXPECT_EQ((*list)[2].name, "permessage-deflate");
  EXPECT_EQ((*list)[2].params[0].name, "client_no_context_takeover");
}

TEST(ExtensionParse, RefusesWhatIsNotTheGrammar) {
  EXPECT_FALSE(ws::parse_extensions("permessage-deflate; a=\"unterminated"));
  EXPECT_FALSE(ws::parse_extensions("permessage-deflate; =3"));
  EXPECT_FALSE(ws::parse_extensions("permessage-deflate; a=\"not a token\""));
  EXPECT_FALSE(ws::parse_extensions("permessage deflate"));
  EXPECT_FALSE(ws::parse_extensions("permessage-deflate;"));
  auto empty = ws::parse_extensions("  ");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(Negotiate, AcceptsAPlainOfferWithoutContextTakeover) {
  auto a = ws::negotiate_deflate("permessage-deflate; client_max_window_bits");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
}

TEST(Negotiate, DeclinesASmallServerWindowAndTakesTheNextOffer) {
  // The first offer asks for a 2^10 window, which the shared encoding (2^15) cannot keep.
  auto a = ws::negotiate_deflate(
      "permessage-deflate; server_max_window_bits=10, permessage-deflate; "
      "server_max_window_bits=15");
  ASSERT_TRUE(a);
  EXPECT_NE(a->response.find("server_max_window_bits=15"), std::string::npos);
  EXPECT_FALSE(ws::negotiate_deflate("permessage-deflate; server_max_window_bits=10"));
  EXPECT_TRUE(ws::negotiate_deflate("permessage-deflate; server_max_window_bits=\"15\""));
}

TEST(Negotiate, DeclinesInvalidOffers) {
  EXPECT_FALSE(ws::negotiate_deflate("permessage-deflate; unknown_param"));
  EXPECT_FALSE(ws::negotiate_deflate("permessage-deflate; client_max_window_bits=16"));
  EXPECT_FALSE(ws::negotiate_deflate("permessage-deflate; client_max_window_bits=08"));
  EXPECT_FALSE(ws::negotiate_deflate("permessage-deflate; server_max_window_bits"));
  EXPECT_FALSE(ws::negotiate_deflate(
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover"));
  EXPECT_FALSE(ws::negotiate_deflate("permessage-deflate; client_no_context_takeover=1"));
  EXPECT_FALSE(ws::negotiate_deflate("x-webkit-deflate-frame"));
  EXPECT_FALSE(ws::negotiate_deflate(""));
  // A bad offer first does not hide a good one after it.
  EXPECT_TRUE(ws::negotiate_deflate("permessage-deflate; bogus, permessage-deflate"));
  EXPECT_TRUE(ws::negotiate_deflate("permessage-deflate; client_max_window_bits=9"));
}

TEST(Deflate, RoundTripsThroughZlibAndTheInflater) {
  const std::string json = telemetry_json();
  const std::string packed = ws::deflate_message(json);
  EXPECT_LT(packed.size(), json.size() / 2);
  // Without context takeover the bytes depend on the message alone: the reference agrees.
  EXPECT_EQ(packed, reference_deflate(json));
  ws::inflater in;
  std::string out;
  ASSERT_EQ(in.inflate(packed, 64 * 1024, out), ws::inflater::result::ok);
  EXPECT_EQ(out, json);
  ASSERT_EQ(in.inflate(reference_deflate("hello"), 64 * 1024, out), ws::inflater::result::ok);
  EXPECT_EQ(out, "hello");
  ASSERT_EQ(in.inflate(ws::deflate_message(""), 64 * 1024, out), ws::inflater::result::ok);
  EXPECT_EQ(out, "");
}

TEST(Deflate, InflaterWithContextTakeoverKeepsTheWindow) {
  // One zlib stream across two messages: the second refers back into the first.
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  auto next = [&](std::string_view in) {
    std::string out(4096, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    deflate(&z, Z_SYNC_FLUSH);
    out.resize(out.size() - z.avail_out - 4);
    return out;
  };
  const std::string json = telemetry_json();
  const std::string first = next(json), second = next(json);
  deflateEnd(&z);
  EXPECT_LT(second.size(), first.size() / 4);  // a back-reference, not the text again
  ws::inflater keep(15, false);
  std::string out;
  ASSERT_EQ(keep.inflate(first, 64 * 1024, out), ws::inflater::result::ok);
  ASSERT_EQ(keep.inflate(second, 64 * 1024, out), ws::inflater::result::ok);
  EXPECT_EQ(out, json);
}

TEST(Deflate, ABombStopsAtTheLimitWithoutTheMemory) {
  // 64 MiB of zeros in ~64 KiB of DEFLATE: inflating stops one byte past the limit.
  const std::string packed = bomb(64u << 20);
  ASSERT_LT(packed.size(), 128u * 1024);
  ws::inflater in;
  EXPECT_FALSE(in.allocated());
  std::string out;
  const std::size_t max = 64 * 1024;
  EXPECT_EQ(in.inflate(packed, max, out), ws::inflater::result::too_big);
  EXPECT_TRUE(in.allocated());
  // The output buffer never grew past the limit (std::string may round up to twice).
  EXPECT_LE(out.capacity(), 2 * (max + 1));
  // The inflater is usable again for the next connection of its thread.
  ASSERT_EQ(in.inflate(reference_deflate("after"), max, out), ws::inflater::result::ok);
  EXPECT_EQ(out, "after");
}

TEST(Deflate, AMessageOfExactlyTheLimitPasses) {
  const std::string text(4096, 'a');
  ws::inflater in;
  std::string out;
  EXPECT_EQ(in.inflate(reference_deflate(text), 4096, out), ws::inflater::result::ok);
  EXPECT_EQ(out, text);
  EXPECT_EQ(in.inflate(reference_deflate(text + "b"), 4096, out),
            ws::inflater::result::too_big);
}

TEST(Deflate, GarbageIsBadData) {
  ws::inflater in;
  std::string out;
  EXPECT_EQ(in.inflate(std::string("\xff\xff\xff\xff\xff\xff", 6), 1024, out),
            ws::inflater::result::bad_data);
}

TEST(DeflatedFrame, OneTwinSharedByEveryCaller) {
  const std::string json = telemetry_json();
  auto f = skyrelay::make_frame(ws::encode(ws::opcode::text, json));
  bool made = false;
  auto twin = ws::deflated(f, 128, made);
  EXPECT_TRUE(made);
  ASSERT_NE(twin, f);
  EXPECT_EQ(static_cast<unsigned char>(twin->bytes[0]), 0xC1);  // FIN, RSV1, text
  bool again = true;
  EXPECT_EQ(ws::deflated(f, 128, again), twin);
  EXPECT_FALSE(again);
  // The twin's payload is the message deflated, its header the RFC 6455 one.
  std::string expect;
  ws::append_header(expect, ws::opcode::text, ws::deflate_message(json).size());
  expect[0] = static_cast<char>(expect[0] | 0x40);
  expect += ws::deflate_message(json);
  EXPECT_EQ(twin->bytes, expect);
}

TEST(DeflatedFrame, ConcurrentWritersCompressOnce) {
  auto f = skyrelay::make_frame(ws::encode(ws::opcode::text, telemetry_json()));
  std::atomic<int> made_count{0};
  std::vector<skyrelay::frame_ptr> seen(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      bool made = false;
      seen[i] = ws::deflated(f, 0, made);
      if (made) ++made_count;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(made_count.load(), 1);
  for (const auto& s : seen) EXPECT_EQ(s, seen[0]);
}

TEST(DeflatedFrame, ControlSmallAndIncompressibleFramesGoAsTheyAre) {
  bool made = false;
  auto ping = skyrelay::make_frame(ws::encode(ws::opcode::ping, std::string(100, 'x')), 0, false);
  EXPECT_EQ(ws::deflated(ping, 0, made), ping);
  auto small = skyrelay::make_frame(ws::encode(ws::opcode::text, R"({"type":"pong"})"));
  EXPECT_EQ(ws::deflated(small, 128, made), small);
  EXPECT_FALSE(made);
  std::string noise;
  std::uint32_t x = 12345;
  for (int i = 0; i < 512; ++i) noise.push_back(static_cast<char>((x = x * 1103515245 + 12345) >> 24));
  auto binary = skyrelay::make_frame(ws::encode(ws::opcode::binary, noise));
  EXPECT_EQ(ws::deflated(binary, 0, made), binary);
  EXPECT_TRUE(made);  // tried once; the answer (send as it is) is kept
}

TEST(ParserRsv1, RefusedUnlessNegotiated) {
  ws::parser plain(1024);
  std::string bytes = masked(0xC1, "x");
  EXPECT_EQ(plain.feed(bytes.data(), bytes.size(), [](const ws::inbound&) { return true; }),
            1002);
}

TEST(ParserRsv1, MarksCompressedMessagesWhenNegotiated) {
  ws::parser p(1024);
  p.allow_compressed();
  const std::string packed = reference_deflate("hello");
  std::string bytes = masked(0xC1, packed) + masked(0x81, "plain");
  std::vector<std::pair<bool, std::string>> got;
  ASSERT_EQ(p.feed(bytes.data(), bytes.size(),
                   [&](const ws::inbound& in) {
                     got.emplace_back(in.compressed, std::string(in.payload));
                     return true;
                   }),
            0);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].first);
  EXPECT_EQ(got[0].second, packed);
  EXPECT_FALSE(got[1].first);
  // Fragmented: RSV1 on the first frame only.
  std::string frag = masked(0x41, packed.substr(0, 3)) + masked(0x80, packed.substr(3));
  got.clear();
  ASSERT_EQ(p.feed(frag.data(), frag.size(),
                   [&](const ws::inbound& in) {
                     got.emplace_back(in.compressed, std::string(in.payload));
                     return true;
                   }),
            0);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].first);
  EXPECT_EQ(got[0].second, packed);
}

TEST(ParserRsv1, NeverOnControlOrContinuationFrames) {
  auto code = [](std::string bytes) {
    ws::parser p(1024);
    p.allow_compressed();
    return p.feed(bytes.data(), bytes.size(), [](const ws::inbound&) { return true; });
  };
  EXPECT_EQ(code(masked(0xC9, "")), 1002);                         // ping with RSV1
  EXPECT_EQ(code(masked(0x01, "a") + masked(0xC0, "b")), 1002);    // continuation with RSV1
  EXPECT_EQ(code(masked(0xA1, "a")), 1002);                        // RSV2
}
