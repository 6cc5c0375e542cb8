// The write loops of one I/O context that deliveries have to start: one post per batch of them
// instead of one per connection.
//
// A publication delivered to many connections starts each idle connection's write loop. One
// asio::post per connection costs the publishing thread an allocation and the scheduler's
// lock each time, and the I/O thread a handler each; queued here, the connections are
// started by a single handler that this queue posts when it goes from empty to non-empty.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay::net {

class write_loop;

// An Asio service: one per I/O context (asio::use_service), living as long as the context.
// Thread-safe. Contract of add(): `loop` runs (write_loop::run) on `ex`, after whatever was
// posted to `ex` before the call and before whatever is posted after it returns, as with an
// asio::post of its own; `keep` (its owner) is held until then.
class flush_queue : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  // Made by asio::use_service with the io_context (every I/O thread's is one; pass it as
  // asio::io_context&, not as its execution_context), whose executor add() then posts to.
  explicit flush_queue(asio::io_context& ioc);

  // `ex` is the executor of this queue's context (the loop's, one thread per context).
  void add(std::shared_ptr<void> keep, write_loop& loop, const asio::any_io_executor& ex);
  // The same on the context's own executor: the fan-out's path (one call per recipient),
  // which then copies no executor.
  void add(std::shared_ptr<void> keep, write_loop& loop);

  // The next turn of a loop that this queue's drain is running now (write_loop's continuation
  // after a write that went out at once): `loop` runs again in a later drain, kept alive by
  // its entry in this one. One lock per drain instead of one per loop, and no copy of the
  // owner's shared_ptr. False when no drain of this queue is running `loop` (the caller
  // add()s instead). On the context's thread.
  bool again(write_loop& loop);

  // When the drain running on this thread began (steady_ns), or 0 outside one: the loops it
  // runs take their writes' start time from it instead of reading the clock each.
  static std::int64_t drain_started_ns() noexcept;

 private:
  void shutdown() override;  // drops what is queued (the context is going away)
  void drain();              // on the context's thread

  struct entry {
    std::shared_ptr<void> keep;
    write_loop* loop;
  };
  std::mutex mu_;
  std::vector<entry> queued_;  // guarded by mu_
  bool posted_{false};         // a drain is posted and has not taken queued_ yet; under mu_
  std::vector<entry> draining_;  // the drain's own (capacity kept), on the context's thread
  std::vector<entry> again_;     // the entries of loops that asked again(), moved at its end
  bool draining_now_{false};     // a drain is running (on the context's thread)
  const asio::any_io_executor ex_;  // the context's
};

}  // namespace skyrelay::net
