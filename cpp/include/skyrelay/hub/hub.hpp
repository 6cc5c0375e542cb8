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
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "skyrelay/core/encoder.hpp"
#include "skyrelay/core/publication.hpp"
#include "skyrelay/hub/channel.hpp"
#include "skyrelay/hub/closed_sids.hpp"
#include "skyrelay/hub/member_list.hpp"
#include "skyrelay/hub/subscriber.hpp"

namespace skyrelay {

class keyed_state;
struct state_options;
enum class state_result : std::uint8_t;

// A publication as the history keeps it, for replay. One entry is shared by every channel it
// was recorded in.
struct history_entry {
  publication pub;
  std::string topic;     // the room when it targeted exactly one room, else empty
  std::uint64_t seq{0};  // that room's seq, 0 when there is no topic
  std::uint64_t id{0};   // publication id
  std::string ts;
  std::int64_t publish_ns{0};
  channel_positions positions;  // its position in each channel it was recorded in
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
// publication id. Ids increase in a channel's order, so an id names a point in one channel
// (never compare ids across channels). A stream store (a Redis stream, later) answers both:
// by entry position, and by the id carried in each entry.
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

// A publication's place in one channel as a cluster broker numbered it (hub::publish_ordered).
struct ordered_channel {
  channel ch;               // the room; with `broadcasts`, ch.nsp's broadcasts (room empty)
  bool broadcasts{false};
  std::string epoch;        // the broker's epoch of the channel's sequence
  std::uint64_t seq{0};     // the broker's position of the publication in it (from 1)
};

// Where a publication numbered by a cluster broker goes on this node: the channels this node
// follows that had not seen it yet, and the sids of this node it names directly.
struct ordered_route {
  std::vector<ordered_channel> channels;
  std::vector<std::string> direct;  // sids on this node (looked up in the registry only)
  bool everyone{false};             // channels holds the broadcasts of p.nsp
  bool single{false};  // exactly one room was named: its seq is the topic's seq
  std::string ts;      // the publication time (ISO-8601 UTC); empty: now
  // Redis Cluster: a multi-room publication is numbered by one script per hash slot, and each
  // slot's copy comes on its own. The first copy a node sees is delivered to the members of
  // `also` too (the rooms numbered by the other slots; not recorded here), later copies set
  // `record_only`: their channels' logs advance (history, seq, resets) and nobody gets it.
  std::vector<channel> also;
  bool record_only{false};
};

// A channel's stored tail, as a cluster broker holds it (hub::load_history).
struct stored_entry {
  std::uint64_t seq{0};
  publication pub;
  std::string ts;
  bool single{false};  // published to this room alone (replayed to JSON `since` resumes)
};

// The outcome of a subscribe, handed to the caller under the topics' order locks so that its
// reply and replay go out before any live publication to them.
struct subscribe_outcome {
  std::vector<topic_position> positions;  // one per requested topic
  bool refused{false};  // over the room limit: nothing was joined (positions empty)
  bool resumed{false};                    // `since` was given
  // ... and every event after it is replayed below. `send` sets it false when it could not
  // send the replay after all (the topic's states then follow in full).
  bool recovered{false};
  std::string reset;  // when not recovered: history_gap, epoch_changed or ahead
  std::vector<frame_ptr> replay;  // the missed events, in seq order (recovered only)
};

// Rooms and connections are split over shards by hash, each with its own mutex. Member lists are
// copy-on-write snapshots, so a publish takes one shared_ptr copy under a shard lock.
//
// Ordering, per channel. Each channel (a room, or a namespace's broadcasts to everyone) has
// a log: its order lock, its seq and position counters, its epoch and its history. A
// publication locks the logs of the channels it goes to (several rooms: in one canonical
// order, by the log's address, so two publications cannot deadlock), takes its id, its seq
// and position in each, records one shared history entry in each and hands the frame to the
// union of their members before it unlocks. So every member receives a channel's
// publications in the channel's order, whatever the number of publishing threads, and
// publications to disjoint channels run in parallel. Joins, subscribes and history reads lock the
// logs of the channels they touch, which makes "what was sent before I joined" exact.
// Publications to connections only (by sid) take no log lock: the connection's outbox orders
// them. Ids are unique, and increase in a channel's order, but say nothing across channels.
//
// Lock order (a thread holding one may take only those after it):
//   1. log order locks, several at once only in increasing address order (log_locks);
//   2. a connection shard;
//   3. a room shard (the channel listener runs here);
//   4. leaves, taken alone: the tombstones' mutex, the broadcast table's, a shard's closed
//      sids.
// A log is looked up (and made) under its room shard alone, then locked once the shard is
// released; a log that sweep() retired meanwhile is looked up again. Subscribers' deliver()
// and encoders run under order locks: they must only queue, and must not call publish, join,
// subscribe, subscribe_after or sweep (they may call remove and leave).
//
// Encoders: the hub knows no wire format. Each transport registers its encoder (add_encoder) and
// its connections name it by id (subscriber::encoder). A publication is encoded at most once per
// encoder, only for encoders that have a recipient, and that frame is shared by all of them; a
// replay encodes the history entry again for the resuming subscriber's encoder.
//
// History: each room keeps its latest publications (bounded by count and age) for replay by
// seq (JSON protocol `since`), by position (SSE cursors) or by id (the broker's history read,
// read_history); so does each namespace for its broadcasts to everyone. All methods are
// thread-safe.
class hub {
 public:
  static constexpr std::size_t shard_count = 16;
  // Three transports (JSON protocol, Socket.IO, SSE) and the application's envelopes (one per
  // distinct envelope, server::register_envelope_encoders); the per-publication arrays of
  // hub_publish are this long, on the stack.
  static constexpr std::size_t max_encoders = 16;
  using member_list = skyrelay::member_list;  // snapshots; appending does not copy

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
  // History bounds per room: `max_events` 0 turns history off. Call before any publish (a
  // publication running meanwhile may use either bound).
  void set_history(std::size_t max_events, std::chrono::milliseconds max_age);
  // Rooms one connection may be in (0: no limit); a join past it fails.
  void set_max_rooms(std::size_t n) { max_rooms_ = n; }
  // Called when a room gains its first member (`has_members` true) or loses its last one
  // (false), for the broker's subscribe/unsubscribe. It runs under the room's shard lock, so
  // the calls for one room alternate and come in order; it must not block and must not call
  // into the hub. Call before any join.
  using channel_listener = std::function<void(const channel& room, bool has_members)>;
  void set_channel_listener(channel_listener fn) { channel_listener_ = std::move(fn); }
  // Called after a connection was registered (`added` true) or unregistered (false), with no
  // lock held, for a cluster broker's sid registry. It must not block. Call before any add.
  using connection_listener = std::function<void(const std::string& sid, bool added)>;
  void set_connection_listener(connection_listener fn) { connection_listener_ = std::move(fn); }

