// Drop-in for existing producers (issue 15, item 5): a skyrelay node on a Redis broker takes
// the messages python-socketio's and Flask-SocketIO's Redis managers publish on their
// channels (sio_manager_message.hpp) and acts on them. docs/architecture.md ("The Socket.IO
// manager bridge") has the design; in short:
//
// - Every node subscribes to the manager channels and applies enter_room, leave_room,
//   close_room and disconnect to its own connections (a node holding no such connection does
//   nothing), as each python-socketio server does.
// - Emits are republished through the normal publish path (server::publish: Redis-numbered,
//   one order per room, history and resume) by ONE node per channel, its leader: the node
//   holding the lease key `<prefix>manager:leader:<channel>` (taken when free, with a TTL,
//   renewed every second by a script that extends it only for its holder). Every other node
//   drops the emits it receives. A leader acts only while its lease, counted from when it
//   asked for it, has not run out locally (with a margin), so two nodes never republish the
//   same emit.
// - Order between a room method and the emits after it (enter_room then emit reaches the new
//   member; leave_room then emit does not reach the old one): the sid's node applies
//   enter_room once it follows the room (broker::warm), then says so on
//   `<prefix>manager:applied:<channel>`; the leader, which looked up the sid's node
//   (`<prefix>sid:<sid>`, the broker's registry), republishes nothing that came after the
//   method until that word came, the sid is on no live node, or `order_timeout` passed.
//
// Threads. The bridge has one thread and io_context of its own with two Redis connections
// (a subscriber for the channels, a command one for the lease); on a cluster the keyed
// commands use a redis_client of its own (its thread; answers posted back to the bridge's). Messages are handled on that
// thread one at a time, in the order Redis sent them; `actions` are called there, with no lock
// held (a publish blocks the thread until the broker answered). Counters are atomics.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "skyrelay/broker/redis_url.hpp"
#include "skyrelay/core/publication.hpp"
#include "skyrelay/hub/channel.hpp"

namespace skyrelay::redis {

// What the bridge asks of its node; each is called on the bridge's thread.
struct manager_actions {
  // Publishes through the node's broker; throws when it cannot (the bridge counts it).
  std::function<void(const publication&)> publish;
  // Whether `sid` is a connection of this node in namespace `nsp`.
  std::function<bool(const std::string& sid, const std::string& nsp)> here;
  // Makes this node follow `room` where the cluster stands (broker::warm); `done` runs at
  // most once, on any thread (the bridge bounds the wait).
  std::function<void(const channel& room, std::function<void()> done)> warm;
  // The room methods, for connections of this node only (a sid elsewhere: nothing).
  std::function<void(const std::string& sid, const channel& room)> enter, leave;
  std::function<void(const channel& room)> close_room;
  std::function<void(const std::string& sid, const std::string& nsp)> disconnect;
};

struct redis_sio_bridge_options {
  redis_url url;
  std::string prefix{"sr:"};      // of the lease key (the broker's prefix)
  std::string node_id;            // the lease's value
  std::vector<std::string> channels;  // the managers' channels (not prefixed: theirs)
  std::chrono::milliseconds lease_ttl{5'000};
  std::chrono::milliseconds renew_every{1'000};
  // How long the leader holds the emits after a room method for the sid's node to apply it.
  std::chrono::milliseconds order_timeout{2'000};
  std::size_t order_max{10'000};  // emits held meanwhile; past it the oldest wait ends
  // redis+cluster: the seeds. The lease scripts and the sid-registry reads then go through a
  // cluster-aware redis_client (each to the master of its key's slot, redis_client.hpp); the
  // channels' SUBSCRIBE and the applied PUBLISH stay on `url`'s node (classic pub/sub: the
  // cluster bus forwards every PUBLISH to every node).
  std::vector<redis_endpoint> seeds;
};

struct manager_counters {
  std::uint64_t received{0};      // messages on the channels
  std::uint64_t republished{0};   // emits this node published as the leader
  std::uint64_t applied{0};       // room methods and disconnects acted on here
  std::uint64_t malformed{0};     // dropped: not a well-formed manager message
  std::uint64_t acks_dropped{0};  // republished emits whose ack request cannot be honoured
  std::uint64_t failed{0};        // emits the broker refused (Redis unreachable)
  std::uint64_t order_waits{0};   // room methods the leader waited for before later emits
  std::uint64_t order_timeouts{0};  // of those, given up (order_timeout or order_max)
  unsigned leading{0};            // channels whose lease this node holds
};

class redis_sio_bridge {
 public:
  // Starts the thread and connects (reconnecting with backoff 0.1 s .. 5 s after a loss).
  redis_sio_bridge(redis_sio_bridge_options opts, manager_actions actions);
  // Gives the lease up when holding it (another node takes over within a second), closes
  // both connections and joins the thread; no action runs after it returns. Idempotent; not
  // from an action. counters() stays readable.
  void stop();
  ~redis_sio_bridge();  // stop()

  manager_counters counters() const;

  redis_sio_bridge(const redis_sio_bridge&) = delete;
  redis_sio_bridge& operator=(const redis_sio_bridge&) = delete;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace skyrelay::redis
