// The per-connection bounded outbox: writer hand-off, limits and overflow policies.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/net/outbox.hpp"

using skyrelay::frame_ptr;
using skyrelay::make_frame;
using skyrelay::outbox;
using skyrelay::overflow_policy;

namespace {

constexpr auto keep = overflow_policy::disconnect;  // never evicted
constexpr auto drop = overflow_policy::drop_oldest;

frame_ptr f(std::string bytes) { return make_frame(std::move(bytes)); }

// Takes everything queued; empty when take() reported nothing.
std::vector<std::string> drain(outbox& o) {
  std::vector<frame_ptr> frames;
  if (!o.take(frames)) return {};
  std::vector<std::string> out;
  for (const auto& fr : frames) out.push_back(fr->bytes);
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

// ---- writer hand-off ------------------------------------------------------------------------

TEST(Outbox, FirstPushAfterIdleStartsTheWriter) {
  outbox o({1024, 16});
  const auto a = o.push(f("a"), keep);
  EXPECT_TRUE(a.accepted);
  EXPECT_TRUE(a.start_writer);
  EXPECT_FALSE(a.overflow);
  EXPECT_EQ(a.dropped, 0u);
  // Busy: more pushes queue without another start.
  EXPECT_FALSE(o.push(f("b"), keep).start_writer);
  EXPECT_FALSE(o.push(f("c"), drop).start_writer);
  EXPECT_EQ(o.queued_frames(), 3u);
  EXPECT_EQ(o.queued_bytes(), 3u);
}

TEST(Outbox, TakeMovesEverythingInOrderAndStaysBusy) {
  outbox o({1024, 16});
  o.push(f("1"), keep);
  o.push(f("22"), drop);
  o.push(f("333"), keep);
  std::vector<frame_ptr> out;
  out.push_back(f("already there"));
  ASSERT_TRUE(o.take(out));
  ASSERT_EQ(out.size(), 4u);  // appended, not replaced
  EXPECT_EQ(out[1]->bytes, "1");
  EXPECT_EQ(out[2]->bytes, "22");
  EXPECT_EQ(out[3]->bytes, "333");
  EXPECT_EQ(o.queued_frames(), 0u);
  EXPECT_EQ(o.queued_bytes(), 0u);
  // The writer is still running (its write is in flight): a push now must not start another.
  EXPECT_FALSE(o.push(f("4"), keep).start_writer);
  EXPECT_EQ(drain(o), strings{"4"});
}

TEST(Outbox, EmptyTakeMarksIdle) {
  outbox o({1024, 16});
  o.push(f("a"), keep);
  EXPECT_EQ(drain(o), strings{"a"});
  std::vector<frame_ptr> none;
  EXPECT_FALSE(o.take(none));
  EXPECT_TRUE(none.empty());
  // Idle again: the next push asks for a start, exactly once.
  EXPECT_TRUE(o.push(f("b"), keep).start_writer);
  EXPECT_FALSE(o.push(f("c"), keep).start_writer);
  // An empty take on an idle outbox keeps it idle.
  outbox fresh({1024, 16});
  EXPECT_FALSE(fresh.take(none));
  EXPECT_FALSE(fresh.take(none));
  EXPECT_TRUE(fresh.push(f("x"), keep).start_writer);
}

TEST(Outbox, SharedFramesAreNotCopied) {
  outbox o({1024, 16});
  auto shared = f("payload");
  o.push(shared, keep);
  std::vector<frame_ptr> out;
  ASSERT_TRUE(o.take(out));
  EXPECT_EQ(out[0].get(), shared.get());
}

// ---- limits under the disconnect policy -----------------------------------------------------

TEST(Outbox, FrameLimitIsInclusive) {
  outbox o({1 << 20, 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(o.push(f("x"), keep).accepted) << i;
  const auto r = o.push(f("y"), keep);
  EXPECT_FALSE(r.accepted);
  EXPECT_TRUE(r.overflow);
  EXPECT_FALSE(r.start_writer);
  EXPECT_EQ(r.dropped, 0u);
  EXPECT_EQ(o.queued_frames(), 3u);
  EXPECT_EQ(drain(o), (strings{"x", "x", "x"}));
}

TEST(Outbox, ByteLimitIsInclusive) {
  outbox o({10, 100});
  EXPECT_TRUE(o.push(f("123456"), keep).accepted);
  EXPECT_TRUE(o.push(f("7890"), keep).accepted);  // exactly 10
  EXPECT_EQ(o.queued_bytes(), 10u);
  const auto r = o.push(f("!"), keep);
  EXPECT_TRUE(r.overflow);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(o.queued_bytes(), 10u);
  // Taking frees the room again (for an outbox that has not overflowed: one that has is
  // being closed, and refuses everything after).
  outbox t({10, 100});
  EXPECT_TRUE(t.push(f("0123456789"), keep).accepted);
  drain(t);
  EXPECT_TRUE(t.push(f("0123456789"), keep).accepted);
}

TEST(Outbox, OversizedFrameAlwaysFitsAnEmptyQueue) {
  outbox o({8, 4});
  const auto r = o.push(f(std::string(1000, 'z')), keep);
  EXPECT_TRUE(r.accepted);
  EXPECT_TRUE(r.start_writer);
  EXPECT_EQ(o.queued_bytes(), 1000u);
  // But nothing else fits behind it.
  EXPECT_TRUE(o.push(f("a"), keep).overflow);
  ASSERT_EQ(drain(o).size(), 1u);
  // Again into an empty queue (of an outbox that has not overflowed).
  outbox again({8, 4});
  EXPECT_TRUE(again.push(f(std::string(1000, 'z')), keep).accepted);
  ASSERT_EQ(drain(again).size(), 1u);
  EXPECT_TRUE(again.push(f(std::string(1000, 'z')), keep).accepted);
  // With drop_oldest too, even when that means evicting everything queued.
  outbox d({8, 4});
  d.push(f("aaaa"), drop);
  d.push(f("bbbb"), drop);
  const auto big = d.push(f(std::string(50, 'q')), drop);
  EXPECT_TRUE(big.accepted);
  EXPECT_EQ(big.dropped, 2u);
  EXPECT_EQ(drain(d), strings{std::string(50, 'q')});
}

// A reply or control frame (pushed with disconnect) that finds the outbox full first makes room
// by evicting drop_oldest frames: a pong must not cost a volatile subscriber its connection.
TEST(Outbox, ReplyEvictsDroppableFramesBeforeOverflowing) {
  outbox o({1 << 20, 2});
  o.push(f("v1"), drop);
  o.push(f("v2"), drop);
  const auto r = o.push(f("pong"), keep);
  EXPECT_TRUE(r.accepted);
  EXPECT_FALSE(r.overflow);
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(drain(o), (strings{"v2", "pong"}));
}

TEST(Outbox, ReplyOverflowsWhenEvictionIsNotEnough) {
  outbox o({1 << 20, 2});
  o.push(f("r1"), keep);
  o.push(f("r2"), keep);
  const auto r = o.push(f("r3"), keep);
  EXPECT_FALSE(r.accepted);
  EXPECT_TRUE(r.overflow);
  EXPECT_EQ(r.dropped, 0u);
  EXPECT_EQ(drain(o), (strings{"r1", "r2"}));

  // Bytes: the kept frame alone leaves no room for the reply, with or without the droppable one.
  outbox b({10, 100});
  b.push(f("KKKKKKKK"), keep);
  b.push(f("d"), drop);
  const auto rb = b.push(f("rep"), keep);
  EXPECT_FALSE(rb.accepted);
  EXPECT_TRUE(rb.overflow);
  const auto left = drain(b);
  ASSERT_FALSE(left.empty());
  EXPECT_EQ(left.front(), "KKKKKKKK");
  EXPECT_EQ(rb.dropped, 2u - left.size());  // whatever was evicted was counted
}

// ---- drop_oldest ----------------------------------------------------------------------------

TEST(Outbox, DropOldestEvictsOldestDroppableFirst) {
  outbox o({1 << 20, 4});
  o.push(f("k1"), keep);
  o.push(f("d1"), drop);
  o.push(f("k2"), keep);
  o.push(f("d2"), drop);
  auto r = o.push(f("d3"), drop);
  EXPECT_TRUE(r.accepted);
  EXPECT_FALSE(r.overflow);
  EXPECT_EQ(r.dropped, 1u);
  r = o.push(f("d4"), drop);
  EXPECT_EQ(r.dropped, 1u);
  // d1 then d2 went; the kept frames stay in place, order preserved.
  EXPECT_EQ(drain(o), (strings{"k1", "k2", "d3", "d4"}));
}

TEST(Outbox, DropOldestEvictsAsManyAsNeededForBytes) {
  outbox o({12, 100});
  o.push(f("aaa"), drop);
  o.push(f("bbb"), drop);
  o.push(f("ccc"), drop);
  o.push(f("ddd"), drop);  // 12 bytes: full
  const auto r = o.push(f("eeeeeee"), drop);  // 7 bytes: three of the four must go
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.dropped, 3u);
  EXPECT_EQ(o.queued_bytes(), 10u);
  EXPECT_EQ(drain(o), (strings{"ddd", "eeeeeee"}));
}

TEST(Outbox, DropOldestDropsTheNewFrameWhenNothingDroppableRemains) {
  outbox o({1 << 20, 2});
  o.push(f("r1"), keep);
  o.push(f("r2"), keep);
  const auto r = o.push(f("volatile"), drop);
  EXPECT_FALSE(r.accepted);
  EXPECT_FALSE(r.overflow);  // dropping is the policy, not a reason to disconnect
  EXPECT_FALSE(r.start_writer);
  EXPECT_EQ(r.dropped, 1u);  // the new frame itself
  EXPECT_EQ(drain(o), (strings{"r1", "r2"}));
}

TEST(Outbox, DropOldestCountsEvictedAndNewWhenEvictionIsNotEnough) {
  // Non-droppable frames fill the byte budget; evicting the one droppable frame does not make
  // room, so it and the new frame are both gone, and both are counted.
  outbox o({10, 100});
  o.push(f("KKKKKKKK"), keep);
  o.push(f("d"), drop);
  const auto r = o.push(f("new"), drop);
  EXPECT_FALSE(r.accepted);
  EXPECT_GE(r.dropped, 1u);
  const auto left = drain(o);
  EXPECT_EQ(left.front(), "KKKKKKKK");
  EXPECT_EQ(r.dropped, 1u + (2u - left.size()));  // every frame that vanished was counted
}

TEST(Outbox, DropCountsAddUp) {
  // Pushing N volatile frames into a queue of 5 drops exactly N - 5, all counted.
  outbox o({1 << 20, 5});
  std::size_t dropped = 0, accepted = 0;
  for (int i = 0; i < 100; ++i) {
    const auto r = o.push(f("pos" + std::to_string(i)), drop);
    dropped += r.dropped;
    accepted += r.accepted;
  }
  EXPECT_EQ(accepted, 100u);
  EXPECT_EQ(dropped, 95u);
  EXPECT_EQ(drain(o), (strings{"pos95", "pos96", "pos97", "pos98", "pos99"}));
}

// ---- close ----------------------------------------------------------------------------------

TEST(Outbox, AfterAnOverflowEverythingIsRefusedAndTheOverflowReportedOnce) {
  outbox o({1 << 20, 2});
  EXPECT_TRUE(o.push(f("a"), keep).accepted);
  EXPECT_TRUE(o.push(f("b"), keep).accepted);
  EXPECT_TRUE(o.push(f("c"), keep).overflow);
  // The writer takes what was queued (the connection is closed for the overflow later, on its
  // own thread): the frames after "c" must not follow "b" with "c" missing.
  EXPECT_EQ(drain(o), (strings{"a", "b"}));
  for (auto policy : {keep, drop}) {
    const auto r = o.push(f("d"), policy);
    EXPECT_FALSE(r.accepted);
    EXPECT_FALSE(r.overflow) << "reported once, by the push that overflowed";
    EXPECT_FALSE(r.start_writer);
    EXPECT_EQ(r.refused, 1u);
  }
  const std::vector<frame_ptr> group{f("e"), f("f")};
  EXPECT_EQ(o.push_group(group, keep).refused, 2u);
  std::vector<frame_ptr> out;
  EXPECT_FALSE(o.take(out));
}

TEST(Outbox, CloseDropsQueuedAndRefusesMore) {
  outbox o({1024, 16});
  EXPECT_TRUE(o.push(f("a"), keep).start_writer);
  o.close();
  EXPECT_EQ(o.queued_frames(), 0u);
  EXPECT_EQ(o.queued_bytes(), 0u);
  for (auto policy : {keep, drop}) {
    const auto r = o.push(f("b"), policy);
    EXPECT_FALSE(r.accepted);
    EXPECT_FALSE(r.start_writer);
    EXPECT_FALSE(r.overflow) << "a closing connection is not a slow one";
  }
  std::vector<frame_ptr> out;
  EXPECT_FALSE(o.take(out));
  EXPECT_TRUE(out.empty());
  o.close();  // idempotent
  EXPECT_FALSE(o.push(f("c"), keep).accepted);
}

// ---- threads --------------------------------------------------------------------------------

// Several producers push while one writer drains, following the outbox's hand-off contract: the
// writer runs only after a push said start_writer, and keeps taking until take() says idle.
// Nothing may be lost or duplicated, each producer's frames stay in order, and every start is
// matched by exactly one writer run.
TEST(Outbox, ConcurrentProducersAndWriter) {
  constexpr int producers = 6;
  constexpr int per_producer = 20000;
  outbox o({std::size_t{1} << 40, std::size_t{1} << 30});

  std::mutex mu;
  std::condition_variable cv;
  std::size_t starts = 0;
  std::size_t producers_done = 0;

  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) {
        const auto r = o.push(f(std::to_string(p) + ":" + std::to_string(i)), keep);
        if (!r.accepted) ADD_FAILURE() << "refused " << p << ":" << i;
        if (r.start_writer) {
          std::lock_guard lock(mu);
          ++starts;
          cv.notify_one();
        }
      }
      std::lock_guard lock(mu);
      ++producers_done;
      cv.notify_one();
    });
  }

  std::vector<int> next(producers, 0);
  std::size_t received = 0, runs = 0, bad_order = 0;
  for (;;) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return starts > runs || producers_done == producers; });
      if (starts == runs) break;  // every producer finished and no start is pending
    }
    ++runs;
    std::vector<frame_ptr> batch;
    while (o.take(batch)) {
      for (const auto& fr : batch) {
        const auto colon = fr->bytes.find(':');
        const int p = std::stoi(fr->bytes.substr(0, colon));
        const int i = std::stoi(fr->bytes.substr(colon + 1));
        if (i != next[p]) ++bad_order;
        next[p] = i + 1;
        ++received;
      }
      batch.clear();
    }
  }
  for (auto& t : threads) t.join();

  EXPECT_EQ(bad_order, 0u);
  EXPECT_EQ(received, std::size_t{producers} * per_producer);
  for (int p = 0; p < producers; ++p) EXPECT_EQ(next[p], per_producer) << p;
  EXPECT_EQ(runs, starts);
  EXPECT_GE(runs, 1u);
  EXPECT_EQ(o.queued_frames(), 0u);
  // The last run ended with an empty take, so the outbox is idle.
  EXPECT_TRUE(o.push(f("after"), keep).start_writer);
}