  // Registers a connection; false if its sid is taken.
  bool add(std::shared_ptr<subscriber> s);
  // Unregisters a connection and removes it from every room. Idempotent. Its sid is kept
  // among the recently closed ones (see publish and closed_sids).
  void remove(const std::string& sid);

  // Room membership by sid; false when the sid is unknown (or, for leave, not a member).
  // A member receives the room's publications that take the room's order lock after its join.
  bool join(const std::string& sid, const channel& room);
  bool leave(const std::string& sid, const channel& room);
  std::vector<channel> rooms_of(const std::string& sid) const;  // sorted

  std::shared_ptr<subscriber> find(const std::string& sid) const;
  std::size_t connection_count() const;
  std::size_t room_count() const;
  std::size_t room_size(const channel& room) const;
  // Every room with members and its member count, unordered (one shard lock at a time, so a
  // snapshot, not one instant): a cluster node's report of its rooms (redis_state).
  std::vector<std::pair<channel, std::size_t>> room_sizes() const;
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
  // `meta`, when given, receives what the publication was given (id, topic, seq, ts, its
  // position in each channel and their epochs).
  std::size_t publish(const publication& p, publish_meta* meta_out = nullptr);

  // hub_ordered.cpp: a cluster broker's delivery. `p` was numbered by the broker: each channel
  // of `r` gets the broker's epoch and seq (its log switches to that epoch when it had
  // another; a seq past the log's next one leaves an explicit hole: resumes from before it get
  // history_gap), the publication is recorded in their history and handed to the union of
  // their local members and of r.direct, once each, under the channels' order locks, exactly
  // as publish() does after its numbering. `p.to` is not resolved again. In this mode a
  // room's seq equals its position. Returns the deliveries queued. Callers must hand one
  // channel's publications in increasing seq (the broker's single thread does).
  // When a channel's sequence changes under its members (another epoch, or a hole), each
  // member's subscriber::reset is called first, before the publication's frame: the hub
  // itself makes the change explicit to every local member, whatever its transport.
  // "epoch_changed" when the old sequence had recorded something, "history_gap" for a hole;
  // a sequence that had recorded nothing moves to the new one with an empty reason, except a
  // room's that is also past seq 1 (its members joined before the node knew where the room
  // stood): "history_gap". The broadcasts' first sequence this node sees is never a reset
  // (what a namespace broadcast before this node followed it is nobody's here).
  std::size_t publish_ordered(const publication& p, const ordered_route& r,
                              publish_meta* meta_out = nullptr);
  // Sets a channel's log to the broker's epoch and last seq `seq` and its history to
  // `entries` (oldest first, seqs increasing and <= seq), unless the log already stands at
  // that epoch and seq or later. What is before the first entry is a hole (history_gap).
  // Members of the channel get subscriber::reset as in publish_ordered: the entries loaded
  // are history only, never delivered, so a member that the log moves past gets at least
  // "history_gap".
  void load_history(const channel& ch, bool broadcasts, const std::string& epoch,
                    std::uint64_t seq, std::vector<stored_entry> entries);

