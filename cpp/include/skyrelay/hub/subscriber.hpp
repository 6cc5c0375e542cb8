// What the hub delivers to: one connection of any transport.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "skyrelay/core/encoder.hpp"
#include "skyrelay/core/frame.hpp"
#include "skyrelay/core/overflow_policy.hpp"
#include "skyrelay/hub/channel.hpp"

namespace skyrelay {

// A channel's sequence changed under its members (a cluster broker's delivery:
// hub::publish_ordered, hub::load_history). `reason` is "epoch_changed" (the sequence the
// member was following restarted: its last events may never have reached this node),
// "history_gap" (publications between the member's last one and the next are lost to this
// node), or empty: only the sequence's name changed, and nothing the member could have been
// sent was lost (a sequence that had recorded nothing moved to the broker's epoch).
// The channel now stands at `seq` in `epoch`: its next publication has seq + 1 or more.
struct sequence_reset {
  const channel& ch;        // the room; with `broadcasts`, ch.nsp's broadcasts (room empty)
  bool broadcasts;
  std::string_view reason;
  const std::string& epoch;
  std::uint64_t seq;
};

// The hub's narrow face of a connection: who it is (sid), which namespace it is in, which
// encoder makes its frames, and where frames go. The hub knows no wire format: it hands each
// subscriber the frame its encoder made (see hub::add_encoder).
class subscriber {
 public:
  // `encoder` is the id hub::add_encoder gave the transport's encoder. `nsp` is the namespace
  // the connection is in (Socket.IO's; JSON-protocol and SSE connections are in "/").
  // Broadcasts to every connection reach only the subscribers of the publication's namespace.
  subscriber(std::string sid, encoder_id encoder, std::string nsp = "/")
      : sid_(std::move(sid)), encoder_(encoder), nsp_(std::move(nsp)) {}
  virtual ~subscriber() = default;
  subscriber(const subscriber&) = delete;
  subscriber& operator=(const subscriber&) = delete;

  const std::string& sid() const noexcept { return sid_; }
  encoder_id encoder() const noexcept { return encoder_; }
  const std::string& nsp() const noexcept { return nsp_; }

  // Queue a frame for sending. Called from any thread, possibly many at once, under the order
  // locks of the publication's channels (none for a publication to connections only), so a
  // channel's frames arrive in the channel's order; must not block on I/O and must not call
  // back into the hub, except remove() and leave() (see hub.hpp's lock order).
  virtual void deliver(const frame_ptr& f, overflow_policy policy) = 0;
  // A publication addressed to this connection itself (by sid) rather than to a room or to
  // everyone. Same contract as deliver(); the hub's history does not keep these, so a
  // subscriber that can be resumed keeps them itself.
  virtual void deliver_direct(const frame_ptr& f, overflow_policy policy) { deliver(f, policy); }
  // The sequence of a channel this connection is a member of changed (see sequence_reset):
  // the transport tells its client as its protocol allows, before the channel's next frame.
  // Same contract as deliver() (under the channel's order lock, only queue).
  virtual void reset(const sequence_reset&) {}

  // Asks the CPU to fetch the memory deliver() writes first (the queue it pushes into, see
  // set_write_target), ahead of the call: the hub does it for the next subscribers while it
  // delivers to one, so that a fan-out to many connections does not wait on each one's cache
  // misses in turn. Only a hint: nothing is read through the address, a stale one is harmless.
  void prefetch_write_target() const noexcept {
    if (const void* p = write_target()) {
      __builtin_prefetch(p, 1);
      __builtin_prefetch(static_cast<const char*>(p) + 64, 1);
    }
  }

  const void* write_target() const noexcept {
    return write_target_.load(std::memory_order_relaxed);
  }

 protected:
  // Where deliver() writes first, for prefetch_write_target (null: nothing to fetch). Any
  // thread may change it at any time.
  void set_write_target(const void* p) noexcept {
    write_target_.store(p, std::memory_order_relaxed);
  }

 private:
  const std::string sid_;
  const encoder_id encoder_;
  std::atomic<const void*> write_target_{nullptr};
  const std::string nsp_;
};

}  // namespace skyrelay
