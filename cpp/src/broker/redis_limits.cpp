// Shared idempotency keys and token buckets on Redis (redis_limits.hpp).
#include "skyrelay/broker/redis_limits.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "skyrelay/core/random.hpp"
#include "skyrelay/hub/broker.hpp"

namespace skyrelay::redis {

namespace {
// KEYS: the key. ARGV: digest (64 hex), token, window ms. {0} fresh (now pending under the
// token), {1, answer} replay, {2} in progress, {3} conflict: idempotency_store::status.
const redis_script begin_script{R"lua(
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'p' .. ARGV[1] .. ARGV[2], 'PX', ARGV[3])
  return {0}
end
if string.sub(v, 2, 65) ~= ARGV[1] then return {3} end
if string.sub(v, 1, 1) == 'p' then return {2} end
return {1, string.sub(v, 66)}
)lua"};

// KEYS: the key. ARGV: token, answer. Stores the answer when the key is pending under token.
const redis_script finish_script{R"lua(
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'p' and string.sub(v, 66) == ARGV[1] then
  redis.call('SET', KEYS[1], 'd' .. string.sub(v, 2, 65) .. ARGV[2], 'KEEPTTL')
  return 1
end
return 0
)lua"};

// KEYS: the key. ARGV: token. Deletes it when still pending under token.
const redis_script release_script{R"lua(
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'p' and string.sub(v, 66) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua"};

// KEYS: the bucket. ARGV: rate (/s), burst, cost. {1 allowed / 0, wait µs, tokens left}.
// Time is Redis's, so every node counts on one clock.
const redis_script bucket_script{R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = burst
if b[1] and b[2] then
  tokens = math.min(burst, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate / 1e6)
end
if tokens >= cost then
  tokens = tokens - cost
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
             'at', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
  return {1, 0, string.format('%.17g', tokens)}
end
return {0, math.max(1, math.ceil((cost - tokens) / rate * 1e6)), string.format('%.17g', tokens)}
)lua"};

// An error of redis_client as the callers of this file see it: always broker_unavailable (a
// refused script leaves the outcome unknown).
std::exception_ptr as_unavailable(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const broker_unavailable&) {
    return error;
  } catch (const std::exception& e) {
    return std::make_exception_ptr(broker_unavailable(e.what()));
  }
}

rate_decision decision_of(const redis_value& v) {
  if (v.elements.size() < 3) throw broker_unavailable("redis: unexpected rate limit answer");
  rate_decision d;
  d.allowed = v.elements[0].integer == 1;
  d.retry_after_ns = d.allowed ? 0 : v.elements[1].integer * 1000;
  d.remaining = std::strtod(v.elements[2].str.c_str(), nullptr);
  return d;
}

std::string hex(const idempotency_store::digest& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}
}  // namespace

redis_idempotency::redis_idempotency(redis_client& client, std::string prefix,
                                     std::chrono::milliseconds window,
                                     std::chrono::milliseconds timeout)
    : client_(client),
      prefix_(std::move(prefix) + "idem:"),
      window_ms_(std::to_string(window.count())),
      timeout_(timeout),
      node_(new_sid().substr(0, 12)) {}

std::string redis_idempotency::token_text(std::uint64_t token) const {
  return node_ + ":" + std::to_string(token);
}

void redis_idempotency::async_begin(const std::string& id, const idempotency_store::digest& body,
                                    std::uint64_t token, begin_fn done) {
  client_.async_eval(
      begin_script, {prefix_ + id}, {hex(body), token_text(token), window_ms_}, timeout_,
      [this, id, token, done = std::move(done)](std::exception_ptr error, redis_value v) {
        using status = idempotency_store::status;
        if (error) {
          ++errors_;
          // The script may still run (a late or lost answer): undo its reservation after it,
          // on the same connection, so that a retry can succeed.
          release(id, token);
          return done(as_unavailable(error), status::fresh, {});
        }
        const long long what = v.elements.empty() ? -1 : v.elements[0].integer;
        if (what < 0 || what > 3) {
          ++errors_;
          return done(std::make_exception_ptr(
                           broker_unavailable("redis: unexpected idempotency answer")),
                       status::fresh, {});
        }
        std::string answer;
        if (what == 1 && v.elements.size() > 1) answer = std::move(v.elements[1].str);
        done(nullptr, static_cast<status>(what), std::move(answer));
      });
}

void redis_idempotency::async_finish(const std::string& id, std::uint64_t token,
                                     std::string answer, std::function<void()> done) {
  client_.async_eval(finish_script, {prefix_ + id}, {token_text(token), std::move(answer)},
                     timeout_, [this, done = std::move(done)](std::exception_ptr error, redis_value) {
                       if (error) ++errors_;  // repeats get in_progress (409, retry) until
                                              // the window ends
                       done();
                     });
}

void redis_idempotency::release(const std::string& id, std::uint64_t token) noexcept {
  try {
    client_.async_eval(release_script, {prefix_ + id}, {token_text(token)}, nullptr);
  } catch (const std::exception&) {
    ++errors_;
  }
}

redis_rate_limiter::redis_rate_limiter(redis_client& client, std::string prefix, double rate,
                                       double burst, std::chrono::milliseconds timeout)
    : client_(client), prefix_(std::move(prefix)), rate_(rate), burst_(burst), timeout_(timeout) {
  if (!(rate > 0) || !(burst > 0) || !std::isfinite(rate) || !std::isfinite(burst))
    throw std::invalid_argument("rate and burst must be positive and finite");
}

std::vector<std::string> redis_rate_limiter::bucket_args(double cost) const {
  if (!std::isfinite(cost) || cost < 0 || cost > burst_)
    throw std::invalid_argument("cost must be between 0 and burst");
  std::vector<std::string> out;
  char buf[32];
  for (double x : {rate_, burst_, cost}) {
    std::snprintf(buf, sizeof buf, "%.17g", x);
    out.emplace_back(buf);
  }
  return out;
}

rate_decision redis_rate_limiter::acquire(std::string_view key, double cost) {
  redis_value v;
  try {
    v = client_.eval(bucket_script, {prefix_ + std::string(key)}, bucket_args(cost), timeout_);
  } catch (const broker_unavailable&) {
    throw;
  } catch (const std::runtime_error& e) {
    throw broker_unavailable(e.what());
  }
  return decision_of(v);
}

void redis_rate_limiter::async_acquire(std::string_view key, double cost, decision_fn done) {
  client_.async_eval(bucket_script, {prefix_ + std::string(key)}, bucket_args(cost), timeout_,
                     [done = std::move(done)](std::exception_ptr error, redis_value v) {
                       if (error) return done(as_unavailable(error), {});
                       rate_decision d;
                       try {
                         d = decision_of(v);
                       } catch (const broker_unavailable&) {
                         return done(std::current_exception(), {});
                       }
                       done(nullptr, d);
                     });
}

bool redis_rate_limiter::reset(std::string_view key) {
  return client_.call({"DEL", prefix_ + std::string(key)}, timeout_).integer > 0;
}

}  // namespace skyrelay::redis
