// An encoded, immutable unit of output: the exact bytes one connection writes to its socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace skyrelay {

// A frame is built once (for example, the WebSocket frame of one publication) and shared by every
// connection that sends it; nobody mutates it after construction.
struct frame {
  std::string bytes;           // wire bytes (see ws_opcode)
  std::int64_t publish_ns{0};  // steady-clock time of publication, for the publish-to-write histogram
  bool is_data{true};          // data frames count as messages out; control frames do not
  // 0: `bytes` is complete as it is (a whole WebSocket frame, say). 1 (text) or 2 (binary):
  // `bytes` is a bare message, such as an Engine.IO packet, that a WebSocket transport sends
  // under a header with this opcode and a polling transport sends as it is. The header is made
  // per write, so the payload is still shared.
  std::uint8_t ws_opcode{0};
  // Socket.IO connection state recovery: the publication id carried as the event's offset
  // (0 when the frame has none).
  std::uint64_t offset{0};
  // Frames that must follow this one, with nothing in between: the binary attachments of a
  // Socket.IO BINARY_EVENT published through the hub.
  std::vector<std::shared_ptr<const frame>> followers;
};

using frame_ptr = std::shared_ptr<const frame>;

inline frame_ptr make_frame(std::string bytes, std::int64_t publish_ns = 0, bool is_data = true) {
  return std::make_shared<const frame>(frame{std::move(bytes), publish_ns, is_data, 0, 0, {}});
}

// A bare message (see frame::ws_opcode): 1 for text, 2 for binary.
inline frame_ptr make_message(std::string bytes, std::uint8_t ws_opcode,
                              std::int64_t publish_ns = 0, bool is_data = true,
                              std::uint64_t offset = 0) {
  return std::make_shared<const frame>(
      frame{std::move(bytes), publish_ns, is_data, ws_opcode, offset, {}});
}

}  // namespace skyrelay