// ---- groups (a Socket.IO binary event and its attachments) ----------------------------------

TEST(Outbox, GroupsFromConcurrentPushersStayContiguous) {
  // Two threads push three-frame groups while a third pushes single frames: in the queue, every
  // group's frames are back to back, whatever the interleaving of the pushes.
  constexpr int rounds = 5000;
  outbox o({std::size_t{1} << 40, std::size_t{1} << 30});
  std::vector<std::thread> threads;
  for (int p = 0; p < 2; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < rounds; ++i) {
        const std::string id = std::to_string(p) + "." + std::to_string(i);
        const auto r = o.push_group({f("g" + id + "/0"), f("g" + id + "/1"), f("g" + id + "/2")},
                                    keep);
        if (!r.accepted) ADD_FAILURE() << "refused group " << id;
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < rounds * 3; ++i) o.push(f("s" + std::to_string(i)), keep);
  });
  for (auto& t : threads) t.join();
  const auto all = drain(o);
  ASSERT_EQ(all.size(), std::size_t{rounds} * 2 * 3 + rounds * 3);
  std::size_t groups = 0;
  for (std::size_t k = 0; k < all.size(); ++k) {
    if (all[k][0] != 'g') continue;
    ASSERT_EQ(all[k].substr(all[k].size() - 2), "/0") << "an attachment out of its group";
    const std::string id = all[k].substr(0, all[k].size() - 2);
    ASSERT_LT(k + 2, all.size());
    EXPECT_EQ(all[k + 1], id + "/1");
    EXPECT_EQ(all[k + 2], id + "/2");
    k += 2;
    ++groups;
  }
  EXPECT_EQ(groups, std::size_t{rounds} * 2);
}

