// The hub: connections, rooms and fan-out.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "skyrelay/core/encoder.hpp"
#include "skyrelay/core/publication.hpp"
#include "skyrelay/hub/channel.hpp"
#include "skyrelay/hub/closed_sids.hpp"
#include "skyrelay/hub/subscriber.hpp"

namespace skyrelay {

// A publication as the history keeps it, for replay.
struct history_entry {
  publication pub;
  std::string topic;     // the room when it targeted exactly one room, else empty
  std::uint64_t seq{0};  // that room's seq, 0 when there is no topic
  std::uint64_t id{0};   // publication id
  std::string ts;
  std::int64_t publish_ns{0};
};

// Where a topic stands: its last seq and the epoch of its sequence. A topic's epoch changes
// when its sequence restarts (its history was forgotten, or the server restarted), so a seq is
// only meaningful together with its epoch.
struct topic_position {
  std::uint64_t seq{0};
  std::string epoch;
};

// A history read for recovery: what a channel published after a point the reader names.
// The point is either a seq of the channel with its epoch (the JSON protocol's `since`) or a
// publication id (SSE Last-Event-ID, Socket.IO offsets). A stream store (a Redis stream,
// later) answers both: by entry position, and by the id carried in each entry.
struct history_request {
  channel ch;
  bool broadcasts{false};  // the namespace ch.nsp's broadcasts to everyone instead of ch.room
  // With a value: entries with seq > since_seq, checked against `epoch` (when not empty).
  // Without: entries with publication id > after_id.
  std::optional<std::uint64_t> since_seq;
  std::string epoch;
  std::uint64_t after_id{0};
};

struct history_result {
  topic_position position;  // the channel's last seq and epoch (zero and empty: never used)
  // True when `entries` holds every publication after the point; false and `reset` says why
  // (history_gap, epoch_changed or ahead) when some are no longer held.
  bool complete{false};
  std::string reset;
  std::vector<std::shared_ptr<const history_entry>> entries;  // oldest first
};

// The outcome of a subscribe, handed to the caller under the publish lock so that its reply and
// replay go out before any live publication to the topic.
struct subscribe_outcome {
  std::vector<topic_position> positions;  // one per requested topic
  bool refused{false};  // over the room limit: nothing was joined (positions empty)
  bool resumed{false};                    // `since` was given
  bool recovered{false};                  // ... and every event after it is replayed below
  std::string reset;  // when not recovered: history_gap, epoch_changed or ahead
  std::vector<frame_ptr> replay;  // the missed events, in seq order (recovered only)
};

// Rooms and connections are split over shards by hash, each with its own mutex. Member lists are
// copy-on-write snapshots, so a publish takes one shared_ptr copy under a shard lock.
//
// Publications are totally ordered: the publish lock is held while a publication gets its id
// and seq, is recorded in history and is handed to every recipient, so each connection receives
// publications in increasing id order (and each room's in seq order). Joins, subscribes and
// resumes take the same lock, which makes "what was sent before I joined" exact. Lock order:
// publish lock, then a connection shard, then a room shard; the closed-sid set is a leaf, taken
// last. Subscribers' deliver() must not call publish, join, subscribe, resume, ordered or sweep
// (they may call remove and leave).
//
// Encoders: the hub knows no wire format. Each transport registers its encoder (add_encoder) and
// its connections name it by id (subscriber::encoder). A publication is encoded at most once per
// encoder, only for encoders that have a recipient, and that frame is shared by all of them; a
// replay encodes the history entry again for the resuming subscriber's encoder.
//
// History: each room keeps its latest publications (bounded by count and age) for replay by
// seq (JSON protocol `since`, SSE) or by id (Socket.IO connection state recovery); so does
// each namespace for its broadcasts to everyone. All methods are thread-safe.
class hub {
 public:
  static constexpr std::size_t shard_count = 16;
  static constexpr std::size_t max_encoders = 8;
  using member_list = std::vector<std::shared_ptr<subscriber>>;

  hub();

