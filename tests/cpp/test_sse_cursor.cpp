// The SSE cursor's text form (proto/sse_cursor.hpp): written and read back, and what is refused.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "skyrelay/proto/sse_cursor.hpp"

using skyrelay::stream_point;
using skyrelay::proto::format_sse_cursor;
using skyrelay::proto::parse_sse_cursor;

TEST(SseCursor, RoundTrips) {
  const std::vector<stream_point> points{{"Xq3v-_fA.1", 0}, {"Xq3v-_fA.7", 17}, {"Xq3v-_fA.12", 3}};
  const std::string id = format_sse_cursor("Xq3v-_fA", points);
  EXPECT_EQ(id, "Xq3v-_fA~1.0~7.17~12.3");
  auto back = parse_sse_cursor(id);
  EXPECT_EQ(back.error, "");
  ASSERT_TRUE(back.points);
  EXPECT_EQ(*back.points, points);
}

TEST(SseCursor, AnIdOfTheOldFormIsAnEpochChange) {
  // "<epoch>-<n>", as servers before per-channel cursors wrote it (the epoch may hold '-').
  for (const char* old : {"Xq3v9TfA-1207", "a-b-c-d-e-f-g-h-0"}) {
    auto r = parse_sse_cursor(old);
    EXPECT_FALSE(r.points) << old;
    EXPECT_EQ(r.error, "epoch_changed") << old;
  }
}

TEST(SseCursor, AnythingElseIsABadId) {
  for (const char* bad : {"", "nonsense", "x-", "-5", "x-1y", "~1.2", "p~", "p~1", "p~1.", "p~.1",
                          "p~1.2~", "p~1.2~3", "p.q~1.2", "p~1.2.3", "p~a.1",
                          "p~1.12345678901234567890"}) {
    auto r = parse_sse_cursor(bad);
    EXPECT_FALSE(r.points) << bad;
    EXPECT_EQ(r.error, "bad_id") << bad;
  }
  EXPECT_EQ(parse_sse_cursor("p~1.2" + std::string(5000, '0')).error, "bad_id");
}
