#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "skyrelay/net/outbox.hpp"

using skyrelay::frame_ptr;
using skyrelay::make_frame;
using skyrelay::outbox;
using skyrelay::overflow_policy;

namespace {
frame_ptr frame_of(std::string s) { return make_frame(std::move(s)); }

std::vector<std::string> take_all(outbox& o) {
  std::vector<frame_ptr> frames;
  o.take(frames);
  std::vector<std::string> out;
  for (auto& f : frames) out.push_back(f->bytes);
  return out;
}
}  // namespace

TEST(Outbox, StartWriterOnlyOnIdleToBusy) {
  outbox o({1024, 16});
  auto r1 = o.push(frame_of("a"), overflow_policy::disconnect);
  EXPECT_TRUE(r1.accepted);
  EXPECT_TRUE(r1.start_writer);
  auto r2 = o.push(frame_of("b"), overflow_policy::disconnect);
  EXPECT_TRUE(r2.accepted);
  EXPECT_FALSE(r2.start_writer);
  EXPECT_EQ(take_all(o), (std::vector<std::string>{"a", "b"}));
  // Still active until a take finds the queue empty.
  EXPECT_FALSE(o.push(frame_of("c"), overflow_policy::disconnect).start_writer);
  EXPECT_EQ(take_all(o), (std::vector<std::string>{"c"}));
  std::vector<frame_ptr> none;
  EXPECT_FALSE(o.take(none));
  EXPECT_TRUE(o.push(frame_of("d"), overflow_policy::disconnect).start_writer);
}

TEST(Outbox, DisconnectPolicyOverflowsOnFrames) {
  outbox o({1 << 20, 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(o.push(frame_of("x"), overflow_policy::disconnect).accepted);
  auto r = o.push(frame_of("y"), overflow_policy::disconnect);
  EXPECT_FALSE(r.accepted);
  EXPECT_TRUE(r.overflow);
  EXPECT_EQ(o.queued_frames(), 3u);
}

TEST(Outbox, DisconnectPolicyOverflowsOnBytes) {
  outbox o({10, 100});
  EXPECT_TRUE(o.push(frame_of("12345678"), overflow_policy::disconnect).accepted);
  EXPECT_TRUE(o.push(frame_of("12345678"), overflow_policy::disconnect).overflow);
  EXPECT_EQ(o.queued_bytes(), 8u);
}

TEST(Outbox, OversizedFrameFitsEmptyQueue) {
  outbox o({4, 100});
  auto r = o.push(frame_of(std::string(100, 'z')), overflow_policy::disconnect);
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(o.queued_bytes(), 100u);
}

TEST(Outbox, DropOldestEvictsOnlyDroppableOldestFirst) {
  outbox o({1 << 20, 3});
  o.push(frame_of("keep"), overflow_policy::disconnect);   // a reply: never dropped
  o.push(frame_of("v1"), overflow_policy::drop_oldest);
  o.push(frame_of("v2"), overflow_policy::drop_oldest);
  auto r = o.push(frame_of("v3"), overflow_policy::drop_oldest);
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(take_all(o), (std::vector<std::string>{"keep", "v2", "v3"}));
}

TEST(Outbox, DropOldestDropsNewFrameWhenNothingDroppable) {
  outbox o({1 << 20, 2});
  o.push(frame_of("r1"), overflow_policy::disconnect);
  o.push(frame_of("r2"), overflow_policy::disconnect);
  auto r = o.push(frame_of("v"), overflow_policy::drop_oldest);
  EXPECT_FALSE(r.accepted);
  EXPECT_FALSE(r.overflow);
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(take_all(o), (std::vector<std::string>{"r1", "r2"}));
}

TEST(Outbox, ReplyEvictsDroppableInsteadOfOverflowing) {
  outbox o({1 << 20, 2});
  o.push(frame_of("v1"), overflow_policy::drop_oldest);
  o.push(frame_of("v2"), overflow_policy::drop_oldest);
  auto r = o.push(frame_of("pong"), overflow_policy::disconnect);
  EXPECT_TRUE(r.accepted);
  EXPECT_FALSE(r.overflow);
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(take_all(o), (std::vector<std::string>{"v2", "pong"}));
}

TEST(Outbox, DropOldestByBytes) {
  outbox o({10, 100});
  o.push(frame_of("aaaa"), overflow_policy::drop_oldest);
  o.push(frame_of("bbbb"), overflow_policy::drop_oldest);
  auto r = o.push(frame_of("cccccc"), overflow_policy::drop_oldest);
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(take_all(o), (std::vector<std::string>{"bbbb", "cccccc"}));
}

TEST(Outbox, CloseRefusesAndClears) {
  outbox o({1024, 16});
  o.push(frame_of("a"), overflow_policy::disconnect);
  o.close();
  EXPECT_EQ(o.queued_frames(), 0u);
  auto r = o.push(frame_of("b"), overflow_policy::disconnect);
  EXPECT_FALSE(r.accepted);
  EXPECT_FALSE(r.start_writer);
}

TEST(Outbox, ConcurrentProducersLoseNothingAndKeepOrder) {
  constexpr int producers = 4, per_producer = 5000;
  outbox o({1 << 30, 1 << 20});
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i)
        o.push(frame_of(std::to_string(p) + ":" + std::to_string(i)), overflow_policy::disconnect);
      done.fetch_add(1);
    });
  }
  std::map<int, int> next;
  int total = 0;
  for (int spins = 0; spins < 10'000'000 && total < producers * per_producer; ++spins) {
    std::vector<frame_ptr> frames;
    o.take(frames);
    for (auto& f : frames) {
      auto colon = f->bytes.find(':');
      int p = std::stoi(f->bytes.substr(0, colon));
      int i = std::stoi(f->bytes.substr(colon + 1));
      ASSERT_EQ(i, next[p]) << "producer " << p;
      next[p] = i + 1;
      ++total;
    }
  }
  for (auto& t : threads) t.join();
  std::vector<frame_ptr> rest;
  o.take(rest);
  EXPECT_TRUE(rest.empty());
  EXPECT_EQ(total, producers * per_producer);
}
