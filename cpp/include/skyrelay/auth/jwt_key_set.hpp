// The keys a jwt_verifier trusts, replaceable while the server runs (JWKS key rotation,
// docs/security.md "Keys from a JWKS URL").
//
// The keys are an immutable list published whole by replace(). Readers (verify() on the I/O
// threads) take no lock: a `reader` enters one of two slots with an atomic increment, reads
// that slot's list, and leaves with a decrement. replace() writes the slot that is not
// current, after waiting for the readers still in it from two generations ago, then flips the
// generation; so a verification that began on the old list finishes on it, and the next one
// sees the new list. (std::atomic<std::shared_ptr> would do the same, but libstdc++ 12 makes
// it a spinlock whose load unlocks with a relaxed store, which ThreadSanitizer rightly reports
// as a race.) Nothing here fetches anything: the Python layer (skyrelay/_jwks.py) fetches the
// document on its own thread and calls replace().
//
// The set also carries the two things that refresher needs from the I/O threads without
// calling into Python there: a flag raised when a token names a kid the set does not hold
// (note_unknown_key, cheap and lock-free after the first raise), which the refresher waits for
// with wait_unknown_key; and the refresh counters shown on /metrics.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>


namespace skyrelay::auth {

struct jwt_key;
using jwt_key_list = std::vector<std::shared_ptr<const jwt_key>>;

class jwt_key_set {
 public:
  // A hold on the current list: it stays alive and unchanged while the reader lives. Lock-free;
  // keep it for one verification only (a replace waits for readers two generations old).
  class reader {
   public:
    explicit reader(const jwt_key_set& set) noexcept;
    ~reader();
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;
    const jwt_key_list& keys() const noexcept { return *list_; }

   private:
    const jwt_key_set& set_;
    unsigned slot_ = 0;
    const jwt_key_list* list_ = nullptr;
  };

  jwt_key_set();

  // A copy of the current list (empty before the first replace). Any thread.
  jwt_key_list keys() const;
  std::size_t size() const;
  // Publishes `keys` as the whole set. Any thread, but not one that holds a reader.
  void replace(jwt_key_list keys);

  // Called by verify() on an I/O thread when a token's kid names no key. Lock-free while the
  // flag is already up; takes a mutex only to wake the waiter when it raises the flag.
  void note_unknown_key() noexcept;
  // Blocks up to `timeout` for note_unknown_key() or wake(); answers whether the flag was up,
  // and lowers it. Meant for one refresher thread (the caller releases the GIL).
  bool wait_unknown_key(std::chrono::milliseconds timeout);
  // Ends a wait_unknown_key early (the refresher is stopping).
  void wake();

  // Refresh bookkeeping, written by the refresher, read by /metrics. `now_unix` stamps a
  // success.
  void count_refresh(bool ok, std::int64_t now_unix) noexcept;
  void count_unknown_kid_refetch() noexcept { unknown_refetches_.fetch_add(1); }
  // Whether the set is fed from a JWKS document: only then are its metrics written.
  void set_jwks(bool on) noexcept { jwks_.store(on); }
  bool jwks() const noexcept { return jwks_.load(); }

  std::uint64_t unknown_key_tokens() const noexcept { return unknown_tokens_.load(); }
  std::uint64_t refreshes() const noexcept { return refreshes_.load(); }
  std::uint64_t refresh_failures() const noexcept { return failures_.load(); }

  // The skyrelay_jwks_* families in Prometheus text, when jwks() is on; nothing otherwise.
  void write_metrics(std::string& out) const;

 private:
  mutable std::atomic<unsigned> readers_[2] = {0, 0};  // readers in each slot
  std::atomic<unsigned> generation_{0};                // the current slot is generation_ & 1
  std::atomic<const jwt_key_list*> lists_[2] = {nullptr, nullptr};
  std::unique_ptr<const jwt_key_list> owned_[2];  // what lists_ point to; under replace_mutex_
  std::mutex replace_mutex_;                       // one replace at a time; never taken by readers
  std::atomic<bool> unknown_flag_{false};
  std::atomic<bool> jwks_{false};
  std::atomic<std::uint64_t> unknown_tokens_{0};
  std::atomic<std::uint64_t> unknown_refetches_{0};
  std::atomic<std::uint64_t> refreshes_{0};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::int64_t> last_success_unix_{0};

  std::mutex wait_mutex_;  // guards woken_ and pairs with wait_cv_; never held by verify()
  std::condition_variable wait_cv_;
  bool woken_ = false;
};

}  // namespace skyrelay::auth
