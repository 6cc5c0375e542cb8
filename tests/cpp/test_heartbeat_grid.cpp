// The shared grid that heartbeat deadlines are rounded up to (net/heartbeat_grid.hpp): never
// early, late by less than one tick, and deadlines within one tick share one instant (which is
// what lets one wake-up of an I/O thread serve all of them).
#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include "skyrelay/net/heartbeat_grid.hpp"

using namespace std::chrono_literals;
using skyrelay::net::heartbeat_due;
using skyrelay::net::heartbeat_tick;
using clock_type = std::chrono::steady_clock;

TEST(HeartbeatGrid, TickIsASixteenthOfThePeriodWithinBounds) {
  EXPECT_EQ(heartbeat_tick(16s), 1s);
  EXPECT_EQ(heartbeat_tick(25s), 1s);       // capped: a ping at most 1 s late
  EXPECT_EQ(heartbeat_tick(800ms), 50ms);
  EXPECT_EQ(heartbeat_tick(5ms), 1ms);      // floor: a test's tiny interval still works
  EXPECT_EQ(heartbeat_tick(0ms), 1ms);
}

TEST(HeartbeatGrid, NeverEarlyAndLateByLessThanATick) {
  const auto base = clock_type::now();
  for (auto period : {std::chrono::nanoseconds(200ms), std::chrono::nanoseconds(20s)}) {
    const auto tick = heartbeat_tick(period);
    for (int i = 0; i < 1000; ++i) {
      const auto deadline = base + std::chrono::microseconds(i * 7919);
      const auto due = heartbeat_due(deadline, period);
      EXPECT_GE(due, deadline);
      EXPECT_LT(due - deadline, tick);
      EXPECT_EQ(heartbeat_due(due, period), due);  // on the grid already: unchanged
    }
  }
}

TEST(HeartbeatGrid, DeadlinesWithinOneTickShareOneInstant) {
  const auto period = std::chrono::nanoseconds(20s);  // 1 s tick
  const auto start = heartbeat_due(clock_type::now(), period);  // on the grid
  std::set<clock_type::time_point> instants;
  // 1,000 connections whose deadlines spread evenly over 3 s land on 3 instants.
  for (int i = 1; i <= 1000; ++i)
    instants.insert(heartbeat_due(start + std::chrono::microseconds(i * 3000), period));
  EXPECT_EQ(instants.size(), 3u);
}