  // Registers a transport's encoder and returns the id its subscribers name it by (0, 1, ... in
  // registration order). Throws std::length_error past max_encoders. Meant for setup, before
  // connections of that transport are added, but thread-safe, also alongside publish (a
  // publication that started before does not use the new encoder). A subscriber whose encoder
  // id is not registered receives nothing.
  encoder_id add_encoder(encoder_fn fn);
  std::size_t encoder_count() const noexcept {
    return encoder_count_.load(std::memory_order_acquire);
  }
  // History bounds per room: `max_events` 0 turns history off. Call before any publish.
  void set_history(std::size_t max_events, std::chrono::milliseconds max_age);
  // Rooms one connection may be in (0: no limit); a join past it fails.
  void set_max_rooms(std::size_t n) { max_rooms_ = n; }
  // Called when a room gains its first member (`has_members` true) or loses its last one
  // (false), for the broker's subscribe/unsubscribe. It runs under the room's shard lock, so
  // the calls for one room alternate and come in order; it must not block and must not call
  // into the hub. Call before any join.
  using channel_listener = std::function<void(const channel& room, bool has_members)>;
  void set_channel_listener(channel_listener fn) { channel_listener_ = std::move(fn); }

  // Registers a connection; false if its sid is taken.
  bool add(std::shared_ptr<subscriber> s);
  // Unregisters a connection and removes it from every room. Idempotent. Its sid is kept
  // among the recently closed ones (see publish and closed_sids).
  void remove(const std::string& sid);

  // Room membership by sid; false when the sid is unknown (or, for leave, not a member).
  // A member receives the room's publications with ids after its join.
  bool join(const std::string& sid, const channel& room);
  bool leave(const std::string& sid, const channel& room);
  std::vector<channel> rooms_of(const std::string& sid) const;  // sorted

  std::shared_ptr<subscriber> find(const std::string& sid) const;
  std::size_t connection_count() const;
  std::size_t room_count() const;
  std::size_t room_size(const channel& room) const;
  std::vector<std::string> room_members(const channel& room) const;  // sids, unordered

  // Sets (or with nullopt, clears) a room's default overflow policy.
  void set_room_policy(const channel& room, std::optional<overflow_policy> policy);

  // Routes a publication. Each sid in `p.to_conns` is looked up in the connection registry
  // only. Each name in `p.to` is, in this order: the connection with that sid when it is in
  // `p.nsp` (a direct delivery, whatever room has that name); nothing when it is the sid of a
  // connection of another namespace or of one closed recently (such a name is never taken for
  // a room); else the room (p.nsp, name). Both lists empty: every connection of `p.nsp`.
  // Every recipient gets it once, even when it is in several targets. Encodes at most once
  // per encoder. Returns the number of deliveries queued.
  // `meta`, when given, receives what the publication was given (id, topic, seq, ts).
  std::size_t publish(const publication& p, publish_meta* meta_out = nullptr);

  // Sids of connections removed recently (kept as closed_sids::ttl and max_count say).
  std::size_t closed_sid_count() const { return closed_.size(); }

  // The topics of subscribe() and subscribe_after() are chosen by clients: they are always
  // rooms of namespace "/" (the JSON protocol's and SSE's connections are in "/").
  // Joins `sid` to each topic (JSON protocol subscribe) and reports each topic's position.
  // With `since` (one topic only), also works out the replay: the events after seq `since`, or
  // a reset when history no longer holds them all or `epoch` (when not empty) is not the
  // topic's. `send` runs under the publish lock; it must only queue frames. False when the
  // sid is unknown (and `send` is not called).
  bool subscribe(const std::string& sid, const std::vector<std::string>& topics,
                 std::optional<std::uint64_t> since, std::string_view epoch,
                 const std::function<void(subscribe_outcome&)>& send);

  // Socket.IO connection state recovery: `sid` (still registered, in its rooms) saw everything
  // up to publication id `offset`. Collects the publications it missed since then (those to its
  // rooms after it joined and its namespace's broadcasts), in id order, and passes them to
  // `send` under the publish lock. False (and `send` not called) when history lost some of
  // them; otherwise what `send` returns.
  bool resume(const std::string& sid, std::uint64_t offset,
              const std::function<bool(std::vector<frame_ptr>&)>& send);

  // Server-Sent Events: joins `sid` to `topics` and, when `last_event_id` (as sent in an SSE
  // `id:` line, see event_id) is not empty, collects what it missed after that id: the topics'
  // publications and the namespace "/" broadcasts, in id order. `send` gets those (encoded for
  // the subscriber) and, when they cannot all be had, an empty list and the reason
  // (history_gap, epoch_changed, ahead, bad_id), and the id of the last publication so far.
  // `send` runs under the publish lock. False when the sid is unknown.
  using replay_fn = std::function<void(std::vector<frame_ptr>&, std::string_view, std::uint64_t)>;
  bool subscribe_after(const std::string& sid, const std::vector<std::string>& topics,
                       std::string_view last_event_id, const replay_fn& send);
  // The SSE event id of publication `id`: "<epoch>-<id>", unique across server restarts.
  std::string event_id(std::uint64_t id) const { return epoch_prefix_ + "-" + std::to_string(id); }

