#include "skyrelay/net/flush_queue.hpp"

#include <cassert>

#include "skyrelay/net/uring_writer.hpp"
#include "skyrelay/net/write_loop.hpp"

namespace skyrelay::net {

asio::execution_context::id flush_queue::id;

void flush_queue::add(std::shared_ptr<void> keep, write_loop& loop,
                      const asio::any_io_executor& ex) {
  assert(&ex.context() == &context());
  bool post = false;
  {
    std::lock_guard lock(mu_);
    queued_.push_back(entry{std::move(keep), &loop});
    post = !posted_;
    posted_ = true;
  }
  // Queued behind a drain already posted (and not started), or with a new one posted now:
  // either way before anything the caller posts next.
  if (post) asio::post(ex, [this] { drain(); });
}

void flush_queue::drain() {
  {
    std::lock_guard lock(mu_);
    draining_.swap(queued_);
    posted_ = false;
  }
  {
    uring_writer::batch sends(context());  // the runs' sends in one submission, if enabled
    for (auto& e : draining_) e.loop->run();  // no lock held: a run may add again
  }
  draining_.clear();
}

void flush_queue::shutdown() {
  std::vector<entry> dropped;
  {
    std::lock_guard lock(mu_);
    dropped.swap(queued_);
  }
  draining_.clear();
}

}  // namespace skyrelay::net