  // Sids of connections removed recently (kept as closed_sids::ttl and max_count say).
  std::size_t closed_sid_count() const;

  // The topics of subscribe() and subscribe_after() are chosen by clients: they are always
  // rooms of namespace "/" (the JSON protocol's and SSE's connections are in "/").
  // Joins `sid` to each topic (JSON protocol subscribe) and reports each topic's position.
  // With `since` (one topic only), also works out the replay: the events after seq `since`, or
  // a reset when history no longer holds them all or `epoch` (when not empty) is not the
  // topic's. `send` runs under the topics' order locks; it must only queue frames. False when
  // the sid is unknown (and `send` is not called).
  bool subscribe(const std::string& sid, const std::vector<std::string>& topics,
                 std::optional<std::uint64_t> since, std::string_view epoch,
                 const std::function<void(subscribe_outcome&)>& send);

  // Server-Sent Events: joins `sid` to `topics` (rooms of "/") and, with `from` (a cursor: one
  // stream_point for the "/" broadcasts, then one per topic, in order), collects what it
  // missed after it: each channel's history after its point, the entries merged in id order
  // and each given once. `send` gets those (encoded for the subscriber, each frame carrying
  // its positions), the reset reason when they cannot all be had (then no frames: history_gap,
  // epoch_changed, ahead, or bad_id when `from` does not have one point per channel), and the
  // cursor the stream stands at before the frames: `from` (a topic whose sequence was
  // restarted right after `from`'s end starts at its new epoch's 0), or where each channel is
  // now when there is no `from` or a reset. `send` runs under the channels' order locks and
  // must only queue. False when the sid is unknown.
  using replay_fn = std::function<void(std::vector<frame_ptr>& frames, std::string_view reset,
                                       const std::vector<stream_point>& cursor)>;
  bool subscribe_after(const std::string& sid, const std::vector<std::string>& topics,
                       const std::optional<std::vector<stream_point>>& from,
                       const replay_fn& send);
  // The prefix every epoch of this hub starts with ("<prefix>.<n>"), unique across restarts.
  const std::string& epoch_prefix() const noexcept { return epoch_prefix_; }
  // A cluster broker's: every node's epochs start with one `prefix` (the epochs Redis makes,
  // "<prefix>.<unix µs>", and this hub's own, "<prefix>.<first + n>"), so an SSE cursor made
  // on one node reads on another. `prefix` holds neither '.' nor '~'. Call before any
  // channel is used (the broker's constructor does).
  void set_epoch_prefix(std::string prefix, std::uint64_t first) {
    epoch_prefix_ = std::move(prefix);
    epochs_made_.store(first);
  }

