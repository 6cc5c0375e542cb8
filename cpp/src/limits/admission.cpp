#include "skyrelay/limits/admission.hpp"

#include <iterator>

#include "skyrelay/core/clock.hpp"

namespace skyrelay {

admission::slot admission::admit(const std::string& ip, connection_refusal& why, bool session) {
  return admit(ip, why, session, steady_ns());
}

admission::slot admission::admit(const std::string& ip, connection_refusal& why, bool session,
                                 std::int64_t now_ns) {
  why = connection_refusal::none;
  if (cfg_.max_connections && total_.load() >= cfg_.max_connections) {
    why = connection_refusal::total;
    return nullptr;
  }
  const bool loopback = ip.starts_with("127.") || ip == "::1" || ip.starts_with("::ffff:127.");
  if (loopback && !cfg_.limit_loopback) {
    ++total_;
    return slot(static_cast<void*>(this), [this](void*) { --total_; });
  }
  {
    std::lock_guard lock(ip_mu_);
    const rate_spec& rate = session ? cfg_.new_sessions_per_ip : cfg_.new_connections_per_ip;
    auto& buckets = session ? new_sessions_per_ip_ : new_per_ip_;
    if (rate.rate > 0) {
      auto [b, fresh] = buckets.try_emplace(ip, rate, now_ns);
      std::int64_t wait_ns = 0;
      if (!b->second.take(now_ns, wait_ns)) {
        why = connection_refusal::rate;
        return nullptr;
      }
      // Forget buckets that have filled up again, a few at a time, so the map stays small.
      if (buckets.size() > 1024) {
        std::size_t checked = 0;
        for (auto it = buckets.begin(); it != buckets.end() && checked < 64; ++checked)
          it = it->second.full(now_ns) ? buckets.erase(it) : std::next(it);
      }
    }
    auto& n = per_ip_[ip];
    if (cfg_.max_connections_per_ip && n >= cfg_.max_connections_per_ip) {
      why = connection_refusal::per_ip;
      return nullptr;
    }
    ++n;
  }
  ++total_;
  // The deleter gives the slot back; the admission outlives every connection (server::stop()
  // ends them).
  return slot(static_cast<void*>(this), [this, ip](void*) {
    --total_;
    std::lock_guard lock(ip_mu_);
    auto it = per_ip_.find(ip);
    if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  });
}

admission::slot admission::admit_unattributed(connection_refusal& why) {
  why = connection_refusal::none;
  if (cfg_.max_connections && total_.load() >= cfg_.max_connections) {
    why = connection_refusal::total;
    return nullptr;
  }
  ++total_;
  return slot(static_cast<void*>(this), [this](void*) { --total_; });
}

std::size_t admission::held_by(const std::string& ip) const {
  std::lock_guard lock(ip_mu_);
  auto it = per_ip_.find(ip);
  return it == per_ip_.end() ? 0 : it->second;
}

std::size_t admission::buckets() const {
  std::lock_guard lock(ip_mu_);
  return new_per_ip_.size() + new_sessions_per_ip_.size();
}

}  // namespace skyrelay
