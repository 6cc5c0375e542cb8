// The broker: the one way publications travel, between nodes and to the local hub.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "skyrelay/core/publication.hpp"
#include "skyrelay/hub/channel.hpp"
#include "skyrelay/hub/hub.hpp"

namespace skyrelay {

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
  // serializes it.
  virtual std::size_t publish(const publication& p, publish_meta* out) = 0;

  // This node has local members of `ch` (its first one joined) / no longer has any (its last
  // one left). See the thread-safety note above.
  virtual void subscribe(const channel& ch) = 0;
  virtual void unsubscribe(const channel& ch) = 0;

  // What the channel published after the request's point, for recovery.
  virtual history_result history(const history_request& q) = 0;

 protected:
  std::size_t deliver(const publication& p, publish_meta* meta) const {
    return delivery_ ? delivery_(p, meta) : 0;
  }

 private:
  delivery_fn delivery_;
};

// Makes the broker that `url` names: empty or "memory" is the in-memory broker over `local`.
// Throws std::invalid_argument for anything else ("unknown broker URL scheme").
std::unique_ptr<broker> make_broker(const std::string& url, hub& local);

}  // namespace skyrelay
