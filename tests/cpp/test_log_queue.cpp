// core/log_queue: levels, bounded queue with counted drops, batches in order, close, and the
// dispatcher's progress report that readiness reads.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "skyrelay/core/log_queue.hpp"
#include "skyrelay/hub/dispatcher.hpp"

namespace skyrelay {
namespace {

using namespace std::chrono_literals;

log_record info(std::string_view event, std::int64_t n) {
  return log_record{log_level::info, log_source::conn, event, 0.0, {{"n", n}}};
}

TEST(LogQueue, EveryLoggerIsOffUntilALevelIsSet) {
  log_queue q(8);
  for (int s = 0; s < static_cast<int>(log_source::count_); ++s)
    EXPECT_FALSE(q.enabled(static_cast<log_source>(s), log_level::error));
  q.set_level(log_source::auth, log_level::warning);
  EXPECT_TRUE(q.enabled(log_source::auth, log_level::warning));
  EXPECT_TRUE(q.enabled(log_source::auth, log_level::error));
  EXPECT_FALSE(q.enabled(log_source::auth, log_level::info));
  EXPECT_FALSE(q.enabled(log_source::conn, log_level::error));  // each logger its own
  EXPECT_EQ(logger_name(log_source::auth), "skyrelay.core.auth");
}

TEST(LogQueue, LogEventBuildsNothingWhenDisabled) {
  log_queue q(8);
  q.set_level(log_source::conn, log_level::warning);
  int built = 0;
  auto make = [&] {
    ++built;
    return std::vector<log_field>{{"k", std::string("v")}};
  };
  log_event(q, log_source::conn, log_level::info, "connection_open", make);
  EXPECT_EQ(built, 0);
  EXPECT_EQ(q.size(), 0u);
  log_event(q, log_source::conn, log_level::warning, "slow_consumer", make);
  EXPECT_EQ(built, 1);
  EXPECT_EQ(q.size(), 1u);
}

TEST(LogQueue, OverflowIsDroppedAndCounted) {
  log_queue q(3);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(q.push(info("e", i)), i < 3);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.dropped(), 2u);
  auto got = q.take(10, 0ms);
  ASSERT_EQ(got.size(), 3u);
  // The oldest kept, in order: what overflowed is the newest.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(std::get<std::int64_t>(got[i].fields[0].value), i);
  EXPECT_GT(got[0].unix_time, 1.6e9);  // stamped by push
  EXPECT_TRUE(q.push(info("e", 9)));   // room again
}

TEST(LogQueue, TakeReturnsBatchesOfAtMostMax) {
  log_queue q(100);
  for (int i = 0; i < 10; ++i) q.push(info("e", i));
  auto first = q.take(4, 0ms);
  auto rest = q.take(100, 0ms);
  ASSERT_EQ(first.size(), 4u);
  ASSERT_EQ(rest.size(), 6u);
  EXPECT_EQ(std::get<std::int64_t>(rest[0].fields[0].value), 4);
}

TEST(LogQueue, TakeWaitsThenReturnsEmptyAndCloseWakesIt) {
  log_queue q(4);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(q.take(4, 50ms).empty());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 40ms);
  auto waiting = std::async(std::launch::async, [&] { return q.take(4, 10s).size(); });
  std::this_thread::sleep_for(20ms);
  const auto t1 = std::chrono::steady_clock::now();
  q.close();
  EXPECT_EQ(waiting.get(), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 5s);
  q.push(info("late", 1));  // still taken after close
  EXPECT_EQ(q.take(4, 10s).size(), 1u);
  q.reopen();
}

TEST(LogQueue, AWaitThatAsksToBeWokenEndsAtTheFirstRecord) {
  log_queue q(4);
  auto waiting = std::async(std::launch::async, [&] { return q.take(4, 10s, true).size(); });
  std::this_thread::sleep_for(20ms);
  const auto t0 = std::chrono::steady_clock::now();
  q.push(info("wake", 1));
  EXPECT_EQ(waiting.get(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(LogQueue, ManyThreadsPushWithinTheBound) {
  log_queue q(1000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) q.push(info("e", i));
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(q.size(), 1000u);
  EXPECT_EQ(q.dropped(), 1000u);
}

TEST(DispatcherProgress, StalledGrowsOnlyWhileJobsWait) {
  dispatcher d(16);
  d.start();
  EXPECT_EQ(d.progress().queued, 0u);
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::atomic<bool> running{false};
  ASSERT_TRUE(d.post([&, gate] {
    running = true;
    gate.wait();
  }));
  while (!running) std::this_thread::yield();
  // One job runs (blocked), none waits: not stalled.
  EXPECT_EQ(d.progress().queued, 0u);
  ASSERT_TRUE(d.post([] {}));
  std::this_thread::sleep_for(60ms);
  auto p = d.progress();
  EXPECT_EQ(p.queued, 1u);
  EXPECT_GE(p.stalled, 50ms);
  release.set_value();
  d.stop();
  EXPECT_EQ(d.progress().queued, 0u);
}

}  // namespace
}  // namespace skyrelay
