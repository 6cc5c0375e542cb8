// The reconnect delay of every owner of Redis connections (the broker, the blocking client,
// the Socket.IO manager bridge): 0.1 s after the first loss, doubling to 5 s, and 0.1 s again
// once a connection is up. Not thread-safe: each owner uses its own on its own thread.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <utility>

namespace skyrelay::redis {

class redis_backoff {
 public:
  static constexpr std::chrono::milliseconds first{100}, most{5'000};

  // Connected: the next loss waits `first` again.
  void reset() noexcept { delay_ = first; }

  // Calls `retry` on `timer`'s executor after the current delay (not when the wait is
  // cancelled), and doubles the delay for the time after.
  template <class Retry>
  void schedule(boost::asio::steady_timer& timer, Retry retry) {
    timer.expires_after(delay_);
    delay_ = std::min(delay_ * 2, most);
    timer.async_wait([retry = std::move(retry)](boost::system::error_code ec) mutable {
      if (!ec) retry();
    });
  }

 private:
  std::chrono::milliseconds delay_{first};
};

}  // namespace skyrelay::redis
