// An encoded, immutable unit of output: the exact bytes one connection writes to its socket.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/core/channel_pos.hpp"

namespace skyrelay {

struct frame;

// A frame's compressed twin for permessage-deflate connections (ws::deflated in
// proto/permessage_deflate.hpp): made once, by the first connection that writes the frame
// compressed, then shared. A copy of a frame is another message: it starts without a twin.
struct deflate_slot {
  deflate_slot() = default;
  deflate_slot(const deflate_slot&) noexcept {}
  deflate_slot& operator=(const deflate_slot&) = delete;
  mutable std::once_flag once;
  mutable std::shared_ptr<const frame> twin;  // null once made: sent as it is
};

// A frame is built once (for example, the WebSocket frame of one publication) and shared by every
// connection that sends it; nobody mutates it after construction.
struct frame {
  std::string bytes;           // wire bytes (see ws_opcode)
  std::int64_t publish_ns{0};  // steady-clock time of publication, for the publish-to-write histogram
  bool is_data{true};          // data frames count as messages out; control frames do not
  // 0: a frame of one transport only, complete as it is (a JSON-protocol WebSocket frame, an
  // SSE block). 1 (text) or 2 (binary): a message, such as an Engine.IO packet, that more than
  // one transport can carry: `bytes` is its whole WebSocket frame (a header with this opcode,
  // then the message), which a WebSocket transport writes as it is, and payload() is the bare
  // message, which the Engine.IO long-polling transport sends.
  std::uint8_t ws_opcode{0};
  // Frames that must follow this one, with nothing in between: the binary attachments of a
  // Socket.IO BINARY_EVENT published through the hub.
  std::vector<std::shared_ptr<const frame>> followers;
  // Where the bare message starts in `bytes`: the size of the WebSocket header in front of it
  // (2 to 10 bytes; 0 when ws_opcode is 0).
  std::uint8_t payload_at{0};
  // The channels the publication was recorded in and its position in each (null for frames
  // that are not a publication's, or when the encoder does not keep them). An SSE stream's
  // writer advances its cursor with them (see sse_session).
  channel_positions positions;
  // Socket.IO: an EVENT whose last argument a socket with connection state recovery writes
  // itself (its offset, see sio_socket): it sends a frame of its own around this one's text.
  bool numbered{false};
  // A frame written for one connection around another's message (a Socket.IO event with its
  // socket's offset; an SSE block behind its stream's `id:` line): on the wire, `bytes` (its
  // own WebSocket header, payload_at long, or the `id:` line), then `middle` (the shared text,
  // inside `base`, which keeps it alive), then `tail`. Null `base`: `bytes` is the whole frame.
  std::shared_ptr<const frame> base;
  std::string_view middle;
  std::string tail;
  // A Socket.IO event's addresses (publication::to and ::to_conns), kept only for an event to
  // rooms with recovery on and room rules configured: a resumed socket that lost a room to its
  // role checks leaves out what came through it. Empty otherwise (nothing to leave out).
  std::vector<std::string> to, to_conns;
  // Its compressed twin (permessage-deflate), made on first use.
  deflate_slot deflated;

  // The bare message (see ws_opcode); `bytes` whole when there is no header in front. Only
  // for a frame without `base` (see append_payload).
  std::string_view payload() const noexcept {
    return std::string_view(bytes).substr(payload_at);
  }
  // Appends the bare message, whatever the frame's shape.
  void append_payload(std::string& out) const {
    out += payload();
    if (base) {
      out += middle;
      out += tail;
    }
  }
  // The bytes it puts on a WebSocket.
  std::size_t wire_size() const noexcept {
    return base ? bytes.size() + middle.size() + tail.size() : bytes.size();
  }
};

using frame_ptr = std::shared_ptr<const frame>;

inline frame_ptr make_frame(std::string bytes, std::int64_t publish_ns = 0, bool is_data = true) {
  frame f;
  f.bytes = std::move(bytes);
  f.publish_ns = publish_ns;
  f.is_data = is_data;
  return std::make_shared<const frame>(std::move(f));
}

// A message (see frame::ws_opcode; 1 for text, 2 for binary): `payload` is copied once behind
// its WebSocket header. Defined with the RFC 6455 framing, in proto/ws_frame.cpp.
frame message_frame(std::string_view payload, std::uint8_t ws_opcode, std::int64_t publish_ns = 0,
                    bool is_data = true);

inline frame_ptr make_message(std::string_view payload, std::uint8_t ws_opcode,
                              std::int64_t publish_ns = 0, bool is_data = true) {
  return std::make_shared<const frame>(message_frame(payload, ws_opcode, publish_ns, is_data));
}

}  // namespace skyrelay
