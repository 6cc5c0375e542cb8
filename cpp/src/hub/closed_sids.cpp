#include "skyrelay/hub/closed_sids.hpp"

namespace skyrelay {

void closed_sids::add(const std::string& sid, std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  expire_locked(now_ns);
  if (sids_.insert(sid).second) order_.emplace_back(sid, now_ns);
  while (order_.size() > max_) {
    sids_.erase(order_.front().first);
    order_.pop_front();
  }
}

bool closed_sids::contains(const std::string& sid) const {
  std::lock_guard lock(mu_);
  return sids_.count(sid) != 0;
}

void closed_sids::expire(std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  expire_locked(now_ns);
}

std::size_t closed_sids::size() const {
  std::lock_guard lock(mu_);
  return sids_.size();
}

void closed_sids::expire_locked(std::int64_t now_ns) {
  constexpr std::int64_t ttl_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(ttl).count();
  while (!order_.empty() && now_ns - order_.front().second > ttl_ns) {
    sids_.erase(order_.front().first);
    order_.pop_front();
  }
}

}  // namespace skyrelay
