#include "skyrelay/auth/jwt_key_set.hpp"

#include "skyrelay/auth/jwt.hpp"

namespace skyrelay::auth {

jwt_key_set::jwt_key_set() : keys_(std::make_shared<const jwt_key_list>()) {}

void jwt_key_set::replace(jwt_key_list keys) {
  keys_.store(std::make_shared<const jwt_key_list>(std::move(keys)), std::memory_order_release);
}

void jwt_key_set::note_unknown_key() noexcept {
  unknown_tokens_.fetch_add(1, std::memory_order_relaxed);
  // Under a flood of made-up kids the flag is already up: no lock, no wake-up.
  if (unknown_flag_.exchange(true)) return;
  // The store above happens before the lock, so a waiter that checks the flag under the
  // lock either sees it or is already waiting and gets this notification.
  std::lock_guard<std::mutex> lock(wait_mutex_);
  wait_cv_.notify_one();
}

bool jwt_key_set::wait_unknown_key(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(wait_mutex_);
  if (timeout.count() > 0)
    wait_cv_.wait_for(lock, timeout, [this] { return woken_ || unknown_flag_.load(); });
  woken_ = false;
  return unknown_flag_.exchange(false);
}

void jwt_key_set::wake() {
  std::lock_guard<std::mutex> lock(wait_mutex_);
  woken_ = true;
  wait_cv_.notify_all();
}

void jwt_key_set::count_refresh(bool ok, std::int64_t now_unix) noexcept {
  if (ok) {
    refreshes_.fetch_add(1);
    last_success_unix_.store(now_unix);
  } else {
    failures_.fetch_add(1);
  }
}

void jwt_key_set::write_metrics(std::string& out) const {
  if (!jwks()) return;
  auto add = [&out](const char* name, const char* help, const char* type, auto v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
  };
  add("skyrelay_jwks_keys", "Keys the JWT verifier holds (from the JWKS document and jwt keys=).",
      "gauge", current()->size());
  add("skyrelay_jwks_refreshes_total", "JWKS documents fetched and installed.", "counter",
      refreshes());
  add("skyrelay_jwks_refresh_failures_total",
      "JWKS fetches that failed (network, HTTP status, bad document); the last good keys stay.",
      "counter", refresh_failures());
  add("skyrelay_jwks_unknown_kid_tokens_total",
      "Tokens refused because their kid named no key (each may ask for a refetch).", "counter",
      unknown_key_tokens());
  add("skyrelay_jwks_unknown_kid_refetches_total",
      "JWKS fetches made because a token named an unknown kid (at most one per interval).",
      "counter", unknown_refetches_.load());
  add("skyrelay_jwks_last_success_timestamp_seconds",
      "Unix time of the last JWKS fetch that was installed (0: none yet).", "gauge",
      last_success_unix_.load());
}

}  // namespace skyrelay::auth
