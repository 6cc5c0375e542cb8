// The C++ core's log records, on their way to Python's `logging`: a bounded queue of structured
// records (level, logger, event, fields) that I/O threads fill and one Python thread drains in
// batches (python/skyrelay/_core_logging.py). Nothing here formats text or takes the GIL.
//
// A call site asks enabled() first (one relaxed atomic load) and builds its record only when
// the answer is yes, so a logger at WARNING costs an I/O thread nothing for its info events.
// The levels are the Python logger's effective levels, pushed in by the draining thread at
// start and whenever they change (set_level). Until then every logger is off.
//
// Overflow: a record that finds the queue full is dropped and counted (dropped()), shown on
// /metrics as skyrelay_log_records_dropped_total. push() never blocks beyond the queue's short
// lock. While records flow the drainer polls (take() with a short wait) and push() makes no
// system call; only a drainer that found the queue empty and waits long (`wake_on_push`) is
// woken, by the first record after it, so an idle server's drainer sleeps until its next level
// sync and an I/O thread pays at most one wake-up per such wait.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace skyrelay {

// Python's numeric levels, so that the drainer hands them to logging unchanged.
namespace log_level {
inline constexpr int debug = 10;
inline constexpr int info = 20;
inline constexpr int warning = 30;
inline constexpr int error = 40;
inline constexpr int off = 1000;  // above CRITICAL (50): nothing is enabled
}  // namespace log_level

// The core's loggers; each is the Python logger named by logger_name().
enum class log_source : std::uint8_t {
  core,    // skyrelay.core: the server itself
  conn,    // skyrelay.core.connection: a connection's life
  auth,    // skyrelay.core.auth: refusals for a token, a role or an origin
  limits,  // skyrelay.core.limits: admission, rate limits, slow consumers
  broker,  // skyrelay.core.broker: the broker's connection
  count_
};

std::string_view logger_name(log_source s) noexcept;

// One field of a record: a static key and an integer or a string.
struct log_field {
  std::string_view key;  // a literal at the call site: never owned
  std::variant<std::int64_t, std::string> value;
};

struct log_record {
  int level{log_level::info};
  log_source source{log_source::core};
  std::string_view event;  // a literal at the call site, e.g. "connection_open"
  double unix_time{0.0};   // set by push()
  std::vector<log_field> fields;
};

class log_queue {
 public:
  explicit log_queue(std::size_t capacity = 10'000);
  log_queue(const log_queue&) = delete;
  log_queue& operator=(const log_queue&) = delete;

  // Any thread. One relaxed load: whether a record of `level` from `s` would be logged.
  bool enabled(log_source s, int level) const noexcept {
    return level >= levels_[static_cast<std::size_t>(s)].load(std::memory_order_relaxed);
  }
  // Any thread: the lowest level `s` logs (Python's getEffectiveLevel()); log_level::off: none.
  void set_level(log_source s, int level) noexcept {
    levels_[static_cast<std::size_t>(s)].store(level, std::memory_order_relaxed);
  }
  int level(log_source s) const noexcept {
    return levels_[static_cast<std::size_t>(s)].load(std::memory_order_relaxed);
  }

  // Any thread. Stamps the record's time and queues it; false (and counted) when full.
  bool push(log_record r);
  // The draining thread: waits up to `wait` for a record (or close()), then takes up to `max`
  // of them, oldest first. Empty after close() once the queue is empty. With `wake_on_push`
  // the next push() ends the wait (one notify); without it records are seen when the wait ends.
  std::vector<log_record> take(std::size_t max, std::chrono::milliseconds wait,
                               bool wake_on_push = false);
  // Wakes take() and makes it return at once from now on (records queued are still taken).
  void close();
  // Undoes close(), for a server started again.
  void reopen();

  std::size_t size() const;
  std::size_t capacity() const noexcept { return capacity_; }
  std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  const std::size_t capacity_;
  std::array<std::atomic<int>, static_cast<std::size_t>(log_source::count_)> levels_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<log_record> records_;  // oldest first; take() moves a prefix out
  bool closed_{false};
  bool wake_on_push_{false};  // a take() waits and asked push() to wake it
  std::atomic<std::uint64_t> dropped_{0};
};

// A queue whose loggers are all off, for code that has no server's queue (unit tests).
log_queue& disabled_log_queue();

// The queue's series for /metrics: records dropped (queue full) and records waiting.
void append_log_metrics(std::string& out, const log_queue& q);

}  // namespace skyrelay

namespace skyrelay {

// Builds and queues a record only when its logger logs `level`: the fields are made by `make`
// (a callable returning std::vector<log_field>) after the check, so a disabled level costs one
// atomic load and nothing else.
template <class MakeFields>
void log_event(log_queue& q, log_source s, int level, std::string_view event, MakeFields&& make) {
  if (!q.enabled(s, level)) return;
  q.push(log_record{level, s, event, 0.0, make()});
}

}  // namespace skyrelay
