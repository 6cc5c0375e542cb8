// The broker: the one way publications travel, between nodes and to the local hub.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "skyrelay/core/publication.hpp"
#include "skyrelay/hub/channel.hpp"
#include "skyrelay/hub/hub.hpp"

namespace skyrelay {

// Thrown by broker::publish when the broker cannot carry a publication now (a network
// broker that lost its server): nothing was published. The publish API answers 503
// `broker_unavailable`; Python raises skyrelay.BrokerUnavailable.
class broker_unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown (or handed to a publish completion) when a network broker's queue of publications
// waiting for their server is full: nothing was published; retry later. A broker_unavailable,
// so callers that only know that one answer it alike; the publish API answers 503
// `broker_busy`.
class broker_busy : public broker_unavailable {
 public:
  using broker_unavailable::broker_unavailable;
};

// What became of one publication handed to broker::publish_async: the deliveries queued on
// this node and the receipt's facts (as publish() fills them), or `error` (a broker_busy or
// broker_unavailable, or what the server refused) and nothing else.
struct publish_outcome {
  std::size_t delivered{0};
  publish_meta meta;
  std::exception_ptr error;
};

// Whether the broker carries publications now; `reason` says why not (for /health).
struct broker_status {
  bool ok{true};
  std::string reason;
};

// A network broker's counters since it started, for /metrics (the memory broker's are 0).
struct broker_counters {
  std::uint64_t publishes{0};      // publications it carried (scripts that ran)
  std::uint64_t received{0};       // messages received from the server
  std::uint64_t gaps_caught_up{0}; // gaps filled from the stored stream
  std::uint64_t resets{0};         // gaps it could not fill: the channel's log was reset
  std::uint64_t reconnects{0};     // connections to the server made again after a loss
  std::uint64_t publish_queued{0};  // publications sent and not answered yet (now)
  std::uint64_t publish_refused{0}; // refused because that queue was full (broker_busy)
  std::uint64_t publish_failed{0};  // queued, then failed (connection lost, server error)
};

// The contract between the engine and where publications go. The engine makes one broker per
// server (server_config::broker) and calls it for every publication, whatever its source
// (Python emit, the publish API, handler and Socket.IO emits). A broker hands each publication
// it carries, local or from another node, to the delivery function for local fan-out.
//
// Thread-safety: every method may be called from any thread at once (I/O threads, the
// dispatcher, Python threads). subscribe() and unsubscribe() are called under the hub's room
// lock, at the exact moment a channel gains its first or loses its last local member, so their
// calls for one channel alternate and are in order; they must not block and must not call into
// the hub (a network broker queues the command for its own connection).
//
// Ordering: a broker delivers the publications of one publisher in the order it published
// them. publish() returns after the local delivery has been queued (the memory broker delivers
// synchronously, so `out` is filled); a network broker may deliver later and leave `out` as it
// was, except for what it fixes itself.
class broker {
 public:
  // Local fan-out of one publication: returns the deliveries queued and fills `meta` (when
  // given) with what the publication was given. Today: hub::publish.
  using delivery_fn = std::function<std::size_t(const publication& p, publish_meta* meta)>;

  virtual ~broker() = default;

  // Sets where publications are delivered. Call once, before the first publish.
  void set_delivery(delivery_fn fn) { delivery_ = std::move(fn); }

  // Carries `p` to every node that has members for its targets, this one included. Returns the
  // deliveries queued on this node. `p` is not copied by the memory broker; a network broker
  // serializes it. Without `out`, a network broker may return once `p` is queued (a failure
  // after that is counted, not thrown); with `out` it waits for the receipt. Throws
  // broker_unavailable (or broker_busy) when it cannot take `p`: nothing was published.
  virtual std::size_t publish(const publication& p, publish_meta* out) = 0;

  // The same, for callers that need the receipt and must not wait for it (an I/O thread):
  // `done` runs exactly once, either inline before this returns (the memory broker, or a
  // refusal: broker_unavailable, broker_busy) or later on the broker's own thread, where it
  // must only post elsewhere and return. Publications given by one thread, through either
  // function, are carried in the order given. `p` is not used after this returns. Never throws.
  // The default calls publish().
  using publish_done = std::function<void(publish_outcome)>;
  virtual void publish_async(const publication& p, publish_done done) {
    publish_outcome r;
    try {
      r.delivered = publish(p, &r.meta);
    } catch (...) {
      r.error = std::current_exception();
    }
    done(std::move(r));
  }

  // This node has local members of `ch` (its first one joined) / no longer has any (its last
  // one left). See the thread-safety note above.
  virtual void subscribe(const channel& ch) = 0;
  virtual void unsubscribe(const channel& ch) = 0;

  // What the channel published after the request's point, for recovery.
  virtual history_result history(const history_request& q) = 0;

  // A connection was registered (`added`) or unregistered in the local hub: a network broker
  // records which node owns the sid. No lock is held; must not block.
  virtual void connection_changed(const std::string& sid, bool added) {}

  // Makes the local hub's logs of `rooms` hold where the cluster's channels stand (their
  // epoch, seq and stored tail) before a client resumes on them, then calls `done` (true:
  // warmed; false: it could not, the caller answers with a reset) on some thread, at most
  // once. The memory broker calls done(true) inline. Must not be called under a hub lock.
  virtual void warm(const std::vector<channel>& rooms, std::function<void(bool)> done) {
    done(true);
  }

  // After this returns, the broker calls no `done` of warm() any more (they would post to
  // I/O contexts being destroyed). server::stop() calls it before it ends its I/O contexts.
  // Must not be called from the broker's own thread.
  virtual void quiesce() {}

  virtual broker_status status() const { return {}; }
  virtual broker_counters counters() const { return {}; }

 protected:
  std::size_t deliver(const publication& p, publish_meta* meta) const {
    return delivery_ ? delivery_(p, meta) : 0;
  }

 private:
  delivery_fn delivery_;
};

// Makes the broker that `url` names: empty or "memory" is the in-memory broker over `local`.
// Throws std::invalid_argument for anything else ("unknown broker URL scheme"). The Redis
// broker is made by broker::make_network_broker (cpp/src/broker/, it needs Asio and hiredis).
std::unique_ptr<broker> make_broker(const std::string& url, hub& local);

}  // namespace skyrelay