  // Runs `fn` under the publish lock with a fresh publication id: for frames sent to one
  // connection outside publish() that must be ordered with publications (they carry the id).
  void ordered(const std::function<void(std::uint64_t id)>& fn);

  // Drops history entries older than the age bound and forgets idle topics. The server calls
  // this every second.
  void sweep();
  // What a room (or a namespace's broadcasts) published after the request's point, from
  // history: the memory broker's history read. Takes the publish lock.
  history_result read_history(const history_request& q);
  // Entries held in history, over every room and namespace.
  std::size_t history_entries() const;
  topic_position position(const channel& room) const;

 private:
  struct topic_log {
    std::string epoch;
    std::uint64_t seq{0};  // last seq assigned
    std::deque<std::shared_ptr<const history_entry>> entries;
    std::uint64_t evicted_id{0};   // highest publication id dropped from `entries`
    std::uint64_t evicted_seq{0};  // highest seq dropped from `entries`
  };
  struct room_entry {
    std::shared_ptr<const member_list> members;
    std::optional<overflow_policy> policy;
  };
  struct room_shard {
    mutable std::mutex mu;
    std::unordered_map<channel, room_entry, channel_hash> rooms;
  };
  struct conn_entry {
    std::shared_ptr<subscriber> sub;
    std::unordered_map<channel, std::uint64_t, channel_hash> rooms;  // -> last id before the join
    std::uint64_t added_id{0};  // last id before the connection was registered
  };
  struct conn_shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, conn_entry> conns;
    std::shared_ptr<const member_list> all;  // snapshot of this shard's connections
  };

  static std::size_t shard_of(std::string_view sid) noexcept;
  static std::size_t shard_of(const channel& room) noexcept;
  static std::shared_ptr<const member_list> with(const std::shared_ptr<const member_list>& list,
                                                 std::shared_ptr<subscriber> s);
  static std::shared_ptr<const member_list> without(const std::shared_ptr<const member_list>& list,
                                                    const subscriber* s);
  bool room_remove(const channel& room, const subscriber* s);
  bool join_locked(const std::string& sid, const channel& room);
  std::shared_ptr<const member_list> members_of(const channel& room) const;
  topic_log& topic_locked(const channel& room);
  // The encoder registered as `id`, or null.
  const encoder_fn* encoder_of(encoder_id id) const noexcept;
  // A history entry encoded again for one encoder (nullptr without one).
  frame_ptr replay_frame(const history_entry& e, encoder_id id) const;
  void record_locked(topic_log& log, const std::shared_ptr<const history_entry>& e);
  void expire_locked(topic_log& log, std::int64_t now_ns);

  channel_listener channel_listener_;
  // Slots below encoder_count_ are written once, before the count is raised (release), so
  // readers take no lock; encoders_mu_ only orders registrations.
  std::mutex encoders_mu_;
  std::array<encoder_fn, max_encoders> encoders_;
  std::atomic<std::size_t> encoder_count_{0};
  std::atomic<std::uint64_t> last_id_{0};
  std::atomic<std::size_t> max_rooms_{0};

  // Guarded by publish_mu_.
  mutable std::mutex publish_mu_;
  std::size_t history_max_{1000};
  std::int64_t history_age_ns_{120'000'000'000};
  std::string epoch_prefix_;
  std::uint64_t epochs_made_{0};
  std::unordered_map<channel, topic_log, channel_hash> topics_;
  std::unordered_map<std::string, topic_log> broadcasts_;  // by namespace
  // Topics forgotten by sweep(), with the last publication id they held, so that a resume
  // by id knows it missed their events. Bounded; `forgotten_floor_` is the highest id among
  // the tombstones dropped to keep the bound (a resume from before it is refused).
  std::unordered_map<channel, std::uint64_t, channel_hash> forgotten_;
  std::deque<channel> forgotten_order_;
  std::uint64_t forgotten_floor_{0};
  static constexpr std::size_t max_forgotten = 100'000;
  std::array<room_shard, shard_count> room_shards_;
  closed_sids closed_;  // sids of connections removed recently
  std::array<conn_shard, shard_count> conn_shards_;
};

}  // namespace skyrelay
