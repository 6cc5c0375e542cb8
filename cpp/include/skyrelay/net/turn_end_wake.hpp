// net::turn_end_wake: an I/O thread's dispatcher wake-ups, held to the end of its turn.
#pragma once

#include <utility>

#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/net/aliases.hpp"

namespace skyrelay::net {

// Installed on an I/O thread (dispatcher::defer_wakes_on_this_thread) for as long as it runs
// its context. The first post of the thread's turn that finds the dispatcher idle queues one
// handler on the thread's own context, behind the completions already ready there (the rest
// of what one epoll_wait returned), and that handler wakes the worker once for all of them. A
// post on one's own context makes no system call. Owned by the server, which outlives its
// contexts, so a wake-up still queued when a context is destroyed never dangles.
class turn_end_wake final : public dispatcher::wake_deferral {
 public:
  explicit turn_end_wake(asio::io_context& ctx) : ctx_(ctx) {}

  bool defer(dispatcher& d) noexcept override {
    if (pending_ == &d) return true;  // this turn's wake-up is already queued
    if (pending_) return false;       // another dispatcher's is: wake this one now
    try {
      asio::post(ctx_, [this] { std::exchange(pending_, nullptr)->wake(); });
    } catch (...) {
      return false;
    }
    pending_ = &d;
    return true;
  }

 private:
  asio::io_context& ctx_;
  dispatcher* pending_ = nullptr;  // touched only by the thread running ctx_
};

}  // namespace skyrelay::net
