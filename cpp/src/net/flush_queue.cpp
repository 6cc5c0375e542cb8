#include "skyrelay/net/flush_queue.hpp"

#include <cassert>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/uring_writer.hpp"
#include "skyrelay/net/write_loop.hpp"

namespace skyrelay::net {

asio::execution_context::id flush_queue::id;

namespace {
thread_local std::int64_t drain_started = 0;
}  // namespace

std::int64_t flush_queue::drain_started_ns() noexcept { return drain_started; }

flush_queue::flush_queue(asio::io_context& ioc)
    : asio::execution_context::service(ioc), ex_(ioc.get_executor()) {}

void flush_queue::add(std::shared_ptr<void> keep, write_loop& loop,
                      const asio::any_io_executor& ex) {
  assert(&ex.context() == &context());
  add(std::move(keep), loop);
}

void flush_queue::add(std::shared_ptr<void> keep, write_loop& loop) {
  bool post = false;
  {
    std::lock_guard lock(mu_);
    queued_.push_back(entry{std::move(keep), &loop});
    post = !posted_;
    posted_ = true;
  }
  // Queued behind a drain already posted (and not started), or with a new one posted now:
  // either way before anything the caller posts next.
  if (post) asio::post(ex_, [this] { drain(); });
}

void flush_queue::drain() {
  {
    std::lock_guard lock(mu_);
    draining_.swap(queued_);
    posted_ = false;
  }
  drain_started = steady_ns();  // one clock read for every write this drain starts
  draining_now_ = true;
  {
    // The writes' counters once for the flush; opened first, so that it closes after the
    // io_uring batch has handed out its results (the loops complete their writes then).
    write_loop::metrics_tally counted;
    uring_writer::batch sends(context());  // the runs' sends to the kernel together, if enabled
    for (auto& e : draining_) {  // no lock held: a run may add again
      e.loop->in_drain_ = true;
      e.loop->run();
    }
  }
  // The loops that asked again() go on in a later drain, each kept by its entry of this one
  // (a loop listed twice: its first entry).
  for (auto& e : draining_) {
    if (e.loop->again_) {
      e.loop->again_ = false;
      again_.push_back(std::move(e));
    }
    e.loop->in_drain_ = false;
  }
  draining_now_ = false;
  drain_started = 0;
  draining_.clear();
  if (again_.empty()) return;
  bool post = false;
  {
    std::lock_guard lock(mu_);
    if (queued_.empty()) {
      queued_.swap(again_);
    } else {
      for (auto& e : again_) queued_.push_back(std::move(e));
    }
    post = !posted_;
    posted_ = true;
  }
  again_.clear();
  if (post) asio::post(ex_, [this] { drain(); });
}

bool flush_queue::again(write_loop& loop) {
  if (!draining_now_ || !loop.in_drain_) return false;
  loop.again_ = true;
  return true;
}

void flush_queue::shutdown() {
  std::vector<entry> dropped;
  {
    std::lock_guard lock(mu_);
    dropped.swap(queued_);
  }
  draining_.clear();
  again_.clear();
}

}  // namespace skyrelay::net
