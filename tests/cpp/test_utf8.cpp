// UTF-8 validation against RFC 3629.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "skyrelay/proto/utf8.hpp"

using skyrelay::proto::is_valid_utf8;

namespace {

// Encodes any value up to 0x1FFFFF in the shortest form (or a longer one when `width` says so),
// without checking for surrogates or the U+10FFFF ceiling: the test decides what is valid.
std::string encode(std::uint32_t cp, int width = 0) {
  if (width == 0) width = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  std::string out;
  switch (width) {
    case 1:
      out.push_back(static_cast<char>(cp));
      break;
    case 2:
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      break;
    case 3:
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      break;
    default:
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

bool is_surrogate(std::uint32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; }

}  // namespace

TEST(Utf8, EveryScalarValueIsValidAndEverySurrogateIsNot) {
  std::size_t wrong = 0;
  for (std::uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    const bool valid = is_valid_utf8(encode(cp));
    if (valid == is_surrogate(cp) && ++wrong < 10) ADD_FAILURE() << "U+" << std::hex << cp;
  }
  EXPECT_EQ(wrong, 0u);
}

TEST(Utf8, AboveU10FFFFIsInvalid) {
  for (std::uint32_t cp : {0x110000u, 0x110001u, 0x13FFFFu, 0x1FFFFFu})
    EXPECT_FALSE(is_valid_utf8(encode(cp))) << std::hex << cp;
  EXPECT_FALSE(is_valid_utf8("\xf5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xf7\xbf\xbf\xbf"));
  // Five- and six-byte forms from the old RFC 2279.
  EXPECT_FALSE(is_valid_utf8("\xf8\x88\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xfc\x84\x80\x80\x80\x80"));
}

TEST(Utf8, OverlongFormsAreInvalid) {
  // Every value that fits in a shorter form, written one or two sizes too long.
  for (std::uint32_t cp : {0x00u, 0x2Fu, 0x7Fu}) {
    EXPECT_FALSE(is_valid_utf8(encode(cp, 2))) << std::hex << cp;
    EXPECT_FALSE(is_valid_utf8(encode(cp, 3))) << std::hex << cp;
    EXPECT_FALSE(is_valid_utf8(encode(cp, 4))) << std::hex << cp;
  }
  for (std::uint32_t cp : {0x80u, 0x7FFu}) {
    EXPECT_FALSE(is_valid_utf8(encode(cp, 3))) << std::hex << cp;
    EXPECT_FALSE(is_valid_utf8(encode(cp, 4))) << std::hex << cp;
  }
  EXPECT_FALSE(is_valid_utf8(encode(0xFFFF, 4)));
  EXPECT_FALSE(is_valid_utf8(encode(0x800, 4)));
  // The shortest forms at the same boundaries are fine.
  for (std::uint32_t cp : {0x80u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u})
    EXPECT_TRUE(is_valid_utf8(encode(cp))) << std::hex << cp;
}

TEST(Utf8, BadLeadAndContinuationBytes) {
  for (int b = 0x80; b <= 0xBF; ++b)
    EXPECT_FALSE(is_valid_utf8(std::string(1, static_cast<char>(b)))) << "lone continuation " << b;
  for (int b : {0xC0, 0xC1, 0xF5, 0xF8, 0xFC, 0xFE, 0xFF})
    EXPECT_FALSE(is_valid_utf8(std::string(1, static_cast<char>(b)) + "\x80\x80\x80")) << b;
  // A lead byte followed by something that is not a continuation byte.
  EXPECT_FALSE(is_valid_utf8("\xc3("));
  EXPECT_FALSE(is_valid_utf8("\xe2\x28\xa1"));
  EXPECT_FALSE(is_valid_utf8("\xe2\x82\x28"));
  EXPECT_FALSE(is_valid_utf8("\xf0\x9f\x9b("));
  EXPECT_FALSE(is_valid_utf8("\xc3\xc3\xa9"));
  // Surrogates written directly, alone and paired as CESU-8 would.
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));
  EXPECT_FALSE(is_valid_utf8("\xed\xbf\xbf"));
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\xbd\xed\xb8\x80"));
  EXPECT_TRUE(is_valid_utf8("\xed\x9f\xbf"));  // U+D7FF, just below
  EXPECT_TRUE(is_valid_utf8("\xee\x80\x80"));  // U+E000, just above
}

