// The sids of connections that closed recently, so that a name that addressed a connection
// never starts addressing a room (see hub::publish).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>

namespace skyrelay {

// A bounded, time-limited set of sids. Thread-safe; no callbacks.
class closed_sids {
 public:
  // How long a sid is kept, and how many at most (the oldest go first past the bound; a sid
  // dropped early was closed at least `ttl * max_count / rate` ago at a sustained close rate).
  static constexpr std::chrono::minutes ttl{10};
  static constexpr std::size_t max_count = 100'000;

  // `max` bounds this set (a hub keeps one per connection shard, each a share of max_count).
  explicit closed_sids(std::size_t max = max_count) : max_(max) {}

  // Records `sid` as closed at `now_ns` (steady clock). A sid recorded twice keeps its first
  // time.
  void add(const std::string& sid, std::int64_t now_ns);
  bool contains(const std::string& sid) const;
  // Forgets sids older than `ttl`.
  void expire(std::int64_t now_ns);
  std::size_t size() const;

 private:
  void expire_locked(std::int64_t now_ns);

  const std::size_t max_;
  mutable std::mutex mu_;
  std::deque<std::pair<std::string, std::int64_t>> order_;  // oldest first
  std::unordered_set<std::string> sids_;
};

}  // namespace skyrelay
