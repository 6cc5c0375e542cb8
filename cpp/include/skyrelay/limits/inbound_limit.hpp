// The per-connection limit on inbound messages: a token bucket (rate per second, burst), with
// per-event buckets where the application set its own rate. One connection's thread uses it;
// no locks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "skyrelay/core/rate_spec.hpp"

namespace skyrelay {

class token_bucket {
 public:
  token_bucket() = default;
  token_bucket(rate_spec spec, std::int64_t now_ns) : spec_(spec), tokens_(spec.burst), at_(now_ns) {}

  // Takes one token if there is one; otherwise leaves the bucket and returns false, with the
  // nanoseconds until the next token in `wait_ns`.
  bool take(std::int64_t now_ns, std::int64_t& wait_ns) {
    if (spec_.rate <= 0) return true;
    tokens_ = std::min(spec_.burst, tokens_ + (now_ns - at_) * 1e-9 * spec_.rate);
    at_ = now_ns;
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return true;
    }
    wait_ns = static_cast<std::int64_t>((1.0 - tokens_) / spec_.rate * 1e9) + 1;
    return false;
  }
  // Whether the bucket would be full at `now_ns` (it can then be forgotten and made anew).
  bool full(std::int64_t now_ns) const {
    return spec_.rate <= 0 || tokens_ + (now_ns - at_) * 1e-9 * spec_.rate >= spec_.burst;
  }

 private:
  rate_spec spec_;
  double tokens_{0};
  std::int64_t at_{0};
};

// A connection's buckets: one for every message, and one per event that has its own rate (such
// an event is charged to its own bucket only).
class inbound_limit {
 public:
  inbound_limit(rate_spec all, const std::unordered_map<std::string, rate_spec>* per_event,
                std::int64_t now_ns)
      : all_(all, now_ns), per_event_(per_event) {}

  bool take(std::string_view event, std::int64_t now_ns, std::int64_t& wait_ns) {
    if (per_event_ && !event.empty()) {
      if (auto it = per_event_->find(std::string(event)); it != per_event_->end()) {
        auto [b, fresh] = buckets_.try_emplace(it->first, it->second, now_ns);
        return b->second.take(now_ns, wait_ns);
      }
    }
    return all_.take(now_ns, wait_ns);
  }

 private:
  token_bucket all_;
  const std::unordered_map<std::string, rate_spec>* per_event_;
  std::unordered_map<std::string, token_bucket> buckets_;
};

}  // namespace skyrelay
