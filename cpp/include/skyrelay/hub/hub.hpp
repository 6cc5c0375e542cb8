// The hub: connections, rooms and fan-out.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "skyrelay/hub/publication.hpp"
#include "skyrelay/hub/subscriber.hpp"

namespace skyrelay {

// Turns a publication into the frame of one wire format.
using encoder_fn = std::function<frame_ptr(const publication&, const publish_meta&)>;

// Rooms and connections are split over shards by hash, each with its own mutex. Member lists are
// copy-on-write snapshots, so a publish takes one shared_ptr copy under the lock and fans out with
// no lock held. Lock order: a connection shard may be held while taking a room shard, never the
// reverse. All methods are thread-safe.
class hub {
 public:
  static constexpr std::size_t shard_count = 16;
  using member_list = std::vector<std::shared_ptr<subscriber>>;

  hub();

  // Installs the encoder of a wire format. Call before any publish.
  void set_encoder(wire_format fmt, encoder_fn fn);

  // Registers a connection; false if its sid is taken.
  bool add(std::shared_ptr<subscriber> s);
  // Unregisters a connection and removes it from every room. Idempotent.
  void remove(const std::string& sid);

  // Room membership by sid; false when the sid is unknown (or, for leave, not a member).
  bool join(const std::string& sid, const std::string& room);
  bool leave(const std::string& sid, const std::string& room);
  std::vector<std::string> rooms_of(const std::string& sid) const;

  std::shared_ptr<subscriber> find(const std::string& sid) const;
  std::size_t connection_count() const;
  std::size_t room_count() const;
  std::size_t room_size(const std::string& room) const;
  std::vector<std::string> room_members(const std::string& room) const;  // sids, unordered

  // Sets (or with nullopt, clears) a room's default overflow policy.
  void set_room_policy(const std::string& room, std::optional<overflow_policy> policy);

  // Routes a publication: each name in `to` is a room if one exists by that name, else a sid.
  // Every recipient gets it once, even when it is in several target rooms. Encodes at most once
  // per wire format. Returns the number of deliveries queued.
  std::size_t publish(const publication& p);

  // The next publication id; also used for events sent to one connection.
  std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed) + 1; }

 private:
  // Publications numbered by one room are handed to subscribers in `seq` order: each waits
  // (holding no hub lock) until the one before it has been handed to every member.
  struct room_order {
    std::mutex mu;
    std::condition_variable cv;
    std::uint64_t delivered{0};  // the last seq handed to every member
  };
  struct room_entry {
    std::shared_ptr<const member_list> members;
    std::uint64_t seq{0};
    std::shared_ptr<room_order> order;
    std::optional<overflow_policy> policy;
  };
  struct room_shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, room_entry> rooms;
  };
  struct conn_entry {
    std::shared_ptr<subscriber> sub;
    std::unordered_set<std::string> rooms;
  };
  struct conn_shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, conn_entry> conns;
    std::shared_ptr<const member_list> all;  // snapshot of this shard's connections
  };

  static std::size_t shard_of(std::string_view key) noexcept;
  static std::shared_ptr<const member_list> with(const std::shared_ptr<const member_list>& list,
                                                 std::shared_ptr<subscriber> s);
  static std::shared_ptr<const member_list> without(const std::shared_ptr<const member_list>& list,
                                                    const subscriber* s);
  bool room_remove(const std::string& room, const subscriber* s);

  std::array<encoder_fn, static_cast<std::size_t>(wire_format::count_)> encoders_;
  std::atomic<std::uint64_t> next_id_{0};
  std::array<room_shard, shard_count> room_shards_;
  std::array<conn_shard, shard_count> conn_shards_;
};

}  // namespace skyrelay