  // Drops history entries older than the age bound and forgets idle topics. The server calls
  // this every second.
  void sweep();
  // What a room (or a namespace's broadcasts) published after the request's point, from
  // history: the memory broker's history read. Takes the channel's order lock.
  history_result read_history(const history_request& q);
  // Entries held in history, over every room and namespace.
  std::size_t history_entries() const;
  topic_position position(const channel& room) const;

  // ---- Keyed states (hub_state.cpp; docs/api.md "Delta updates") ----
  // A room may hold one keyed state per event name. Its changes are publications to the room
  // (numbered, recorded in history, encoded once per encoder, like publish()), made under the
  // room's order lock together with the change, so every member's copy follows the state.
  // A member gets the state's full update (keyed_state::full, each payload one event to the
  // room, encoded for its encoder, not recorded in history) under that same lock: at join()
  // when it was not a member yet, at subscribe() unless `since` was recovered, at
  // subscribe_after() unless the cursor was, and on send_full_state(). So a member never gets
  // a delta before its full update, nor misses one after it. The full update is queued with
  // the disconnect policy: it must fit the member's outbox (see keyed_state's bounds).
  struct state_change {
    state_result result;
    std::size_t delivered{0};  // deliveries of the delta
  };
  // Makes (room, opts.event)'s state. False (nothing made) when the room has one for that
  // event already with other options; true when it has one with the same. Throws
  // std::invalid_argument when check_state_options refuses `opts`.
  bool define_state(const channel& room, const state_options& opts);
  // Changes a state (keyed_state::update / remove) and publishes the delta when something
  // changed. Throws std::invalid_argument when the room has no state for `event`.
  state_change update_state(const channel& room, const std::string& event,
                            const std::string& key, std::string_view fields_json);
  state_change remove_state_key(const channel& room, const std::string& event,
                                const std::string& key);
  // A key's fields (JSON text), or every key's ({"key": {...}}) when `key` is null; nothing
  // when the state (or the key) is not there.
  std::optional<std::string> state_fields(const channel& room, const std::string& event,
                                          const std::string* key);
  // Queues the full update of the room's state for `event` (every state of the room when
  // `event` is empty) to the member `sid`: the payloads queued, or nothing when `sid` is not
  // a member of the room.
  std::optional<std::size_t> send_full_state(const channel& room, const std::string& event,
                                             const std::string& sid);
  struct state_counters {
    std::uint64_t keys{0};           // keys held now, over every state
    std::uint64_t deltas{0};         // delta publications
    std::uint64_t unchanged{0};      // updates that changed nothing (nothing sent)
    std::uint64_t full_payloads{0};  // full-update payloads queued to members
    std::uint64_t refused_keys{0};   // updates refused: a new key past max_keys
    std::uint64_t refused_bytes{0};  // updates refused: a key's fields past max_key_bytes
  };
  state_counters state_stats() const noexcept;

