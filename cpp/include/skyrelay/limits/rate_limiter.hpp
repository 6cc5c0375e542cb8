// A keyed token-bucket rate limiter for applications (skyrelay.RateLimiter): one bucket per
// key (a user, an address, an API token), all with the limiter's rate and burst. Thread-safe:
// the keys are spread over shards, each with its own mutex, so threads working on different
// keys rarely wait on each other.
//
// A bucket holds up to `burst` tokens and gains `rate` tokens a second. acquire(key, cost)
// takes `cost` tokens when the bucket has them; otherwise it takes nothing and says how long
// until it would have them. Time is the monotonic clock (steady_ns) in nanoseconds, or the
// caller's `now_ns` (the tests drive time by hand).
//
// Exactness: whether a request passes is decided in the time domain, as "has the bucket been
// refilling for at least ceil(time to refill `cost - tokens`) nanoseconds". A denied call leaves
// the bucket as it was, so the answer is a pure function of the time: the call at
// now + retry_after_ns passes and the one a nanosecond earlier does not.
//
// Memory is bounded: at most max_keys buckets. The bound is kept per shard (each holds at most
// its share of max_keys), in least-recently-used order. A new key that finds its shard full
// first drops the least recently used bucket if it has refilled to full (an "expiry": a full
// bucket is the same as a new one, so nothing is lost); otherwise the least recently used
// bucket is dropped anyway (an "eviction": that key starts again with a full bucket). Full
// buckets at the LRU end are also dropped whenever a key is added, and sweep() drops them all.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "skyrelay/core/clock.hpp"

namespace skyrelay {

struct rate_decision {
  bool allowed{false};
  // Nanoseconds until the same acquire would pass (0 when it passed). When denied, at least 1.
  std::int64_t retry_after_ns{0};
  // Tokens left in the bucket after the call (fractional while refilling).
  double remaining{0};

  double retry_after() const noexcept { return static_cast<double>(retry_after_ns) * 1e-9; }
};

struct rate_limiter_stats {
  std::size_t keys{0};        // buckets held now
  std::uint64_t expired{0};   // full (idle) buckets dropped: nothing lost
  std::uint64_t evicted{0};   // buckets dropped before they refilled, to stay under max_keys
};

class rate_limiter {
 public:
  static constexpr std::size_t max_shards = 16;

  // rate: tokens per second (> 0); burst: bucket size (> 0); max_keys: at most this many
  // buckets (>= 1). Throws std::invalid_argument otherwise.
  rate_limiter(double rate, double burst, std::size_t max_keys = 100'000);

  rate_limiter(const rate_limiter&) = delete;
  rate_limiter& operator=(const rate_limiter&) = delete;

  // Takes `cost` tokens from `key`'s bucket (made full on first use) if it has them. cost must
  // be finite, >= 0 and <= burst (std::invalid_argument otherwise: it could never pass).
  rate_decision acquire(std::string_view key, double cost, std::int64_t now_ns);
  rate_decision acquire(std::string_view key, double cost = 1) {
    return acquire(key, cost, steady_ns());
  }

  // Forgets `key` (its next acquire finds a full bucket). Whether it was there.
  bool reset(std::string_view key);

  // Drops every bucket that has refilled to full by `now_ns`; the number dropped.
  std::size_t sweep(std::int64_t now_ns);
  std::size_t sweep() { return sweep(steady_ns()); }

  rate_limiter_stats stats() const;
  std::size_t size() const;

  double rate() const noexcept { return rate_; }
  double burst() const noexcept { return burst_; }
  std::size_t max_keys() const noexcept { return max_keys_; }
  std::size_t shard_count() const noexcept { return shards_.size(); }
  // Which shard holds `key` (for tests and diagnostics).
  std::size_t shard_index(std::string_view key) const noexcept;

 private:
  struct bucket {
    std::string key;
    double tokens;       // at `at`
    std::int64_t at;     // when `tokens` was last brought up to date
  };
  using lru_list = std::list<bucket>;  // most recently used first

  struct shard {
    std::mutex mu;
    lru_list lru;
    // Keys are views into the list's nodes, which never move.
    std::unordered_map<std::string_view, lru_list::iterator> index;
    std::size_t capacity{0};
  };

  shard& shard_for(std::string_view key) { return *shards_[shard_index(key)]; }
  bool full_at(const bucket& b, std::int64_t now_ns) const;

  double rate_;
  double burst_;
  double ns_per_token_;
  std::size_t max_keys_;
  std::vector<std::unique_ptr<shard>> shards_;
  std::atomic<std::uint64_t> expired_{0};
  std::atomic<std::uint64_t> evicted_{0};
};

}  // namespace skyrelay
