// Header fields from the application: names are tokens, values carry no CR, LF or NUL.
#include <gtest/gtest.h>

#include <string>

#include "skyrelay/proto/http_fields.hpp"

using skyrelay::proto::valid_field_name;
using skyrelay::proto::valid_field_value;

TEST(HttpFields, TokenNames) {
  for (std::string_view n : {"Content-Type", "X-Custom_Header", "a", "X!#$%&'*+-.^_`|~9"})
    EXPECT_TRUE(valid_field_name(n)) << n;
  for (std::string_view n : {"", "X Y", "X:Y", "X\r\nY", "X\n", "\r", "X\tY", "(x)", "a/b",
                             "a@b", "é", "X\x7f"})
    EXPECT_FALSE(valid_field_name(n)) << n;
  EXPECT_FALSE(valid_field_name(std::string_view("X\0Y", 3)));
}

TEST(HttpFields, ValuesWithoutLineBreaksOrControls) {
  for (std::string_view v : {"", "text/html; charset=utf-8", "a\tb", " padded ", "caf\xc3\xa9",
                             "\x80\xff", "\"quoted\" (comment) <x>"})
    EXPECT_TRUE(valid_field_value(v)) << v;
  for (std::string_view v : {"a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "\r\n", "a\x01", "\x1b[0m",
                             "a\x7f"})
    EXPECT_FALSE(valid_field_value(v)) << v;
  EXPECT_FALSE(valid_field_value(std::string_view("a\0b", 3)));
}