 private:
  struct log_item {
    std::uint64_t pos{0};  // the entry's position in this channel
    std::shared_ptr<const history_entry> entry;
  };
  // One channel's order and history. Made by log_of (rooms) or broadcast_log, never moved.
  struct alignas(64) channel_log {
    std::mutex mu;  // the order lock; the fields below are guarded by it
    bool retired{false};  // forgotten by sweep(): no longer in its table, look it up again
    std::string epoch;
    std::uint64_t seq{0};  // last seq given (publications to this room alone)
    std::uint64_t pos{0};  // last position given (every publication recorded here)
    std::deque<log_item> items;
    std::uint64_t evicted_id{0};   // highest publication id dropped from `items`
    std::uint64_t evicted_seq{0};  // highest seq dropped
    std::uint64_t evicted_pos{0};  // highest position dropped
    // The sequence this one follows (the channel was forgotten and used again): a cursor at its
    // very end continues at this epoch's start.
    std::string prev_epoch;
    std::uint64_t prev_pos{0};
    // Its keyed states, one per event (hub_state.cpp). A log with a state is never retired.
    std::vector<std::shared_ptr<keyed_state>> states;
  };
  using log_ptr = std::shared_ptr<channel_log>;
  // A forgotten channel's last sequence.
  struct tombstone {
    std::string epoch;
    std::uint64_t pos{0};
    std::uint64_t last_id{0};  // highest publication id it held
  };
  // Order locks held on a set of logs, taken in address order, released on destruction.
  // Holds plain pointers, in place for a few channels: a publication allocates nothing here.
  class log_locks {
   public:
    log_locks() = default;
    log_locks(log_locks&& o) noexcept;
    log_locks& operator=(log_locks&& o) noexcept;
    ~log_locks();
    // Locks `logs` (any order, repeats allowed) in address order; false (nothing held) when
    // one was retired. The caller keeps the logs alive (it holds their log_ptr) while held.
    bool lock(std::span<const log_ptr> logs);
    void unlock() noexcept;

   private:
    boost::container::small_vector<channel_log*, 4> held_;
  };
  struct room_entry {
    std::shared_ptr<const member_list> members;
    std::optional<overflow_policy> policy;
  };
  // Shards sit on cache lines of their own, so threads on different shards do not share one.
  struct alignas(64) room_shard {
    mutable std::mutex mu;
    std::unordered_map<channel, room_entry, channel_hash> rooms;
    std::unordered_map<channel, log_ptr, channel_hash> logs;  // outlive members until swept
  };
  struct conn_entry {
    std::shared_ptr<subscriber> sub;
    std::unordered_set<channel, channel_hash> rooms;
  };
  struct alignas(64) conn_shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, conn_entry> conns;
    std::shared_ptr<const member_list> all;  // snapshot of this shard's connections
    // Sids of this shard's connections removed recently (a leaf: its own mutex). Sharded
    // like the connections, so publications to rooms check names without a shared lock.
    closed_sids closed{closed_sids::max_count / shard_count};
  };
  // A publication's targets, resolved (hub_publish.cpp).
  struct route;

  static std::size_t shard_of(std::string_view sid) noexcept;
  static std::size_t shard_of(const channel& room) noexcept;
  static std::shared_ptr<const member_list> with(const std::shared_ptr<const member_list>& list,
                                                 std::shared_ptr<subscriber> s);
  static std::shared_ptr<const member_list> without(const std::shared_ptr<const member_list>& list,
                                                    const subscriber* s);
  bool room_remove(const channel& room, const subscriber* s);
  // Needs the room's log locked. `added` (when given) says whether it was not a member yet.
  bool join_locked(const std::string& sid, const channel& room, bool* added = nullptr);
  std::shared_ptr<const member_list> members_of(const channel& room) const;

  // hub_channels.cpp: the logs.
  std::string new_epoch();
  // The room's log; made when missing if `make`, or when the room has members (every room
  // with members has one). Null otherwise. Takes the room shard (and the tombstones) only.
  log_ptr log_of(const channel& room, bool make);
  log_ptr broadcast_log(const std::string& nsp);
  // Looks up (making them) the logs of `rooms` (and of nsp's broadcasts when `broadcasts`),
  // locks them, and retries while sweep() retires one meanwhile.
  log_locks lock_channels(const std::vector<channel>& rooms, const std::string* broadcasts_nsp,
                          std::vector<log_ptr>& logs);
  void record_locked(channel_log& log, std::uint64_t pos,
                     const std::shared_ptr<const history_entry>& e);
  void expire_locked(channel_log& log, std::int64_t now_ns);
  // Retires `log` when it holds nothing and the room has no members (sweep; log locked).
  bool retire_locked(const channel& room, channel_log& log, room_shard& rs);

