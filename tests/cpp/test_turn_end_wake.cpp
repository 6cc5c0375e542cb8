// Dispatcher wake-ups held by an I/O thread to the end of its turn (net/turn_end_wake.hpp):
// a real io_context and a real dispatcher worker.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/net/turn_end_wake.hpp"

using namespace skyrelay;
using namespace std::chrono_literals;

namespace {

// Counts the wake-ups handed to it, and hands them on to a turn_end_wake.
class counting_deferral final : public dispatcher::wake_deferral {
 public:
  explicit counting_deferral(asio::io_context& ctx) : inner_(ctx) {}
  bool defer(dispatcher& d) noexcept override {
    ++calls;
    return inner_.defer(d);
  }
  std::atomic<int> calls{0};

 private:
  net::turn_end_wake inner_;
};

// Runs `ctx` on a thread of its own with `w` installed, as the server's I/O threads do.
std::thread io_thread(asio::io_context& ctx, dispatcher::wake_deferral* w) {
  return std::thread([&ctx, w] {
    dispatcher::defer_wakes_on_this_thread(w);
    ctx.run();
    dispatcher::defer_wakes_on_this_thread(nullptr);
  });
}

}  // namespace

// One turn's posts: only the first finds the worker idle, and its wake-up waits for the end
// of the handler that posted; the worker then takes the turn's jobs, in order, as one batch.
//
// Holding the wake-up can only show while the worker sleeps: a worker still starting, or
// still between its last batch and its wait, takes queued jobs without being woken, and that
// is allowed. Nothing outside tells when it has gone to sleep, so each attempt first lets it
// finish a job and settle, and the test needs one attempt (of up to 20) in which none of the
// ten jobs started during the turn and they then ran as one batch. Without the deferral the
// worker is woken by the first post and starts during the turn's 20 ms in every attempt.
TEST(TurnEndWake, OneTurnsJobsRunAfterItAsOneBatchInOrder) {
  dispatcher d(1000);
  std::vector<std::size_t> batches;  // the size of each batch the worker ran
  std::vector<int> ran;
  std::mutex mu;
  std::size_t in_batch = 0;  // jobs run in the current batch (worker thread)
  bool last_ran = false;     // the batch ran the attempt's last job (worker thread)
  std::promise<void>* all_ran = nullptr;  // set once that batch is recorded (under mu)
  d.set_batch_scope([&](const std::function<void()>& run_jobs) {
    in_batch = 0;
    last_ran = false;
    run_jobs();
    std::lock_guard lock(mu);
    batches.push_back(in_batch);
    if (last_ran && all_ran) std::exchange(all_ran, nullptr)->set_value();
  });
  d.start();
  asio::io_context ctx;
  auto guard = asio::make_work_guard(ctx);
  counting_deferral w(ctx);
  std::thread t = io_thread(ctx, &w);

  bool held = false;
  for (int attempt = 0; attempt < 20 && !held; ++attempt) {
    std::promise<void> settled;  // one job from this thread, then time for the worker to wait
    ASSERT_TRUE(d.post([&] { settled.set_value(); }));
    ASSERT_EQ(settled.get_future().wait_for(10s), std::future_status::ready);
    std::this_thread::sleep_for(10ms);
    {
      std::lock_guard lock(mu);
      ran.clear();
      batches.clear();
    }
    const int calls_before = w.calls;
    std::promise<std::vector<int>> seen_in_turn;  // what had run when the posting handler ended
    std::promise<void> recorded;
    {
      std::lock_guard lock(mu);
      all_ran = &recorded;
    }
    asio::post(ctx, [&] {
      for (int i = 0; i < 10; ++i)
        ASSERT_TRUE(d.post([&, i] {
          ++in_batch;
          last_ran = i == 9;
          std::lock_guard lock(mu);
          ran.push_back(i);
        }));
      std::this_thread::sleep_for(20ms);
      std::lock_guard lock(mu);
      seen_in_turn.set_value(ran);
    });
    const bool none_in_turn = seen_in_turn.get_future().get().empty();
    ASSERT_EQ(recorded.get_future().wait_for(10s), std::future_status::ready);
    std::lock_guard lock(mu);
    EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    // Held: nothing started in the turn, the ten ran as one batch (the last recorded: the
    // settling job's may be recorded after the clear above), and only the turn's first post
    // found the queue empty and handed its wake-up over.
    held = none_in_turn && !batches.empty() && batches.back() == 10 &&
           w.calls - calls_before == 1;
  }
  EXPECT_TRUE(held) << "in 20 attempts the worker always started during the posting turn";
  guard.reset();
  ctx.stop();
  t.join();
  d.stop();
}

// Every turn that posts gets its wake-up: jobs posted in later turns run too (the pending
// mark is cleared when the wake-up runs).
TEST(TurnEndWake, EveryTurnThatPostsWakesTheWorker) {
  dispatcher d(1000);
  d.start();
  asio::io_context ctx;
  auto guard = asio::make_work_guard(ctx);
  counting_deferral w(ctx);
  std::thread t = io_thread(ctx, &w);
  std::atomic<int> done{0};
  for (int turn = 0; turn < 50; ++turn) {
    std::promise<void> ran;
    asio::post(ctx, [&] { d.post([&] { ++done; ran.set_value(); }); });
    ASSERT_EQ(ran.get_future().wait_for(10s), std::future_status::ready) << "turn " << turn;
  }
  EXPECT_EQ(done.load(), 50);
  guard.reset();
  ctx.stop();
  t.join();
  // Read once the I/O thread is done: it counts a hand-over after queueing the job, so an
  // awake worker may run the job first.
  EXPECT_EQ(w.calls, 50);
  d.stop();
}

// A second dispatcher posted to in the same turn is woken at once (the deferral holds one);
// a thread with no deferral installed wakes the worker itself.
TEST(TurnEndWake, ASecondDispatcherAndOtherThreadsAreWokenAtOnce) {
  dispatcher a(100), b(100);
  a.start();
  b.start();
  asio::io_context ctx;
  auto guard = asio::make_work_guard(ctx);
  counting_deferral w(ctx);
  std::thread t = io_thread(ctx, &w);
  std::promise<void> b_ran_in_turn, turn_over, a_ran;
  asio::post(ctx, [&] {
    a.post([&] { a_ran.set_value(); });  // held to the end of this turn
    b.post([&] { b_ran_in_turn.set_value(); });
    // b's job runs while this handler still waits: b was woken at once.
    EXPECT_EQ(b_ran_in_turn.get_future().wait_for(10s), std::future_status::ready);
    turn_over.set_value();
  });
  ASSERT_EQ(turn_over.get_future().wait_for(20s), std::future_status::ready);
  EXPECT_EQ(a_ran.get_future().wait_for(10s), std::future_status::ready);

  std::promise<void> plain;  // from this thread, which has no deferral
  a.post([&] { plain.set_value(); });
  EXPECT_EQ(plain.get_future().wait_for(10s), std::future_status::ready);
  guard.reset();
  ctx.stop();
  t.join();
  a.stop();
  b.stop();
}
