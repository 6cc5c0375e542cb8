// Idempotency keys of the HTTP publish API (docs/protocol.md "HTTP publish API").
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace skyrelay {

// A key belongs to a publisher (`scope`: who published, so two publishers that pick the same
// key never meet) and to the request it first came with (a SHA-256 digest of it, such as of
// proto::publish_fingerprint; the request itself is not kept). Keys are kept for `window` after their first use, at most
// `max_keys` of them (the oldest go first). Thread-safe; no I/O and no callbacks under its lock.
class idempotency_store {
 public:
  using clock = std::chrono::steady_clock;
  using digest = std::array<unsigned char, 32>;

  static digest digest_of(std::string_view body);

  idempotency_store(clock::duration window, std::size_t max_keys);

  enum class status : std::uint8_t {
    fresh,        // a new key, now reserved by the returned reservation
    replay,       // the same body was answered before: `answer` holds that answer
    in_progress,  // the same body is being handled by another request right now
    conflict,     // the key was used with another body
  };

  // Holds a fresh key until finish(); dropped unfinished (the publish failed or threw), it
  // frees the key so that a retry can succeed. Movable, not copyable; must not outlive the store.
  class reservation {
   public:
    reservation() = default;
    reservation(reservation&& o) noexcept { *this = std::move(o); }
    reservation& operator=(reservation&& o) noexcept;
    ~reservation();
    // Stores the answer that repeats of this key with the same body get.
    void finish(std::string answer);
    explicit operator bool() const noexcept { return store_ != nullptr; }

   private:
    friend class idempotency_store;
    idempotency_store* store_{nullptr};
    std::string id_;
    std::uint64_t token_{0};
  };

  struct result {
    status what;
    std::string answer;  // replay only
    reservation hold;    // fresh only
  };

  // Where the keys are kept when several nodes share them (a Redis one: redis_limits.hpp).
  // Each call may block for a round trip and throws broker_unavailable when the shared store
  // cannot answer; `id` is the scope and key (length-prefixed), `token` the reservation's.
  class backend {
   public:
    virtual ~backend() = default;
    // As begin(): fresh (reserved under `token`), replay (`answer` set), in_progress, conflict.
    virtual status begin(const std::string& id, const digest& body, std::uint64_t token,
                         std::string& answer) = 0;
    // Stores the answer of the reservation `token` (nothing if the key is no longer its).
    virtual void finish(const std::string& id, std::uint64_t token, std::string answer) = 0;
    // Frees the key when it is still reserved under `token` and unfinished. Must not throw.
    virtual void release(const std::string& id, std::uint64_t token) noexcept = 0;
  };

  // Keys go to `shared` from now on (null: this store's memory again); it must outlive the
  // store's use. Call before the first begin().
  void set_backend(backend* shared) noexcept { backend_ = shared; }

  // Throws broker_unavailable when a shared backend cannot answer (nothing was reserved).
  result begin(std::string_view scope, std::string_view key, const digest& body,
               clock::time_point now = clock::now());
  std::size_t size() const;  // keys held in this process's memory

 private:
  struct entry {
    clock::time_point expires;
    digest body;
    std::string answer;
    bool done{false};
    std::uint64_t token{0};
    std::list<const std::string*>::iterator order;
  };

  result begin_shared(std::string id, const digest& body);
  void finish(const std::string& id, std::uint64_t token, std::string answer);
  void release(const std::string& id, std::uint64_t token);
  void forget_old(clock::time_point now);  // with mu_ held

  const clock::duration window_;
  const std::size_t max_keys_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, entry> entries_;  // by scope and key
  std::list<const std::string*> order_;             // the map's keys, oldest first
  std::uint64_t next_token_{1};
  backend* backend_{nullptr};
};

}  // namespace skyrelay
