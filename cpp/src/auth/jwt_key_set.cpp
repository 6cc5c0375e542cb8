#include "skyrelay/auth/jwt_key_set.hpp"

#include <thread>

#include "skyrelay/auth/jwt.hpp"

namespace skyrelay::auth {

// All of the slot protocol is sequentially consistent: it runs once per handshake, next to a
// signature check that costs thousands of times more.
jwt_key_set::reader::reader(const jwt_key_set& set) noexcept : set_(set) {
  for (;;) {
    const unsigned g = set.generation_.load();
    slot_ = g & 1;
    set.readers_[slot_].fetch_add(1);
    // Still current after we entered: a replace that reuses this slot now waits for us.
    if (set.generation_.load() == g) break;
    set.readers_[slot_].fetch_sub(1);
  }
  list_ = set.lists_[slot_].load();
}

jwt_key_set::reader::~reader() { set_.readers_[slot_].fetch_sub(1); }

jwt_key_set::jwt_key_set() {
  owned_[0] = std::make_unique<const jwt_key_list>();
  lists_[0].store(owned_[0].get());
}

jwt_key_list jwt_key_set::keys() const {
  const reader hold(*this);
  return hold.keys();
}

std::size_t jwt_key_set::size() const {
  const reader hold(*this);
  return hold.keys().size();
}

void jwt_key_set::replace(jwt_key_list keys) {
  auto next = std::make_unique<const jwt_key_list>(std::move(keys));
  std::lock_guard<std::mutex> lock(replace_mutex_);
  const unsigned g = generation_.load();
  const unsigned slot = (g + 1) & 1;  // the slot that is not current
  // Readers that entered it two generations ago leave within one verification.
  while (readers_[slot].load() != 0) std::this_thread::yield();
  owned_[slot] = std::move(next);  // frees that old list: nobody can be reading it
  lists_[slot].store(owned_[slot].get());
  generation_.store(g + 1);
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
      "gauge", size());
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
