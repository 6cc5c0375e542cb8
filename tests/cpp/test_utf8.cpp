#include <gtest/gtest.h>

#include <string>

#include "skyrelay/proto/utf8.hpp"

using skyrelay::proto::is_valid_utf8;

TEST(Utf8, AcceptsValidText) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii, longer than eight bytes"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9"));              // é
  EXPECT_TRUE(is_valid_utf8("\xe2\x82\xac"));             // €
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x9b\xb0"));         // satellite emoji
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));         // U+10FFFF
  EXPECT_TRUE(is_valid_utf8(std::string("a\0b", 3)));     // NUL is valid UTF-8
  EXPECT_TRUE(is_valid_utf8("12345678\xc3\xa9" "12345678"));  // multibyte after the fast path
}

TEST(Utf8, RejectsInvalidText) {
  EXPECT_FALSE(is_valid_utf8("\x80"));                    // lone continuation
  EXPECT_FALSE(is_valid_utf8("\xc0\x80"));                // overlong NUL
  EXPECT_FALSE(is_valid_utf8("\xc1\xbf"));                // overlong
  EXPECT_FALSE(is_valid_utf8("\xe0\x80\xaf"));            // overlong 3-byte
  EXPECT_FALSE(is_valid_utf8("\xf0\x80\x80\xaf"));        // overlong 4-byte
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));            // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));        // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xf5\x80\x80\x80"));        // lead byte F5
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));                // truncated
  EXPECT_FALSE(is_valid_utf8("abcdefgh\xe2\x82"));        // truncated after fast path
  EXPECT_FALSE(is_valid_utf8("\xe2\x28\xa1"));            // bad continuation
  EXPECT_FALSE(is_valid_utf8("\xff"));
}