TEST(Utf8, TruncatedSequences) {
  for (std::string whole : {std::string("\xc3\xa9"), std::string("\xe2\x82\xac"),
                            std::string("\xf0\x9f\x9b\xb0")}) {
    for (std::size_t keep = 1; keep < whole.size(); ++keep) {
      EXPECT_FALSE(is_valid_utf8(whole.substr(0, keep))) << whole.size() << "/" << keep;
      EXPECT_FALSE(is_valid_utf8("abc" + whole.substr(0, keep))) << whole.size() << "/" << keep;
      EXPECT_FALSE(is_valid_utf8(whole.substr(0, keep) + "abc")) << whole.size() << "/" << keep;
    }
    EXPECT_TRUE(is_valid_utf8(whole));
  }
}

TEST(Utf8, EmptyAndNul) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8(std::string(1, '\0')));
  EXPECT_TRUE(is_valid_utf8(std::string(20, '\0')));
  EXPECT_TRUE(is_valid_utf8(std::string_view("a\0b", 3)));
}

// The validator skips ASCII eight bytes at a time. A non-ASCII byte at any offset, within or
// after a run of ASCII of any length, must still be seen.
TEST(Utf8, AsciiFastPathBoundaries) {
  for (std::size_t len = 0; len <= 40; ++len) {
    const std::string ascii(len, 'a');
    EXPECT_TRUE(is_valid_utf8(ascii)) << len;
    for (std::size_t pos = 0; pos < len; ++pos) {
      std::string s = ascii;
      s[pos] = '\x80';
      EXPECT_FALSE(is_valid_utf8(s)) << "len " << len << " bad byte at " << pos;
      s[pos] = '\xff';
      EXPECT_FALSE(is_valid_utf8(s)) << "len " << len << " 0xFF at " << pos;
      s[pos] = '\x7f';
      EXPECT_TRUE(is_valid_utf8(s)) << "len " << len << " DEL at " << pos;
    }
    // A valid and a truncated multi-byte character at every offset.
    for (std::size_t pos = 0; pos <= len; ++pos) {
      std::string good = ascii.substr(0, pos) + "\xf0\x9f\x9b\xb0" + ascii.substr(pos);
      EXPECT_TRUE(is_valid_utf8(good)) << "len " << len << " emoji at " << pos;
      std::string cut = ascii.substr(0, pos) + "\xf0\x9f\x9b" + ascii.substr(pos);
      EXPECT_FALSE(is_valid_utf8(cut)) << "len " << len << " cut emoji at " << pos;
      std::string sur = ascii.substr(0, pos) + "\xed\xa0\x80" + ascii.substr(pos);
      EXPECT_FALSE(is_valid_utf8(sur)) << "len " << len << " surrogate at " << pos;
    }
  }
}

TEST(Utf8, RealText) {
  EXPECT_TRUE(is_valid_utf8("Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln"));
  EXPECT_TRUE(is_valid_utf8("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"));
  EXPECT_TRUE(is_valid_utf8("{\"type\":\"event\",\"data\":\"\xe2\x82\xac 5\"}"));
  std::string mixed;
  for (int i = 0; i < 1000; ++i) mixed += i % 2 ? "plain ascii " : "\xce\xb1\xce\xb2\xce\xb3 ";
  EXPECT_TRUE(is_valid_utf8(mixed));
  mixed[mixed.size() / 2] = '\xc0';
  EXPECT_FALSE(is_valid_utf8(mixed));
}
