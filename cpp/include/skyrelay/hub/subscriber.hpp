// What the hub delivers to: one connection of any transport.
#pragma once

#include <cstdint>
#include <string>

#include "skyrelay/core/frame.hpp"

namespace skyrelay {

// Overflow policy of a bounded outbox; see net/outbox.hpp.
enum class overflow_policy : std::uint8_t {
  disconnect,   // close the connection with close_code::slow_consumer (the default)
  drop_oldest,  // drop the oldest droppable queued frames; for volatile streams
};

// Wire formats the hub can encode a publication into. Each publication is encoded at most once
// per format, and only for formats that have a subscriber among its recipients.
enum class wire_format : std::uint8_t {
  json_ws = 0,   // a complete WebSocket frame of the JSON protocol's event message
  socketio = 1,  // a bare Engine.IO message carrying a Socket.IO EVENT (see frame::ws_opcode)
  sse = 2,       // a Server-Sent Events block: id, event and data lines
  count_
};

class subscriber {
 public:
  // `nsp` is the Socket.IO namespace; JSON-protocol connections are in "/". Broadcasts to
  // every connection reach only the subscribers of the publication's namespace.
  subscriber(std::string sid, wire_format fmt, std::string nsp = "/")
      : sid_(std::move(sid)), format_(fmt), nsp_(std::move(nsp)) {}
  virtual ~subscriber() = default;
  subscriber(const subscriber&) = delete;
  subscriber& operator=(const subscriber&) = delete;

  const std::string& sid() const noexcept { return sid_; }
  wire_format format() const noexcept { return format_; }
  const std::string& nsp() const noexcept { return nsp_; }

  // Queue a frame for sending. Called from any thread, possibly many at once; must not block on
  // I/O and must not call back into the hub (the hub may hold no lock here, but the caller may be
  // in the middle of a fan-out loop).
  virtual void deliver(const frame_ptr& f, overflow_policy policy) = 0;
  // A publication addressed to this connection itself (by sid) rather than to a room or to
  // everyone. Same contract as deliver(); the hub's history does not keep these, so a
  // subscriber that can be resumed keeps them itself.
  virtual void deliver_direct(const frame_ptr& f, overflow_policy policy) { deliver(f, policy); }

 private:
  const std::string sid_;
  const wire_format format_;
  const std::string nsp_;
};

}  // namespace skyrelay
