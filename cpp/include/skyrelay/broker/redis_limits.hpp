// What several nodes share through Redis besides publications: the publish API's idempotency
// keys (redis_idempotency) and keyed token buckets (redis_rate_limiter: the publish API's
// rate limit and skyrelay.RateLimiter(redis=...)). docs/architecture.md ("Cluster state").
//
// Both call Redis through a redis_client (one round trip, at most `timeout`) and fail with
// broker_unavailable when Redis cannot answer; what that means for a caller (503, or the
// local fallback of RateLimiter) is the caller's decision, written in docs/api.md. The
// idempotency keys never block; the rate limiter has a blocking acquire() (for
// RateLimiter(redis=...), called off the I/O threads) and async_acquire() (the publish API,
// on an I/O thread).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/limits/rate_limiter.hpp"
#include "skyrelay/net/idempotency_store.hpp"

namespace skyrelay::redis {

// Keys `<prefix>idem:<id>` with PX = the window (SET NX semantics in one script): a pending
// value `p<digest hex><token>` while the first request runs, then `d<digest hex><answer>`
// (KEEPTTL), so a repeat on any node gets the first node's answer, receipt included.
class redis_idempotency final : public idempotency_store::backend {
 public:
  redis_idempotency(redis_client& client, std::string prefix, std::chrono::milliseconds window,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds{1'000});

  void async_begin(const std::string& id, const idempotency_store::digest& body,
                   std::uint64_t token, begin_fn done) override;
  // `done` once Redis stored the answer (a repeat on another node must find it once the
  // client has it); a failure leaves the key pending until the window ends (counted in
  // errors()).
  void async_finish(const std::string& id, std::uint64_t token, std::string answer,
                    std::function<void()> done) override;
  void release(const std::string& id, std::uint64_t token) noexcept override;

  std::uint64_t errors() const noexcept { return errors_.load(); }

 private:
  std::string token_text(std::uint64_t token) const;

  redis_client& client_;
  std::string prefix_;
  std::string window_ms_;
  std::chrono::milliseconds timeout_;
  std::string node_;  // random, so that two nodes' tokens never meet
  std::atomic<std::uint64_t> errors_{0};
};

// Token buckets `<prefix><key>` (a hash: tokens, at µs) in one script on Redis's clock, with
// the semantics of the local rate_limiter: a bucket holds up to `burst`, gains `rate` a
// second, a new key starts full, a denied call takes nothing and says how long until it would
// pass. A bucket expires once it would have refilled (nothing kept for idle keys).
class redis_rate_limiter {
 public:
  redis_rate_limiter(redis_client& client, std::string prefix, double rate, double burst,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds{1'000});

  // As rate_limiter::acquire; throws broker_unavailable when Redis cannot answer and
  // std::invalid_argument for a cost outside [0, burst].
  rate_decision acquire(std::string_view key, double cost = 1);
  // As acquire, without blocking: `done` runs once on the client's thread with the decision
  // or (non-null) the broker_unavailable; invalid_argument is still thrown at once.
  using decision_fn = std::function<void(std::exception_ptr, rate_decision)>;
  void async_acquire(std::string_view key, double cost, decision_fn done);
  bool reset(std::string_view key);  // throws broker_unavailable

  double rate() const noexcept { return rate_; }
  double burst() const noexcept { return burst_; }

 private:
  std::vector<std::string> bucket_args(double cost) const;

  redis_client& client_;
  std::string prefix_;
  double rate_, burst_;
  std::chrono::milliseconds timeout_;
};

}  // namespace skyrelay::redis
