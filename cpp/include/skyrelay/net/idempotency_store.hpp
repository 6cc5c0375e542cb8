// Idempotency keys of the HTTP publish API (docs/protocol.md "HTTP publish API").
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
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
    // Stores the answer that repeats of this key with the same body get. With a shared
    // backend it blocks until stored: not on an I/O thread (use async_finish there).
    void finish(std::string answer);
    // As finish(); `done` runs once the answer is stored (or storing it failed: repeats then
    // get in_progress until the window ends), inline in memory, else on the backend's thread.
    void async_finish(std::string answer, std::function<void()> done);
    explicit operator bool() const noexcept { return store_ != nullptr; }

   private:
    friend class idempotency_store;
    idempotency_store* store_{nullptr};
    std::string id_;
    std::uint64_t token_{0};
  };

  struct result {
    status what{status::fresh};
    std::string answer;  // replay only
    reservation hold;    // fresh only
  };

  // Where the keys are kept when several nodes share them (a Redis one: redis_limits.hpp).
  // No call blocks: each `done` runs once, on the backend's own thread (it must not block);
  // `id` is the scope and key (length-prefixed), `token` the reservation's.
  class backend {
   public:
    // A non-null error (broker_unavailable: the shared store cannot answer, nothing was
    // reserved), else the status and, for a replay, the answer.
    using begin_fn = std::function<void(std::exception_ptr, status, std::string answer)>;
    virtual ~backend() = default;
    // As begin(): fresh (reserved under `token`), replay (`answer` set), in_progress, conflict.
    virtual void async_begin(const std::string& id, const digest& body, std::uint64_t token,
                             begin_fn done) = 0;
    // Stores the answer of the reservation `token` (nothing if the key is no longer its);
    // `done` runs once Redis answered or the call failed (counted by the backend).
    virtual void async_finish(const std::string& id, std::uint64_t token, std::string answer,
                              std::function<void()> done) = 0;
    // Frees the key when it is still reserved under `token` and unfinished. Must not throw.
    virtual void release(const std::string& id, std::uint64_t token) noexcept = 0;
  };

  // Keys go to `shared` from now on (null: this store's memory again); it must outlive the
  // store's use. Call before the first begin().
  void set_backend(backend* shared) noexcept { backend_ = shared; }

  // A non-null error is broker_unavailable: the shared backend cannot answer (nothing was
  // reserved); the result is then empty.
  using begin_fn = std::function<void(std::exception_ptr, result)>;
  // Looks the key up without blocking: `done` runs once, inline in memory, else on the
  // backend's thread (it must not block; post back to the caller's executor).
  void async_begin(std::string_view scope, std::string_view key, const digest& body,
                   begin_fn done, clock::time_point now = clock::now());
  // As async_begin, waiting for the answer (not on an I/O thread with a shared backend).
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

  static std::string id_of(std::string_view scope, std::string_view key);
  result begin_local(std::string id, const digest& body, clock::time_point now);
  void begin_shared(std::string id, const digest& body, begin_fn done);
  void finish(const std::string& id, std::uint64_t token, std::string answer,
              std::function<void()> done);
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