TEST(Outbox, GroupCountsAsItsTotalAgainstTheBounds) {
  outbox o({1024, 4});
  EXPECT_TRUE(o.push(f("a"), keep).accepted);
  EXPECT_TRUE(o.push(f("b"), drop).accepted);
  // Three more frames would make five: the droppable "b" goes, then the group fits (four).
  const auto r = o.push_group({f("c"), f("d"), f("e")}, keep);
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(drain(o), (strings{"a", "c", "d", "e"}));
  // Over the bound with nothing droppable: disconnect refuses the whole group...
  outbox full({1024, 2});
  full.push(f("x"), keep);
  const auto refused = full.push_group({f("y"), f("z")}, keep);
  EXPECT_TRUE(refused.overflow);
  EXPECT_FALSE(refused.accepted);
  EXPECT_EQ(drain(full), (strings{"x"}));
  // ...and drop_oldest drops the whole group, counted frame by frame.
  outbox volatile_full({1024, 2});
  volatile_full.push(f("x"), keep);
  const auto dropped = volatile_full.push_group({f("y"), f("z")}, drop);
  EXPECT_FALSE(dropped.accepted);
  EXPECT_EQ(dropped.dropped, 2u);
  EXPECT_EQ(drain(volatile_full), (strings{"x"}));
  // A group always fits an empty queue, and an empty group does nothing.
  outbox empty({1, 1});
  EXPECT_TRUE(empty.push_group({f("big"), f("bigger")}, keep).accepted);
  EXPECT_FALSE(empty.push_group({}, keep).accepted);
  EXPECT_EQ(empty.queued_frames(), 2u);
}

