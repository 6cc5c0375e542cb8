#include "skyrelay/net/app_parking.hpp"

namespace skyrelay {

std::uint64_t app_parking::park(reply_fn reply) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_id_++;
  waiting_.emplace(id, std::move(reply));
  return id;
}

bool app_parking::reply(std::uint64_t id, unsigned status, header_pairs headers,
                        std::string body) {
  reply_fn reply;
  {
    std::lock_guard lock(mu_);
    auto it = waiting_.find(id);
    if (it == waiting_.end()) return false;
    reply = std::move(it->second);
    waiting_.erase(it);
  }
  reply(status, std::move(headers), std::move(body));
  return true;
}

void app_parking::clear() {
  // The functions are destroyed outside the lock: each holds an http_session.
  std::unordered_map<std::uint64_t, reply_fn> gone;
  {
    std::lock_guard lock(mu_);
    gone.swap(waiting_);
  }
}

}  // namespace skyrelay
