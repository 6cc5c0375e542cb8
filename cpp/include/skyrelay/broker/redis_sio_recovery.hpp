// Socket.IO connection state recovery across nodes (issue 15 item 2), its Redis side: the
// state a socket with recovery leaves in Redis so that its client may resume on another node,
// the pid that names that state, and the offsets that say where the client stands.
// docs/architecture.md ("Socket.IO recovery across nodes") has the design and what is built.
//
// Keys (prefix `p`), both under the socket's sid as Cluster hash tag:
//   <p>sio:{<sid>}:r:<secret>  hash {nsp, r}: the record (r, JSON), PX = the recovery window
//   <p>sio:{<sid>}:d           string: direct publications to the sid (emits by sid), counted
//                               while it exists; PX = twice the window
// A pid is "<sid>.<secret>", the secret 132 random bits: the key is found only by the pid the
// server issued, so a forged or foreign pid resolves to no record (it is never compared: a
// wrong secret names another key, which does not exist).
//
// Threads: the pure functions are thread-safe. The store calls its redis_client (shared with
// the cluster state): save(), drop() and count_direct() never block; claim() blocks the
// caller for one round trip (at most its timeout), so call it from a thread that may wait.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/broker/redis_client.hpp"

namespace skyrelay::redis {

// Where a socket stands in one channel of its namespace: the namespace's broadcasts
// (`broadcasts`, room empty) or a room; the channel's epoch and the last position delivered
// to the socket (channel_pos::pos).
struct sio_channel_point {
  std::string room;
  bool broadcasts{false};
  std::string epoch;
  std::uint64_t pos{0};
  friend bool operator==(const sio_channel_point&, const sio_channel_point&) = default;
};

// A socket's recoverable state: who it is, and where it stood in each channel when its
// membership last changed (`version` counts those changes; an offset names the version its
// positions follow).
struct sio_recovery_record {
  std::string nsp;
  std::string sid;
  std::string subject;  // its token's `sub`; empty without a token
  std::uint64_t version{0};
  std::vector<sio_channel_point> channels;  // the broadcasts first, then each room
  friend bool operator==(const sio_recovery_record&, const sio_recovery_record&) = default;
};

struct sio_recovery_limits {
  std::size_t max_channels{17};  // the broadcasts and 16 rooms
  std::size_t max_bytes{8192};   // of a record's JSON
};

// A new pid for the socket `sid` (a sid of [A-Za-z0-9_-], at most 64 characters): "<sid>.",
// then 22 base64url characters (132 random bits).
std::string make_pid(const std::string& sid);
// A pid a client presented, split; nullopt when it is not of make_pid's shape (then nothing
// is looked up).
struct pid_parts {
  std::string_view sid, secret;
};
std::optional<pid_parts> parse_pid(std::string_view pid);

// The offset a socket with cross-node recovery writes as each event's last argument:
// "<n>.<version>.<direct>.<pos0>.<pos1>...", decimal: the socket's count of events (the local
// offset), the record version, the direct events it was sent, and its position in each
// channel of that version's record, in the record's order.
struct sio_offset {
  std::uint64_t n{0}, version{0}, direct{0};
  std::vector<std::uint64_t> pos;
  friend bool operator==(const sio_offset&, const sio_offset&) = default;
};
std::string format_offset(const sio_offset& o);
// A client's offset text (hostile): nullopt unless it is exactly that shape, each number at
// most 19 digits, with 1 to `max_channels` positions.
std::optional<sio_offset> parse_offset(std::string_view text, std::size_t max_channels);

// The record as stored, and back; decode_record refuses (nullopt) anything over `limits` or
// not of encode_record's shape.
std::string encode_record(const sio_recovery_record& r);
std::optional<sio_recovery_record> decode_record(std::string_view json,
                                                 const sio_recovery_limits& limits);

// What claim() found.
enum class sio_claim_result {
  resumable,        // the record, now deleted: nobody else can take it
  unknown,          // no record: never issued, forged, expired (the window passed), taken
  wrong_namespace,  // a record of another namespace; it is left in place
  unavailable,      // Redis did not answer in time (or is down)
  corrupt,          // a record this version cannot read; deleted
};
struct sio_claim {
  sio_claim_result result{sio_claim_result::unknown};
  sio_recovery_record record;
  // Direct publications counted for the sid (count_direct and the publish script's hook);
  // nullopt when the counter is gone (then nothing proves no direct event was missed).
  std::optional<std::uint64_t> direct;
};

struct sio_recovery_counters {
  std::uint64_t saved{0};         // records written (or rewritten)
  std::uint64_t save_refused{0};  // over the limits: not written, any older one dropped
  std::uint64_t claimed{0};       // claims that found a resumable record
  std::uint64_t claim_refused{0}; // claims that found none (unknown, namespace, corrupt)
  std::uint64_t errors{0};        // calls Redis did not answer
};

class sio_recovery_store {
 public:
  // `client` outlives the store. Records live `window` after their last save.
  sio_recovery_store(redis_client& client, std::string prefix, std::chrono::milliseconds window,
                     sio_recovery_limits limits = {});

  // The node this store writes for (the broker's node id). With it, save() and drop() leave
  // the record alone once the sid's registry entry (`sid:<sid>`) names another node: a
  // socket another node resumed is that node's. Call before any save.
  void set_node_id(std::string id) { node_id_ = std::move(id); }

  // Writes the record of `pid` (made by make_pid for r.sid) and makes sure the sid's direct
  // counter exists; both live from now. Does not wait. False (nothing written, and the older
  // record dropped, so the socket cannot be resumed elsewhere from a stale state) when the
  // record is over the limits or the pid is not of make_pid's shape.
  bool save(const std::string& pid, const sio_recovery_record& r);
  // The socket ended for good: its record goes. Does not wait.
  void drop(const std::string& pid);
  // A direct event was sent to `sid` outside the publish script (a local emit): counted when
  // the sid's counter exists. Does not wait.
  void count_direct(const std::string& sid);
  // Takes the record of `pid` for namespace `nsp`, atomically (at most one caller gets it).
  // With `node_id`, the same script makes the sid's registry entry (`sid:<sid>`, the
  // broker's) name that node, so that every emit by sid counted after the claim is routed
  // to it.
  sio_claim claim(std::string_view pid, const std::string& nsp,
                  std::chrono::milliseconds timeout, const std::string& node_id = {});
  // The sid's direct counter now (nullopt: gone, or Redis did not answer). Blocks.
  std::optional<std::uint64_t> direct_now(std::string_view sid,
                                          std::chrono::milliseconds timeout);
  // Whether the channel (a room of `nsp`, or with `broadcasts` its broadcasts) has numbered
  // no publication in its current sequence in Redis (no sequence, or seq 0). False when
  // Redis did not answer. Blocks.
  bool never_numbered(const std::string& nsp, const std::string& room, bool broadcasts,
                      std::chrono::milliseconds timeout);

  sio_recovery_counters counters() const;
  const sio_recovery_limits& limits() const noexcept { return limits_; }

  // The keys (for the publish script's hook, and tests).
  std::string record_key(std::string_view sid, std::string_view secret) const;
  std::string direct_key(std::string_view sid) const;

 private:
  redis_client& client_;
  const std::string prefix_;
  std::string node_id_;
  const std::chrono::milliseconds window_;
  const sio_recovery_limits limits_;
  std::atomic<std::uint64_t> saved_{0}, save_refused_{0}, claimed_{0}, claim_refused_{0},
      errors_{0};
};

}  // namespace skyrelay::redis