// ---- the vector queue (issue 18): evictions from the front and behind kept frames -----------

TEST(Outbox, AStreamThatOnlyEvictsKeepsItsNewestFramesInOrder) {
  // Nobody takes (the writer waits on a full socket): every push past the bound evicts the
  // oldest. The count of drops and the frames left are those of a plain FIFO.
  outbox o({1 << 20, 8});
  std::size_t dropped = 0;
  for (int i = 0; i < 10000; ++i) {
    const auto r = o.push(f(std::to_string(i)), drop);
    EXPECT_TRUE(r.accepted);
    dropped += r.dropped;
  }
  EXPECT_EQ(dropped, 10000u - 8u);
  EXPECT_EQ(o.queued_frames(), 8u);
  EXPECT_EQ(drain(o), (strings{"9992", "9993", "9994", "9995", "9996", "9997", "9998", "9999"}));
  EXPECT_EQ(o.queued_bytes(), 0u);
}

TEST(Outbox, EvictionBehindAFrameThatStaysKeepsTheOrder) {
  outbox o({1024, 3});
  o.push(f("reply"), keep);
  o.push(f("a"), drop);
  o.push(f("b"), drop);
  const auto r = o.push(f("c"), drop);  // "a", behind the reply, makes room
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.dropped, 1u);
  EXPECT_EQ(o.queued_bytes(), 7u);
  // Taken behind what the caller already holds (no swap then).
  std::vector<frame_ptr> out{f("held")};
  ASSERT_TRUE(o.take(out));
  std::vector<std::string> got;
  for (const auto& fr : out) got.push_back(fr->bytes);
  EXPECT_EQ(got, (strings{"held", "reply", "b", "c"}));
}

TEST(Outbox, TakesAfterFrontEvictionsStartAtTheOldestLiveFrame) {
  outbox o({1024, 2});
  for (const char* s : {"1", "2", "3", "4"}) o.push(f(s), drop);  // "1" and "2" evicted
  EXPECT_EQ(drain(o), (strings{"3", "4"}));
  o.push(f("5"), drop);  // the queue starts over at the front
  EXPECT_EQ(drain(o), (strings{"5"}));
  EXPECT_TRUE(drain(o).empty());
}