  // The encoder registered as `id`, or null.
  const encoder_fn* encoder_of(encoder_id id) const noexcept;
  // A history entry encoded again for one encoder (nullptr without one).
  frame_ptr replay_frame(const history_entry& e, encoder_id id) const;

  // hub_publish.cpp: publish's steps.
  void resolve(const publication& p, route& r);
  // Numbers `p` in r's logs (locked by the caller), records it and fans it out.
  std::size_t publish_locked(const publication& p, route& r, publish_meta* meta_out);
  // The recipients of r's rooms (or of everyone) and the room's policy; logs locked.
  void snapshot(route& r) const;
  // hub_ordered.cpp: a log moved to the broker's epoch and seq (see publish_ordered), and
  // what that means to its members, mildest first (see sequence_reset).
  enum class seq_change : std::uint8_t { none, renamed, gap, restarted };
  seq_change follow_locked(channel_log& log, const std::string& epoch, std::uint64_t seq,
                           bool broadcasts);
  // Tells the members of a channel (every connection of ch.nsp for its broadcasts) that its
  // sequence changed; log locked, before the channel's next frame.
  // The channel stands at `seq` of `epoch` (its next publication has seq + 1 or more).
  void announce_locked(const channel& ch, bool broadcasts, seq_change c,
                       const std::string& epoch, std::uint64_t seq);
  std::size_t fan_out(const publication& p, const publish_meta& meta, route& r);

  // hub_state.cpp, with `log` locked: the state of `event` in it (null when none); the full
  // update of its states (one event, or all when `event` is null) queued to `sub`.
  static keyed_state* state_locked(channel_log& log, const std::string& event);
  std::size_t send_full_locked(const channel& room, channel_log& log, subscriber& sub,
                               const std::string* event);
  // A change made: the delta published to the room (log locked).
  std::size_t publish_delta_locked(const channel& room, const log_ptr& log,
                                   const std::string& event, std::string delta);

  channel_listener channel_listener_;
  connection_listener connection_listener_;
  // Slots below encoder_count_ are written once, before the count is raised (release), so
  // readers take no lock; encoders_mu_ only orders registrations.
  std::mutex encoders_mu_;
  std::array<encoder_fn, max_encoders> encoders_;
  std::atomic<std::size_t> encoder_count_{0};
  // Read on every publication, written at setup: kept off the line last_id_ is on.
  std::atomic<std::size_t> max_rooms_{0};
  std::atomic<std::size_t> history_max_{1000};
  std::atomic<std::int64_t> history_age_ns_{120'000'000'000};
  std::string epoch_prefix_;  // set at construction (or by set_epoch_prefix, before use)
  // Written by every publication, from every publishing thread: a cache line of its own.
  alignas(64) std::atomic<std::uint64_t> last_id_{0};
  alignas(64) std::atomic<std::uint64_t> epochs_made_{0};
  // Keyed states' counters (state_counters).
  std::atomic<std::uint64_t> state_keys_{0}, state_deltas_{0}, state_unchanged_{0},
      state_full_payloads_{0}, state_refused_keys_{0}, state_refused_bytes_{0};

  mutable std::mutex broadcasts_mu_;  // a leaf
  std::unordered_map<std::string, log_ptr> broadcasts_;  // by namespace; never retired

  // Channels forgotten by sweep(), with where their sequence ended, so that a history read
  // knows what was lost. Bounded; `forgotten_floor_` is the highest id among the tombstones
  // dropped to keep the bound (a read by id from before it is a gap). A leaf lock.
  mutable std::mutex forgotten_mu_;
  std::unordered_map<channel, tombstone, channel_hash> forgotten_;
  std::deque<channel> forgotten_order_;
  std::uint64_t forgotten_floor_{0};
  static constexpr std::size_t max_forgotten = 100'000;

  std::array<room_shard, shard_count> room_shards_;
  std::array<conn_shard, shard_count> conn_shards_;
};

}  // namespace skyrelay
