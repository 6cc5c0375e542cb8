#include "skyrelay/limits/rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>

namespace skyrelay {

namespace {

// Waits are capped at about 126 years, so that a tiny rate cannot overflow the nanoseconds.
constexpr double max_wait_ns = 4e18;

}  // namespace

rate_limiter::rate_limiter(double rate, double burst, std::size_t max_keys)
    : rate_(rate), burst_(burst), max_keys_(max_keys) {
  if (!std::isfinite(rate) || rate <= 0)
    throw std::invalid_argument("rate must be a positive number of tokens per second");
  if (!std::isfinite(burst) || burst <= 0)
    throw std::invalid_argument("burst must be a positive number of tokens");
  if (max_keys == 0) throw std::invalid_argument("max_keys must be at least 1");
  ns_per_token_ = 1e9 / rate;
  if (!std::isfinite(ns_per_token_))
    throw std::invalid_argument("rate is too small: a token must come within 1e300 ns");
  const std::size_t n = std::min(max_shards, max_keys);
  shards_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    shards_.push_back(std::make_unique<shard>());
    // The shares add up to max_keys exactly.
    shards_.back()->capacity = max_keys / n + (i < max_keys % n ? 1 : 0);
  }
}

std::size_t rate_limiter::shard_index(std::string_view key) const noexcept {
  // The maps inside a shard use the same hash, so the shard takes other bits of it: the high
  // half after a multiplicative mix.
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  const std::uint64_t mixed = (h * 0x9E3779B97F4A7C15ull) >> 32;
  return static_cast<std::size_t>(mixed % shards_.size());
}

bool rate_limiter::full_at(const bucket& b, std::int64_t now_ns) const {
  const double elapsed = static_cast<double>(std::max<std::int64_t>(0, now_ns - b.at));
  return elapsed >= (burst_ - b.tokens) * ns_per_token_;
}

rate_decision rate_limiter::acquire(std::string_view key, double cost, std::int64_t now_ns) {
  if (!std::isfinite(cost) || cost < 0 || cost > burst_)
    throw std::invalid_argument("cost must be between 0 and burst");
  shard& s = shard_for(key);
  std::lock_guard lock(s.mu);

  auto found = s.index.find(key);
  if (found == s.index.end()) {
    // Room for a new bucket: first the full ones at the cold end, then, if the shard is still
    // at its share, the least recently used whatever its state.
    while (!s.lru.empty() && full_at(s.lru.back(), now_ns)) {
      s.index.erase(s.lru.back().key);
      s.lru.pop_back();
      expired_.fetch_add(1, std::memory_order_relaxed);
    }
    if (s.lru.size() >= s.capacity) {
      s.index.erase(s.lru.back().key);
      s.lru.pop_back();
      evicted_.fetch_add(1, std::memory_order_relaxed);
    }
    s.lru.push_front(bucket{std::string(key), burst_, now_ns});
    s.index.emplace(s.lru.front().key, s.lru.begin());
  } else if (found->second != s.lru.begin()) {
    s.lru.splice(s.lru.begin(), s.lru, found->second);
  }
  bucket& b = s.lru.front();

  // A caller may hand in a time a little older than the bucket's (it read the clock before
  // another thread got the lock): no refill then, and never a negative one.
  const std::int64_t elapsed_ns = std::max<std::int64_t>(0, now_ns - b.at);
  const double elapsed = static_cast<double>(elapsed_ns);
  const double need = (cost - b.tokens) * ns_per_token_;  // refill time `cost` takes from `at`
  const double available = std::min(burst_, b.tokens + elapsed / ns_per_token_);
  if (elapsed >= need) {
    b.tokens = std::max(0.0, available - cost);
    b.at = std::max(b.at, now_ns);
    return {true, 0, b.tokens};
  }
  // Denied: the bucket stays as it is, so the same call passes at exactly at + ceil(need).
  const auto ready = static_cast<std::int64_t>(std::ceil(std::min(need, max_wait_ns)));
  return {false, b.at + ready - now_ns, available};
}

bool rate_limiter::reset(std::string_view key) {
  shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  auto found = s.index.find(key);
  if (found == s.index.end()) return false;
  auto node = found->second;
  s.index.erase(found);  // before the node: the map's key is a view into it
  s.lru.erase(node);
  return true;
}

std::size_t rate_limiter::sweep(std::int64_t now_ns) {
  std::size_t dropped = 0;
  for (auto& sp : shards_) {
    shard& s = *sp;
    std::lock_guard lock(s.mu);
    for (auto it = s.lru.begin(); it != s.lru.end();) {
      if (full_at(*it, now_ns)) {
        s.index.erase(it->key);
        it = s.lru.erase(it);
        ++dropped;
      } else {
        ++it;
      }
    }
  }
  expired_.fetch_add(dropped, std::memory_order_relaxed);
  return dropped;
}

std::size_t rate_limiter::size() const {
  std::size_t n = 0;
  for (const auto& sp : shards_) {
    std::lock_guard lock(sp->mu);
    n += sp->lru.size();
  }
  return n;
}

rate_limiter_stats rate_limiter::stats() const {
  rate_limiter_stats st;
  st.keys = size();
  st.expired = expired_.load(std::memory_order_relaxed);
  st.evicted = evicted_.load(std::memory_order_relaxed);
  return st;
}

}  // namespace skyrelay
